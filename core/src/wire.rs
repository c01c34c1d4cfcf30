//! Wire frames between client and server, and the hash-chained space log.
//!
//! Every frame is `version u8 = 1 || postcard(frame)`, at most
//! [`MAX_FRAME_LEN`] bytes. Decoding refuses longer input, another version
//! and trailing bytes. These types are the format: they are separate from the
//! domain types and change only with a new version byte.
//!
//! Each space has one ordered log. Entry `n` carries the hash of entry
//! `n - 1` (`prev`); the first carries the genesis hash of the space. The
//! chain lets every member detect a rewritten, reordered, truncated or forked
//! log: the head it saw is bound into its commits and envelopes.

use serde::{Deserialize, Serialize};

use crate::{DeviceId, SpaceId, envelope};

/// Version byte of every frame.
pub const WIRE_VERSION: u8 = 1;
/// The largest frame: an envelope of the largest size plus framing.
pub const MAX_FRAME_LEN: usize = envelope::MAX_ENVELOPE_LEN + 4096;

/// Why a frame or a log was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The frame is longer than [`MAX_FRAME_LEN`].
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_LEN}")]
    TooLarge(usize),
    /// The frame's version byte is not one this code speaks; upgrade.
    #[error("unknown frame version {0}")]
    UnknownVersion(u8),
    /// The frame is empty, truncated, has trailing bytes or does not decode.
    #[error("malformed frame")]
    Malformed,
    /// A log entry's sequence number or previous hash does not follow its
    /// predecessor: the log was rewritten, reordered, truncated or forked.
    #[error("log chain broken at sequence {0}")]
    BrokenChain(u64),
}

/// What a client appends to a space log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendItem {
    /// An MLS commit for `epoch` (the epoch it moves from), with the Welcome
    /// for added devices and its clear authenticated data (for routing).
    Commit {
        /// The epoch the commit builds on.
        epoch: u64,
        /// The MLS PrivateMessage.
        commit: Vec<u8>,
        /// The Welcome, if devices are added.
        welcome: Option<Vec<u8>>,
        /// The commit's authenticated data (`CommitAad` bytes).
        aad: Vec<u8>,
    },
    /// An envelope (the server reads only its clear header).
    Envelope(Vec<u8>),
    /// An MLS proposal (e.g. a member leaving).
    Proposal(Vec<u8>),
    /// An MLS application message: fanned out live, never stored.
    Application(Vec<u8>),
}

/// A frame from a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// Deliver every entry of `space` from `from_seq` on, then live entries.
    Subscribe {
        /// Chosen by the client; a refusal carries it.
        request: u32,
        /// The space.
        space: SpaceId,
        /// The first sequence number wanted.
        from_seq: u64,
    },
    /// Append to a space log; answered by `Accepted` or `Refused` with the
    /// same request id.
    Append {
        /// Chosen by the client to match the answer.
        request: u32,
        /// The space.
        space: SpaceId,
        /// What to append.
        item: AppendItem,
    },
    /// Keep-alive.
    Ping,
    /// This device refused the commit at `commit` (its group found it
    /// invalid): a report toward reopening its epoch (PROTOCOL §6.3).
    /// Answered by `Reported` or `Refused` with the same request id.
    Report {
        /// Chosen by the client to match the answer.
        request: u32,
        /// The space.
        space: SpaceId,
        /// The sequence number of the refused commit.
        commit: u64,
    },
}

/// Why the server refused an append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalCode {
    /// Another commit already took this epoch: process it, then re-apply.
    CommitConflict {
        /// The space's current epoch.
        current_epoch: u64,
    },
    /// The envelope's epoch is older than the space's current epoch: reseal
    /// under the current epoch's key.
    StaleEpoch {
        /// The space's current epoch.
        current_epoch: u64,
    },
    /// The item exceeds a size limit.
    TooLarge,
    /// Too many requests; retry after the given delay.
    RateLimited {
        /// Milliseconds to wait.
        retry_after_ms: u32,
    },
    /// The device is not allowed to write to this space.
    Forbidden,
    /// The item is malformed.
    Malformed,
    /// The server could not store the item (disk full, I/O failure);
    /// nothing was stored: retry later.
    Unavailable,
}

/// A frame from the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// The append is durable at `seq`, with this chained hash.
    Accepted {
        /// The client's request id.
        request: u32,
        /// The entry's sequence number.
        seq: u64,
        /// The entry's chained hash.
        hash: [u8; 32],
    },
    /// The append was refused; nothing was stored.
    Refused {
        /// The client's request id.
        request: u32,
        /// Why.
        code: RefusalCode,
        /// A sentence for people.
        message: String,
    },
    /// A log entry (catch-up or live).
    Entry {
        /// The space.
        space: SpaceId,
        /// The entry.
        entry: LogEntry,
    },
    /// A live application message (not logged).
    Application {
        /// The space.
        space: SpaceId,
        /// The MLS application message.
        message: Vec<u8>,
    },
    /// A Welcome for this device.
    Welcome {
        /// The space joined.
        space: SpaceId,
        /// The MLS Welcome.
        welcome: Vec<u8>,
    },
    /// Answer to `Ping`.
    Pong,
    /// Every stored entry of `space` up to `next_seq` has been sent after a
    /// `Subscribe`; what follows is live.
    Synced {
        /// The space.
        space: SpaceId,
        /// The sequence number the next entry will have.
        next_seq: u64,
        /// The chained hash of the last entry (the genesis hash if none).
        head: [u8; 32],
        /// The space's current epoch.
        epoch: u64,
    },
    /// A report was counted (or the commit was refused already).
    Reported {
        /// The client's request id.
        request: u32,
        /// True once the commit's epoch is reopened (a `Reopen` entry is
        /// in the log).
        reopened: bool,
        /// Users who reported the commit so far.
        reports: u32,
        /// Users whose reports reopen it.
        needed: u32,
    },
    /// Someone asked to join `space` through the directory (sent to the
    /// devices of its roster that are connected; PROTOCOL §15.3). Carries
    /// no name: the managers' clients read the requests themselves.
    Asked {
        /// The space.
        space: SpaceId,
    },
}

/// What the clear MLS framing of a message says (no key needed): the server
/// checks it against what a client claims in an [`AppendItem`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlsFraming {
    /// The group (space) id.
    pub group: Vec<u8>,
    /// The epoch the message belongs to.
    pub epoch: u64,
    /// What the message carries.
    pub content: MlsContent,
    /// The authenticated data, in clear.
    pub aad: Vec<u8>,
}

/// The content type of an MLS PrivateMessage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MlsContent {
    /// A commit.
    Commit,
    /// A proposal.
    Proposal,
    /// An application message.
    Application,
}

/// Reads the clear framing of an MLS PrivateMessage. Anything else (public
/// messages, Welcomes, GroupInfo, KeyPackages, garbage) is `Malformed`.
pub fn inspect_mls(bytes: &[u8]) -> Result<MlsFraming, WireError> {
    use openmls::prelude::tls_codec::DeserializeBytes;
    use openmls::prelude::{ContentType, MlsMessageIn, ProtocolMessage};
    let (msg, rest) =
        MlsMessageIn::tls_deserialize_bytes(bytes).map_err(|_| WireError::Malformed)?;
    if !rest.is_empty() {
        return Err(WireError::Malformed);
    }
    let Ok(message) = msg.try_into_protocol_message() else {
        return Err(WireError::Malformed);
    };
    let ProtocolMessage::PrivateMessage(private) = &message else {
        return Err(WireError::Malformed);
    };
    let content = match private.content_type() {
        ContentType::Commit => MlsContent::Commit,
        ContentType::Proposal => MlsContent::Proposal,
        ContentType::Application => MlsContent::Application,
    };
    Ok(MlsFraming {
        group: message.group_id().as_slice().to_vec(),
        epoch: message.epoch().as_u64(),
        content,
        aad: private.aad().to_vec(),
    })
}

/// True if `bytes` is exactly one MLS Welcome message.
pub fn is_mls_welcome(bytes: &[u8]) -> bool {
    use openmls::prelude::tls_codec::DeserializeBytes;
    use openmls::prelude::{MlsMessageBodyIn, MlsMessageIn};
    match MlsMessageIn::tls_deserialize_bytes(bytes) {
        Ok((msg, [])) => matches!(msg.extract(), MlsMessageBodyIn::Welcome(_)),
        _ => false,
    }
}

/// What a log entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum EntryKind {
    /// An MLS commit.
    Commit = 1,
    /// An envelope.
    Envelope = 2,
    /// An MLS proposal.
    Proposal = 3,
    /// The server reopened the epoch of the last commit, which the members
    /// refused (PROTOCOL §6.3): the payload is [`Reopen::encode`], the
    /// entry's epoch the reopened one.
    Reopen = 4,
}

/// The payload of a [`EntryKind::Reopen`] entry: which commit the members
/// refused, and the device that appended it (as the server knows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reopen {
    /// The sequence number of the refused commit.
    pub commit: u64,
    /// The device that appended it.
    pub committer: DeviceId,
}

impl Reopen {
    /// `commit u64 BE || committer [16]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.commit.to_be_bytes().to_vec();
        out.extend_from_slice(&self.committer.0);
        out
    }

    /// Reads [`Self::encode`]'s form; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (commit, committer) = bytes.split_first_chunk::<8>()?;
        Some(Self {
            commit: u64::from_be_bytes(*commit),
            committer: DeviceId(committer.try_into().ok()?),
        })
    }
}

/// One entry of a space log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// The chained hash of the previous entry (genesis hash for seq 0).
    pub prev: [u8; 32],
    /// What the payload is.
    pub kind: EntryKind,
    /// The epoch in force when it was appended (for a commit: the epoch it
    /// moves from).
    pub epoch: u64,
    /// The commit, envelope or proposal bytes.
    pub payload: Vec<u8>,
}

impl LogEntry {
    /// The chained hash: blake3 in derive-key mode, context
    /// `"amicus log entry v1"`, over
    /// `seq u64 BE || prev || kind u8 || epoch u64 BE || len u64 BE || payload`.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("amicus log entry v1");
        h.update(&self.seq.to_be_bytes());
        h.update(&self.prev);
        h.update(&[self.kind as u8]);
        h.update(&self.epoch.to_be_bytes());
        h.update(&(self.payload.len() as u64).to_be_bytes());
        h.update(&self.payload);
        *h.finalize().as_bytes()
    }
}

/// The `prev` of a space's first entry.
pub fn genesis(space: SpaceId) -> [u8; 32] {
    blake3::derive_key("amicus log genesis v1", &space.0)
}

/// Checks that `entries` continue a chain whose last verified entry had
/// sequence `after_seq - 1` and hash `after_hash` (use `0` and
/// [`genesis`] for a whole log). Returns the new head (next seq, hash).
pub fn verify_chain(
    mut next_seq: u64,
    mut head: [u8; 32],
    entries: &[LogEntry],
) -> Result<(u64, [u8; 32]), WireError> {
    for e in entries {
        if e.seq != next_seq || e.prev != head {
            return Err(WireError::BrokenChain(e.seq));
        }
        head = e.hash();
        next_seq += 1;
    }
    Ok((next_seq, head))
}

fn encode<T: Serialize>(frame: &T) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    out.extend_from_slice(&postcard::to_allocvec(frame).expect("frames always encode"));
    out
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_FRAME_LEN {
        return Err(WireError::TooLarge(bytes.len()));
    }
    match bytes.split_first() {
        Some((&WIRE_VERSION, rest)) => match postcard::take_from_bytes(rest) {
            Ok((frame, [])) => Ok(frame),
            _ => Err(WireError::Malformed),
        },
        Some((v, _)) => Err(WireError::UnknownVersion(*v)),
        None => Err(WireError::Malformed),
    }
}

impl ClientFrame {
    /// Encodes the frame.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a frame, with the limits above.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes)
    }
}

impl ServerFrame {
    /// Encodes the frame.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a frame, with the limits above.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn log(space: SpaceId, n: usize) -> Vec<LogEntry> {
        let mut prev = genesis(space);
        (0..n)
            .map(|i| {
                let e = LogEntry {
                    seq: i as u64,
                    prev,
                    kind: EntryKind::Envelope,
                    epoch: 1,
                    payload: vec![i as u8; 10],
                };
                prev = e.hash();
                e
            })
            .collect()
    }

    #[test]
    fn frames_round_trip() {
        let f = ClientFrame::Append {
            request: 7,
            space: SpaceId::random(),
            item: AppendItem::Commit {
                epoch: 3,
                commit: vec![1, 2],
                welcome: None,
                aad: vec![1],
            },
        };
        assert_eq!(ClientFrame::decode(&f.encode()), Ok(f));
        let s = ServerFrame::Refused {
            request: 7,
            code: RefusalCode::CommitConflict { current_epoch: 4 },
            message: "x".into(),
        };
        assert_eq!(ServerFrame::decode(&s.encode()), Ok(s));
    }

    #[test]
    fn bad_frames_are_refused() {
        let good = ClientFrame::Ping.encode();
        assert_eq!(ClientFrame::decode(&[]), Err(WireError::Malformed));
        assert_eq!(
            ClientFrame::decode(&[2, 0]),
            Err(WireError::UnknownVersion(2))
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(ClientFrame::decode(&trailing), Err(WireError::Malformed));
        assert_eq!(
            ClientFrame::decode(&vec![1; MAX_FRAME_LEN + 1]),
            Err(WireError::TooLarge(MAX_FRAME_LEN + 1))
        );
        // A length prefix claiming far more than the input must not allocate it.
        assert!(
            ClientFrame::decode(&[
                1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff,
                0x0f
            ])
            .is_err()
        );
    }

    #[test]
    fn the_chain_detects_rewrites_reorders_and_truncation_in_the_middle() {
        let space = SpaceId::random();
        let entries = log(space, 6);
        assert_eq!(
            verify_chain(0, genesis(space), &entries).map(|(n, _)| n),
            Ok(6)
        );
        let mut swapped = entries.clone();
        swapped.swap(2, 3);
        assert_eq!(
            verify_chain(0, genesis(space), &swapped),
            Err(WireError::BrokenChain(3))
        );
        let mut rewritten = entries.clone();
        rewritten[1].payload[0] ^= 1;
        assert_eq!(
            verify_chain(0, genesis(space), &rewritten),
            Err(WireError::BrokenChain(2))
        );
        let mut dropped = entries.clone();
        dropped.remove(2);
        assert_eq!(
            verify_chain(0, genesis(space), &dropped),
            Err(WireError::BrokenChain(3))
        );
        assert!(verify_chain(0, genesis(SpaceId::random()), &entries).is_err());
    }

    #[test]
    fn the_clear_mls_framing_is_read_without_keys() {
        use crate::identity::UserIdentity;
        use crate::space::{HistoryPolicy, Space};
        use crate::{MlsProvider, UserId};
        let provider = MlsProvider::new();
        let alice = UserIdentity::generate(UserId::new("alice").unwrap());
        let device = alice.new_device();
        let mut space =
            Space::create(&provider, &device, alice.public(), HistoryPolicy::Full).unwrap();
        let message = space.create_message(&provider, &device, b"cursor").unwrap();
        let framing = inspect_mls(&message).unwrap();
        assert_eq!(framing.group, space.id().0.to_vec());
        assert_eq!(
            (framing.epoch, framing.content),
            (0, MlsContent::Application)
        );
        let pending = space.self_update(&provider, &device, (3, [7; 32])).unwrap();
        let framing = inspect_mls(&pending.commit).unwrap();
        assert_eq!((framing.epoch, framing.content), (0, MlsContent::Commit));
        assert_eq!(framing.aad, pending.aad.to_bytes());
        assert!(!is_mls_welcome(&pending.commit));
        let kp = device.key_packages(&provider, 1).unwrap().remove(0);
        assert_eq!(inspect_mls(&kp), Err(WireError::Malformed));
        assert_eq!(inspect_mls(&[0, 1, 2]), Err(WireError::Malformed));
        let mut trailing = pending.commit.clone();
        trailing.push(0);
        assert_eq!(inspect_mls(&trailing), Err(WireError::Malformed));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ClientFrame::decode(&bytes);
            let _ = ServerFrame::decode(&bytes);
            let _ = inspect_mls(&bytes);
            let _ = is_mls_welcome(&bytes);
        }
    }
}
