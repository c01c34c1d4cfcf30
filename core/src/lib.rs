//! # amicus-core
//!
//! The sans-IO protocol and domain of Amicus, an end-to-end encrypted
//! collaborative document library. Nothing in this crate opens a socket, a
//! file or a timer: every function takes bytes and state and returns bytes,
//! events and new state. The same code runs natively (server tests, the
//! `amicus` command) and in the browser (`wasm32-unknown-unknown`).
//!
//! Map of the crate:
//! - [`engine`]: the client engine, every decision a client makes, driven
//!   by a native, a browser or a simulated driver.
//! - [`api`]: the HTTP API's request and answer bodies.
//! - [`at_rest`]: a device's state sealed under a passphrase.
//! - [`identity`]: users, devices, device certificates, safety numbers,
//!   KeyPackages, and the export of a device's secret state.
//! - [`space`]: one MLS group per confidential space, roles and history
//!   policy in a GroupContext extension, the pending-commit flow.
//! - [`keyring`]: content keys derived per epoch, epoch records, history.
//! - [`envelope`]: the encrypted, signed, padded unit of persistent content.
//! - [`document`]: the Automerge model of a filing and its encrypted replica.
//! - [`discussion`]: threads of posts and replies, with mentions.
//! - [`activity`]: what changed since a document was last looked at.
//! - [`library`]: the space's library (folders, documents, files).
//! - [`monitoring`]: case records of violations, their counts, and the
//!   aggregates published for the public map.
//! - [`files`]: chunked, streamed file encryption.
//! - [`transfer`]: uploads and downloads step by step (write-ahead,
//!   resuming, retries), for every client.
//! - [`intake`]: sealed submissions in the age v1 format.
//! - [`view`]: one device's view of a space, rebuilt from its log, with
//!   fork, rewrite and rollback detection.
//! - [`wire`]: versioned client/server frames and the hash-chained log.
//!
//! `docs/PROTOCOL.md` at the repository root is the normative description of
//! every byte this crate produces.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod activity;
pub mod api;
pub mod at_rest;
pub mod discussion;
pub mod document;
pub mod dropbox;
pub mod engine;
pub mod envelope;
pub mod files;
pub mod identity;
pub use amicus_intake as intake;
pub mod keyring;
pub mod library;
pub mod monitoring;
pub mod pairing;
pub mod publication;
pub mod recovery;
pub mod space;
pub mod transfer;
pub mod view;
pub mod wire;

mod ids;
mod provider;
mod random;

pub use ids::{DeviceId, IdError, MessageId, SpaceId, StreamId, UserId};
pub use provider::{MlsProvider, ProviderError};

/// Decodes postcard bytes that must hold exactly one value: trailing bytes
/// are refused, so one encoding has one meaning.
pub(crate) fn decode_exact<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Some(value),
        _ => None,
    }
}

/// The MLS ciphersuite of every group and KeyPackage:
/// `MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519` (0x0003).
pub const CIPHERSUITE: openmls::prelude::Ciphersuite =
    openmls::prelude::Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;
