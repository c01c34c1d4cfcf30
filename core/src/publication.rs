//! Publishing a confidential filing into a public space (PROTOCOL §15.1).
//!
//! The public copy carries a *provenance* record: the confidential space and
//! stream ids and the Automerge heads the copy was taken at, signed by the
//! publishing device ([`Statement::Provenance`](crate::identity::Statement))
//! over [`provenance_message`]. The record names only opaque ids and hashes:
//! it tells a reader who cannot read the space nothing of its content. A
//! reader who can read it checks the copy against their own replica with
//! [`check_copy`]: the text at those heads must be the published text.

use automerge::{AutoCommit, ChangeHash, ObjType, ROOT, ReadDoc};

use crate::document::DocumentError;

/// The bytes a publisher signs (statement `Provenance`): the public copy
/// (space, id, BLAKE3 of title and body) bound to the confidential source
/// (space and stream ids, Automerge heads, all as hex).
pub fn provenance_message(
    public_space: crate::SpaceId,
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

/// What a reader of the source space finds when comparing a public copy
/// with their replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyCheck {
    /// At the named heads, the filing's title and text are the published
    /// ones.
    Matches,
    /// At the named heads, the filing reads differently: the copy is not
    /// what its provenance claims.
    Differs,
    /// The replica does not hold every named head (not yet received, or
    /// not a change of this filing): nothing can be said yet.
    Unknown,
}

/// Compares a public copy (`title`, `body`) with the filing `doc` at the
/// hex `heads` its provenance names.
pub fn check_copy(
    doc: &AutoCommit,
    heads: &[String],
    title: &str,
    body: &str,
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
    let same =
        text_at("title")?.as_deref() == Some(title) && text_at("body")?.as_deref() == Some(body);
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
    use crate::SpaceId;
    use crate::document::filing;

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
                "Le requérant a été détenu 14 jours."
            )
            .unwrap(),
            CopyCheck::Matches
        );
        // The current text is not what was published at those heads.
        let now = filing::body(&doc).unwrap();
        assert_eq!(
            check_copy(&doc, &heads, "Requête (v2)", &now).unwrap(),
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
                check_copy(&doc, &heads, title, body).unwrap(),
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
                    "Le requérant a été détenu 14 jours."
                )
                .unwrap(),
                CopyCheck::Unknown,
                "{heads:?}"
            );
        }
    }

    #[test]
    fn the_signed_message_binds_every_field() {
        let space = SpaceId([7; 16]);
        let base = || provenance_message(space, "doc", "Title", "Body", "aa", "bb", &["cc".into()]);
        let variants = [
            provenance_message(
                SpaceId([8; 16]),
                "doc",
                "Title",
                "Body",
                "aa",
                "bb",
                &["cc".into()],
            ),
            provenance_message(space, "doc2", "Title", "Body", "aa", "bb", &["cc".into()]),
            provenance_message(space, "doc", "TitleB", "ody", "aa", "bb", &["cc".into()]),
            provenance_message(space, "doc", "Title", "Body.", "aa", "bb", &["cc".into()]),
            provenance_message(space, "doc", "Title", "Body", "ab", "bb", &["cc".into()]),
            provenance_message(space, "doc", "Title", "Body", "aa", "bc", &["cc".into()]),
            provenance_message(space, "doc", "Title", "Body", "aa", "bb", &["cd".into()]),
            provenance_message(space, "doc", "Title", "Body", "aa", "bb", &[]),
            provenance_message(
                space,
                "doc",
                "Title",
                "Body",
                "aa",
                "bb",
                &["c".into(), "c".into()],
            ),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, base(), "variant {i} signs the same bytes");
        }
        assert_eq!(base(), base());
    }
}
