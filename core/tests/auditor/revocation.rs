//! Property: a revoked device is out for good. The revocation is a
//! statement signed by its user's identity key; any member of a space may
//! commit it (a Reader included), every member checks the signature, the
//! device leaves in that commit, and from then on the space's policy lists
//! it, so no commit that adds it again is accepted — not even after its
//! user left the space and came back. A device without the identity key
//! (the seized phone itself) can neither revoke nor remove its user's other
//! devices.

use std::rc::Rc;

use amicus_core::UserId;
use amicus_core::identity::{DeviceRevocation, IdentityError, Revocation, UserIdentity};
use amicus_core::space::{Content, HistoryPolicy, Processed, Role, SpaceError};

use crate::support::{Member, deliver_commit, space_with};

/// Amina's space (she manages it), with Bruno as a Reader on his laptop
/// (which holds his identity key) and his phone, and Chloe as a
/// contributor: `[amina, laptop, phone, chloe]`.
fn bruno_on_two_devices() -> Vec<Member> {
    let mut amina = Member::new("amina");
    amina.create_space(HistoryPolicy::Full);
    let bruno = Rc::new(UserIdentity::generate(UserId::new("bruno").unwrap()));
    let mut laptop = Member::device_of(bruno.clone());
    let mut phone = Member::device_of(bruno);
    let mut chloe = Member::new("chloe");
    let invites = [
        Member::invitation(&[&laptop, &phone], Role::Reader),
        Member::invitation(&[&chloe], Role::Contributor),
    ];
    let pending = amina
        .space
        .as_mut()
        .unwrap()
        .add_members(&amina.provider, &amina.device, &invites, (0, [0; 32]))
        .unwrap();
    deliver_commit(&mut amina, &pending, &mut []);
    for m in [&mut laptop, &mut phone, &mut chloe] {
        m.join(pending.welcome.as_ref().unwrap());
    }
    vec![amina, laptop, phone, chloe]
}

/// Bruno's laptop revokes his phone in the space; Amina and Chloe accept.
fn revoke_phone(m: &mut [Member]) -> Vec<u8> {
    let revocation = m[1].identity.revoke(m[2].device.id());
    let [amina, laptop, _, chloe] = m else {
        unreachable!("four members")
    };
    let pending = laptop
        .space
        .as_mut()
        .unwrap()
        .revoke_device(&laptop.provider, &laptop.device, &revocation, (1, [0; 32]))
        .unwrap();
    deliver_commit(laptop, &pending, &mut [amina, chloe]);
    pending.commit
}

fn refused_by(m: &mut Member, commit: &[u8]) -> SpaceError {
    let before = (m.epoch(), m.space.as_ref().unwrap().epoch_authenticator());
    let err = m
        .space
        .as_mut()
        .unwrap()
        .process(&m.provider, commit, Content::Commit)
        .expect_err("the commit must be refused");
    let after = (m.epoch(), m.space.as_ref().unwrap().epoch_authenticator());
    assert_eq!(before, after, "a refused commit changes nothing");
    err
}

#[test]
fn a_reader_revokes_their_seized_phone_and_every_member_removes_it() {
    let mut m = bruno_on_two_devices();
    let commit = revoke_phone(&mut m);
    let phone = m[2].device.id();
    for member in [&m[0], &m[1], &m[3]] {
        let space = member.space.as_ref().unwrap();
        assert_eq!(space.epoch(), 2);
        assert!(
            space
                .policy()
                .unwrap()
                .is_revoked(phone, &UserId::new("bruno").unwrap())
        );
        assert!(space.members().unwrap().iter().all(|e| e.device != phone));
    }
    let code = |i: usize| m[i].space.as_ref().unwrap().epoch_authenticator();
    assert_eq!(code(0), code(1));
    assert_eq!(code(0), code(3));
    // The phone, handed the commit, learns it is out.
    let phone = &mut m[2];
    let out = phone
        .space
        .as_mut()
        .unwrap()
        .process(&phone.provider, &commit, Content::Commit)
        .unwrap();
    assert!(
        matches!(
            out,
            Processed::Commit {
                removed_self: true,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(!phone.space.as_ref().unwrap().is_active());
}

#[test]
fn no_device_revokes_or_removes_its_users_other_devices_without_the_identity_key() {
    let mut m = bruno_on_two_devices();
    let laptop = m[1].device.id();
    // A revocation signed by anything but Bruno's identity key.
    let mallory = UserIdentity::generate(UserId::new("bruno").unwrap());
    let forged = mallory.revoke(laptop);
    let phone = &mut m[2];
    let err = phone.space.as_mut().unwrap().revoke_device(
        &phone.provider,
        &phone.device,
        &forged,
        (1, [0; 32]),
    );
    assert!(
        matches!(err, Err(SpaceError::Identity(IdentityError::BadRevocation))),
        "{err:?}"
    );
    // A phone that skips its own checks: removing its user's other device
    // without a revocation, or listing a forged one, is refused by all.
    let space = phone.space.as_mut().unwrap();
    space.dangerous_skip_local_role_checks();
    let removal = space
        .remove_devices(&phone.provider, &phone.device, &[laptop], (1, [0; 32]))
        .unwrap()
        .commit;
    space.commit_rejected(&phone.provider).unwrap();
    let mut policy = space.policy().unwrap();
    policy
        .revoked
        .insert((laptop, forged.user.clone()), forged.signature);
    let listing = space
        .change_policy(&phone.provider, &phone.device, policy, (1, [0; 32]))
        .unwrap()
        .commit;
    for i in [0, 1, 3] {
        let err = refused_by(&mut m[i], &removal);
        assert!(matches!(err, SpaceError::PolicyViolation(_)), "{err:?}");
        let err = refused_by(&mut m[i], &listing);
        assert!(
            matches!(
                err,
                SpaceError::Identity(IdentityError::BadRevocation) | SpaceError::PolicyViolation(_)
            ),
            "{err:?}"
        );
    }
    // A revocation signed with the phone's own device key is no better.
    let by_device = DeviceRevocation {
        signature: Revocation(
            m[2].device
                .sign_statement(amicus_core::identity::Statement::Provenance, &laptop.0),
        ),
        ..forged
    };
    assert!(by_device.verify(&m[2].identity.public()).is_err());
}

#[test]
fn a_revoked_device_is_never_added_back() {
    let mut m = bruno_on_two_devices();
    revoke_phone(&mut m);
    let phone_invite = Member::invitation(&[&m[2]], Role::Reader);
    let amina = &mut m[0];
    // Locally refused, while Bruno is a member...
    let err = amina.space.as_mut().unwrap().add_members(
        &amina.provider,
        &amina.device,
        std::slice::from_ref(&phone_invite),
        (2, [0; 32]),
    );
    assert!(
        matches!(err, Err(SpaceError::PolicyViolation(_))),
        "{err:?}"
    );
    // ...and refused by every other member when a manager skips the check.
    let space = amina.space.as_mut().unwrap();
    space.dangerous_skip_local_role_checks();
    let readd = space
        .add_members(
            &amina.provider,
            &amina.device,
            std::slice::from_ref(&phone_invite),
            (2, [0; 32]),
        )
        .unwrap()
        .commit;
    space.commit_rejected(&amina.provider).unwrap();
    for i in [1, 3] {
        let err = refused_by(&mut m[i], &readd);
        assert!(matches!(err, SpaceError::PolicyViolation(_)), "{err:?}");
    }

    // Bruno removed from the space, then invited again without the
    // revocation: the space still lists the phone as revoked.
    let bruno = m[1].identity.user().clone();
    let amina = &mut m[0];
    let pending = amina
        .space
        .as_mut()
        .unwrap()
        .remove_user(&amina.provider, &amina.device, &bruno, (2, [0; 32]))
        .unwrap();
    let [amina, _, _, chloe] = &mut m[..] else {
        unreachable!("four members")
    };
    deliver_commit(amina, &pending, &mut [chloe]);
    let fresh = Member::device_of(m[1].identity.clone());
    let both = Member::invitation(&[&fresh, &m[2]], Role::Reader);
    let phone = m[2].device.id();
    let amina = &mut m[0];
    let space = amina.space.as_mut().unwrap();
    assert!(
        space
            .policy()
            .unwrap()
            .is_revoked(phone, &UserId::new("bruno").unwrap())
    );
    // (Amina still skips her own checks: only Chloe's check is left.)
    let pending = space
        .add_members(&amina.provider, &amina.device, &[both], (3, [0; 32]))
        .unwrap();
    space.commit_rejected(&amina.provider).unwrap();
    let err = refused_by(&mut m[3], &pending.commit);
    assert!(matches!(err, SpaceError::PolicyViolation(_)), "{err:?}");
}

#[test]
fn no_commit_takes_a_revocation_back() {
    let mut m = bruno_on_two_devices();
    revoke_phone(&mut m);
    let amina = &mut m[0];
    let space = amina.space.as_mut().unwrap();
    let mut policy = space.policy().unwrap();
    policy.revoked.clear();
    let pending = space
        .change_policy(&amina.provider, &amina.device, policy, (2, [0; 32]))
        .unwrap();
    for i in [1, 3] {
        let err = refused_by(&mut m[i], &pending.commit);
        assert!(matches!(err, SpaceError::PolicyViolation(_)), "{err:?}");
    }
}

#[test]
fn a_member_revokes_only_its_own_devices_never_another_users_device_id() {
    // Amina's space with Chloe; Bruno is not in it yet.
    let [mut amina, mut chloe]: [Member; 2] =
        space_with(&["amina", "chloe"], Role::Contributor, HistoryPolicy::Full)
            .try_into()
            .unwrap_or_else(|_| unreachable!("two members"));
    let bruno = Rc::new(UserIdentity::generate(UserId::new("bruno").unwrap()));
    let mut laptop = Member::device_of(bruno.clone());
    let mut phone = Member::device_of(bruno);
    // Chloe signs a revocation of "her" device carrying the id of Bruno's
    // phone, and commits it: valid, but it revokes nothing of Bruno's.
    let squatted = chloe.identity.revoke(phone.device.id());
    let pending = chloe
        .space
        .as_mut()
        .unwrap()
        .revoke_device(&chloe.provider, &chloe.device, &squatted, (1, [0; 32]))
        .unwrap();
    deliver_commit(&mut chloe, &pending, &mut [&mut amina]);
    let policy = amina.space.as_ref().unwrap().policy().unwrap();
    assert!(policy.is_revoked(phone.device.id(), &UserId::new("chloe").unwrap()));
    assert!(!policy.is_revoked(phone.device.id(), &UserId::new("bruno").unwrap()));
    // Amina invites Bruno with both devices: both are added and join.
    let pending = amina
        .space
        .as_mut()
        .unwrap()
        .add_members(
            &amina.provider,
            &amina.device,
            &[Member::invitation(&[&laptop, &phone], Role::Reader)],
            (2, [0; 32]),
        )
        .expect("a device id another member listed under itself blocks nobody");
    deliver_commit(&mut amina, &pending, &mut [&mut chloe]);
    for m in [&mut laptop, &mut phone] {
        m.join(pending.welcome.as_ref().unwrap());
    }
    let members = chloe.space.as_ref().unwrap().members().unwrap();
    assert!(
        members
            .iter()
            .any(|e| e.device == phone.device.id() && e.user.as_str() == "bruno")
    );
    assert_eq!(phone.epoch(), chloe.epoch());
}
