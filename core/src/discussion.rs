//! A discussion: a thread of posts and replies inside a space. Each is its
//! own encrypted Automerge document (its own stream, sealed and logged like
//! a filing), listed in the library's `documents` with `kind: "discussion"`.
//!
//! ```text
//! root: { kind: "discussion", title: str,
//!         posts: List<{ id: str, author: str, text: str, at: Timestamp,
//!                       reply_to: str ("" for none), edited?: Timestamp,
//!                       attachments: List<str> (library entry ids) }> }
//! ```
//! Who wrote a post is not the `author` field (a claim) but the device that
//! signed the change writing its `at` (the creator) and its `text` (the last
//! writer): [`Post::by`] and [`Post::author`]. A reader shows a text written
//! by someone else than the post's creator as theirs ([`Post::edited_by_other`]);
//! the client engine lets a member edit only their own posts.
//!
//! Mentions are `@user` in a post's or a comment's text ([`mentions`]): the
//! client engine refuses a text that mentions someone who is not a member of
//! the space.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue, Value};

use crate::document::filing::Author;
use crate::document::{Authors, DocumentError};

/// The value of the root's `kind` in a discussion.
pub const KIND: &str = "discussion";

/// The most characters in a post.
pub const MAX_POST_CHARS: usize = 20_000;

/// The most library entries one post attaches.
pub const MAX_ATTACHMENTS: usize = 20;

fn am<E: core::fmt::Display>(e: E) -> DocumentError {
    DocumentError::Automerge(e.to_string())
}

/// A post's text as it is stored: trimmed, not empty, at most
/// [`MAX_POST_CHARS`] characters.
pub fn checked_post(raw: &str) -> Result<String, DocumentError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(DocumentError::BadText("a post cannot be empty".into()));
    }
    let chars = text.chars().count();
    if chars > MAX_POST_CHARS {
        return Err(DocumentError::BadText(format!(
            "a post holds at most {MAX_POST_CHARS} characters; this one has {chars}"
        )));
    }
    Ok(text.to_owned())
}

/// The users a text mentions, in order, each once: `@name` where `name` is
/// a well-formed user name, `@` standing at the start or after a character
/// that is neither a letter, a digit nor one of `._-` (so that `a@b.org`
/// mentions no one), without the `.`, `-` or `_` that ends a sentence.
pub fn mentions(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        let starts = c == '@' && !prev.is_some_and(|p| p.is_alphanumeric() || "._-@".contains(p));
        prev = Some(c);
        if !starts {
            continue;
        }
        let rest = &text[i + 1..];
        let len = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)))
            .unwrap_or(rest.len());
        let name = rest[..len].trim_end_matches(['.', '-', '_']);
        if crate::UserId::new(name).is_ok() && !out.iter().any(|m| m == name) {
            out.push(name.to_owned());
        }
    }
    out
}

/// One post of a discussion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    /// Its id.
    pub id: String,
    /// Who wrote the text shown (the last writer of `text`).
    pub author: Author,
    /// Who created the post (the writer of `at`).
    pub by: Author,
    /// The text.
    pub text: String,
    /// When it was created, in milliseconds since 1970 UTC by the
    /// creator's device clock.
    pub at_ms: Option<i64>,
    /// When it was last edited, by the editor's device clock.
    pub edited_ms: Option<i64>,
    /// The post it replies to.
    pub reply_to: Option<String>,
    /// Library entries it attaches (ids; an entry removed since still
    /// appears here: the interface says it is gone).
    pub attachments: Vec<String>,
    /// The users its text mentions ([`mentions`]).
    pub mentions: Vec<String>,
}

impl Post {
    /// The text shown was written by someone other than the post's creator.
    pub fn edited_by_other(&self) -> bool {
        self.author != self.by
    }
}

/// A discussion as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discussion {
    /// Its title.
    pub title: String,
    /// Its posts in the order the document holds them (concurrent posts
    /// are ordered the same way on every device).
    pub posts: Vec<Post>,
}

fn posts(doc: &AutoCommit) -> Result<automerge::ObjId, DocumentError> {
    match doc.get(ROOT, "posts").map_err(am)? {
        Some((Value::Object(ObjType::List), id)) => Ok(id),
        _ => Err(DocumentError::Automerge(
            "this document is not a discussion".into(),
        )),
    }
}

fn string(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> String {
    match doc.get(obj, key) {
        Ok(Some((Value::Scalar(s), _))) => s.as_str().unwrap_or_default().to_owned(),
        _ => String::new(),
    }
}

fn timestamp(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> Option<i64> {
    match doc.get(obj, key) {
        Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
            ScalarValue::Timestamp(t) => Some(*t),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a document is a discussion.
pub fn is_discussion(doc: &AutoCommit) -> bool {
    string(doc, &ROOT, "kind") == KIND
}

/// A new post's content, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPost<'a> {
    /// The post id (random, from the caller).
    pub id: &'a str,
    /// The author's user name, as claimed.
    pub author: &'a str,
    /// The text.
    pub text: &'a str,
    /// The post replied to, if any.
    pub reply_to: Option<&'a str>,
    /// Library entry ids to attach.
    pub attachments: &'a [String],
    /// Milliseconds since 1970 UTC.
    pub at_ms: i64,
}

/// Creates the structure of a new discussion and its opening post (its
/// creator does this once).
pub fn init(doc: &mut AutoCommit, title: &str, first: &NewPost<'_>) -> Result<(), DocumentError> {
    let title = crate::document::checked_name(title)?;
    checked_post(first.text)?;
    doc.put(ROOT, "kind", KIND).map_err(am)?;
    doc.put(ROOT, "title", title).map_err(am)?;
    doc.put_object(ROOT, "posts", ObjType::List).map_err(am)?;
    post(doc, first)
}

/// Adds a post (or a reply, with `reply_to`) at the end.
pub fn post(doc: &mut AutoCommit, new: &NewPost<'_>) -> Result<(), DocumentError> {
    let text = checked_post(new.text)?;
    if new.attachments.len() > MAX_ATTACHMENTS {
        return Err(DocumentError::BadText(format!(
            "a post attaches at most {MAX_ATTACHMENTS} items; this one has {}",
            new.attachments.len()
        )));
    }
    let list = posts(doc)?;
    if let Some(parent) = new.reply_to
        && find(doc, &list, parent).is_none()
    {
        return Err(DocumentError::BadText(format!(
            "this discussion has no post {parent}"
        )));
    }
    if find(doc, &list, new.id).is_some() {
        return Err(DocumentError::BadText(format!(
            "this discussion already has a post {}",
            new.id
        )));
    }
    let n = doc.length(&list);
    let p = doc.insert_object(&list, n, ObjType::Map).map_err(am)?;
    doc.put(&p, "id", new.id).map_err(am)?;
    doc.put(&p, "author", new.author).map_err(am)?;
    doc.put(&p, "text", text).map_err(am)?;
    doc.put(&p, "at", ScalarValue::Timestamp(new.at_ms))
        .map_err(am)?;
    doc.put(&p, "reply_to", new.reply_to.unwrap_or(""))
        .map_err(am)?;
    let a = doc
        .put_object(&p, "attachments", ObjType::List)
        .map_err(am)?;
    for (i, entry) in new.attachments.iter().enumerate() {
        doc.insert(&a, i, entry.as_str()).map_err(am)?;
    }
    Ok(())
}

fn find(doc: &AutoCommit, list: &automerge::ObjId, id: &str) -> Option<automerge::ObjId> {
    (0..doc.length(list)).find_map(|i| match doc.get(list, i).ok()?? {
        (Value::Object(ObjType::Map), p) if string(doc, &p, "id") == id => Some(p),
        _ => None,
    })
}

/// Replaces a post's text (the client engine allows it to the post's
/// creator only; see [`Post::edited_by_other`]).
pub fn edit(doc: &mut AutoCommit, id: &str, text: &str, at_ms: i64) -> Result<(), DocumentError> {
    let text = checked_post(text)?;
    let list = posts(doc)?;
    let p = find(doc, &list, id)
        .ok_or_else(|| DocumentError::BadText(format!("this discussion has no post {id}")))?;
    doc.put(&p, "text", text).map_err(am)?;
    doc.put(&p, "edited", ScalarValue::Timestamp(at_ms))
        .map_err(am)
}

/// Reads a discussion, each post's writers as `authors` proves them.
pub fn read(doc: &AutoCommit, authors: &Authors) -> Result<Discussion, DocumentError> {
    use crate::document::filing::author;
    if !is_discussion(doc) {
        return Err(DocumentError::Automerge(
            "this document is not a discussion".into(),
        ));
    }
    let list = posts(doc)?;
    let mut out = Vec::new();
    for i in 0..doc.length(&list) {
        let Some((Value::Object(ObjType::Map), p)) = doc.get(&list, i).map_err(am)? else {
            continue;
        };
        let claimed = string(doc, &p, "author");
        let text = string(doc, &p, "text");
        let attachments = match doc.get(&p, "attachments").map_err(am)? {
            Some((Value::Object(ObjType::List), a)) => (0..doc.length(&a))
                .filter_map(|j| match doc.get(&a, j).ok()?? {
                    (Value::Scalar(s), _) => s.as_str().map(str::to_owned),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let reply_to = string(doc, &p, "reply_to");
        out.push(Post {
            id: string(doc, &p, "id"),
            author: author(doc, &p, "text", &claimed, authors),
            by: author(doc, &p, "at", &claimed, authors),
            mentions: mentions(&text),
            text,
            at_ms: timestamp(doc, &p, "at"),
            edited_ms: timestamp(doc, &p, "edited"),
            reply_to: (!reply_to.is_empty()).then_some(reply_to),
            attachments,
        });
    }
    Ok(Discussion {
        title: string(doc, &ROOT, "title"),
        posts: out,
    })
}

/// The ids of the posts a discussion held at `heads` (to tell which are
/// new since then).
pub fn post_ids_at(
    doc: &AutoCommit,
    heads: &[automerge::ChangeHash],
) -> Result<Vec<String>, DocumentError> {
    let Some((Value::Object(ObjType::List), list)) =
        doc.get_at(ROOT, "posts", heads).map_err(am)?
    else {
        return Ok(Vec::new());
    };
    Ok((0..doc.length_at(&list, heads))
        .filter_map(|i| match doc.get_at(&list, i, heads).ok()?? {
            (Value::Object(ObjType::Map), p) => match doc.get_at(&p, "id", heads).ok()?? {
                (Value::Scalar(s), _) => s.as_str().map(str::to_owned),
                _ => None,
            },
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new<'a>(id: &'a str, author: &'a str, text: &'a str) -> NewPost<'a> {
        NewPost {
            id,
            author,
            text,
            reply_to: None,
            attachments: &[],
            at_ms: 1_765_000_000_000,
        }
    }

    #[test]
    fn mentions_are_user_names_after_an_at_sign() {
        assert_eq!(
            mentions("@amina, voir la pièce. Merci @bruno.k. (cc @amina)"),
            vec!["amina", "bruno.k"]
        );
        assert!(mentions("écrire à amina@example.org").is_empty());
        assert!(mentions("@ @@x @-x @Amina").is_empty());
        assert_eq!(mentions("«@chidi»"), vec!["chidi"]);
        assert_eq!(mentions("@دينا @d1-2_"), vec!["d1-2"]);
    }

    /// Posts keep their order, replies name their parent, the writer of
    /// each post is the signer, and an edit by someone else shows as theirs.
    #[test]
    fn posts_replies_and_edits_are_read_with_their_signers() {
        let amina = automerge::ActorId::from(&[1u8; 16][..]);
        let bruno = automerge::ActorId::from(&[2u8; 16][..]);
        let authors = Authors::new([
            (amina.to_bytes().to_vec(), "amina".to_owned()),
            (bruno.to_bytes().to_vec(), "bruno".to_owned()),
        ]);
        let mut a = AutoCommit::new().with_actor(amina);
        init(
            &mut a,
            "Audience du 12",
            &new("p1", "amina", "Qui plaide ? @bruno"),
        )
        .unwrap();
        let before = a.get_heads();
        let mut b = a.fork().with_actor(bruno);
        let attach = vec!["f1".to_owned()];
        post(
            &mut b,
            &NewPost {
                reply_to: Some("p1"),
                attachments: &attach,
                ..new("p2", "bruno", "Moi.")
            },
        )
        .unwrap();
        a.merge(&mut b).unwrap();
        let d = read(&a, &authors).unwrap();
        assert_eq!(d.title, "Audience du 12");
        assert_eq!(d.posts.len(), 2);
        assert_eq!(d.posts[0].mentions, vec!["bruno"]);
        assert_eq!(d.posts[1].reply_to.as_deref(), Some("p1"));
        assert_eq!(d.posts[1].attachments, attach);
        assert!(d.posts[1].author.verified && d.posts[1].author.name == "bruno");
        assert_eq!(post_ids_at(&a, &before).unwrap(), vec!["p1"]);
        let now = a.get_heads();
        assert_eq!(post_ids_at(&a, &now).unwrap(), vec!["p1", "p2"]);

        // Bruno rewrites Amina's post: it reads as his text, not hers.
        let mut b = a
            .fork()
            .with_actor(automerge::ActorId::from(&[2u8; 16][..]));
        edit(&mut b, "p1", "Amina renonce.", 1_765_000_100_000).unwrap();
        let d = read(&b, &authors).unwrap();
        assert_eq!(d.posts[0].author.name, "bruno");
        assert_eq!(d.posts[0].by.name, "amina");
        assert!(d.posts[0].edited_by_other());
        assert_eq!(d.posts[0].edited_ms, Some(1_765_000_100_000));
        assert!(!d.posts[1].edited_by_other());
    }

    #[test]
    fn bad_posts_are_refused_and_nothing_is_written() {
        let mut doc = AutoCommit::new();
        init(&mut doc, "T", &new("p1", "amina", "x")).unwrap();
        let heads = doc.get_heads();
        let long = "é".repeat(MAX_POST_CHARS + 1);
        let many: Vec<String> = (0..=MAX_ATTACHMENTS).map(|i| i.to_string()).collect();
        for bad in [
            new("p2", "amina", "  "),
            new("p2", "amina", &long),
            new("p1", "amina", "same id"),
            NewPost {
                reply_to: Some("nope"),
                ..new("p2", "amina", "x")
            },
            NewPost {
                attachments: &many,
                ..new("p2", "amina", "x")
            },
        ] {
            assert!(
                matches!(post(&mut doc, &bad), Err(DocumentError::BadText(_))),
                "{bad:?}"
            );
        }
        assert!(edit(&mut doc, "nope", "x", 0).is_err());
        assert_eq!(doc.get_heads(), heads, "nothing was written");
        let mut filing = AutoCommit::new();
        crate::document::filing::init(&mut filing, "F").unwrap();
        assert!(read(&filing, &Authors::default()).is_err());
    }
}
