//! Publishing a confidential filing into a public space (PROTOCOL §15.1).
//!
//! The public copy carries a *provenance* record: the confidential space and
//! stream ids and the Automerge heads the copy was taken at, signed by the
//! publishing device ([`Statement::Provenance`](crate::identity::Statement))
//! over [`provenance_message`]. The record names only opaque ids and hashes:
//! it tells a reader who cannot read the space nothing of its content. A
//! reader who can read it checks the copy against their own replica with
//! [`check_copy`]: the text at those heads must be the published text.

use automerge::{AutoCommit, ChangeHash, ObjType, ROOT, ReadDoc, ScalarValue};
use serde::{Deserialize, Serialize};

use crate::SpaceId;
use crate::document::DocumentError;
use crate::identity::{DeviceCertificate, Statement, verify_statement};

/// A publisher's signed statement that a public document is a vetted
/// version of a confidential document (which stays unnamed: only opaque ids
/// and the Automerge heads, which reveal nothing of its content).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The confidential space (hex id).
    pub source_space: String,
    /// The document stream (hex id).
    pub source_stream: String,
    /// The Automerge heads published (hex).
    pub heads: Vec<String>,
    /// The publishing device (hex id).
    pub device: String,
    /// Ed25519 signature (hex) by the device key over
    /// [`provenance_message`].
    pub signature: String,
}

/// Why a provenance record does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvenanceError {
    /// The certificate given is not the one of the device the record names.
    #[error("the provenance names another device than the certificate")]
    OtherDevice,
    /// The signature is not 64 bytes of hex.
    #[error("the provenance signature is not 64 bytes of hex")]
    Malformed,
    /// The signature does not verify over this copy and source.
    #[error("the provenance signature does not verify")]
    BadSignature,
}

/// A mark of a public copy's text: `bold`, `italic` or `underline` over the
/// code points `start..end` of its body (as the filing's editor draws them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextMark {
    /// `bold`, `italic` or `underline` ([`PUBLIC_MARKS`]).
    pub mark: String,
    /// First code point marked.
    pub start: u32,
    /// Code point after the last one marked.
    pub end: u32,
}

/// The formatting a public copy keeps. Comments and their passages stay in
/// the confidential space.
pub const PUBLIC_MARKS: [&str; 3] = ["bold", "italic", "underline"];

/// At most this many marks in a public copy.
pub const MAX_MARKS: usize = 10_000;

/// Why the marks of a public copy are refused.
pub fn check_marks(marks: &[TextMark], body: &str) -> Result<(), String> {
    if marks.len() > MAX_MARKS {
        return Err(format!("a public copy has at most {MAX_MARKS} marks"));
    }
    let n = body.chars().count();
    for m in marks {
        if !PUBLIC_MARKS.contains(&m.mark.as_str()) {
            return Err(format!(
                "`{}` is not a mark of a public copy (bold, italic, underline)",
                m.mark.chars().take(20).collect::<String>()
            ));
        }
        if m.start >= m.end || m.end as usize > n {
            return Err(format!(
                "a mark covers {}..{}, outside the text's {n} characters",
                m.start, m.end
            ));
        }
    }
    Ok(())
}

/// The formatting of a filing's body at `heads` that a public copy keeps,
/// in the order of the text.
pub fn filing_marks(
    doc: &AutoCommit,
    heads: &[ChangeHash],
) -> Result<Vec<TextMark>, DocumentError> {
    let body = match doc.get_at(ROOT, "body", heads).map_err(am)? {
        Some((automerge::Value::Object(ObjType::Text), id)) => id,
        _ => return Ok(Vec::new()),
    };
    let mut out: Vec<TextMark> = doc
        .marks_at(&body, heads)
        .map_err(am)?
        .into_iter()
        .filter(|m| PUBLIC_MARKS.contains(&m.name()) && m.value() == &ScalarValue::Boolean(true))
        .filter(|m| m.start < m.end)
        .map(|m| TextMark {
            mark: m.name().to_owned(),
            start: m.start as u32,
            end: m.end as u32,
        })
        .collect();
    out.sort_by(|a, b| (a.start, a.end, &a.mark).cmp(&(b.start, b.end, &b.mark)));
    Ok(out)
}

/// A public copy of a filing, to `PUT /v1/public/{space}/docs/{doc}`
/// (PROTOCOL §15.1): its title, text and formatting at the heads its
/// provenance names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicCopy {
    /// The title.
    pub title: String,
    /// The text.
    pub body: String,
    /// Its formatting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<TextMark>,
    /// A primary language tag, if the publisher gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Where it comes from, signed.
    pub provenance: Provenance,
}

/// `device` publishes the filing `doc` (stream `source_stream` of the
/// confidential space `source_space`) as it reads now, as the copy `id`
/// of `public_space`: the title, text and formatting at the current heads,
/// and the provenance signed over them. Both clients publish through this.
pub fn publish(
    doc: &mut AutoCommit,
    device: &crate::identity::Device,
    public_space: SpaceId,
    id: &str,
    source_space: SpaceId,
    source_stream: crate::StreamId,
    language: Option<&str>,
) -> Result<PublicCopy, DocumentError> {
    let mut at = doc.get_heads();
    at.sort();
    let heads: Vec<String> = at.iter().map(|h| h.to_string()).collect();
    let title = crate::document::filing::title(doc)?;
    let body = crate::document::filing::body(doc)?;
    let marks = filing_marks(doc, &at)?;
    let message = provenance_message(
        public_space,
        id,
        &title,
        &body,
        &marks,
        &source_space.to_hex(),
        &source_stream.to_hex(),
        &heads,
    );
    let provenance = Provenance {
        source_space: source_space.to_hex(),
        source_stream: source_stream.to_hex(),
        heads,
        device: device.id().to_hex(),
        signature: hex::encode(device.sign_statement(Statement::Provenance, &message)),
    };
    Ok(PublicCopy {
        title,
        body,
        marks,
        language: language.filter(|l| !l.is_empty()).map(str::to_owned),
        provenance,
    })
}

impl Provenance {
    /// Checks the signature of the device `certificate` names over the copy
    /// (`public_space`, `id`, `title`, `body`, `marks`) and this record's
    /// source. Whether the certificate itself is genuine (signed by the
    /// author's identity key) is for the caller to establish.
    #[allow(clippy::too_many_arguments)]
    pub fn verify(
        &self,
        public_space: SpaceId,
        id: &str,
        title: &str,
        body: &str,
        marks: &[TextMark],
        certificate: &DeviceCertificate,
    ) -> Result<(), ProvenanceError> {
        let message = provenance_message(
            public_space,
            id,
            title,
            body,
            marks,
            &self.source_space,
            &self.source_stream,
            &self.heads,
        );
        device_signed(
            certificate,
            &self.device,
            &self.signature,
            Statement::Provenance,
            &message,
        )
    }
}

/// Checks that `signature` (hex) is the signature of the device `device`
/// (hex id) that `certificate` names, under `statement`, over `message`.
fn device_signed(
    certificate: &DeviceCertificate,
    device: &str,
    signature: &str,
    statement: Statement,
    message: &[u8],
) -> Result<(), ProvenanceError> {
    if certificate.device.to_hex() != device {
        return Err(ProvenanceError::OtherDevice);
    }
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(signature, &mut bytes).map_err(|_| ProvenanceError::Malformed)?;
    if verify_statement(&certificate.device_key, statement, message, &bytes) {
        Ok(())
    } else {
        Err(ProvenanceError::BadSignature)
    }
}

/// The bytes a publisher signs (statement `Provenance`): the public copy
/// (space, id, BLAKE3 of title, body and marks) bound to the confidential
/// source (space and stream ids, Automerge heads, all as hex). A copy
/// without marks hashes as version 1 did (title length, title, body), so
/// copies published before marks still verify; with marks, version 2
/// length-prefixes the body and appends each mark (name length, name,
/// start, end; u64 big-endian).
#[allow(clippy::too_many_arguments)]
pub fn provenance_message(
    public_space: SpaceId,
    id: &str,
    title: &str,
    body: &str,
    marks: &[TextMark],
    source_space: &str,
    source_stream: &str,
    heads: &[String],
) -> Vec<u8> {
    let content = if marks.is_empty() {
        let mut c = blake3::Hasher::new_derive_key("amicus public content v1");
        c.update(&(title.len() as u64).to_be_bytes());
        c.update(title.as_bytes());
        c.update(body.as_bytes());
        c
    } else {
        let mut c = blake3::Hasher::new_derive_key("amicus public content v2");
        for part in [title, body] {
            c.update(&(part.len() as u64).to_be_bytes());
            c.update(part.as_bytes());
        }
        c.update(&(marks.len() as u64).to_be_bytes());
        for m in marks {
            c.update(&(m.mark.len() as u64).to_be_bytes());
            c.update(m.mark.as_bytes());
            c.update(&u64::from(m.start).to_be_bytes());
            c.update(&u64::from(m.end).to_be_bytes());
        }
        c
    };
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

/// A signed withdrawal of one public copy (PROTOCOL §15.1): the device
/// that withdraws it signs the copy's space, id and `updated` time, so the
/// tombstone the server keeps names who withdrew which copy, and cannot be
/// replayed against a later publication under the same id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    /// The withdrawing device (hex id).
    pub device: String,
    /// Ed25519 signature (hex) by the device key over
    /// [`withdrawal_message`].
    pub signature: String,
}

impl Withdrawal {
    /// `device` withdraws the copy `id` of `public_space` that was written
    /// at `updated`.
    pub fn sign(
        device: &crate::identity::Device,
        public_space: SpaceId,
        id: &str,
        updated: u64,
    ) -> Withdrawal {
        let message = withdrawal_message(public_space, id, updated);
        Withdrawal {
            device: device.id().to_hex(),
            signature: hex::encode(device.sign_statement(Statement::Withdrawal, &message)),
        }
    }

    /// Checks the signature of the device `certificate` names over the
    /// withdrawal of the copy (`public_space`, `id`, `updated`).
    pub fn verify(
        &self,
        public_space: SpaceId,
        id: &str,
        updated: u64,
        certificate: &DeviceCertificate,
    ) -> Result<(), ProvenanceError> {
        device_signed(
            certificate,
            &self.device,
            &self.signature,
            Statement::Withdrawal,
            &withdrawal_message(public_space, id, updated),
        )
    }
}

/// The bytes a withdrawal signs (statement `Withdrawal`): the public
/// space, the length-prefixed copy id and the copy's `updated` time (u64
/// big-endian).
pub fn withdrawal_message(public_space: SpaceId, id: &str, updated: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&public_space.0);
    out.extend_from_slice(&(id.len() as u64).to_be_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&updated.to_be_bytes());
    out
}

/// What a reader of the source space finds when comparing a public copy
/// with their replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyCheck {
    /// At the named heads, the filing's title and text are the published
    /// ones, and its formatting too when the copy carries formatting.
    Matches,
    /// At the named heads, the filing reads differently: the copy is not
    /// what its provenance claims.
    Differs,
    /// The replica does not hold every named head (not yet received, or
    /// not a change of this filing): nothing can be said yet.
    Unknown,
}

/// Compares a public copy (`title`, `body`, `marks`) with the filing `doc`
/// at the hex `heads` its provenance names. A copy without marks is
/// compared by its text only (copies from before marks were published).
pub fn check_copy(
    doc: &AutoCommit,
    heads: &[String],
    title: &str,
    body: &str,
    marks: &[TextMark],
) -> Result<CopyCheck, DocumentError> {
    let mut at = Vec::with_capacity(heads.len());
    for h in heads {
        match h.parse::<ChangeHash>() {
            Ok(hash) if ReadDoc::get_change_by_hash(doc, &hash).is_some() => at.push(hash),
            _ => return Ok(CopyCheck::Unknown),
        }
    }
    if at.is_empty() {
        return Ok(CopyCheck::Unknown);
    }
    let text_at = |key: &str| -> Result<Option<String>, DocumentError> {
        match doc.get_at(ROOT, key, &at).map_err(am)? {
            Some((automerge::Value::Object(ObjType::Text), id)) => {
                Ok(Some(doc.text_at(&id, &at).map_err(am)?))
            }
            _ => Ok(None),
        }
    };
    let same = text_at("title")?.as_deref() == Some(title)
        && text_at("body")?.as_deref() == Some(body)
        && (marks.is_empty() || filing_marks(doc, &at)? == marks);
    Ok(if same {
        CopyCheck::Matches
    } else {
        CopyCheck::Differs
    })
}

fn am(e: automerge::AutomergeError) -> DocumentError {
    DocumentError::Automerge(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserId;
    use crate::document::filing;
    use crate::identity::UserIdentity;

    fn hex_heads(doc: &mut AutoCommit) -> Vec<String> {
        doc.get_heads().iter().map(|h| h.to_string()).collect()
    }

    fn filing(title: &str, body: &str) -> AutoCommit {
        let mut doc = AutoCommit::new();
        filing::init(&mut doc, title).unwrap();
        let b = doc.get(ROOT, "body").unwrap().unwrap().1;
        automerge::transaction::Transactable::splice_text(&mut doc, &b, 0, 0, body).unwrap();
        doc
    }

    /// A published copy keeps the filing's bold, italic and underline as
    /// they were at the signed heads (not its comments); the signature
    /// covers them, and a reader of the space finds a copy whose
    /// formatting was altered to differ.
    #[test]
    fn a_public_copy_keeps_its_formatting_under_the_signature() {
        let alice = UserIdentity::generate(UserId::new("alice").unwrap());
        let device = alice.new_device();
        let mut doc = filing("Requête", "Le requérant a été détenu 14 jours.");
        filing::format(&mut doc, 3, 12, "bold", true).unwrap();
        filing::format(&mut doc, 26, 35, "italic", true).unwrap();
        filing::comment(&mut doc, "t1", 0, 2, "alice", "À vérifier", 0).unwrap();
        let (public, source, stream) =
            (SpaceId([3; 16]), SpaceId([4; 16]), crate::StreamId([5; 16]));
        let copy = publish(&mut doc, &device, public, "doc", source, stream, Some("fr")).unwrap();
        let mark = |mark: &str, start, end| TextMark {
            mark: mark.into(),
            start,
            end,
        };
        assert_eq!(
            copy.marks,
            vec![mark("bold", 3, 12), mark("italic", 26, 35)]
        );
        assert_eq!(copy.language.as_deref(), Some("fr"));
        assert_eq!(check_marks(&copy.marks, &copy.body), Ok(()));
        let cert = device.certificate();
        let verify = |marks: &[TextMark]| {
            copy.provenance
                .verify(public, "doc", &copy.title, &copy.body, marks, cert)
        };
        assert_eq!(verify(&copy.marks), Ok(()));
        // Formatting dropped or changed by whoever holds the copy.
        assert_eq!(verify(&[]), Err(ProvenanceError::BadSignature));
        assert_eq!(
            verify(&[mark("bold", 3, 12)]),
            Err(ProvenanceError::BadSignature)
        );
        let heads = copy.provenance.heads.clone();
        let check = |doc: &AutoCommit, marks: &[TextMark]| {
            check_copy(doc, &heads, &copy.title, &copy.body, marks)
        };
        assert_eq!(check(&doc, &copy.marks).unwrap(), CopyCheck::Matches);
        assert_eq!(
            check(&doc, &[mark("bold", 3, 12), mark("italic", 20, 35)]).unwrap(),
            CopyCheck::Differs
        );
        // Formatting later than the copy is not in it.
        filing::format(&mut doc, 0, 2, "underline", true).unwrap();
        assert_eq!(check(&doc, &copy.marks).unwrap(), CopyCheck::Matches);
        // The server's checks: known marks, inside the text.
        for bad in [
            vec![mark("commented", 0, 2)],
            vec![mark("bold", 2, 2)],
            vec![mark("bold", 0, 36)],
        ] {
            assert!(check_marks(&bad, &copy.body).is_err(), "{bad:?}");
        }
        assert_eq!(check_marks(&[mark("bold", 0, 35)], &copy.body), Ok(()));
    }

    #[test]
    fn a_copy_matches_its_heads_even_after_later_edits() {
        let mut doc = filing("Requête", "Le requérant a été détenu 14 jours.");
        let heads = hex_heads(&mut doc);
        let b = doc.get(ROOT, "body").unwrap().unwrap().1;
        automerge::transaction::Transactable::splice_text(&mut doc, &b, 0, 0, "Projet : ").unwrap();
        filing::set_title(&mut doc, "Requête (v2)").unwrap();
        assert_eq!(
            check_copy(
                &doc,
                &heads,
                "Requête",
                "Le requérant a été détenu 14 jours.",
                &[]
            )
            .unwrap(),
            CopyCheck::Matches
        );
        // The current text is not what was published at those heads.
        let now = filing::body(&doc).unwrap();
        assert_eq!(
            check_copy(&doc, &heads, "Requête (v2)", &now, &[]).unwrap(),
            CopyCheck::Differs
        );
    }

    #[test]
    fn an_altered_copy_differs_and_unknown_heads_say_nothing() {
        let mut doc = filing("Requête", "Le requérant a été détenu 14 jours.");
        let heads = hex_heads(&mut doc);
        for (title, body) in [
            ("Requête", "Le requérant a été détenu 4 jours."),
            ("Requete", "Le requérant a été détenu 14 jours."),
            ("Requête", ""),
        ] {
            assert_eq!(
                check_copy(&doc, &heads, title, body, &[]).unwrap(),
                CopyCheck::Differs,
                "{title:?} {body:?}"
            );
        }
        let other = hex_heads(&mut filing("Autre", "Autre texte"));
        for heads in [other, vec![], vec!["not a hash".into()]] {
            assert_eq!(
                check_copy(
                    &doc,
                    &heads,
                    "Requête",
                    "Le requérant a été détenu 14 jours.",
                    &[]
                )
                .unwrap(),
                CopyCheck::Unknown,
                "{heads:?}"
            );
        }
    }

    #[test]
    fn the_publishing_device_signature_verifies_and_nothing_else_does() {
        let alice = UserIdentity::generate(UserId::new("alice").unwrap());
        let device = alice.new_device();
        let other = alice.new_device();
        let public = SpaceId([3; 16]);
        let (source, stream) = ("aa".repeat(16), "bb".repeat(16));
        let heads = vec!["cc".repeat(32)];
        let message = provenance_message(
            public,
            "doc",
            "Titre",
            "Texte",
            &[],
            &source,
            &stream,
            &heads,
        );
        let record = Provenance {
            source_space: source.clone(),
            source_stream: stream.clone(),
            heads: heads.clone(),
            device: device.id().to_hex(),
            signature: hex::encode(device.sign_statement(Statement::Provenance, &message)),
        };
        let cert = device.certificate();
        assert_eq!(
            record.verify(public, "doc", "Titre", "Texte", &[], cert),
            Ok(())
        );
        // Another copy, another place, another id.
        for (space, id, title, body) in [
            (public, "doc", "Titre", "Texte modifié"),
            (public, "doc", "Titre 2", "Texte"),
            (public, "doc2", "Titre", "Texte"),
            (SpaceId([4; 16]), "doc", "Titre", "Texte"),
        ] {
            assert_eq!(
                record.verify(space, id, title, body, &[], cert),
                Err(ProvenanceError::BadSignature)
            );
        }
        // Another source.
        let mut moved = record.clone();
        moved.heads = vec!["cd".repeat(32)];
        assert_eq!(
            moved.verify(public, "doc", "Titre", "Texte", &[], cert),
            Err(ProvenanceError::BadSignature)
        );
        // Another device of the same user, or another key put into the
        // certificate, does not stand for the signer.
        assert_eq!(
            record.verify(public, "doc", "Titre", "Texte", &[], other.certificate()),
            Err(ProvenanceError::OtherDevice)
        );
        let mut swapped = cert.clone();
        swapped.device_key = other.certificate().device_key;
        assert_eq!(
            record.verify(public, "doc", "Titre", "Texte", &[], &swapped),
            Err(ProvenanceError::BadSignature)
        );
        // A signature made for another kind of statement does not count.
        let mut sign_in = record.clone();
        sign_in.signature = hex::encode(device.sign_statement(Statement::SignIn, &message));
        assert_eq!(
            sign_in.verify(public, "doc", "Titre", "Texte", &[], cert),
            Err(ProvenanceError::BadSignature)
        );
        let mut short = record.clone();
        short.signature.truncate(100);
        assert_eq!(
            short.verify(public, "doc", "Titre", "Texte", &[], cert),
            Err(ProvenanceError::Malformed)
        );
    }

    #[test]
    fn the_signed_message_binds_every_field() {
        let space = SpaceId([7; 16]);
        let base = || {
            provenance_message(
                space,
                "doc",
                "Title",
                "Body",
                &[],
                "aa",
                "bb",
                &["cc".into()],
            )
        };
        let variants = [
            provenance_message(
                SpaceId([8; 16]),
                "doc",
                "Title",
                "Body",
                &[],
                "aa",
                "bb",
                &["cc".into()],
            ),
            provenance_message(
                space,
                "doc2",
                "Title",
                "Body",
                &[],
                "aa",
                "bb",
                &["cc".into()],
            ),
            provenance_message(
                space,
                "doc",
                "TitleB",
                "ody",
                &[],
                "aa",
                "bb",
                &["cc".into()],
            ),
            provenance_message(
                space,
                "doc",
                "Title",
                "Body.",
                &[],
                "aa",
                "bb",
                &["cc".into()],
            ),
            provenance_message(
                space,
                "doc",
                "Title",
                "Body",
                &[],
                "ab",
                "bb",
                &["cc".into()],
            ),
            provenance_message(
                space,
                "doc",
                "Title",
                "Body",
                &[],
                "aa",
                "bc",
                &["cc".into()],
            ),
            provenance_message(
                space,
                "doc",
                "Title",
                "Body",
                &[],
                "aa",
                "bb",
                &["cd".into()],
            ),
            provenance_message(space, "doc", "Title", "Body", &[], "aa", "bb", &[]),
            provenance_message(
                space,
                "doc",
                "Title",
                "Body",
                &[],
                "aa",
                "bb",
                &["c".into(), "c".into()],
            ),
        ];
        let bold = |start, end| TextMark {
            mark: "bold".into(),
            start,
            end,
        };
        let marked = |marks: &[TextMark]| {
            provenance_message(
                space,
                "doc",
                "Title",
                "Body",
                marks,
                "aa",
                "bb",
                &["cc".into()],
            )
        };
        let with_marks = [
            marked(&[bold(0, 2)]),
            marked(&[bold(0, 3)]),
            marked(&[bold(1, 2)]),
            marked(&[TextMark {
                mark: "italic".into(),
                start: 0,
                end: 2,
            }]),
            marked(&[bold(0, 2), bold(2, 3)]),
        ];
        for (i, v) in variants.iter().chain(&with_marks).enumerate() {
            assert_ne!(*v, base(), "variant {i} signs the same bytes");
        }
        for (i, a) in with_marks.iter().enumerate() {
            for b in &with_marks[i + 1..] {
                assert_ne!(a, b, "two formattings sign the same bytes");
            }
        }
        assert_eq!(base(), base());
    }

    /// A withdrawal holds for the copy it names only: another space, id or
    /// `updated` time (a later publication under the same id), another
    /// device's certificate or an altered signature are refused.
    #[test]
    fn a_withdrawal_names_one_copy_and_its_device() {
        let alice = UserIdentity::generate(UserId::new("alice").unwrap());
        let device = alice.new_device();
        let other = alice.new_device();
        let space = SpaceId([7; 16]);
        let w = Withdrawal::sign(&device, space, "abc", 1_000);
        let cert = device.certificate();
        assert_eq!(w.verify(space, "abc", 1_000, cert), Ok(()));
        assert_eq!(
            w.verify(SpaceId([8; 16]), "abc", 1_000, cert),
            Err(ProvenanceError::BadSignature)
        );
        assert_eq!(
            w.verify(space, "abd", 1_000, cert),
            Err(ProvenanceError::BadSignature)
        );
        assert_eq!(
            w.verify(space, "abc", 1_001, cert),
            Err(ProvenanceError::BadSignature)
        );
        assert_eq!(
            w.verify(space, "abc", 1_000, other.certificate()),
            Err(ProvenanceError::OtherDevice)
        );
        let mut altered = w.clone();
        altered.signature.replace_range(
            0..2,
            if &w.signature[0..2] == "00" {
                "01"
            } else {
                "00"
            },
        );
        assert_eq!(
            altered.verify(space, "abc", 1_000, cert),
            Err(ProvenanceError::BadSignature)
        );
        // A provenance signature is no withdrawal (domain separation).
        let message = withdrawal_message(space, "abc", 1_000);
        let as_provenance = Withdrawal {
            device: w.device.clone(),
            signature: hex::encode(device.sign_statement(Statement::Provenance, &message)),
        };
        assert_eq!(
            as_provenance.verify(space, "abc", 1_000, cert),
            Err(ProvenanceError::BadSignature)
        );
    }
}
