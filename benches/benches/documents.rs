//! Documents: real editing traces replayed through the whole encrypted path
//! against plain Automerge applying the same edits, in the same run.
//!
//! Traces (`fixtures/editing-traces/`, CC BY 4.0, see its
//! `SOURCE.md`; `AMICUS_BENCH_TRACES` names another directory):
//!
//! - `automerge-paper` (259,778 single-character edits) and `seph-blog1`,
//!   typed by one writer and followed by one reader;
//! - `friendsforever` and `clownschool`, concurrent traces: each agent's
//!   edits are made on its own replica, which has received exactly the
//!   other agents' edits the trace names as its causal past; everything is
//!   exchanged at the end and the replicas must converge.
//!
//! Encrypted path: each transaction of the trace is one Automerge change;
//! `Replica::flush` (the changes since the last flush, postcard body, padded, sealed with
//! ChaCha20-Poly1305 under the epoch's content key and signed with the
//! device's Ed25519 key) → `ClientFrame::Append` encoded and decoded → the
//! relay's header check and hash-chained `LogEntry` → `ServerFrame::Entry`
//! encoded and decoded → `Replica::receive` (signature, roster and replay
//! checks, decryption, actor binding, apply). Plain path: the same splice
//! on an `AutoCommit`, `commit`, the change's bytes, `apply_changes` on
//! the reader. The keys come from a real two-member MLS space. Criterion
//! measures the first 5,000 transactions of the paper trace with one
//! envelope per transaction (per keystroke); the whole sequential traces
//! are replayed once each with one envelope per 100 transactions (a client
//! flushes every few seconds), because Automerge 0.12 applies a received
//! batch in time that grows with the document, so 259,778 separate
//! applications would take over an hour. Concurrent traces: one envelope
//! per transaction.
//!
//! Loading: a document of the paper trace's first 100,000 changes (1,000
//! in quick mode) opened by a new replica from its log (1,000 envelopes of
//! 100 changes) and from one snapshot envelope, against plain
//! Automerge's `load` of the saved document and `apply_changes` of the
//! 100,000 changes.

use std::hint::black_box;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use amicus_benches::{criterion, criterion_median, fmt_duration, quick, write_section};
use amicus_core::document::{Received, Replica, filing};
use amicus_core::envelope::Header;
use amicus_core::identity::{Device, UserIdentity};
use amicus_core::keyring::KeyRing;
use amicus_core::space::{HistoryPolicy, NewMember, Role, Space};
use amicus_core::wire::{AppendItem, ClientFrame, EntryKind, LogEntry, ServerFrame, genesis};
use amicus_core::{MlsProvider, SpaceId, StreamId, UserId};
use automerge::{AutoCommit, Change};
use criterion::SamplingMode;
use serde::Deserialize;
use serde_json::json;

type Patch = (usize, isize, String);

/// Transactions per envelope in the whole-trace replays and the loaded log
/// (a client flushes every few seconds: about a sentence of typing).
const FLUSH_EVERY: usize = 100;

#[derive(Deserialize)]
struct Txn {
    patches: Vec<Patch>,
    #[serde(default)]
    parents: Vec<usize>,
    #[serde(default)]
    agent: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Trace {
    #[serde(default)]
    start_content: String,
    end_content: String,
    #[serde(default)]
    num_agents: Option<usize>,
    txns: Vec<Txn>,
}

fn traces_dir() -> PathBuf {
    std::env::var_os("AMICUS_BENCH_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/editing-traces")
        })
}

fn load_trace(name: &str) -> Trace {
    let path = traces_dir().join(format!("{name}.json.gz"));
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set AMICUS_BENCH_TRACES)", path.display()));
    let mut json = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut json)
        .expect("a gzip file");
    serde_json::from_str(&json).expect("an editing trace")
}

/// A member of a two-member MLS space: its device and its view of the space.
struct Member {
    device: Device,
    space: Space,
}

impl Member {
    fn keyring(&self) -> &KeyRing {
        self.space.keyring()
    }
}

/// Alice (space manager) and Bertrand (contributor) in one space.
fn pair() -> (Member, Member) {
    let alice_user = UserIdentity::generate(UserId::new("alice").expect("name"));
    let alice = alice_user.new_device();
    let alice_provider = MlsProvider::new();
    let mut alice_space = Space::create(
        &alice_provider,
        &alice,
        alice_user.public(),
        HistoryPolicy::Full,
    )
    .expect("create");
    let bertrand_user = UserIdentity::generate(UserId::new("bertrand").expect("name"));
    let bertrand = bertrand_user.new_device();
    let bertrand_provider = MlsProvider::new();
    let pending = alice_space
        .add_members(
            &alice_provider,
            &alice,
            &[NewMember {
                user: bertrand.user().clone(),
                identity_key: bertrand_user.public(),
                role: Role::Contributor,
                key_packages: bertrand.key_packages(&bertrand_provider, 1).expect("kp"),
                revoked: Vec::new(),
            }],
            (0, [0; 32]),
        )
        .expect("add");
    alice_space.commit_accepted(&alice_provider).expect("merge");
    let bertrand_space = Space::join(
        &bertrand_provider,
        &bertrand,
        &bertrand_user.public(),
        pending.welcome.as_deref().expect("welcome"),
    )
    .expect("join");
    (
        Member {
            device: alice,
            space: alice_space,
        },
        Member {
            device: bertrand,
            space: bertrand_space,
        },
    )
}

/// The relay between writers and readers, as the wire carries it.
struct Wire {
    space: SpaceId,
    epoch: u64,
    next_seq: u64,
    head: [u8; 32],
}

impl Wire {
    fn new(space: SpaceId, epoch: u64) -> Self {
        Self {
            space,
            epoch,
            next_seq: 0,
            head: genesis(space),
        }
    }

    /// Client frame → relay (header check, log entry) → server frame →
    /// the payload a reader gets.
    fn carry(&mut self, envelope: Vec<u8>) -> Vec<u8> {
        let frame = ClientFrame::Append {
            request: self.next_seq as u32,
            space: self.space,
            item: AppendItem::Envelope(envelope),
        }
        .encode();
        let Ok(ClientFrame::Append {
            item: AppendItem::Envelope(envelope),
            ..
        }) = ClientFrame::decode(&frame)
        else {
            panic!("the frame decodes");
        };
        let header = Header::parse(&envelope).expect("the header parses");
        assert!(header.space == self.space && header.epoch == self.epoch);
        let entry = LogEntry {
            seq: self.next_seq,
            prev: self.head,
            kind: EntryKind::Envelope,
            epoch: self.epoch,
            payload: envelope,
        };
        self.head = entry.hash();
        self.next_seq += 1;
        let out = ServerFrame::Entry {
            space: self.space,
            entry,
        }
        .encode();
        match ServerFrame::decode(&out) {
            Ok(ServerFrame::Entry { entry, .. }) => entry.payload,
            _ => panic!("the frame decodes"),
        }
    }
}

fn apply_patches(doc: &mut AutoCommit, patches: &[Patch]) {
    for (pos, del, ins) in patches {
        filing::splice(doc, *pos, *del, ins).expect("splice");
    }
}

/// One writer, one reader, encrypted; the writer flushes after every
/// `batch` transactions (one Automerge change each). Returns the time, the
/// reader's text, the log (payloads) covering the first `keep`
/// transactions and a snapshot after them.
fn sequential_encrypted(
    alice: &Member,
    bertrand: &Member,
    trace: &Trace,
    limit: usize,
    batch: usize,
    keep: usize,
) -> (Duration, String, Vec<Vec<u8>>, Option<Vec<u8>>) {
    let stream = StreamId::random();
    let mut wire = Wire::new(alice.space.id(), alice.space.epoch());
    let mut writer = Replica::new(stream, &alice.device);
    let mut reader = Replica::new(stream, &bertrand.device);
    let mut log = Vec::new();
    let mut snapshot = None;
    let mut outside = Duration::ZERO;
    let start = Instant::now();
    filing::init(writer.doc(), "trace").expect("init");
    if !trace.start_content.is_empty() {
        filing::splice(writer.doc(), 0, 0, &trace.start_content).expect("splice");
    }
    let step = |wire: &mut Wire, writer: &mut Replica, reader: &mut Replica| {
        let envelope = writer
            .flush(alice.keyring(), &alice.device, wire.head)
            .expect("flush")
            .expect("changes");
        writer.flush_accepted();
        let payload = wire.carry(envelope);
        let got = reader
            .receive(bertrand.keyring(), &payload, Some(wire.epoch))
            .expect("receive");
        assert!(matches!(got, Received::Applied { .. }));
        payload
    };
    let first = step(&mut wire, &mut writer, &mut reader);
    if keep > 0 {
        log.push(first);
    }
    let n = trace.txns.len().min(limit);
    for (i, txn) in trace.txns.iter().take(n).enumerate() {
        apply_patches(writer.doc(), &txn.patches);
        writer.doc().commit();
        if (i + 1) % batch == 0 || i + 1 == n {
            let payload = step(&mut wire, &mut writer, &mut reader);
            if i < keep {
                log.push(payload);
            }
        }
        if i + 1 == keep {
            let t = Instant::now();
            snapshot = Some(
                writer
                    .snapshot(alice.keyring(), &alice.device, wire.head)
                    .expect("snapshot"),
            );
            outside += t.elapsed();
        }
    }
    let elapsed = start.elapsed() - outside;
    let text = filing::body(reader.doc()).expect("body");
    (elapsed, text, log, snapshot)
}

/// One writer, one reader, plain Automerge: one change per transaction,
/// applied by the reader `batch` at a time. Returns the time, the reader's
/// text and the changes of the first `keep` transactions.
fn sequential_plain(
    trace: &Trace,
    limit: usize,
    batch: usize,
    keep: usize,
) -> (Duration, String, Vec<Vec<u8>>) {
    let mut writer = AutoCommit::new();
    let mut reader = AutoCommit::new();
    let mut changes = Vec::new();
    let mut unsent: Vec<Vec<u8>> = Vec::new();
    let start = Instant::now();
    filing::init(&mut writer, "trace").expect("init");
    if !trace.start_content.is_empty() {
        filing::splice(&mut writer, 0, 0, &trace.start_content).expect("splice");
    }
    let commit = |writer: &mut AutoCommit,
                  changes: &mut Vec<Vec<u8>>,
                  unsent: &mut Vec<Vec<u8>>,
                  keep: bool| {
        writer.commit();
        let bytes = writer
            .get_last_local_change()
            .expect("a change")
            .raw_bytes()
            .to_vec();
        if keep {
            changes.push(bytes.clone());
        }
        unsent.push(bytes);
    };
    let send = |unsent: &mut Vec<Vec<u8>>, reader: &mut AutoCommit| {
        let batch: Vec<Change> = unsent
            .drain(..)
            .map(|b| Change::from_bytes(b).expect("a change"))
            .collect();
        reader.apply_changes(batch).expect("apply");
    };
    commit(&mut writer, &mut changes, &mut unsent, keep > 0);
    send(&mut unsent, &mut reader);
    let n = trace.txns.len().min(limit);
    for (i, txn) in trace.txns.iter().take(n).enumerate() {
        apply_patches(&mut writer, &txn.patches);
        commit(&mut writer, &mut changes, &mut unsent, i < keep);
        if (i + 1) % batch == 0 || i + 1 == n {
            send(&mut unsent, &mut reader);
        }
    }
    let elapsed = start.elapsed();
    let text = filing::body(&reader).expect("body");
    (elapsed, text, changes)
}

/// For each transaction, the last transaction of every agent in its causal past.
fn causal_fronts(trace: &Trace, agents: usize) -> Vec<Vec<Option<usize>>> {
    let mut fronts: Vec<Vec<Option<usize>>> = Vec::with_capacity(trace.txns.len());
    for txn in &trace.txns {
        let mut front = vec![None; agents];
        for &p in &txn.parents {
            for (a, f) in fronts[p].iter().enumerate() {
                front[a] = front[a].max(*f);
            }
            let pa = trace.txns[p].agent;
            front[pa] = front[pa].max(Some(p));
        }
        fronts.push(front);
    }
    fronts
}

/// How a concurrent replay went.
struct Concurrent {
    elapsed: Duration,
    converged: bool,
    equals_trace: bool,
    chars: usize,
}

/// Each agent edits its own replica after receiving exactly its causal past;
/// `exchange` moves one agent's transaction to another's replica.
fn concurrent<R>(
    trace: &Trace,
    mut replicas: Vec<R>,
    mut edit: impl FnMut(&mut R, &[Patch]) -> Vec<u8>,
    mut deliver: impl FnMut(&mut R, &[u8]),
    mut text: impl FnMut(&mut R) -> String,
) -> Concurrent {
    let agents = replicas.len();
    let fronts = causal_fronts(trace, agents);
    // produced[a]: (transaction index, payload) of agent a, in order.
    let mut produced: Vec<Vec<(usize, Vec<u8>)>> = vec![Vec::new(); agents];
    // delivered[to][from]: how many of `from`'s transactions `to` has.
    let mut delivered = vec![vec![0usize; agents]; agents];
    let start = Instant::now();
    for (i, txn) in trace.txns.iter().enumerate() {
        let a = txn.agent;
        for from in (0..agents).filter(|f| *f != a) {
            while let Some((idx, payload)) = produced[from].get(delivered[a][from]) {
                if Some(*idx) > fronts[i][from] {
                    break;
                }
                deliver(&mut replicas[a], payload);
                delivered[a][from] += 1;
            }
        }
        let payload = edit(&mut replicas[a], &txn.patches);
        produced[a].push((i, payload));
    }
    for to in 0..agents {
        for from in (0..agents).filter(|f| *f != to) {
            for (_, payload) in &produced[from][delivered[to][from]..] {
                deliver(&mut replicas[to], payload);
            }
        }
    }
    let elapsed = start.elapsed();
    let texts: Vec<String> = replicas.iter_mut().map(&mut text).collect();
    Concurrent {
        elapsed,
        converged: texts.windows(2).all(|w| w[0] == w[1]),
        equals_trace: texts[0] == trace.end_content,
        chars: texts[0].chars().count(),
    }
}

fn concurrent_encrypted(trace: &Trace, members: &[Member]) -> Concurrent {
    let stream = StreamId::random();
    let agents = trace.num_agents.unwrap_or(2);
    let space = members[0].space.id();
    let epoch = members[0].space.epoch();
    let wire = std::cell::RefCell::new(Wire::new(space, epoch));
    // Agent i writes as member i % 2 (a member's device may run two replicas
    // of one document only through two actors, which is what this is).
    let mut start_doc = AutoCommit::new();
    filing::init(&mut start_doc, "trace").expect("init");
    start_doc.commit();
    let replicas: Vec<(usize, Replica)> = (0..agents)
        .map(|i| {
            let m = &members[i % members.len()];
            let mut r = Replica::new(stream, &m.device);
            let actor = r.doc().get_actor().clone();
            *r.doc() = start_doc.fork().with_actor(actor);
            (i % members.len(), r)
        })
        .collect();
    concurrent(
        trace,
        replicas,
        |(m, r), patches| {
            apply_patches(r.doc(), patches);
            let m = &members[*m];
            let envelope = r
                .flush(m.keyring(), &m.device, wire.borrow().head)
                .expect("flush")
                .expect("a change");
            r.flush_accepted();
            wire.borrow_mut().carry(envelope)
        },
        |(m, r), payload| {
            r.receive(members[*m].keyring(), payload, Some(epoch))
                .expect("receive");
        },
        |(_, r)| filing::body(r.doc()).expect("body"),
    )
}

fn concurrent_plain(trace: &Trace) -> Concurrent {
    let agents = trace.num_agents.unwrap_or(2);
    let mut start_doc = AutoCommit::new();
    filing::init(&mut start_doc, "trace").expect("init");
    start_doc.commit();
    let replicas: Vec<AutoCommit> = (0..agents)
        .map(|_| start_doc.fork().with_actor(automerge::ActorId::random()))
        .collect();
    concurrent(
        trace,
        replicas,
        |doc, patches| {
            apply_patches(doc, patches);
            doc.commit();
            doc.get_last_local_change()
                .expect("a change")
                .raw_bytes()
                .to_vec()
        },
        |doc, bytes| {
            doc.apply_changes([Change::from_bytes(bytes.to_vec()).expect("change")])
                .expect("apply");
        },
        |doc| filing::body(doc).expect("body"),
    )
}

/// Plain Automerge: the median time to apply one received keystroke (one
/// change) to a document of `n` characters typed one change each.
fn apply_one(n: usize) -> Duration {
    let mut writer = AutoCommit::new();
    filing::init(&mut writer, "probe").expect("init");
    for i in 0..n {
        filing::splice(&mut writer, i, 0, "x").expect("splice");
        writer.commit();
    }
    let mut reader = AutoCommit::new();
    reader
        .apply_changes(writer.get_changes(&[]))
        .expect("apply");
    let mut times = Vec::new();
    for i in 0..21 {
        filing::splice(&mut writer, n / 2 + i, 0, "y").expect("splice");
        writer.commit();
        let change = writer.get_last_local_change().expect("a change");
        let t = Instant::now();
        reader.apply_changes([change]).expect("apply");
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
}

fn main() {
    let q = quick();
    let limit = if q { 2_000 } else { usize::MAX };
    let keep = if q { 1_000 } else { 100_000 };
    let window = if q { 300 } else { 5_000 };
    let (alice, bertrand) = pair();
    let members = [alice, bertrand];
    let [alice, bertrand] = &members;

    let paper = load_trace("automerge-paper");
    let mut md = String::from("## Documents\n\n");
    md.push_str("Real editing traces replayed through the whole encrypted path (per transaction: Automerge change → `Replica::flush`, a padded envelope sealed with the epoch's content key and signed by the device → `ClientFrame::Append` encoded and decoded → the relay's header check and hash-chained log entry → `ServerFrame::Entry` encoded and decoded → `Replica::receive`: signature, roster, replay and actor checks, decryption, apply) against plain Automerge making and applying the same changes (`commit`, change bytes, `apply_changes` on the reader, batched as the envelopes are), in the same run. Every transaction of a trace is one Automerge change. Whole sequential traces: one envelope per 100 transactions (clients flush every few seconds); concurrent traces: one envelope per transaction, each agent on its own replica receiving exactly its causal past. Keys from a real two-member MLS space. One run per trace.\n\n");

    // Criterion: the first `window` transactions of the paper trace.
    let mut c = criterion();
    {
        let mut g = c.benchmark_group("documents");
        g.sampling_mode(SamplingMode::Flat);
        g.sample_size(10);
        g.bench_function("replay window, encrypted", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| sequential_encrypted(alice, bertrand, &paper, window, 1, 0).0)
                    .sum()
            })
        });
        g.bench_function("replay window, plain automerge", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| sequential_plain(&paper, window, 1, 0).0)
                    .sum()
            })
        });
        g.finish();
    }

    // Whole sequential traces, one timed run each.
    md.push_str("| trace | transactions | path | time | per transaction | encrypted vs plain | final text equals the trace's |\n|---|---|---|---|---|---|---|\n");
    let mut raw_traces = Vec::new();
    let mut log = Vec::new();
    let mut snapshot = None;
    let mut plain_changes = Vec::new();
    for name in ["automerge-paper", "seph-blog1"] {
        let trace = if name == "automerge-paper" {
            None
        } else {
            Some(load_trace(name))
        };
        let trace = trace.as_ref().unwrap_or(&paper);
        let n = trace.txns.len().min(limit);
        let full = n == trace.txns.len();
        let k = if name == "automerge-paper" { keep } else { 0 };
        let (enc_t, enc_text, l, s) =
            sequential_encrypted(alice, bertrand, trace, limit, FLUSH_EVERY, k);
        let (plain_t, plain_text, ch) = sequential_plain(trace, limit, FLUSH_EVERY, k);
        if name == "automerge-paper" {
            log = l;
            snapshot = s;
            plain_changes = ch;
        }
        assert_eq!(
            enc_text, plain_text,
            "{name}: both paths give the same text"
        );
        let equals = if full {
            if enc_text == trace.end_content {
                "yes"
            } else {
                "**no**"
            }
        } else {
            "(prefix)"
        };
        for (path, t) in [("encrypted", enc_t), ("plain Automerge", plain_t)] {
            md.push_str(&format!(
                "| {name} | {n} | {path} | {} | {} | {} | {equals} |\n",
                fmt_duration(t),
                fmt_duration(t / n as u32),
                if path == "encrypted" {
                    ratio(enc_t, plain_t)
                } else {
                    "1.00×".into()
                },
            ));
        }
        raw_traces.push(json!({
            "trace": name, "transactions": n,
            "encrypted_ns": enc_t.as_nanos() as u64, "plain_ns": plain_t.as_nanos() as u64,
            "equals_end_content": full && enc_text == trace.end_content,
        }));
    }

    // Concurrent traces.
    for name in ["friendsforever", "clownschool"] {
        let mut trace = load_trace(name);
        trace.txns.truncate(limit);
        let n = trace.txns.len();
        let enc = concurrent_encrypted(&trace, &members);
        let plain = concurrent_plain(&trace);
        for (path, r) in [("encrypted", &enc), ("plain Automerge", &plain)] {
            md.push_str(&format!(
                "| {name} ({} agents, concurrent) | {n} | {path} | {} | {} | {} | {} |\n",
                trace.num_agents.unwrap_or(2),
                fmt_duration(r.elapsed),
                fmt_duration(r.elapsed / n as u32),
                if path == "encrypted" { ratio(enc.elapsed, plain.elapsed) } else { "1.00×".into() },
                match (r.converged, r.equals_trace, limit == usize::MAX) {
                    (false, ..) => "**replicas diverged**".to_owned(),
                    (true, true, _) => "yes (replicas converged)".to_owned(),
                    (true, false, true) => format!(
                        "no: converged on {} characters against {}; concurrent inserts at one place are ordered by actor id",
                        r.chars,
                        trace.end_content.chars().count()
                    ),
                    (true, false, false) => "(prefix; replicas converged)".to_owned(),
                },
            ));
            assert!(r.converged, "{name}: {path} replicas converge");
        }
        raw_traces.push(json!({
            "trace": name, "transactions": n, "agents": trace.num_agents,
            "encrypted_ns": enc.elapsed.as_nanos() as u64, "plain_ns": plain.elapsed.as_nanos() as u64,
            "converged": enc.converged && plain.converged,
            "equals_end_content": [enc.equals_trace, plain.equals_trace],
        }));
    }

    // Loading a document of `keep` changes.
    let changes = plain_changes.len().saturating_sub(1);
    let snapshot = snapshot.expect("a snapshot after the kept changes");
    let mut saved = AutoCommit::new();
    saved
        .apply_changes(
            plain_changes
                .iter()
                .map(|b| Change::from_bytes(b.clone()).expect("change")),
        )
        .expect("apply");
    let saved_bytes = saved.save();
    let stream = {
        let header = Header::parse(&snapshot).expect("header");
        header.stream
    };
    {
        let mut g = c.benchmark_group("documents");
        g.sampling_mode(SamplingMode::Flat);
        g.sample_size(10);
        let epoch = bertrand.space.epoch();
        g.bench_function("load from the log, encrypted", |b| {
            b.iter(|| {
                let mut r = Replica::new(stream, &bertrand.device);
                for payload in &log {
                    r.receive(bertrand.keyring(), payload, Some(epoch))
                        .expect("receive");
                }
                black_box(r)
            })
        });
        g.bench_function("load from a snapshot, encrypted", |b| {
            b.iter(|| {
                let mut r = Replica::new(stream, &bertrand.device);
                assert_eq!(
                    r.receive(bertrand.keyring(), &snapshot, Some(epoch))
                        .expect("receive"),
                    Received::Snapshot
                );
                black_box(r)
            })
        });
        g.bench_function("apply the changes, plain automerge", |b| {
            b.iter(|| {
                let mut d = AutoCommit::new();
                d.apply_changes(
                    plain_changes
                        .iter()
                        .map(|b| Change::from_bytes(b.clone()).expect("change")),
                )
                .expect("apply");
                black_box(d)
            })
        });
        g.bench_function("load a saved document, plain automerge", |b| {
            b.iter(|| black_box(AutoCommit::load(&saved_bytes).expect("load")))
        });
        g.finish();
    }
    c.final_summary();

    let m = |f: &str| criterion_median("documents", f);
    let fmt = |d: Option<Duration>| d.map_or("—".into(), fmt_duration);
    let rat = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => ratio(a, b),
        _ => "—".into(),
    };
    let (we, wp) = (
        m("replay window, encrypted"),
        m("replay window, plain automerge"),
    );
    md.push_str(&format!(
        "\nCriterion, first {window} transactions of automerge-paper, one envelope per transaction (per keystroke; median of 10 replays from an empty document): encrypted {}, plain {} ({} the time of plain Automerge).\n\n",
        fmt(we),
        fmt(wp),
        rat(we, wp),
    ));
    let probes: Vec<(usize, Duration)> = if q {
        vec![(1_000, apply_one(1_000)), (4_000, apply_one(4_000))]
    } else {
        [1_000, 8_000, 32_000, 128_000]
            .into_iter()
            .map(|n| (n, apply_one(n)))
            .collect()
    };
    md.push_str("Plain Automerge 0.12 applies a received batch of changes in time that grows with the document: applying one received keystroke (one change) to a document of n characters, each typed as its own change (median of 21):\n\n| n | apply one change |\n|---|---|\n");
    for (n, d) in &probes {
        md.push_str(&format!("| {n} | {} |\n", fmt_duration(*d)));
    }
    md.push_str("\nReceiving a long filing keystroke by keystroke therefore costs time in proportion to its length per keystroke; the clients' batching of a few seconds of edits per envelope keeps this to one application per flush.\n\n");
    let log_bytes: usize = log.iter().map(Vec::len).sum();
    let (ll, ls, pa, pl) = (
        m("load from the log, encrypted"),
        m("load from a snapshot, encrypted"),
        m("apply the changes, plain automerge"),
        m("load a saved document, plain automerge"),
    );
    md.push_str(&format!(
        "Opening a document of {changes} changes (the first {changes} transactions of automerge-paper) on a new replica, criterion medians of 10:\n\n| from | encrypted | bytes | plain Automerge baseline | ratio |\n|---|---|---|---|---|\n| the log ({} envelopes of up to {FLUSH_EVERY} changes) | {} | {:.1} MiB | `apply_changes` of the {changes} changes: {} | {} |\n| one snapshot envelope | {} | {:.1} MiB | `load` of the saved document: {} | {} |\n\nThe snapshot opens {} faster than the log.\n",
        log.len(),
        fmt(ll),
        log_bytes as f64 / (1 << 20) as f64,
        fmt(pa),
        rat(ll, pa),
        fmt(ls),
        snapshot.len() as f64 / (1 << 20) as f64,
        fmt(pl),
        rat(ls, pl),
        rat(ll, ls),
    ));
    let ns = |d: Option<Duration>| d.map(|d| d.as_nanos() as u64);
    write_section(
        "documents",
        &md,
        &json!({
            "traces": raw_traces,
            "window": { "transactions": window, "encrypted_ns": ns(we), "plain_ns": ns(wp) },
            "apply_one_change_ns": probes.iter().map(|(n, d)| json!({ "chars": n, "ns": d.as_nanos() as u64 })).collect::<Vec<_>>(),
            "load": {
                "changes": changes, "log_bytes": log_bytes, "snapshot_bytes": snapshot.len(),
                "saved_bytes": saved_bytes.len(),
                "log_ns": ns(ll), "snapshot_ns": ns(ls), "plain_apply_ns": ns(pa), "plain_load_ns": ns(pl),
            },
        }),
    );
}
