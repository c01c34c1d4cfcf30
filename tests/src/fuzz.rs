//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs` call them) and
//! of their regression test (every file under `fuzz/regressions/<target>/`
//! goes through the same function in `cargo test`).
//!
//! Each takes arbitrary bytes where the server or a client takes bytes
//! from the network, a disk or another member, and must neither panic nor
//! accept what it should refuse. Fixtures (a space, a device, an index)
//! are built once per process.

use std::sync::{Mutex, OnceLock};

use amicus_core::document::Replica;
use amicus_core::envelope::{Header, Kind};
use amicus_core::identity::{Device, UserIdentity};
use amicus_core::space::{HistoryPolicy, Space};
use amicus_core::view::{SavedView, SpaceView};
use amicus_core::wire::{ClientFrame, LogEntry, ServerFrame, inspect_mls, is_mls_welcome};
use amicus_core::{MlsProvider, StreamId, UserId};
use amicus_search::{Lang, PublicDocument, SearchIndex, SearchQuery};

/// A fuzz target's body.
pub type Body = fn(&[u8]);

/// Every target: its name (the file under `fuzz/fuzz_targets/`) and body.
pub const TARGETS: &[(&str, Body)] = &[
    ("frames", frames),
    ("envelopes", envelopes),
    ("mls", mls),
    ("documents", documents),
    ("search_query", search_query),
];

/// Wire frames as the server and the clients decode them: anything either
/// decodes re-encodes to a frame that decodes to the same value.
pub fn frames(data: &[u8]) {
    if let Ok(f) = ClientFrame::decode(data) {
        assert_eq!(ClientFrame::decode(&f.encode()).as_ref(), Ok(&f));
    }
    if let Ok(f) = ServerFrame::decode(data) {
        assert_eq!(ServerFrame::decode(&f.encode()).as_ref(), Ok(&f));
    }
    let _ = inspect_mls(data);
    let _ = is_mls_welcome(data);
}

struct Member {
    provider: MlsProvider,
    device: Device,
    view: SpaceView,
    /// The view as saved, to start each log entry afresh.
    saved: SavedView,
    /// A valid envelope of `stream`, to alter.
    sealed: Vec<u8>,
    stream: StreamId,
}

fn member() -> &'static Mutex<Member> {
    static MEMBER: OnceLock<Mutex<Member>> = OnceLock::new();
    MEMBER.get_or_init(|| {
        let identity = UserIdentity::generate(UserId::new("fuzz").expect("valid name"));
        let device = identity.new_device();
        let provider = MlsProvider::new();
        let space = Space::create(&provider, &device, identity.public(), HistoryPolicy::Full)
            .expect("a space");
        let stream = StreamId::random();
        let mut replica = Replica::new(stream, &device);
        amicus_core::document::filing::init(replica.doc(), "Requête").expect("a filing");
        let sealed = replica
            .flush(space.keyring(), &device, [0; 32])
            .expect("sealed")
            .expect("changes to seal");
        let mut view = SpaceView::new(space);
        let saved = view.save();
        Mutex::new(Member {
            provider,
            device,
            view,
            saved,
            sealed,
            stream,
        })
    })
}

/// Envelopes as a member opens them. Mode byte 0: the bytes as an
/// envelope; otherwise a valid envelope with one byte changed, which must
/// be refused.
pub fn envelopes(data: &[u8]) {
    let m = member().lock().unwrap_or_else(|e| e.into_inner());
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == 0 {
        let _ = Header::parse(rest);
        let mut replica = Replica::new(m.stream, &m.device);
        let _ = replica.receive(m.view.space().keyring(), rest, Some(0));
        let _ = replica.receive(m.view.space().keyring(), rest, None);
        return;
    }
    let [a, b, x, ..] = rest else { return };
    let mut altered = m.sealed.clone();
    let at = usize::from(u16::from_le_bytes([*a, *b])) % altered.len();
    if *x == 0 {
        return;
    }
    altered[at] ^= x;
    let mut replica = Replica::new(m.stream, &m.device);
    assert!(
        replica
            .receive(m.view.space().keyring(), &altered, Some(0))
            .is_err(),
        "an envelope altered at byte {at} was accepted"
    );
}

/// MLS messages as a member ingests them: through `Space::process`,
/// `Space::join`, and a log entry through `SpaceView::apply` (mode byte).
pub fn mls(data: &[u8]) {
    let mut m = member().lock().unwrap_or_else(|e| e.into_inner());
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let m = &mut *m;
            let epoch = m.view.space().epoch();
            use amicus_core::space::Content;
            for expected in [Content::Application, Content::Proposal, Content::Commit] {
                let _ = m.view.space_mut().process(&m.provider, rest, expected);
            }
            assert_eq!(m.view.space().epoch(), epoch, "garbage moved the epoch");
        }
        1 => {
            let identity = m.view.space().policy().expect("policy").members;
            let key = identity.values().next().expect("a member").identity_key;
            let _ = Space::join(&m.provider, &m.device, &key, rest);
        }
        _ => {
            let Ok(entry) = postcard::from_bytes::<LogEntry>(rest) else {
                return;
            };
            let Ok(mut view) = SpaceView::restore(&m.provider, &m.device, &m.saved) else {
                return;
            };
            let _ = view.apply(&m.device, &m.provider, entry);
        }
    }
}

/// Decrypted document bodies (Automerge changes and snapshots) as a
/// replica loads them: the bytes are sealed in a valid envelope, so the
/// decoding behind the encryption is what is exercised.
pub fn documents(data: &[u8]) {
    let m = member().lock().unwrap_or_else(|e| e.into_inner());
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let kind = if mode & 1 == 0 {
        Kind::Change
    } else {
        Kind::Snapshot
    };
    let Ok(sealed) = m
        .view
        .space()
        .keyring()
        .seal(&m.device, kind, m.stream, 1, [0; 32], body)
    else {
        return;
    };
    let mut replica = Replica::new(m.stream, &m.device);
    let _ = replica.receive(m.view.space().keyring(), &sealed, Some(0));
    let _ = amicus_core::document::filing::body(replica.doc());
}

fn index() -> &'static SearchIndex {
    static INDEX: OnceLock<SearchIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let index = SearchIndex::in_memory().expect("an index");
        for (id, lang, text) in [
            (
                "fr",
                Lang::Fr,
                "Les détenus de la prison centrale vivent dans des conditions inhumaines.",
            ),
            (
                "ar",
                Lang::Ar,
                "لكل فرد الحق في الحياة والحرية وفي الأمان على شخصه.",
            ),
            (
                "sw",
                Lang::Sw,
                "Kila mtu ana haki ya kuishi, kuwa huru na kuwa salama.",
            ),
        ] {
            index
                .upsert(&PublicDocument {
                    space: "f".repeat(32),
                    id: id.into(),
                    title: id.into(),
                    body: text.into(),
                    language: Some(lang),
                    kind: amicus_search::DocKind::Document,
                    year: Some(2020),
                })
                .expect("indexed");
        }
        index.commit().expect("committed");
        index
    })
}

/// Search queries as the server parses and runs them (first byte: which
/// languages to filter on; the rest: the text, as the server would receive
/// it after UTF-8 decoding).
pub fn search_query(data: &[u8]) {
    let Some((&mask, text)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(text).into_owned();
    let languages = Lang::ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << (i % 8)) != 0 && i / 8 == usize::from(mask >> 7))
        .map(|(_, l)| *l)
        .collect();
    let query = SearchQuery {
        text: text.clone(),
        languages,
        space: None,
        limit: 10,
        offset: usize::from(mask % 4),
    };
    if let Ok(results) = index().search(&query) {
        assert!(results.hits.len() <= 10);
        for hit in results.hits {
            assert!(!hit.snippet.contains("<script"), "an unescaped snippet");
        }
    }
    let _ = amicus_search::detect(&text);
}
