//! Files crossing the network, decided once for every client (PROTOCOL
//! §10.7, §16).
//!
//! [`Upload`] and [`Download`] are sans-IO, like the engine: the driver asks
//! for the next [`UploadStep`] or [`DownloadStep`], does the I/O it names
//! (read the source, store a record, send or fetch a blob, wait) and hands
//! back what happened. Everything a client used to decide on its own lives
//! here: the write-ahead order of record and chunk, which interrupted
//! upload may resume and from what, when to start afresh, which failures
//! are retried, how often and after how long.
//!
//! # The upload's record
//!
//! Before a sealed chunk leaves the device, the driver stores the record
//! [`UploadStep::Store`] hands it, in place of the upload's earlier one, as
//! one atomic write: `3 || postcard { progress, target, kept }`, where
//! `kept` holds the sealed chunks the progress covers and the server may
//! not have yet. It holds the file's secret: drivers keep it encrypted at
//! rest. On a resume, a kept chunk is sent again only if the progress names
//! it (a chunk the progress does not cover could be sealed again from a
//! changed file under the same nonce); then the server is asked which of
//! the progress's chunks it lacks, and any gap starts the upload afresh
//! under a new secret, as does a source that changed or is of another size.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::SpaceId;
use crate::files::{
    CHUNK_SIZE, ChunkId, FileError, FileManifest, FileOpener, FileSealer, SealedChunk,
    UploadProgress,
};

/// The largest blob a chunk is stored as: a chunk, its tag and room for
/// the header (what a download accepts at most for one chunk).
pub const MAX_BLOB: usize = CHUNK_SIZE + 4096;

/// How many times one request is tried before the transfer gives up.
pub const ATTEMPTS: u32 = 30;

/// The longest wait between two attempts, in milliseconds.
pub const MAX_BACKOFF_MS: u64 = 10_000;

/// The most chunk ids one `POST /v1/blobs/missing` asks about (the
/// server's limit): a longer progress is asked about in parts.
pub const MISSING_QUERY: usize = 10_000;

/// The version byte of an upload's record.
const RECORD_VERSION: u8 = 3;

/// Where an uploaded file goes in its space's library.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The space.
    pub space: SpaceId,
    /// The folder (`""`: the top of the library).
    pub folder: String,
    /// The library file (its id) this upload becomes a new version of.
    pub replaces: Option<String>,
}

/// The file being uploaded, as the driver sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// Its name.
    pub name: String,
    /// Its media type.
    pub media_type: String,
    /// Its length in bytes.
    pub size: u64,
}

/// What a request that did not succeed came back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpFailure {
    /// The HTTP status; `None` when the server could not be reached or
    /// the connection broke.
    pub status: Option<u16>,
    /// The server's `Retry-After`, in seconds, if it sent one.
    pub retry_after: Option<u64>,
}

impl HttpFailure {
    /// The server could not be reached.
    pub const NETWORK: HttpFailure = HttpFailure {
        status: None,
        retry_after: None,
    };

    /// An answer with this status and no `Retry-After`.
    pub fn status(status: u16) -> HttpFailure {
        HttpFailure {
            status: Some(status),
            retry_after: None,
        }
    }

    /// Whether the same request may succeed later: the network, a timeout,
    /// too many requests, or a server or gateway that is busy or
    /// restarting. Anything else (a refusal, a missing blob, a quota) is
    /// final.
    pub fn retryable(&self) -> bool {
        matches!(self.status, None | Some(408 | 429 | 502 | 503 | 504))
    }
}

/// Why a transfer stopped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransferError {
    /// The server refused a request for good.
    #[error("the server refused the transfer (HTTP {0})")]
    Refused(u16),
    /// A request kept failing; the upload can be resumed later.
    #[error("the server could not be reached after {ATTEMPTS} attempts")]
    GaveUp,
    /// The source is not as long as it said (shorter, or it grew).
    #[error("the file is not {expected} bytes long any more (it changed while being sent)")]
    SourceLength {
        /// The size given at the start.
        expected: u64,
    },
    /// Sealing or opening failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// A drop-box part's chunks are not as long as the server listed.
    #[error("a part of the submission should have {listed} bytes and its chunks have {received}")]
    PartLength {
        /// What the listing says.
        listed: u64,
        /// What came (so far).
        received: u64,
    },
    /// The driver answered a step that was not asked.
    #[error("the transfer was answered out of turn")]
    OutOfTurn,
}

/// Waits between attempts of one request: 0.5 s, doubling up to
/// [`MAX_BACKOFF_MS`], or the server's `Retry-After` (1 to 60 s).
#[derive(Clone, Debug, Default)]
struct Retry {
    failures: u32,
}

impl Retry {
    /// After a failure: how long to wait before the next attempt.
    fn after(&mut self, failure: HttpFailure) -> Result<u64, TransferError> {
        if !failure.retryable() {
            return Err(TransferError::Refused(failure.status.unwrap_or(0)));
        }
        self.failures += 1;
        if self.failures >= ATTEMPTS {
            return Err(TransferError::GaveUp);
        }
        Ok(match failure.retry_after {
            Some(secs) => secs.clamp(1, 60) * 1000,
            None => (500u64 << (self.failures - 1).min(5)).min(MAX_BACKOFF_MS),
        })
    }

    fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// An upload's record, as stored (see the module documentation).
#[derive(Serialize, Deserialize)]
struct Record {
    progress: UploadProgress,
    target: Target,
    kept: Vec<Vec<u8>>,
}

impl Record {
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        // The record holds the file's secret: no copy of it is left behind.
        let body = Zeroizing::new(postcard::to_allocvec(self).expect("a record encodes"));
        let mut bytes = Zeroizing::new(Vec::with_capacity(body.len() + 1));
        bytes.push(RECORD_VERSION);
        bytes.extend_from_slice(&body);
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Record> {
        match bytes.split_first() {
            Some((&RECORD_VERSION, rest)) => match postcard::take_from_bytes(rest) {
                Ok((record, [])) => Some(record),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What an interrupted upload's record says, for a list of uploads to
/// resume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interrupted {
    /// Where the file was going.
    pub target: Target,
    /// Its name.
    pub name: String,
    /// Its length.
    pub size: u64,
    /// Chunks sealed so far.
    pub done: u64,
    /// Chunks in all.
    pub chunks: u64,
    /// The file's id (hex).
    pub file: String,
}

impl Interrupted {
    /// Reads a record [`UploadStep::Store`] gave; `None` if it is not one.
    pub fn read(record: &[u8]) -> Option<Interrupted> {
        let r = Record::decode(record)?;
        Some(Interrupted {
            name: r.progress.name().to_owned(),
            size: r.progress.plaintext_size(),
            done: r.progress.chunks_emitted(),
            chunks: r.progress.chunk_count(),
            file: r.progress.file_id().to_string(),
            target: r.target,
        })
    }

    /// A record in the layout the clients wrote before this module: the
    /// progress, where the file goes and the chunk kept with it.
    pub fn upgrade(
        progress: UploadProgress,
        target: Target,
        kept: Option<Vec<u8>>,
    ) -> Zeroizing<Vec<u8>> {
        Record {
            progress,
            target,
            kept: kept.into_iter().collect(),
        }
        .encode()
    }
}

/// What the driver does next for an [`Upload`].
#[derive(PartialEq, Eq)]
pub enum UploadStep {
    /// Read the source from `offset`, at most `len` bytes, and hand them
    /// to [`Upload::read`].
    Read {
        /// Where to read from.
        offset: u64,
        /// How much at most.
        len: usize,
    },
    /// Store this record durably in place of the upload's earlier one, in
    /// one write, then call [`Upload::stored`]. Nothing is sent before.
    Store(Zeroizing<Vec<u8>>),
    /// Send the blob (`PUT /v1/blobs/{id}`) and hand the result to
    /// [`Upload::sent`].
    Put {
        /// Its id.
        id: ChunkId,
        /// Its bytes.
        blob: Vec<u8>,
    },
    /// Ask which of these chunks the server lacks (`POST
    /// /v1/blobs/missing`) and hand the answer to [`Upload::missing`].
    AskMissing(Vec<ChunkId>),
    /// Wait this many milliseconds, then ask for the next step.
    Wait(u64),
    /// Every chunk is at the server: list the file in the library
    /// ([`crate::engine::Engine::list_upload`]), send the library, and
    /// only then delete the record.
    Done(FileManifest),
}

impl std::fmt::Debug for UploadStep {
    /// A record holds the file's secret and a manifest its key: neither is
    /// shown, only their sizes and ids.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadStep::Read { offset, len } => {
                write!(f, "Read {{ offset: {offset}, len: {len} }}")
            }
            UploadStep::Store(record) => write!(f, "Store({} bytes)", record.len()),
            UploadStep::Put { id, blob } => write!(f, "Put {{ id: {id:?}, len: {} }}", blob.len()),
            UploadStep::AskMissing(ids) => write!(f, "AskMissing({} ids)", ids.len()),
            UploadStep::Wait(ms) => write!(f, "Wait({ms})"),
            UploadStep::Done(m) => write!(f, "Done({:?})", m.file_id),
        }
    }
}

#[derive(Debug)]
enum State {
    /// Resuming: the kept chunks the progress names go out first.
    SendKept,
    /// Resuming: which of the progress's chunks the server has.
    AskMissing,
    /// A step was handed out; waiting for its answer.
    Asked(Asked),
    /// Reading and sealing.
    Sealing,
    /// After a failed request: wait, then try it again.
    Backoff(u64),
    /// Finished.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asked {
    Read,
    Store,
    Put,
    Missing,
}

/// A file being sealed and sent (see the module documentation).
pub struct Upload {
    source: Source,
    target: Target,
    /// `None` once finished.
    sealer: Option<FileSealer>,
    /// Chunks in all.
    chunks: u64,
    /// The sealer rebuilt from a record: a changed source starts afresh.
    resumed: bool,
    /// The record read at the start, until the server says what it has.
    saved: Option<Record>,
    /// Sealed chunks stored in the record and not yet at the server.
    outgoing: VecDeque<SealedChunk>,
    /// Whether `outgoing` is in a stored record yet.
    outgoing_stored: bool,
    /// Resuming: how many of the progress's chunk ids the server was
    /// asked about so far.
    queried: usize,
    /// The source was read to its declared length and found to end there.
    ended: bool,
    /// Ids per `AskMissing` ([`MISSING_QUERY`]).
    query: usize,
    state: State,
    retry: Retry,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("source", &self.source)
            .field("target", &self.target)
            .field("resumed", &self.resumed)
            .field("outgoing", &self.outgoing.len())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// Starts uploading `source` to `target`, from `record` if an earlier
    /// upload of it stopped (what its last [`UploadStep::Store`] held).
    /// A record of another length, or that does not read, is set aside:
    /// the upload starts afresh and replaces it at its first store.
    pub fn start(
        source: Source,
        target: Target,
        record: Option<&[u8]>,
    ) -> Result<Upload, TransferError> {
        let saved = record
            .and_then(Record::decode)
            .filter(|r| r.progress.plaintext_size() == source.size)
            .and_then(|r| Some((FileSealer::resume(r.progress.clone()).ok()?, r)));
        let (sealer, saved) = match saved {
            Some((sealer, r)) => (sealer, Some(r)),
            None => (
                FileSealer::new(&source.name, &source.media_type, source.size)?,
                None,
            ),
        };
        let resumed = saved.is_some();
        let mut upload = Upload {
            source,
            target,
            chunks: sealer.chunk_count(),
            sealer: Some(sealer),
            resumed,
            saved: None,
            outgoing: VecDeque::new(),
            outgoing_stored: false,
            queried: 0,
            ended: false,
            query: MISSING_QUERY,
            state: State::Sealing,
            retry: Retry::default(),
        };
        if let Some(r) = saved {
            // Only chunks the progress names leave the device again.
            let named = r.progress.chunk_ids();
            upload.outgoing = r
                .kept
                .iter()
                .filter_map(|blob| {
                    let id = ChunkId::of(blob);
                    let index = named.iter().position(|c| *c == id)?;
                    Some(SealedChunk {
                        index: index as u64,
                        id,
                        blob: blob.clone(),
                    })
                })
                .collect();
            upload.outgoing_stored = true;
            upload.saved = Some(r);
            upload.state = State::SendKept;
        }
        Ok(upload)
    }

    /// Where the file goes.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The file's id (hex); a new one when the upload starts afresh.
    pub fn file_id(&self) -> String {
        self.sealer
            .as_ref()
            .map_or_else(String::new, |s| s.file_id().to_string())
    }

    /// Chunks at the server, and chunks in all.
    pub fn progress(&self) -> (u64, u64) {
        let emitted = self
            .sealer
            .as_ref()
            .map_or(self.chunks, |s| s.progress().chunks_emitted());
        (
            emitted.saturating_sub(self.outgoing.len() as u64),
            self.chunks,
        )
    }

    fn sealer(&mut self) -> Result<&mut FileSealer, TransferError> {
        self.sealer.as_mut().ok_or(TransferError::OutOfTurn)
    }

    /// Starts afresh under a new secret, so that no nonce is used twice.
    fn afresh(&mut self) -> Result<(), TransferError> {
        self.sealer = Some(FileSealer::new(
            &self.source.name,
            &self.source.media_type,
            self.source.size,
        )?);
        self.resumed = false;
        self.outgoing.clear();
        self.outgoing_stored = false;
        self.ended = false;
        Ok(())
    }

    /// What to do next.
    pub fn step(&mut self) -> Result<UploadStep, TransferError> {
        loop {
            match self.state {
                State::Asked(_) => return Err(TransferError::OutOfTurn),
                State::Done => return Err(TransferError::OutOfTurn),
                State::Backoff(ms) => {
                    // Once waited, the request goes again.
                    self.state = if self.saved.is_some() {
                        State::SendKept
                    } else {
                        State::Sealing
                    };
                    return Ok(UploadStep::Wait(ms));
                }
                State::SendKept | State::Sealing if !self.outgoing.is_empty() => {
                    if !self.outgoing_stored {
                        self.state = State::Asked(Asked::Store);
                        return Ok(UploadStep::Store(self.record()?));
                    }
                    let chunk = &self.outgoing[0];
                    let step = UploadStep::Put {
                        id: chunk.id,
                        blob: chunk.blob.clone(),
                    };
                    self.state = State::Asked(Asked::Put);
                    return Ok(step);
                }
                State::SendKept => self.state = State::AskMissing,
                State::AskMissing => {
                    let ids: Vec<ChunkId> = self
                        .saved
                        .as_ref()
                        .map(|r| r.progress.chunk_ids())
                        .unwrap_or_default()
                        .iter()
                        .skip(self.queried)
                        .take(self.query)
                        .copied()
                        .collect();
                    if ids.is_empty() {
                        // The server holds every chunk sealed before.
                        self.saved = None;
                        self.state = State::Sealing;
                        continue;
                    }
                    self.state = State::Asked(Asked::Missing);
                    return Ok(UploadStep::AskMissing(ids));
                }
                State::Sealing => {
                    let offset = self.sealer()?.bytes_pushed();
                    if offset == self.source.size && !self.ended {
                        // One byte more must not be there: a file that grew
                        // since its size was taken is not sent cut short.
                        self.state = State::Asked(Asked::Read);
                        return Ok(UploadStep::Read { offset, len: 1 });
                    }
                    if offset < self.source.size {
                        // Reads end at chunk boundaries, so a read seals at
                        // most one chunk.
                        let len = (CHUNK_SIZE as u64 - offset % CHUNK_SIZE as u64)
                            .min(self.source.size - offset);
                        self.state = State::Asked(Asked::Read);
                        return Ok(UploadStep::Read {
                            offset,
                            len: len as usize,
                        });
                    }
                    if let Some(chunk) = self.sealer()?.next_trailing_chunk()? {
                        self.outgoing.push_back(chunk);
                        self.outgoing_stored = false;
                        continue;
                    }
                    let sealer = self.sealer.take().ok_or(TransferError::OutOfTurn)?;
                    let (rest, manifest) = sealer.finish()?;
                    debug_assert!(rest.is_empty(), "trailing chunks are taken one by one");
                    self.state = State::Done;
                    return Ok(UploadStep::Done(manifest));
                }
            }
        }
    }

    /// The bytes of [`UploadStep::Read`] (fewer than asked is fine; none
    /// before the end means the file got shorter; any at its declared
    /// end, that it grew).
    pub fn read(&mut self, bytes: &[u8]) -> Result<(), TransferError> {
        self.answered(Asked::Read)?;
        self.state = State::Sealing;
        let at_end = self.sealer()?.bytes_pushed() == self.source.size;
        if at_end && bytes.is_empty() {
            self.ended = true;
            return Ok(());
        }
        if bytes.is_empty() || at_end {
            return Err(TransferError::SourceLength {
                expected: self.source.size,
            });
        }
        match self.sealer()?.push(bytes) {
            Ok(chunks) => {
                if !chunks.is_empty() {
                    self.outgoing.extend(chunks);
                    self.outgoing_stored = false;
                }
                Ok(())
            }
            // The file is not the one sealed before.
            Err(FileError::SourceChanged) if self.resumed => self.afresh(),
            Err(FileError::TooMuchData { .. }) => Err(TransferError::SourceLength {
                expected: self.source.size,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The record of [`UploadStep::Store`] is durable.
    pub fn stored(&mut self) -> Result<(), TransferError> {
        self.answered(Asked::Store)?;
        self.outgoing_stored = true;
        self.state = State::Sealing;
        Ok(())
    }

    /// How the [`UploadStep::Put`] went.
    pub fn sent(&mut self, result: Result<(), HttpFailure>) -> Result<(), TransferError> {
        self.answered(Asked::Put)?;
        let resuming = self.saved.is_some();
        match result {
            Ok(()) => {
                self.retry.succeeded();
                self.outgoing.pop_front();
                self.state = if resuming {
                    State::SendKept
                } else {
                    State::Sealing
                };
            }
            Err(failure) => self.state = State::Backoff(self.retry.after(failure)?),
        }
        Ok(())
    }

    /// The server's answer to [`UploadStep::AskMissing`]: the chunks it
    /// lacks. None: the upload goes on from its record; any: it starts
    /// afresh.
    pub fn missing(
        &mut self,
        result: Result<Vec<ChunkId>, HttpFailure>,
    ) -> Result<(), TransferError> {
        self.answered(Asked::Missing)?;
        match result {
            Ok(missing) if missing.is_empty() => {
                // This part is all there: the next, if any.
                self.retry.succeeded();
                self.queried += self.query;
                self.state = State::AskMissing;
            }
            Ok(_) => {
                self.retry.succeeded();
                self.saved = None;
                self.state = State::Sealing;
                self.afresh()?;
            }
            Err(failure) => self.state = State::Backoff(self.retry.after(failure)?),
        }
        Ok(())
    }

    fn answered(&mut self, expected: Asked) -> Result<(), TransferError> {
        match self.state {
            State::Asked(asked) if asked == expected => Ok(()),
            _ => Err(TransferError::OutOfTurn),
        }
    }

    fn record(&self) -> Result<Zeroizing<Vec<u8>>, TransferError> {
        let sealer = self.sealer.as_ref().ok_or(TransferError::OutOfTurn)?;
        Ok(Record {
            progress: sealer.progress(),
            target: self.target.clone(),
            kept: self.outgoing.iter().map(|c| c.blob.clone()).collect(),
        }
        .encode())
    }
}

/// What the driver does next for a [`Download`].
#[derive(Debug, PartialEq, Eq)]
pub enum DownloadStep {
    /// Fetch the blob (`GET /v1/blobs/{id}`, at most [`MAX_BLOB`] bytes)
    /// and hand it to [`Download::got`].
    Get(ChunkId),
    /// Wait this many milliseconds, then ask for the next step.
    Wait(u64),
    /// Every chunk was opened and the file is whole.
    Done,
}

/// A file being fetched and opened, chunk by chunk.
pub struct Download {
    manifest: FileManifest,
    opener: Option<FileOpener>,
    next: usize,
    asked: bool,
    wait: Option<u64>,
    retry: Retry,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("file", &self.manifest.file_id)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// Starts fetching the file `manifest` describes.
    pub fn start(manifest: FileManifest) -> Result<Download, TransferError> {
        let opener = FileOpener::new(&manifest)?;
        Ok(Download {
            manifest,
            opener: Some(opener),
            next: 0,
            asked: false,
            wait: None,
            retry: Retry::default(),
        })
    }

    /// The file's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The file's media type.
    pub fn media_type(&self) -> &str {
        &self.manifest.media_type
    }

    /// The file's length.
    pub fn size(&self) -> u64 {
        self.manifest.plaintext_size
    }

    /// Chunks opened, and chunks in all.
    pub fn progress(&self) -> (u64, u64) {
        (self.next as u64, self.manifest.chunk_ids.len() as u64)
    }

    /// What to do next.
    pub fn step(&mut self) -> Result<DownloadStep, TransferError> {
        if self.asked {
            return Err(TransferError::OutOfTurn);
        }
        if let Some(ms) = self.wait.take() {
            return Ok(DownloadStep::Wait(ms));
        }
        match self.manifest.chunk_ids.get(self.next) {
            Some(id) => {
                self.asked = true;
                Ok(DownloadStep::Get(*id))
            }
            None => {
                let opener = self.opener.take().ok_or(TransferError::OutOfTurn)?;
                opener.finish()?;
                Ok(DownloadStep::Done)
            }
        }
    }

    /// The answer to [`DownloadStep::Get`]: the chunk's plaintext to write
    /// out, in order, or `None` when the request is to be tried again.
    pub fn got(
        &mut self,
        result: Result<Vec<u8>, HttpFailure>,
    ) -> Result<Option<Vec<u8>>, TransferError> {
        if !std::mem::take(&mut self.asked) {
            return Err(TransferError::OutOfTurn);
        }
        match result {
            Ok(blob) => {
                self.retry.succeeded();
                let opener = self.opener.as_mut().ok_or(TransferError::OutOfTurn)?;
                let plain = opener.open_chunk(self.next as u64, &blob)?;
                self.next += 1;
                Ok(Some(plain))
            }
            Err(failure) => {
                self.wait = Some(self.retry.after(failure)?);
                Ok(None)
            }
        }
    }
}

/// What the driver does next for a [`PartFetch`].
#[derive(Debug, PartialEq, Eq)]
pub enum PartStep {
    /// Fetch this drop chunk (`GET /v1/spaces/{space}/drop-chunks/{id}`,
    /// at most [`crate::intake::drop::CHUNK_LEN`] bytes) and hand it to
    /// [`PartFetch::got`].
    Get(String),
    /// Wait this many milliseconds, then ask for the next step.
    Wait(u64),
    /// The part, whole: open it with
    /// [`crate::engine::Engine::open_submission_part`].
    Done(Vec<u8>),
}

/// A drop-box submission's sealed part fetched chunk by chunk (PROTOCOL
/// §11.6), with the retries of every transfer, and refused as soon as
/// its chunks come to more or, at the end, to fewer bytes than the
/// server listed.
#[derive(Debug)]
pub struct PartFetch {
    chunks: VecDeque<String>,
    size: u64,
    sealed: Vec<u8>,
    asked: bool,
    wait: Option<u64>,
    retry: Retry,
}

impl PartFetch {
    /// Starts fetching a part as the server listed it.
    pub fn start(part: &crate::api::SubmissionPart) -> PartFetch {
        PartFetch {
            chunks: part.chunks.iter().cloned().collect(),
            size: part.size,
            // What is listed is not trusted to size a buffer.
            sealed: Vec::with_capacity(part.size.min(CHUNK_SIZE as u64) as usize),
            asked: false,
            wait: None,
            retry: Retry::default(),
        }
    }

    /// What to do next.
    pub fn step(&mut self) -> Result<PartStep, TransferError> {
        if self.asked {
            return Err(TransferError::OutOfTurn);
        }
        if let Some(ms) = self.wait.take() {
            return Ok(PartStep::Wait(ms));
        }
        match self.chunks.front() {
            Some(id) => {
                self.asked = true;
                Ok(PartStep::Get(id.clone()))
            }
            None if self.sealed.len() as u64 == self.size => {
                Ok(PartStep::Done(std::mem::take(&mut self.sealed)))
            }
            None => Err(TransferError::PartLength {
                listed: self.size,
                received: self.sealed.len() as u64,
            }),
        }
    }

    /// The answer to [`PartStep::Get`].
    pub fn got(&mut self, result: Result<Vec<u8>, HttpFailure>) -> Result<(), TransferError> {
        if !std::mem::take(&mut self.asked) {
            return Err(TransferError::OutOfTurn);
        }
        match result {
            Ok(blob) => {
                self.retry.succeeded();
                let received = (self.sealed.len() + blob.len()) as u64;
                if received > self.size {
                    return Err(TransferError::PartLength {
                        listed: self.size,
                        received,
                    });
                }
                self.sealed.extend_from_slice(&blob);
                self.chunks.pop_front();
            }
            Err(failure) => self.wait = Some(self.retry.after(failure)?),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A server's blob store, with failures to answer first.
    #[derive(Default)]
    struct Server {
        blobs: HashMap<ChunkId, Vec<u8>>,
        failures: VecDeque<HttpFailure>,
    }

    /// What a driver saw while running an upload.
    #[derive(Default)]
    struct Seen {
        /// The record stored last.
        record: Option<Vec<u8>>,
        /// Every blob sent, in order.
        puts: Vec<ChunkId>,
        /// Every wait.
        waits: Vec<u64>,
    }

    fn source(bytes: &[u8]) -> Source {
        Source {
            name: "requete.pdf".into(),
            media_type: "application/pdf".into(),
            size: bytes.len() as u64,
        }
    }

    fn target() -> Target {
        Target {
            space: SpaceId([7; 16]),
            folder: "Pièces".into(),
            replaces: None,
        }
    }

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Runs `upload` over `file` as a driver would, checking at every send
    /// that the record stored last names the chunk (write-ahead). Stops,
    /// like a crash, before the send number `crash_at` if given.
    fn drive(
        upload: &mut Upload,
        file: &[u8],
        server: &mut Server,
        seen: &mut Seen,
        crash_at: Option<usize>,
    ) -> Result<Option<FileManifest>, TransferError> {
        loop {
            match upload.step()? {
                UploadStep::Read { offset, len } => {
                    let at = offset as usize;
                    upload.read(&file[at..(at + len).min(file.len())])?;
                }
                UploadStep::Store(record) => {
                    seen.record = Some(record.to_vec());
                    upload.stored()?;
                }
                UploadStep::Put { id, blob } => {
                    if crash_at == Some(seen.puts.len()) {
                        return Ok(None);
                    }
                    let record = Record::decode(seen.record.as_deref().expect("a record"))
                        .expect("the record reads");
                    assert!(
                        record.progress.chunk_ids().contains(&id),
                        "a chunk left before a record naming it was stored"
                    );
                    assert_eq!(ChunkId::of(&blob), id);
                    seen.puts.push(id);
                    let answer = match server.failures.pop_front() {
                        Some(f) => Err(f),
                        None => {
                            server.blobs.insert(id, blob);
                            Ok(())
                        }
                    };
                    upload.sent(answer)?;
                }
                UploadStep::AskMissing(ids) => {
                    let answer = match server.failures.pop_front() {
                        Some(f) => Err(f),
                        None => Ok(ids
                            .into_iter()
                            .filter(|id| !server.blobs.contains_key(id))
                            .collect()),
                    };
                    upload.missing(answer)?;
                }
                UploadStep::Wait(ms) => seen.waits.push(ms),
                UploadStep::Done(manifest) => return Ok(Some(manifest)),
            }
        }
    }

    /// Fetches and opens a file as a driver would.
    fn fetch(manifest: FileManifest, server: &mut Server) -> Result<Vec<u8>, TransferError> {
        let mut download = Download::start(manifest)?;
        let mut out = Vec::new();
        loop {
            match download.step()? {
                DownloadStep::Get(id) => {
                    let answer = match server.failures.pop_front() {
                        Some(f) => Err(f),
                        None => server
                            .blobs
                            .get(&id)
                            .cloned()
                            .ok_or(HttpFailure::status(404)),
                    };
                    if let Some(plain) = download.got(answer)? {
                        out.extend_from_slice(&plain);
                    }
                }
                DownloadStep::Wait(_) => {}
                DownloadStep::Done => return Ok(out),
            }
        }
    }

    #[test]
    fn every_chunk_is_stored_in_a_record_before_it_leaves_and_the_file_comes_back_whole() {
        let file = bytes(CHUNK_SIZE * 2 + 12_345, 1);
        let mut upload = Upload::start(source(&file), target(), None).unwrap();
        let (mut server, mut seen) = (Server::default(), Seen::default());
        let manifest = drive(&mut upload, &file, &mut server, &mut seen, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            seen.puts, manifest.chunk_ids,
            "each chunk sent once, in order"
        );
        assert_eq!(upload.progress(), (3, 3));
        assert_eq!(fetch(manifest, &mut server).unwrap(), file);
        // The record says what an interrupted list shows.
        let shown = Interrupted::read(seen.record.as_deref().unwrap()).unwrap();
        assert_eq!(
            (shown.name.as_str(), shown.size, shown.done, shown.chunks),
            ("requete.pdf", file.len() as u64, 3, 3)
        );
        assert_eq!(shown.target, target());
        // An empty file is one chunk.
        let mut empty = Upload::start(source(&[]), target(), None).unwrap();
        let manifest = drive(&mut empty, &[], &mut server, &mut Seen::default(), None)
            .unwrap()
            .unwrap();
        assert_eq!(manifest.chunk_ids.len(), 1);
        assert_eq!(fetch(manifest, &mut server).unwrap(), b"");
    }

    #[test]
    fn an_interrupted_upload_resumes_from_its_record_without_sealing_again() {
        let file = bytes(CHUNK_SIZE * 3 + 7, 2);
        let mut server = Server::default();
        let mut first = Seen::default();
        let mut upload = Upload::start(source(&file), target(), None).unwrap();
        // The device stops after the second chunk was stored, before it left.
        assert!(
            drive(&mut upload, &file, &mut server, &mut first, Some(1))
                .unwrap()
                .is_none()
        );
        let file_id = upload.file_id();
        let record = first.record.clone().unwrap();
        let mut resumed = Upload::start(source(&file), target(), Some(&record)).unwrap();
        let mut second = Seen {
            record: Some(record),
            ..Seen::default()
        };
        let manifest = drive(&mut resumed, &file, &mut server, &mut second, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            manifest.file_id.to_string(),
            file_id,
            "the same file, not a new one"
        );
        // The kept chunk goes again first; nothing before it is sent twice.
        assert_eq!(second.puts, manifest.chunk_ids[1..].to_vec());
        assert_eq!(fetch(manifest, &mut server).unwrap(), file);
    }

    #[test]
    fn a_kept_chunk_its_progress_does_not_name_never_leaves() {
        let file = bytes(CHUNK_SIZE * 2, 3);
        let mut server = Server::default();
        let mut seen = Seen::default();
        let mut upload = Upload::start(source(&file), target(), None).unwrap();
        drive(&mut upload, &file, &mut server, &mut seen, Some(1)).unwrap();
        let mut record = Record::decode(seen.record.as_deref().unwrap()).unwrap();
        // A chunk sealed from a changed file, kept beside a progress that
        // does not cover it.
        let stray = vec![9u8; 1000];
        record.kept.push(stray.clone());
        let record = record.encode();
        let mut resumed = Upload::start(source(&file), target(), Some(&record)).unwrap();
        let mut again = Seen {
            record: Some(record.to_vec()),
            ..Seen::default()
        };
        drive(&mut resumed, &file, &mut server, &mut again, None)
            .unwrap()
            .unwrap();
        assert!(!again.puts.contains(&ChunkId::of(&stray)));
        assert!(!server.blobs.contains_key(&ChunkId::of(&stray)));
    }

    #[test]
    fn a_gap_at_the_server_a_changed_file_or_another_size_starts_afresh_under_a_new_secret() {
        let file = bytes(CHUNK_SIZE * 3, 4);
        let interrupted = |server: &mut Server| {
            let mut seen = Seen::default();
            let mut upload = Upload::start(source(&file), target(), None).unwrap();
            drive(&mut upload, &file, server, &mut seen, Some(2)).unwrap();
            (upload.file_id(), seen.record.unwrap())
        };
        // The server lost a chunk it had taken.
        let mut server = Server::default();
        let (old, record) = interrupted(&mut server);
        server.blobs.clear();
        let mut upload = Upload::start(source(&file), target(), Some(&record)).unwrap();
        let mut seen = Seen {
            record: Some(record.clone()),
            ..Seen::default()
        };
        let m = drive(&mut upload, &file, &mut server, &mut seen, None)
            .unwrap()
            .unwrap();
        assert_ne!(m.file_id.to_string(), old);
        assert_eq!(fetch(m, &mut server).unwrap(), file);
        // The file changed before the resume point.
        let mut server = Server::default();
        let (old, record) = interrupted(&mut server);
        let mut changed = file.clone();
        changed[10] ^= 1;
        let mut upload = Upload::start(source(&changed), target(), Some(&record)).unwrap();
        let mut seen = Seen {
            record: Some(record.clone()),
            ..Seen::default()
        };
        let m = drive(&mut upload, &changed, &mut server, &mut seen, None)
            .unwrap()
            .unwrap();
        assert_ne!(m.file_id.to_string(), old);
        assert_eq!(fetch(m, &mut server).unwrap(), changed);
        // A file of another size never resumes.
        let longer = bytes(CHUNK_SIZE * 3 + 1, 4);
        let upload = Upload::start(source(&longer), target(), Some(&record)).unwrap();
        assert_ne!(upload.file_id(), old);
        // Nor does a record that does not read.
        let upload = Upload::start(source(&file), target(), Some(b"\x03garbage")).unwrap();
        assert_ne!(upload.file_id(), old);
    }

    #[test]
    fn failures_the_network_or_a_busy_server_cause_are_retried_and_refusals_are_final() {
        let file = bytes(CHUNK_SIZE + 1, 5);
        let mut server = Server::default();
        server.failures.extend([
            HttpFailure::NETWORK,
            HttpFailure::status(503),
            HttpFailure {
                status: Some(429),
                retry_after: Some(5),
            },
        ]);
        let mut seen = Seen::default();
        let mut upload = Upload::start(source(&file), target(), None).unwrap();
        let m = drive(&mut upload, &file, &mut server, &mut seen, None)
            .unwrap()
            .unwrap();
        assert_eq!(seen.waits, vec![500, 1000, 5000]);
        assert_eq!(
            seen.puts.len(),
            m.chunk_ids.len() + 3,
            "the failed sends went again"
        );
        assert_eq!(fetch(m, &mut server).unwrap(), file);

        // A refusal ends the upload.
        let mut server = Server::default();
        server.failures.push_back(HttpFailure::status(413));
        let mut upload = Upload::start(source(&file), target(), None).unwrap();
        assert_eq!(
            drive(&mut upload, &file, &mut server, &mut Seen::default(), None),
            Err(TransferError::Refused(413))
        );
        // So does a server that stays away, after ATTEMPTS tries and waits
        // that stop growing at MAX_BACKOFF_MS.
        let mut server = Server::default();
        server
            .failures
            .extend(std::iter::repeat_n(HttpFailure::NETWORK, 100));
        let mut seen = Seen::default();
        let mut upload = Upload::start(source(&file), target(), None).unwrap();
        assert_eq!(
            drive(&mut upload, &file, &mut server, &mut seen, None),
            Err(TransferError::GaveUp)
        );
        assert_eq!(seen.puts.len(), ATTEMPTS as usize);
        assert_eq!(seen.waits.iter().max(), Some(&MAX_BACKOFF_MS));
    }

    #[test]
    fn a_download_retries_and_refuses_a_chunk_that_is_not_the_files() {
        let file = bytes(CHUNK_SIZE * 2 + 5, 6);
        let mut server = Server::default();
        let mut upload = Upload::start(source(&file), target(), None).unwrap();
        let m = drive(&mut upload, &file, &mut server, &mut Seen::default(), None)
            .unwrap()
            .unwrap();
        server
            .failures
            .extend([HttpFailure::NETWORK, HttpFailure::status(502)]);
        assert_eq!(fetch(m.clone(), &mut server).unwrap(), file);
        // A blob missing at the server is final.
        let mut gone = Server {
            blobs: server.blobs.clone(),
            ..Server::default()
        };
        gone.blobs.remove(&m.chunk_ids[1]);
        assert_eq!(
            fetch(m.clone(), &mut gone),
            Err(TransferError::Refused(404))
        );
        // The server answering another chunk's bytes is refused.
        let mut swapped = Server {
            blobs: server.blobs.clone(),
            ..Server::default()
        };
        let other = swapped.blobs[&m.chunk_ids[2]].clone();
        swapped.blobs.insert(m.chunk_ids[1], other);
        assert!(matches!(
            fetch(m, &mut swapped),
            Err(TransferError::File(_))
        ));
    }

    #[test]
    fn a_source_shorter_than_said_or_answers_out_of_turn_stop_the_upload() {
        let file = bytes(CHUNK_SIZE + 10, 7);
        let mut upload = Upload::start(source(&file), target(), None).unwrap();
        assert!(matches!(
            upload.step(),
            Ok(UploadStep::Read { offset: 0, .. })
        ));
        assert_eq!(
            upload.read(&[]),
            Err(TransferError::SourceLength {
                expected: file.len() as u64
            })
        );
        // A file that grew since its size was taken is not sent cut short.
        let short = source(&file[..CHUNK_SIZE]);
        let mut upload = Upload::start(short, target(), None).unwrap();
        assert_eq!(
            drive(
                &mut upload,
                &file,
                &mut Server::default(),
                &mut Seen::default(),
                None
            ),
            Err(TransferError::SourceLength {
                expected: CHUNK_SIZE as u64
            })
        );
        let mut upload = Upload::start(source(&file), target(), None).unwrap();
        assert_eq!(upload.stored(), Err(TransferError::OutOfTurn));
        assert_eq!(upload.sent(Ok(())), Err(TransferError::OutOfTurn));
        assert!(matches!(upload.step(), Ok(UploadStep::Read { .. })));
        assert_eq!(upload.step(), Err(TransferError::OutOfTurn));
    }

    #[test]
    fn a_drop_part_is_fetched_with_retries_and_refused_when_not_as_long_as_listed() {
        let part = |size: u64| crate::api::SubmissionPart {
            size,
            chunks: vec!["a".into(), "b".into()],
        };
        let run = |size: u64, failures: Vec<HttpFailure>| {
            let mut failures = VecDeque::from(failures);
            let mut fetch = PartFetch::start(&part(size));
            let mut waits = Vec::new();
            loop {
                match fetch.step()? {
                    PartStep::Get(id) => {
                        let answer = match failures.pop_front() {
                            Some(f) => Err(f),
                            None => Ok(id.repeat(3).into_bytes()),
                        };
                        fetch.got(answer)?;
                    }
                    PartStep::Wait(ms) => waits.push(ms),
                    PartStep::Done(bytes) => return Ok((bytes, waits)),
                }
            }
        };
        assert_eq!(
            run(6, vec![HttpFailure::NETWORK]),
            Ok((b"aaabbb".to_vec(), vec![500]))
        );
        assert_eq!(
            run(5, vec![]),
            Err(TransferError::PartLength {
                listed: 5,
                received: 6
            })
        );
        assert_eq!(
            run(7, vec![]),
            Err(TransferError::PartLength {
                listed: 7,
                received: 6
            })
        );
        assert_eq!(
            run(6, vec![HttpFailure::status(404)]),
            Err(TransferError::Refused(404))
        );
    }

    /// A long progress is asked about in parts of at most the server's
    /// limit; a gap in any part starts afresh.
    #[test]
    fn a_resume_asks_about_its_chunks_in_parts_the_server_takes() {
        let file = bytes(CHUNK_SIZE * 5, 8);
        let interrupted = |server: &mut Server| {
            let mut seen = Seen::default();
            let mut upload = Upload::start(source(&file), target(), None).unwrap();
            drive(&mut upload, &file, server, &mut seen, Some(4)).unwrap();
            (upload.file_id(), seen.record.unwrap())
        };
        let mut server = Server::default();
        let (id, record) = interrupted(&mut server);
        let mut upload = Upload::start(source(&file), target(), Some(&record)).unwrap();
        upload.query = 2;
        // The kept chunk first, then the five ids in parts of two.
        assert!(matches!(upload.step(), Ok(UploadStep::Put { .. })));
        upload.sent(Ok(())).unwrap();
        let mut parts = Vec::new();
        loop {
            match upload.step().unwrap() {
                UploadStep::AskMissing(ids) => {
                    parts.push(ids.len());
                    upload.missing(Ok(Vec::new())).unwrap();
                }
                UploadStep::Read { .. } => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(parts, vec![2, 2, 1]);
        assert_eq!(upload.file_id(), id, "resumed");
        // A gap in the second part: afresh.
        let mut server = Server::default();
        let (id, record) = interrupted(&mut server);
        let mut upload = Upload::start(source(&file), target(), Some(&record)).unwrap();
        upload.query = 2;
        upload.step().unwrap();
        upload.sent(Ok(())).unwrap();
        let UploadStep::AskMissing(_) = upload.step().unwrap() else {
            panic!("asked")
        };
        upload.missing(Ok(Vec::new())).unwrap();
        let UploadStep::AskMissing(second) = upload.step().unwrap() else {
            panic!("asked again")
        };
        upload.missing(Ok(vec![second[0]])).unwrap();
        assert_ne!(upload.file_id(), id);
    }
}
