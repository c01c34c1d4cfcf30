//! The OpenMLS provider of one device: RustCrypto for the primitives and an
//! in-memory implementation of OpenMLS's `StorageProvider` trait for the
//! group state.
//!
//! Storage contract: every OpenMLS operation writes its state into the
//! in-memory store before it returns. The caller persists the whole store
//! (secret material: encrypt it at rest) with [`MlsProvider::export_state`]
//! after every operation it wants to survive a crash, and restores it with
//! [`MlsProvider::import_state`]. The export is the unit of atomicity.

use openmls_rust_crypto::{MemoryStorage, RustCrypto};
use openmls_traits::OpenMlsProvider;
use zeroize::Zeroizing;

/// Why the MLS state could not be exported or imported.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The exported state is truncated or not an Amicus MLS state; restore a
    /// good copy from the device's store.
    #[error("the stored MLS state is corrupt or truncated")]
    CorruptState,
    /// A thread panicked while holding the store's lock; the in-memory state
    /// may be half-written: reload the device from its last export.
    #[error("the in-memory MLS store is poisoned by an earlier panic")]
    Poisoned,
}

/// A device's cryptography and MLS group storage.
#[derive(Default)]
pub struct MlsProvider {
    crypto: RustCrypto,
    storage: MemoryStorage,
}

impl core::fmt::Debug for MlsProvider {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MlsProvider(..)")
    }
}

impl MlsProvider {
    /// A provider with an empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole group store, to be kept encrypted at rest by the caller.
    ///
    /// Format: postcard encoding of the store's (key, value) pairs sorted by
    /// key, so that the same state always exports to the same bytes.
    pub fn export_state(&self) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
        let values = self
            .storage
            .values
            .read()
            .map_err(|_| ProviderError::Poisoned)?;
        let mut pairs: Vec<(&Vec<u8>, &Vec<u8>)> = values.iter().collect();
        pairs.sort();
        postcard::to_allocvec(&pairs)
            .map(Zeroizing::new)
            .map_err(|_| ProviderError::CorruptState)
    }

    /// Restores a store written by [`Self::export_state`].
    pub fn import_state(bytes: &[u8]) -> Result<Self, ProviderError> {
        let pairs: Zeroizing<Vec<(Vec<u8>, Vec<u8>)>> =
            Zeroizing::new(postcard::from_bytes(bytes).map_err(|_| ProviderError::CorruptState)?);
        let storage = MemoryStorage::default();
        {
            let mut values = storage
                .values
                .write()
                .map_err(|_| ProviderError::Poisoned)?;
            for (k, v) in pairs.iter() {
                values.insert(k.clone(), v.clone());
            }
        }
        Ok(Self {
            crypto: RustCrypto::default(),
            storage,
        })
    }
}

impl OpenMlsProvider for MlsProvider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = MemoryStorage;

    fn storage(&self) -> &MemoryStorage {
        &self.storage
    }

    fn crypto(&self) -> &RustCrypto {
        &self.crypto
    }

    fn rand(&self) -> &RustCrypto {
        &self.crypto
    }
}
