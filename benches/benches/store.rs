//! Store: durable appends per second to a space log.
//!
//! The server acknowledges an append only once it is on disk
//! (`SledStore::append`: one sled transaction over the space record, the
//! log entry and any Welcome, then one `flush`, i.e. one fsync round per
//! message). This measures that path against, in the same run and on the
//! same file system:
//!
//! - the disk's own floor: appending the same bytes to a plain file with
//!   one `fdatasync` per message, and with one per group of 10 and 100;
//! - the same sled writes (space record and log entry in one transaction)
//!   with one `flush` per message, and with one per group of 10 and 100:
//!   what grouping acknowledgements (group commit) would gain.
//!
//! And with 64 writers at once, each appending to its own space's log:
//! `SledStore::append` (whose writers share flushes: group commit) against
//! the same sled writes each followed by its own `flush`.
//!
//! Payload: a 1 KiB envelope (an editing burst), encoded as the relay
//! encodes it. Each criterion iteration is one message; a grouped variant
//! flushes after every 10th or 100th and at the end of each sample.

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use amicus_benches::{criterion, criterion_median, fmt_duration, scratch, write_section};
use amicus_core::wire::{EntryKind, LogEntry, genesis};
use amicus_core::{SpaceId, UserId};
use amicus_server::store::{Append, SledStore, SpaceKind, SpaceRecord, Store};
use serde_json::json;

const PAYLOAD: usize = 1024;
const GROUPS: [u64; 3] = [1, 10, 100];
const WRITERS: usize = 64;

fn space_record(id: SpaceId) -> SpaceRecord {
    SpaceRecord {
        id,
        kind: SpaceKind::Confidential,
        created_by: UserId::new("amina").expect("a user name"),
        epoch: 1,
        next_seq: 0,
        head: genesis(id),
        roster: Default::default(),
        roles: Default::default(),
        snapshots: Default::default(),
        name: None,
        last_commit: None,
        barred: Default::default(),
    }
}

/// The next entry of the log, and the space record after it.
fn next(space: &mut SpaceRecord, payload: &[u8]) -> LogEntry {
    let entry = LogEntry {
        seq: space.next_seq,
        prev: space.head,
        kind: EntryKind::Envelope,
        epoch: space.epoch,
        payload: payload.to_vec(),
    };
    space.head = entry.hash();
    space.next_seq += 1;
    entry
}

/// The next entry of `space`'s log and its new state written in one sled
/// transaction over two trees (no flush), as the store does.
fn sled_write(spaces: &sled::Tree, log: &sled::Tree, space: &mut SpaceRecord, payload: &[u8]) {
    use sled::Transactional;
    let entry = next(space, payload);
    let mut key = space.id.0.to_vec();
    key.extend_from_slice(&entry.seq.to_be_bytes());
    let value = postcard::to_allocvec(&entry).expect("encode");
    let record = postcard::to_allocvec(&*space).expect("encode");
    (spaces, log)
        .transaction(|(s, l)| {
            s.insert(space.id.0.as_slice(), record.as_slice())?;
            l.insert(key.as_slice(), value.as_slice())?;
            Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
        })
        .expect("transaction");
}

/// `iters` messages shared among one writer thread per space, each
/// message written by `write`: the time per message.
fn on_writers(
    spaces: &mut [SpaceRecord],
    iters: u64,
    write: impl Fn(&mut SpaceRecord) + Sync,
) -> Duration {
    let each = (iters / spaces.len() as u64).max(1);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for space in spaces.iter_mut() {
            let write = &write;
            scope.spawn(move || (0..each).for_each(|_| write(space)));
        }
    });
    start
        .elapsed()
        .mul_f64(iters as f64 / (each * spaces.len() as u64) as f64)
}

fn file_system(dir: &std::path::Path) -> String {
    std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let dir = scratch();
    let fs = file_system(dir.path());
    let payload = vec![0xA5u8; PAYLOAD];
    let mut c = criterion();
    let group_name = "store";
    let grouped_flushes: (u64, u64);
    {
        let mut g = c.benchmark_group(group_name);

        // The disk's floor: a plain file, fdatasync per message or group.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("plain.log"))
            .expect("plain file");
        for k in GROUPS {
            g.bench_function(format!("file, fdatasync every {k}"), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for i in 1..=iters {
                        file.write_all(&payload).expect("write");
                        if i % k == 0 || i == iters {
                            file.sync_data().expect("fdatasync");
                        }
                    }
                    start.elapsed()
                })
            });
        }

        // The store's path: SledStore::append, durable before it returns.
        let store = SledStore::open(&dir.path().join("store")).expect("store");
        let mut space = space_record(SpaceId::random());
        assert!(store.create_space(&space).expect("create"));
        g.bench_function("SledStore::append (the server's path)", |b| {
            b.iter(|| {
                let entry = next(&mut space, &payload);
                store
                    .append(Append {
                        space: &space,
                        entry: Some(&entry),
                        welcome: None,
                    })
                    .expect("append");
            })
        });
        let appended = space.next_seq;
        let back = store
            .entries(space.id, appended - 1, 1, usize::MAX)
            .expect("read back");
        assert_eq!(back.len(), 1, "the last append is readable");
        drop(store);

        // The same sled writes, flushed per message or per group.
        let db = sled::Config::new()
            .path(dir.path().join("sled"))
            .open()
            .expect("sled");
        let spaces_tree = db.open_tree("spaces").expect("tree");
        let log = db.open_tree("log").expect("tree");
        let mut space = space_record(SpaceId::random());
        for k in GROUPS {
            g.bench_function(format!("sled transaction, flush every {k}"), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for i in 1..=iters {
                        sled_write(&spaces_tree, &log, &mut space, &payload);
                        if i % k == 0 || i == iters {
                            black_box(db.flush().expect("flush"));
                        }
                    }
                    start.elapsed()
                })
            });
        }

        // 64 writers at once, one space each: each criterion iteration is
        // one message, the iterations shared among the writers.
        let store = SledStore::open(&dir.path().join("store-64")).expect("store");
        let mut spaces: Vec<SpaceRecord> = (0..WRITERS)
            .map(|_| {
                let space = space_record(SpaceId::random());
                assert!(store.create_space(&space).expect("create"));
                space
            })
            .collect();
        g.bench_function(format!("SledStore::append, {WRITERS} writers"), |b| {
            b.iter_custom(|iters| {
                on_writers(&mut spaces, iters, |space| {
                    let entry = next(space, &payload);
                    store
                        .append(Append {
                            space,
                            entry: Some(&entry),
                            welcome: None,
                        })
                        .expect("append");
                })
            })
        });
        grouped_flushes = (
            store.flushes(),
            spaces.iter().map(|space| space.next_seq).sum::<u64>(),
        );
        drop(store);
        let mut spaces: Vec<SpaceRecord> = (0..WRITERS)
            .map(|_| space_record(SpaceId::random()))
            .collect();
        g.bench_function(
            format!("sled transaction, flush each, {WRITERS} writers"),
            |b| {
                b.iter_custom(|iters| {
                    on_writers(&mut spaces, iters, |space| {
                        sled_write(&spaces_tree, &log, space, &payload);
                        black_box(db.flush().expect("flush"));
                    })
                })
            },
        );
        g.finish();
    }
    c.final_summary();

    let median = |f: &str| criterion_median(group_name, f);
    let per_s =
        |d: Option<Duration>| d.map_or("—".into(), |d| format!("{:.0}", 1.0 / d.as_secs_f64()));
    let ratio = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}×", b.as_secs_f64() / a.as_secs_f64()),
        _ => "—".into(),
    };
    let base = median("file, fdatasync every 1");
    let store_t = median("SledStore::append (the server's path)");
    let mut md = String::from("## Store\n\n");
    md.push_str(&format!(
        "Durable appends of a 1 KiB envelope to a space log, one thread, on the scratch directory's file system (`{fs}`). Each row is criterion's median time per message; \"throughput vs\" is messages per second relative to the plain file with one `fdatasync` per message, the disk's floor, measured in the same run. The server acknowledges an append only after `SledStore::append` returns, which flushes sled once per message.\n\n"
    ));
    md.push_str("| writes | per message | messages/s | throughput vs plain file, fdatasync each |\n|---|---|---|---|\n");
    let mut raw = serde_json::Map::new();
    let mut row = |name: String| {
        let t = median(&name);
        raw.insert(name.clone(), json!(t.map(|d| d.as_nanos() as u64)));
        md.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            t.map_or("—".into(), fmt_duration),
            per_s(t),
            ratio(t, base)
        ));
    };
    for k in GROUPS {
        row(format!("file, fdatasync every {k}"));
    }
    row("SledStore::append (the server's path)".to_owned());
    for k in GROUPS {
        row(format!("sled transaction, flush every {k}"));
    }
    row(format!("SledStore::append, {WRITERS} writers"));
    row(format!("sled transaction, flush each, {WRITERS} writers"));
    let grouped = median("sled transaction, flush every 100");
    let many = median(&format!("SledStore::append, {WRITERS} writers"));
    let many_ungrouped = median(&format!("sled transaction, flush each, {WRITERS} writers"));
    md.push_str(&format!(
        "\nOne writer appending one message at a time through the server's path sustains {} durable appends per second on this disk; writing 100 entries per flush raises that {} (the relay writes the appends queued for a space while the previous write ran in one transaction and one flush, `Store::append_all`; see Relay).\n",
        per_s(store_t),
        ratio(grouped, store_t),
    ));
    md.push_str(&format!(
        "\nWith {WRITERS} writers at once, each on its own space's log, `SledStore::append` acknowledges {} durable appends per second: its writers share flushes (group commit: a writer whose write is done waits for one flush that began after it, run by one of them). The same sled writes with a flush each from {WRITERS} threads: {} per second ({} of that). The grouped run made {} flushes for {} appends.\n",
        per_s(many),
        per_s(many_ungrouped),
        ratio(many, many_ungrouped),
        grouped_flushes.0,
        grouped_flushes.1,
    ));
    write_section(
        "store",
        &md,
        &json!({
            "file_system": fs,
            "payload_bytes": PAYLOAD,
            "writers": WRITERS,
            "median_ns": raw,
            "appends_per_s": many.map(|d| 1.0 / d.as_secs_f64()),
            "appends_per_s_ungrouped": many_ungrouped.map(|d| 1.0 / d.as_secs_f64()),
            "grouped_flushes": grouped_flushes.0,
            "grouped_appends": grouped_flushes.1,
        }),
    );
}
