//! The audit of a server's data directory (`amicus audit`), for a stopped
//! server or a copy of its directory:
//!
//! - every space log's hash chain, from the genesis hash to the head the
//!   space record names;
//! - every blob's content against its name (`blake3`), and every chunk a
//!   witness sent to a drop box the same way (`drop-chunks/`); each such
//!   chunk named by a submission, each complete submission's chunks all
//!   there;
//! - every document of the search index against the store: each must be a
//!   public document of a public space;
//! - every byte under the directory, and every key and value of every sled
//!   tree read back through sled, for the given canaries in every form a
//!   program might have written them ([`forms`]: raw, hex, HEX, UTF-16LE,
//!   UTF-16BE, base64 and base64url at the three alignments).
//!
//! The audit reads; it changes nothing it examines (sled and tantivy may
//! take their lock files).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use amicus_core::wire::{genesis, verify_chain};
use base64::Engine;
use serde::Serialize;

use crate::store::{SledStore, SpaceKind, SpaceRecord, Store};

/// What the audit found wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `broken_chain`, `head_mismatch`, `blob_hash`, `stray_blob`,
    /// `stray_drop_chunk`, `missing_drop_chunk`, `index_not_public`,
    /// `index_unreadable` or `canary`.
    pub kind: &'static str,
    /// Where: a space id, a file path, a sled tree, an index key.
    pub location: String,
    /// What exactly.
    pub detail: String,
}

/// The audit's report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditReport {
    /// The directory audited.
    pub data: PathBuf,
    /// Spaces whose log was verified.
    pub spaces: usize,
    /// Log entries verified.
    pub log_entries: u64,
    /// Blobs whose hash was checked.
    pub blobs: usize,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Chunks of drop boxes' submissions whose hash was checked.
    pub drop_chunks: usize,
    /// Their bytes.
    pub drop_chunk_bytes: u64,
    /// Documents of the search index checked against the store.
    pub index_documents: usize,
    /// Canaries looked for.
    pub canaries: usize,
    /// Files scanned for canaries.
    pub files_scanned: usize,
    /// Bytes scanned in files.
    pub bytes_scanned: u64,
    /// Sled keys and values scanned.
    pub sled_entries: usize,
    /// Everything wrong; empty when the audit passes.
    pub findings: Vec<Finding>,
}

impl AuditReport {
    /// True if nothing was found.
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Why the audit could not run.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The directory holds no store.
    #[error("{0} holds no Amicus store (no store/ directory)")]
    NoStore(PathBuf),
    /// The store could not be opened (a running server holds it).
    #[error(
        "cannot open the store under {0}: {1} (stop the server, or audit a copy of its directory)"
    )]
    Store(PathBuf, String),
    /// Reading failed.
    #[error("reading {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// A canary and the byte strings it could be stored as.
pub struct Canary {
    text: String,
    forms: Vec<(String, memchr::memmem::Finder<'static>)>,
    longest: usize,
}

/// The forms a canary could take when stored or logged: raw, hex, HEX,
/// UTF-16LE, UTF-16BE, and the middle of its base64 and base64url
/// encodings at each of the three alignments (whatever precedes the canary
/// in the encoded data, one of them appears).
pub fn forms(canary: &str) -> Vec<(String, Vec<u8>)> {
    let raw = canary.as_bytes();
    let mut out = vec![
        ("raw".to_owned(), raw.to_vec()),
        ("hex".to_owned(), hex::encode(raw).into_bytes()),
        ("HEX".to_owned(), hex::encode_upper(raw).into_bytes()),
        (
            "utf-16le".to_owned(),
            canary.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        ),
        (
            "utf-16be".to_owned(),
            canary.encode_utf16().flat_map(u16::to_be_bytes).collect(),
        ),
    ];
    for (name, engine) in [
        ("base64", &base64::engine::general_purpose::STANDARD),
        ("base64url", &base64::engine::general_purpose::URL_SAFE),
    ] {
        for shift in 0..3 {
            let mut input = vec![0u8; shift];
            input.extend_from_slice(raw);
            let enc = engine.encode(&input);
            // The first and last 4 characters depend on the neighbours.
            out.push((
                format!("{name}+{shift}"),
                enc.as_bytes()[4..enc.len() - 4].to_vec(),
            ));
        }
    }
    out
}

/// The shortest canary the scan accepts (shorter ones match by chance).
pub const MIN_CANARY_LEN: usize = 12;

impl Canary {
    /// A canary (at least [`MIN_CANARY_LEN`] bytes).
    pub fn new(text: &str) -> Result<Self, String> {
        if text.len() < MIN_CANARY_LEN {
            return Err(format!(
                "a canary needs at least {MIN_CANARY_LEN} bytes (shorter ones match by chance): {text:?}"
            ));
        }
        let forms: Vec<(String, memchr::memmem::Finder<'static>)> = forms(text)
            .into_iter()
            .map(|(name, bytes)| (name, memchr::memmem::Finder::new(&bytes).into_owned()))
            .collect();
        let longest = forms
            .iter()
            .map(|(_, f)| f.needle().len())
            .max()
            .unwrap_or(0);
        Ok(Self {
            text: text.to_owned(),
            forms,
            longest,
        })
    }

    /// The form of this canary found in `haystack`, if any.
    pub fn find(&self, haystack: &[u8]) -> Option<&str> {
        self.forms
            .iter()
            .find(|(_, f)| f.find(haystack).is_some())
            .map(|(name, _)| name.as_str())
    }
}

/// The first canary found in `haystack`: (canary, form).
pub fn find<'a>(canaries: &'a [Canary], haystack: &[u8]) -> Option<(&'a str, &'a str)> {
    canaries
        .iter()
        .find_map(|c| c.find(haystack).map(|form| (c.text.as_str(), form)))
}

/// Audits `data` (a server's data directory) for `canaries`.
pub fn audit(data: &Path, canaries: &[Canary]) -> Result<AuditReport, AuditError> {
    let store_dir = data.join("store");
    if !store_dir.is_dir() {
        return Err(AuditError::NoStore(data.to_owned()));
    }
    let mut report = AuditReport {
        data: data.to_owned(),
        canaries: canaries.len(),
        ..Default::default()
    };
    {
        let failed =
            |e: crate::store::StoreError| AuditError::Store(data.to_owned(), e.to_string());
        let store = SledStore::open(&store_dir).map_err(failed)?;
        let spaces = store.spaces().map_err(failed)?;
        logs(&store, &spaces, &mut report).map_err(failed)?;
        index(&store, &spaces, &data.join("index"), &mut report).map_err(failed)?;
        if !canaries.is_empty() {
            sled_values(&store, canaries, &mut report).map_err(failed)?;
        }
        drop_boxes(&store, &data.join("drop-chunks"), &mut report.findings).map_err(failed)?;
    }
    (report.blobs, report.blob_bytes) = blobs(&data.join("blobs"), &mut report.findings)?;
    (report.drop_chunks, report.drop_chunk_bytes) =
        blobs(&data.join("drop-chunks"), &mut report.findings)?;
    if !canaries.is_empty() {
        scan(data, data, canaries, &mut report)?;
    }
    Ok(report)
}

/// Every space's log, from the genesis hash to the head of its record.
fn logs(
    store: &SledStore,
    spaces: &[SpaceRecord],
    report: &mut AuditReport,
) -> Result<(), crate::store::StoreError> {
    for space in spaces {
        report.spaces += 1;
        let mut broken = false;
        let mut next = 0u64;
        let mut head = genesis(space.id);
        loop {
            let page = store.entries(space.id, next, 256, 8 << 20)?;
            if page.is_empty() {
                break;
            }
            match verify_chain(next, head, &page) {
                Ok((n, h)) => {
                    report.log_entries += n - next;
                    (next, head) = (n, h);
                }
                Err(e) => {
                    broken = true;
                    report.findings.push(Finding {
                        kind: "broken_chain",
                        location: format!("space {}", space.id.to_hex()),
                        detail: e.to_string(),
                    });
                    break;
                }
            }
        }
        if !broken && (next, head) != (space.next_seq, space.head) {
            report.findings.push(Finding {
                kind: "head_mismatch",
                location: format!("space {}", space.id.to_hex()),
                detail: format!(
                    "the log ends at sequence {next} with head {}, the space record names {} and {}",
                    hex::encode(head),
                    space.next_seq,
                    hex::encode(space.head)
                ),
            });
        }
    }
    Ok(())
}

/// Every chunk a drop box keeps is named by one of its submissions (a
/// chunk nothing names is a witness's bytes kept for no one: the server's
/// sweep deletes them), and every chunk of a complete submission is there
/// (members could not open it otherwise).
fn drop_boxes(
    store: &SledStore,
    dir: &Path,
    findings: &mut Vec<Finding>,
) -> Result<(), crate::store::StoreError> {
    let chunks = crate::blobs::Blobs::at(dir);
    let mut named = std::collections::BTreeSet::new();
    for (id, _) in store.every_drop_box()? {
        for (sid, s) in store.submissions(id)? {
            for c in s.parts.iter().flat_map(|p| &p.chunks) {
                named.insert(*c);
                if s.complete && !chunks.path(&crate::blobs::BlobId(*c)).is_file() {
                    findings.push(Finding {
                        kind: "missing_drop_chunk",
                        location: format!(
                            "drop box {} submission {}",
                            hex::encode(id),
                            hex::encode(sid)
                        ),
                        detail: format!("its chunk {} is not stored", hex::encode(c)),
                    });
                }
            }
        }
    }
    for c in chunks.list().unwrap_or_default() {
        if !named.contains(&c.0) {
            findings.push(Finding {
                kind: "stray_drop_chunk",
                location: chunks.path(&c).display().to_string(),
                detail: "no submission of any drop box names this chunk".into(),
            });
        }
    }
    Ok(())
}

/// Every blob under `dir/ab/<64 hex>` (`blobs/`, `drop-chunks/`): its
/// blake3 is its name. Uploads in progress (`tmp/`) are skipped. Returns
/// how many were checked and their bytes.
fn blobs(dir: &Path, findings: &mut Vec<Finding>) -> Result<(usize, u64), AuditError> {
    let mut checked = (0, 0);
    let Ok(shards) = std::fs::read_dir(dir) else {
        return Ok(checked);
    };
    for shard in shards {
        let shard = shard.map_err(|e| AuditError::Io(dir.to_owned(), e))?.path();
        if shard.file_name().is_some_and(|n| n == "tmp") {
            continue;
        }
        if !shard.is_dir() {
            findings.push(Finding {
                kind: "stray_blob",
                location: shard.display().to_string(),
                detail: "a file where blob directories are expected".into(),
            });
            continue;
        }
        for file in std::fs::read_dir(&shard).map_err(|e| AuditError::Io(shard.clone(), e))? {
            let path = file.map_err(|e| AuditError::Io(shard.clone(), e))?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let shard_name = shard
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let well_named = name.len() == 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                && name.starts_with(&shard_name);
            if !well_named || !path.is_file() {
                findings.push(Finding {
                    kind: "stray_blob",
                    location: path.display().to_string(),
                    detail: "not named <64 lowercase hex> in the directory of its first two".into(),
                });
                continue;
            }
            let mut hasher = blake3::Hasher::new();
            let mut f = std::fs::File::open(&path).map_err(|e| AuditError::Io(path.clone(), e))?;
            let mut buf = vec![0u8; 1 << 16];
            let mut bytes = 0u64;
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(|e| AuditError::Io(path.clone(), e))?;
                if n == 0 {
                    break;
                }
                bytes += n as u64;
                hasher.update(&buf[..n]);
            }
            checked.0 += 1;
            checked.1 += bytes;
            let actual = hasher.finalize().to_hex();
            if actual.as_str() != name {
                findings.push(Finding {
                    kind: "blob_hash",
                    location: path.display().to_string(),
                    detail: format!("the content hashes to {actual}"),
                });
            }
        }
    }
    Ok(checked)
}

/// Every document of the search index is a public document of a public
/// space in the store.
fn index(
    store: &SledStore,
    spaces: &[SpaceRecord],
    dir: &Path,
    report: &mut AuditReport,
) -> Result<(), crate::store::StoreError> {
    if !dir.exists() {
        return Ok(());
    }
    let keys = match amicus_search::stored_keys(dir) {
        Ok(keys) => keys,
        Err(e) => {
            report.findings.push(Finding {
                kind: "index_unreadable",
                location: dir.display().to_string(),
                detail: e.to_string(),
            });
            return Ok(());
        }
    };
    let public: BTreeMap<String, bool> = spaces
        .iter()
        .map(|s| (s.id.to_hex(), s.kind == SpaceKind::Public))
        .collect();
    for (space, id) in keys {
        report.index_documents += 1;
        let ok = public.get(&space).copied().unwrap_or(false)
            && amicus_core::SpaceId::from_hex(&space)
                .ok()
                .map(|s| store.public_doc(s, &id))
                .transpose()?
                .flatten()
                .is_some();
        if !ok {
            report.findings.push(Finding {
                kind: "index_not_public",
                location: format!("{space}/{id}"),
                detail: "the index holds a document that is not a public document of a public space in the store".into(),
            });
        }
    }
    Ok(())
}

/// Every key and value of every sled tree, read back through sled (a
/// value sled compressed or split would escape a scan of its files).
fn sled_values(
    store: &SledStore,
    canaries: &[Canary],
    report: &mut AuditReport,
) -> Result<(), crate::store::StoreError> {
    for (name, tree) in store.trees() {
        for item in tree.iter() {
            let (k, v) = item.map_err(crate::store::StoreError::from)?;
            report.sled_entries += 1;
            for bytes in [&k[..], &v[..]] {
                if let Some((canary, form)) = find(canaries, bytes) {
                    report.findings.push(Finding {
                        kind: "canary",
                        location: format!("sled tree {name}"),
                        detail: format!("{canary:?} as {form}"),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Every file under `dir`, read in overlapping windows (so a canary across
/// two reads is still seen, and a large blob never sits whole in memory).
fn scan(
    root: &Path,
    dir: &Path,
    canaries: &[Canary],
    report: &mut AuditReport,
) -> Result<(), AuditError> {
    let overlap = canaries.iter().map(|c| c.longest).max().unwrap_or(0);
    for entry in std::fs::read_dir(dir).map_err(|e| AuditError::Io(dir.to_owned(), e))? {
        let path = entry.map_err(|e| AuditError::Io(dir.to_owned(), e))?.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| AuditError::Io(path.clone(), e))?;
        if meta.is_dir() {
            scan(root, &path, canaries, report)?;
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        report.files_scanned += 1;
        let mut f = std::fs::File::open(&path).map_err(|e| AuditError::Io(path.clone(), e))?;
        let mut window: Vec<u8> = Vec::with_capacity((1 << 20) + overlap);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| AuditError::Io(path.clone(), e))?;
            if n == 0 {
                break;
            }
            report.bytes_scanned += n as u64;
            window.extend_from_slice(&buf[..n]);
            if let Some((canary, form)) = find(canaries, &window) {
                let shown = path.strip_prefix(root).unwrap_or(&path);
                report.findings.push(Finding {
                    kind: "canary",
                    location: shown.display().to_string(),
                    detail: format!("{canary:?} as {form}"),
                });
                break;
            }
            let keep = window.len().min(overlap.saturating_sub(1));
            window.drain(..window.len() - keep);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_is_found_wherever_it_sits() {
        let canary = Canary::new("CANARY-7f3a91-détenus").unwrap();
        let text = "CANARY-7f3a91-détenus";
        for shift in 0..4 {
            let mut planted = vec![b'x'; shift];
            planted.extend_from_slice(text.as_bytes());
            planted.extend_from_slice(b"tail");
            let utf16le: Vec<u8> = String::from_utf8_lossy(&planted)
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect();
            let utf16be: Vec<u8> = String::from_utf8_lossy(&planted)
                .encode_utf16()
                .flat_map(u16::to_be_bytes)
                .collect();
            for (encoded, form) in [
                (
                    base64::engine::general_purpose::STANDARD
                        .encode(&planted)
                        .into_bytes(),
                    "base64",
                ),
                (
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(&planted)
                        .into_bytes(),
                    "base64url",
                ),
                (hex::encode(&planted).into_bytes(), "hex"),
                (hex::encode_upper(&planted).into_bytes(), "HEX"),
                (utf16le, "utf-16le"),
                (utf16be, "utf-16be"),
                (planted.clone(), "raw"),
            ] {
                let found = canary.find(&encoded);
                // base64url differs from base64 only where the text
                // encodes to '+' or '/', and ASCII in UTF-16BE is UTF-16LE
                // shifted by a byte: either name is right for them.
                let base = form.trim_end_matches("url").trim_end_matches("be");
                assert!(
                    found.is_some_and(|f| f.starts_with(base)),
                    "{form} at shift {shift}: {found:?}"
                );
            }
        }
        assert!(canary.find(b"nothing to see here").is_none());
        assert!(Canary::new("short").is_err());
    }

    #[test]
    fn a_canary_across_two_reads_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = vec![b'.'; (1 << 20) - 5];
        bytes.extend_from_slice(b"CANARY-across-the-boundary");
        bytes.extend(std::iter::repeat_n(b'.', 100));
        std::fs::write(dir.path().join("f"), &bytes).unwrap();
        let canaries = [Canary::new("CANARY-across-the-boundary").unwrap()];
        let mut report = AuditReport::default();
        scan(dir.path(), dir.path(), &canaries, &mut report).unwrap();
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert_eq!(report.findings[0].location, "f");
        assert_eq!(report.bytes_scanned, bytes.len() as u64);
    }
}
