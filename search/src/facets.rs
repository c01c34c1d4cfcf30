//! Facet counts in time independent of how many documents match.
//!
//! tantivy's `FacetCollector` reads each matching document's facet
//! ordinals from a multi-valued column, some 40 ns a document: a word found
//! in half of a million documents spent 20 ms there. Here each segment's
//! documents of each facet value are read once, from the facet field's
//! postings, when the segment is first searched (segments never change:
//! deleted documents are left out by the matches, which only hold live
//! ones). A search gathers its matches into one bitset per segment
//! ([`Matches`]); a value's count is then the population count of the
//! intersection, 64 documents at a time, or a walk of the value's
//! documents when it has few.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::index::SegmentId;
use tantivy::schema::{Facet, Field, IndexRecordOption};
use tantivy::{DocId, Score, Searcher, SegmentReader};

use crate::bits::{Bits, each_block};

/// The documents of one facet value in one segment.
enum Docs {
    /// More than one document in 64: a bitset, intersected a word at a time.
    Dense(Bits),
    /// Fewer: their ids, each looked up in the matches.
    Sparse(Vec<DocId>),
}

/// The facet values of one segment: (facet, value) → documents, and
/// each document's values.
struct SegmentFacets {
    values: Vec<(String, String, Docs)>,
    /// The values of document `d` are `of_doc[starts[d]..starts[d + 1]]`
    /// (indices into `values`); empty if a segment has more than 65,536
    /// values, which are then counted value by value.
    starts: Vec<u32>,
    of_doc: Vec<u16>,
    /// What counting value by value reads: a word per dense value and
    /// document, a document per listed one.
    by_value_cost: u64,
}

impl SegmentFacets {
    /// Reads every value of depth 2 (`/facet/value`) of `field`.
    fn read(reader: &SegmentReader, field: Field) -> tantivy::Result<Self> {
        let max_doc = reader.max_doc();
        let index = reader.inverted_index(field)?;
        let mut terms = index.terms().stream()?;
        let mut values = Vec::new();
        while terms.advance() {
            let Ok(facet) = Facet::from_encoded(terms.key().to_vec()) else {
                continue;
            };
            let path = facet.to_path();
            let [root, value] = path.as_slice() else {
                continue;
            };
            let info = terms.value();
            let dense = u64::from(info.doc_freq) * 64 > u64::from(max_doc);
            let postings =
                index.read_block_postings_from_terminfo(info, IndexRecordOption::Basic)?;
            let mut docs = if dense {
                Docs::Dense(Bits::new(max_doc))
            } else {
                Docs::Sparse(Vec::with_capacity(info.doc_freq as usize))
            };
            each_block(postings, |block| match &mut docs {
                Docs::Dense(set) => block.iter().for_each(|d| set.insert(*d)),
                Docs::Sparse(list) => list.extend_from_slice(block),
            });
            values.push(((*root).to_owned(), (*value).to_owned(), docs));
        }
        let words = u64::from(max_doc).div_ceil(64);
        let by_value_cost = values
            .iter()
            .map(|(_, _, docs)| match docs {
                Docs::Dense(_) => words,
                Docs::Sparse(list) => list.len() as u64,
            })
            .sum();
        let (starts, of_doc) = if values.len() <= usize::from(u16::MAX) + 1 {
            per_document(max_doc, &values)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Self {
            values,
            starts,
            of_doc,
            by_value_cost,
        })
    }

    /// Adds the counts of `matches` to `counts`: document by document
    /// (each match's values) or value by value (each value's documents
    /// against the matches), whichever reads less.
    fn count(&self, matches: &Bits, counts: &mut Counts) {
        let per_document = (self.of_doc.len() as u64).div_ceil(self.starts.len().max(2) as u64 - 1);
        let by_document =
            !self.starts.is_empty() && matches.len() * per_document.max(1) < self.by_value_cost;
        let counted: Vec<u64> = if by_document {
            let mut counted = vec![0u64; self.values.len()];
            matches.for_each(|doc| {
                let d = doc as usize;
                for v in &self.of_doc[self.starts[d] as usize..self.starts[d + 1] as usize] {
                    counted[usize::from(*v)] += 1;
                }
            });
            counted
        } else {
            // Only the words that hold a match are read, or all of them, in
            // order, when most do.
            let words = matches.non_empty_words();
            let all = words.len() * 2 > matches.word_count();
            self.values
                .iter()
                .map(|(_, _, docs)| match docs {
                    Docs::Dense(set) if all => matches.intersection_len(set),
                    Docs::Dense(set) => matches.intersection_len_in(set, &words),
                    Docs::Sparse(list) => {
                        list.iter().filter(|d| matches.contains(**d)).count() as u64
                    }
                })
                .collect()
        };
        for ((root, value, _), n) in self.values.iter().zip(counted) {
            if n > 0 {
                *counts
                    .entry(root.clone())
                    .or_default()
                    .entry(value.clone())
                    .or_default() += n;
            }
        }
    }
}

/// Each document's values (indices into `values`), as ranges of one
/// array.
fn per_document(max_doc: DocId, values: &[(String, String, Docs)]) -> (Vec<u32>, Vec<u16>) {
    let each = |docs: &Docs, f: &mut dyn FnMut(DocId)| match docs {
        Docs::Dense(set) => set.for_each(&mut *f),
        Docs::Sparse(list) => list.iter().for_each(|d| f(*d)),
    };
    let mut starts = vec![0u32; max_doc as usize + 1];
    for (_, _, docs) in values {
        each(docs, &mut |d| starts[d as usize + 1] += 1);
    }
    for d in 0..max_doc as usize {
        starts[d + 1] += starts[d];
    }
    let mut of_doc = vec![0u16; starts[max_doc as usize] as usize];
    let mut next = starts.clone();
    for (v, (_, _, docs)) in values.iter().enumerate() {
        each(docs, &mut |d| {
            of_doc[next[d as usize] as usize] = v as u16;
            next[d as usize] += 1;
        });
    }
    (starts, of_doc)
}

/// facet → value → matching documents.
pub type Counts = BTreeMap<String, BTreeMap<String, u64>>;

/// Each segment's facet values, read once per segment.
pub struct FacetCache {
    field: Field,
    segments: Mutex<Segments>,
}

/// The segments read, of the newest searcher refreshed.
#[derive(Default)]
struct Segments {
    read: HashMap<SegmentId, Arc<SegmentFacets>>,
    /// The segments of that searcher, and its generation: a segment is
    /// kept only while it is one of them (a search on an older searcher
    /// does not bring a merged-away segment back).
    live: HashSet<SegmentId>,
    generation: u64,
}

impl FacetCache {
    /// An empty cache for the facet field `field`.
    pub fn new(field: Field) -> Self {
        Self {
            field,
            segments: Mutex::new(Segments::default()),
        }
    }

    /// Reads the segments of `searcher` not read yet, and forgets those it
    /// no longer has (merged away).
    pub fn refresh(&self, searcher: &Searcher) -> tantivy::Result<()> {
        {
            let mut segments = self.segments.lock().expect("facet cache lock");
            let generation = searcher.generation().generation_id();
            if generation < segments.generation {
                // A newer searcher was refreshed meanwhile.
                return Ok(());
            }
            segments.generation = generation;
            segments.live = searcher
                .segment_readers()
                .iter()
                .map(SegmentReader::segment_id)
                .collect();
            let Segments { read, live, .. } = &mut *segments;
            read.retain(|id, _| live.contains(id));
        }
        for reader in searcher.segment_readers() {
            self.of(reader)?;
        }
        Ok(())
    }

    /// Adds the facet counts of `matches`, documents of `reader`'s
    /// segment, to `counts`.
    pub fn count(
        &self,
        reader: &SegmentReader,
        matches: &Bits,
        counts: &mut Counts,
    ) -> tantivy::Result<()> {
        self.of(reader)?.count(matches, counts);
        Ok(())
    }

    fn of(&self, reader: &SegmentReader) -> tantivy::Result<Arc<SegmentFacets>> {
        let id = reader.segment_id();
        if let Some(f) = self
            .segments
            .lock()
            .expect("facet cache lock")
            .read
            .get(&id)
        {
            return Ok(f.clone());
        }
        // Read outside the lock: two searches of a new segment may both
        // read it; the second copy is dropped.
        let read = Arc::new(SegmentFacets::read(reader, self.field)?);
        let mut segments = self.segments.lock().expect("facet cache lock");
        if !segments.live.contains(&id) {
            return Ok(read);
        }
        Ok(segments.read.entry(id).or_insert(read).clone())
    }
}

/// A collector of how many documents match and their facet counts.
pub struct Matches<'a> {
    cache: &'a FacetCache,
}

impl<'a> Matches<'a> {
    /// Counts against the facet values of `cache`.
    pub fn new(cache: &'a FacetCache) -> Self {
        Self { cache }
    }
}

/// One segment's matches.
pub struct SegmentMatches {
    facets: Arc<SegmentFacets>,
    matches: Bits,
}

impl Collector for Matches<'_> {
    type Fruit = (usize, Counts);
    type Child = SegmentMatches;

    fn for_segment(&self, _ord: u32, reader: &SegmentReader) -> tantivy::Result<SegmentMatches> {
        Ok(SegmentMatches {
            facets: self.cache.of(reader)?,
            matches: Bits::new(reader.max_doc()),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<(usize, Counts)>) -> tantivy::Result<(usize, Counts)> {
        let mut total = 0;
        let mut counts = Counts::new();
        for (n, c) in fruits {
            total += n;
            for (root, values) in c {
                let into = counts.entry(root).or_default();
                for (value, n) in values {
                    *into.entry(value).or_default() += n;
                }
            }
        }
        Ok((total, counts))
    }
}

impl SegmentCollector for SegmentMatches {
    type Fruit = (usize, Counts);

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.matches.insert(doc);
    }

    fn harvest(self) -> (usize, Counts) {
        let mut counts = Counts::new();
        self.facets.count(&self.matches, &mut counts);
        (self.matches.len() as usize, counts)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tantivy::collector::{Count, FacetCollector};
    use tantivy::query::{AllQuery, TermQuery};
    use tantivy::schema::{FacetOptions, STRING, Schema};
    use tantivy::{Index, IndexWriter, TantivyDocument, Term};

    use super::*;

    /// What tantivy's own collector counts, for comparison.
    fn expected(searcher: &Searcher, query: &dyn tantivy::query::Query) -> (usize, Counts) {
        let mut collector = FacetCollector::for_field("facets");
        for root in ["/space", "/language"] {
            collector.add_facet(root);
        }
        let (total, counts) = searcher.search(query, &(Count, collector)).unwrap();
        let mut out = Counts::new();
        for root in ["space", "language"] {
            for (facet, n) in counts.get(&format!("/{root}")) {
                let path = facet.to_path();
                out.entry(root.to_owned())
                    .or_default()
                    .insert(path[1].to_owned(), n);
            }
        }
        (total, out)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Over several segments, with deletions, values held by many
        /// documents (bitsets) and by few (lists), and documents with
        /// several values of one facet, the counts are tantivy's.
        #[test]
        fn counts_are_those_of_tantivys_facet_collector(
            segments in proptest::collection::vec(
                proptest::collection::vec((0u8..40, 0u8..4, any::<bool>(), 0u8..3), 1..300),
                1..4,
            ),
            deleted in proptest::collection::vec(0u8..40, 0..3),
            word in 0u8..3,
        ) {
            let mut schema = Schema::builder();
            let key = schema.add_text_field("key", STRING);
            let words = schema.add_text_field("word", STRING);
            let facets = schema.add_facet_field("facets", FacetOptions::default());
            let index = Index::create_in_ram(schema.build());
            let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
            writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
            for docs in &segments {
                for (space, lang, second, w) in docs {
                    let mut d = TantivyDocument::default();
                    // Space 0 is held by most documents (a dense value).
                    let space = if space % 3 == 0 { 0 } else { *space };
                    d.add_text(key, format!("k{space}"));
                    d.add_text(words, format!("w{w}"));
                    d.add_facet(facets, Facet::from_path(["space", &format!("s{space}")]));
                    d.add_facet(facets, Facet::from_path(["language", &format!("l{lang}")]));
                    if *second {
                        d.add_facet(facets, Facet::from_path(["language", &format!("l{}", lang + 1)]));
                    }
                    writer.add_document(d).unwrap();
                }
                writer.commit().unwrap();
            }
            for k in &deleted {
                writer.delete_term(Term::from_field_text(key, &format!("k{k}")));
            }
            writer.commit().unwrap();
            let reader = index.reader().unwrap();
            let searcher = reader.searcher();
            let cache = FacetCache::new(facets);
            let by_word = TermQuery::new(
                Term::from_field_text(words, &format!("w{word}")),
                IndexRecordOption::Basic,
            );
            for query in [&AllQuery as &dyn tantivy::query::Query, &by_word] {
                let got = searcher.search(query, &Matches::new(&cache)).unwrap();
                prop_assert_eq!(got, expected(&searcher, query));
            }
        }
    }

    #[test]
    fn merged_away_segments_are_forgotten() {
        let mut schema = Schema::builder();
        let facets = schema.add_facet_field("facets", FacetOptions::default());
        let index = Index::create_in_ram(schema.build());
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
        for i in 0..3 {
            let mut d = TantivyDocument::default();
            d.add_facet(facets, Facet::from_path(["year", &format!("{}", 2000 + i)]));
            writer.add_document(d).unwrap();
            writer.commit().unwrap();
        }
        let reader = index.reader().unwrap();
        let cache = FacetCache::new(facets);
        cache.refresh(&reader.searcher()).unwrap();
        assert_eq!(cache.segments.lock().unwrap().read.len(), 3);
        let old = reader.searcher();
        let ids = index.searchable_segment_ids().unwrap();
        writer.merge(&ids).wait().unwrap();
        reader.reload().unwrap();
        cache.refresh(&reader.searcher()).unwrap();
        assert_eq!(cache.segments.lock().unwrap().read.len(), 1);
        // A search still on the older searcher reads its segments without
        // keeping them, and an older refresh changes nothing.
        old.search(&AllQuery, &Matches::new(&cache)).unwrap();
        cache.refresh(&old).unwrap();
        assert_eq!(cache.segments.lock().unwrap().read.len(), 1);
        let (total, counts) = reader
            .searcher()
            .search(&AllQuery, &Matches::new(&cache))
            .unwrap();
        assert_eq!(total, 3);
        assert_eq!(counts["year"].len(), 3);
    }
}
