//! Property: three members edit the same filing concurrently; whatever the
//! order in which the envelopes arrive, and however often each is repeated,
//! every replica ends with the same text and the same heads, whether each
//! envelope is applied as it arrives or all in one batch at the end.
//! Duplicates are dropped, changes whose dependencies are missing wait,
//! nothing is lost.

use amicus_core::StreamId;
use amicus_core::document::{Received, Replica, filing};
use amicus_core::space::{HistoryPolicy, Role};
use proptest::prelude::*;

use crate::support::{Member, space_with};

fn keyring(m: &Member) -> &amicus_core::keyring::KeyRing {
    m.space.as_ref().unwrap().keyring()
}

/// Each member makes `rounds` batches of edits; returns every envelope in
/// the order it was produced and the members' replicas.
fn concurrent_edits(members: &[Member], rounds: usize) -> (Vec<Replica>, Vec<Vec<u8>>) {
    let stream = StreamId::random();
    let mut replicas: Vec<Replica> = members
        .iter()
        .map(|m| Replica::new(stream, &m.device))
        .collect();
    let mut envelopes = Vec::new();
    filing::init(replicas[0].doc(), "Requête en annulation").unwrap();
    let first = replicas[0]
        .flush(keyring(&members[0]), &members[0].device, [0; 32])
        .unwrap()
        .unwrap();
    for (r, m) in replicas.iter_mut().zip(members).skip(1) {
        r.receive(keyring(m), &first, None).unwrap();
    }
    envelopes.push(first);
    for round in 0..rounds {
        for (i, (r, m)) in replicas.iter_mut().zip(members).enumerate() {
            let doc = r.doc();
            let len = filing::body(doc).unwrap().chars().count();
            filing::splice(
                doc,
                len / 2,
                0,
                &format!("[{}:{round} détenu·e·s]", m.identity.user()),
            )
            .unwrap();
            if round % 2 == 0 {
                filing::format(doc, 0, 1.min(len), "bold", true).unwrap();
            }
            if i == 0 && round == 0 {
                filing::comment(doc, "t1", 0, 3, "amina", "Citer l'arrêt", 0).unwrap();
            }
            if let Some(env) = r.flush(keyring(m), &m.device, [0; 32]).unwrap() {
                envelopes.push(env);
            }
        }
    }
    (replicas, envelopes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn replicas_converge_whatever_the_order_and_duplicates(seed in any::<u64>(), dup_every in 1usize..5) {
        let members = space_with(&["amina", "bertrand", "chloe"], Role::Contributor, HistoryPolicy::Full);
        let (mut replicas, envelopes) = concurrent_edits(&members, 4);
        // A fresh replica per member receives everything in a shuffled order with duplicates.
        let mut order: Vec<usize> = (0..envelopes.len()).chain((0..envelopes.len()).step_by(dup_every)).collect();
        let mut state = seed | 1;
        for i in (1..order.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            order.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let stream = replicas[0].stream();
        for (r, m) in replicas.iter_mut().zip(&members) {
            let mut dupes = 0;
            for &i in &order {
                match r.receive(m.space.as_ref().unwrap().keyring(), &envelopes[i], None).unwrap() {
                    Received::Duplicate => dupes += 1,
                    Received::Applied { .. } | Received::Snapshot | Received::Queued { .. } => {}
                }
            }
            prop_assert!(dupes >= order.len() - envelopes.len());
            prop_assert_eq!(r.pending(), 0);
        }
        let mut fresh = Replica::new(stream, &members[0].device);
        for &i in &order {
            fresh.receive(members[0].space.as_ref().unwrap().keyring(), &envelopes[i], None).unwrap();
        }
        // One more receives everything in a batch applied at the end, as a
        // device reading a long log does.
        let mut batched = Replica::new(stream, &members[1].device);
        let mut queued = 0;
        for &i in &order {
            match batched.receive_later(members[1].space.as_ref().unwrap().keyring(), &envelopes[i], None).unwrap() {
                Received::Queued { .. } => queued += 1,
                Received::Duplicate => {}
                other => prop_assert!(false, "{other:?}"),
            }
        }
        prop_assert_eq!(queued, envelopes.len());
        let reference = (replicas[0].heads(), filing::body(replicas[0].doc()).unwrap());
        for r in replicas.iter_mut().chain([&mut fresh, &mut batched]) {
            prop_assert_eq!(&(r.heads(), filing::body(r.doc()).unwrap()), &reference);
            prop_assert_eq!(filing::title(r.doc()).unwrap(), "Requête en annulation");
            prop_assert_eq!(filing::threads(r.doc(), &Default::default()).unwrap().len(), 1);
        }
        prop_assert!(reference.1.contains("chloe:3"));
    }
}

#[test]
fn a_replayed_envelope_changes_nothing() {
    let members = space_with(
        &["amina", "bertrand"],
        Role::Contributor,
        HistoryPolicy::Full,
    );
    let (mut replicas, envelopes) = concurrent_edits(&members, 2);
    let r = &mut replicas[1];
    for env in &envelopes {
        r.receive(keyring(&members[1]), env, None).unwrap();
    }
    let before = (r.heads(), filing::body(r.doc()).unwrap());
    for env in &envelopes {
        assert_eq!(
            r.receive(keyring(&members[1]), env, None).unwrap(),
            Received::Duplicate
        );
    }
    assert_eq!((r.heads(), filing::body(r.doc()).unwrap()), before);
}
