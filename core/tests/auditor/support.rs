//! Members with their own device, MLS store and view of a space, and a tiny
//! ordered log standing in for the server.

use std::rc::Rc;

use amicus_core::identity::{Device, UserIdentity};
use amicus_core::space::{HistoryPolicy, NewMember, PendingCommit, Processed, Role, Space};
use amicus_core::{MlsProvider, UserId};

/// One device of a user, with its own MLS store and view of one space.
pub struct Member {
    pub identity: Rc<UserIdentity>,
    pub device: Device,
    pub provider: MlsProvider,
    pub space: Option<Space>,
}

impl Member {
    pub fn new(name: &str) -> Self {
        Self::device_of(Rc::new(UserIdentity::generate(UserId::new(name).unwrap())))
    }

    /// Another device certified by the same identity key.
    pub fn device_of(identity: Rc<UserIdentity>) -> Self {
        let device = identity.new_device();
        Self {
            identity,
            device,
            provider: MlsProvider::new(),
            space: None,
        }
    }

    pub fn create_space(&mut self, history: HistoryPolicy) {
        self.space = Some(
            Space::create(
                &self.provider,
                &self.device,
                self.identity.public(),
                history,
            )
            .unwrap(),
        );
    }

    /// What a manager needs to add every device in `devices` (same user).
    pub fn invitation(devices: &[&Member], role: Role) -> NewMember {
        NewMember {
            user: devices[0].identity.user().clone(),
            identity_key: devices[0].identity.public(),
            role,
            key_packages: devices
                .iter()
                .map(|d| d.device.key_packages(&d.provider, 1).unwrap().remove(0))
                .collect(),
            revoked: Vec::new(),
        }
    }

    pub fn join(&mut self, welcome: &[u8]) {
        self.space = Some(
            Space::join(
                &self.provider,
                &self.device,
                &self.identity.public(),
                welcome,
            )
            .unwrap(),
        );
    }

    pub fn epoch(&self) -> u64 {
        self.space.as_ref().unwrap().epoch()
    }
}

/// Runs the commit flow: `committer` staged `pending`; the "server" accepts
/// it; the committer merges; every other listed member processes it.
pub fn deliver_commit(committer: &mut Member, pending: &PendingCommit, others: &mut [&mut Member]) {
    let provider = &committer.provider;
    committer
        .space
        .as_mut()
        .unwrap()
        .commit_accepted(provider)
        .unwrap();
    for m in others.iter_mut() {
        let provider = &m.provider;
        match m
            .space
            .as_mut()
            .unwrap()
            .process(
                provider,
                &pending.commit,
                amicus_core::space::Content::Commit,
            )
            .unwrap()
        {
            Processed::Commit { .. } => {}
            other => panic!("expected a commit, got {other:?}"),
        }
    }
}

/// A space with `names` as members; the first creates it as space manager
/// and adds the others with `role`.
pub fn space_with(names: &[&str], role: Role, history: HistoryPolicy) -> Vec<Member> {
    let mut members: Vec<Member> = names.iter().map(|n| Member::new(n)).collect();
    members[0].create_space(history);
    let invites: Vec<NewMember> = members[1..]
        .iter()
        .map(|m| Member::invitation(&[m], role))
        .collect();
    let (first, rest) = members.split_first_mut().unwrap();
    let pending = first
        .space
        .as_mut()
        .unwrap()
        .add_members(&first.provider, &first.device, &invites, (0, [0; 32]))
        .unwrap();
    deliver_commit(first, &pending, &mut []);
    for m in rest.iter_mut() {
        m.join(pending.welcome.as_ref().unwrap());
    }
    members
}
