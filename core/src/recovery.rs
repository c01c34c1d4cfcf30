//! Recovering an account after losing every device that held the identity
//! key (PROTOCOL §3.7).
//!
//! The identity holder makes a [`RecoveryCode`] (40 random digits, about
//! 133 bits) that the user writes down, and seals the identity key under a
//! key derived from it ([`seal_kit`]). The sealed *kit* is kept by the
//! server, which cannot open it: the code never reaches it, and 133 bits
//! cannot be searched. On a new device, the user types the code; the device
//! fetches the kit, opens it ([`open_kit`]), certifies its own key with the
//! identity key and registers that certificate. The recovered device holds
//! the identity key, so it can link further devices.
//!
//! The server hands the kit, and registers a recovered device, only to a
//! request carrying the code's *access value* ([`RecoveryCode::access`]),
//! which it checks against the verifier stored with the kit
//! ([`access_verifier`]). So kits cannot be collected to be opened later
//! with a stolen code, and making a new code (a new kit and verifier)
//! shuts the old one out of the server.
//!
//! Anyone holding the code holds the account: it is shown once and kept
//! like a key.

use core::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::UserId;
use crate::identity::UserIdentity;

/// Digits in a recovery code.
pub const RECOVERY_DIGITS: usize = 40;

const KEY_CONTEXT: &str = "amicus recovery v1";
const ACCESS_CONTEXT: &str = "amicus recovery access v1";
const VERIFIER_CONTEXT: &str = "amicus recovery verifier v1";
const AAD_LABEL: &[u8] = b"amicus recovery kit v1\0";
const VERSION: u8 = 1;
/// Version, nonce, sealed identity secret and tag: the kit is never larger.
pub const MAX_KIT_BYTES: usize = 1024;

/// Why a recovery failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecoveryError {
    /// The code is not 40 digits.
    #[error("a recovery code is {RECOVERY_DIGITS} digits (spaces and dashes are ignored)")]
    BadCode,
    /// Not a kit of this version.
    #[error("not a recovery kit of this version")]
    Malformed,
    /// The kit does not open with this code for this user: a mistyped
    /// code, a kit of another user, or a kit altered by the server.
    #[error(
        "this recovery code does not open this account's recovery kit (mistyped, or replaced by a newer code)"
    )]
    WrongCode,
}

/// The code the user writes down (zeroized on drop; never in `Debug`).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RecoveryCode([u8; RECOVERY_DIGITS]);

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(..)")
    }
}

impl RecoveryCode {
    /// A fresh code: each digit drawn uniformly (bytes of 250 and above are
    /// drawn again), so the code carries 40 × log2(10) ≈ 132.9 bits.
    pub fn random() -> Self {
        let mut out = [0u8; RECOVERY_DIGITS];
        let mut n = 0;
        while n < RECOVERY_DIGITS {
            let mut bytes: [u8; 32] = crate::random::bytes();
            for &b in bytes.iter() {
                if b < 250 && n < RECOVERY_DIGITS {
                    out[n] = b'0' + b % 10;
                    n += 1;
                }
            }
            bytes.zeroize();
        }
        Self(out)
    }

    /// Reads a typed code: ASCII, Arabic-Indic and Extended Arabic-Indic
    /// digits; spaces and dashes are ignored.
    pub fn parse(text: &str) -> Result<Self, RecoveryError> {
        crate::pairing::read_digits(text)
            .map(Self)
            .ok_or(RecoveryError::BadCode)
    }

    /// The code to show: eight groups of five digits.
    pub fn display(&self) -> Zeroizing<String> {
        Zeroizing::new(
            self.0
                .chunks(5)
                .map(|g| std::str::from_utf8(g).expect("digits"))
                .collect::<Vec<_>>()
                .join("-"),
        )
    }

    /// What a request shows the server to fetch the kit or register a
    /// recovered device: a key derived from the code, independent of the
    /// kit's key. The server keeps only [`access_verifier`] of it.
    pub fn access(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(ACCESS_CONTEXT, &self.0))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        let key = Zeroizing::new(blake3::derive_key(KEY_CONTEXT, &self.0));
        XChaCha20Poly1305::new(&(*key).into())
    }
}

/// What the server stores to check an access value: a one-way function of
/// it, so the stored verifier does not grant access.
pub fn access_verifier(access: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key(VERIFIER_CONTEXT, access)
}

/// Whether `access` matches `verifier` (constant time).
pub fn access_matches(access: &[u8; 32], verifier: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(access_verifier(access).ct_eq(verifier))
}

fn aad(user: &UserId) -> Vec<u8> {
    let mut aad = AAD_LABEL.to_vec();
    aad.extend_from_slice(user.as_str().as_bytes());
    aad
}

/// Seals `identity`'s secret under `code`, bound to its user:
/// `1 || nonce (24) || XChaCha20-Poly1305(identity secret)`. The nonce is
/// random, and a code seals a single kit.
pub fn seal_kit(identity: &UserIdentity, code: &RecoveryCode) -> Vec<u8> {
    let nonce: [u8; 24] = crate::random::bytes();
    let secret = identity.export_secret();
    let sealed = code
        .cipher()
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &secret,
                aad: &aad(identity.user()),
            },
        )
        .expect("XChaCha20-Poly1305 encrypts an identity secret");
    let mut out = vec![VERSION];
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens `user`'s kit with `code`: the identity it holds, which must be
/// `user`'s.
pub fn open_kit(
    user: &UserId,
    code: &RecoveryCode,
    kit: &[u8],
) -> Result<UserIdentity, RecoveryError> {
    let rest = match kit.split_first() {
        Some((&VERSION, rest)) if rest.len() > 24 && kit.len() <= MAX_KIT_BYTES => rest,
        _ => return Err(RecoveryError::Malformed),
    };
    let (nonce, sealed) = rest.split_at(24);
    let nonce: [u8; 24] = nonce.try_into().expect("24 bytes");
    let secret = Zeroizing::new(
        code.cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad(user),
                },
            )
            .map_err(|_| RecoveryError::WrongCode)?,
    );
    let identity = UserIdentity::import_secret(&secret).map_err(|_| RecoveryError::Malformed)?;
    if identity.user() != user {
        return Err(RecoveryError::WrongCode);
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserIdentity {
        UserIdentity::generate(UserId::new("alice").unwrap())
    }

    #[test]
    fn the_right_code_gives_back_the_identity_and_nothing_else_opens_the_kit() {
        let identity = alice();
        let code = RecoveryCode::random();
        let kit = seal_kit(&identity, &code);
        let user = identity.user().clone();
        let back = open_kit(&user, &code, &kit).unwrap();
        assert_eq!(back.public(), identity.public());
        // A device the recovered identity certifies verifies under the
        // identity key everyone pinned.
        let device = back.new_device();
        assert!(device.certificate().verify(&identity.public()).is_ok());

        // Another code, another user's name, any flipped byte, a cut kit.
        let other = RecoveryCode::random();
        assert_eq!(
            open_kit(&user, &other, &kit).err(),
            Some(RecoveryError::WrongCode)
        );
        let bob = UserId::new("bob").unwrap();
        assert_eq!(
            open_kit(&bob, &code, &kit).err(),
            Some(RecoveryError::WrongCode)
        );
        for i in 1..kit.len() {
            let mut bad = kit.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                open_kit(&user, &code, &bad).err(),
                Some(RecoveryError::WrongCode),
                "byte {i}"
            );
        }
        let mut bad = kit.clone();
        bad[0] = 2;
        assert_eq!(
            open_kit(&user, &code, &bad).err(),
            Some(RecoveryError::Malformed)
        );
        for len in [0, 1, 24, 25] {
            assert!(open_kit(&user, &code, &kit[..len]).is_err(), "{len} bytes");
        }
        assert!(kit.len() <= MAX_KIT_BYTES);
        // The kit shows nothing of the secret it holds.
        let secret = identity.export_secret();
        assert!(!kit.windows(16).any(|w| secret.windows(16).any(|s| s == w)));
    }

    #[test]
    fn only_the_codes_access_value_matches_its_verifier() {
        let code = RecoveryCode::random();
        let verifier = access_verifier(&code.access());
        assert!(access_matches(&code.access(), &verifier));
        assert!(!access_matches(&RecoveryCode::random().access(), &verifier));
        // The verifier is not itself an access value, and neither is the
        // kit's key material.
        assert!(!access_matches(&verifier, &verifier));
        let kit_key = blake3::derive_key(KEY_CONTEXT, &code.0);
        assert_ne!(kit_key, *code.access());
        assert!(!access_matches(&kit_key, &verifier));
    }

    #[test]
    fn codes_are_read_as_typed_and_never_shown_in_debug() {
        let code = RecoveryCode::random();
        let shown = code.display();
        assert_eq!(shown.len(), RECOVERY_DIGITS + 7);
        assert_eq!(shown.split('-').count(), 8);
        let arabic: String = shown
            .chars()
            .map(|c| {
                c.to_digit(10)
                    .map_or(' ', |d| char::from_u32(0x660 + d).unwrap())
            })
            .collect();
        let identity = alice();
        let kit = seal_kit(&identity, &code);
        for typed in [shown.to_string(), shown.replace('-', " "), arabic] {
            let read = RecoveryCode::parse(&typed).unwrap();
            assert!(open_kit(identity.user(), &read, &kit).is_ok(), "{typed}");
        }
        for typed in ["", "123", &"1".repeat(41), &format!("{}x", &"1".repeat(39))] {
            assert_eq!(
                RecoveryCode::parse(typed).err(),
                Some(RecoveryError::BadCode),
                "{typed}"
            );
        }
        assert_eq!(format!("{code:?}"), "RecoveryCode(..)");
        // Digits are drawn uniformly: over 400 codes (16,000 digits) each
        // digit appears within 5 standard deviations of 1,600.
        let mut counts = [0u32; 10];
        for _ in 0..400 {
            for c in RecoveryCode::random()
                .display()
                .chars()
                .filter(char::is_ascii_digit)
            {
                counts[c.to_digit(10).unwrap() as usize] += 1;
            }
        }
        for (d, n) in counts.iter().enumerate() {
            assert!((1400..=1800).contains(n), "digit {d} drawn {n} times");
        }
    }
}
