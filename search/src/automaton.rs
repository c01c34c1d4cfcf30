//! Typo and prefix matching with one automaton per query word.
//!
//! tantivy's `FuzzyTermQuery` builds its Levenshtein automaton when its
//! weight is created, once per field and per language, and an automaton of
//! distance 2 takes a good part of a millisecond to build. A query word is
//! looked up in two fields of each language in scope, and its stem is
//! often the same in several languages, so [`Automata`] builds each
//! (stem, distance, prefix) automaton once per search and
//! [`AutomatonQuery`] shares it between fields. Matching is
//! `FuzzyTermQuery`'s (same crates, transpositions count 1, constant score
//! times the boost) with the first letter fixed ([`Dfa`]).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use levenshtein_automata::{DFA, Distance, LevenshteinAutomatonBuilder, SINK_STATE};
use tantivy::query::{AutomatonWeight, EnableScoring, Query, Weight};
use tantivy::schema::Field;

/// A Levenshtein automaton over the bytes of a term, anchored on its
/// first letter: a term must start with the same letter as the stem (as
/// Lucene's `prefixLength` 1), which keeps the walk of the term dictionary
/// to one letter's branch. Typos in the first letter are rare; a walk of
/// the whole dictionary of a large library is not cheap.
pub struct Dfa {
    dfa: DFA,
    anchor: Vec<u8>,
}

impl tantivy_fst::Automaton for Dfa {
    /// The automaton's state, and how many bytes of the anchor were read
    /// (`u32::MAX`: a byte differed).
    type State = (u32, u32);

    fn start(&self) -> (u32, u32) {
        (self.dfa.initial_state(), 0)
    }

    fn is_match(&self, state: &(u32, u32)) -> bool {
        state.1 as usize >= self.anchor.len()
            && matches!(self.dfa.distance(state.0), Distance::Exact(_))
    }

    fn can_match(&self, state: &(u32, u32)) -> bool {
        state.0 != SINK_STATE && state.1 != u32::MAX
    }

    fn accept(&self, state: &(u32, u32), byte: u8) -> (u32, u32) {
        let read = match self.anchor.get(state.1 as usize) {
            Some(expected) if *expected != byte => u32::MAX,
            Some(_) => state.1 + 1,
            None => state.1,
        };
        (self.dfa.transition(state.0, byte), read)
    }
}

/// The UTF-8 bytes of the first letter of `stem`.
fn anchor(stem: &str) -> Vec<u8> {
    stem.chars()
        .next()
        .map(|c| c.to_string().into_bytes())
        .unwrap_or_default()
}

fn builder(distance: u8) -> &'static LevenshteinAutomatonBuilder {
    static BUILDERS: [OnceLock<LevenshteinAutomatonBuilder>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let d = usize::from(distance.min(2));
    BUILDERS[d].get_or_init(|| LevenshteinAutomatonBuilder::new(d as u8, true))
}

/// The automata of one search, each built once.
#[derive(Default)]
pub struct Automata {
    built: HashMap<(String, u8, bool), Arc<Dfa>>,
}

impl Automata {
    /// The automaton matching terms within `distance` edits of `stem`, or
    /// (with `prefix`) starting with such a term.
    pub fn get(&mut self, stem: &str, distance: u8, prefix: bool) -> Arc<Dfa> {
        self.built
            .entry((stem.to_owned(), distance, prefix))
            .or_insert_with(|| {
                let b = builder(distance);
                Arc::new(Dfa {
                    dfa: if prefix {
                        b.build_prefix_dfa(stem)
                    } else {
                        b.build_dfa(stem)
                    },
                    anchor: anchor(stem),
                })
            })
            .clone()
    }
}

/// Documents whose `field` holds a term the automaton accepts; each scores
/// its boost.
#[derive(Clone)]
pub struct AutomatonQuery {
    field: Field,
    dfa: Arc<Dfa>,
}

impl AutomatonQuery {
    /// The query of `dfa` over `field`.
    pub fn new(field: Field, dfa: Arc<Dfa>) -> Self {
        Self { field, dfa }
    }
}

impl std::fmt::Debug for AutomatonQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutomatonQuery")
            .field("field", &self.field)
            .finish_non_exhaustive()
    }
}

impl Query for AutomatonQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(AutomatonWeight::<Dfa>::new(
            self.field,
            self.dfa.clone(),
        )))
    }
}
