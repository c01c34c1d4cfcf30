//! Property: a removed member decrypts nothing written after its removal —
//! no document envelope, no library envelope (file manifests), no intake
//! submission — while the remaining members read all of it. And a joiner
//! reads the whole history under `full`, nothing before its join under
//! `since-join`.

use amicus_core::StreamId;
use amicus_core::document::{Replica, filing};
use amicus_core::envelope::EnvelopeError;
use amicus_core::files::FileSealer;
use amicus_core::intake;
use amicus_core::library;
use amicus_core::space::{HistoryPolicy, Role, Space};

use crate::support::{Member, deliver_commit, space_with};

#[test]
fn a_removed_member_reads_nothing_written_after_its_removal() {
    let mut m = space_with(
        &["amina", "bertrand", "chloe"],
        Role::ContentManager,
        HistoryPolicy::Full,
    );
    let (a, rest) = m.split_first_mut().unwrap();
    let intake_before = a.space.as_mut().unwrap().open_intake().unwrap();
    let chloe = rest[1].device.id();
    let pending = a
        .space
        .as_mut()
        .unwrap()
        .remove_devices(&a.provider, &a.device, &[chloe], (5, [1; 32]))
        .unwrap();
    let (b, c) = rest.split_at_mut(1);
    deliver_commit(a, &pending, &mut [&mut b[0]]);
    let c = &mut c[0];
    let _ = c
        .space
        .as_mut()
        .unwrap()
        .process(
            &c.provider,
            &pending.commit,
            amicus_core::space::Content::Commit,
        )
        .unwrap();

    // After the removal: a document change, a library entry with a file manifest, an intake submission.
    let doc = StreamId::random();
    let mut replica = Replica::new(doc, &a.device);
    filing::init(replica.doc(), "Stratégie confidentielle").unwrap();
    let doc_env = replica
        .flush(a.space.as_ref().unwrap().keyring(), &a.device, [0; 32])
        .unwrap()
        .unwrap();

    let lib_stream = library::stream(a.space.as_ref().unwrap().id());
    let mut lib = Replica::new(lib_stream, &a.device);
    library::init(lib.doc()).unwrap();
    let mut sealer = FileSealer::new("témoignage.pdf", "application/pdf", 3).unwrap();
    sealer.push(b"abc").unwrap();
    let (_, manifest) = sealer.finish().unwrap();
    library::add_file(lib.doc(), &manifest, "").unwrap();
    let lib_env = lib
        .flush(a.space.as_ref().unwrap().keyring(), &a.device, [0; 32])
        .unwrap()
        .unwrap();

    let intake_after = a.space.as_mut().unwrap().intake_keys()[0].public();
    assert_ne!(
        intake_after, intake_before,
        "the intake key rotates at a removal"
    );
    let submission = intake::seal(&intake_after, b"witness statement");

    // The committer's epoch record tells the other members where the intake stands.
    let record = a
        .space
        .as_ref()
        .unwrap()
        .seal_epoch_record(&a.device, [0; 32])
        .unwrap();
    b[0].space
        .as_mut()
        .unwrap()
        .ingest_epoch_record(&record)
        .unwrap();
    assert!(
        c.space
            .as_mut()
            .unwrap()
            .ingest_epoch_record(&record)
            .is_err()
    );

    // Bertrand, still a member, reads everything.
    let kb = b[0].space.as_ref().unwrap().keyring();
    Replica::new(doc, &b[0].device)
        .receive(kb, &doc_env, None)
        .unwrap();
    Replica::new(lib_stream, &b[0].device)
        .receive(kb, &lib_env, None)
        .unwrap();
    assert_eq!(
        intake::open(
            &b[0].space.as_ref().unwrap().intake_keys(),
            &submission,
            1 << 20
        )
        .unwrap(),
        b"witness statement"
    );

    // Chloe, removed, reads none of it.
    let kc = c.space.as_ref().unwrap().keyring();
    let new_epoch = a.epoch();
    assert!(kc.secret(new_epoch).is_none());
    for (stream, env) in [(doc, &doc_env), (lib_stream, &lib_env)] {
        let err = Replica::new(stream, &c.device)
            .receive(kc, env, None)
            .unwrap_err();
        assert!(
            matches!(err, amicus_core::document::DocumentError::Envelope(EnvelopeError::UnknownEpoch(e)) if e == new_epoch),
            "{err:?}"
        );
    }
    assert!(
        intake::open(
            &c.space.as_ref().unwrap().intake_keys(),
            &submission,
            1 << 20
        )
        .is_err()
    );
}

fn history_for(policy: HistoryPolicy) -> (usize, usize) {
    let mut m = space_with(&["amina"], Role::Contributor, policy);
    let a = &mut m[0];
    let stream = StreamId::random();
    let mut replica = Replica::new(stream, &a.device);
    filing::init(replica.doc(), "Dossier").unwrap();
    let mut log = vec![
        replica
            .flush(a.space.as_ref().unwrap().keyring(), &a.device, [0; 32])
            .unwrap()
            .unwrap(),
    ];
    let mut records = vec![
        a.space
            .as_ref()
            .unwrap()
            .seal_epoch_record(&a.device, [0; 32])
            .unwrap(),
    ];
    // Three more epochs, each with an edit and an epoch record.
    for i in 0..3 {
        let p = a
            .space
            .as_mut()
            .unwrap()
            .self_update(&a.provider, &a.device, (i, [0; 32]))
            .unwrap();
        deliver_commit(a, &p, &mut []);
        records.push(
            a.space
                .as_ref()
                .unwrap()
                .seal_epoch_record(&a.device, [0; 32])
                .unwrap(),
        );
        filing::splice(replica.doc(), 0, 0, &format!("§{i} ")).unwrap();
        log.push(
            replica
                .flush(a.space.as_ref().unwrap().keyring(), &a.device, [0; 32])
                .unwrap()
                .unwrap(),
        );
    }
    // Bertrand joins now.
    let mut b = Member::new("bertrand");
    let invite = Member::invitation(&[&b], Role::Reader);
    let p = a
        .space
        .as_mut()
        .unwrap()
        .add_members(&a.provider, &a.device, &[invite], (9, [0; 32]))
        .unwrap();
    deliver_commit(a, &p, &mut []);
    records.push(
        a.space
            .as_ref()
            .unwrap()
            .seal_epoch_record(&a.device, [0; 32])
            .unwrap(),
    );
    b.join(p.welcome.as_ref().unwrap());
    let space: &mut Space = b.space.as_mut().unwrap();
    // Walk back through the records, newest first.
    for r in records.iter().rev() {
        let _ = space.ingest_epoch_record(r);
    }
    let mut replica_b = Replica::new(stream, &b.device);
    let readable = log
        .iter()
        .filter(|env| replica_b.receive(space.keyring(), env, None).is_ok())
        .count();
    (readable, log.len())
}

#[test]
fn a_joiner_reads_all_history_under_full_and_none_under_since_join() {
    assert_eq!(history_for(HistoryPolicy::Full), (4, 4));
    assert_eq!(history_for(HistoryPolicy::SinceJoin), (0, 4));
}
