//! Users, devices and what binds them.
//!
//! A user holds a long-term **identity key** (Ed25519). Each of the user's
//! devices has its own **device key** (Ed25519, the MLS signature key of every
//! leaf the device occupies), certified by the identity key in a
//! [`DeviceCertificate`]. The certificate rides in every KeyPackage and leaf
//! node as the leaf-node extension [`DEVICE_CERTIFICATE_EXTENSION`], so that
//! whoever adds a device, and every member of a space, can check it against
//! the identity key pinned for that user in the space's policy. The **safety
//! number** is computed over the identity key: two people compare it out of
//! band once, and a server cannot slip in a device the user never certified.
//!
//! The MLS credential of a device is a basic credential `user/device`, the
//! device id in hex.

use core::fmt;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    BasicCredential, Capabilities, Credential, CredentialType, CredentialWithKey, Extension,
    ExtensionType, Extensions, KeyPackage, KeyPackageIn, MlsMessageBodyIn, MlsMessageIn,
    MlsMessageOut, ProtocolVersion, UnknownExtension,
};
use openmls_traits::OpenMlsProvider;
use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::types::SignatureScheme;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{CIPHERSUITE, DeviceId, MlsProvider, UserId};

/// Leaf-node extension type carrying a postcard-encoded [`DeviceCertificate`].
pub const DEVICE_CERTIFICATE_EXTENSION: u16 = 0xF0A2;
/// GroupContext extension type carrying the space policy (roles, pinned
/// identity keys, history policy); see [`crate::space::SpacePolicy`].
pub const SPACE_POLICY_EXTENSION: u16 = 0xF0A1;

const CERTIFICATE_CONTEXT: &[u8] = b"amicus device certificate v1\0";
const REVOCATION_CONTEXT: &[u8] = b"amicus device revocation v1\0";
/// The most KeyPackages one call creates (the directory takes them in batches).
pub const MAX_KEY_PACKAGE_BATCH: usize = 1_000;

/// Why an identity operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A device certificate's signature does not verify under the identity
    /// key pinned for its user: the device was not certified by that user.
    /// Do not add it; compare safety numbers with the user.
    #[error("the device certificate is not signed by the user's identity key")]
    BadCertificate,
    /// The certificate names another user, device or device key than the
    /// credential and leaf it travels with (a substituted KeyPackage).
    #[error(
        "the device certificate does not match the credential or signature key it travels with"
    )]
    CertificateMismatch,
    /// A KeyPackage or leaf carries no device certificate extension.
    #[error("the KeyPackage or leaf carries no device certificate")]
    MissingCertificate,
    /// The credential is not a basic credential of the form `user/device`.
    #[error("the MLS credential is not of the form user/device")]
    BadCredential,
    /// A key is not a valid Ed25519 public key.
    #[error("invalid Ed25519 public key")]
    BadKey,
    /// A user's identity key differs from the one pinned when the user was
    /// first seen.
    #[error(
        "the identity key of {0} changed since you first saw it; compare safety numbers out of band before trusting it"
    )]
    KeyChanged(String),
    /// A directory listing holds a device the user's identity key did not
    /// certify (or a certificate that does not decode).
    #[error("the server lists a device of {0} that {0}'s identity key did not certify")]
    UncertifiedDevice(String),
    /// A KeyPackage could not be decoded or its signature or lifetime is invalid.
    #[error("invalid KeyPackage: {0}")]
    BadKeyPackage(String),
    /// The KeyPackage uses another ciphersuite than 0x0003.
    #[error(
        "the KeyPackage uses another ciphersuite than MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519"
    )]
    WrongCiphersuite,
    /// Too many KeyPackages were requested in one batch.
    #[error("at most {MAX_KEY_PACKAGE_BATCH} KeyPackages per batch")]
    BatchTooLarge,
    /// OpenMLS refused to build a KeyPackage (storage or crypto failure).
    #[error("could not create a KeyPackage: {0}")]
    KeyPackageCreation(String),
    /// The exported secret state is truncated or from another format version.
    #[error("the device's secret state is corrupt or of an unknown version")]
    CorruptSecrets,
    /// A device revocation is not signed by the user's pinned identity key.
    #[error("the device revocation is not signed by the user's identity key")]
    BadRevocation,
}

/// The public half of a user's long-term identity key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdentityPublicKey(pub [u8; 32]);

impl fmt::Debug for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityPublicKey({})", crate::ids::hex(&self.0))
    }
}

impl IdentityPublicKey {
    /// The 60-digit safety number of this key for `user`, in twelve groups of
    /// five digits, to be compared out of band.
    pub fn safety_number(&self, user: &UserId) -> String {
        safety_number(user, &self.0)
    }
}

/// A user's long-term identity (its secret key zeroizes on drop).
pub struct UserIdentity {
    user: UserId,
    key: SigningKey,
}

impl fmt::Debug for UserIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserIdentity({}, {:?})", self.user, self.public())
    }
}

impl UserIdentity {
    /// A fresh identity for `user`.
    pub fn generate(user: UserId) -> Self {
        Self {
            user,
            key: SigningKey::from_bytes(&crate::random::bytes()),
        }
    }

    /// The user this identity belongs to.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The public identity key.
    pub fn public(&self) -> IdentityPublicKey {
        IdentityPublicKey(self.key.verifying_key().to_bytes())
    }

    /// Creates a new device of this user and certifies its key (first device
    /// at registration, or a device being paired by an existing one).
    pub fn new_device(&self) -> Device {
        let device = DeviceId::random();
        let key = SigningKey::from_bytes(&crate::random::bytes());
        let certificate = self.certify(device, &key.verifying_key());
        Device {
            user: self.user.clone(),
            device,
            key,
            certificate,
        }
    }

    /// Exports the identity's secret key for the caller's store (encrypt it
    /// at rest). Format: `1 || postcard { user, key [32] }`.
    pub fn export_secret(&self) -> Zeroizing<Vec<u8>> {
        let secret = IdentitySecretV1 {
            user: self.user.clone(),
            key: self.key.to_bytes(),
        };
        let mut out = Zeroizing::new(vec![1u8]);
        out.extend_from_slice(&postcard::to_allocvec(&secret).expect("secrets always encode"));
        out
    }

    /// Restores an identity exported by [`Self::export_secret`].
    pub fn import_secret(bytes: &[u8]) -> Result<Self, IdentityError> {
        let Some((1, rest)) = bytes.split_first().map(|(v, r)| (*v, r)) else {
            return Err(IdentityError::CorruptSecrets);
        };
        let secret: IdentitySecretV1 =
            crate::decode_exact(rest).ok_or(IdentityError::CorruptSecrets)?;
        Ok(Self {
            user: secret.user.clone(),
            key: SigningKey::from_bytes(&secret.key),
        })
    }

    /// Certifies a device key generated elsewhere (pairing, [`crate::pairing`]).
    pub fn certify(&self, device: DeviceId, device_key: &VerifyingKey) -> DeviceCertificate {
        let mut cert = DeviceCertificate {
            user: self.user.clone(),
            device,
            device_key: device_key.to_bytes(),
            identity_key: self.public(),
            signature: [0u8; 64],
        };
        cert.signature = self.key.sign(&cert.signed_bytes()).to_bytes();
        cert
    }

    /// Revokes one of this user's devices (seized, lost, sold): the server
    /// then refuses its sign-in, and every member of a space removes it on
    /// seeing the statement and refuses to add it again.
    pub fn revoke(&self, device: DeviceId) -> DeviceRevocation {
        let mut revocation = DeviceRevocation {
            user: self.user.clone(),
            device,
            signature: Revocation([0u8; 64]),
        };
        revocation.signature = Revocation(
            self.key
                .sign(&revocation.signed_bytes(&self.public()))
                .to_bytes(),
        );
        revocation
    }
}

/// The identity key's signature of a [`DeviceRevocation`], as a space's
/// policy keeps it next to the revoked device's id.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation(#[serde(with = "serde_sig")] pub [u8; 64]);

impl fmt::Debug for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Revocation")
    }
}

/// The statement "device `device` of `user` is revoked", signed by the
/// user's identity key. It has no expiry and no undo: a revoked device id
/// never comes back (the user pairs a new device instead).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRevocation {
    /// The user.
    pub user: UserId,
    /// The revoked device.
    pub device: DeviceId,
    /// Ed25519 signature by the identity key over [`Self::signed_bytes`].
    pub signature: Revocation,
}

impl DeviceRevocation {
    /// `"amicus device revocation v1\0" || u8 len || user || device (16) || identity key (32)`:
    /// the key is inside, so a statement made under an older identity key
    /// does not verify under the current one.
    pub fn signed_bytes(&self, identity_key: &IdentityPublicKey) -> Vec<u8> {
        let user = self.user.as_str().as_bytes();
        let mut out = Vec::with_capacity(REVOCATION_CONTEXT.len() + 1 + user.len() + 48);
        out.extend_from_slice(REVOCATION_CONTEXT);
        out.push(user.len() as u8);
        out.extend_from_slice(user);
        out.extend_from_slice(&self.device.0);
        out.extend_from_slice(&identity_key.0);
        out
    }

    /// Checks the signature under `pinned`, the identity key the checker
    /// trusts for [`Self::user`].
    pub fn verify(&self, pinned: &IdentityPublicKey) -> Result<(), IdentityError> {
        let key = VerifyingKey::from_bytes(&pinned.0).map_err(|_| IdentityError::BadKey)?;
        let sig = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.verify_strict(&self.signed_bytes(pinned), &sig)
            .map_err(|_| IdentityError::BadRevocation)
    }
}

/// The statement "device `device` with key `device_key` belongs to `user`",
/// signed by the user's identity key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCertificate {
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
    /// The device's Ed25519 key (its MLS signature key).
    pub device_key: [u8; 32],
    /// The user's identity key that signed this certificate.
    pub identity_key: IdentityPublicKey,
    /// Ed25519 signature by the identity key over [`Self::signed_bytes`].
    #[serde(with = "serde_sig")]
    pub signature: [u8; 64],
}

impl fmt::Debug for DeviceCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceCertificate({}/{})", self.user, self.device)
    }
}

impl DeviceCertificate {
    /// `"amicus device certificate v1\0" || u8 len || user || device (16) || device key (32) || identity key (32)`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let user = self.user.as_str().as_bytes();
        let mut out = Vec::with_capacity(CERTIFICATE_CONTEXT.len() + 1 + user.len() + 80);
        out.extend_from_slice(CERTIFICATE_CONTEXT);
        out.push(user.len() as u8);
        out.extend_from_slice(user);
        out.extend_from_slice(&self.device.0);
        out.extend_from_slice(&self.device_key);
        out.extend_from_slice(&self.identity_key.0);
        out
    }

    /// Checks the signature under `pinned` (the identity key the checker
    /// trusts for this user; never the key inside the certificate alone).
    pub fn verify(&self, pinned: &IdentityPublicKey) -> Result<(), IdentityError> {
        use subtle::ConstantTimeEq;
        if !bool::from(self.identity_key.0.ct_eq(&pinned.0)) {
            return Err(IdentityError::BadCertificate);
        }
        let key = VerifyingKey::from_bytes(&pinned.0).map_err(|_| IdentityError::BadKey)?;
        let sig = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify_strict(&self.signed_bytes(), &sig)
            .map_err(|_| IdentityError::BadCertificate)
    }

    /// Checks that this certificate is the one of `credential` and `signature_key`.
    pub fn matches(
        &self,
        credential: &Credential,
        signature_key: &[u8],
    ) -> Result<(), IdentityError> {
        let (user, device) = parse_credential(credential)?;
        if user != self.user || device != self.device || signature_key != self.device_key {
            return Err(IdentityError::CertificateMismatch);
        }
        Ok(())
    }

    /// Reads the certificate from a leaf node's extensions.
    pub fn from_extensions<T>(extensions: &Extensions<T>) -> Result<Self, IdentityError> {
        let ext = extensions
            .unknown(DEVICE_CERTIFICATE_EXTENSION)
            .ok_or(IdentityError::MissingCertificate)?;
        crate::decode_exact(&ext.0).ok_or(IdentityError::MissingCertificate)
    }
}

mod serde_sig {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sig: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(sig)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let v: &[u8] = Deserialize::deserialize(d)?;
        v.try_into()
            .map_err(|_| serde::de::Error::invalid_length(v.len(), &"64 bytes"))
    }
}

/// Splits a `user/device` basic credential.
pub fn parse_credential(credential: &Credential) -> Result<(UserId, DeviceId), IdentityError> {
    if credential.credential_type() != CredentialType::Basic {
        return Err(IdentityError::BadCredential);
    }
    let basic =
        BasicCredential::try_from(credential.clone()).map_err(|_| IdentityError::BadCredential)?;
    let text = core::str::from_utf8(basic.identity()).map_err(|_| IdentityError::BadCredential)?;
    let (user, device) = text.split_once('/').ok_or(IdentityError::BadCredential)?;
    let user = UserId::new(user).map_err(|_| IdentityError::BadCredential)?;
    let device = DeviceId::from_hex(device).map_err(|_| IdentityError::BadCredential)?;
    Ok((user, device))
}

/// One device of a user: its certified signature key (zeroizes on drop).
pub struct Device {
    user: UserId,
    device: DeviceId,
    key: SigningKey,
    certificate: DeviceCertificate,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({}/{})", self.user, self.device)
    }
}

/// The capabilities every Amicus leaf advertises: ciphersuite 0x0003 and the
/// two Amicus extensions.
pub(crate) fn capabilities() -> Capabilities {
    Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        Some(&[
            ExtensionType::Unknown(SPACE_POLICY_EXTENSION),
            ExtensionType::Unknown(DEVICE_CERTIFICATE_EXTENSION),
        ]),
        None,
        Some(&[CredentialType::Basic]),
    )
}

impl Device {
    /// A device whose key was certified elsewhere (pairing): the key must
    /// be the certificate's.
    pub(crate) fn certified(
        key: SigningKey,
        certificate: DeviceCertificate,
    ) -> Result<Self, IdentityError> {
        if key.verifying_key().to_bytes() != certificate.device_key {
            return Err(IdentityError::CertificateMismatch);
        }
        Ok(Self {
            user: certificate.user.clone(),
            device: certificate.device,
            key,
            certificate,
        })
    }

    /// The owning user.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// This device's id.
    pub fn id(&self) -> DeviceId {
        self.device
    }

    /// The device's certificate, signed by the user's identity key.
    pub fn certificate(&self) -> &DeviceCertificate {
        &self.certificate
    }

    /// The device's Ed25519 public key (its MLS signature key).
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The safety number of this device's key, for a device list.
    pub fn safety_number(&self) -> String {
        safety_number(&self.user, &self.public_key())
    }

    /// The MLS credential `user/device` with the device key.
    pub fn credential_with_key(&self) -> CredentialWithKey {
        let identity = format!("{}/{}", self.user, self.device).into_bytes();
        CredentialWithKey {
            credential: BasicCredential::new(identity).into(),
            signature_key: self.public_key().to_vec().into(),
        }
    }

    pub(crate) fn leaf_extensions(&self) -> Extensions<openmls::prelude::LeafNode> {
        let cert = postcard::to_allocvec(&self.certificate).expect("a certificate always encodes");
        Extensions::single(Extension::Unknown(
            DEVICE_CERTIFICATE_EXTENSION,
            UnknownExtension(cert),
        ))
        .expect("one unknown extension is always valid")
    }

    /// Signs a statement to the server (sign-in challenge, provenance) with
    /// the device key, under the statement's domain-separation prefix.
    pub fn sign_statement(&self, statement: Statement, message: &[u8]) -> [u8; 64] {
        self.sign_with_context(statement.context(), message)
    }

    /// Signs `message` under a domain-separation `context` with the device key.
    pub(crate) fn sign_with_context(&self, context: &[u8], message: &[u8]) -> [u8; 64] {
        let mut input = Vec::with_capacity(context.len() + message.len());
        input.extend_from_slice(context);
        input.extend_from_slice(message);
        self.key.sign(&input).to_bytes()
    }

    /// Creates `count` KeyPackages for the directory, each encoded as an MLS
    /// message; their private keys stay in `provider`.
    pub fn key_packages(
        &self,
        provider: &MlsProvider,
        count: usize,
    ) -> Result<Vec<Vec<u8>>, IdentityError> {
        if count > MAX_KEY_PACKAGE_BATCH {
            return Err(IdentityError::BatchTooLarge);
        }
        (0..count)
            .map(|_| {
                let bundle = KeyPackage::builder()
                    .leaf_node_capabilities(capabilities())
                    .leaf_node_extensions(self.leaf_extensions())
                    .build(CIPHERSUITE, provider, self, self.credential_with_key())
                    .map_err(|e| IdentityError::KeyPackageCreation(e.to_string()))?;
                MlsMessageOut::from(bundle.key_package().clone())
                    .tls_serialize_detached()
                    .map_err(|e| IdentityError::KeyPackageCreation(e.to_string()))
            })
            .collect()
    }

    /// Exports the device's secrets (identity-independent) for the caller's
    /// store. Format: postcard of [`DeviceSecretsV1`] prefixed with version 1.
    pub fn export_secrets(&self) -> Zeroizing<Vec<u8>> {
        let secrets = DeviceSecretsV1 {
            user: self.user.clone(),
            device: self.device,
            key: self.key.to_bytes(),
            certificate: self.certificate.clone(),
        };
        let mut out = Zeroizing::new(vec![1u8]);
        out.extend_from_slice(&postcard::to_allocvec(&secrets).expect("secrets always encode"));
        out
    }

    /// Restores a device exported by [`Self::export_secrets`].
    pub fn import_secrets(bytes: &[u8]) -> Result<Self, IdentityError> {
        let Some((1, rest)) = bytes.split_first().map(|(v, r)| (*v, r)) else {
            return Err(IdentityError::CorruptSecrets);
        };
        let secrets: DeviceSecretsV1 =
            postcard::from_bytes(rest).map_err(|_| IdentityError::CorruptSecrets)?;
        let key = SigningKey::from_bytes(&secrets.key);
        if key.verifying_key().to_bytes() != secrets.certificate.device_key {
            return Err(IdentityError::CorruptSecrets);
        }
        Ok(Self {
            user: secrets.user.clone(),
            device: secrets.device,
            key,
            certificate: secrets.certificate.clone(),
        })
    }
}

/// What a device signs for the server, each under its own prefix so that no
/// signature can be replayed as another kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Statement {
    /// The answer to a sign-in challenge: prefix `"amicus sign-in v1\0"`.
    SignIn,
    /// A publication's provenance: prefix `"amicus provenance v1\0"`.
    Provenance,
    /// The withdrawal of a public copy: prefix `"amicus withdrawal v1\0"`.
    Withdrawal,
    /// A published aggregate of case records: prefix `"amicus aggregate v1\0"`.
    Aggregate,
}

impl Statement {
    fn context(self) -> &'static [u8] {
        match self {
            Self::SignIn => b"amicus sign-in v1\0",
            Self::Provenance => b"amicus provenance v1\0",
            Self::Withdrawal => b"amicus withdrawal v1\0",
            Self::Aggregate => b"amicus aggregate v1\0",
        }
    }
}

/// Identity keys seen for other users, pinned on first use: a listing
/// with another key is refused until people compare safety numbers.
/// Serialized as the map of user name to key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contacts(std::collections::BTreeMap<String, [u8; 32]>);

impl Contacts {
    /// Checks a directory listing of `user` (its identity key and the
    /// postcard bytes of every device certificate): each certificate must
    /// name `user` and verify under `key`, and `key` must be the one pinned
    /// for `user`, or is pinned now if `user` is new.
    pub fn check_listing(
        &mut self,
        user: &UserId,
        key: IdentityPublicKey,
        certificates: &[Vec<u8>],
    ) -> Result<(), IdentityError> {
        if self.0.get(user.as_str()).is_some_and(|k| *k != key.0) {
            return Err(IdentityError::KeyChanged(user.to_string()));
        }
        for bytes in certificates {
            let certified = postcard::from_bytes::<DeviceCertificate>(bytes)
                .is_ok_and(|cert| cert.user == *user && cert.verify(&key).is_ok());
            if !certified {
                return Err(IdentityError::UncertifiedDevice(user.to_string()));
            }
        }
        self.0.insert(user.to_string(), key.0);
        Ok(())
    }

    /// The keys that `keys` names for users whose pinned key is another:
    /// empty when every user is new or named with the key pinned.
    pub fn conflicts<'a>(
        &self,
        keys: impl IntoIterator<Item = (&'a UserId, IdentityPublicKey)>,
    ) -> Vec<UserId> {
        keys.into_iter()
            .filter(|(user, key)| self.key_of(user).is_some_and(|k| k != *key))
            .map(|(user, _)| user.clone())
            .collect()
    }

    /// Pins `key` for `user` if no key is pinned for `user` yet (trust on
    /// first use); a different pinned key stays, and the answer is false.
    pub fn pin(&mut self, user: &UserId, key: IdentityPublicKey) -> bool {
        *self.0.entry(user.to_string()).or_insert(key.0) == key.0
    }

    /// The key pinned for `user`.
    pub fn key_of(&self, user: &UserId) -> Option<IdentityPublicKey> {
        self.0.get(user.as_str()).map(|k| IdentityPublicKey(*k))
    }
}

/// Verifies a device's signed statement (strict Ed25519 verification).
pub fn verify_statement(
    device_key: &[u8; 32],
    statement: Statement,
    message: &[u8],
    signature: &[u8; 64],
) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(device_key) else {
        return false;
    };
    let mut input = statement.context().to_vec();
    input.extend_from_slice(message);
    key.verify_strict(&input, &ed25519_dalek::Signature::from_bytes(signature))
        .is_ok()
}

/// The stored form of an identity's secret, version 1.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct IdentitySecretV1 {
    #[zeroize(skip)]
    user: UserId,
    key: [u8; 32],
}

/// The stored form of a device's secrets, version 1.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct DeviceSecretsV1 {
    #[zeroize(skip)]
    user: UserId,
    #[zeroize(skip)]
    device: DeviceId,
    key: [u8; 32],
    #[zeroize(skip)]
    certificate: DeviceCertificate,
}

impl Signer for Device {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.key.sign(payload).to_bytes().to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// Decodes and validates a KeyPackage fetched from the directory: MLS
/// signature, ciphersuite, lifetime, and the device certificate against the
/// identity key pinned for `expected_user`.
pub fn validate_key_package(
    provider: &MlsProvider,
    bytes: &[u8],
    expected_user: &UserId,
    pinned: &IdentityPublicKey,
) -> Result<KeyPackage, IdentityError> {
    let message = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| IdentityError::BadKeyPackage(e.to_string()))?;
    let MlsMessageBodyIn::KeyPackage(kp_in) = message.extract() else {
        return Err(IdentityError::BadKeyPackage(
            "not a KeyPackage message".into(),
        ));
    };
    let kp_in: KeyPackageIn = kp_in;
    let kp = kp_in
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .map_err(|e| IdentityError::BadKeyPackage(e.to_string()))?;
    if kp.ciphersuite() != CIPHERSUITE {
        return Err(IdentityError::WrongCiphersuite);
    }
    let leaf = kp.leaf_node();
    let cert = DeviceCertificate::from_extensions(leaf.extensions())?;
    cert.verify(pinned)?;
    cert.matches(leaf.credential(), leaf.signature_key().as_slice())?;
    if &cert.user != expected_user {
        return Err(IdentityError::CertificateMismatch);
    }
    Ok(kp)
}

/// Sixty digits derived from `user` and `key`.
fn safety_number(user: &UserId, key: &[u8; 32]) -> String {
    let mut hasher = blake3::Hasher::new_derive_key("amicus safety number v1");
    hasher.update(&[user.as_str().len() as u8]);
    hasher.update(user.as_str().as_bytes());
    hasher.update(key);
    let mut digest = [0u8; 60];
    hasher.finalize_xof().fill(&mut digest);
    // Twelve groups; each from 5 bytes reduced mod 100000 (bias < 2^-20).
    digest
        .chunks_exact(5)
        .map(|c| {
            let n = c.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserIdentity {
        UserIdentity::generate(UserId::new("alice").unwrap())
    }

    #[test]
    fn certificate_verifies_only_under_the_pinned_key() {
        let a = alice();
        let mallory = UserIdentity::generate(UserId::new("alice").unwrap());
        let d = a.new_device();
        d.certificate().verify(&a.public()).unwrap();
        assert!(matches!(
            d.certificate().verify(&mallory.public()),
            Err(IdentityError::BadCertificate)
        ));
        let mut forged = mallory.new_device().certificate().clone();
        forged.identity_key = a.public();
        assert!(matches!(
            forged.verify(&a.public()),
            Err(IdentityError::BadCertificate)
        ));
    }

    #[test]
    fn a_revocation_verifies_only_under_its_users_key_and_for_its_device() {
        let a = alice();
        let phone = a.new_device();
        let revocation = a.revoke(phone.id());
        revocation.verify(&a.public()).unwrap();
        // Another identity claiming to be alice cannot revoke her devices.
        let mallory = UserIdentity::generate(a.user().clone());
        assert!(matches!(
            mallory.revoke(phone.id()).verify(&a.public()),
            Err(IdentityError::BadRevocation)
        ));
        assert!(revocation.verify(&mallory.public()).is_err());
        // The signature of one device's revocation does not revoke another.
        let laptop = a.new_device();
        let moved = DeviceRevocation {
            device: laptop.id(),
            ..revocation.clone()
        };
        assert!(moved.verify(&a.public()).is_err());
        // Nor can a device key (or a certificate's signature) stand in for it.
        let by_device = DeviceRevocation {
            signature: Revocation(phone.sign_with_context(
                REVOCATION_CONTEXT,
                &revocation.signed_bytes(&a.public())[REVOCATION_CONTEXT.len()..],
            )),
            ..revocation.clone()
        };
        assert!(by_device.verify(&a.public()).is_err());
        let bytes = postcard::to_allocvec(&revocation).unwrap();
        assert_eq!(
            postcard::from_bytes::<DeviceRevocation>(&bytes).unwrap(),
            revocation
        );
    }

    #[test]
    fn a_listing_pins_the_first_key_and_refuses_another_or_an_uncertified_device() {
        let a = alice();
        let user = a.user().clone();
        let cert = |d: &Device| postcard::to_allocvec(d.certificate()).unwrap();
        let mut contacts = Contacts::default();
        let listing = vec![cert(&a.new_device()), cert(&a.new_device())];
        contacts.check_listing(&user, a.public(), &listing).unwrap();
        assert_eq!(contacts.key_of(&user), Some(a.public()));
        // The same key again, with one more device: fine.
        let more = [listing.clone(), vec![cert(&a.new_device())]].concat();
        contacts.check_listing(&user, a.public(), &more).unwrap();
        // A server substituting the user's key (with devices it certified).
        let mallory = UserIdentity::generate(user.clone());
        assert!(matches!(
            contacts.check_listing(&user, mallory.public(), &[cert(&mallory.new_device())]),
            Err(IdentityError::KeyChanged(_))
        ));
        // A device the pinned key did not certify, or garbage, in the listing.
        for bad in [cert(&mallory.new_device()), b"junk".to_vec()] {
            let listing = [listing.clone(), vec![bad]].concat();
            assert!(matches!(
                contacts.check_listing(&user, a.public(), &listing),
                Err(IdentityError::UncertifiedDevice(_))
            ));
        }
        // A refused first listing pins nothing.
        let bob = UserIdentity::generate(UserId::new("bob").unwrap());
        let bob_user = bob.user().clone();
        assert!(
            contacts
                .check_listing(&bob_user, bob.public(), &[cert(&mallory.new_device())])
                .is_err()
        );
        assert_eq!(contacts.key_of(&bob_user), None);
        assert_eq!(contacts.key_of(&user), Some(a.public()));
    }

    #[test]
    fn statements_verify_only_with_their_own_prefix_and_key() {
        let d = alice().new_device();
        let sig = d.sign_statement(Statement::SignIn, b"challenge");
        let key = d.public_key();
        assert!(verify_statement(
            &key,
            Statement::SignIn,
            b"challenge",
            &sig
        ));
        assert!(!verify_statement(
            &key,
            Statement::Provenance,
            b"challenge",
            &sig
        ));
        assert!(!verify_statement(
            &key,
            Statement::SignIn,
            b"challengf",
            &sig
        ));
        let other = alice().new_device().public_key();
        assert!(!verify_statement(
            &other,
            Statement::SignIn,
            b"challenge",
            &sig
        ));
    }

    #[test]
    fn safety_numbers_are_stable_and_distinct() {
        let a = alice();
        let n = a.public().safety_number(a.user());
        assert_eq!(n, a.public().safety_number(a.user()));
        assert_eq!(n.len(), 12 * 5 + 11);
        assert_ne!(n, alice().public().safety_number(a.user()));
    }

    #[test]
    fn secrets_round_trip_and_debug_hides_keys() {
        let a = alice();
        let d = a.new_device();
        let bytes = d.export_secrets();
        let back = Device::import_secrets(&bytes).unwrap();
        assert_eq!(back.public_key(), d.public_key());
        let dbg = format!("{d:?} {a:?}");
        assert!(!dbg.contains(&crate::ids::hex(&d.key.to_bytes())));
        assert!(Device::import_secrets(&bytes[..bytes.len() - 1]).is_err());
        assert!(Device::import_secrets(&[2]).is_err());
        let exported = a.export_secret();
        let again = UserIdentity::import_secret(&exported).unwrap();
        assert_eq!(again.public(), a.public());
        assert_eq!(again.user(), a.user());
        assert!(UserIdentity::import_secret(&exported[..exported.len() - 1]).is_err());
        let mut trailing = exported.to_vec();
        trailing.push(0);
        assert!(UserIdentity::import_secret(&trailing).is_err());
    }

    #[test]
    fn key_packages_validate_against_the_pinned_identity() {
        let provider = MlsProvider::new();
        let a = alice();
        let d = a.new_device();
        let kps = d.key_packages(&provider, 3).unwrap();
        assert_eq!(kps.len(), 3);
        for kp in &kps {
            validate_key_package(&provider, kp, a.user(), &a.public()).unwrap();
        }
        let other = alice();
        assert!(validate_key_package(&provider, &kps[0], a.user(), &other.public()).is_err());
        let bob = UserId::new("bob").unwrap();
        assert!(validate_key_package(&provider, &kps[0], &bob, &a.public()).is_err());
        let mut tampered = kps[0].clone();
        let n = tampered.len() / 2;
        tampered[n] ^= 1;
        assert!(validate_key_package(&provider, &tampered, a.user(), &a.public()).is_err());
    }
}
