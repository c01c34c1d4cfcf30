//! The search benchmark's corpus and queries, shared by
//! `benches/search.rs` and `examples/search_profile.rs` so that both measure
//! the same documents and the same questions.
// The profiler reads only amicus's side of a query.
#![allow(dead_code)]

use amicus_fixtures::{Corpus, UdhrLanguage};
use amicus_search::{DocKind, Lang, PublicDocument};

pub const VOCABULARY: usize = 100_000;
pub const BATCH: usize = 10_000;
pub const MIX: [UdhrLanguage; 20] = {
    use UdhrLanguage::*;
    [
        French, English, French, English, Arabic, French, English, Swahili, French, English,
        Arabic, French, English, Portuguese, French, English, Arabic, French, English, German,
    ]
};
pub const KINDS: [&str; 5] = ["one word", "two words", "three words", "phrase", "prefix"];

pub fn lang(l: UdhrLanguage) -> Lang {
    Lang::from_code(l.code()).expect("a fixture language")
}

/// The corpus: one generator per language, documents in `MIX` order.
pub struct Generator {
    corpora: Vec<(UdhrLanguage, Corpus)>,
    next: usize,
}

impl Generator {
    pub fn new() -> Self {
        let mut languages: Vec<UdhrLanguage> = MIX.to_vec();
        languages.sort();
        languages.dedup();
        Self {
            corpora: languages.into_iter().map(|l| (l, corpus(l))).collect(),
            next: 0,
        }
    }

    pub fn batch(&mut self, n: usize) -> Vec<PublicDocument> {
        (0..n)
            .map(|_| {
                let i = self.next;
                self.next += 1;
                let l = MIX[i % MIX.len()];
                let (_, c) = self
                    .corpora
                    .iter_mut()
                    .find(|(x, _)| *x == l)
                    .expect("a corpus per language");
                let g = c.document();
                PublicDocument {
                    space: format!("library-{}", i % 50),
                    id: format!("doc-{i}"),
                    title: g.title,
                    body: g.body,
                    language: Some(lang(l)),
                    kind: DocKind::Document,
                    year: Some(g.year),
                }
            })
            .collect()
    }
}

pub fn corpus(l: UdhrLanguage) -> Corpus {
    Corpus::with_vocabulary(l, 1 + l as u64, VOCABULARY)
}

pub struct Query {
    pub kind: &'static str,
    pub lang: Lang,
    pub amicus: String,
    pub fts: String,
}

/// Queries from words of the first French and English documents (which
/// are indexed at every size).
pub fn queries(n: usize) -> Vec<Query> {
    let mut sources = [
        (UdhrLanguage::French, corpus(UdhrLanguage::French)),
        (UdhrLanguage::English, corpus(UdhrLanguage::English)),
    ];
    let mut out = Vec::new();
    for i in 0..n {
        let (l, c) = &mut sources[i % 2];
        let body = c.document().body;
        let words: Vec<&str> = body.split(' ').filter(|w| w.chars().count() >= 5).collect();
        let all: Vec<&str> = body.split(' ').collect();
        let w = |k: usize| words[(i * 7 + k * 13) % words.len()];
        let kind = KINDS[(i / 2) % KINDS.len()];
        let quote = |ws: &[&str]| {
            ws.iter()
                .map(|w| format!("\"{w}\""))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let (amicus, fts) = match kind {
            "one word" => (format!("{} ", w(0)), quote(&[w(0)])),
            "two words" => (format!("{} {} ", w(0), w(1)), quote(&[w(0), w(1)])),
            "three words" => (
                format!("{} {} {} ", w(0), w(1), w(2)),
                quote(&[w(0), w(1), w(2)]),
            ),
            "phrase" => {
                let at = (i * 11) % (all.len() - 1);
                let (a, b) = (all[at], all[at + 1]);
                (format!("\"{a} {b}\""), format!("\"{a} {b}\""))
            }
            _ => {
                let prefix: String = w(1).chars().take(4).collect();
                (
                    format!("{} {prefix}", w(0)),
                    format!("\"{}\" OR \"{prefix}\"*", w(0)),
                )
            }
        };
        out.push(Query {
            kind,
            lang: lang(*l),
            amicus,
            fts,
        });
    }
    out
}
