//! # amicus-cli
//!
//! The native client of Amicus ([`client::Client`]): the same `amicus-core`
//! as the browser, over HTTP and one WebSocket, with the device's state
//! encrypted at rest in a [`home::Home`]. The `amicus` binary wires it and
//! the server together.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
pub mod home;
pub mod transport;

pub use client::{Client, Edit, Filing, Listed, NamedVersion, UnsentDocument};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The command was used wrongly (bad name, missing file...).
    #[error("{0}")]
    Usage(String),
    /// The local state could not be read or written.
    #[error(transparent)]
    Home(#[from] home::HomeError),
    /// The server could not be reached or the connection dropped.
    #[error("network: {0}")]
    Network(String),
    /// The server answered with an error.
    #[error("the server refused ({status} {code}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// The server refused an append.
    #[error("the server refused: {0}")]
    Refused(String),
    /// The server sent something this client does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A space's log breaks its hash chain: the server rewrote or forked it.
    #[error("{0}")]
    Forked(String),
    /// The server announced log entries it does not deliver.
    #[error("{0}")]
    Withheld(String),
    /// No such space, document or file.
    #[error("{0}")]
    NotFound(String),
    /// A space operation failed.
    #[error(transparent)]
    Space(#[from] amicus_core::space::SpaceError),
    /// A document operation failed.
    #[error(transparent)]
    Document(#[from] amicus_core::document::DocumentError),
    /// A file operation failed.
    #[error(transparent)]
    File(#[from] amicus_core::files::FileError),
    /// An identity key changed, or a certificate does not verify.
    #[error("{0}")]
    Identity(String),
}

impl From<amicus_core::identity::IdentityError> for ClientError {
    fn from(e: amicus_core::identity::IdentityError) -> Self {
        ClientError::Identity(e.to_string())
    }
}
