//! The library of a space: its folders, documents and files, itself an
//! encrypted Automerge document kept in a [`crate::document::Replica`] like
//! any filing (its stream id is derived from the space id).
//!
//! ```text
//! root: { name?: str, description?: str,
//!         folders:   Map<folder id, { name, parent }>,
//!         documents: Map<stream id hex, { title, folder, kind?: "discussion" }>,
//!         files:     Map<file id hex, { folder, manifest: Bytes (1 || postcard(FileManifest)),
//!                                       versions: List<Bytes> (older manifests, oldest first) }> }
//! ```
//! A file's manifest holds its secret: it is as confidential as the files,
//! and travels only inside library envelopes. The space's name and
//! description ([`profile`]) count only as written by a space manager.

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue, Value};

use crate::document::{Authors, DocumentError};
use crate::files::FileManifest;
use crate::{SpaceId, StreamId};

/// Why the library refuses a change of its entries; each has a stable
/// code the interface translates ([`LibraryError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LibraryError {
    /// No folder with this id.
    #[error("the library has no folder {0}")]
    NoFolder(String),
    /// No entry with this id.
    #[error("the library has no entry {0}")]
    NoEntry(String),
    /// A folder moved into itself or one of its own folders.
    #[error("a folder cannot go into itself or one of its own folders")]
    Cycle,
    /// A folder that still holds entries.
    #[error("the folder is not empty: move or remove what it holds first")]
    NotEmpty,
    /// Discussions are listed apart, not in folders.
    #[error("discussions are not kept in folders")]
    DiscussionInFolder,
    /// A new version for an entry that is not a file.
    #[error("{0} is not a file")]
    NotAFile(String),
    /// A new version that is already the current one.
    #[error("this version is already the current one")]
    AlreadyCurrent,
    /// A file entry whose manifest does not decode (a newer client's).
    #[error("the manifest of file {0} does not decode")]
    BadManifest(String),
    /// An attachment that is not a document or file of the library.
    #[error("the library has no document or file {0} to attach")]
    NoAttachment(String),
    /// An entry to put back that is listed already.
    #[error("{0} is in the library already")]
    Listed(String),
}

impl LibraryError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            LibraryError::NoFolder(_) => "no_folder",
            LibraryError::NoEntry(_) => "no_entry",
            LibraryError::Cycle => "folder_cycle",
            LibraryError::NotEmpty => "folder_not_empty",
            LibraryError::DiscussionInFolder => "discussion_in_folder",
            LibraryError::NotAFile(_) => "not_a_file",
            LibraryError::AlreadyCurrent => "already_current",
            LibraryError::BadManifest(_) => "bad_manifest",
            LibraryError::NoAttachment(_) => "no_attachment",
            LibraryError::Listed(_) => "already_listed",
        }
    }
}

/// The library's stream in a space.
pub fn stream(space: SpaceId) -> StreamId {
    let h = blake3::derive_key("amicus library stream v1", &space.0);
    StreamId(h[..16].try_into().expect("16 bytes"))
}

/// An entry of the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A folder.
    Folder {
        /// Its id.
        id: String,
        /// Its name.
        name: String,
        /// The parent folder ("" for the root).
        parent: String,
    },
    /// A document.
    Document {
        /// Its stream.
        stream: StreamId,
        /// Its title as listed.
        title: String,
        /// Its folder.
        folder: String,
    },
    /// A discussion ([`crate::discussion`]).
    Discussion {
        /// Its stream.
        stream: StreamId,
        /// Its title as listed.
        title: String,
    },
    /// A file.
    File {
        /// Its id in the library: the file id of its first version.
        id: String,
        /// The manifest of its current version (with the file's secret).
        manifest: Box<FileManifest>,
        /// Its folder.
        folder: String,
        /// Its earlier versions, oldest first (each still downloadable).
        versions: Vec<FileManifest>,
    },
}

impl Entry {
    /// The folder the entry is in (`""`: the top of the library); a
    /// folder's parent.
    pub fn folder(&self) -> &str {
        match self {
            Entry::Folder { parent, .. } => parent,
            Entry::Document { folder, .. } | Entry::File { folder, .. } => folder,
            Entry::Discussion { .. } => "",
        }
    }
}

fn am<E: core::fmt::Display>(e: E) -> DocumentError {
    DocumentError::Automerge(e.to_string())
}

fn map(doc: &AutoCommit, key: &str) -> Result<automerge::ObjId, DocumentError> {
    match doc.get(ROOT, key).map_err(am)? {
        Some((Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Err(DocumentError::Automerge(format!(
            "the library has no `{key}`"
        ))),
    }
}

fn text(doc: &AutoCommit, obj: &automerge::ObjId, key: &str) -> String {
    match doc.get(obj, key) {
        Ok(Some((Value::Scalar(s), _))) => s.as_str().unwrap_or_default().to_owned(),
        _ => String::new(),
    }
}

/// The most characters in a space's description.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;

/// A space's name and description, each only if a space manager wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// The name.
    pub name: Option<String>,
    /// The description (possibly several lines).
    pub description: Option<String>,
    /// Anyone on the server may join (PROTOCOL §15.3): true only if a
    /// space manager set it.
    pub open: bool,
}

/// Names and describes the space (an empty description removes it). Only
/// a space manager's values are shown ([`profile`]); the client engine
/// lets no one else write them.
pub fn set_profile(
    doc: &mut AutoCommit,
    name: &str,
    description: &str,
) -> Result<(), DocumentError> {
    let name = crate::document::checked_name(name)?;
    let description = description.trim();
    let chars = description.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(DocumentError::BadText(format!(
            "a description holds at most {MAX_DESCRIPTION_CHARS} characters; this one has {chars}"
        )));
    }
    doc.put(ROOT, "name", name).map_err(am)?;
    doc.put(ROOT, "description", description).map_err(am)
}

/// The space's name and description, each shown only if the user that
/// `authors` binds to the actor that last wrote it passes `manager` (is a
/// space manager now): a member of another role who overwrites them
/// erases them, and cannot rename the space.
pub fn profile(doc: &AutoCommit, authors: &Authors, manager: impl Fn(&str) -> bool) -> Profile {
    let field = |key: &str| match doc.get(ROOT, key) {
        Ok(Some((Value::Scalar(s), automerge::ObjId::Id(_, actor, _))))
            if authors.of(&actor).is_some_and(&manager) =>
        {
            s.as_str().filter(|v| !v.is_empty()).map(str::to_owned)
        }
        _ => None,
    };
    let open = match doc.get(ROOT, "open") {
        Ok(Some((Value::Scalar(s), automerge::ObjId::Id(_, actor, _)))) => {
            matches!(s.as_ref(), ScalarValue::Boolean(true))
                && authors.of(&actor).is_some_and(&manager)
        }
        _ => false,
    };
    Profile {
        name: field("name"),
        description: field("description"),
        open,
    }
}

/// Opens the space to anyone on the server who asks (`true`), or closes it
/// again: the space managers' devices then add whoever asks to join
/// (PROTOCOL §15.3). Only a space manager's value counts ([`profile`]).
pub fn set_open(doc: &mut AutoCommit, open: bool) -> Result<(), DocumentError> {
    doc.put(ROOT, "open", open).map_err(am)
}

/// Names a drop box (PROTOCOL §11.6): its label is kept here, inside the
/// space, and never given to the server.
pub fn set_drop_box(doc: &mut AutoCommit, id: &str, label: &str) -> Result<(), DocumentError> {
    let label = crate::document::checked_name(label)?;
    let boxes = match doc.get(ROOT, "drop_boxes").map_err(am)? {
        Some((Value::Object(ObjType::Map), obj)) => obj,
        _ => doc
            .put_object(ROOT, "drop_boxes", ObjType::Map)
            .map_err(am)?,
    };
    doc.put(&boxes, id, label).map_err(am)
}

/// The labels of the space's drop boxes, by box id (hex).
pub fn drop_boxes(doc: &AutoCommit) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    if let Ok(Some((Value::Object(ObjType::Map), boxes))) = doc.get(ROOT, "drop_boxes") {
        for key in doc.keys(&boxes) {
            let label = text(doc, &boxes, &key);
            out.insert(key, label);
        }
    }
    out
}

/// Creates the library's structure (the space's creator does this once).
pub fn init(doc: &mut AutoCommit) -> Result<(), DocumentError> {
    for key in ["folders", "documents", "files"] {
        doc.put_object(ROOT, key, ObjType::Map).map_err(am)?;
    }
    Ok(())
}

/// Adds a folder.
pub fn add_folder(
    doc: &mut AutoCommit,
    id: &str,
    name: &str,
    parent: &str,
) -> Result<(), DocumentError> {
    let name = crate::document::checked_name(name)?;
    let folders = map(doc, "folders")?;
    if !parent.is_empty() && doc.get(&folders, parent).map_err(am)?.is_none() {
        return Err(LibraryError::NoFolder(parent.to_owned()).into());
    }
    let f = doc.put_object(&folders, id, ObjType::Map).map_err(am)?;
    doc.put(&f, "name", name).map_err(am)?;
    doc.put(&f, "parent", parent).map_err(am)
}

/// Lists a document.
pub fn add_document(
    doc: &mut AutoCommit,
    stream: StreamId,
    title: &str,
    folder: &str,
) -> Result<(), DocumentError> {
    let title = crate::document::checked_name(title)?;
    let folders = map(doc, "folders")?;
    if !folder.is_empty() && doc.get(&folders, folder).map_err(am)?.is_none() {
        return Err(LibraryError::NoFolder(folder.to_owned()).into());
    }
    let docs = map(doc, "documents")?;
    let d = doc
        .put_object(&docs, stream.to_hex(), ObjType::Map)
        .map_err(am)?;
    doc.put(&d, "title", title).map_err(am)?;
    doc.put(&d, "folder", folder).map_err(am)
}

/// Lists a discussion (discussions are not in folders).
pub fn add_discussion(
    doc: &mut AutoCommit,
    stream: StreamId,
    title: &str,
) -> Result<(), DocumentError> {
    add_document(doc, stream, title, "")?;
    let docs = map(doc, "documents")?;
    match doc.get(&docs, stream.to_hex()).map_err(am)? {
        Some((Value::Object(_), d)) => doc.put(&d, "kind", crate::discussion::KIND).map_err(am),
        _ => Err(DocumentError::Automerge(
            "the entry just written is gone".into(),
        )),
    }
}

/// Lists a file with its manifest.
pub fn add_file(
    doc: &mut AutoCommit,
    manifest: &FileManifest,
    folder: &str,
) -> Result<(), DocumentError> {
    let files = map(doc, "files")?;
    if !folder.is_empty()
        && doc
            .get(&map(doc, "folders")?, folder)
            .map_err(am)?
            .is_none()
    {
        return Err(LibraryError::NoFolder(folder.to_owned()).into());
    }
    let f = doc
        .put_object(&files, manifest.file_id.to_string(), ObjType::Map)
        .map_err(am)?;
    doc.put(&f, "folder", folder).map_err(am)?;
    doc.put_object(&f, "versions", ObjType::List).map_err(am)?;
    put_manifest(doc, &f, manifest)
}

/// Makes `manifest` the current version of the file `id` (its name is the
/// entry's, whatever the new file was called); the version it replaces
/// joins the older ones, still downloadable.
pub fn add_version(
    doc: &mut AutoCommit,
    id: &str,
    manifest: &FileManifest,
) -> Result<(), DocumentError> {
    let (key, obj) = locate(doc, id)?;
    if key != "files" {
        return Err(LibraryError::NotAFile(id.to_owned()).into());
    }
    let current = read_manifest(doc, &obj)
        .ok_or_else(|| DocumentError::from(LibraryError::BadManifest(id.to_owned())))?;
    if current.file_id == manifest.file_id {
        return Err(LibraryError::AlreadyCurrent.into());
    }
    let list = match doc.get(&obj, "versions").map_err(am)? {
        Some((Value::Object(ObjType::List), list)) => list,
        // A file listed before versions were kept.
        _ => doc
            .put_object(&obj, "versions", ObjType::List)
            .map_err(am)?,
    };
    let n = doc.length(&list);
    doc.insert(&list, n, ScalarValue::Bytes(encode_manifest(&current)?))
        .map_err(am)?;
    let mut new = manifest.clone();
    new.name = current.name;
    put_manifest(doc, &obj, &new)
}

/// The manifest of a file by the file id of any of its versions (the
/// current one or an older one).
pub fn manifest(doc: &AutoCommit, file_id: &str) -> Result<Option<FileManifest>, DocumentError> {
    Ok(entries(doc)?.into_iter().find_map(|e| match e {
        Entry::File {
            manifest, versions, ..
        } => std::iter::once(*manifest)
            .chain(versions)
            .find(|m| m.file_id.to_string() == file_id),
        _ => None,
    }))
}

fn encode_manifest(manifest: &FileManifest) -> Result<Vec<u8>, DocumentError> {
    let mut bytes = vec![1u8];
    bytes.extend_from_slice(&postcard::to_allocvec(manifest).map_err(am)?);
    Ok(bytes)
}

fn decode_manifest(bytes: &[u8]) -> Option<FileManifest> {
    match bytes.split_first() {
        Some((1, rest)) => postcard::from_bytes(rest).ok(),
        _ => None,
    }
}

/// Writes a file's manifest into its entry: `1 || postcard(FileManifest)`.
fn put_manifest(
    doc: &mut AutoCommit,
    file: &automerge::ObjId,
    manifest: &FileManifest,
) -> Result<(), DocumentError> {
    doc.put(
        file,
        "manifest",
        ScalarValue::Bytes(encode_manifest(manifest)?),
    )
    .map_err(am)
}

/// A file entry's manifest, if it decodes (a newer client's format does
/// not).
fn read_manifest(doc: &AutoCommit, file: &automerge::ObjId) -> Option<FileManifest> {
    match doc.get(file, "manifest").ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Bytes(b) => decode_manifest(b),
            _ => None,
        },
        _ => None,
    }
}

/// A file's earlier versions: its `versions` list, then any version two
/// members made current at the same time that lost the conflict (kept, not
/// lost), each once.
fn read_versions(
    doc: &AutoCommit,
    file: &automerge::ObjId,
    current: &FileManifest,
) -> Vec<FileManifest> {
    let mut out: Vec<FileManifest> = Vec::new();
    let mut push = |m: FileManifest| {
        if m.file_id != current.file_id && !out.iter().any(|o| o.file_id == m.file_id) {
            out.push(m);
        }
    };
    if let Ok(Some((Value::Object(ObjType::List), list))) = doc.get(file, "versions") {
        for i in 0..doc.length(&list) {
            if let Ok(Some((Value::Scalar(s), _))) = doc.get(&list, i)
                && let ScalarValue::Bytes(b) = s.as_ref()
                && let Some(m) = decode_manifest(b)
            {
                push(m);
            }
        }
    }
    for (value, _) in doc.get_all(file, "manifest").unwrap_or_default() {
        if let Value::Scalar(s) = value
            && let ScalarValue::Bytes(b) = s.as_ref()
            && let Some(m) = decode_manifest(b)
        {
            push(m);
        }
    }
    out
}

/// Where an entry of the library is: its kind's map and its object.
fn locate(doc: &AutoCommit, id: &str) -> Result<(&'static str, automerge::ObjId), DocumentError> {
    for key in ["documents", "files", "folders"] {
        let m = map(doc, key)?;
        if let Some((Value::Object(_), obj)) = doc.get(&m, id).map_err(am)? {
            return Ok((key, obj));
        }
    }
    Err(LibraryError::NoEntry(id.to_owned()).into())
}

/// Removes a document, file or folder from the listing (by its id). A
/// folder that still holds entries is refused: empty it first.
pub fn remove(doc: &mut AutoCommit, id: &str) -> Result<(), DocumentError> {
    let (key, _) = locate(doc, id)?;
    if key == "folders" && entries(doc)?.iter().any(|e| e.folder() == id) {
        return Err(LibraryError::NotEmpty.into());
    }
    let m = map(doc, key)?;
    doc.delete(&m, id).map_err(am)
}

/// Puts back an entry removed since `heads` (the library's heads before the
/// removal, which the interface keeps to undo it): the entry as it was
/// then, under the same id, written anew (a filing's text and a file's
/// chunks were never deleted). Refused for an entry listed already, or one
/// that did not exist at `heads`.
pub fn restore(
    doc: &mut AutoCommit,
    id: &str,
    heads: &[automerge::ChangeHash],
) -> Result<(), DocumentError> {
    if locate(doc, id).is_ok() {
        return Err(LibraryError::Listed(id.to_owned()).into());
    }
    for key in ["documents", "files", "folders"] {
        let m = map(doc, key)?;
        if let Some((Value::Object(kind), old)) = doc.get_at(&m, id, heads).map_err(am)? {
            let new = doc.put_object(&m, id, kind).map_err(am)?;
            return copy_at(doc, &old, kind, heads, &new);
        }
    }
    Err(LibraryError::NoEntry(id.to_owned()).into())
}

/// The library's heads just before `id` was last removed: those of the
/// latest change whose state still lists it (for [`restore`] where no one
/// kept the heads, as on the command line). Refused for an entry listed
/// now, or one the library never held.
pub fn before_removal(
    doc: &mut AutoCommit,
    id: &str,
) -> Result<Vec<automerge::ChangeHash>, DocumentError> {
    if locate(doc, id).is_ok() {
        return Err(LibraryError::Listed(id.to_owned()).into());
    }
    let maps = ["documents", "files", "folders"]
        .into_iter()
        .map(|key| map(doc, key))
        .collect::<Result<Vec<_>, _>>()?;
    let changes: Vec<automerge::ChangeHash> =
        doc.get_changes_meta(&[]).iter().map(|c| c.hash).collect();
    for hash in changes.into_iter().rev() {
        for m in &maps {
            if doc.get_at(m, id, &[hash]).map_err(am)?.is_some() {
                return Ok(vec![hash]);
            }
        }
    }
    Err(LibraryError::NoEntry(id.to_owned()).into())
}

/// Writes into the empty object `to` what `from` (of type `kind`) held at
/// `heads`, objects within included.
fn copy_at(
    doc: &mut AutoCommit,
    from: &automerge::ObjId,
    kind: ObjType,
    heads: &[automerge::ChangeHash],
    to: &automerge::ObjId,
) -> Result<(), DocumentError> {
    match kind {
        ObjType::Map | ObjType::Table => {
            let keys: Vec<String> = doc.keys_at(from, heads).collect();
            for k in keys {
                match doc.get_at(from, k.as_str(), heads).map_err(am)? {
                    Some((Value::Scalar(v), _)) => {
                        doc.put(to, k.as_str(), v.into_owned()).map_err(am)?;
                    }
                    Some((Value::Object(t), child)) => {
                        let new = doc.put_object(to, k.as_str(), t).map_err(am)?;
                        copy_at(doc, &child, t, heads, &new)?;
                    }
                    None => {}
                }
            }
        }
        ObjType::List => {
            for i in 0..doc.length_at(from, heads) {
                match doc.get_at(from, i, heads).map_err(am)? {
                    Some((Value::Scalar(v), _)) => {
                        doc.insert(to, i, v.into_owned()).map_err(am)?;
                    }
                    Some((Value::Object(t), child)) => {
                        let new = doc.insert_object(to, i, t).map_err(am)?;
                        copy_at(doc, &child, t, heads, &new)?;
                    }
                    None => {}
                }
            }
        }
        ObjType::Text => {
            let text = doc.text_at(from, heads).map_err(am)?;
            doc.splice_text(to, 0, 0, &text).map_err(am)?;
        }
    }
    Ok(())
}

/// Renames a folder, a document as listed, or a file (the name in its
/// manifest). The name follows the rules of [`crate::document::checked_name`].
pub fn rename(doc: &mut AutoCommit, id: &str, name: &str) -> Result<(), DocumentError> {
    let name = crate::document::checked_name(name)?;
    let (key, obj) = locate(doc, id)?;
    match key {
        "folders" => doc.put(&obj, "name", name).map_err(am),
        "documents" => doc.put(&obj, "title", name).map_err(am),
        _ => {
            let mut m = read_manifest(doc, &obj)
                .ok_or_else(|| DocumentError::from(LibraryError::BadManifest(id.to_owned())))?;
            m.name = name;
            put_manifest(doc, &obj, &m)
        }
    }
}

/// Moves an entry into `folder` (`""`: the top of the library). A folder
/// cannot go into itself or one of its own folders.
pub fn move_to(doc: &mut AutoCommit, id: &str, folder: &str) -> Result<(), DocumentError> {
    let (key, obj) = locate(doc, id)?;
    if text(doc, &obj, "kind") == crate::discussion::KIND {
        return Err(LibraryError::DiscussionInFolder.into());
    }
    if !folder.is_empty() {
        let all = entries(doc)?;
        let parent_of = |f: &str| {
            all.iter().find_map(|e| match e {
                Entry::Folder { id, parent, .. } if id == f => Some(parent.clone()),
                _ => None,
            })
        };
        if parent_of(folder).is_none() {
            return Err(LibraryError::NoFolder(folder.to_owned()).into());
        }
        // Walk up from the target: meeting the entry would make a cycle.
        let mut at = folder.to_owned();
        for _ in 0..=all.len() {
            if at == id {
                return Err(LibraryError::Cycle.into());
            }
            match parent_of(&at) {
                Some(p) if !p.is_empty() => at = p,
                _ => break,
            }
        }
    }
    let field = if key == "folders" { "parent" } else { "folder" };
    doc.put(&obj, field, folder).map_err(am)
}

/// Every entry, folders first, then documents, then files. Entries whose
/// content does not decode are skipped (a newer client's format).
pub fn entries(doc: &AutoCommit) -> Result<Vec<Entry>, DocumentError> {
    let mut out = Vec::new();
    let folders = map(doc, "folders")?;
    for item in doc.map_range(&folders, ..) {
        let id = item.id();
        out.push(Entry::Folder {
            id: item.key.to_string(),
            name: text(doc, &id, "name"),
            parent: text(doc, &id, "parent"),
        });
    }
    let docs = map(doc, "documents")?;
    for item in doc.map_range(&docs, ..) {
        let id = item.id();
        let Ok(stream) = StreamId::from_hex(&item.key) else {
            continue;
        };
        if text(doc, &id, "kind") == crate::discussion::KIND {
            out.push(Entry::Discussion {
                stream,
                title: text(doc, &id, "title"),
            });
        } else {
            out.push(Entry::Document {
                stream,
                title: text(doc, &id, "title"),
                folder: text(doc, &id, "folder"),
            });
        }
    }
    let files = map(doc, "files")?;
    for item in doc.map_range(&files, ..) {
        let id = item.id();
        let manifest = read_manifest(doc, &id);
        if let Some(manifest) = manifest {
            out.push(Entry::File {
                id: item.key.to_string(),
                versions: read_versions(doc, &id, &manifest),
                manifest: Box::new(manifest),
                folder: text(doc, &id, "folder"),
            });
        }
    }
    Ok(out)
}

/// The names of the entries (folders, documents, discussions, files)
/// added after `since` by someone else than `me`: the user bound to the
/// actor that created the entry (`since` empty: every entry).
pub fn added_since(
    doc: &AutoCommit,
    since: &[automerge::ChangeHash],
    authors: &Authors,
    me: &str,
) -> Result<Vec<String>, DocumentError> {
    let mut out = Vec::new();
    for (key, name) in [("folders", "name"), ("documents", "title"), ("files", "")] {
        let m = map(doc, key)?;
        for item in doc.map_range(&m, ..) {
            let existed = !since.is_empty()
                && doc
                    .get_at(&m, item.key.as_ref(), since)
                    .map_err(am)?
                    .is_some();
            let creator = crate::document::filing::author(doc, &m, &item.key, "?", authors);
            if existed || creator.name == me {
                continue;
            }
            let obj = item.id();
            out.push(if name.is_empty() {
                read_manifest(doc, &obj).map(|m| m.name).unwrap_or_default()
            } else {
                text(doc, &obj, name)
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Folders nest; entries are renamed and moved; a folder cannot go
    /// into its own folders, and a folder that holds entries is not removed.
    #[test]
    fn entries_are_renamed_moved_and_removed() {
        let mut doc = AutoCommit::new();
        init(&mut doc).unwrap();
        add_folder(&mut doc, "f1", "Pièces", "").unwrap();
        add_folder(&mut doc, "f2", "Témoins", "f1").unwrap();
        let stream = StreamId([7; 16]);
        add_document(&mut doc, stream, "Requête", "").unwrap();
        let d = stream.to_hex();
        rename(&mut doc, &d, " Requête en référé ").unwrap();
        move_to(&mut doc, &d, "f2").unwrap();
        rename(&mut doc, "f1", "Pièces du dossier").unwrap();
        let all = entries(&doc).unwrap();
        assert!(all.contains(&Entry::Document {
            stream,
            title: "Requête en référé".into(),
            folder: "f2".into()
        }));
        assert!(all.contains(&Entry::Folder {
            id: "f1".into(),
            name: "Pièces du dossier".into(),
            parent: String::new()
        }));
        for (id, into) in [("f1", "f1"), ("f1", "f2")] {
            let err = move_to(&mut doc, id, into).unwrap_err();
            assert!(err.to_string().contains("itself"), "{err}");
        }
        assert!(move_to(&mut doc, &d, "nowhere").is_err());
        assert!(matches!(
            rename(&mut doc, &d, ""),
            Err(DocumentError::BadName(_))
        ));
        let err = remove(&mut doc, "f2").unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        assert!(
            matches!(&err, DocumentError::Library(e) if e.code() == "folder_not_empty"),
            "a stable code the interface translates: {err:?}"
        );
        remove(&mut doc, &d).unwrap();
        remove(&mut doc, "f2").unwrap();
        move_to(&mut doc, "f1", "").unwrap();
        assert_eq!(entries(&doc).unwrap().len(), 1);
        assert!(remove(&mut doc, &d).is_err(), "already gone");
    }

    /// A removal is undone from the heads before it: a file with its
    /// versions, a filing and a folder come back as they were, under their
    /// ids, for every member (the restored entry merges into another
    /// replica); an entry listed already, or unknown then, is refused.
    #[test]
    fn a_removed_entry_comes_back_as_it_was() {
        let mut doc = AutoCommit::new();
        init(&mut doc).unwrap();
        add_folder(&mut doc, "f1", "Pièces", "").unwrap();
        let v1 = sealed("Pièce 3.txt", b"premier");
        add_file(&mut doc, &v1, "f1").unwrap();
        let file = v1.file_id.to_string();
        add_version(&mut doc, &file, &sealed("Pièce 3 bis.txt", b"second")).unwrap();
        let stream = StreamId([9; 16]);
        add_document(&mut doc, stream, "Requête", "f1").unwrap();
        let before = entries(&doc).unwrap();
        let mut other = doc.fork().with_actor(automerge::ActorId::random());

        let heads = doc.get_heads();
        remove(&mut doc, &file).unwrap();
        remove(&mut doc, &stream.to_hex()).unwrap();
        remove(&mut doc, "f1").unwrap();
        assert!(entries(&doc).unwrap().is_empty());
        for id in ["f1", file.as_str(), &stream.to_hex()] {
            restore(&mut doc, id, &heads).unwrap();
        }
        let mut after = entries(&doc).unwrap();
        after.sort_by_key(|e| format!("{e:?}"));
        let mut want = before.clone();
        want.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(after, want, "as they were");

        other.merge(&mut doc).unwrap();
        let mut merged = entries(&other).unwrap();
        merged.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(merged, want, "the other member sees them back");

        // Without the heads kept: found in the history.
        let d = stream.to_hex();
        remove(&mut doc, &d).unwrap();
        rename(&mut doc, "f1", "Pièces du dossier").unwrap();
        let found = before_removal(&mut doc, &d).unwrap();
        restore(&mut doc, &d, &found).unwrap();
        assert!(entries(&doc).unwrap().contains(&Entry::Document {
            stream,
            title: "Requête".into(),
            folder: "f1".into()
        }));
        assert!(before_removal(&mut doc, &d).is_err(), "listed now");
        assert!(before_removal(&mut doc, "f9").is_err(), "never held");

        let listed = restore(&mut doc, "f1", &heads).unwrap_err();
        assert!(
            matches!(&listed, DocumentError::Library(e) if e.code() == "already_listed"),
            "{listed:?}"
        );
        let unknown = restore(&mut doc, "f9", &heads).unwrap_err();
        assert!(
            matches!(&unknown, DocumentError::Library(e) if e.code() == "no_entry"),
            "{unknown:?}"
        );
    }

    fn sealed(name: &str, body: &[u8]) -> FileManifest {
        let mut s = crate::files::FileSealer::new(name, "text/plain", body.len() as u64).unwrap();
        s.push(body).unwrap();
        s.finish().unwrap().1
    }

    /// A new version becomes the current one under the entry's name; the
    /// one it replaces stays listed and found by its file id; two new
    /// versions made at the same time both stay (one current, one older).
    #[test]
    fn a_new_version_keeps_the_older_ones() {
        let mut doc = AutoCommit::new();
        init(&mut doc).unwrap();
        let v1 = sealed("Pièce 3.txt", b"premier");
        add_file(&mut doc, &v1, "").unwrap();
        let id = v1.file_id.to_string();
        let v2 = sealed("scan-final.txt", b"second");
        add_version(&mut doc, &id, &v2).unwrap();
        assert!(add_version(&mut doc, &id, &v2).is_err(), "already current");
        let Some(Entry::File {
            id: listed,
            manifest,
            versions,
            ..
        }) = entries(&doc).unwrap().pop()
        else {
            panic!("no file")
        };
        assert_eq!(listed, id);
        assert_eq!(manifest.file_id, v2.file_id);
        assert_eq!(manifest.name, "Pièce 3.txt", "the entry keeps its name");
        assert_eq!(versions, vec![v1.clone()]);
        assert_eq!(super::manifest(&doc, &id).unwrap(), Some(v1.clone()));
        assert!(
            super::manifest(&doc, &v2.file_id.to_string())
                .unwrap()
                .is_some()
        );
        assert!(add_version(&mut doc, "nope", &v2).is_err());
        assert!(add_file(&mut doc, &sealed("x", b"x"), "no-such-folder").is_err());

        let mut other = doc.fork().with_actor(automerge::ActorId::random());
        let (a, b) = (sealed("a", b"a"), sealed("b", b"b"));
        add_version(&mut doc, &id, &a).unwrap();
        add_version(&mut other, &id, &b).unwrap();
        doc.merge(&mut other).unwrap();
        let Some(Entry::File {
            manifest, versions, ..
        }) = entries(&doc).unwrap().pop()
        else {
            panic!("no file")
        };
        let mut all: Vec<_> = versions.iter().map(|m| m.file_id).collect();
        all.push(manifest.file_id);
        for v in [&v1, &v2, &a, &b] {
            assert!(all.contains(&v.file_id), "a version was lost");
        }
        assert_eq!(all.len(), 4, "each version once");
    }

    /// A library written by Amina's actor, Bruno's actor, and the binding
    /// of both to their users.
    fn amina_and_bruno() -> (AutoCommit, automerge::ActorId, Authors) {
        let amina_actor = automerge::ActorId::from(&[1u8; 16][..]);
        let bruno_actor = automerge::ActorId::from(&[2u8; 16][..]);
        let authors = Authors::new([
            (amina_actor.to_bytes().to_vec(), "amina".to_owned()),
            (bruno_actor.to_bytes().to_vec(), "bruno".to_owned()),
        ]);
        let mut doc = AutoCommit::new().with_actor(amina_actor);
        init(&mut doc).unwrap();
        (doc, bruno_actor, authors)
    }

    /// A name written by a space manager is shown; one written over it by
    /// anyone else is not (nor does it bring the earlier one back).
    #[test]
    fn only_a_space_managers_name_is_shown() {
        let (mut doc, bruno_actor, authors) = amina_and_bruno();
        let manager = |u: &str| u == "amina";
        assert_eq!(profile(&doc, &authors, manager), Profile::default());
        set_profile(&mut doc, " Affaire Kassa ", "Requêtes\net pièces").unwrap();
        assert_eq!(
            profile(&doc, &authors, manager),
            Profile {
                name: Some("Affaire Kassa".into()),
                description: Some("Requêtes\net pièces".into()),
                open: false,
            }
        );
        assert!(matches!(
            set_profile(&mut doc, "", ""),
            Err(DocumentError::BadName(_))
        ));
        assert!(matches!(
            set_profile(&mut doc, "x", &"é".repeat(MAX_DESCRIPTION_CHARS + 1)),
            Err(DocumentError::BadText(_))
        ));
        let mut bruno = doc.fork().with_actor(bruno_actor);
        set_profile(&mut bruno, "Renamed", "").unwrap();
        assert_eq!(profile(&bruno, &authors, manager), Profile::default());
        // An actor bound to no device is no manager either.
        let mut stranger = doc.fork();
        set_profile(&mut stranger, "Other", "").unwrap();
        assert_eq!(profile(&stranger, &authors, manager).name, None);
    }

    /// A space is open to anyone only if a space manager opened it: a
    /// member of another role who writes `open` leaves it closed, and a
    /// manager closes it again.
    #[test]
    fn only_a_space_manager_opens_a_space() {
        let (mut doc, bruno_actor, authors) = amina_and_bruno();
        let manager = |u: &str| u == "amina";
        assert!(!profile(&doc, &authors, manager).open);
        let mut bruno = doc.fork().with_actor(bruno_actor);
        set_open(&mut bruno, true).unwrap();
        assert!(
            !profile(&bruno, &authors, manager).open,
            "a contributor opened it"
        );
        set_open(&mut doc, true).unwrap();
        assert!(profile(&doc, &authors, manager).open);
        // Any other value than `true` is closed.
        doc.put(ROOT, "open", "yes").unwrap();
        assert!(!profile(&doc, &authors, manager).open);
        set_open(&mut doc, false).unwrap();
        assert!(!profile(&doc, &authors, manager).open);
    }
}
