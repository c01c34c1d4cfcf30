//! Property: a device that saved its state reads, after a restart, only
//! the log entries it had not processed, and ends with the same documents
//! as a device that read the whole log; its edits that were typed but not
//! sent before the restart still go out once. The checks against the
//! server (a rewritten entry, a rolled-back log) hold across the restart,
//! and a fork once detected stays detected.

use amicus_core::at_rest::DeviceRecord;
use amicus_core::document::filing;
use amicus_core::identity::Contacts;
use amicus_core::space::{HistoryPolicy, Role, Space};
use amicus_core::view::SpaceView;
use amicus_core::wire::{EntryKind, LogEntry, genesis};
use amicus_core::{SpaceId, StreamId};

use crate::support::Member;

/// A space log as the server keeps it.
struct Log {
    space: SpaceId,
    entries: Vec<LogEntry>,
}

impl Log {
    fn append(&mut self, kind: EntryKind, epoch: u64, payload: Vec<u8>) {
        let prev = self
            .entries
            .last()
            .map_or(genesis(self.space), LogEntry::hash);
        self.entries.push(LogEntry {
            seq: self.entries.len() as u64,
            prev,
            kind,
            epoch,
            payload,
        });
    }
}

/// Reads every entry from the view's reading position; returns how many.
fn catch_up(view: &mut SpaceView, member: &Member, log: &Log) -> usize {
    let from = view.read_to() as usize;
    for entry in &log.entries[from..] {
        let applied = view.apply(&member.device, &member.provider, entry.clone());
        assert_eq!(applied.warning, None);
        assert_eq!(applied.missing, None);
    }
    assert_eq!(view.broken(), None);
    log.entries.len() - from
}

fn text(view: &mut SpaceView, stream: StreamId) -> String {
    filing::body(view.existing_replica(stream).expect("the filing").doc()).unwrap()
}

/// Saves a device's state the way both clients do, and loads it back.
fn restart(member: &Member, view: &mut SpaceView) -> SpaceView {
    let record = DeviceRecord::capture(
        None,
        &member.device,
        &member.provider,
        [&mut *view],
        &Contacts::default(),
    )
    .unwrap();
    let bytes = record.encode();
    let mut restored = DeviceRecord::decode(&bytes).unwrap().restore().unwrap();
    restored.spaces.remove(&view.id()).expect("the space")
}

/// A space of Alice and Bob (contributor) with its log: Alice's commit
/// adding Bob, her epoch record, and a filing she has started.
fn scenario() -> (Member, Member, SpaceView, SpaceView, Log, StreamId) {
    let mut alice = Member::new("alice");
    let bob = Member::new("bob");
    alice.create_space(HistoryPolicy::Full);
    let space = alice.space.take().unwrap();
    let id = space.id();
    let mut log = Log {
        space: id,
        entries: Vec::new(),
    };
    let mut a = SpaceView::new(space);
    let invite = Member::invitation(&[&bob], Role::Contributor);
    let position = a.log_position();
    let pending = a
        .space_mut()
        .add_members(&alice.provider, &alice.device, &[invite], position)
        .unwrap();
    a.set_pending_commit(Some(pending.commit.clone()));
    log.append(EntryKind::Commit, 0, pending.commit.clone());
    let joined = Space::join(
        &bob.provider,
        &bob.device,
        &bob.identity.public(),
        pending.welcome.as_ref().unwrap(),
    )
    .unwrap();
    let mut b = SpaceView::new(joined);
    catch_up(&mut a, &alice, &log);
    catch_up(&mut b, &bob, &log);
    assert_eq!(a.space().epoch(), 1);
    let record = a
        .space()
        .seal_epoch_record(&alice.device, a.head())
        .unwrap();
    log.append(EntryKind::Envelope, 1, record);
    let stream = StreamId::random();
    filing::init(a.replica(stream, &alice.device).doc(), "Requête").unwrap();
    (alice, bob, a, b, log, stream)
}

/// One round: each writes a line and flushes it into the log.
fn round(who: (&Member, &mut SpaceView), log: &mut Log, stream: StreamId, line: &str) {
    let (member, view) = who;
    catch_up(view, member, log);
    let doc = view.replica(stream, &member.device).doc();
    let len = filing::body(doc).unwrap().chars().count();
    filing::splice(doc, len, 0, line).unwrap();
    let envelope = view.flush(stream, &member.device).unwrap().unwrap();
    log.append(EntryKind::Envelope, 1, envelope);
    view.existing_replica(stream).unwrap().flush_accepted();
}

#[test]
fn a_restarted_device_reads_only_new_entries_and_ends_where_a_full_reader_does() {
    let (alice, bob, mut a, mut b, mut log, stream) = scenario();
    for i in 0..5 {
        round((&alice, &mut a), &mut log, stream, &format!("A{i}. "));
        round((&bob, &mut b), &mut log, stream, &format!("B{i}. "));
    }
    catch_up(&mut b, &bob, &log);
    let read_before = b.read_to();
    // Typed, not sent, when the device stops.
    let doc = b.replica(stream, &bob.device).doc();
    let len = filing::body(doc).unwrap().chars().count();
    filing::splice(doc, len, 0, "Unsent. ").unwrap();
    let mut b = restart(&bob, &mut b);
    assert_eq!(
        b.read_to(),
        read_before,
        "the restarted view starts where it stopped"
    );
    assert!(text(&mut b, stream).ends_with("B4. Unsent. "));
    for i in 5..8 {
        round((&alice, &mut a), &mut log, stream, &format!("A{i}. "));
    }
    let read = catch_up(&mut b, &bob, &log);
    assert_eq!(read, 3, "only the three new entries are read");
    // The sentence typed before the restart goes out with the next flush.
    round((&bob, &mut b), &mut log, stream, "B8. ");
    catch_up(&mut a, &alice, &log);
    assert_eq!(text(&mut a, stream), text(&mut b, stream));
    assert_eq!(
        text(&mut a, stream).matches("Unsent. ").count(),
        1,
        "the kept sentence arrives once"
    );
    let heads_a = a.existing_replica(stream).unwrap().heads();
    let heads_b = b.existing_replica(stream).unwrap().heads();
    assert_eq!(heads_a, heads_b);
    // Saved again and restarted with nothing new: nothing to read.
    catch_up(&mut b, &bob, &log);
    let mut b = restart(&bob, &mut b);
    assert_eq!(catch_up(&mut b, &bob, &log), 0);
    assert_eq!(text(&mut b, stream), text(&mut a, stream));
}

#[test]
fn a_restarted_device_still_detects_a_rewritten_or_rolled_back_log() {
    let (alice, bob, mut a, mut b, mut log, stream) = scenario();
    for i in 0..3 {
        round((&alice, &mut a), &mut log, stream, &format!("A{i}. "));
    }
    catch_up(&mut b, &bob, &log);
    let seen = b.read_to();
    // The server shows the restarted device another entry at a position
    // it read before the restart.
    let mut forked = log.entries[2].clone();
    forked.payload[40] ^= 1;
    let mut restarted = restart(&bob, &mut b);
    restarted.apply(&bob.device, &bob.provider, forked);
    assert!(
        restarted.broken().is_some_and(|r| r.contains("forked")),
        "{:?}",
        restarted.broken()
    );
    // The evidence outlives another restart, whatever the server shows next.
    let mut again = restart(&bob, &mut restarted);
    assert!(again.broken().is_some_and(|r| r.contains("forked")));
    let honest = log.entries[seen as usize - 1].clone();
    again.apply(&bob.device, &bob.provider, honest);
    assert!(again.broken().is_some());
    // A log shorter than the one read before the restart.
    let mut restarted = restart(&bob, &mut b);
    restarted.synced(seen - 1);
    assert!(
        restarted
            .broken()
            .is_some_and(|r| r.contains("rolled back")),
        "{:?}",
        restarted.broken()
    );
    // The next entry must chain on the saved head.
    let mut restarted = restart(&bob, &mut b);
    let mut next = log.entries[seen as usize - 1].clone();
    next.seq = seen;
    restarted.apply(&bob.device, &bob.provider, next);
    assert!(
        restarted.broken().is_some_and(|r| r.contains("hash chain")),
        "{:?}",
        restarted.broken()
    );
}
