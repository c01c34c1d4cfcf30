//! Public spaces: plaintext documents readable by every member of the
//! network, and the hook through which the search index follows them.
//!
//! Only records of public spaces ever reach a [`PublicIndex`]: the relay of
//! confidential spaces never calls it.

use amicus_core::SpaceId;
/// The bytes a publisher signs, shared with the clients.
pub use amicus_core::publication::provenance_message;

use crate::error::ApiError;
use crate::store::PublicRecord;

/// Receives every write and deletion of a public document (the search
/// index implements it). Called after the store has made the write durable;
/// an index that fails logs and can be rebuilt from the store.
pub trait PublicIndex: Send + Sync + 'static {
    /// A public document was written.
    fn upsert(&self, doc: &PublicRecord);
    /// A public document was deleted.
    fn remove(&self, space: SpaceId, id: &str);
}

/// Checks a public document id: `[a-z0-9][a-z0-9._-]{0,63}`.
pub fn check_doc_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && id.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "a document id is 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
                .into(),
        ))
    }
}
