//! Linking a new device to an existing user through the server (PROTOCOL
//! §3.6), authenticated by a code the user carries by hand.
//!
//! The device that holds the user's identity key shows a [`PairingCode`]
//! (24 random digits, about 80 bits). On the new device the user types it;
//! the new device generates its key ([`NewDevice`]) and leaves an *offer*
//! with the server: its device id and key, tagged with a key derived from
//! the code. The identity holder reads the offers of its user, keeps the one
//! whose tag verifies, certifies the key ([`accept_offer`]) and leaves an
//! *answer*: the certificate, tagged the same way. The new device checks the
//! tag and the certificate ([`NewDevice::complete`]) and pins the identity
//! key it carries. The code never reaches the server, so the server can
//! neither substitute a key of its own in the offer nor an identity of its
//! own in the answer; it can only drop or delay them.

use core::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::identity::{Contacts, Device, DeviceCertificate, UserIdentity};
use crate::{DeviceId, UserId};

/// Digits in a pairing code.
pub const CODE_DIGITS: usize = 24;

const KEY_CONTEXT: &str = "amicus pairing v1";
const OFFER_LABEL: &[u8] = b"amicus pairing offer v1\0";
const ANSWER_LABEL: &[u8] = b"amicus pairing answer v1\0";
const ANSWER_V2_LABEL: &[u8] = b"amicus pairing answer v2\0";
const CONTACTS_CONTEXT: &str = "amicus pairing contacts v1";
const CHANNEL_LABEL: &[u8] = b"amicus pairing channel v1\0";

/// Why pairing failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PairingError {
    /// The code is not 24 digits.
    #[error("a pairing code is {CODE_DIGITS} digits (spaces and dashes are ignored)")]
    BadCode,
    /// Not an offer or answer of this version.
    #[error("not a pairing {0} of this version")]
    Malformed(&'static str),
    /// The tag does not verify under the code: made with another code, or
    /// altered on the way.
    #[error("the pairing {0} was not made with this code (mistyped, or altered on the way)")]
    WrongCode(&'static str),
    /// The offer names another user.
    #[error("the offer is for user {0}, not this one")]
    OtherUser(UserId),
    /// The certificate does not certify this device's key, or its
    /// signature does not verify.
    #[error("the answer does not certify this device's key")]
    BadCertificate,
    /// The offered device key is not a valid Ed25519 key.
    #[error("the offered device key is not a valid key")]
    BadKey,
}

/// The secret the user carries from the identity holder to the new device
/// (zeroized on drop; never in `Debug`).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PairingCode([u8; CODE_DIGITS]);

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingCode(..)")
    }
}

impl PairingCode {
    /// A fresh code: a uniform 128-bit number reduced modulo 10^24 (the
    /// bias is below 10^-14).
    pub fn random() -> Self {
        let n = u128::from_le_bytes(crate::random::bytes()) % 10u128.pow(CODE_DIGITS as u32);
        let mut text = zeroize::Zeroizing::new(format!("{n:0width$}", width = CODE_DIGITS));
        let mut out = [0u8; CODE_DIGITS];
        out.copy_from_slice(text.as_bytes());
        text.zeroize();
        Self(out)
    }

    /// Reads a typed code: ASCII, Arabic-Indic and Extended Arabic-Indic
    /// digits; spaces and dashes are ignored.
    pub fn parse(text: &str) -> Result<Self, PairingError> {
        read_digits(text).map(Self).ok_or(PairingError::BadCode)
    }

    /// The code to show: six groups of four digits.
    pub fn display(&self) -> String {
        self.0
            .chunks(4)
            .map(|g| std::str::from_utf8(g).expect("digits"))
            .collect::<Vec<_>>()
            .join("-")
    }

    /// The channel the identity holder opens for this code's one offer:
    /// the first 16 bytes of `BLAKE3-keyed(K, "amicus pairing channel
    /// v1\0")`. It tells the server no more about the code than a tag does.
    pub fn channel(&self) -> [u8; 16] {
        let h = self.tag(CHANNEL_LABEL, b"");
        h.as_bytes()[..16].try_into().expect("16 bytes")
    }

    /// The cipher that carries the identity holder's contacts to the new
    /// device (a key of its own, derived from the same digits).
    fn contacts_cipher(&self) -> XChaCha20Poly1305 {
        let key = zeroize::Zeroizing::new(blake3::derive_key(CONTACTS_CONTEXT, &self.0));
        XChaCha20Poly1305::new(&(*key).into())
    }

    fn tag(&self, label: &[u8], body: &[u8]) -> blake3::Hash {
        let mut key = blake3::derive_key(KEY_CONTEXT, &self.0);
        let mut h = blake3::Hasher::new_keyed(&key);
        key.zeroize();
        h.update(label);
        h.update(body);
        h.finalize()
    }
}

/// Reads exactly `N` typed digits (as ASCII): ASCII, Arabic-Indic and
/// Extended Arabic-Indic digits; spaces and dashes are ignored. Nothing
/// of a refused text is left in memory.
pub(crate) fn read_digits<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    let mut n = 0;
    for c in text.chars() {
        let digit = match c {
            '0'..='9' => c as u32 - '0' as u32,
            '\u{660}'..='\u{669}' => c as u32 - 0x660,
            '\u{6F0}'..='\u{6F9}' => c as u32 - 0x6F0,
            ' ' | '-' | '\u{a0}' | '\u{2009}' => continue,
            _ => {
                out.zeroize();
                return None;
            }
        };
        if n == N {
            out.zeroize();
            return None;
        }
        out[n] = b'0' + digit as u8;
        n += 1;
    }
    if n != N {
        out.zeroize();
        return None;
    }
    Some(out)
}

/// What is tagged in an offer: `postcard(user, device, device key)`.
#[derive(Serialize, Deserialize)]
struct OfferBody {
    user: UserId,
    device: DeviceId,
    device_key: [u8; 32],
}

/// `1 || postcard(Offer)`.
#[derive(Serialize, Deserialize)]
struct Offer {
    body: OfferBody,
    tag: [u8; 32],
}

/// `1 || postcard(Answer)`; the tag covers `postcard(certificate)`.
#[derive(Serialize, Deserialize)]
struct Answer {
    certificate: DeviceCertificate,
    tag: [u8; 32],
}

/// `2 || postcard(AnswerV2)`: the certificate and the identity holder's
/// pinned contacts, sealed under a key derived from the code (the server
/// learns neither whom the user knows nor their keys); the tag covers
/// `postcard(certificate) || nonce || sealed`.
#[derive(Serialize, Deserialize)]
struct AnswerV2 {
    certificate: DeviceCertificate,
    nonce: [u8; 24],
    sealed: Vec<u8>,
    tag: [u8; 32],
}

impl AnswerV2 {
    fn tagged(certificate: &DeviceCertificate, nonce: &[u8; 24], sealed: &[u8]) -> Vec<u8> {
        let mut body = postcard::to_allocvec(certificate).expect("certificates encode");
        body.extend_from_slice(nonce);
        body.extend_from_slice(sealed);
        body
    }
}

fn versioned<T: Serialize>(value: &T) -> Vec<u8> {
    versioned_as(1, value)
}

fn versioned_as<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];
    out.extend_from_slice(&postcard::to_allocvec(value).expect("pairing messages encode"));
    out
}

fn unversioned<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<T, PairingError> {
    match bytes.split_first() {
        Some((1, rest)) => crate::decode_exact(rest).ok_or(PairingError::Malformed(what)),
        _ => Err(PairingError::Malformed(what)),
    }
}

/// A device being linked: its key, not yet certified.
pub struct NewDevice {
    user: UserId,
    device: DeviceId,
    key: SigningKey,
}

impl fmt::Debug for NewDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NewDevice({}/{})", self.user, self.device)
    }
}

impl NewDevice {
    /// Generates the new device's id and key.
    pub fn generate(user: UserId) -> Self {
        Self {
            user,
            device: DeviceId::random(),
            key: SigningKey::from_bytes(&crate::random::bytes()),
        }
    }

    /// The device id.
    pub fn id(&self) -> DeviceId {
        self.device
    }

    /// The offer to leave with the server.
    pub fn offer(&self, code: &PairingCode) -> Vec<u8> {
        let body = OfferBody {
            user: self.user.clone(),
            device: self.device,
            device_key: self.key.verifying_key().to_bytes(),
        };
        let tag = code.tag(
            OFFER_LABEL,
            &postcard::to_allocvec(&body).expect("offers encode"),
        );
        versioned(&Offer {
            body,
            tag: *tag.as_bytes(),
        })
    }

    /// Checks the identity holder's answer and becomes a certified device,
    /// with the identity holder's pinned contacts (none from an answer of
    /// version 1). On error the device stays as it was (try another answer).
    pub fn complete(
        &self,
        code: &PairingCode,
        answer: &[u8],
    ) -> Result<(Device, Contacts), PairingError> {
        let (cert, contacts) = match answer.first() {
            Some(2) => {
                let answer: AnswerV2 =
                    crate::decode_exact(&answer[1..]).ok_or(PairingError::Malformed("answer"))?;
                let body = AnswerV2::tagged(&answer.certificate, &answer.nonce, &answer.sealed);
                // blake3::Hash compares in constant time.
                if code.tag(ANSWER_V2_LABEL, &body) != blake3::Hash::from_bytes(answer.tag) {
                    return Err(PairingError::WrongCode("answer"));
                }
                let aad = postcard::to_allocvec(&answer.certificate).expect("certificates encode");
                let plain = zeroize::Zeroizing::new(
                    code.contacts_cipher()
                        .decrypt(
                            &XNonce::from(answer.nonce),
                            Payload {
                                msg: &answer.sealed,
                                aad: &aad,
                            },
                        )
                        .map_err(|_| PairingError::WrongCode("answer"))?,
                );
                let contacts: Contacts =
                    crate::decode_exact(&plain).ok_or(PairingError::Malformed("answer"))?;
                (answer.certificate, contacts)
            }
            _ => {
                let answer: Answer = unversioned(answer, "answer")?;
                let expected = code.tag(
                    ANSWER_LABEL,
                    &postcard::to_allocvec(&answer.certificate).expect("certificates encode"),
                );
                if expected != blake3::Hash::from_bytes(answer.tag) {
                    return Err(PairingError::WrongCode("answer"));
                }
                (answer.certificate, Contacts::default())
            }
        };
        if cert.user != self.user
            || cert.device != self.device
            || cert.device_key != self.key.verifying_key().to_bytes()
        {
            return Err(PairingError::BadCertificate);
        }
        cert.verify(&cert.identity_key.clone())
            .map_err(|_| PairingError::BadCertificate)?;
        let device =
            Device::certified(self.key.clone(), cert).map_err(|_| PairingError::BadCertificate)?;
        Ok((device, contacts))
    }
}

/// How often a new device asks whether its offer was answered, in
/// milliseconds.
pub const ANSWER_POLL_MS: u64 = 1_000;

/// Why linking a new device stopped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    /// The server keeps no channel for this code and user: the code or
    /// the user name is wrong, or the other device stopped showing it.
    #[error("no device of this user shows this pairing code (check the code and the user name)")]
    NoPairing,
    /// The offer expired before the other device answered it.
    #[error("the other device did not answer in time: show a new code")]
    Expired,
    /// The server could not be reached with the offer, or its answer is
    /// not what the protocol says.
    #[error("the offer could not be left with the server: {0}")]
    Offer(String),
    /// The server refused the offer (its status and error body, for the
    /// interface to word).
    #[error("the server refused the offer (HTTP {status})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The answer's body (JSON `{error, message}`).
        body: Vec<u8>,
    },
    /// The answer does not verify.
    #[error(transparent)]
    Answer(#[from] PairingError),
    /// The driver answered a step that was not asked.
    #[error("linking was answered out of turn")]
    OutOfTurn,
}

/// What the new device's driver does next ([`Linking::step`]).
#[derive(Debug)]
pub enum LinkStep {
    /// Send this request (no session) and hand what came to
    /// [`Linking::answered`].
    Request(crate::api::HttpRequest),
    /// Ask for the next step at this time (the driver's clock, in ms).
    Wait(u64),
    /// The device is certified: the identity holder's answer verified.
    Done(Box<(Device, Contacts)>),
}

#[derive(Debug)]
enum LinkStage {
    Offer,
    Offering,
    /// Ask again at this time.
    Waiting(u64),
    Asking,
    Done,
}

/// The new device's side of pairing, step by step, so that every client
/// links the same way (PROTOCOL §3.6): leave the offer (`POST
/// /v1/pairing`), then ask for the answer every [`ANSWER_POLL_MS`] until
/// the offer expires, and check it. A missing channel refuses at once;
/// an answer that is gone means the offer expired; the network is tried
/// again at the next poll.
pub struct Linking {
    new: NewDevice,
    code: PairingCode,
    stage: LinkStage,
    /// The offer's handle, once left.
    offer: Option<String>,
    until: u64,
}

impl fmt::Debug for Linking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Linking")
            .field("device", &self.new.id())
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl Linking {
    /// A new device for `user`, linking with `code`.
    pub fn start(user: UserId, code: PairingCode) -> Linking {
        Linking {
            new: NewDevice::generate(user),
            code,
            stage: LinkStage::Offer,
            offer: None,
            until: 0,
        }
    }

    /// Whether the offer is with the server (the other device can answer).
    pub fn offered(&self) -> bool {
        self.offer.is_some()
    }

    /// What to do next, at `now`.
    pub fn step(&mut self, now: u64) -> Result<LinkStep, LinkError> {
        use crate::api::{HttpRequest, Method, PairingOffer, to_json};
        match self.stage {
            LinkStage::Offer => {
                self.stage = LinkStage::Offering;
                let body = PairingOffer {
                    user: self.new.user.to_string(),
                    channel: hex::encode(self.code.channel()),
                    offer: hex::encode(self.new.offer(&self.code)),
                };
                Ok(LinkStep::Request(HttpRequest {
                    method: Method::Post,
                    path: "/v1/pairing".into(),
                    body: Some(to_json(&body)),
                    signed_in: false,
                }))
            }
            LinkStage::Waiting(at) if now < at => Ok(LinkStep::Wait(at)),
            LinkStage::Waiting(_) if now > self.until => Err(LinkError::Expired),
            LinkStage::Waiting(_) => {
                self.stage = LinkStage::Asking;
                let id = self.offer.as_deref().ok_or(LinkError::OutOfTurn)?;
                Ok(LinkStep::Request(HttpRequest {
                    method: Method::Get,
                    path: format!("/v1/pairing/{id}"),
                    body: None,
                    signed_in: false,
                }))
            }
            LinkStage::Offering | LinkStage::Asking | LinkStage::Done => Err(LinkError::OutOfTurn),
        }
    }

    /// What came back for the last [`LinkStep::Request`], at `now`: the
    /// answer, or `Err` when no answer came. After [`LinkStep::Done`],
    /// nothing more is asked.
    pub fn answered(
        &mut self,
        now: u64,
        response: Result<crate::api::HttpResponse, String>,
    ) -> Result<Option<LinkStep>, LinkError> {
        use crate::api::{PairingAnswer, PairingOffered, from_json};
        match self.stage {
            LinkStage::Offering => match response {
                Ok(r) if (200..300).contains(&r.status) => {
                    let offered: PairingOffered = from_json(&r.body).map_err(LinkError::Offer)?;
                    self.offer = Some(offered.id);
                    self.until = now.saturating_add(offered.expires_in_secs.saturating_mul(1000));
                    self.stage = LinkStage::Waiting(now + ANSWER_POLL_MS);
                    Ok(None)
                }
                Ok(r) if r.status == 404 => Err(LinkError::NoPairing),
                Ok(r) => Err(LinkError::Refused {
                    status: r.status,
                    body: r.body,
                }),
                Err(e) => Err(LinkError::Offer(e)),
            },
            LinkStage::Asking => {
                self.stage = LinkStage::Waiting(now + ANSWER_POLL_MS);
                match response {
                    Ok(r) if (200..300).contains(&r.status) => {
                        let answer = from_json::<PairingAnswer>(&r.body)
                            .ok()
                            .and_then(|a| a.answer);
                        let Some(answer) = answer else {
                            return Ok(None);
                        };
                        let answer =
                            hex::decode(answer).map_err(|_| PairingError::Malformed("answer"))?;
                        let linked = self.new.complete(&self.code, &answer)?;
                        self.stage = LinkStage::Done;
                        Ok(Some(LinkStep::Done(Box::new(linked))))
                    }
                    // The server no longer holds the offer.
                    Ok(r) if r.status == 404 => Err(LinkError::Expired),
                    // The network or a busy server: asked again.
                    _ => Ok(None),
                }
            }
            _ => Err(LinkError::OutOfTurn),
        }
    }
}

/// The identity holder's side: checks an offer made with `code` and
/// certifies its key. Returns the certificate (for `POST /v1/devices`) and
/// the answer to leave with the server, which carries `contacts` (the
/// identity keys this device pinned) sealed for the new device, so that it
/// trusts the same keys instead of pinning anew what the server lists.
pub fn accept_offer(
    identity: &UserIdentity,
    code: &PairingCode,
    offer: &[u8],
    contacts: &Contacts,
) -> Result<(DeviceCertificate, Vec<u8>), PairingError> {
    let offer: Offer = unversioned(offer, "offer")?;
    let expected = code.tag(
        OFFER_LABEL,
        &postcard::to_allocvec(&offer.body).expect("offers encode"),
    );
    if expected != blake3::Hash::from_bytes(offer.tag) {
        return Err(PairingError::WrongCode("offer"));
    }
    if &offer.body.user != identity.user() {
        return Err(PairingError::OtherUser(offer.body.user));
    }
    let key = VerifyingKey::from_bytes(&offer.body.device_key).map_err(|_| PairingError::BadKey)?;
    let certificate = identity.certify(offer.body.device, &key);
    // A fresh random nonce per answer; a code makes one answer.
    let nonce: [u8; 24] = crate::random::bytes();
    let aad = postcard::to_allocvec(&certificate).expect("certificates encode");
    let plain = zeroize::Zeroizing::new(postcard::to_allocvec(contacts).expect("contacts encode"));
    let sealed = code
        .contacts_cipher()
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plain,
                aad: &aad,
            },
        )
        .expect("XChaCha20-Poly1305 encrypts any list of contacts");
    let tag = code.tag(
        ANSWER_V2_LABEL,
        &AnswerV2::tagged(&certificate, &nonce, &sealed),
    );
    let answer = versioned_as(
        2,
        &AnswerV2 {
            certificate: certificate.clone(),
            nonce,
            sealed,
            tag: *tag.as_bytes(),
        },
    );
    Ok((certificate, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amina() -> UserIdentity {
        UserIdentity::generate(UserId::new("amina").unwrap())
    }

    /// The whole exchange: the new device ends certified by the identity,
    /// with the identity's key pinned in its certificate.
    #[test]
    fn a_device_paired_with_the_right_code_is_certified_by_the_identity() {
        let identity = amina();
        let code = PairingCode::random();
        let typed = PairingCode::parse(&code.display()).unwrap();
        let new = NewDevice::generate(identity.user().clone());
        let mut contacts = Contacts::default();
        contacts.pin(&UserId::new("bruno").unwrap(), amina().public());
        let (cert, answer) = accept_offer(&identity, &code, &new.offer(&typed), &contacts).unwrap();
        let (device, copied) = new.complete(&typed, &answer).unwrap();
        assert_eq!(copied, contacts, "the new device trusts the same keys");
        assert_eq!(device.id(), new.id());
        assert_eq!(device.certificate(), &cert);
        cert.verify(&identity.public()).unwrap();
    }

    /// A server that does not know the code can neither slip its own key
    /// into an offer nor its own identity into an answer, nor replay an
    /// answer made for another device.
    #[test]
    fn without_the_code_offers_and_answers_are_refused() {
        let identity = amina();
        let code = PairingCode::random();
        let other = PairingCode::random();
        let new = NewDevice::generate(identity.user().clone());

        // An offer made with another code (the server's own device key).
        let forged = NewDevice::generate(identity.user().clone()).offer(&other);
        assert_eq!(
            accept_offer(&identity, &code, &forged, &Contacts::default()).unwrap_err(),
            PairingError::WrongCode("offer")
        );
        // The right offer with one byte changed (the key or the device id).
        let offer = new.offer(&code);
        for at in [2, 10, 30, offer.len() - 1] {
            let mut bad = offer.clone();
            bad[at] ^= 1;
            assert!(
                accept_offer(&identity, &code, &bad, &Contacts::default()).is_err(),
                "byte {at}"
            );
        }
        // An answer certifying the device under an identity of the server's.
        let mallory = amina();
        let (_, fake) =
            accept_offer(&mallory, &other, &new.offer(&other), &Contacts::default()).unwrap();
        assert_eq!(
            new.complete(&code, &fake).map(|_| ()).unwrap_err(),
            PairingError::WrongCode("answer")
        );
        // A genuine answer for another device.
        let elsewhere = NewDevice::generate(identity.user().clone());
        let (_, theirs) = accept_offer(
            &identity,
            &code,
            &elsewhere.offer(&code),
            &Contacts::default(),
        )
        .unwrap();
        assert_eq!(
            new.complete(&code, &theirs).map(|_| ()).unwrap_err(),
            PairingError::BadCertificate
        );
        // An offer for another user.
        let bruno = UserIdentity::generate(UserId::new("bruno").unwrap());
        assert!(matches!(
            accept_offer(&bruno, &code, &new.offer(&code), &Contacts::default()),
            Err(PairingError::OtherUser(_))
        ));
        // Truncated or unversioned bytes.
        for junk in [&offer[..0], &offer[..5], &[2u8, 0, 0][..]] {
            assert_eq!(
                accept_offer(&identity, &code, junk, &Contacts::default()).unwrap_err(),
                PairingError::Malformed("offer")
            );
        }
    }

    /// Codes read as typed, in Latin or Arabic digits, with separators.
    #[test]
    fn codes_are_read_in_latin_and_arabic_digits() {
        let code = PairingCode::random();
        let shown = code.display();
        assert_eq!(shown.len(), CODE_DIGITS + 5);
        let arabic: String = shown
            .chars()
            .map(|c| match c.to_digit(10) {
                Some(d) => char::from_u32(0x660 + d).unwrap(),
                None => ' ',
            })
            .collect();
        assert_eq!(PairingCode::parse(&arabic).unwrap().0, code.0);
        let persian: String = shown
            .chars()
            .filter_map(|c| c.to_digit(10).map(|d| char::from_u32(0x6F0 + d).unwrap()))
            .collect();
        assert_eq!(PairingCode::parse(&persian).unwrap().0, code.0);
        for bad in ["", "1234", &format!("{shown}1"), &shown.replace('1', "x")] {
            if bad != shown {
                assert_eq!(PairingCode::parse(bad).unwrap_err(), PairingError::BadCode);
            }
        }
        assert!(!format!("{code:?}").contains(&shown[..4]));
    }

    #[test]
    fn the_channel_follows_the_code_and_differs_from_its_tags() {
        let code = PairingCode::random();
        let again = PairingCode::parse(&code.display()).unwrap();
        assert_eq!(code.channel(), again.channel());
        assert_ne!(code.channel(), PairingCode::random().channel());
        assert_ne!(
            code.channel()[..],
            code.tag(OFFER_LABEL, b"").as_bytes()[..16],
            "a channel is not an offer tag"
        );
    }

    /// The contacts travel sealed: the server sees neither the names nor
    /// the keys, and an answer altered anywhere (certificate, nonce,
    /// sealed contacts, tag) is refused.
    #[test]
    fn the_contacts_travel_sealed_and_untouched() {
        let identity = amina();
        let code = PairingCode::random();
        let new = NewDevice::generate(identity.user().clone());
        let mut contacts = Contacts::default();
        contacts.pin(&UserId::new("bruno").unwrap(), amina().public());
        let (_, answer) = accept_offer(&identity, &code, &new.offer(&code), &contacts).unwrap();
        assert!(
            !answer.windows(5).any(|w| w == b"bruno"),
            "the name is not in clear"
        );
        for at in [1, 40, answer.len() - 40, answer.len() - 1] {
            let mut bad = answer.clone();
            bad[at] ^= 1;
            assert!(new.complete(&code, &bad).is_err(), "byte {at}");
        }
        let (_, copied) = new.complete(&code, &answer).unwrap();
        assert_eq!(copied, contacts);
    }

    /// The new device's side, step by step: the offer left, the answer
    /// asked for every second (the network and an answer not there yet
    /// are asked again), checked, and the device certified; a channel the
    /// server does not keep refuses at once, a gone or late answer expires.
    #[test]
    fn a_new_device_links_by_leaving_its_offer_and_asking_for_the_answer() {
        use crate::api::{HttpResponse, Method, PairingOffer};
        let identity = amina();
        let code = PairingCode::random();
        let typed = PairingCode::parse(&code.display()).unwrap();
        let answer = |status: u16, body: &str| {
            Ok(HttpResponse {
                status,
                body: body.as_bytes().to_vec(),
            })
        };
        let mut linking = Linking::start(identity.user().clone(), typed);
        let Ok(LinkStep::Request(offer)) = linking.step(0) else {
            panic!("the offer first")
        };
        assert_eq!(
            (offer.method, offer.path.as_str(), offer.signed_in),
            (Method::Post, "/v1/pairing", false)
        );
        let offer: PairingOffer = serde_json::from_slice(offer.body.as_deref().unwrap()).unwrap();
        assert_eq!(offer.channel, hex::encode(code.channel()));
        assert!(!linking.offered());
        assert!(
            linking
                .answered(0, answer(201, r#"{"id":"ab","expires_in_secs":600}"#))
                .unwrap()
                .is_none()
        );
        assert!(linking.offered());
        assert!(matches!(linking.step(500), Ok(LinkStep::Wait(1_000))));
        let Ok(LinkStep::Request(ask)) = linking.step(1_000) else {
            panic!("the answer asked for")
        };
        assert_eq!(
            (ask.method, ask.path.as_str()),
            (Method::Get, "/v1/pairing/ab")
        );
        // Not answered yet; then the network fails: asked again each time.
        assert!(
            linking
                .answered(1_000, answer(200, r#"{"answer":null}"#))
                .unwrap()
                .is_none()
        );
        assert!(matches!(linking.step(2_000), Ok(LinkStep::Request(_))));
        assert!(
            linking
                .answered(2_000, Err("unreachable".into()))
                .unwrap()
                .is_none()
        );
        assert!(matches!(linking.step(3_000), Ok(LinkStep::Request(_))));
        let (cert, sealed) = accept_offer(
            &identity,
            &code,
            &hex::decode(&offer.offer).unwrap(),
            &Contacts::default(),
        )
        .unwrap();
        let body = format!(r#"{{"answer":"{}"}}"#, hex::encode(sealed));
        let Ok(Some(LinkStep::Done(linked))) = linking.answered(3_000, answer(200, &body)) else {
            panic!("linked")
        };
        assert_eq!(linked.0.certificate(), &cert);
        assert!(matches!(linking.step(3_001), Err(LinkError::OutOfTurn)));

        // No channel for this code and user.
        let mut linking = Linking::start(identity.user().clone(), PairingCode::random());
        linking.step(0).unwrap();
        assert_eq!(
            linking.answered(0, answer(404, "{}")).unwrap_err(),
            LinkError::NoPairing
        );
        // The offer gone from the server, or its lifetime over.
        let offered = || {
            let mut linking = Linking::start(identity.user().clone(), PairingCode::random());
            linking.step(0).unwrap();
            linking
                .answered(0, answer(201, r#"{"id":"cd","expires_in_secs":5}"#))
                .unwrap();
            linking
        };
        let mut linking = offered();
        linking.step(1_000).unwrap();
        assert_eq!(
            linking.answered(1_000, answer(404, "{}")).unwrap_err(),
            LinkError::Expired
        );
        assert_eq!(offered().step(5_001).unwrap_err(), LinkError::Expired);
    }
}
