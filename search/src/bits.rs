//! A set of a segment's documents as a plain array of 64-bit words, so that
//! unions, intersections and counts run a word at a time (and the compiler
//! vectorises them).

use tantivy::postings::BlockSegmentPostings;
use tantivy::{DocId, TERMINATED};

/// Calls `f` with each block of a posting list's documents (up to 128,
/// decoded at once), in order.
pub fn each_block(mut postings: BlockSegmentPostings, mut f: impl FnMut(&[DocId])) {
    loop {
        let docs = postings.docs();
        if docs.is_empty() {
            return;
        }
        f(docs);
        postings.advance();
    }
}

/// A set of document ids below a segment's `max_doc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
}

impl Bits {
    /// The empty set of a segment of `max_doc` documents.
    pub fn new(max_doc: DocId) -> Self {
        Self {
            words: vec![0; (max_doc as usize).div_ceil(64)],
        }
    }

    /// Adds `doc`.
    pub fn insert(&mut self, doc: DocId) {
        self.words[(doc / 64) as usize] |= 1 << (doc % 64);
    }

    /// Removes `doc`.
    pub fn remove(&mut self, doc: DocId) {
        self.words[(doc / 64) as usize] &= !(1 << (doc % 64));
    }

    /// Whether `doc` is in the set.
    pub fn contains(&self, doc: DocId) -> bool {
        self.words
            .get((doc / 64) as usize)
            .is_some_and(|w| w & (1 << (doc % 64)) != 0)
    }

    /// Adds every document of `other` (of the same segment).
    pub fn union_with(&mut self, other: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// Keeps only the documents also in `other`.
    pub fn intersect_with(&mut self, other: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    /// How many documents the set holds.
    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// True if the set holds no document.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// How many documents both sets hold.
    pub fn intersection_len(&self, other: &Bits) -> u64 {
        self.words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| u64::from((a & b).count_ones()))
            .sum()
    }

    /// How many documents both sets hold, reading only the words listed
    /// (those where `self` is not empty).
    pub fn intersection_len_in(&self, other: &Bits, words: &[u32]) -> u64 {
        words
            .iter()
            .map(|i| {
                let i = *i as usize;
                u64::from((self.words[i] & other.words[i]).count_ones())
            })
            .sum()
    }

    /// How many 64-bit words the set spans.
    pub fn word_count(&self) -> usize {
        self.words.len()
    }

    /// The indices of the words that hold a document.
    pub fn non_empty_words(&self) -> Vec<u32> {
        (0..self.words.len() as u32)
            .filter(|i| self.words[*i as usize] != 0)
            .collect()
    }

    /// Calls `f` with each document, in order.
    pub fn for_each(&self, mut f: impl FnMut(DocId)) {
        for (i, word) in self.words.iter().enumerate() {
            let mut w = *word;
            while w != 0 {
                f(i as DocId * 64 + w.trailing_zeros());
                w &= w - 1;
            }
        }
    }

    /// The first document at or after `doc`, or `TERMINATED`.
    pub fn next_from(&self, doc: DocId) -> DocId {
        let mut i = (doc / 64) as usize;
        if i >= self.words.len() {
            return TERMINATED;
        }
        let mut word = self.words[i] & (u64::MAX << (doc % 64));
        loop {
            if word != 0 {
                return i as DocId * 64 + word.trailing_zeros();
            }
            i += 1;
            match self.words.get(i) {
                Some(w) => word = *w,
                None => return TERMINATED,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Every operation agrees with the same operation on a set of ids.
        #[test]
        fn bits_behave_as_a_set(
            max_doc in 1u32..700,
            a in proptest::collection::vec(0u32..700, 0..200),
            b in proptest::collection::vec(0u32..700, 0..200),
            from in 0u32..800,
        ) {
            let a: BTreeSet<u32> = a.into_iter().filter(|d| *d < max_doc).collect();
            let b: BTreeSet<u32> = b.into_iter().filter(|d| *d < max_doc).collect();
            let (mut x, mut y) = (Bits::new(max_doc), Bits::new(max_doc));
            a.iter().for_each(|d| x.insert(*d));
            b.iter().for_each(|d| y.insert(*d));
            prop_assert_eq!(x.len(), a.len() as u64);
            prop_assert_eq!(x.is_empty(), a.is_empty());
            prop_assert_eq!(x.intersection_len(&y), a.intersection(&b).count() as u64);
            prop_assert_eq!(
                x.intersection_len_in(&y, &x.non_empty_words()),
                a.intersection(&b).count() as u64
            );
            let mut each = Vec::new();
            x.for_each(|d| each.push(d));
            prop_assert_eq!(each, a.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(
                x.next_from(from),
                a.range(from..).next().copied().unwrap_or(TERMINATED)
            );
            for d in 0..max_doc + 70 {
                prop_assert_eq!(x.contains(d), a.contains(&d));
            }
            let mut u = x.clone();
            u.union_with(&y);
            prop_assert_eq!(u.len(), a.union(&b).count() as u64);
            let mut i = x.clone();
            i.intersect_with(&y);
            prop_assert_eq!(i.len(), a.intersection(&b).count() as u64);
            let mut r = x.clone();
            b.iter().for_each(|d| r.remove(*d));
            prop_assert_eq!(r.len(), a.difference(&b).count() as u64);
        }
    }
}
