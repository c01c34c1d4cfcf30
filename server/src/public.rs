//! Public spaces: plaintext documents readable by every member of the
//! network, and the hook through which the search index follows them.
//!
//! Only records of public spaces ever reach a [`PublicIndex`]: the relay of
//! confidential spaces never calls it.

use amicus_core::SpaceId;

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

/// The bytes a publisher signs (statement `Provenance`): the public copy
/// (space, id, blake3 of title and body) bound to the confidential source
/// (space and stream ids, Automerge heads).
pub fn provenance_message(
    public_space: SpaceId,
    id: &str,
    title: &str,
    body: &str,
    source_space: &str,
    source_stream: &str,
    heads: &[String],
) -> Vec<u8> {
    let mut content = blake3::Hasher::new_derive_key("amicus public content v1");
    content.update(&(title.len() as u64).to_be_bytes());
    content.update(title.as_bytes());
    content.update(body.as_bytes());
    let mut out = Vec::new();
    out.extend_from_slice(&public_space.0);
    for part in [id, source_space, source_stream] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(content.finalize().as_bytes());
    out.extend_from_slice(&(heads.len() as u64).to_be_bytes());
    for h in heads {
        out.extend_from_slice(&(h.len() as u64).to_be_bytes());
        out.extend_from_slice(h.as_bytes());
    }
    out
}
