//! What changed in a document since its user last looked at it: who
//! changed it, new posts, mentions, new library entries. Computed on the
//! device from the document's Automerge history and the heads it held when
//! last looked at ([`crate::at_rest::SeenMark`]); the server takes no part
//! and learns nothing of it. Changes written by the user themselves (on any
//! of their devices) are never activity.

use automerge::{AutoCommit, ChangeHash};

use crate::discussion;
use crate::document::{Authors, DocumentError, filing};
use crate::library;

/// What kind of document an activity item is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A filing.
    Filing,
    /// A discussion.
    Discussion,
    /// The space's library (new files, filings, folders, discussions).
    Library,
}

impl Kind {
    /// The kind as the interface sees it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Filing => "filing",
            Kind::Discussion => "discussion",
            Kind::Library => "library",
        }
    }
}

/// What changed in one document since its user last looked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Never looked at on this device.
    pub new: bool,
    /// The other members whose changes came since, in order of their first
    /// change (users the log binds to the changes' actors; changes of an
    /// actor bound to no one, as in a snapshot, count as `"?"`).
    pub by: Vec<String>,
    /// New posts by others (a discussion).
    pub posts: usize,
    /// New posts or comment messages by others that mention the user.
    pub mentions: usize,
    /// The names of entries others added to the library since.
    pub added: Vec<String>,
}

impl Changes {
    /// Nothing to show.
    pub fn is_empty(&self) -> bool {
        self.by.is_empty()
    }
}

/// The heads of `seen` the document holds (a mark the document's history
/// no longer reaches, as after a snapshot, counts as never looked at).
fn known(doc: &mut AutoCommit, seen: Option<&[ChangeHash]>) -> Option<Vec<ChangeHash>> {
    let seen = seen?;
    let heads: Vec<ChangeHash> = seen
        .iter()
        .filter(|h| doc.get_change_by_hash(h).is_some())
        .copied()
        .collect();
    (heads.len() == seen.len()).then_some(heads)
}

/// What changed in `doc` since `seen` (`None`: never looked at), for the
/// user `me`. `kind` says how to read it.
pub fn changes(
    doc: &mut AutoCommit,
    kind: Kind,
    seen: Option<&[ChangeHash]>,
    authors: &Authors,
    me: &str,
) -> Result<Changes, DocumentError> {
    let since = known(doc, seen);
    let base: Vec<ChangeHash> = since.clone().unwrap_or_default();
    let mut by: Vec<String> = Vec::new();
    for change in doc.get_changes_meta(&base) {
        let user = authors.of(&change.actor).unwrap_or("?");
        if user != me && !by.iter().any(|b| b == user) {
            by.push(user.to_owned());
        }
    }
    let mut out = Changes {
        new: since.is_none(),
        by,
        ..Changes::default()
    };
    if out.by.is_empty() {
        return Ok(out);
    }
    let others = |a: &filing::Author| a.name != me;
    match kind {
        Kind::Discussion => {
            let before = discussion::post_ids_at(doc, &base)?;
            let now = discussion::read(doc, authors)?;
            for p in now.posts.iter().filter(|p| !before.contains(&p.id)) {
                if others(&p.by) {
                    out.posts += 1;
                    if p.mentions.iter().any(|m| m == me) {
                        out.mentions += 1;
                    }
                }
            }
        }
        Kind::Filing => {
            let mentioning = |doc: &AutoCommit| -> Result<usize, DocumentError> {
                Ok(filing::threads(doc, authors)?
                    .iter()
                    .flat_map(|t| &t.messages)
                    .filter(|m| {
                        others(&m.author) && discussion::mentions(&m.text).iter().any(|x| x == me)
                    })
                    .count())
            };
            let now = mentioning(doc)?;
            let then = if base.is_empty() {
                0
            } else {
                let old = doc
                    .fork_at(&base)
                    .map_err(|e| DocumentError::Automerge(e.to_string()))?;
                mentioning(&old).unwrap_or(0)
            };
            out.mentions = now.saturating_sub(then);
        }
        Kind::Library => {
            out.added = library::added_since(doc, &base, authors, me)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authors() -> (automerge::ActorId, automerge::ActorId, Authors) {
        let amina = automerge::ActorId::from(&[1u8; 16][..]);
        let bruno = automerge::ActorId::from(&[2u8; 16][..]);
        let authors = Authors::new([
            (amina.to_bytes().to_vec(), "amina".to_owned()),
            (bruno.to_bytes().to_vec(), "bruno".to_owned()),
        ]);
        (amina, bruno, authors)
    }

    /// Bruno's reply that mentions Amina is one new post and one mention
    /// for her, nothing once she has looked, and her own posts never count.
    #[test]
    fn new_posts_and_mentions_by_others_are_counted_until_seen() {
        let (amina, bruno, authors) = authors();
        let mut a = AutoCommit::new().with_actor(amina);
        let first = discussion::NewPost {
            id: "p1",
            author: "amina",
            text: "Qui plaide ?",
            reply_to: None,
            attachments: &[],
            at_ms: 1,
        };
        discussion::init(&mut a, "Audience", &first).unwrap();
        let mine = changes(&mut a, Kind::Discussion, None, &authors, "amina").unwrap();
        assert!(mine.is_empty(), "her own posts are no activity: {mine:?}");
        let seen = a.get_heads();
        let mut b = a.fork().with_actor(bruno);
        for (id, text) in [("p2", "Moi, @amina."), ("p3", "Et @bruno.")] {
            discussion::post(
                &mut b,
                &discussion::NewPost {
                    id,
                    author: "bruno",
                    text,
                    reply_to: Some("p1"),
                    ..first.clone()
                },
            )
            .unwrap();
        }
        a.merge(&mut b).unwrap();
        let c = changes(&mut a, Kind::Discussion, Some(&seen), &authors, "amina").unwrap();
        assert_eq!(
            c,
            Changes {
                new: false,
                by: vec!["bruno".into()],
                posts: 2,
                mentions: 1,
                added: vec![],
            }
        );
        let never = changes(&mut a, Kind::Discussion, None, &authors, "amina").unwrap();
        assert!(never.new && never.posts == 2);
        let now = a.get_heads();
        assert!(
            changes(&mut a, Kind::Discussion, Some(&now), &authors, "amina")
                .unwrap()
                .is_empty()
        );
        // A mark the document does not hold counts as never looked at.
        let unknown = [ChangeHash([9; 32])];
        assert!(
            changes(&mut a, Kind::Discussion, Some(&unknown), &authors, "amina")
                .unwrap()
                .new
        );
    }

    /// A comment by someone else that mentions the reader counts; the
    /// library names what others added, not what the reader added.
    #[test]
    fn comment_mentions_and_library_additions_are_reported() {
        let (amina, bruno, authors) = authors();
        let mut a = AutoCommit::new().with_actor(amina.clone());
        filing::init(&mut a, "Requête").unwrap();
        filing::splice(&mut a, 0, 0, "Le texte").unwrap();
        let seen = a.get_heads();
        let mut b = a.fork().with_actor(bruno.clone());
        filing::comment(&mut b, "t1", 0, 2, "bruno", "@amina relis ceci", 5).unwrap();
        filing::comment(&mut b, "t2", 3, 7, "bruno", "sans mention", 6).unwrap();
        a.merge(&mut b).unwrap();
        let c = changes(&mut a, Kind::Filing, Some(&seen), &authors, "amina").unwrap();
        assert_eq!(
            (c.by.as_slice(), c.mentions),
            (&["bruno".to_owned()][..], 1)
        );

        let mut lib = AutoCommit::new().with_actor(amina);
        library::init(&mut lib).unwrap();
        let seen = lib.get_heads();
        library::add_folder(&mut lib, "f1", "Mes pièces", "").unwrap();
        let mut other = lib.fork().with_actor(bruno);
        library::add_folder(&mut other, "f2", "Témoins", "").unwrap();
        library::add_discussion(&mut other, crate::StreamId([3; 16]), "Audience").unwrap();
        lib.merge(&mut other).unwrap();
        let c = changes(&mut lib, Kind::Library, Some(&seen), &authors, "amina").unwrap();
        assert_eq!(c.added, vec!["Témoins".to_owned(), "Audience".to_owned()]);
    }
}
