//! Confidential spaces: one MLS group (RFC 9420, openmls) per space.
//!
//! - Ciphersuite 0x0003 for the group and every KeyPackage; handshake and
//!   application messages only as PrivateMessage, padded to 256 bytes; the
//!   ratchet tree rides in the Welcome; no GroupInfo is ever published and
//!   external commits are refused (they would be PublicMessages, which the
//!   pure-ciphertext policy rejects, and [`Space::process`] refuses any
//!   non-member sender besides).
//! - **Authorization inside MLS consensus.** Roles and the history policy
//!   live in the GroupContext extension [`SPACE_POLICY_EXTENSION`]
//!   ([`SpacePolicy`]), together with the identity key pinned for each user.
//!   Every member checks each proposal's sender and the committer against the
//!   policy in force while processing the staged commit, before merging it:
//!   adds, removes and policy changes need a space manager; anyone may remove
//!   itself; no update may change a leaf's credential or signature key; every
//!   new leaf must carry a device certificate signed by the pinned identity
//!   key of its user. Since the policy is part of the group context, every
//!   member judges the same commit the same way.
//! - **Pending commits.** A commit is staged, sent, and merged only after the
//!   server acknowledges it ([`Space::commit_accepted`]); on a conflict the
//!   loser discards it ([`Space::commit_rejected`]), processes the winner and
//!   re-applies its intent.
//! - Every commit's authenticated data ([`CommitAad`], in clear) carries the
//!   log position and hash it builds on and the device-level roster change, so
//!   the server can route Welcomes without reading MLS content; members check
//!   that it matches the commit.

use std::collections::BTreeMap;

use openmls::group::{
    MlsGroupCreateConfig, MlsGroupJoinConfig, PURE_CIPHERTEXT_WIRE_FORMAT_POLICY,
};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    ContentType, CredentialType, Extension, ExtensionType, Extensions, GroupContext, GroupId,
    LeafNodeIndex, LeafNodeParameters, MlsGroup, MlsMessageBodyIn, MlsMessageIn, MlsMessageOut,
    ProcessedMessageContent, Proposal, ProtocolMessage, QueuedProposal,
    RequiredCapabilitiesExtension, Sender, StagedCommit, StagedWelcome, UnknownExtension,
};
use openmls_traits::OpenMlsProvider;
use serde::{Deserialize, Serialize};

use crate::envelope::Kind;
use crate::identity::{
    self, Device, DeviceCertificate, DeviceRevocation, IdentityError, IdentityPublicKey,
    Revocation, SPACE_POLICY_EXTENSION,
};
use crate::keyring::{EXPORTER_LABEL, EpochSecret, KeyRing, Roster, RosterEntry};
use crate::{CIPHERSUITE, DeviceId, MlsProvider, SpaceId, StreamId, UserId};

/// Handshake and application messages are padded to a multiple of this.
pub const MLS_PADDING: usize = 256;
/// The most devices one commit may add (one Welcome).
pub const MAX_ADDS_PER_COMMIT: usize = 1_000;

/// A member's role, in increasing power.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Reads everything; writes nothing but its own key updates.
    Reader,
    /// Writes document changes and files.
    Contributor,
    /// Also writes snapshots and manages the library.
    ContentManager,
    /// Also adds and removes members and changes roles and the history policy.
    SpaceManager,
}

impl Role {
    /// The role's stable name, as every interface shows and reads it:
    /// `reader`, `contributor`, `content_manager`, `space_manager`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Contributor => "contributor",
            Role::ContentManager => "content_manager",
            Role::SpaceManager => "space_manager",
        }
    }

    /// A role from its name ([`Self::as_str`]; a hyphen may stand for the
    /// underscore, as typed on a command line).
    pub fn parse(name: &str) -> Option<Role> {
        Some(match name.replace('-', "_").as_str() {
            "reader" => Role::Reader,
            "contributor" => Role::Contributor,
            "content_manager" => Role::ContentManager,
            "space_manager" => Role::SpaceManager,
            _ => return None,
        })
    }

    /// Whether this role may write an envelope of `kind`.
    pub fn may_write(self, kind: Kind) -> bool {
        match kind {
            Kind::EpochRecord => true,
            Kind::Change => self >= Role::Contributor,
            Kind::Snapshot => self >= Role::ContentManager,
        }
    }
}

/// The form of a space code read aloud or compared on two screens: the
/// first 10 bytes as five groups of four lower-case hex digits. 80 bits:
/// two members who see the same code are in the same group state unless
/// someone found a collision of the authenticator's first 80 bits for a
/// state of its choosing, far beyond reach, and it fits a phone's line.
pub fn space_code(authenticator: &[u8]) -> String {
    authenticator
        .iter()
        .take(10)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|pair| pair.concat())
        .collect::<Vec<_>>()
        .join(" ")
}

/// How much history a joiner may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum HistoryPolicy {
    /// The whole case file (the default for litigation teams): epoch records
    /// hand on each previous epoch's secret.
    #[default]
    Full,
    /// Nothing written before the join. A snapshot carries its document's
    /// whole history, so a document that must hide its past from joiners
    /// needs a fresh lineage (a new document), not just this policy.
    SinceJoin,
}

/// One user of a space's policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyMember {
    /// The identity key pinned for the user; every device of the user in the
    /// group must be certified by it.
    pub identity_key: IdentityPublicKey,
    /// The user's role.
    pub role: Role,
}

/// The GroupContext extension of a space: roles, pinned identity keys,
/// revoked devices and history policy. Encoded as `2 || postcard(SpacePolicy)`;
/// users and devices sorted. Version 1 (no revoked devices) is still read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpacePolicy {
    /// The history policy.
    pub history: HistoryPolicy,
    /// The users and their roles.
    pub members: BTreeMap<UserId, PolicyMember>,
    /// Revoked devices, each under its user (a member can only ever
    /// revoke a device of its own: another user's device with the same id
    /// is not touched) with the identity key's signature of its
    /// [`DeviceRevocation`], checked against the user's pinned key by every
    /// member when the commit that lists it is processed. None may be in
    /// the group, no commit may add one, and none is ever taken off the
    /// list (not even when its user leaves the space and is added again).
    pub revoked: BTreeMap<(DeviceId, UserId), Revocation>,
}

/// Version 1 of the policy, before devices could be revoked.
#[derive(Deserialize)]
struct SpacePolicyV1 {
    history: HistoryPolicy,
    members: BTreeMap<UserId, PolicyMember>,
}

impl SpacePolicy {
    fn to_extension(&self) -> Extension {
        let mut bytes = vec![2u8];
        bytes.extend_from_slice(&postcard::to_allocvec(self).expect("policy always encodes"));
        Extension::Unknown(SPACE_POLICY_EXTENSION, UnknownExtension(bytes))
    }

    /// The group context extensions of a space: the required capabilities
    /// (every leaf must understand both Amicus extensions) and the policy.
    fn to_extensions(&self) -> Extensions<GroupContext> {
        let required = RequiredCapabilitiesExtension::new(
            &[
                ExtensionType::Unknown(SPACE_POLICY_EXTENSION),
                ExtensionType::Unknown(identity::DEVICE_CERTIFICATE_EXTENSION),
            ],
            &[],
            &[CredentialType::Basic],
        );
        Extensions::from_vec(vec![
            Extension::RequiredCapabilities(required),
            self.to_extension(),
        ])
        .expect("two distinct extensions are valid")
    }

    /// Reads the policy from a group context's extensions.
    pub fn from_extensions(extensions: &Extensions<GroupContext>) -> Result<Self, SpaceError> {
        let ext = extensions
            .unknown(SPACE_POLICY_EXTENSION)
            .ok_or(SpaceError::NoPolicy)?;
        match ext.0.split_first() {
            Some((2, rest)) => crate::decode_exact(rest).ok_or(SpaceError::NoPolicy),
            Some((1, rest)) => {
                let v1: SpacePolicyV1 = crate::decode_exact(rest).ok_or(SpaceError::NoPolicy)?;
                Ok(Self {
                    history: v1.history,
                    members: v1.members,
                    revoked: BTreeMap::new(),
                })
            }
            _ => Err(SpaceError::NoPolicy),
        }
    }

    /// Whether `user`'s device `device` is revoked in this policy.
    pub fn is_revoked(&self, device: DeviceId, user: &UserId) -> bool {
        self.revoked.contains_key(&(device, user.clone()))
    }

    /// Lists a revocation, checked against the identity key pinned for its
    /// user; false if the device is listed already.
    pub fn revoke(&mut self, revocation: &DeviceRevocation) -> Result<bool, SpaceError> {
        let member = self
            .members
            .get(&revocation.user)
            .ok_or(SpaceError::NoSuchMember)?;
        revocation.verify(&member.identity_key)?;
        let key = (revocation.device, revocation.user.clone());
        if self.revoked.contains_key(&key) {
            return Ok(false);
        }
        self.revoked.insert(key, revocation.signature);
        Ok(true)
    }

    /// A `since-join` space stays so: under `full`, the next epoch's
    /// record would hand on the secret of an epoch written under
    /// `since-join`, and every later joiner would read what was written
    /// for the members of then only (`full` → `since-join` is allowed).
    fn check_history(&self, next: &SpacePolicy) -> Result<(), SpaceError> {
        if self.history == HistoryPolicy::SinceJoin && next.history == HistoryPolicy::Full {
            return Err(SpaceError::PolicyViolation(
                "a space whose joiners read only what follows their join cannot open its history to them".into(),
            ));
        }
        Ok(())
    }

    /// Whether `next` differs from this policy at most in its revoked
    /// devices (what any member may commit: [`Self::check_revocations`],
    /// applied to every commit, lets that list only grow, by signed
    /// revocations).
    fn only_revokes(&self, next: &SpacePolicy) -> bool {
        self.history == next.history && self.members == next.members
    }

    /// Checks `next`'s revocations against this policy: none is taken off
    /// the list, and each new one is signed by the identity key `next`
    /// pins for its user.
    fn check_revocations(&self, next: &SpacePolicy) -> Result<(), SpaceError> {
        if self
            .revoked
            .iter()
            .any(|(k, signature)| next.revoked.get(k) != Some(signature))
        {
            return Err(SpaceError::PolicyViolation(
                "a revoked device was taken off the list".into(),
            ));
        }
        for (key @ (device, user), signature) in &next.revoked {
            if self.revoked.contains_key(key) {
                continue;
            }
            let pinned = next.members.get(user).ok_or_else(|| {
                SpaceError::PolicyViolation(format!(
                    "a device of {user} revoked outside the policy"
                ))
            })?;
            DeviceRevocation {
                user: user.clone(),
                device: *device,
                signature: *signature,
            }
            .verify(&pinned.identity_key)?;
        }
        Ok(())
    }

    /// The role of `user`, if listed.
    pub fn role(&self, user: &UserId) -> Option<Role> {
        self.members.get(user).map(|m| m.role)
    }

    fn check(&self) -> Result<(), SpaceError> {
        if self.members.values().any(|m| m.role == Role::SpaceManager) {
            Ok(())
        } else {
            Err(SpaceError::NoManagerLeft)
        }
    }
}

/// One device-level change of the roster, stated in clear in a commit's AAD.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RosterChange {
    /// A device joins (its Welcome goes to it).
    Add {
        /// The user.
        user: UserId,
        /// The device.
        device: DeviceId,
    },
    /// A device leaves.
    Remove {
        /// The device.
        device: DeviceId,
    },
}

/// The authenticated data of every commit (sent in clear; members verify it).
/// Encoded as `1 || postcard(CommitAad)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitAad {
    /// The sequence number of the last log entry the committer had seen
    /// (0 with the genesis hash while the log is empty).
    pub log_position: u64,
    /// That entry's chained hash.
    pub log_head: [u8; 32],
    /// The devices added and removed, sorted.
    pub roster_change: Vec<RosterChange>,
}

impl CommitAad {
    /// The AAD bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![1u8];
        out.extend_from_slice(&postcard::to_allocvec(self).expect("aad always encodes"));
        out
    }

    /// Parses AAD bytes (the server does this to route Welcomes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SpaceError> {
        match bytes.split_first() {
            Some((1, rest)) => crate::decode_exact(rest).ok_or(SpaceError::BadAad),
            _ => Err(SpaceError::BadAad),
        }
    }
}

/// Why a space operation failed. A refused incoming message changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    /// The local device's role does not allow this operation; ask a space manager.
    #[error("your role does not allow this operation")]
    Forbidden,
    /// A commit or proposal breaks the space policy: who sent it, what it
    /// does, or a credential or key change. It was not applied; report it.
    #[error("refused by the space policy: {0}")]
    PolicyViolation(String),
    /// The group context carries no readable space policy.
    #[error("the group carries no Amicus space policy")]
    NoPolicy,
    /// The change would leave the space without a space manager.
    #[error("a space must keep at least one space manager")]
    NoManagerLeft,
    /// The device is listed as revoked in the space already.
    #[error("this device is revoked in the space already")]
    AlreadyRevoked,
    /// A device certificate or KeyPackage check failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A commit's authenticated data is missing, malformed or does not match
    /// what the commit does (a server or committer misrepresenting it).
    #[error("the commit's authenticated data is malformed or does not match the commit")]
    BadAad,
    /// A commit of this device is waiting for the server's answer; resolve it
    /// first with `commit_accepted` or `commit_rejected`.
    #[error("a commit is already pending")]
    CommitPending,
    /// There is no pending commit to accept or reject.
    #[error("no commit is pending")]
    NoPendingCommit,
    /// The message is not for this space, or not an MLS message this space
    /// accepts (GroupInfo, external commit, public message).
    #[error("not a message for this space: {0}")]
    UnexpectedMessage(String),
    /// The named user or device is not a member.
    #[error("no such member")]
    NoSuchMember,
    /// Too many devices in one commit.
    #[error("at most {MAX_ADDS_PER_COMMIT} devices per commit")]
    TooManyAdds,
    /// OpenMLS refused the operation (message from another epoch, decryption
    /// failure, storage failure...). The text is OpenMLS's and holds no secret.
    #[error("MLS: {0}")]
    Mls(String),
}

fn mls<E: core::fmt::Display>(e: E) -> SpaceError {
    SpaceError::Mls(e.to_string())
}

/// A user to add: the pinned identity key (from the directory, checked by
/// safety number), the role, and one KeyPackage per device.
#[derive(Clone, Debug)]
pub struct NewMember {
    /// The user.
    pub user: UserId,
    /// The identity key to pin.
    pub identity_key: IdentityPublicKey,
    /// The user's role.
    pub role: Role,
    /// One encoded KeyPackage per device of the user.
    pub key_packages: Vec<Vec<u8>>,
    /// The user's revoked devices (from the directory, each signature
    /// checked by the space against `identity_key`): kept in the policy so
    /// that no member ever adds them back.
    pub revoked: Vec<DeviceRevocation>,
}

/// What one commit changes: devices added and removed, and a new policy.
struct Changes {
    roster_change: Vec<RosterChange>,
    adds: Vec<openmls::prelude::KeyPackage>,
    removes: Vec<LeafNodeIndex>,
    policy: Option<SpacePolicy>,
}

/// A staged commit waiting for the server's acknowledgement.
#[derive(Clone, Debug)]
pub struct PendingCommit {
    /// The commit, an MLS PrivateMessage.
    pub commit: Vec<u8>,
    /// The Welcome for added devices, if any.
    pub welcome: Option<Vec<u8>>,
    /// The commit's authenticated data, also inside `commit`.
    pub aad: CommitAad,
}

/// The MLS content a message must carry where it was found: a log entry's
/// kind, or a live presence message. A message whose (clear) content type
/// is another is refused before anything is decrypted or merged, so that a
/// commit cannot come in through the presence path, nor a commit through
/// an entry labelled proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Content {
    /// An application message (presence; relayed, never stored).
    Application,
    /// A proposal (a log entry of kind `Proposal`).
    Proposal,
    /// A commit (a log entry of kind `Commit`).
    Commit,
}

/// What processing an incoming MLS message did. Its `Debug` never shows an
/// application payload.
pub enum Processed {
    /// A commit was verified and merged; the space is now in `epoch`.
    Commit {
        /// The new epoch.
        epoch: u64,
        /// The commit's authenticated data.
        aad: CommitAad,
        /// True if this device was removed: the space is now read-only history.
        removed_self: bool,
    },
    /// A proposal was verified and stored for the next commit.
    Proposal,
    /// This device's own pending commit came back from the log: the server
    /// accepted it; call [`Space::commit_accepted`].
    OwnCommit,
    /// This device's own message came back (nothing to do).
    Own,
    /// An application message (ephemeral: presence, cursors).
    Application {
        /// The sending device.
        device: DeviceId,
        /// The payload.
        payload: Vec<u8>,
    },
}

impl core::fmt::Debug for Processed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Commit {
                epoch,
                removed_self,
                ..
            } => {
                write!(
                    f,
                    "Commit {{ epoch: {epoch}, removed_self: {removed_self} }}"
                )
            }
            Self::Proposal => f.write_str("Proposal"),
            Self::OwnCommit => f.write_str("OwnCommit"),
            Self::Own => f.write_str("Own"),
            Self::Application { device, payload } => {
                write!(
                    f,
                    "Application {{ device: {device}, {} bytes }}",
                    payload.len()
                )
            }
        }
    }
}

/// A confidential space as seen by one device.
pub struct Space {
    id: SpaceId,
    group: MlsGroup,
    keyring: KeyRing,
    intake_epoch: Option<u64>,
    /// The device whose commit began each epoch, where known (its own
    /// commits, those it processed, its Welcome's sender, and what
    /// accepted records say of earlier epochs).
    committers: BTreeMap<u64, DeviceId>,
    #[cfg(feature = "dangerous-test-hooks")]
    skip_local_role_checks: bool,
}

impl core::fmt::Debug for Space {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Space({}, epoch {})", self.id, self.epoch())
    }
}

/// The non-MLS state of a space for the caller's store (secret: encrypt at
/// rest). The MLS state itself is in the device's [`MlsProvider`].
#[derive(Serialize, Deserialize)]
pub struct SpaceState {
    id: SpaceId,
    keyring: crate::keyring::KeyRingState,
    intake_epoch: Option<u64>,
    committers: Vec<(u64, DeviceId)>,
}

/// A [`SpaceState`] as saved before committers were kept.
#[derive(Deserialize)]
struct SpaceStateV1 {
    id: SpaceId,
    keyring: crate::keyring::KeyRingState,
    intake_epoch: Option<u64>,
}

impl SpaceState {
    /// Decodes a state saved as `postcard(SpaceState)`, or in the earlier
    /// form without committers (whose epochs then accept records from
    /// space managers only, until records name their committers).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        crate::decode_exact::<SpaceState>(bytes).or_else(|| {
            let v1: SpaceStateV1 = crate::decode_exact(bytes)?;
            Some(SpaceState {
                id: v1.id,
                keyring: v1.keyring,
                intake_epoch: v1.intake_epoch,
                committers: Vec::new(),
            })
        })
    }
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .padding_size(MLS_PADDING)
        .use_ratchet_tree_extension(true)
        .build()
}

fn decode_protocol_message(bytes: &[u8]) -> Result<ProtocolMessage, SpaceError> {
    let msg = MlsMessageIn::tls_deserialize_exact(bytes).map_err(mls)?;
    msg.try_into_protocol_message()
        .map_err(|_| SpaceError::UnexpectedMessage("not a protocol message".into()))
}

fn encode(msg: &MlsMessageOut) -> Vec<u8> {
    msg.tls_serialize_detached()
        .expect("an MLS message always encodes")
}

impl Space {
    /// The stream of epoch records of a space (derived from its id).
    pub fn records_stream(id: SpaceId) -> StreamId {
        let h = blake3::derive_key("amicus epoch records stream v1", &id.0);
        StreamId(h[..16].try_into().expect("16 bytes"))
    }

    /// Creates a space with `device` as its only member and space manager.
    pub fn create(
        provider: &MlsProvider,
        device: &Device,
        identity_key: IdentityPublicKey,
        history: HistoryPolicy,
    ) -> Result<Self, SpaceError> {
        device.certificate().verify(&identity_key)?;
        let id = SpaceId::random();
        let mut members = BTreeMap::new();
        members.insert(
            device.user().clone(),
            PolicyMember {
                identity_key,
                role: Role::SpaceManager,
            },
        );
        let policy = SpacePolicy {
            history,
            members,
            revoked: BTreeMap::new(),
        };
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
            .padding_size(MLS_PADDING)
            .use_ratchet_tree_extension(true)
            .capabilities(identity::capabilities())
            .with_leaf_node_extensions(device.leaf_extensions())
            .map_err(mls)?
            .with_group_context_extensions(policy.to_extensions())
            .build();
        let group = MlsGroup::new_with_group_id(
            provider,
            device,
            &config,
            GroupId::from_slice(&id.0),
            device.credential_with_key(),
        )
        .map_err(mls)?;
        let mut space = Self::fresh(id, group);
        space.committers.insert(0, device.id());
        space.learn_current_epoch(provider)?;
        Ok(space)
    }

    /// Joins from a Welcome. Before accepting, checks that the welcomer is a
    /// space manager, that every leaf carries a device certificate signed by
    /// its user's pinned identity key, and that the key pinned for this
    /// device's own user is `own_identity` (nobody pinned a false key for us).
    pub fn join(
        provider: &MlsProvider,
        device: &Device,
        own_identity: &IdentityPublicKey,
        welcome: &[u8],
    ) -> Result<Self, SpaceError> {
        let msg = MlsMessageIn::tls_deserialize_exact(welcome).map_err(mls)?;
        let MlsMessageBodyIn::Welcome(welcome) = msg.extract() else {
            return Err(SpaceError::UnexpectedMessage("not a Welcome".into()));
        };
        let staged = StagedWelcome::new_from_welcome(provider, &join_config(), welcome, None)
            .map_err(mls)?;
        let policy = SpacePolicy::from_extensions(staged.group_context().extensions())?;
        if policy.members.get(device.user()).map(|m| &m.identity_key) != Some(own_identity) {
            return Err(SpaceError::PolicyViolation(
                "the space pins another identity key for you".into(),
            ));
        }
        let sender = staged.welcome_sender().map_err(mls)?;
        let (sender_user, sender_device) = identity::parse_credential(sender.credential())?;
        if policy.role(&sender_user) != Some(Role::SpaceManager) {
            return Err(SpaceError::PolicyViolation(
                "welcome sent by a non-manager".into(),
            ));
        }
        let id = SpaceId(
            staged
                .group_context()
                .group_id()
                .as_slice()
                .try_into()
                .map_err(|_| SpaceError::NoPolicy)?,
        );
        let secret = staged
            .export_secret(provider.crypto(), EXPORTER_LABEL, &id.0, 32)
            .map_err(mls)?;
        let mut group = staged.into_group(provider).map_err(mls)?;
        let verified = (|| {
            let mut devices = Vec::new();
            for leaf in group.public_group().members() {
                let node = group
                    .public_group()
                    .leaf(leaf.index)
                    .ok_or(SpaceError::NoSuchMember)?;
                check_leaf(&policy, node)?;
                devices.push(identity::parse_credential(node.credential())?.1);
            }
            match repeated(devices) {
                Some(device) => Err(SpaceError::PolicyViolation(format!(
                    "device {device} is in the group twice"
                ))),
                None => Ok::<(), SpaceError>(()),
            }
        })();
        if let Err(e) = verified {
            let _ = group.delete(provider.storage());
            return Err(e);
        }
        let mut space = Self::fresh(id, group);
        // The Welcome's sender made the commit that added this device.
        space.committers.insert(space.epoch(), sender_device);
        let roster = space.current_roster(&policy);
        space.keyring.insert(
            space.epoch(),
            EpochSecret::from_bytes(to32(&secret)?),
            Some(roster),
        );
        Ok(space)
    }

    fn fresh(id: SpaceId, group: MlsGroup) -> Self {
        Self {
            id,
            group,
            keyring: KeyRing::new(id),
            intake_epoch: None,
            committers: BTreeMap::new(),
            #[cfg(feature = "dangerous-test-hooks")]
            skip_local_role_checks: false,
        }
    }

    /// Reloads a space from the device's MLS store and its stored state.
    pub fn load(provider: &MlsProvider, state: SpaceState) -> Result<Self, SpaceError> {
        let group = MlsGroup::load(provider.storage(), &GroupId::from_slice(&state.id.0))
            .map_err(mls)?
            .ok_or(SpaceError::NoSuchMember)?;
        Ok(Self {
            id: state.id,
            group,
            keyring: KeyRing::from_state(state.keyring),
            intake_epoch: state.intake_epoch,
            committers: state.committers.into_iter().collect(),
            #[cfg(feature = "dangerous-test-hooks")]
            skip_local_role_checks: false,
        })
    }

    /// The state to store beside the MLS store.
    pub fn to_state(&self) -> SpaceState {
        SpaceState {
            id: self.id,
            keyring: self.keyring.to_state(),
            intake_epoch: self.intake_epoch,
            committers: self.committers.iter().map(|(e, d)| (*e, *d)).collect(),
        }
    }

    /// The space id.
    pub fn id(&self) -> SpaceId {
        self.id
    }

    /// The current MLS epoch.
    pub fn epoch(&self) -> u64 {
        self.group.epoch().as_u64()
    }

    /// The policy in force.
    pub fn policy(&self) -> Result<SpacePolicy, SpaceError> {
        SpacePolicy::from_extensions(self.group.extensions())
    }

    /// The key ring (every epoch this member can read).
    pub fn keyring(&self) -> &KeyRing {
        &self.keyring
    }

    /// Mutable key ring, to ingest epoch records.
    pub fn keyring_mut(&mut self) -> &mut KeyRing {
        &mut self.keyring
    }

    /// The epoch whose intake key is in force, if the intake is open.
    pub fn intake_epoch(&self) -> Option<u64> {
        self.intake_epoch
    }

    /// Whether this device is still a member.
    pub fn is_active(&self) -> bool {
        self.group.is_active()
    }

    /// The MLS epoch authenticator, shown to members as the space safety
    /// code to compare out of band: equal codes mean the same group state.
    pub fn epoch_authenticator(&self) -> Vec<u8> {
        self.group.epoch_authenticator().as_slice().to_vec()
    }

    /// The space code people compare, the same in every client: the
    /// first 80 bits of the epoch authenticator as five groups of four
    /// hex digits ([`space_code`]).
    pub fn space_code(&self) -> String {
        space_code(&self.epoch_authenticator())
    }

    /// The members of the current epoch, with roles.
    pub fn members(&self) -> Result<Roster, SpaceError> {
        Ok(self.current_roster(&self.policy()?))
    }

    fn current_roster(&self, policy: &SpacePolicy) -> Roster {
        let mut roster: Roster = self
            .group
            .members()
            .filter_map(|m| {
                let (user, device) = identity::parse_credential(&m.credential).ok()?;
                let role = policy.role(&user)?;
                Some(RosterEntry {
                    user,
                    device,
                    signature_key: m.signature_key.as_slice().try_into().ok()?,
                    role,
                })
            })
            .collect();
        roster.sort_by_key(|e| e.device);
        roster
    }

    fn learn_current_epoch(&mut self, provider: &MlsProvider) -> Result<(), SpaceError> {
        let secret = self
            .group
            .export_secret(provider.crypto(), EXPORTER_LABEL, &self.id.0, 32)
            .map_err(mls)?;
        let roster = self.current_roster(&self.policy()?);
        self.keyring.insert(
            self.epoch(),
            EpochSecret::from_bytes(to32(&secret)?),
            Some(roster),
        );
        Ok(())
    }

    /// The device ids of the group once `removed` leave and `change`'s
    /// additions join (a repeated id appears twice).
    fn devices_after(&self, removed: &[LeafNodeIndex], change: &[RosterChange]) -> Vec<DeviceId> {
        let staying = self
            .group
            .members()
            .filter(|m| !removed.contains(&m.index))
            .filter_map(|m| identity::parse_credential(&m.credential).ok())
            .map(|(_, d)| d);
        let added = change.iter().filter_map(|c| match c {
            RosterChange::Add { device, .. } => Some(*device),
            RosterChange::Remove { .. } => None,
        });
        staying.chain(added).collect()
    }

    fn own_device(&self) -> Result<DeviceId, SpaceError> {
        let cred = self.group.credential().map_err(mls)?;
        Ok(identity::parse_credential(cred)?.1)
    }

    /// The device whose commit began `epoch`, where this device knows it.
    pub fn committer_of(&self, epoch: u64) -> Option<DeviceId> {
        self.committers.get(&epoch).copied()
    }

    /// Whether this device's record of the current epoch will be accepted
    /// by joiners: it made the epoch's commit, or it is a space manager.
    pub fn may_record(&self) -> bool {
        let committed = self
            .own_device()
            .is_ok_and(|own| self.committers.get(&self.epoch()) == Some(&own));
        committed || self.own_role().is_ok_and(|r| r == Role::SpaceManager)
    }

    /// This device's user's role in the space.
    pub fn own_role(&self) -> Result<Role, SpaceError> {
        let cred = self.group.credential().map_err(mls)?;
        let (user, _) = identity::parse_credential(cred)?;
        self.policy()?.role(&user).ok_or(SpaceError::Forbidden)
    }

    /// Test hook: this member stops checking its *own* role (and whether a
    /// device it adds is revoked) before staging commits, to play a
    /// misbehaving member. Other members still check.
    #[cfg(feature = "dangerous-test-hooks")]
    pub fn dangerous_skip_local_role_checks(&mut self) {
        self.skip_local_role_checks = true;
    }

    /// Whether this member checks its own commits (always, but under the
    /// test hook of a misbehaving member).
    fn checks_itself(&self) -> bool {
        #[cfg(feature = "dangerous-test-hooks")]
        if self.skip_local_role_checks {
            return false;
        }
        true
    }

    fn require_manager(&self) -> Result<(), SpaceError> {
        if !self.checks_itself() {
            return Ok(());
        }
        if self.own_role()? == Role::SpaceManager {
            Ok(())
        } else {
            Err(SpaceError::Forbidden)
        }
    }

    fn leaf_of(&self, device: DeviceId) -> Option<LeafNodeIndex> {
        self.group.members().find_map(|m| {
            let (_, d) = identity::parse_credential(&m.credential).ok()?;
            (d == device).then_some(m.index)
        })
    }

    /// Refuses a second pending commit, then sets the commit's clear
    /// authenticated data (roster change sorted) on the group.
    fn begin_commit(
        &mut self,
        log: (u64, [u8; 32]),
        mut roster_change: Vec<RosterChange>,
    ) -> Result<CommitAad, SpaceError> {
        if self.group.pending_commit().is_some() {
            return Err(SpaceError::CommitPending);
        }
        roster_change.sort();
        let aad = CommitAad {
            log_position: log.0,
            log_head: log.1,
            roster_change,
        };
        self.group.set_aad(aad.to_bytes());
        Ok(aad)
    }

    /// The changes that remove `devices` (each must be a member).
    fn removal_of(&self, devices: &[DeviceId]) -> Result<Changes, SpaceError> {
        let removes = devices
            .iter()
            .map(|d| self.leaf_of(*d).ok_or(SpaceError::NoSuchMember))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Changes {
            roster_change: devices
                .iter()
                .map(|d| RosterChange::Remove { device: *d })
                .collect(),
            adds: vec![],
            removes,
            policy: None,
        })
    }

    fn stage(
        &mut self,
        provider: &MlsProvider,
        device: &Device,
        log: (u64, [u8; 32]),
        changes: Changes,
    ) -> Result<PendingCommit, SpaceError> {
        let Changes {
            roster_change,
            adds,
            removes,
            policy,
        } = changes;
        let aad = self.begin_commit(log, roster_change)?;
        let mut builder = self
            .group
            .commit_builder()
            .propose_adds(adds)
            .propose_removals(removes);
        if let Some(policy) = policy {
            builder = builder
                .propose_group_context_extensions(policy.to_extensions())
                .map_err(mls)?;
        }
        let bundle = builder
            .load_psks(provider.storage())
            .map_err(mls)?
            .build(provider.rand(), provider.crypto(), device, |_| true)
            .map_err(mls)?
            .stage_commit(provider)
            .map_err(mls)?;
        let (commit, welcome, _group_info) = bundle.into_contents();
        let welcome = welcome.map(|w| {
            encode(&MlsMessageOut::from_welcome(
                w,
                openmls::prelude::ProtocolVersion::Mls10,
            ))
        });
        Ok(PendingCommit {
            commit: encode(&commit),
            welcome,
            aad,
        })
    }

    /// Stages a commit adding every device of `members` (one Welcome).
    /// `log` is the position and hash of the last log entry seen.
    pub fn add_members(
        &mut self,
        provider: &MlsProvider,
        device: &Device,
        members: &[NewMember],
        log: (u64, [u8; 32]),
    ) -> Result<PendingCommit, SpaceError> {
        self.require_manager()?;
        let mut policy = self.policy()?;
        let mut kps = Vec::new();
        let mut change = Vec::new();
        for m in members {
            if let Some(existing) = policy.members.get(&m.user)
                && existing.identity_key != m.identity_key
            {
                return Err(SpaceError::PolicyViolation(format!(
                    "{} is pinned to another identity key in this space",
                    m.user
                )));
            }
            policy.members.insert(
                m.user.clone(),
                PolicyMember {
                    identity_key: m.identity_key,
                    role: m.role,
                },
            );
            for r in &m.revoked {
                if r.user != m.user {
                    return Err(SpaceError::PolicyViolation(format!(
                        "a revocation of {} given for {}",
                        r.user, m.user
                    )));
                }
                policy.revoke(r)?;
            }
            for bytes in &m.key_packages {
                let kp = identity::validate_key_package(provider, bytes, &m.user, &m.identity_key)?;
                let cert = DeviceCertificate::from_extensions(kp.leaf_node().extensions())?;
                if policy.is_revoked(cert.device, &m.user) && self.checks_itself() {
                    return Err(SpaceError::PolicyViolation(format!(
                        "device {} of {} is revoked",
                        cert.device, m.user
                    )));
                }
                change.push(RosterChange::Add {
                    user: m.user.clone(),
                    device: cert.device,
                });
                kps.push(kp);
            }
        }
        if kps.len() > MAX_ADDS_PER_COMMIT {
            return Err(SpaceError::TooManyAdds);
        }
        if self.checks_itself()
            && let Some(device) = repeated(self.devices_after(&[], &change))
        {
            return Err(SpaceError::PolicyViolation(format!(
                "device {device} is in the space already"
            )));
        }
        let policy_change = (policy != self.policy()?).then_some(policy);
        self.stage(
            provider,
            device,
            log,
            Changes {
                roster_change: change,
                adds: kps,
                removes: vec![],
                policy: policy_change,
            },
        )
    }

    /// Stages a commit removing devices (a manager's act).
    pub fn remove_devices(
        &mut self,
        provider: &MlsProvider,
        device: &Device,
        devices: &[DeviceId],
        log: (u64, [u8; 32]),
    ) -> Result<PendingCommit, SpaceError> {
        self.require_manager()?;
        let changes = self.removal_of(devices)?;
        self.stage(provider, device, log, changes)
    }

    /// Stages a commit that applies a device revocation: the device is
    /// listed as revoked in the policy and, if it is in the group, removed.
    /// Any member may commit it, whatever its role: the authority is the
    /// identity key's signature, which every member checks.
    pub fn revoke_device(
        &mut self,
        provider: &MlsProvider,
        device: &Device,
        revocation: &DeviceRevocation,
        log: (u64, [u8; 32]),
    ) -> Result<PendingCommit, SpaceError> {
        let mut policy = self.policy()?;
        if !policy.revoke(revocation)? {
            return Err(SpaceError::AlreadyRevoked);
        }
        let in_group = self
            .leaf_of(revocation.device)
            .filter(|leaf| {
                self.group.member_at(*leaf).is_some_and(|m| {
                    identity::parse_credential(&m.credential)
                        .is_ok_and(|(user, _)| user == revocation.user)
                })
            })
            .is_some();
        let removed = if in_group {
            vec![revocation.device]
        } else {
            vec![]
        };
        let changes = Changes {
            policy: Some(policy),
            ..self.removal_of(&removed)?
        };
        self.stage(provider, device, log, changes)
    }

    /// Stages a commit removing every device of `user` and the user from the policy.
    pub fn remove_user(
        &mut self,
        provider: &MlsProvider,
        device: &Device,
        user: &UserId,
        log: (u64, [u8; 32]),
    ) -> Result<PendingCommit, SpaceError> {
        self.require_manager()?;
        let roster = self.members()?;
        let devices: Vec<DeviceId> = roster
            .iter()
            .filter(|e| &e.user == user)
            .map(|e| e.device)
            .collect();
        let mut policy = self.policy()?;
        if policy.members.remove(user).is_none() {
            return Err(SpaceError::NoSuchMember);
        }
        policy.check()?;
        let changes = Changes {
            policy: Some(policy),
            ..self.removal_of(&devices)?
        };
        self.stage(provider, device, log, changes)
    }

    /// Stages a commit changing a user's role or the history policy.
    pub fn change_policy(
        &mut self,
        provider: &MlsProvider,
        device: &Device,
        policy: SpacePolicy,
        log: (u64, [u8; 32]),
    ) -> Result<PendingCommit, SpaceError> {
        self.require_manager()?;
        policy.check()?;
        let current = self.policy()?;
        if self.checks_itself() {
            current.check_history(&policy)?;
        }
        if policy.members.keys().ne(current.members.keys())
            || policy
                .members
                .iter()
                .any(|(u, m)| current.members[u].identity_key != m.identity_key)
        {
            return Err(SpaceError::PolicyViolation(
                "a policy change may not add, drop or re-pin users".into(),
            ));
        }
        self.stage(
            provider,
            device,
            log,
            Changes {
                roster_change: vec![],
                adds: vec![],
                removes: vec![],
                policy: Some(policy),
            },
        )
    }

    /// Stages a self-update commit (fresh leaf encryption key; same
    /// credential and signature key).
    pub fn self_update(
        &mut self,
        provider: &MlsProvider,
        device: &Device,
        log: (u64, [u8; 32]),
    ) -> Result<PendingCommit, SpaceError> {
        let aad = self.begin_commit(log, vec![])?;
        let bundle = self
            .group
            .self_update(provider, device, LeafNodeParameters::default())
            .map_err(mls)?;
        Ok(PendingCommit {
            commit: encode(bundle.commit()),
            welcome: None,
            aad,
        })
    }

    /// Creates a proposal to remove this device (leaving); any member may
    /// commit it. Send it like a commit; the space stays readable until then.
    pub fn leave(
        &mut self,
        provider: &MlsProvider,
        device: &Device,
    ) -> Result<Vec<u8>, SpaceError> {
        let msg = self.group.leave_group(provider, device).map_err(mls)?;
        Ok(encode(&msg))
    }

    /// Stages a commit of the stored proposals (e.g. a member's leave).
    pub fn commit_proposals(
        &mut self,
        provider: &MlsProvider,
        device: &Device,
        log: (u64, [u8; 32]),
    ) -> Result<PendingCommit, SpaceError> {
        let mut change: Vec<RosterChange> = Vec::new();
        for p in self.group.pending_proposals() {
            if let Proposal::Remove(r) = p.proposal() {
                let m = self
                    .group
                    .member_at(r.removed())
                    .ok_or(SpaceError::NoSuchMember)?;
                let (_, d) = identity::parse_credential(&m.credential)?;
                change.push(RosterChange::Remove { device: d });
            }
        }
        let aad = self.begin_commit(log, change)?;
        let (commit, welcome, _) = self
            .group
            .commit_to_pending_proposals(provider, device)
            .map_err(mls)?;
        Ok(PendingCommit {
            commit: encode(&commit),
            welcome: welcome.map(|w| encode(&w)),
            aad,
        })
    }

    /// The server accepted this device's pending commit: merge it and derive
    /// the new epoch's keys. Returns the new epoch.
    pub fn commit_accepted(&mut self, provider: &MlsProvider) -> Result<u64, SpaceError> {
        let pending = self
            .group
            .pending_commit()
            .ok_or(SpaceError::NoPendingCommit)?;
        let had_removals = pending.remove_proposals().next().is_some();
        self.group.merge_pending_commit(provider).map_err(mls)?;
        if let Ok(own) = self.own_device() {
            self.committers.insert(self.epoch(), own);
        }
        self.after_merge(provider, had_removals)?;
        Ok(self.epoch())
    }

    /// The server refused this device's pending commit (another commit won
    /// the epoch): discard it. Process the winner, then re-apply the intent.
    pub fn commit_rejected(&mut self, provider: &MlsProvider) -> Result<(), SpaceError> {
        if self.group.pending_commit().is_none() {
            return Err(SpaceError::NoPendingCommit);
        }
        self.group
            .clear_pending_commit(provider.storage())
            .map_err(mls)
    }

    fn after_merge(
        &mut self,
        provider: &MlsProvider,
        had_removals: bool,
    ) -> Result<(), SpaceError> {
        if !self.group.is_active() {
            return Ok(());
        }
        if had_removals && self.intake_epoch.is_some() {
            self.intake_epoch = Some(self.epoch());
        }
        self.learn_current_epoch(provider)
    }

    /// Opens the sealed intake at the current epoch (or rotates it) and
    /// returns its public key; the change is stated in the next epoch record.
    pub fn open_intake(&mut self) -> Result<crate::intake::IntakePublicKey, SpaceError> {
        self.require_manager()?;
        let epoch = self.epoch();
        let secret = self.keyring.secret(epoch).ok_or(SpaceError::NoPolicy)?;
        self.intake_epoch = Some(epoch);
        Ok(secret.intake_key().public())
    }

    /// The intake key in force and its epoch, if the intake is open and
    /// this member holds that epoch's secret.
    pub fn intake_in_force(&self) -> Option<(u64, crate::intake::IntakePublicKey)> {
        let epoch = self.intake_epoch?;
        let secret = self.keyring.secret(epoch)?;
        Some((epoch, secret.intake_key().public()))
    }

    /// The intake key of `epoch`, if this member holds that epoch's
    /// secret (whether or not it knows the intake was opened then).
    pub fn intake_key_of(&self, epoch: u64) -> Option<crate::intake::IntakeSecretKey> {
        self.keyring.secret(epoch).map(|s| s.intake_key())
    }

    /// The intake key of every epoch this member holds, newest first.
    pub fn every_intake_key(&self) -> Vec<crate::intake::IntakeSecretKey> {
        let epochs: Vec<u64> = self.keyring.epochs().collect();
        epochs
            .into_iter()
            .rev()
            .filter_map(|e| self.intake_key_of(e))
            .collect()
    }

    /// Every intake private key this member can derive, newest first (old
    /// ones open submissions not yet drained).
    pub fn intake_keys(&self) -> Vec<crate::intake::IntakeSecretKey> {
        let Some(current) = self.intake_epoch else {
            return vec![];
        };
        self.keyring
            .epochs()
            .filter(|e| *e <= current)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .filter_map(|e| self.keyring.secret(e).map(|s| s.intake_key()))
            .collect()
    }

    /// Creates an application message (ephemeral: presence, cursors; never
    /// persistent content, which goes in envelopes).
    pub fn create_message(
        &mut self,
        provider: &MlsProvider,
        device: &Device,
        payload: &[u8],
    ) -> Result<Vec<u8>, SpaceError> {
        self.group.set_aad(Vec::new());
        let msg = self
            .group
            .create_message(provider, device, payload)
            .map_err(mls)?;
        Ok(encode(&msg))
    }

    /// Processes an incoming MLS message from the space's log or live feed,
    /// which must carry `expected` content. A commit is checked against the
    /// policy in force before it is merged; a refused message changes
    /// nothing.
    pub fn process(
        &mut self,
        provider: &MlsProvider,
        bytes: &[u8],
        expected: Content,
    ) -> Result<Processed, SpaceError> {
        let message = decode_protocol_message(bytes)?;
        let found = match message.content_type() {
            ContentType::Application => Content::Application,
            ContentType::Proposal => Content::Proposal,
            ContentType::Commit => Content::Commit,
        };
        if found != expected {
            return Err(SpaceError::UnexpectedMessage(format!(
                "{found:?} content where {expected:?} belongs"
            )));
        }
        if message.is_external() {
            return Err(SpaceError::UnexpectedMessage(
                "external messages are refused".into(),
            ));
        }
        if message.group_id().as_slice() != self.id.0 {
            return Err(SpaceError::UnexpectedMessage(
                "message of another space".into(),
            ));
        }
        let processed = self.group.process_message(provider, message).map_err(mls)?;
        let sender = match processed.sender() {
            Sender::Member(index) => *index,
            _ => {
                return Err(SpaceError::UnexpectedMessage(
                    "sender is not a member".into(),
                ));
            }
        };
        let aad_bytes = processed.aad().to_vec();
        let member = self
            .group
            .member_at(sender)
            .ok_or(SpaceError::NoSuchMember)?;
        let (_, sender_device) = identity::parse_credential(&member.credential)?;
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => Ok(Processed::Application {
                device: sender_device,
                payload: app.into_bytes(),
            }),
            ProcessedMessageContent::ProposalMessage(proposal) => {
                let policy = self.policy()?;
                check_proposal(&self.group, &policy, &proposal, None)?;
                self.group
                    .store_pending_proposal(provider.storage(), *proposal)
                    .map_err(mls)?;
                Ok(Processed::Proposal)
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let aad = CommitAad::from_bytes(&aad_bytes)?;
                self.check_commit(sender, &staged, &aad)?;
                let had_removals = staged.remove_proposals().next().is_some();
                let removed_self = staged.self_removed();
                self.group
                    .merge_staged_commit(provider, *staged)
                    .map_err(mls)?;
                self.committers.insert(self.epoch(), sender_device);
                self.after_merge(provider, had_removals)?;
                Ok(Processed::Commit {
                    epoch: self.epoch(),
                    aad,
                    removed_self,
                })
            }
            ProcessedMessageContent::OwnPendingCommit => Ok(Processed::OwnCommit),
            ProcessedMessageContent::OwnPrivateMessage => Ok(Processed::Own),
            ProcessedMessageContent::ExternalJoinProposalMessage(_) => Err(
                SpaceError::UnexpectedMessage("external join proposals are refused".into()),
            ),
        }
    }

    /// The authorization rules of a commit, judged against the policy in force.
    fn check_commit(
        &self,
        committer: LeafNodeIndex,
        staged: &StagedCommit,
        aad: &CommitAad,
    ) -> Result<(), SpaceError> {
        let policy = self.policy()?;
        let new_policy = SpacePolicy::from_extensions(staged.group_context().extensions())?;
        new_policy.check()?;
        let mut change = Vec::new();
        for proposal in staged.queued_proposals() {
            check_proposal(&self.group, &policy, proposal, Some(&new_policy))?;
            match proposal.proposal() {
                Proposal::Add(add) => {
                    let cert = DeviceCertificate::from_extensions(
                        add.key_package().leaf_node().extensions(),
                    )?;
                    change.push(RosterChange::Add {
                        user: cert.user.clone(),
                        device: cert.device,
                    });
                }
                Proposal::Remove(r) => {
                    let m = self
                        .group
                        .member_at(r.removed())
                        .ok_or(SpaceError::NoSuchMember)?;
                    let (_, d) = identity::parse_credential(&m.credential)?;
                    change.push(RosterChange::Remove { device: d });
                }
                _ => {}
            }
        }
        // No policy change may re-pin a user's identity key, and a user
        // dropped from the policy must lose every device in the same commit.
        for (user, m) in &new_policy.members {
            if policy
                .members
                .get(user)
                .is_some_and(|old| old.identity_key != m.identity_key)
            {
                return Err(SpaceError::PolicyViolation(format!(
                    "{user}'s identity key was re-pinned"
                )));
            }
        }
        policy.check_history(&new_policy)?;
        // Revocations are never taken back, each verifies under its user's
        // key, and a revoked device leaves in the commit that revokes it.
        policy.check_revocations(&new_policy)?;
        let removed: Vec<LeafNodeIndex> = staged
            .remove_proposals()
            .map(|r| r.remove_proposal().removed())
            .collect();
        for m in self.group.members() {
            let (user, device) = identity::parse_credential(&m.credential)?;
            if !new_policy.members.contains_key(&user) && !removed.contains(&m.index) {
                return Err(SpaceError::PolicyViolation(format!(
                    "{user} left the policy but kept a device"
                )));
            }
            if new_policy.is_revoked(device, &user) && !removed.contains(&m.index) {
                return Err(SpaceError::PolicyViolation(format!(
                    "device {device} of {user} is revoked but stays"
                )));
            }
        }
        if let Some(leaf) = staged.update_path_leaf_node() {
            check_leaf(&new_policy, leaf)?;
            let current = self
                .group
                .public_group()
                .leaf(committer)
                .ok_or(SpaceError::NoSuchMember)?;
            if leaf.credential() != current.credential()
                || leaf.signature_key() != current.signature_key()
            {
                return Err(SpaceError::PolicyViolation(
                    "the committer changed its credential or key".into(),
                ));
            }
        }
        // Device ids name members (rosters, envelopes' signers, removals):
        // no two leaves may share one.
        if let Some(device) = repeated(self.devices_after(&removed, &change)) {
            return Err(SpaceError::PolicyViolation(format!(
                "device {device} would be in the group twice"
            )));
        }
        change.sort();
        if change != aad.roster_change {
            return Err(SpaceError::BadAad);
        }
        Ok(())
    }

    /// Seals a content envelope in the current epoch.
    pub fn seal(
        &self,
        device: &Device,
        kind: Kind,
        stream: StreamId,
        seq: u64,
        log_head: [u8; 32],
        body: &[u8],
    ) -> Result<Vec<u8>, crate::keyring::KeyRingError> {
        self.keyring.seal(device, kind, stream, seq, log_head, body)
    }

    /// Seals the epoch record of the current epoch (the committer does this
    /// right after its commit is accepted; a space manager after a timeout,
    /// [`Self::may_record`]).
    pub fn seal_epoch_record(
        &self,
        device: &Device,
        log_head: [u8; 32],
    ) -> Result<Vec<u8>, SpaceError> {
        let history = self.policy()?.history;
        self.keyring
            .seal_record(
                device,
                Self::records_stream(self.id),
                history,
                self.intake_epoch,
                self.epoch()
                    .checked_sub(1)
                    .and_then(|p| self.committers.get(&p).copied()),
                log_head,
            )
            .map_err(|e| SpaceError::Mls(e.to_string()))
    }

    /// Reads an epoch record (walking back through history, or learning the
    /// intake epoch). Only the record of the epoch's committer or of one of
    /// its space managers is taken: any member could seal one, and a
    /// joiner believes what it hands on (PROTOCOL §7.2).
    pub fn ingest_epoch_record(
        &mut self,
        bytes: &[u8],
    ) -> Result<crate::keyring::EpochRecord, crate::keyring::KeyRingError> {
        let committers = &self.committers;
        let record = self.keyring.ingest_record(
            bytes,
            Self::records_stream(self.id),
            |epoch, signer, roster| {
                committers.get(&epoch) == Some(&signer)
                    || roster
                        .iter()
                        .any(|m| m.device == signer && m.role == Role::SpaceManager)
            },
        )?;
        if let (Some(prev), Some(p)) = (&record.previous, record.epoch.checked_sub(1))
            && let Some(committer) = prev.committer
        {
            self.committers.entry(p).or_insert(committer);
        }
        if record.epoch == self.epoch() && record.intake_epoch > self.intake_epoch {
            self.intake_epoch = record.intake_epoch;
        }
        Ok(record)
    }
}

/// Checks one proposal: its sender's role under `policy`, and what it does.
fn check_proposal(
    group: &MlsGroup,
    policy: &SpacePolicy,
    proposal: &QueuedProposal,
    new_policy: Option<&SpacePolicy>,
) -> Result<(), SpaceError> {
    let Sender::Member(proposer) = proposal.sender() else {
        return Err(SpaceError::PolicyViolation(
            "proposal from a non-member".into(),
        ));
    };
    let member = group.member_at(*proposer).ok_or(SpaceError::NoSuchMember)?;
    let (user, _) = identity::parse_credential(&member.credential)?;
    let role = policy
        .role(&user)
        .ok_or_else(|| SpaceError::PolicyViolation(format!("{user} has no role")))?;
    let manager = role == Role::SpaceManager;
    match proposal.proposal() {
        Proposal::Add(add) => {
            if !manager {
                return Err(SpaceError::PolicyViolation(format!(
                    "{user} may not add members"
                )));
            }
            if let Some(new_policy) = new_policy {
                check_leaf(new_policy, add.key_package().leaf_node())?;
            }
        }
        Proposal::Remove(r) => {
            // Anyone may remove a device whose revocation the same commit
            // writes into the policy (its signature is checked there).
            let revoked = || {
                let removed = group.member_at(r.removed())?;
                let (owner, device) = identity::parse_credential(&removed.credential).ok()?;
                new_policy.map(|p| p.is_revoked(device, &owner))
            };
            if !manager && r.removed() != *proposer && revoked() != Some(true) {
                return Err(SpaceError::PolicyViolation(format!(
                    "{user} may not remove others"
                )));
            }
        }
        Proposal::SelfRemove => {}
        Proposal::GroupContextExtensions(_) => {
            let only_revokes = new_policy.is_some_and(|next| policy.only_revokes(next));
            if !manager && !only_revokes {
                return Err(SpaceError::PolicyViolation(format!(
                    "{user} may not change roles"
                )));
            }
        }
        Proposal::Update(update) => {
            let current = group
                .public_group()
                .leaf(*proposer)
                .ok_or(SpaceError::NoSuchMember)?;
            let leaf = update.leaf_node();
            check_leaf(new_policy.unwrap_or(policy), leaf)?;
            if leaf.credential() != current.credential()
                || leaf.signature_key() != current.signature_key()
            {
                return Err(SpaceError::PolicyViolation(
                    "an update may not change a credential or key".into(),
                ));
            }
        }
        other => {
            return Err(SpaceError::PolicyViolation(format!(
                "proposal type {:?} is not used by Amicus",
                other.proposal_type()
            )));
        }
    }
    Ok(())
}

/// The first device id that `devices` holds twice, if any.
fn repeated(devices: impl IntoIterator<Item = DeviceId>) -> Option<DeviceId> {
    let mut seen = std::collections::BTreeSet::new();
    devices.into_iter().find(|d| !seen.insert(*d))
}

/// Checks that a leaf's device certificate is signed by its user's pinned key.
fn check_leaf(policy: &SpacePolicy, leaf: &openmls::prelude::LeafNode) -> Result<(), SpaceError> {
    let cert = DeviceCertificate::from_extensions(leaf.extensions())?;
    cert.matches(leaf.credential(), leaf.signature_key().as_slice())?;
    let pinned = policy.members.get(&cert.user).ok_or_else(|| {
        SpaceError::PolicyViolation(format!("{} is not in the space policy", cert.user))
    })?;
    cert.verify(&pinned.identity_key)?;
    if policy.is_revoked(cert.device, &cert.user) {
        return Err(SpaceError::PolicyViolation(format!(
            "device {} of {} is revoked",
            cert.device, cert.user
        )));
    }
    Ok(())
}

fn to32(bytes: &[u8]) -> Result<[u8; 32], SpaceError> {
    bytes
        .try_into()
        .map_err(|_| SpaceError::Mls("exporter returned a wrong length".into()))
}

#[cfg(test)]
mod tests {
    /// The space code is the authenticator's first 80 bits in five groups
    /// of four hex digits, whatever the client.
    #[test]
    fn a_space_code_is_five_groups_of_four_hex_digits() {
        let authenticator: Vec<u8> = (0u8..32).collect();
        assert_eq!(
            super::space_code(&authenticator),
            "0001 0203 0405 0607 0809"
        );
    }
}
