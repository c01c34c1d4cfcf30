//! Property: an epoch record is believed only from the device whose commit
//! began the epoch or from a space manager of it. Any member can seal a
//! record (a Reader included), and a joiner takes the previous epoch's
//! secret and roster from the record it accepts: a Reader's forged record,
//! even read first, neither hides the case file from a joiner nor makes it
//! read text "by Amina" that Amina never wrote.

use amicus_core::StreamId;
use amicus_core::UserId;
use amicus_core::document::{Replica, filing};
use amicus_core::envelope::Kind;
use amicus_core::identity::UserIdentity;
use amicus_core::keyring::{
    EpochRecord, EpochSecret, KeyRing, KeyRingError, PreviousEpoch, RosterEntry,
};
use amicus_core::space::{Role, Space};

use crate::support::{Member, deliver_commit, space_with};

/// A filing of `member`'s, sealed in its current epoch.
fn filing_of(member: &Member, stream: StreamId, text: &str) -> Vec<u8> {
    let mut replica = Replica::new(stream, &member.device);
    filing::init(replica.doc(), text).unwrap();
    replica
        .flush(
            member.space.as_ref().unwrap().keyring(),
            &member.device,
            [0; 32],
        )
        .unwrap()
        .unwrap()
}

fn record_of(member: &Member) -> Vec<u8> {
    member
        .space
        .as_ref()
        .unwrap()
        .seal_epoch_record(&member.device, [0; 32])
        .unwrap()
}

/// Amina adds `joiner` (a Reader); every other member of `m` follows.
fn add(m: &mut [Member], joiner: &mut Member) {
    let (a, rest) = m.split_first_mut().unwrap();
    let pending = a
        .space
        .as_mut()
        .unwrap()
        .add_members(
            &a.provider,
            &a.device,
            &[Member::invitation(&[joiner], Role::Reader)],
            (9, [0; 32]),
        )
        .unwrap();
    let mut others: Vec<&mut Member> = rest.iter_mut().collect();
    deliver_commit(a, &pending, &mut others);
    joiner.join(pending.welcome.as_ref().unwrap());
}

#[test]
fn a_readers_forged_record_changes_nothing_a_joiner_reads() {
    // Amina manages the space; Bruno is a Reader. In epoch 1 Amina files
    // her text; her record of epoch 1 hands on epoch 0.
    let mut m = space_with(&["amina", "bruno"], Role::Reader, Default::default());
    let stream = StreamId::random();
    let genuine = filing_of(&m[0], stream, "Requête — texte d'Amina");
    let mut records = vec![record_of(&m[0])];
    let mut chloe = Member::new("chloe");
    add(&mut m, &mut chloe);
    let space_id = m[0].space.as_ref().unwrap().id();

    // Bruno forges the record of epoch 2 before Amina writes hers: epoch 1
    // was, he says, another secret, with a device of his posing as Amina's.
    let posing = UserIdentity::generate(UserId::new("amina").unwrap()).new_device();
    let secret: EpochSecret = postcard::from_bytes(&[7u8; 32]).unwrap();
    let fake_roster = vec![RosterEntry {
        user: UserId::new("amina").unwrap(),
        device: posing.id(),
        signature_key: posing.public_key(),
        role: Role::SpaceManager,
    }];
    let mut fake_ring = KeyRing::new(space_id);
    fake_ring.insert(1, secret.clone(), Some(fake_roster.clone()));
    let mut replica = Replica::new(stream, &posing);
    filing::init(replica.doc(), "Requête — retirée, signé Amina").unwrap();
    let forged_text = replica
        .flush(&fake_ring, &posing, [0; 32])
        .unwrap()
        .unwrap();
    let bruno = &m[1];
    let space = bruno.space.as_ref().unwrap();
    let forged = EpochRecord {
        epoch: 2,
        roster: space.keyring().roster(2).unwrap().clone(),
        intake_epoch: None,
        previous: Some(PreviousEpoch {
            secret,
            roster: fake_roster,
            committer: Some(posing.id()),
        }),
    };
    let forged_record = space
        .keyring()
        .seal(
            &bruno.device,
            Kind::EpochRecord,
            Space::records_stream(space_id),
            1,
            [0; 32],
            &postcard::to_allocvec(&forged).unwrap(),
        )
        .unwrap();
    records.push(record_of(&m[0]));

    // Chloe reads the records in log order: Bruno's first.
    let joined = chloe.space.as_mut().unwrap();
    assert_eq!(
        joined.ingest_epoch_record(&forged_record).unwrap_err(),
        KeyRingError::RecordNotAuthorized
    );
    for r in records.iter().rev() {
        joined.ingest_epoch_record(r).unwrap();
    }
    let ring = joined.keyring();
    let opened = ring.open(&genuine, stream, Some(1)).unwrap();
    assert_eq!(opened.device, m[0].device.id());
    assert!(ring.open(&forged_text, stream, Some(1)).is_err());
}

#[test]
fn the_record_of_a_committer_who_is_no_manager_is_taken_and_no_other_readers() {
    // Bruno, a Reader, makes the commit of epoch 2 (a key update); he and
    // Chloe, another Reader, both write its record. Dave joins in epoch 3.
    let mut m = space_with(
        &["amina", "bruno", "chloe"],
        Role::Reader,
        Default::default(),
    );
    let stream = StreamId::random();
    let early = filing_of(&m[0], stream, "Chronologie des faits");
    let (a, rest) = m.split_first_mut().unwrap();
    let (b, c) = rest.split_at_mut(1);
    let b = &mut b[0];
    let pending = b
        .space
        .as_mut()
        .unwrap()
        .self_update(&b.provider, &b.device, (3, [0; 32]))
        .unwrap();
    deliver_commit(b, &pending, &mut [a, &mut c[0]]);
    let by_committer = record_of(&m[1]);
    let by_other_reader = record_of(&m[2]);
    assert!(m[1].space.as_ref().unwrap().may_record());
    assert!(!m[2].space.as_ref().unwrap().may_record());
    let mut dave = Member::new("dave");
    add(&mut m, &mut dave);
    let latest = record_of(&m[0]);

    let space = dave.space.as_mut().unwrap();
    // Amina's record of epoch 3 names Bruno as the committer of epoch 2.
    space.ingest_epoch_record(&latest).unwrap();
    assert_eq!(
        space.ingest_epoch_record(&by_other_reader).unwrap_err(),
        KeyRingError::RecordNotAuthorized
    );
    space.ingest_epoch_record(&by_committer).unwrap();
    assert!(space.keyring().open(&early, stream, Some(1)).is_ok());
}
