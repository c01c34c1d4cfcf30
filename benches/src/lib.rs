//! # amicus-benches
//!
//! The benchmarks live in `benches/` (one criterion binary per area, run by
//! `cargo xtask bench`). Each writes a Markdown section and its raw numbers
//! (JSON) into the report directory; `cargo xtask bench` puts the sections
//! together into `BENCHMARKS.md`. This library holds what they share:
//! where to write, quick mode, percentiles, criterion's medians, and the
//! process's peak memory.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::Criterion;

/// The directory the sections and raw numbers go to: `AMICUS_BENCH_OUT`,
/// or `bench-report/` under the current directory.
pub fn out_dir() -> PathBuf {
    let dir = std::env::var_os("AMICUS_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("bench-report"));
    std::fs::create_dir_all(&dir).expect("create the report directory");
    dir
}

/// A scratch directory for indexes and stores (`AMICUS_BENCH_SCRATCH` or
/// the system's temporary directory), removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    match std::env::var_os("AMICUS_BENCH_SCRATCH") {
        Some(dir) => {
            std::fs::create_dir_all(&dir).expect("create the scratch directory");
            tempfile::tempdir_in(dir).expect("scratch directory")
        }
        None => tempfile::tempdir().expect("scratch directory"),
    }
}

/// Quick mode: small sizes and short measurements, to check that a
/// benchmark runs (`AMICUS_BENCH_QUICK=1`, or `cargo test --benches`,
/// which passes `--test`).
pub fn quick() -> bool {
    std::env::var_os("AMICUS_BENCH_QUICK").is_some_and(|v| v != "0")
        || std::env::args().any(|a| a == "--test")
}

/// A criterion runner writing under `out_dir()/criterion`, configured from
/// the command line, with short measurements in quick mode.
pub fn criterion() -> Criterion {
    let c = Criterion::default()
        .output_directory(&out_dir().join("criterion"))
        .configure_from_args();
    if quick() {
        c.sample_size(10)
            .warm_up_time(Duration::from_millis(50))
            .measurement_time(Duration::from_millis(200))
    } else {
        c.sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
    }
}

/// The median criterion measured for `group/function`, if it ran.
pub fn criterion_median(group: &str, function: &str) -> Option<Duration> {
    let safe = |s: &str| s.replace(['?', '"', '/', '\\', '*', '<', '>', ':', '|', '^'], "_");
    let path = out_dir()
        .join("criterion")
        .join(safe(group))
        .join(safe(function))
        .join("new")
        .join("estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let ns = v["median"]["point_estimate"].as_f64()?;
    Some(Duration::from_secs_f64(ns / 1e9))
}

/// The `p`-th percentile (0–100) of sorted samples (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The process's peak resident memory (Linux `VmHWM`), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes under a directory.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A duration for a table: µs below 1 ms, ms below 10 s, else s.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.1} s", us / 1e6)
    }
}

/// Writes a section of the report (`NAME.md`) and its raw numbers
/// (`NAME.json`).
pub fn write_section(name: &str, markdown: &str, raw: &serde_json::Value) {
    let dir = out_dir();
    std::fs::write(dir.join(format!("{name}.md")), markdown).expect("write the section");
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_vec_pretty(raw).expect("json"),
    )
    .expect("write the raw numbers");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&samples[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_duration(Duration::from_micros(250)), "250 µs");
        assert_eq!(fmt_duration(Duration::from_micros(2_500)), "2.50 ms");
        assert_eq!(fmt_duration(Duration::from_secs(42)), "42.0 s");
    }
}
