//! The content-addressed blob directory: `blobs/<2 hex>/<64 hex>`, each file
//! named by the blake3 hash of its bytes (for encrypted files: of the
//! ciphertext, never of the plaintext).
//!
//! An upload streams to a temporary file while hashing, is refused if its
//! hash differs from the id or it exceeds the size limit, and is then synced
//! and renamed into place, so a blob either exists whole or not at all.

use std::path::{Path, PathBuf};

use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::error::ApiError;

/// A blob id: 32 bytes, written as 64 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// Parses exactly 64 lowercase hex digits (nothing else can name a path).
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let bad = || {
            ApiError::BadRequest(format!(
                "blob id must be 64 lowercase hex digits, got {:?}",
                truncate(s)
            ))
        };
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }

    /// The hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Where an upload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The blob is new.
    New(u64),
    /// The blob existed already (nothing charged).
    Existing,
}

/// A temporary upload file, removed when dropped (after a rename the
/// removal finds nothing).
struct TmpFile(PathBuf);

impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The blob directory.
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    /// Opens (creates) `dir`, and removes temporary files of interrupted uploads.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        for entry in std::fs::read_dir(dir.join("tmp"))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(Self { dir: dir.into() })
    }

    /// The blob directory `dir` as it is, to read only (the audit): nothing
    /// created, nothing removed.
    pub fn at(dir: &Path) -> Self {
        Self { dir: dir.into() }
    }

    /// The file of a blob.
    pub fn path(&self, id: &BlobId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// True if the blob is stored.
    pub async fn exists(&self, id: &BlobId) -> bool {
        tokio::fs::try_exists(self.path(id)).await.unwrap_or(false)
    }

    /// Streams `body` into the blob `id`: refused if longer than `max` or if
    /// its hash differs. Then, in a task that finishes even if the client
    /// goes away, `charge(size)` may refuse it (quota), the file is synced
    /// and renamed into place, and `on_stored(size)` is called.
    pub async fn put<S, E>(
        &self,
        id: &BlobId,
        mut body: S,
        max: usize,
        charge: impl FnOnce(u64) -> Result<(), ApiError> + Send + 'static,
        on_stored: impl FnOnce(u64) + Send + 'static,
    ) -> Result<Stored, ApiError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp = TmpFile(
            self.dir
                .join("tmp")
                .join(hex::encode(crate::state::random32())),
        );
        let mut file = tokio::fs::File::create(&tmp.0).await?;
        let mut hasher = blake3::Hasher::new();
        let mut size = 0usize;
        while let Some(chunk) = body.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::BadRequest(format!("the upload was interrupted: {e}")))?;
            size += chunk.len();
            if size > max {
                return Err(ApiError::TooLarge(format!(
                    "a blob holds at most {max} bytes"
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        if hasher.finalize().as_bytes() != &id.0 {
            return Err(ApiError::HashMismatch);
        }
        let target = self.path(id);
        let finish = async move {
            let tmp = tmp;
            if tokio::fs::try_exists(&target).await.unwrap_or(false) {
                return Ok(Stored::Existing);
            }
            charge(size as u64)?;
            file.sync_all().await?;
            drop(file);
            let parent = target.parent().expect("blob paths have a parent");
            if !tokio::fs::try_exists(parent).await.unwrap_or(false) {
                tokio::fs::create_dir_all(parent).await?;
                // The new shard directory itself must survive a crash.
                if let Some(root) = parent.parent() {
                    tokio::fs::File::open(root).await?.sync_all().await?;
                }
            }
            tokio::fs::rename(&tmp.0, &target).await?;
            tokio::fs::File::open(parent).await?.sync_all().await?;
            on_stored(size as u64);
            Ok(Stored::New(size as u64))
        };
        tokio::spawn(finish).await.map_err(|_| ApiError::Internal)?
    }

    /// Every stored blob id (for audits).
    pub fn list(&self) -> std::io::Result<Vec<BlobId>> {
        let mut out = Vec::new();
        for shard in std::fs::read_dir(&self.dir)? {
            let shard = shard?;
            if shard.file_name() == "tmp" || !shard.file_type()?.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(shard.path())? {
                if let Ok(id) = BlobId::parse(&f?.file_name().to_string_lossy()) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: Vec<&'static [u8]>) -> impl Stream<Item = Result<bytes::Bytes, String>> + Unpin {
        futures_util::stream::iter(parts.into_iter().map(|p| Ok(bytes::Bytes::from_static(p))))
    }

    #[tokio::test]
    async fn a_blob_is_stored_only_under_its_hash_and_within_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let id = BlobId(*blake3::hash(b"hello world").as_bytes());
        let wrong = BlobId([7; 32]);
        assert!(matches!(
            blobs
                .put(
                    &wrong,
                    body(vec![b"hello ", b"world"]),
                    100,
                    |_| Ok(()),
                    |_| ()
                )
                .await,
            Err(ApiError::HashMismatch)
        ));
        assert!(matches!(
            blobs
                .put(&id, body(vec![b"hello ", b"world"]), 5, |_| Ok(()), |_| ())
                .await,
            Err(ApiError::TooLarge(_))
        ));
        assert!(matches!(
            blobs
                .put(
                    &id,
                    body(vec![b"hello ", b"world"]),
                    100,
                    |_| Err(ApiError::Quota("full".into())),
                    |_| panic!("a refused blob is not stored")
                )
                .await,
            Err(ApiError::Quota(_))
        ));
        assert!(!blobs.exists(&id).await);
        assert_eq!(
            blobs
                .put(
                    &id,
                    body(vec![b"hello ", b"world"]),
                    100,
                    |_| Ok(()),
                    |n| { assert_eq!(n, 11) }
                )
                .await
                .unwrap(),
            Stored::New(11)
        );
        assert_eq!(
            blobs
                .put(
                    &id,
                    body(vec![b"hello world"]),
                    100,
                    |_| panic!("not charged twice"),
                    |_| panic!("not stored twice")
                )
                .await
                .unwrap(),
            Stored::Existing
        );
        assert_eq!(std::fs::read(blobs.path(&id)).unwrap(), b"hello world");
        assert_eq!(blobs.list().unwrap(), vec![id]);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn blob_ids_cannot_name_another_path() {
        for bad in [
            "../../etc/passwd",
            "",
            &"A".repeat(64),
            &format!("{}/", "a".repeat(63)),
            &"g".repeat(64),
        ] {
            assert!(BlobId::parse(bad).is_err(), "{bad}");
        }
        assert!(BlobId::parse(&"0f".repeat(32)).is_ok());
    }
}
