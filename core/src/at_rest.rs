//! A device's state encrypted at rest under a passphrase: the native
//! client's home directory and the browser's IndexedDB use the same format.
//!
//! The key is Argon2id(passphrase, salt) with m = 19 MiB, t = 2, p = 1 (the
//! OWASP minimum for Argon2id) and a random 16-byte salt stored beside the
//! data. Each sealed item is `"AMICUS-HOME" 0x01 || nonce[24] ||
//! XChaCha20-Poly1305(key, nonce, aad = "AMICUS-HOME" 0x01 || name,
//! plaintext)`: the nonce is random (192 bits, so never repeated in
//! practice) and the name binds the item to its place.
//!
//! [`DeviceRecord`] is what both clients put in it: the device's secrets,
//! its MLS store, its view of every space and the identity keys it pinned.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::identity::{Contacts, Device, UserIdentity};
use crate::view::{LegacySavedView, SavedView, SpaceView};
use crate::{MlsProvider, SpaceId, StreamId};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

const MAGIC: &[u8] = b"AMICUS-HOME\x01";

/// Why a sealed item could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AtRestError {
    /// Not a sealed item of this format.
    #[error("{0} is not an Amicus sealed state (corrupt, or from another version)")]
    Corrupt(String),
    /// The passphrase is wrong or the item was altered.
    #[error("cannot decrypt {0}: wrong passphrase, or it was altered")]
    Decrypt(String),
    /// The device state decrypts but does not load.
    #[error("the device state does not load: {0}")]
    State(String),
}

/// A device's state between runs (field order is the format): identity
/// secret (the user's first device only), device secrets, MLS store, every
/// space's [`SavedView`], pinned contacts, and where its user last looked
/// at each document ([`SeenMark`]; `None` in a record of version 3, from
/// before such marks). Secrets are zeroized on drop.
#[derive(Serialize, Deserialize)]
pub struct DeviceRecord {
    identity: Option<Vec<u8>>,
    device: Vec<u8>,
    mls: Vec<u8>,
    spaces: Vec<SavedView>,
    contacts: Contacts,
    seen: Option<Vec<SeenMark>>,
}

/// Where this device's user last looked at a document: its Automerge
/// heads then. What changed after them is their unread activity; kept on
/// the device only (the server learns nothing of it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenMark {
    /// The space.
    pub space: SpaceId,
    /// The document.
    pub stream: StreamId,
    /// The document's heads (change hashes) when it was last looked at.
    pub heads: Vec<[u8; 32]>,
}

/// A [`DeviceRecord`] of version 3 (before [`SeenMark`]s).
#[derive(Serialize, Deserialize)]
struct RecordV3 {
    identity: Option<Vec<u8>>,
    device: Vec<u8>,
    mls: Vec<u8>,
    spaces: Vec<SavedView>,
    contacts: Contacts,
}

impl Drop for RecordV3 {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        if let Some(i) = &mut self.identity {
            i.zeroize();
        }
        self.device.zeroize();
        self.mls.zeroize();
    }
}

impl From<RecordV3> for DeviceRecord {
    fn from(mut v: RecordV3) -> Self {
        DeviceRecord {
            identity: v.identity.take(),
            device: std::mem::take(&mut v.device),
            mls: std::mem::take(&mut v.mls),
            spaces: std::mem::take(&mut v.spaces),
            contacts: v.contacts.clone(),
            seen: None,
        }
    }
}

impl Drop for DeviceRecord {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        if let Some(i) = &mut self.identity {
            i.zeroize();
        }
        self.device.zeroize();
        self.mls.zeroize();
    }
}

/// A [`DeviceRecord`] loaded back.
pub struct Restored {
    /// The user's identity, if this device holds it.
    pub identity: Option<UserIdentity>,
    /// The device.
    pub device: Device,
    /// Its MLS store.
    pub provider: MlsProvider,
    /// Its spaces, each read up to where it was saved.
    pub spaces: BTreeMap<SpaceId, SpaceView>,
    /// The identity keys it pinned.
    pub contacts: Contacts,
    /// Where its user last looked at each document; `None` for a state
    /// saved before such marks were kept (the engine then counts what
    /// the device holds as seen).
    pub seen: Option<Vec<SeenMark>>,
}

/// The version byte in front of an encoded [`DeviceRecord`].
pub const RECORD_VERSION: u8 = 4;

/// A [`DeviceRecord`] as earlier versions held it (views without their
/// [`crate::view::ViewCache`]): the browser's state of version 1 and
/// the native client's of version 2; read by [`DeviceRecord::decode`].
#[derive(Serialize, Deserialize)]
pub struct LegacyDeviceRecord {
    identity: Option<Vec<u8>>,
    device: Vec<u8>,
    mls: Vec<u8>,
    spaces: Vec<LegacySavedView>,
    contacts: Contacts,
}

impl Drop for LegacyDeviceRecord {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        if let Some(i) = &mut self.identity {
            i.zeroize();
        }
        self.device.zeroize();
        self.mls.zeroize();
    }
}

impl From<LegacyDeviceRecord> for DeviceRecord {
    fn from(mut v: LegacyDeviceRecord) -> Self {
        DeviceRecord {
            identity: v.identity.take(),
            device: std::mem::take(&mut v.device),
            mls: std::mem::take(&mut v.mls),
            spaces: std::mem::take(&mut v.spaces)
                .into_iter()
                .map(SavedView::from)
                .collect(),
            contacts: v.contacts.clone(),
            seen: None,
        }
    }
}

impl DeviceRecord {
    /// Captures a device's state.
    pub fn capture<'a>(
        identity: Option<&UserIdentity>,
        device: &Device,
        provider: &MlsProvider,
        spaces: impl IntoIterator<Item = &'a mut SpaceView>,
        contacts: &Contacts,
    ) -> Result<Self, AtRestError> {
        Ok(Self {
            identity: identity.map(|i| i.export_secret().to_vec()),
            device: device.export_secrets().to_vec(),
            mls: provider
                .export_state()
                .map_err(|e| AtRestError::State(e.to_string()))?
                .to_vec(),
            spaces: spaces.into_iter().map(SpaceView::save).collect(),
            contacts: contacts.clone(),
            seen: Some(Vec::new()),
        })
    }

    /// The record as version 3 wrote it (without marks).
    #[cfg(test)]
    pub(crate) fn encode_v3(&self) -> Vec<u8> {
        let v3 = RecordV3 {
            identity: self.identity.clone(),
            device: self.device.clone(),
            mls: self.mls.clone(),
            spaces: self
                .spaces
                .iter()
                .map(|v| postcard::from_bytes(&postcard::to_allocvec(v).unwrap()).unwrap())
                .collect(),
            contacts: self.contacts.clone(),
        };
        let mut out = vec![3];
        out.extend_from_slice(&postcard::to_allocvec(&v3).unwrap());
        out
    }

    /// The record with these [`SeenMark`]s.
    pub fn with_seen(mut self, seen: Vec<SeenMark>) -> Self {
        self.seen = Some(seen);
        self
    }

    /// `RECORD_VERSION || postcard(record)`, the plaintext to seal.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![RECORD_VERSION]);
        out.extend_from_slice(&postcard::to_allocvec(self).expect("a device record encodes"));
        out
    }

    /// A record encoded by [`Self::encode`], or a legacy one behind the
    /// version byte 1 (whose spaces read their logs again from entry 0
    /// once).
    pub fn decode(bytes: &[u8]) -> Result<Self, AtRestError> {
        let corrupt = || AtRestError::State("the saved state is corrupt".into());
        match bytes.split_first() {
            Some((&RECORD_VERSION, rest)) => crate::decode_exact(rest).ok_or_else(corrupt),
            Some((3, rest)) => crate::decode_exact::<RecordV3>(rest)
                .map(DeviceRecord::from)
                .ok_or_else(corrupt),
            Some((1, rest)) => crate::decode_exact::<LegacyDeviceRecord>(rest)
                .map(DeviceRecord::from)
                .ok_or_else(corrupt),
            _ => Err(AtRestError::State(
                "the saved state is from another version of Amicus".into(),
            )),
        }
    }

    /// Loads the state back. A space whose view was saved with its cache
    /// goes on reading its log after the entries it had processed.
    pub fn restore(&self) -> Result<Restored, AtRestError> {
        let state = |e: &dyn std::fmt::Display| AtRestError::State(e.to_string());
        let provider = MlsProvider::import_state(&self.mls).map_err(|e| state(&e))?;
        let device = Device::import_secrets(&self.device).map_err(|e| state(&e))?;
        let identity = self
            .identity
            .as_deref()
            .map(UserIdentity::import_secret)
            .transpose()
            .map_err(|e| state(&e))?;
        let mut spaces = BTreeMap::new();
        for saved in &self.spaces {
            let view = SpaceView::restore(&provider, &device, saved).map_err(|e| state(&e))?;
            spaces.insert(view.id(), view);
        }
        Ok(Restored {
            identity,
            device,
            provider,
            spaces,
            contacts: self.contacts.clone(),
            seen: self.seen.clone(),
        })
    }
}

/// One document's edits the server has not acknowledged, kept across a
/// reload (the browser seals a list of them as its own item, beside the
/// device state, so that typing never re-seals the MLS store).
#[derive(Serialize, Deserialize)]
pub struct UnsentEdits {
    /// The space.
    pub space: SpaceId,
    /// The document.
    pub stream: crate::StreamId,
    /// Raw Automerge changes, in causal order.
    pub changes: Vec<Vec<u8>>,
}

impl Drop for UnsentEdits {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for c in &mut self.changes {
            c.zeroize();
        }
    }
}

impl UnsentEdits {
    /// `1 || postcard(list)`, the plaintext to seal.
    pub fn encode(list: &[UnsentEdits]) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![1u8]);
        out.extend_from_slice(&postcard::to_allocvec(list).expect("edits always encode"));
        out
    }

    /// The list encoded by [`Self::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Vec<UnsentEdits>, AtRestError> {
        match bytes.split_first() {
            Some((1, rest)) => crate::decode_exact(rest)
                .ok_or_else(|| AtRestError::State("corrupt unsent edits".into())),
            _ => Err(AtRestError::State(
                "unsent edits from another version".into(),
            )),
        }
    }
}

/// The sealed item holding a state key wrapped by [`StateKey::wrap`].
const WRAPPED_ITEM: &str = "state-key";

/// The key that seals a device's state (zeroized on drop).
pub struct StateKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(..)")
    }
}

#[cfg(feature = "strength")]
/// The least zxcvbn score a new passphrase must reach: 3, "safely
/// unguessable", at least 10^8 guesses, the offline attack on a seized
/// device's state being the one that matters.
pub const MIN_PASSPHRASE_SCORE: u8 = 3;

/// Why a passphrase is refused for a new device state.
#[cfg(feature = "strength")]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this passphrase is too easy to guess for whoever seizes the device (strength {score} of 4, at least {MIN_PASSPHRASE_SCORE} needed){hint}"
)]
pub struct WeakPassphrase {
    /// zxcvbn's score, 0 to 4.
    pub score: u8,
    /// zxcvbn's advice, as `: advice`, or empty.
    pub hint: String,
}

#[cfg(feature = "strength")]
/// Checks a new passphrase with zxcvbn (dictionaries, keyboard patterns,
/// dates, repeats, and `context`: the user name and the like, which make
/// a passphrase easier to guess for someone who knows them).
pub fn check_new_passphrase(passphrase: &str, context: &[&str]) -> Result<(), WeakPassphrase> {
    let estimate = zxcvbn::zxcvbn(passphrase, context);
    let score = u8::from(estimate.score());
    if score >= MIN_PASSPHRASE_SCORE {
        return Ok(());
    }
    let hint = estimate
        .feedback()
        .and_then(|f| {
            f.warning()
                .map(|w| w.to_string())
                .or_else(|| f.suggestions().first().map(|s| s.to_string()))
        })
        .map(|h| format!(": {h}"))
        .unwrap_or_default();
    Err(WeakPassphrase { score, hint })
}

/// A new random salt.
pub fn new_salt() -> [u8; 16] {
    crate::random::bytes()
}

impl StateKey {
    /// Derives the key from a passphrase and the state's salt (slow on
    /// purpose: about 19 MiB and two passes of Argon2id).
    pub fn derive(passphrase: &[u8], salt: &[u8]) -> Self {
        let params =
            argon2::Params::new(19 * 1024, 2, 1, Some(32)).expect("valid Argon2 parameters");
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, salt, key.as_mut())
            .expect("a salt of 8 bytes or more and a 32-byte output are valid");
        Self(key)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*self.0).into())
    }

    /// The key that wraps a state key under a secret the device's platform
    /// authenticator gives after user verification (WebAuthn's PRF
    /// output): BLAKE3 derive-key `"amicus state key wrap v1"` of it.
    fn wrapping(secret: &[u8]) -> Result<Self, AtRestError> {
        if secret.len() < 32 {
            return Err(AtRestError::Corrupt(WRAPPED_ITEM.into()));
        }
        Ok(Self(Zeroizing::new(blake3::derive_key(
            "amicus state key wrap v1",
            secret,
        ))))
    }

    /// This key sealed under `secret` (at least 32 bytes), as the item
    /// `"state-key"`: kept beside the state, it opens it without the
    /// passphrase for whoever holds the secret.
    pub fn wrap(&self, secret: &[u8]) -> Result<Vec<u8>, AtRestError> {
        Ok(Self::wrapping(secret)?.seal(WRAPPED_ITEM, self.0.as_ref()))
    }

    /// The state key [`Self::wrap`] sealed under `secret`.
    pub fn unwrap_with(secret: &[u8], wrapped: &[u8]) -> Result<Self, AtRestError> {
        let plain = Self::wrapping(secret)?.open(WRAPPED_ITEM, wrapped)?;
        let key: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| AtRestError::Corrupt(WRAPPED_ITEM.into()))?;
        Ok(Self(Zeroizing::new(key)))
    }

    /// Encrypts `plaintext` as the item `name`.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; 24] = crate::random::bytes();
        let aad = [MAGIC, name.as_bytes()].concat();
        let ct = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any length a device state has");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts the item `name`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, AtRestError> {
        let rest = sealed
            .strip_prefix(MAGIC)
            .filter(|r| r.len() >= 24)
            .ok_or_else(|| AtRestError::Corrupt(name.into()))?;
        let (nonce, ct) = rest.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().expect("24 bytes");
        let aad = [MAGIC, name.as_bytes()].concat();
        self.cipher()
            .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| AtRestError::Decrypt(name.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state key wrapped under an authenticator's secret opens the state
    /// with that secret only; the wrapped key shows nothing of the key, and
    /// a short secret, another secret or an altered item are refused.
    #[test]
    fn a_wrapped_state_key_opens_only_with_its_secret() {
        let key = StateKey::derive(b"correct horse battery staple", &[7; 16]);
        let state = key.seal("device", b"the device state");
        let secret = [42u8; 32];
        let wrapped = key.wrap(&secret).unwrap();
        assert!(
            !wrapped.windows(32).any(|w| w == key.0.as_ref()),
            "the key appears in clear"
        );
        let back = StateKey::unwrap_with(&secret, &wrapped).unwrap();
        assert_eq!(&*back.open("device", &state).unwrap(), b"the device state");
        assert_eq!(
            StateKey::unwrap_with(&[43u8; 32], &wrapped).err(),
            Some(AtRestError::Decrypt("state-key".into()))
        );
        let mut altered = wrapped.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(StateKey::unwrap_with(&secret, &altered).is_err());
        assert!(key.wrap(&[1u8; 16]).is_err());
        // Two wrappings under one secret differ (fresh nonces).
        assert_ne!(key.wrap(&secret).unwrap(), wrapped);
    }

    /// Common, short, keyboard-walk and name-based passphrases are refused
    /// with advice; long unusual ones pass.
    #[cfg(feature = "strength")]
    #[test]
    fn weak_passphrases_are_refused_for_new_states() {
        for weak in [
            "password1",
            "azertyuiop",
            "qwerty123",
            "amina2024",
            "12345678910",
        ] {
            let refused = check_new_passphrase(weak, &["amina"]);
            assert!(refused.is_err(), "{weak} accepted");
        }
        assert!(check_new_passphrase("amina-amina-amina", &["amina"]).is_err());
        for strong in [
            "correct horse battery staple",
            "Kinshasa: le greffe ferme à 16h !",
        ] {
            assert_eq!(check_new_passphrase(strong, &["amina"]), Ok(()), "{strong}");
        }
        let e = check_new_passphrase("password", &[]).unwrap_err();
        assert!(e.score < MIN_PASSPHRASE_SCORE);
        assert!(e.to_string().contains("too easy to guess"));
    }

    #[test]
    fn sealed_items_are_bound_to_their_name_and_key() {
        let salt = new_salt();
        let key = StateKey::derive(b"correct horse", &salt);
        let sealed = key.seal("state", b"canary-7f3a secret");
        assert!(!sealed.windows(11).any(|w| w == b"canary-7f3a"));
        assert_eq!(
            &key.open("state", &sealed).unwrap()[..],
            b"canary-7f3a secret"
        );
        assert!(matches!(
            key.open("other", &sealed),
            Err(AtRestError::Decrypt(_))
        ));
        let wrong = StateKey::derive(b"wrong horse", &salt);
        assert!(matches!(
            wrong.open("state", &sealed),
            Err(AtRestError::Decrypt(_))
        ));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            key.open("state", &flipped),
            Err(AtRestError::Decrypt(_))
        ));
        assert!(matches!(
            key.open("state", b"junk"),
            Err(AtRestError::Corrupt(_))
        ));
    }
}
