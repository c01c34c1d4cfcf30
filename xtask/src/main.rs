//! `cargo xtask test`: everything the test suite needs, then every test.
//! `cargo xtask ci`: formatting and lint checks, then `test`.
//! `cargo xtask run [ARGS]`: build everything (the web app included) and
//! start the server (`amicus serve`, data under `./data`, listening on
//! 127.0.0.1:8080, the web app at `/`).
//! `cargo xtask web`: build the web app only (the wasm client through
//! `wasm-bindgen-cli-support`, then the static files) into `<target>/web`.
//! `cargo xtask check-js`: build the web app and check its JavaScript
//! against the TypeScript declarations generated from the wasm client's
//! Rust types (`tsc --noEmit` with TypeScript from the npm registry; the
//! test command does it too).
//! `cargo xtask bench [--quick] [NAME...]`: run the benchmarks of
//! `benches/` and write `BENCHMARKS.md` from their sections.
//! `cargo xtask simulate [--seeds N] [--first N] [--seed N]`: run the
//! whole-system simulation (`tests/tests/simulation`) over N seeds from
//! `--first` (2,000 from 1 by default, as the test command does), or
//! replay one seed.
//! `cargo xtask fuzz [--seconds N] [TARGET...]`: run the cargo-fuzz targets
//! of `fuzz/` (nightly; installs cargo-fuzz when missing), each for N
//! seconds (`AMICUS_FUZZ_SECONDS`, else 15, or 600 with `AMICUS_LONG=1`).
//!
//! They install what is missing on a fresh machine: the
//! `wasm32-unknown-unknown` target (through rustup); for the tests also
//! Debian's `age` command (the reference implementation the sealed-intake
//! format is interop-tested against) and `chromium` with `chromium-driver`
//! (the browser tests drive them; a missing browser fails those tests),
//! and Node.js with npm (TypeScript checks the web app's JavaScript).

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "test" => test(),
        "ci" => ci(),
        "run" => serve(&std::env::args().skip(2).collect::<Vec<_>>()),
        "bench" => bench(&std::env::args().skip(2).collect::<Vec<_>>()),
        "web" => web().map(|_| ()),
        "check-js" => web().and_then(|web| check_js(&web)),
        "fuzz" => fuzz(&std::env::args().skip(2).collect::<Vec<_>>()),
        "simulate" => simulate(&std::env::args().skip(2).collect::<Vec<_>>()),
        "map" => world_map(),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|ci|run|web|bench|fuzz|simulate|map>\n  test   install test prerequisites, run every test, build the core for wasm32, run the benchmarks in quick mode\n  ci     cargo fmt --check, clippy -D warnings, then test\n  run    build everything and start the server with the web app on ./data (extra arguments go to `amicus serve`)\n  web    build the web app (wasm client and static files) into <target>/web\n  check-js  build the web app and check its JavaScript against the generated TypeScript declarations (tsc from npm)\n  bench  [--quick] [NAME...]: run the benchmarks and write BENCHMARKS.md (--quick: small sizes, report under the target directory only)\n  fuzz   [--seconds N] [TARGET...]: run the fuzz targets (nightly, cargo-fuzz)\n  simulate [--seeds N] [--first N] [--seed N]: run the whole-system simulation over N seeds, or replay one\n  map    write the public map's country outlines (client-wasm/web/map/world.json) from the npm registry's world-atlas"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("+ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("could not start {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed ({status})", args.join(" ")))
    }
}

fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn wasm_target() -> Result<(), String> {
    let targets = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup is needed to add the wasm32 target: {e}"))?;
    if !String::from_utf8_lossy(&targets.stdout).contains("wasm32-unknown-unknown") {
        run("rustup", &["target", "add", "wasm32-unknown-unknown"])?;
    }
    Ok(())
}

fn prerequisites() -> Result<(), String> {
    wasm_target()?;
    let mut missing: Vec<&str> = [
        ("age", "age"),
        ("curl", "curl"),
        ("chromium", "chromium"),
        ("chromedriver", "chromium-driver"),
        ("node", "nodejs"),
        ("npm", "npm"),
    ]
    .into_iter()
    .filter(|(program, _)| !has(program))
    .map(|(_, package)| package)
    .collect();
    // The SMTP server the notification tests send to, run by Debian's
    // interpreter.
    let smtp = Command::new("/usr/bin/python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !smtp {
        missing.push("python3-aiosmtpd");
    }
    if !missing.is_empty() {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let apt = |args: &[&str]| {
            let result = if root {
                run("apt-get", args)
            } else {
                run("sudo", &[&["apt-get"], args].concat())
            };
            result.map_err(|e| {
                format!(
                    "{e}; install the Debian packages {} by hand",
                    missing.join(", ")
                )
            })
        };
        apt(&["update", "-qq"])?;
        apt(&[&["install", "-y", "-qq"], &missing[..]].concat())?;
    }
    Ok(())
}

fn test() -> Result<(), String> {
    prerequisites()?;
    // The end-to-end tests drive the real `amicus` binary, and the browser
    // tests the web app it serves.
    run(
        "cargo",
        &["build", "--release", "-p", "amicus", "--bin", "amicus"],
    )?;
    let web = web()?;
    check_js(&web)?;
    run(
        "cargo",
        &["test", "--workspace", "--release", "--exclude", "xtask"],
    )?;
    build_wasm("amicus-core")?;
    forbid_in_tree("amicus-core", &["tokio", "sled", "tantivy", "axum"])?;
    eprintln!("amicus-core: wasm32 build ok, no tokio/sled/tantivy/axum in its tree");
    // The native client is a client: the server's storage, index and HTTP
    // framework stay in the `amicus` command that links both.
    forbid_in_tree("amicus-cli", &["sled", "tantivy", "axum"])?;
    eprintln!("amicus-cli: no sled/tantivy/axum in its tree");
    fuzz(&[])?;
    // Every benchmark runs once at small sizes, so a broken one is caught
    // here rather than when the report is made.
    bench(&["--quick".to_owned()])
}

/// Fails if `cargo tree` shows one of `forbidden` among `package`'s normal
/// dependencies.
fn forbid_in_tree(package: &str, forbidden: &[&str]) -> Result<(), String> {
    let tree = Command::new("cargo")
        .args([
            "tree", "-p", package, "--edges", "normal", "--prefix", "none",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let tree = String::from_utf8_lossy(&tree.stdout);
    for crate_name in forbidden {
        let prefix = format!("{crate_name} ");
        if tree.lines().any(|l| l.starts_with(&prefix)) {
            return Err(format!("{package} must not depend on {crate_name}"));
        }
    }
    Ok(())
}

/// The whole-system simulation over many seeds, or one seed replayed.
fn simulate(args: &[String]) -> Result<(), String> {
    let mut command = Command::new("cargo");
    command.args([
        "test",
        "--release",
        "-p",
        "amicus-tests",
        "--test",
        "simulation",
        "--",
        "--nocapture",
    ]);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let variable = match flag.as_str() {
            "--seeds" => "AMICUS_SIM_SEEDS",
            "--first" => "AMICUS_SIM_FIRST",
            "--seed" => "AMICUS_SIM_SEED",
            other => return Err(format!("simulate: unknown argument {other}")),
        };
        let value = it
            .next()
            .filter(|v| v.parse::<u64>().is_ok())
            .ok_or_else(|| format!("simulate: {flag} takes a number"))?;
        command.env(variable, value);
    }
    eprintln!(
        "+ cargo test --release -p amicus-tests --test simulation {}",
        args.join(" ")
    );
    let status = command
        .status()
        .map_err(|e| format!("could not start cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("the simulation failed; each failing seed printed the command that replays it".into())
    }
}

/// The benchmarks of `benches/benches/`, in report order.
const BENCHES: [&str; 6] = ["mls", "documents", "files", "relay", "store", "search"];

fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target"))
}

fn bench(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    let names: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    for n in &names {
        if !BENCHES.contains(n) {
            return Err(format!(
                "no benchmark named {n}; there are: {}",
                BENCHES.join(", ")
            ));
        }
    }
    let selected: Vec<&str> = if names.is_empty() {
        BENCHES.to_vec()
    } else {
        names
    };
    let out = std::fs::canonicalize(target_dir())
        .unwrap_or_else(|_| target_dir())
        .join(if quick {
            "bench-report-quick"
        } else {
            "bench-report"
        });
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let published = std::fs::read_to_string("BENCHMARKS.md").unwrap_or_default();
    if !quick {
        keep_sections(&out, &published, &selected)?;
    }
    let measured_at = (output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]), commit());
    let measured = provenance(&measured_at.0, &measured_at.1);
    if selected.contains(&"relay") {
        // The relay benchmark runs the real server binary.
        run("cargo", &["build", "--release", "-p", "amicus"])?;
    }
    for name in &selected {
        let _ = std::fs::remove_file(out.join(format!("{name}.md")));
        eprintln!("+ cargo bench -p amicus-benches --bench {name}");
        let mut cmd = Command::new("cargo");
        cmd.args(["bench", "-p", "amicus-benches", "--bench", name])
            .env("AMICUS_BENCH_OUT", &out)
            .env("AMICUS_BENCH_SCRATCH", out.join("scratch"));
        if quick {
            cmd.env("AMICUS_BENCH_QUICK", "1");
        }
        let status = cmd.status().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("the {name} benchmark failed ({status})"));
        }
        let section = out.join(format!("{name}.md"));
        let text = std::fs::read_to_string(&section).map_err(|e| e.to_string())?;
        std::fs::write(&section, with_provenance(&text, &measured)).map_err(|e| e.to_string())?;
    }
    let _ = std::fs::remove_dir_all(out.join("scratch"));
    let report = report(&out, quick);
    let path = if quick {
        out.join("BENCHMARKS.md")
    } else {
        std::path::PathBuf::from("BENCHMARKS.md")
    };
    std::fs::write(&path, report).map_err(|e| e.to_string())?;
    eprintln!("wrote {}", path.display());
    let json_path = if quick {
        out.join("BENCHMARKS.json")
    } else {
        std::path::PathBuf::from("BENCHMARKS.json")
    };
    let previous = std::fs::read(&json_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let figures = figures(&out, &selected, &measured_at, previous);
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&figures).map_err(|e| e.to_string())? + "\n",
    )
    .map_err(|e| e.to_string())?;
    eprintln!("wrote {}", json_path.display());
    Ok(())
}

/// The commit measured (with a mark if the work tree differs from it).
fn commit() -> String {
    let head = output("git", &["rev-parse", "--short=12", "HEAD"]);
    let status = output("git", &["status", "--porcelain", "--untracked-files=no"]);
    if status.is_empty() || status == "unknown" {
        head
    } else {
        format!("{head} with uncommitted changes")
    }
}

/// A section with the line saying when and at which commit it was
/// measured, right under its heading (an older such line replaced).
fn with_provenance(section: &str, measured: &str) -> String {
    let (heading, rest) = section.split_once('\n').unwrap_or((section, ""));
    let rest = rest.trim_start_matches('\n');
    let rest = match rest.strip_prefix("_Measured ") {
        Some(old) => old.split_once("\n\n").map_or("", |(_, after)| after),
        None => rest,
    };
    format!("{heading}\n\n{measured}{rest}")
}

/// The line under a section's heading saying when and at which commit it
/// was measured.
fn provenance(date: &str, commit: &str) -> String {
    format!("_Measured {date} at commit `{commit}`._\n\n")
}

/// Puts into `out` the sections of the published `BENCHMARKS.md` for the
/// benchmarks not run now and not measured in `out` already, so that
/// running one benchmark keeps the others' last results, each saying when
/// and at which commit it was measured.
fn keep_sections(out: &std::path::Path, published: &str, selected: &[&str]) -> Result<(), String> {
    let field = |name: &str| {
        published
            .lines()
            .find_map(|l| l.strip_prefix(&format!("| {name} | ")))
            .map(|v| v.trim_end_matches(" |").trim_matches('`').to_owned())
    };
    let date = field("date").unwrap_or_else(|| "at an unknown date".into());
    let commit = field("commit").unwrap_or_else(|| "unknown".into());
    for section in published.split("\n## ").skip(1) {
        let heading = section.lines().next().unwrap_or_default().to_lowercase();
        let Some(name) = BENCHES.iter().find(|n| heading.starts_with(*n)) else {
            continue;
        };
        let path = out.join(format!("{name}.md"));
        if selected.contains(name) || path.exists() || section.contains("\nNot run.") {
            continue;
        }
        let section = format!("## {}\n", section.trim_end());
        let kept = if section.contains("\n_Measured ") {
            section
        } else {
            with_provenance(&section, &provenance(&date, &commit))
        };
        std::fs::write(&path, kept).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The figures the issues set targets for, as `BENCHMARKS.json`: each with
/// its value, unit, baseline (what it is compared with, measured in the
/// same run), target, and when and at which commit it was measured. A
/// figure not measured now keeps its previous entry; one never measured is
/// listed under `not_measured`.
fn figures(
    out: &std::path::Path,
    selected: &[&str],
    (date, commit): &(String, String),
    previous: Option<serde_json::Value>,
) -> serde_json::Value {
    use serde_json::{Value, json};
    let raw = |name: &str| -> Option<Value> {
        if !selected.contains(&name) {
            return None;
        }
        serde_json::from_slice(&std::fs::read(out.join(format!("{name}.json"))).ok()?).ok()
    };
    let entry = |value: Option<f64>, unit: &str, baseline: &str, target: &str| {
        value.map(|v| {
            json!({
                "value": (v * 1000.0).round() / 1000.0,
                "unit": unit,
                "baseline": baseline,
                "target": target,
                "measured": date,
                "commit": commit,
            })
        })
    };
    let mut now: Vec<(&str, Option<Value>)> = Vec::new();
    if let Some(files) = raw("files") {
        const RAW: &str = "ChaCha20-Poly1305 + BLAKE3 of the same bytes, one thread";
        now.push((
            "seal_ratio_to_raw_1t",
            entry(files["seal_ratio_to_raw_1t"].as_f64(), "×", RAW, ">= 0.9"),
        ));
        now.push((
            "seal_ratio_to_raw_2t",
            entry(files["seal_ratio_to_raw_2t"].as_f64(), "×", RAW, ">= 1.6"),
        ));
    }
    if let Some(store) = raw("store") {
        let baseline = format!(
            "{:.0} appends/s: the same sled writes, a flush each, {} writers",
            store["appends_per_s_ungrouped"]
                .as_f64()
                .unwrap_or(f64::NAN),
            store["writers"]
        );
        now.push((
            "appends_per_s",
            entry(
                store["appends_per_s"].as_f64(),
                &format!("durable appends/s, {} writers", store["writers"]),
                &baseline,
                ">= 10000",
            ),
        ));
    }
    if let Some(relay) = raw("relay") {
        let rows = relay["rows"].as_array().cloned().unwrap_or_default();
        let row = |clients: u64, spaces: u64| {
            rows.iter()
                .find(|r| r["clients"] == clients && r["spaces"] == spaces)
                .cloned()
        };
        let rate = |side: &Value| {
            Some(side["deliveries"].as_f64()? / (side["elapsed_ns"].as_f64()? / 1e9))
        };
        let ratio = |r: &Value| Some(rate(&r["amicus"])? / rate(&r["bare"])?);
        let bare = |r: &Value| {
            format!(
                "bare tokio-tungstenite fan-out, same clients and frames: {:.0} deliveries/s, p99 {:.1} ms",
                rate(&r["bare"]).unwrap_or(f64::NAN),
                r["bare"]["p99_ns"].as_f64().unwrap_or(f64::NAN) / 1e6
            )
        };
        for (key, clients, spaces, target) in [
            ("relay_1000_ratio_to_bare", 1000, 1, ">= 0.8"),
            ("relay_10_ratio_to_bare", 10, 1, ">= 0.5"),
            ("relay_100_spaces_ratio_to_bare", 100, 100, ">= 0.5"),
        ] {
            if let Some(r) = row(clients, spaces) {
                now.push((key, entry(ratio(&r), "× deliveries/s", &bare(&r), target)));
            }
        }
        if let Some(r) = row(1000, 1) {
            now.push((
                "relay_1000_p99_ms",
                entry(
                    r["amicus"]["p99_ns"].as_f64().map(|ns| ns / 1e6),
                    "ms",
                    &bare(&r),
                    "<= 25",
                ),
            ));
        }
    }
    if let Some(search) = raw("search") {
        let rows = search.as_array().cloned().unwrap_or_default();
        // The largest size measured (a million documents in a full run).
        let largest = rows
            .iter()
            .filter_map(|r| r["documents"].as_u64())
            .max()
            .unwrap_or(0);
        let row = |engine: &str, phase: &str| {
            rows.iter()
                .find(|r| r["documents"] == largest && r["engine"] == engine && r["phase"] == phase)
                .cloned()
        };
        let ms = |r: &Option<Value>, key: &str| Some(r.as_ref()?[key].as_f64()? * 1e3);
        let (amicus, fts) = (row("amicus", "query"), row("fts5", "query"));
        let fts_latency = format!(
            "SQLite FTS5 on the same {largest} documents and queries: p50 {:.1} ms, p99 {:.1} ms",
            ms(&fts, "p50_s").unwrap_or(f64::NAN),
            ms(&fts, "p99_s").unwrap_or(f64::NAN)
        );
        if largest == 1_000_000 {
            now.push((
                "search_1m_p99_ms",
                entry(ms(&amicus, "p99_s"), "ms", &fts_latency, "<= 10"),
            ));
            now.push((
                "search_1m_p50_ms",
                entry(ms(&amicus, "p50_s"), "ms", &fts_latency, "<= 5"),
            ));
        }
        let rate = |engine: &str| row(engine, "indexing")?["docs_per_s"].as_f64();
        if let (Some(a), Some(f)) = (rate("amicus"), rate("fts5")) {
            now.push((
                "index_ratio_to_fts5",
                entry(
                    Some(a / f),
                    &format!("× documents/s, {largest} documents"),
                    &format!("SQLite FTS5 on the same documents: {f:.0} documents/s"),
                    ">= 1.0",
                ),
            ));
        }
    }
    let mut figures = previous
        .as_ref()
        .and_then(|p| p.get("figures"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (key, value) in now {
        if let Some(value) = value {
            figures.insert(key.to_owned(), value);
        }
    }
    let not_measured: Vec<&str> = FIGURES
        .iter()
        .copied()
        .filter(|k| !figures.contains_key(*k))
        .collect();
    json!({
        "written_by": "cargo xtask bench",
        "figures": figures,
        "not_measured": not_measured,
    })
}

/// Every figure `BENCHMARKS.json` is to hold.
const FIGURES: [&str; 19] = [
    // Years of history, thousands of members.
    "open_100k_ratio_to_load",
    "restart_old_entries_read",
    "year_sync_bytes_ratio_to_snapshots",
    "keystroke_ratio_to_plain",
    "mls_1000_commit_ms",
    "mls_1000_process_ms",
    "mls_1000_join_ms",
    "mls_10000_commit_ms",
    "welcome_10000_kib",
    // Throughput on two cores.
    "appends_per_s",
    "relay_1000_ratio_to_bare",
    "relay_1000_p99_ms",
    "relay_10_ratio_to_bare",
    "relay_100_spaces_ratio_to_bare",
    "seal_ratio_to_raw_1t",
    "seal_ratio_to_raw_2t",
    "search_1m_p99_ms",
    "search_1m_p50_ms",
    "index_ratio_to_fts5",
];

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `BENCHMARKS.md`: the machine, how to reproduce, then every section
/// found in `out` (a benchmark not run says so).
fn report(out: &std::path::Path, quick: bool) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown".to_owned(), |s| s.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or("unknown".to_owned(), |kib| {
            format!("{:.0} GiB", kib / 1024.0 / 1024.0)
        });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = String::new();
    md.push_str(
        "# Benchmarks

",
    );
    md.push_str(
        "Produced by `cargo xtask bench` (this file is written by it; do not edit by hand). \
         Every comparison is against a baseline measured in the same run on the same machine: \
         read the ratios, not the absolute times, when comparing machines. \
         Each section says when and at which commit it was measured: a run of some benchmarks \
         keeps the others' last sections. The figures the project sets targets for are also in \
         `BENCHMARKS.json`, each with its unit, baseline and target.\n\n",
    );
    if quick {
        md.push_str("**Quick mode**: small sizes and short measurements, to check that the benchmarks run. These numbers say little.\n\n");
    }
    md.push_str(&format!(
        "| | |\n|---|---|\n| date | {} |\n| commit | `{}` |\n| CPU | {cpu}, {cores} cores available |\n| memory | {memory} |\n| OS | {} |\n| compiler | {} |\n\n",
        output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        commit(),
        output("uname", &["-sr"]),
        output("rustc", &["-V"]),
    ));
    md.push_str("## Reproduce\n\n```sh\ncargo xtask bench            # everything, writes BENCHMARKS.md and BENCHMARKS.json\ncargo xtask bench search     # one benchmark (the others' sections are kept if present)\ncargo xtask bench --quick    # small sizes, report under the target directory\n```\n\nSizes can be changed with `AMICUS_BENCH_SEARCH_DOCS=100000,1000000`. Raw numbers (JSON) and criterion's data are kept next to the sections under `target/bench-report/`.\n\n");
    for name in BENCHES {
        match std::fs::read_to_string(out.join(format!("{name}.md"))) {
            Ok(section) => {
                md.push_str(&section);
                md.push('\n');
            }
            Err(_) => md.push_str(&format!("## {name}\n\nNot run.\n\n")),
        }
    }
    md
}

/// Builds the browser's modules (`wasm_module`), copies the app's static
/// files beside them, names the build and writes the compressed copies the
/// server sends. Returns the directory to serve.
fn web() -> Result<std::path::PathBuf, String> {
    wasm_target()?;
    let target = std::fs::canonicalize(target_dir()).map_err(|e| e.to_string())?;
    let out = target.join("web");
    let _ = std::fs::remove_dir_all(&out);
    // The client: amicus-core and the engine through wasm-bindgen.
    let pkg = out.join("pkg");
    wasm_module("amicus-client-wasm", "amicus_client", &pkg)?;
    // The passphrase strength check, a module of its own (zxcvbn's
    // dictionaries), built in its own invocation so that the client's
    // module is not built with it.
    wasm_module("amicus-strength", "amicus_strength", &out.join("strength"))?;
    // The PDF preview, a module of its own too (a PDF rasterizer with its
    // fonts), loaded by the app's preview worker only when a PDF is shown.
    wasm_module("amicus-preview", "amicus_preview", &out.join("preview"))?;
    // The drop-box page's module: sealing in the age format and nothing
    // else, so that a witness's phone loads a few hundred kilobytes.
    wasm_module("amicus-drop", "amicus_drop", &out.join("drop").join("pkg"))?;
    // The checkout being built: `cargo run` names it at run time. The path
    // compiled in is only a fallback, since a binary built from another
    // clone sharing the target directory may be reused as fresh.
    let xtask = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let app = xtask.join("../client-wasm/web");
    copy_dir(&app, &out)?;
    name_build(&out)?;
    compress_dir(&out)?;
    let built = pkg.join("amicus_client_bg.wasm");
    let size = std::fs::metadata(&built).map_err(|e| e.to_string())?.len();
    let compressed = |suffix: &str| {
        std::fs::metadata(pkg.join(format!("amicus_client_bg.wasm.{suffix}")))
            .map(|m| m.len() as f64 / 1e6)
            .map_err(|e| e.to_string())
    };
    eprintln!(
        "web app in {}: amicus_client_bg.wasm {:.2} MB ({:.2} MB with brotli, as served over HTTPS; {:.2} MB gzipped, as served to browsers that do not take brotli)",
        out.display(),
        size as f64 / 1e6,
        compressed("br")?,
        compressed("gz")?,
    );
    Ok(out)
}

/// Builds one of the browser's modules (`package`, a cdylib) for wasm32
/// with the size-oriented `wasm` profile and writes its JavaScript glue
/// and TypeScript declarations into `dir` as `name.js` and `name_bg.wasm`
/// (`wasm-bindgen-cli-support`, the version the crates pin). The name
/// and producers sections are left out: they are for debuggers, and the
/// names alone were a fifth of the client's module.
///
/// `wasm-opt` (binaryen 132) is not run: measured on the client module
/// built this way, `-Os` and `-O2` made it smaller (3.73 to 3.37 and
/// 3.42 MB) but its compressed forms larger (gzip 1.23 to 1.35 and
/// 1.36 MB, brotli 0.88 to 0.96 and 0.97 MB), `-Oz` likewise, and
/// compressed bytes are what a phone downloads.
fn wasm_module(package: &str, name: &str, dir: &std::path::Path) -> Result<(), String> {
    build_wasm(package)?;
    let target = std::fs::canonicalize(target_dir()).map_err(|e| e.to_string())?;
    let artifact = format!("{}.wasm", package.replace('-', "_"));
    let wasm = target.join("wasm32-unknown-unknown/wasm").join(artifact);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    eprintln!("+ wasm-bindgen --target web {}", wasm.display());
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .web(true)
        .map_err(|e| e.to_string())?
        .remove_name_section(true)
        .remove_producers_section(true)
        .typescript(true)
        .out_name(name)
        .generate(dir)
        .map_err(|e| format!("wasm-bindgen: {e}"))
}

/// `cargo build` of `package` for wasm32 with the size-oriented `wasm`
/// profile of the workspace.
fn build_wasm(package: &str) -> Result<(), String> {
    run(
        "cargo",
        &[
            "build",
            "--profile",
            "wasm",
            "-p",
            package,
            "--target",
            "wasm32-unknown-unknown",
        ],
    )
}

/// Writes the build's name into the service worker (`__BUILD__`): a
/// digest of every file served, so that a new build is a new worker, with
/// its own cache, and the same build the same worker.
fn name_build(out: &std::path::Path) -> Result<(), String> {
    use std::hash::Hasher;
    fn files(dir: &std::path::Path, into: &mut Vec<std::path::PathBuf>) -> Result<(), String> {
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                files(&path, into)?;
            } else {
                into.push(path);
            }
        }
        Ok(())
    }
    let worker = out.join("sw.js");
    let text =
        std::fs::read_to_string(&worker).map_err(|e| format!("{}: {e}", worker.display()))?;
    if !text.contains("__BUILD__") {
        return Err("sw.js has no __BUILD__ to name".into());
    }
    let mut all = Vec::new();
    files(out, &mut all)?;
    all.sort();
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    for path in all.iter().filter(|p| **p != worker) {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        digest.write(
            path.strip_prefix(out)
                .unwrap_or(path)
                .to_string_lossy()
                .as_bytes(),
        );
        digest.write(&bytes);
    }
    let build = format!("{:016x}", digest.finish());
    std::fs::write(&worker, text.replace("__BUILD__", &build)).map_err(|e| e.to_string())
}

/// The boundary set of the public map: Natural Earth's 1:110m countries
/// (public domain), as the npm registry's `world-atlas` packages them.
const WORLD_ATLAS: &str = "world-atlas@2.0.2";

/// Writes `client-wasm/web/map/world.json`, the outlines the public map
/// draws: each country of `world-atlas` under its ISO 3166-1 alpha-2 code
/// (the three it lists without one under `""`, drawn but not counted), as
/// an SVG path in the Equal Earth projection (an equal-area projection:
/// no country looks larger than it is), 1000 units wide. `npm pack`
/// checks the package's integrity against the registry's.
fn world_map() -> Result<(), String> {
    let target = std::fs::canonicalize(target_dir()).map_err(|e| e.to_string())?;
    let tools = target.join("tools/world-atlas");
    let _ = std::fs::remove_dir_all(&tools);
    std::fs::create_dir_all(&tools).map_err(|e| e.to_string())?;
    let dir = tools.to_string_lossy().into_owned();
    run("npm", &["pack", "--pack-destination", &dir, WORLD_ATLAS])?;
    let tarball = tools.join("world-atlas-2.0.2.tgz");
    run(
        "tar",
        &[
            "-xzf",
            &tarball.to_string_lossy(),
            "-C",
            &dir,
            "package/countries-110m.json",
        ],
    )?;
    let text = std::fs::read_to_string(tools.join("package/countries-110m.json"))
        .map_err(|e| e.to_string())?;
    let topo: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let out = world_paths(&topo)?;
    let xtask = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let file = xtask.join("../client-wasm/web/map/world.json");
    std::fs::write(&file, out).map_err(|e| e.to_string())?;
    eprintln!("wrote {}", file.display());
    Ok(())
}

/// The Equal Earth projection (Šavrič, Patterson and Jenny, 2018) of a
/// point in degrees, unscaled.
fn equal_earth(lon: f64, lat: f64) -> (f64, f64) {
    const A1: f64 = 1.340264;
    const A2: f64 = -0.081106;
    const A3: f64 = 0.000893;
    const A4: f64 = 0.003796;
    let m = 3f64.sqrt() / 2.0;
    let (l, p) = (lon.to_radians(), lat.to_radians());
    let t = (m * p.sin()).asin();
    let (t2, t6) = (t * t, t.powi(6));
    let x = l * t.cos() / (m * (A1 + 3.0 * A2 * t2 + t6 * (7.0 * A3 + 9.0 * A4 * t2)));
    let y = t * (A1 + A2 * t2 + t6 * (A3 + A4 * t2));
    (x, y)
}

/// The countries of a `world-atlas` TopoJSON as `{code, d}` paths.
fn world_paths(topo: &serde_json::Value) -> Result<String, String> {
    let bad = |what: &str| format!("world-atlas: {what}");
    let scale = &topo["transform"]["scale"];
    let translate = &topo["transform"]["translate"];
    let f = |v: &serde_json::Value| v.as_f64().ok_or_else(|| bad("a number expected"));
    let (sx, sy, tx, ty) = (
        f(&scale[0])?,
        f(&scale[1])?,
        f(&translate[0])?,
        f(&translate[1])?,
    );
    // Arcs are delta-encoded, quantized positions.
    let mut arcs: Vec<Vec<(f64, f64)>> = Vec::new();
    for arc in topo["arcs"].as_array().ok_or_else(|| bad("no arcs"))? {
        let (mut x, mut y) = (0.0, 0.0);
        let mut points = Vec::new();
        for p in arc.as_array().ok_or_else(|| bad("an arc"))? {
            x += f(&p[0])?;
            y += f(&p[1])?;
            points.push((x * sx + tx, y * sy + ty));
        }
        arcs.push(points);
    }
    let ring = |indexes: &serde_json::Value| -> Result<Vec<(f64, f64)>, String> {
        let mut points: Vec<(f64, f64)> = Vec::new();
        for i in indexes.as_array().ok_or_else(|| bad("a ring"))? {
            let i = i.as_i64().ok_or_else(|| bad("an arc index"))?;
            let (arc, reversed) = if i < 0 {
                ((!i) as usize, true)
            } else {
                (i as usize, false)
            };
            let mut part = arcs
                .get(arc)
                .ok_or_else(|| bad("an arc index out of range"))?
                .clone();
            if reversed {
                part.reverse();
            }
            // Consecutive arcs share their end point.
            let skip = usize::from(!points.is_empty());
            points.extend(part.into_iter().skip(skip));
        }
        // A small ring that crosses the antimeridian (Chukotka, Fiji) is
        // drawn east of it, whole (past the map's edge, which clips it);
        // Antarctica, which goes all the way round, is left as it is.
        let crosses = points.windows(2).any(|w| (w[0].0 - w[1].0).abs() > 180.0);
        let east = |lon: f64| if lon < 0.0 { lon + 360.0 } else { lon };
        let (lo, hi) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
            (lo.min(east(p.0)), hi.max(east(p.0)))
        });
        if crosses && hi - lo < 180.0 {
            for p in &mut points {
                p.0 = east(p.0);
            }
        }
        Ok(points)
    };
    let (xmax, _) = equal_earth(180.0, 0.0);
    let (_, ymax) = equal_earth(0.0, 90.0);
    let k = 500.0 / xmax;
    let height = (2.0 * ymax * k).ceil();
    let mut countries = Vec::new();
    let geometries = topo["objects"]["countries"]["geometries"]
        .as_array()
        .ok_or_else(|| bad("no countries"))?;
    for g in geometries {
        let code = match g["id"].as_str().and_then(|id| id.parse::<u32>().ok()) {
            Some(n) => isocountry::CountryCode::for_id(n)
                .map(|c| c.alpha2().to_owned())
                .map_err(|_| bad(&format!("numeric code {n} is not ISO 3166-1")))?,
            None => String::new(),
        };
        let polygons: Vec<&serde_json::Value> = match g["type"].as_str() {
            Some("Polygon") => vec![&g["arcs"]],
            Some("MultiPolygon") => g["arcs"]
                .as_array()
                .ok_or_else(|| bad("polygons"))?
                .iter()
                .collect(),
            _ => continue,
        };
        let mut d = String::new();
        for polygon in polygons {
            for r in polygon.as_array().ok_or_else(|| bad("rings"))? {
                let mut last = String::new();
                for (i, (lon, lat)) in ring(r)?.into_iter().enumerate() {
                    let (x, y) = equal_earth(lon, lat);
                    let point = format!("{:.1} {:.1}", 500.0 + x * k, height / 2.0 - y * k);
                    if point == last {
                        continue;
                    }
                    d.push_str(if i == 0 { "M" } else { "L" });
                    d.push_str(&point);
                    last = point;
                }
                d.push('Z');
            }
        }
        countries.push(serde_json::json!({
            "code": code,
            "name": g["properties"]["name"],
            "d": d,
        }));
    }
    let world = serde_json::json!({
        "source": format!("{WORLD_ATLAS}, countries-110m.json: Natural Earth 1:110m cultural vectors (public domain), packaged by Mike Bostock (ISC licence); Equal Earth projection"),
        "width": 1000,
        "height": height,
        "countries": countries,
    });
    Ok(world.to_string())
}

/// The TypeScript compiler the web app is checked with (from the npm
/// registry; it has no dependencies).
const TYPESCRIPT: &str = "typescript@5.9.3";

/// Checks the web app's JavaScript against the TypeScript declarations
/// generated from the wasm client's Rust types (`tsc --noEmit`, no
/// bundler): the engine's driver (`amicus.js`) strictly, the interface
/// with the compiler's default checks. Needs the built app (`web`).
fn check_js(web: &std::path::Path) -> Result<(), String> {
    let target = std::fs::canonicalize(target_dir()).map_err(|e| e.to_string())?;
    let tools = target.join("tools/typescript");
    let tsc = tools.join("node_modules/typescript/bin/tsc");
    if !tsc.is_file() {
        std::fs::create_dir_all(&tools).map_err(|e| e.to_string())?;
        let prefix = tools.to_string_lossy();
        run(
            "npm",
            &[
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--prefix",
                &prefix,
                TYPESCRIPT,
            ],
        )?;
    }
    let check = target.join("web-check");
    std::fs::create_dir_all(&check).map_err(|e| e.to_string())?;
    let file = |name: &str| web.join(name).to_string_lossy().into_owned();
    let page = ["esnext", "dom", "dom.iterable"];
    let configs = [
        ("driver", true, vec![file("amicus.js")], &page[..]),
        (
            "app",
            false,
            vec![file("app.js"), file("editor.js"), file("i18n.js")],
            &page[..],
        ),
        (
            "worker",
            true,
            vec![file("preview-worker.js")],
            &["esnext", "webworker"][..],
        ),
    ];
    for (name, strict, files, lib) in configs {
        let config = serde_json::json!({
            "compilerOptions": {
                "allowJs": true,
                "checkJs": true,
                "noEmit": true,
                "strict": strict,
                "noImplicitAny": false,
                "target": "es2022",
                "module": "es2022",
                "moduleResolution": "bundler",
                "lib": lib,
            },
            "files": files,
        });
        let path = check.join(format!("{name}.json"));
        std::fs::write(&path, config.to_string()).map_err(|e| e.to_string())?;
        run(
            "node",
            &[&tsc.to_string_lossy(), "--project", &path.to_string_lossy()],
        )?;
    }
    eprintln!("web app: the JavaScript checks against the generated declarations (tsc --noEmit)");
    Ok(())
}

/// Writes `<file>.br` and `<file>.gz` (each at its best compression)
/// beside every text or wasm file under `dir`, for the server to send to
/// browsers that accept them: brotli is offered by browsers over HTTPS and
/// takes the client's module to about a quarter, gzip to about a third;
/// that matters on weak connections. Brotli at its best takes minutes on
/// the modules, so its output is kept in `<target>/web-brotli/` under a
/// digest of the input and reused while the input does not change.
fn compress_dir(dir: &std::path::Path) -> Result<(), String> {
    let target = std::fs::canonicalize(target_dir()).map_err(|e| e.to_string())?;
    let cache = target.join("web-brotli");
    std::fs::create_dir_all(&cache).map_err(|e| e.to_string())?;
    let mut used = std::collections::HashSet::new();
    compress_files(dir, &cache, &mut used)?;
    // What this build did not use belongs to older builds (what another
    // build is writing, `.partial-<pid>`, is its own).
    for entry in std::fs::read_dir(&cache).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        if !used.contains(&name) && !name.to_string_lossy().contains(".partial-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

fn compress_files(
    dir: &std::path::Path,
    cache: &std::path::Path,
    used: &mut std::collections::HashSet<std::ffi::OsString>,
) -> Result<(), String> {
    use std::hash::Hasher;
    use std::io::Write;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            compress_files(&path, cache, used)?;
            continue;
        }
        let compressible = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["js", "wasm", "css", "html", "json", "ts", "svg"].contains(&e));
        if !compressible {
            continue;
        }
        let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let sibling = |suffix: &str| {
            let mut name = path.clone().into_os_string();
            name.push(".");
            name.push(suffix);
            std::path::PathBuf::from(name)
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&data).map_err(|e| e.to_string())?;
        let gz = gz.finish().map_err(|e| e.to_string())?;
        std::fs::write(sibling("gz"), gz).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut digest = std::hash::DefaultHasher::new();
        digest.write(&data);
        let key = std::ffi::OsString::from(format!("{:016x}-{}.br", digest.finish(), data.len()));
        let kept = cache.join(&key);
        let br = match std::fs::read(&kept) {
            Ok(br) => br,
            Err(_) => {
                // Quality 11 (the best) and a 4 MiB window (22), which
                // every browser's decoder takes.
                let mut br = brotli::CompressorWriter::new(Vec::new(), 1 << 16, 11, 22);
                br.write_all(&data).map_err(|e| e.to_string())?;
                br.flush().map_err(|e| e.to_string())?;
                let br = br.into_inner();
                // Renamed into place whole: an interrupted build leaves no
                // truncated copy to be served by the next one.
                let partial = kept.with_extension(format!("partial-{}", std::process::id()));
                std::fs::write(&partial, &br)
                    .and_then(|()| std::fs::rename(&partial, &kept))
                    .map_err(|e| format!("{}: {e}", kept.display()))?;
                br
            }
        };
        used.insert(key);
        std::fs::write(sibling("br"), br).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &dest)?;
        } else {
            std::fs::copy(&path, &dest).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

fn serve(args: &[String]) -> Result<(), String> {
    let web = web()?;
    let web = web.to_string_lossy().into_owned();
    let mut all = vec![
        "run",
        "--release",
        "-p",
        "amicus",
        "--bin",
        "amicus",
        "--",
        "serve",
        "--web",
        &web,
    ];
    all.extend(args.iter().map(String::as_str));
    run("cargo", &all)
}

/// The fuzz targets of `fuzz/fuzz_targets/` (bodies in `tests/src/fuzz.rs`).
const FUZZ_TARGETS: [&str; 5] = ["frames", "envelopes", "mls", "documents", "search_query"];

fn fuzz(args: &[String]) -> Result<(), String> {
    let long = std::env::var("AMICUS_LONG").is_ok_and(|v| v == "1");
    let mut seconds: u64 = match std::env::var("AMICUS_FUZZ_SECONDS") {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("AMICUS_FUZZ_SECONDS={v} is not a number"))?,
        Err(_) if long => 600,
        Err(_) => 15,
    };
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(a) = args.next() {
        if a == "--seconds" {
            seconds = args
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or("--seconds needs a number")?;
        } else if FUZZ_TARGETS.contains(&a.as_str()) {
            targets.push(a.as_str());
        } else {
            return Err(format!(
                "unknown fuzz target {a}; the targets are {}",
                FUZZ_TARGETS.join(", ")
            ));
        }
    }
    if targets.is_empty() {
        targets = FUZZ_TARGETS.to_vec();
    }
    let toolchains = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map_err(|e| format!("rustup is needed for the nightly toolchain: {e}"))?;
    if !String::from_utf8_lossy(&toolchains.stdout).contains("nightly") {
        return Err(
            "cargo fuzz needs a nightly toolchain: rustup toolchain install nightly".into(),
        );
    }
    let cargo_fuzz_installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !cargo_fuzz_installed {
        run("cargo", &["install", "cargo-fuzz", "--locked"])?;
    }
    let target = std::path::absolute(target_dir()).map_err(|e| e.to_string())?;
    let build_dir = target.join("fuzz");
    for name in targets {
        let corpus = target.join("fuzz-corpus").join(name);
        std::fs::create_dir_all(&corpus).map_err(|e| e.to_string())?;
        let regressions = format!("fuzz/regressions/{name}");
        let max_time = format!("-max_total_time={seconds}");
        let args = [
            "+nightly",
            "fuzz",
            "run",
            name,
            "--sanitizer",
            "none",
            "--target-dir",
            build_dir.to_str().ok_or("target directory is not UTF-8")?,
            corpus.to_str().ok_or("target directory is not UTF-8")?,
            &regressions,
            "--",
            &max_time,
            "-timeout=20",
            "-rss_limit_mb=4096",
            "-print_final_stats=1",
        ];
        eprintln!("+ cargo {}", args.join(" "));
        let status = Command::new("cargo")
            .args(args)
            // The outer cargo's toolchain must not leak into the nightly one.
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC")
            .env_remove("RUSTDOC")
            .env_remove("CARGO")
            .status()
            .map_err(|e| format!("could not start cargo fuzz: {e}"))?;
        if !status.success() {
            return Err(format!(
                "fuzz target {name} failed ({status}): the input is under fuzz/artifacts/{name}/; keep it as fuzz/regressions/{name}/<what-it-shows> once fixed"
            ));
        }
    }
    Ok(())
}

fn ci() -> Result<(), String> {
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--release",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    test()
}
