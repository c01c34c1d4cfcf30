//! The search index of public documents (`data/index`), fed through the
//! [`PublicIndex`] hook after each durable write of a public document, and
//! queried by `GET /v1/search`. Only public records ever reach it: the relay
//! of confidential spaces has no path to this module.

use std::path::Path;
use std::sync::Mutex;

use amicus_search::{
    DocKind, Lang, PublicDocument, SearchError, SearchIndex, SearchQuery, SearchResults,
};

use crate::public::PublicIndex;
use crate::store::{PublicRecord, Store};

/// The index behind a lock (one writer; searches share its reader).
pub struct SearchService {
    index: Mutex<SearchIndex>,
}

fn document(r: &PublicRecord) -> PublicDocument {
    let mut body = r.body.clone();
    if let Some(f) = &r.file {
        body = format!("{}\n{body}", f.name);
    }
    PublicDocument {
        space: r.space.to_hex(),
        id: r.id.clone(),
        title: r.title.clone(),
        body,
        language: r.language.as_deref().and_then(Lang::from_code),
        kind: if r.file.is_some() {
            DocKind::File
        } else {
            DocKind::Document
        },
        year: r.year,
    }
}

impl SearchService {
    /// Opens (creates) the index in `dir`.
    pub fn open(dir: &Path) -> Result<Self, SearchError> {
        Ok(Self {
            index: Mutex::new(SearchIndex::open(dir)?),
        })
    }

    /// Documents in the index.
    pub fn len(&self) -> u64 {
        self.index.lock().expect("index lock").len()
    }

    /// True if the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs a query.
    pub fn search(&self, query: &SearchQuery) -> Result<SearchResults, SearchError> {
        self.index.lock().expect("index lock").search(query)
    }

    /// Rebuilds the index from every public document of the store.
    pub fn rebuild(
        &self,
        store: &dyn Store,
    ) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
        let docs = store.all_public_docs()?;
        let mut index = self.index.lock().expect("index lock");
        index.clear()?;
        for d in &docs {
            index.upsert(&document(d))?;
        }
        index.commit()?;
        Ok(docs.len())
    }
}

impl PublicIndex for SearchService {
    fn upsert(&self, doc: &PublicRecord) {
        let mut index = self.index.lock().expect("index lock");
        if let Err(e) = index.upsert(&document(doc)).and_then(|_| index.commit()) {
            tracing::error!(error = %e, "indexing a public document failed; run `amicus reindex`");
        }
    }

    fn remove(&self, space: amicus_core::SpaceId, id: &str) {
        let mut index = self.index.lock().expect("index lock");
        index.delete(&space.to_hex(), id);
        if let Err(e) = index.commit() {
            tracing::error!(error = %e, "removing a public document from the index failed");
        }
    }
}
