//! Property: authorization lives in MLS consensus. Every member judges every
//! commit against the same policy, so a non-manager's add or remove is
//! refused by all, and members that accept the same commits agree on the
//! epoch authenticator.

use amicus_core::space::{HistoryPolicy, Role, SpaceError};

use crate::support::{Member, deliver_commit, space_with};

#[test]
fn members_agree_on_epoch_and_authenticator() {
    let members = space_with(
        &["amina", "bertrand", "chloe"],
        Role::Contributor,
        HistoryPolicy::Full,
    );
    let codes: Vec<_> = members
        .iter()
        .map(|m| m.space.as_ref().unwrap().epoch_authenticator())
        .collect();
    assert!(codes.windows(2).all(|w| w[0] == w[1]));
    assert!(members.iter().all(|m| m.epoch() == 1));
    let roster = members[0].space.as_ref().unwrap().members().unwrap();
    assert_eq!(roster.len(), 3);
}

#[test]
fn a_non_manager_cannot_add_or_remove() {
    let mut members = space_with(
        &["amina", "bertrand", "chloe"],
        Role::Contributor,
        HistoryPolicy::Full,
    );
    let eve = Member::new("eve");
    let invite = Member::invitation(&[&eve], Role::SpaceManager);
    let b = &mut members[1];
    // Locally refused...
    let err =
        b.space
            .as_mut()
            .unwrap()
            .add_members(&b.provider, &b.device, &[invite], (1, [0; 32]));
    assert!(matches!(err, Err(SpaceError::Forbidden)), "{err:?}");
}

#[test]
fn a_removed_member_is_out_and_the_others_move_on() {
    let mut members = space_with(
        &["amina", "bertrand", "chloe"],
        Role::Contributor,
        HistoryPolicy::Full,
    );
    let chloe = members[2].device.id();
    let (a, rest) = members.split_first_mut().unwrap();
    let pending = a
        .space
        .as_mut()
        .unwrap()
        .remove_devices(&a.provider, &a.device, &[chloe], (1, [0; 32]))
        .unwrap();
    let (b, c) = rest.split_at_mut(1);
    deliver_commit(a, &pending, &mut [&mut b[0]]);
    let c = &mut c[0];
    let provider = &c.provider;
    let out = c
        .space
        .as_mut()
        .unwrap()
        .process(
            provider,
            &pending.commit,
            amicus_core::space::Content::Commit,
        )
        .unwrap();
    assert!(
        matches!(
            out,
            amicus_core::space::Processed::Commit {
                removed_self: true,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(!c.space.as_ref().unwrap().is_active());
    assert_eq!(members[0].epoch(), 2);
    assert_eq!(members[1].epoch(), 2);
}

/// A contributor whose client skips its own checks (a malicious or buggy
/// device) commits an add and a removal: every other member refuses both
/// while processing them, and stays in the epoch it was in.
#[test]
fn every_other_member_refuses_a_non_managers_add_or_remove() {
    for attack in ["add", "remove"] {
        let mut members = space_with(
            &["amina", "bertrand", "chloe"],
            Role::Contributor,
            HistoryPolicy::Full,
        );
        let eve = Member::new("eve");
        let chloe = members[2].device.id();
        let b = &mut members[1];
        let space = b.space.as_mut().unwrap();
        space.dangerous_skip_local_role_checks();
        let pending = match attack {
            "add" => space.add_members(
                &b.provider,
                &b.device,
                &[Member::invitation(&[&eve], Role::SpaceManager)],
                (1, [0; 32]),
            ),
            _ => space.remove_devices(&b.provider, &b.device, &[chloe], (1, [0; 32])),
        }
        .unwrap();
        for i in [0, 2] {
            let m = &mut members[i];
            let before = m.space.as_ref().unwrap().epoch_authenticator();
            let result = m.space.as_mut().unwrap().process(
                &m.provider,
                &pending.commit,
                amicus_core::space::Content::Commit,
            );
            assert!(
                matches!(result, Err(SpaceError::PolicyViolation(_))),
                "{attack}: {result:?}"
            );
            assert_eq!(m.epoch(), 1);
            assert_eq!(m.space.as_ref().unwrap().epoch_authenticator(), before);
        }
    }
}

/// A `since-join` space never becomes `full`: its next record would hand
/// on the secret of an epoch written for the members of then only, and
/// every later joiner would read it. Refused by the manager's own client
/// and, if it skips its checks, by every other member.
#[test]
fn a_since_join_space_never_opens_its_history_to_joiners() {
    let mut m = space_with(
        &["amina", "bertrand", "chloe"],
        Role::Contributor,
        HistoryPolicy::SinceJoin,
    );
    let (amina, rest) = m.split_first_mut().unwrap();
    let space = amina.space.as_mut().unwrap();
    let mut policy = space.policy().unwrap();
    policy.history = HistoryPolicy::Full;
    let local = space.change_policy(&amina.provider, &amina.device, policy.clone(), (1, [0; 32]));
    assert!(
        matches!(local, Err(SpaceError::PolicyViolation(_))),
        "{local:?}"
    );
    space.dangerous_skip_local_role_checks();
    let pending = space
        .change_policy(&amina.provider, &amina.device, policy, (1, [0; 32]))
        .unwrap();
    for other in rest.iter_mut() {
        let before = other.epoch();
        let err = other
            .space
            .as_mut()
            .unwrap()
            .process(
                &other.provider,
                &pending.commit,
                amicus_core::space::Content::Commit,
            )
            .expect_err("refused");
        assert!(matches!(err, SpaceError::PolicyViolation(_)), "{err:?}");
        assert_eq!(other.epoch(), before);
    }
}
