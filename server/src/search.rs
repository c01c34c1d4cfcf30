//! The search index of public documents (`data/index`), fed through the
//! [`PublicIndex`] hook after each durable write of a public document, and
//! queried by `GET /v1/search`. Only public records ever reach it: the relay
//! of confidential spaces has no path to this module.

use std::path::Path;
use std::time::Duration;

use amicus_search::{
    DocKind, Lang, PublicDocument, SearchError, SearchIndex, SearchQuery, SearchResults,
};

use crate::public::PublicIndex;
use crate::store::{PublicRecord, Store};

/// How long a published document may wait before it is searchable: the
/// index groups the writes of this window into one commit.
pub const COMMIT_WITHIN: Duration = Duration::from_millis(250);

/// The index: writes are grouped into background commits; searches read
/// the last commit without waiting for writers.
pub struct SearchService {
    index: SearchIndex,
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
    /// Opens (creates) the index in `dir`, committing in the background.
    pub fn open(dir: &Path) -> Result<Self, SearchError> {
        let mut index = SearchIndex::open(dir)?;
        index.commit_within(COMMIT_WITHIN, |e| {
            tracing::error!(error = %e, "committing the search index failed; it is retried with the next write, and `amicus reindex` rebuilds it");
        });
        Ok(Self { index })
    }

    /// Documents in the index.
    pub fn len(&self) -> u64 {
        self.index.len()
    }

    /// True if the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs a query.
    pub fn search(&self, query: &SearchQuery) -> Result<SearchResults, SearchError> {
        self.index.search(query)
    }

    /// Commits what is pending (at shutdown).
    pub fn flush(&self) -> Result<(), SearchError> {
        self.index.commit()
    }

    /// Rebuilds the index from every public document of the store.
    pub fn rebuild(
        &self,
        store: &dyn Store,
    ) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
        let docs = store.all_public_docs()?;
        // Every core indexes; the segments are merged into one at the end.
        self.index.bulk_load(|index| {
            index.clear()?;
            for d in &docs {
                index.insert_new(&document(d))?;
            }
            Ok(())
        })?;
        Ok(docs.len())
    }
}

impl PublicIndex for SearchService {
    fn upsert(&self, doc: &PublicRecord) {
        if let Err(e) = self.index.upsert(&document(doc)) {
            tracing::error!(error = %e, "indexing a public document failed; run `amicus reindex`");
        }
    }

    fn remove(&self, space: amicus_core::SpaceId, id: &str) {
        if let Err(e) = self.index.delete(&space.to_hex(), id) {
            tracing::error!(error = %e, "removing a public document from the search index failed; run `amicus reindex`");
        }
    }
}
