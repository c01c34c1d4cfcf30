//! # amicus-drop
//!
//! What the drop-box page (`web/drop/`) runs on a witness's phone: it
//! refuses a key that is not the one the link pins, seals each part of a
//! submission to it in the age v1 format (PROTOCOL §11), and names the
//! chunks of a sealed part for a resumable upload. A few hundred
//! kilobytes, without the client's MLS and documents, so that a cheap
//! phone on a weak link opens the page quickly.

use amicus_intake::IntakePublicKey;
use amicus_intake::drop::{self, Part};
use wasm_bindgen::prelude::*;

fn pinned(recipient: &str, fingerprint: &str) -> Result<IntakePublicKey, JsError> {
    let key = IntakePublicKey::parse_age_recipient(recipient)
        .map_err(|e| JsError::new(&format!("key: {e}")))?;
    if !drop::key_matches(&key, fingerprint) {
        return Err(JsError::new("key_mismatch"));
    }
    Ok(key)
}

/// Whether `recipient` (`age1…`) is the key whose fingerprint the link
/// carries.
#[wasm_bindgen(js_name = keyMatches)]
pub fn key_matches(recipient: &str, fingerprint: &str) -> bool {
    pinned(recipient, fingerprint).is_ok()
}

/// The box id and the fingerprint of a link's fragment, or `undefined`.
#[wasm_bindgen(js_name = parseFragment)]
pub fn parse_fragment(fragment: &str) -> Option<Vec<String>> {
    drop::parse_fragment(fragment).map(|(id, fp)| vec![id.to_hex(), fp.to_owned()])
}

/// The witness's statement sealed to `recipient`, which must be the
/// pinned key (the error `key_mismatch` otherwise).
#[wasm_bindgen(js_name = sealStatement)]
pub fn seal_statement(recipient: &str, fingerprint: &str, text: &str) -> Result<Vec<u8>, JsError> {
    let key = pinned(recipient, fingerprint)?;
    Ok(amicus_intake::seal(&key, &Part::statement(text).encode()))
}

/// A file sealed to `recipient`, with its name and type inside.
#[wasm_bindgen(js_name = sealFile)]
pub fn seal_file(
    recipient: &str,
    fingerprint: &str,
    name: &str,
    media_type: &str,
    content: Vec<u8>,
) -> Result<Vec<u8>, JsError> {
    let key = pinned(recipient, fingerprint)?;
    Ok(amicus_intake::seal(
        &key,
        &Part::file(name, media_type, content).encode(),
    ))
}

/// The hex BLAKE3 of each upload chunk of a sealed part, in order.
#[wasm_bindgen(js_name = chunkIds)]
pub fn chunk_ids(sealed: &[u8]) -> Vec<String> {
    drop::chunks(sealed)
        .map(|(id, _)| id.iter().map(|b| format!("{b:02x}")).collect())
        .collect()
}

/// The size of an upload chunk.
#[wasm_bindgen(js_name = chunkLength)]
pub fn chunk_length() -> usize {
    drop::CHUNK_LEN
}
