//! Search: indexing throughput and query latency of `amicus-search` against
//! SQLite FTS5, on the same generated corpus and the same queries, in the
//! same run.
//!
//! The corpus mixes languages as the network's libraries do (per 20
//! documents: 7 French, 7 English, 3 Arabic, 1 Swahili, 1 Portuguese, 1
//! German), each drawn by `amicus_fixtures::Corpus` from a 100,000-word
//! vocabulary with Zipf frequencies, 50–550 words a document. Sizes:
//! `AMICUS_BENCH_SEARCH_DOCS` (comma-separated; default 100,000 and
//! 1,000,000; 2,000 in quick mode).
//!
//! - Indexing: documents are generated in batches of 10,000 outside the
//!   clock; the clock runs over the inserts and a commit per batch
//!   (amicus: `SearchIndex::bulk_load`, the path of a rebuild, with
//!   `insert_new` and `commit`, and at the end the merge of the segments
//!   into one; FTS5: `INSERT`s in one transaction). One run per size.
//! - Queries: 500 (100 in quick mode), from words of indexed French and
//!   English documents, in five kinds: one word, two words, three words, a
//!   quoted two-word phrase, a word and a 4-letter prefix. Each engine runs
//!   them all once to warm up, then three timed passes give p50 and p99;
//!   criterion then measures the median per kind.
//! - amicus: `SearchIndex::search` as the server calls it: every language
//!   in scope (or the query's language only, "amicus, language filter"),
//!   exact + typo + prefix matching, top 10, total, facets, snippets.
//! - FTS5: `unicode61 remove_diacritics 2` (accent-insensitive, no
//!   stemming, no typo tolerance), words OR-ed as amicus does, phrase and
//!   prefix syntax, BM25 with the title weighted 2, top 10 with
//!   `snippet()`, and a `count(*)` for the total. WAL, synchronous=NORMAL,
//!   one transaction per batch.

use std::hint::black_box;
use std::time::{Duration, Instant};

use amicus_benches::{
    criterion, criterion_median, dir_size, fmt_duration, peak_rss, percentile, quick, scratch,
    write_section,
};
use amicus_search::{PublicDocument, SearchIndex, SearchQuery};
use rusqlite::{Connection, params};
use serde_json::json;

#[path = "shared/search_corpus.rs"]
mod search_corpus;

use search_corpus::{BATCH, Generator, KINDS, Query, queries};

struct Fts {
    conn: Connection,
}

impl Fts {
    fn open(path: &std::path::Path) -> Self {
        let conn = Connection::open(path).expect("open sqlite");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE VIRTUAL TABLE docs USING fts5(
                 space UNINDEXED, id UNINDEXED, lang UNINDEXED, title, body,
                 tokenize = 'unicode61 remove_diacritics 2');",
        )
        .expect("create the FTS5 table");
        Self { conn }
    }

    fn insert(&mut self, docs: &[PublicDocument]) {
        let tx = self.conn.transaction().expect("transaction");
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO docs (space, id, lang, title, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .expect("prepare");
            for d in docs {
                let code = d.language.map(|l| l.code()).unwrap_or("");
                stmt.execute(params![d.space, d.id, code, d.title, d.body])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }

    /// Top 10 with snippets, and the total.
    fn search(&self, q: &str) -> (usize, usize) {
        let mut top = self
            .conn
            .prepare_cached(
                "SELECT id, title, snippet(docs, 4, '<mark>', '</mark>', '…', 24) FROM docs
                 WHERE docs MATCH ?1 ORDER BY bm25(docs, 0.0, 0.0, 0.0, 2.0, 1.0) LIMIT 10",
            )
            .expect("prepare");
        let hits = top
            .query_map(params![q], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(2)?))
            })
            .expect("query")
            .map(|r| r.expect("row"))
            .map(black_box)
            .count();
        let total: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM docs WHERE docs MATCH ?1")
            .expect("prepare")
            .query_row(params![q], |r| r.get(0))
            .expect("count");
        (hits, total as usize)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Engine {
    Amicus,
    AmicusLang,
    Fts5,
}

impl Engine {
    const ALL: [Self; 3] = [Self::Amicus, Self::AmicusLang, Self::Fts5];

    fn name(self) -> &'static str {
        match self {
            Self::Amicus => "amicus",
            Self::AmicusLang => "amicus, language filter",
            Self::Fts5 => "SQLite FTS5",
        }
    }

    fn id(self) -> &'static str {
        match self {
            Self::Amicus => "amicus",
            Self::AmicusLang => "amicus-lang",
            Self::Fts5 => "fts5",
        }
    }
}

fn run(engine: Engine, index: &SearchIndex, fts: &Fts, q: &Query) -> (usize, usize) {
    match engine {
        Engine::Amicus | Engine::AmicusLang => {
            let r = index
                .search(&SearchQuery {
                    text: q.amicus.clone(),
                    languages: if engine == Engine::AmicusLang {
                        vec![q.lang]
                    } else {
                        Vec::new()
                    },
                    limit: 10,
                    ..Default::default()
                })
                .expect("search");
            (black_box(r.hits).len(), r.total)
        }
        Engine::Fts5 => fts.search(&q.fts),
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

fn main() {
    let quick = quick();
    let sizes: Vec<usize> = match std::env::var("AMICUS_BENCH_SEARCH_DOCS") {
        Ok(v) => v
            .split(',')
            .map(|s| s.trim().replace('_', "").parse().expect("a document count"))
            .collect(),
        Err(_) if quick => vec![2_000],
        Err(_) => vec![100_000, 1_000_000],
    };
    let query_count = if quick { 100 } else { 500 };
    let mut c = criterion();
    let mut md = String::new();
    let mut raw = Vec::new();
    let mut indexing_rows = Vec::new();
    let mut latency_rows = Vec::new();
    let mut kind_rows = Vec::new();
    for &n in &sizes {
        let dir = scratch();
        eprintln!("search: {n} documents");
        // Indexing.
        let index = SearchIndex::open(&dir.path().join("tantivy")).expect("open the index");
        let mut fts = Fts::open(&dir.path().join("fts5.sqlite"));
        let mut t_fts = Duration::ZERO;
        let mut bytes = 0u64;
        let mut generator = Generator::new();
        // The path of a rebuild (`amicus reindex`): a bulk writer with a
        // thread per core, a commit per batch, the segments merged into
        // one at the end. The clock runs over all of it but the
        // generation of documents and FTS5's inserts.
        let started = Instant::now();
        let mut outside = Duration::ZERO;
        index
            .bulk_load(|index| {
                let mut done = 0;
                while done < n {
                    let t = Instant::now();
                    let docs = generator.batch(BATCH.min(n - done));
                    outside += t.elapsed();
                    done += docs.len();
                    bytes += docs
                        .iter()
                        .map(|d| (d.title.len() + d.body.len()) as u64)
                        .sum::<u64>();
                    // Each engine commits each batch: tantivy indexes in
                    // background threads, and without the commit they
                    // would go on indexing while FTS5's clock runs.
                    for d in &docs {
                        index.insert_new(d)?;
                    }
                    index.commit()?;
                    let t = Instant::now();
                    fts.insert(&docs);
                    t_fts += t.elapsed();
                    outside += t.elapsed();
                }
                Ok(())
            })
            .expect("index");
        let t_amicus = started.elapsed() - outside;
        assert_eq!(index.len(), n as u64, "every document indexed");
        let size_amicus = dir_size(&dir.path().join("tantivy"));
        let size_fts = std::fs::metadata(dir.path().join("fts5.sqlite"))
            .map(|m| m.len())
            .unwrap_or(0)
            + std::fs::metadata(dir.path().join("fts5.sqlite-wal"))
                .map(|m| m.len())
                .unwrap_or(0);
        let mb = bytes as f64 / 1e6;
        for (engine, t, size) in [
            (Engine::Amicus, t_amicus, size_amicus),
            (Engine::Fts5, t_fts, size_fts),
        ] {
            let docs_per_s = n as f64 / t.as_secs_f64();
            indexing_rows.push(format!(
                "| {n} | {} | {} | {:.0} | {:.1} | {:.0} MB | {} |",
                engine.name(),
                fmt_duration(t),
                docs_per_s,
                mb / t.as_secs_f64(),
                size as f64 / 1e6,
                if engine == Engine::Amicus {
                    ratio(t_fts.as_secs_f64(), t_amicus.as_secs_f64())
                } else {
                    "1.00× (baseline)".into()
                },
            ));
            raw.push(json!({
                "documents": n, "engine": engine.id(), "phase": "indexing",
                "seconds": t.as_secs_f64(), "docs_per_s": docs_per_s,
                "text_mb": mb, "index_bytes": size,
            }));
        }

        // Latency distribution.
        let qs = queries(query_count);
        let mut measured = Vec::new();
        for engine in Engine::ALL {
            let mut found = 0;
            for q in &qs {
                if run(engine, &index, &fts, q).1 > 0 {
                    found += 1;
                } else if std::env::var_os("AMICUS_BENCH_DEBUG").is_some() {
                    eprintln!("{}: no hit for {:?}", engine.id(), q.amicus);
                }
            }
            let mut samples = Vec::new();
            for _ in 0..3 {
                for q in &qs {
                    let t = Instant::now();
                    black_box(run(engine, &index, &fts, q));
                    samples.push(t.elapsed());
                }
            }
            samples.sort();
            let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
            measured.push((
                engine,
                percentile(&samples, 50.0),
                percentile(&samples, 99.0),
                mean,
                found,
            ));
        }
        let base = measured[2].1.as_secs_f64();
        for (engine, p50, p99, mean, found) in measured {
            latency_rows.push(format!(
                "| {n} | {} | {} | {} | {} | {found}/{} | {} |",
                engine.name(),
                fmt_duration(p50),
                fmt_duration(p99),
                fmt_duration(mean),
                qs.len(),
                if engine == Engine::Fts5 {
                    "1.00× (baseline)".into()
                } else {
                    ratio(p50.as_secs_f64(), base)
                },
            ));
            raw.push(json!({
                "documents": n, "engine": engine.id(), "phase": "query",
                "p50_s": p50.as_secs_f64(), "p99_s": p99.as_secs_f64(), "mean_s": mean.as_secs_f64(),
                "queries": qs.len(), "queries_with_hits": found,
            }));
        }

        // Criterion: the median per kind of query.
        for kind in KINDS {
            let of_kind: Vec<&Query> = qs.iter().filter(|q| q.kind == kind).collect();
            let group_name = format!("search-{n}/{kind}");
            let mut group = c.benchmark_group(&group_name);
            for engine in Engine::ALL {
                let mut i = 0;
                group.bench_function(engine.id(), |b| {
                    b.iter(|| {
                        let q = of_kind[i % of_kind.len()];
                        i += 1;
                        black_box(run(engine, &index, &fts, q))
                    })
                });
            }
            group.finish();
            let medians: Vec<Option<Duration>> = Engine::ALL
                .iter()
                .map(|e| criterion_median(&group_name, e.id()))
                .collect();
            let cell = |d: Option<Duration>| d.map_or("–".to_owned(), fmt_duration);
            let base = medians[2].map_or(0.0, |d| d.as_secs_f64());
            kind_rows.push(format!(
                "| {n} | {kind} | {} | {} | {} | {} | {} |",
                cell(medians[0]),
                cell(medians[1]),
                cell(medians[2]),
                medians[0].map_or("–".into(), |d| ratio(d.as_secs_f64(), base)),
                medians[1].map_or("–".into(), |d| ratio(d.as_secs_f64(), base)),
            ));
        }
        drop(index);
        drop(fts);
    }

    md.push_str("## Search: amicus-search against SQLite FTS5\n\n");
    md.push_str(
        "`benches/benches/search.rs`. A generated multilingual corpus (per 20 documents: 7 French, \
         7 English, 3 Arabic, 1 Swahili, 1 Portuguese, 1 German; Zipf frequencies over a \
         100,000-word vocabulary per language; 50–550 words a document). Both engines index \
         the same documents and answer the same queries in the same run. amicus does more per \
         query than FTS5: it stems (FTS5 does not), tolerates typos and matches prefixes on \
         every word of 6 letters or more, and computes facets; FTS5 matches exact folded \
         tokens.\n\n",
    );
    md.push_str("### Indexing (one run per size; generation outside the clock; both engines commit every 10,000 documents)\n\n");
    md.push_str("| documents | engine | time | docs/s | MB/s of text | index size | speed vs FTS5 |\n|---:|---|---:|---:|---:|---:|---:|\n");
    for r in &indexing_rows {
        md.push_str(r);
        md.push('\n');
    }
    md.push_str(&format!(
        "\n### Query latency ({query_count} queries × 3 passes after a warm-up pass; top 10 with snippets and the total)\n\n"
    ));
    md.push_str("| documents | engine | p50 | p99 | mean | queries with hits | p50 vs FTS5 |\n|---:|---|---:|---:|---:|---:|---:|\n");
    for r in &latency_rows {
        md.push_str(r);
        md.push('\n');
    }
    md.push_str("\n### Median per kind of query (criterion)\n\n");
    md.push_str("| documents | kind | amicus | amicus, language filter | SQLite FTS5 | amicus vs FTS5 | filtered vs FTS5 |\n|---:|---|---:|---:|---:|---:|---:|\n");
    for r in &kind_rows {
        md.push_str(r);
        md.push('\n');
    }
    if let Some(rss) = peak_rss() {
        md.push_str(&format!(
            "\nPeak memory of the benchmark process (both engines, largest size): {:.0} MiB.\n",
            rss as f64 / (1024.0 * 1024.0)
        ));
    }
    write_section("search", &md, &json!(raw));
    c.final_summary();
}
