//! Property: a member's device gives a drop box's link only for the intake
//! key its space derives and holds in force. A server that serves another
//! key (its own, or the space's from before a removal) gets no link, so a
//! witness's page, which pins the key by its fingerprint, never seals to
//! it. A sealed part opens whole with the space's key or not at all.

use std::collections::BTreeMap;

use amicus_core::api::{DropBoxRecord, DropBoxes, PublishedIntake};
use amicus_core::dropbox::{self, KeyState, OpenError};
use amicus_core::intake::drop::{self, BoxId, Kind, Part};
use amicus_core::intake::{self, IntakePublicKey, IntakeSecretKey};
use amicus_core::space::{HistoryPolicy, Role};

use crate::support::{deliver_commit, space_with};

fn listing(dropbox: BoxId, key: &IntakePublicKey, epoch: u64) -> DropBoxes {
    DropBoxes {
        intake: Some(PublishedIntake {
            recipient: key.to_age_recipient_string(),
            epoch,
        }),
        boxes: vec![DropBoxRecord {
            id: dropbox.to_hex(),
            created: 1,
            created_by: "amina".into(),
            expires: 2,
            quota: 1 << 20,
            used: 0,
            closed: None,
            submissions: vec![],
        }],
    }
}

#[test]
fn a_drop_box_link_is_given_only_for_the_spaces_key_in_force() {
    let mut m = space_with(
        &["amina", "bertrand", "chloe"],
        Role::Contributor,
        HistoryPolicy::Full,
    );
    let (a, rest) = m.split_first_mut().unwrap();
    let key = a.space.as_mut().unwrap().open_intake().unwrap();
    let epoch = a.space.as_ref().unwrap().epoch();
    let id = BoxId::random();
    let labels = BTreeMap::from([(id.to_hex(), "Témoins de Goma".to_owned())]);

    let checked = dropbox::check(a.space.as_ref().unwrap(), &labels, listing(id, &key, epoch));
    assert_eq!(checked.key, KeyState::Current);
    assert_eq!(checked.boxes[0].label.as_deref(), Some("Témoins de Goma"));
    let fragment = checked.boxes[0]
        .fragment
        .clone()
        .expect("a link for the key in force");
    let (parsed, fingerprint) = drop::parse_fragment(&fragment).unwrap();
    assert_eq!(parsed, id);
    assert!(drop::key_matches(&key, fingerprint));

    // A server that serves its own key, or the space's key under another
    // epoch, gets no link.
    let swapped = IntakeSecretKey::generate().public();
    for served in [listing(id, &swapped, epoch), listing(id, &key, epoch + 5)] {
        let checked = dropbox::check(a.space.as_ref().unwrap(), &labels, served);
        assert_eq!(checked.key, KeyState::Foreign);
        assert_eq!(checked.boxes[0].fragment, None);
    }

    // A removal rotates the key: the old one is stale (no link), the new
    // one current, and the removed member cannot derive it.
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
    c.space
        .as_mut()
        .unwrap()
        .process(
            &c.provider,
            &pending.commit,
            amicus_core::space::Content::Commit,
        )
        .unwrap();
    let (new_epoch, new_key) = a.space.as_ref().unwrap().intake_in_force().unwrap();
    assert!(new_epoch > epoch);
    assert_ne!(new_key, key);
    let stale = dropbox::check(a.space.as_ref().unwrap(), &labels, listing(id, &key, epoch));
    assert_eq!(stale.key, KeyState::Stale);
    assert_eq!(stale.boxes[0].fragment, None);
    let current = dropbox::check(
        a.space.as_ref().unwrap(),
        &labels,
        listing(id, &new_key, new_epoch),
    );
    assert_eq!(current.key, KeyState::Current);
    assert!(current.boxes[0].fragment.is_some());
    assert!(c.space.as_ref().unwrap().intake_key_of(new_epoch).is_none());

    // A member whose device has not read where the intake stands (Bertrand
    // never learned it was opened) gives no link, even for a key of the
    // space: the server could be serving one from before a removal.
    let b_space = b[0].space.as_ref().unwrap();
    assert_eq!(b_space.intake_in_force(), None);
    for (key, epoch) in [(&key, epoch), (&new_key, new_epoch)] {
        let checked = dropbox::check(b_space, &labels, listing(id, key, epoch));
        assert_eq!(checked.key, KeyState::Unknown);
        assert_eq!(checked.boxes[0].fragment, None);
    }

    // A member (not the one who opened the intake) opens what was sealed
    // to the new key; a part sealed to another key, or altered, gives
    // nothing.
    let b = &b[0];
    let statement = Part::statement("Ils sont venus la nuit.");
    let sealed = intake::seal(&new_key, &statement.encode());
    let opened = dropbox::open_part(b.space.as_ref().unwrap(), new_epoch, &sealed).unwrap();
    assert_eq!(opened, statement);
    assert_eq!(opened.kind, Kind::Statement);
    let elsewhere = intake::seal(&swapped, &statement.encode());
    assert!(matches!(
        dropbox::open_part(b.space.as_ref().unwrap(), new_epoch, &elsewhere),
        Err(OpenError::Sealed(_))
    ));
    let mut altered = sealed.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert!(dropbox::open_part(b.space.as_ref().unwrap(), new_epoch, &altered).is_err());
}
