//! Where a search's time goes, on the search benchmark's corpus kept on disk.
//!
//! ```text
//! cargo run --release -p amicus-benches --example search_profile -- DIR [DOCUMENTS]
//! ```
//!
//! Builds the index of `DOCUMENTS` (default 1,000,000) generated documents
//! in `DIR` the first time (as the benchmark does: `bulk_load`, a commit
//! every 10,000, the segments merged at the end), and reuses it afterwards. Then it runs the benchmark's
//! queries (every language in scope, top 10 with snippets, the total and
//! the facets) and prints p50 and p99 overall and per kind of query, and
//! the slowest queries. Run it under `perf record -g` to see where the
//! time goes; `AMICUS_PROFILE_PASSES` sets the number of timed passes
//! (default 3).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use amicus_search::{SearchIndex, SearchQuery};

#[path = "../benches/shared/search_corpus.rs"]
mod search_corpus;

use search_corpus::{BATCH, Generator, KINDS, queries};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: search_profile DIR [DOCUMENTS]"));
    let n: u64 = args
        .next()
        .map(|s| s.replace('_', "").parse().expect("a document count"))
        .unwrap_or(1_000_000);
    let passes: usize = std::env::var("AMICUS_PROFILE_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let index = SearchIndex::open(&dir).expect("open the index");
    if index.len() != n {
        eprintln!("indexing {n} documents into {}", dir.display());
        let started = Instant::now();
        let mut outside = Duration::ZERO;
        index
            .bulk_load(|index| {
                index.clear()?;
                let mut generator = Generator::new();
                let mut done = 0u64;
                while done < n {
                    let t = Instant::now();
                    let docs = generator.batch(BATCH.min((n - done) as usize));
                    outside += t.elapsed();
                    done += docs.len() as u64;
                    for d in &docs {
                        index.insert_new(d)?;
                    }
                    index.commit()?;
                }
                Ok(())
            })
            .expect("index");
        let spent = started.elapsed() - outside;
        eprintln!(
            "indexed and merged in {:.1} s ({:.0} docs/s)",
            spent.as_secs_f64(),
            n as f64 / spent.as_secs_f64()
        );
    }
    let qs = queries(500);
    let search = |text: &str| {
        index
            .search(&SearchQuery {
                text: text.to_owned(),
                limit: 10,
                ..Default::default()
            })
            .expect("search")
    };
    let mut found = 0;
    for q in &qs {
        if search(&q.amicus).total > 0 {
            found += 1;
        }
    }
    let mut all = Vec::new();
    let mut per_kind: Vec<(&str, Vec<Duration>)> = KINDS.iter().map(|k| (*k, Vec::new())).collect();
    let mut slowest: Vec<(Duration, String, usize)> = Vec::new();
    for _ in 0..passes {
        for q in &qs {
            let t = Instant::now();
            let r = search(&q.amicus);
            let spent = t.elapsed();
            all.push(spent);
            if let Some((_, v)) = per_kind.iter_mut().find(|(k, _)| *k == q.kind) {
                v.push(spent);
            }
            slowest.push((spent, q.amicus.clone(), r.total));
        }
    }
    all.sort();
    println!(
        "{} queries × {passes}: p50 {:.2} ms, p99 {:.2} ms, {found}/{} with hits",
        qs.len(),
        percentile(&all, 50.0).as_secs_f64() * 1e3,
        percentile(&all, 99.0).as_secs_f64() * 1e3,
        qs.len()
    );
    for (kind, mut v) in per_kind {
        v.sort();
        println!(
            "  {kind:12} p50 {:7.2} ms  p99 {:7.2} ms",
            percentile(&v, 50.0).as_secs_f64() * 1e3,
            percentile(&v, 99.0).as_secs_f64() * 1e3
        );
    }
    slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
    slowest.dedup_by(|a, b| a.1 == b.1);
    println!("slowest:");
    for (t, text, total) in slowest.iter().take(12) {
        println!(
            "  {:7.2} ms  {total:7} hits  {text:?}",
            t.as_secs_f64() * 1e3
        );
    }
}
