//! A query of words: its best hits without scoring every match, and every
//! match for the total and the facets.
//!
//! A query of words (no phrase) is a union of clauses whose scores add
//! up: each stem exactly (BM25 times a weight) and each typo or prefix
//! automaton (a constant). tantivy scores such a union document by
//! document, and a common word matches half of a large library: 25 ms of
//! scoring at a million documents. Here the best hits are found with
//! MaxScore (Turtle and Flood, 1995): once `k` hits are held, the clauses
//! whose bounds add up to no more than the `k`-th score cannot bring a new
//! hit on their own, so only documents of the other clauses are visited,
//! and the first ones are only looked up. The scores are the same sums as
//! tantivy's; only documents that cannot enter the page are skipped.
//!
//! The total and the facets need every match: each clause's documents are
//! read into one bitset per segment (a posting list decodes in blocks of
//! 128, far faster than a scorer visits it), then counted against the facet
//! values ([`crate::facets`]).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use tantivy::query::{Bm25Weight, EnableScoring, Query, Scorer, TermQuery, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, DocId, DocSet, Score, Searcher, SegmentReader, TERMINATED, Term};

use crate::automaton::Dfa;
use crate::bits::{Bits, each_block};
use crate::facets::{Counts, FacetCache};

/// One clause of a union of words.
pub enum Clause {
    /// Documents holding the term, scoring its BM25 times `weight`.
    Term {
        /// The term.
        term: Term,
        /// Its weight.
        weight: Score,
    },
    /// Documents holding a term of `field` that the automaton accepts,
    /// each scoring `weight`.
    Automaton {
        /// The field.
        field: Field,
        /// The automaton.
        dfa: Arc<Dfa>,
        /// The score of a document it matches.
        weight: Score,
    },
}

/// The clauses with identical ones merged into one of the summed weight
/// (the same word twice in a query, or a language asked for twice): the
/// scores are the same, BM25 and the constants being linear in the weight,
/// and each is evaluated once.
pub fn merged(clauses: Vec<Clause>) -> Vec<Clause> {
    /// A clause's identity: its term, or its field and automaton (one
    /// automaton per stem, distance and prefix in a search).
    #[derive(PartialEq, Eq, Hash)]
    enum Key {
        Term(Term),
        Automaton(Field, usize),
    }
    let mut out: Vec<Clause> = Vec::new();
    let mut seen: HashMap<Key, usize> = HashMap::new();
    for c in clauses {
        let key = match &c {
            Clause::Term { term, .. } => Key::Term(term.clone()),
            Clause::Automaton { field, dfa, .. } => {
                Key::Automaton(*field, Arc::as_ptr(dfa) as usize)
            }
        };
        match seen.get(&key) {
            Some(i) => *out[*i].weight_mut() += c.weight(),
            None => {
                seen.insert(key, out.len());
                out.push(c);
            }
        }
    }
    out
}

impl Clause {
    fn weight(&self) -> Score {
        match self {
            Self::Term { weight, .. } | Self::Automaton { weight, .. } => *weight,
        }
    }

    fn weight_mut(&mut self) -> &mut Score {
        match self {
            Self::Term { weight, .. } | Self::Automaton { weight, .. } => weight,
        }
    }
}

/// What [`search`] found.
pub struct Found {
    /// The page of best hits, best first.
    pub top: Vec<(Score, DocAddress)>,
    /// How many documents match.
    pub total: usize,
    /// The facet counts of the matches.
    pub counts: Counts,
}

/// A clause's weight, made once per search.
enum Prepared<'a> {
    Term {
        term: &'a Term,
        weight: Box<dyn Weight>,
        boost: Score,
        bound: Score,
    },
    Automaton {
        field: Field,
        dfa: &'a Dfa,
        weight: Score,
    },
}

/// A clause's documents in one segment, in order.
enum Cursor {
    Scorer(Box<dyn Scorer>),
    /// The automata together: the documents any of them holds, each
    /// scoring the sum of the weights of those that hold it.
    Automata {
        docs: Bits,
        scores: Vec<Score>,
        doc: DocId,
    },
}

impl Cursor {
    fn doc(&self) -> DocId {
        match self {
            Self::Scorer(s) => s.doc(),
            Self::Automata { doc, .. } => *doc,
        }
    }

    fn advance(&mut self) {
        match self {
            Self::Scorer(s) => {
                s.advance();
            }
            Self::Automata { docs, doc, .. } => *doc = docs.next_from(*doc + 1),
        }
    }

    fn seek(&mut self, target: DocId) {
        match self {
            Self::Scorer(s) => {
                s.seek(target);
            }
            Self::Automata { docs, doc, .. } => *doc = docs.next_from(target),
        }
    }

    fn score(&mut self) -> Score {
        match self {
            Self::Scorer(s) => s.score(),
            Self::Automata { scores, doc, .. } => scores[*doc as usize],
        }
    }
}

/// A hit held for the page; the heap keeps the worst on top.
#[derive(PartialEq)]
struct Held {
    score: Score,
    address: (u32, DocId),
}

impl Eq for Held {}

impl Ord for Held {
    /// Greater is worse: a lower score, or an equal score and a later
    /// document (as tantivy breaks ties).
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.address.cmp(&other.address))
    }
}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A bound a little above `score`: sums of floats taken in another order
/// may differ in the last bits, and a bound must never be below a score.
fn above(score: Score) -> Score {
    score * 1.000_01 + 1e-6
}

/// The most a document can score for `term` at `weight`. tantivy's
/// `max_score` takes the longest field length, and a short field holding
/// the term many times scores more; the shortest length and the most
/// occurrences bound every score.
pub fn term_bound(searcher: &Searcher, term: &Term, weight: Score) -> tantivy::Result<Score> {
    Ok(above(
        Bm25Weight::for_terms(searcher, std::slice::from_ref(term))?
            .boost_by(weight)
            .score(0, u32::MAX),
    ))
}

/// The best `limit` hits after `offset` of the union of `clauses` (within
/// the documents holding `filter`, if given), the number of matches and
/// their facet counts.
pub fn search(
    searcher: &Searcher,
    clauses: &[Clause],
    filter: Option<&Term>,
    limit: usize,
    offset: usize,
    facets: &FacetCache,
) -> tantivy::Result<Found> {
    let scoring = EnableScoring::enabled_from_searcher(searcher);
    let mut prepared = Vec::new();
    for c in clauses {
        match c {
            Clause::Term { term, weight } => {
                if searcher.doc_freq(term)? == 0 {
                    continue;
                }
                // The weight is given to the scorer as a boost, as
                // tantivy's `BoostQuery` does.
                prepared.push(Prepared::Term {
                    term,
                    weight: TermQuery::new(term.clone(), IndexRecordOption::WithFreqs)
                        .weight(scoring)?,
                    boost: *weight,
                    bound: term_bound(searcher, term, *weight)?,
                });
            }
            Clause::Automaton { field, dfa, weight } => prepared.push(Prepared::Automaton {
                field: *field,
                dfa,
                weight: *weight,
            }),
        }
    }
    let k = limit.saturating_add(offset);
    let mut held: BinaryHeap<Held> = BinaryHeap::with_capacity(k.min(1024) + 1);
    let mut total = 0u64;
    let mut counts = Counts::new();
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        let mut matches = Bits::new(reader.max_doc());
        let mut cursors: Vec<(Score, Cursor)> = Vec::new();
        // The automata are one clause: its bound is the highest sum a
        // document actually gets, not the sum of every automaton's weight
        // (a word's typo and prefix automata in five languages and two
        // fields would add up to more than most hits score).
        let mut automata: Option<AutomataDocs> = None;
        for p in &prepared {
            match p {
                Prepared::Term {
                    term,
                    weight,
                    boost,
                    bound,
                } => {
                    read_postings(reader, term, &mut matches)?;
                    cursors.push((*bound, Cursor::Scorer(weight.scorer(reader, *boost)?)));
                }
                Prepared::Automaton { field, dfa, weight } => {
                    automata
                        .get_or_insert_with(|| AutomataDocs::new(reader.max_doc()))
                        .add(reader, *field, dfa, *weight)?;
                }
            }
        }
        if let Some(AutomataDocs { docs, scores, .. }) = automata {
            matches.union_with(&docs);
            let bound = scores.iter().copied().fold(0.0, Score::max);
            let doc = docs.next_from(0);
            cursors.push((above(bound), Cursor::Automata { docs, scores, doc }));
        }
        if let Some(term) = filter {
            let mut docs = Bits::new(reader.max_doc());
            read_postings(reader, term, &mut docs)?;
            matches.intersect_with(&docs);
        }
        if reader.has_deletes() {
            let mut doc = matches.next_from(0);
            while doc != TERMINATED {
                if reader.is_deleted(doc) {
                    matches.remove(doc);
                }
                doc = matches.next_from(doc + 1);
            }
        }
        total += matches.len();
        facets.count(reader, &matches, &mut counts)?;
        max_score(ord as u32, &mut cursors, &matches, k, &mut held);
    }
    let mut top: Vec<Held> = held.into_vec();
    top.sort();
    let top = top
        .into_iter()
        .skip(offset)
        .map(|h| (h.score, DocAddress::new(h.address.0, h.address.1)))
        .collect();
    Ok(Found {
        top,
        total: total as usize,
        counts,
    })
}

/// MaxScore over one segment's clauses (`(bound, cursor)`), keeping the
/// best `k` in `held`. Only documents in `matches` (live, and within the
/// filter) are eligible.
fn max_score(
    segment: u32,
    cursors: &mut [(Score, Cursor)],
    matches: &Bits,
    k: usize,
    held: &mut BinaryHeap<Held>,
) {
    if k == 0 {
        return;
    }
    cursors.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = cursors.len();
    // bounds[i]: the most clauses 0..i can add together.
    let mut bounds = vec![0.0 as Score; n + 1];
    for i in 0..n {
        bounds[i + 1] = bounds[i] + cursors[i].0;
    }
    let threshold = |held: &BinaryHeap<Held>| {
        if held.len() < k {
            Score::NEG_INFINITY
        } else {
            held.peek().map_or(Score::NEG_INFINITY, |h| h.score)
        }
    };
    // Clauses 0..first are not essential: together they cannot beat the
    // threshold.
    let essential = |theta: Score| bounds.iter().rposition(|b| *b <= theta).unwrap_or(0);
    let mut theta = threshold(held);
    let mut first = essential(theta);
    while first < n {
        let doc = cursors[first..]
            .iter()
            .map(|(_, c)| c.doc())
            .min()
            .unwrap_or(TERMINATED);
        if doc == TERMINATED {
            break;
        }
        if !matches.contains(doc) {
            // Deleted, or outside the filter: on to the next eligible
            // document (a small space's documents drive the walk).
            let next = matches.next_from(doc);
            for (_, c) in cursors[first..].iter_mut() {
                if c.doc() < next {
                    c.seek(next);
                }
            }
            continue;
        }
        let mut score = 0.0;
        for (_, c) in cursors[first..].iter_mut() {
            if c.doc() == doc {
                score += c.score();
                c.advance();
            }
        }
        let mut beaten = false;
        for i in (0..first).rev() {
            if score + bounds[i + 1] <= theta {
                beaten = true;
                break;
            }
            let c = &mut cursors[i].1;
            if c.doc() < doc {
                c.seek(doc);
            }
            if c.doc() == doc {
                score += c.score();
            }
        }
        if beaten || (held.len() >= k && score <= theta) {
            continue;
        }
        held.push(Held {
            score,
            address: (segment, doc),
        });
        if held.len() > k {
            held.pop();
        }
        let t = threshold(held);
        if t > theta {
            theta = t;
            first = essential(theta);
        }
    }
}

/// Adds the documents holding `term` to `into`.
fn read_postings(reader: &SegmentReader, term: &Term, into: &mut Bits) -> tantivy::Result<()> {
    let index = reader.inverted_index(term.field())?;
    if let Some(postings) = index.read_block_postings(term, IndexRecordOption::Basic)? {
        each_block(postings, |docs| docs.iter().for_each(|d| into.insert(*d)));
    }
    Ok(())
}

/// The automata of one segment as one clause: the documents any holds,
/// and for each document the sum of the weights of those that hold it.
struct AutomataDocs {
    docs: Bits,
    scores: Vec<Score>,
    /// For each document, the number of the last automaton that counted
    /// it (+1): a document holding several terms of one automaton counts
    /// once.
    counted: Vec<u32>,
    automata: u32,
}

impl AutomataDocs {
    fn new(max_doc: DocId) -> Self {
        Self {
            docs: Bits::new(max_doc),
            scores: vec![0.0; max_doc as usize],
            counted: vec![0; max_doc as usize],
            automata: 0,
        }
    }

    /// Adds the documents holding a term of `field` that `dfa` accepts,
    /// each scoring `weight` once.
    fn add(
        &mut self,
        reader: &SegmentReader,
        field: Field,
        dfa: &Dfa,
        weight: Score,
    ) -> tantivy::Result<()> {
        // Identical clauses are merged before (`merged`): a query of 1,000
        // characters has some 15,000 automata at most.
        self.automata += 1;
        let index = reader.inverted_index(field)?;
        let mut terms = index.terms().search(dfa).into_stream()?;
        while terms.advance() {
            let postings =
                index.read_block_postings_from_terminfo(terms.value(), IndexRecordOption::Basic)?;
            each_block(postings, |docs| {
                for d in docs {
                    let i = *d as usize;
                    if self.counted[i] != self.automata {
                        self.counted[i] = self.automata;
                        self.scores[i] += weight;
                        self.docs.insert(*d);
                    }
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tantivy::collector::TopDocs;
    use tantivy::query::{BoostQuery, TermQuery};
    use tantivy::schema::{Schema, TEXT};
    use tantivy::{Index, IndexWriter, TantivyDocument};

    use super::*;

    /// A short field holding a word many times scores above tantivy's
    /// `max_score`; the bound used to skip clauses is above every score.
    #[test]
    fn a_terms_bound_is_above_every_score() {
        let mut schema = Schema::builder();
        let title = schema.add_text_field("title", TEXT);
        let index = Index::create_in_ram(schema.build());
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        // Short titles (an average length near 5), and one long title
        // of a single word at a time.
        for i in 0..200 {
            let mut d = TantivyDocument::default();
            d.add_text(
                title,
                ["water", "clean water", "water is life for all"][i % 3],
            );
            writer.add_document(d).unwrap();
        }
        for n in [43, 47, 59] {
            let mut d = TantivyDocument::default();
            d.add_text(title, vec!["water"; n].join(" "));
            writer.add_document(d).unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let term = Term::from_field_text(title, "water");
        for weight in [0.3, 1.0, 2.0] {
            let best = searcher
                .search(
                    &BoostQuery::new(
                        Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs)),
                        weight,
                    ),
                    &TopDocs::with_limit(1).order_by_score(),
                )
                .unwrap()[0]
                .0;
            let bound = term_bound(&searcher, &term, weight).unwrap();
            assert!(best <= bound, "{best} > {bound}");
        }
    }

    #[test]
    fn identical_clauses_merge_into_one_of_the_summed_weight() {
        let mut schema = Schema::builder();
        let title = schema.add_text_field("title", TEXT);
        let body = schema.add_text_field("body", TEXT);
        let _ = schema.build();
        let mut automata = crate::automaton::Automata::default();
        let dfa = automata.get("water", 1, false);
        let t = |f, w: &str| Term::from_field_text(f, w);
        // The stem in the title and its typos in the body, twice.
        let twice = || {
            [
                Clause::Term {
                    term: t(title, "water"),
                    weight: 2.0,
                },
                Clause::Automaton {
                    field: body,
                    dfa: dfa.clone(),
                    weight: 0.3,
                },
            ]
        };
        let mut clauses = Vec::from(twice());
        clauses.push(Clause::Term {
            term: t(body, "water"),
            weight: 1.0,
        });
        clauses.extend(twice());
        clauses.push(Clause::Automaton {
            field: title,
            dfa,
            weight: 0.6,
        });
        let merged = merged(clauses);
        let weights: Vec<Score> = merged.iter().map(Clause::weight).collect();
        assert_eq!(weights, [4.0, 0.6, 1.0, 0.6]);
    }
}
