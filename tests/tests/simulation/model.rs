//! The model server: the directory, KeyPackages, Welcome queues and space
//! logs in memory, answering the engine's HTTP requests and frames. Every
//! append goes through `amicus_server::relay::decide`, the decision the
//! real relay makes under a space's lock; the rest (sign-in, listings,
//! claims, queues) follows the HTTP API of PROTOCOL §12.1.

use std::collections::{BTreeMap, VecDeque};

use amicus_core::api::{self, HttpRequest, HttpResponse, Method};
use amicus_core::identity::{DeviceCertificate, Statement, UserIdentity, verify_statement};
use amicus_core::wire::{AppendItem, LogEntry, RefusalCode, ServerFrame, genesis};
use amicus_core::{DeviceId, SpaceId, UserId};
use amicus_server::relay::{Decision, decide, report};
use amicus_server::store::{SpaceKind, SpaceRecord};
use serde::Serialize;

/// One space: the relay's record and the log.
pub struct Log {
    pub record: SpaceRecord,
    pub entries: Vec<LogEntry>,
}

/// What an append produced.
pub struct Appended {
    /// The answer to the appending connection.
    pub answer: ServerFrame,
    /// The entry to fan out to the space's subscribers, if any.
    pub entry: Option<(SpaceId, LogEntry)>,
    /// Welcome frames for devices.
    pub welcomes: Vec<(DeviceId, ServerFrame)>,
    /// Devices no longer served in the space.
    pub removed: Vec<DeviceId>,
}

#[derive(Default)]
pub struct Model {
    users: BTreeMap<UserId, Vec<DeviceCertificate>>,
    identity_keys: BTreeMap<UserId, [u8; 32]>,
    devices: BTreeMap<DeviceId, DeviceCertificate>,
    key_packages: BTreeMap<DeviceId, VecDeque<Vec<u8>>>,
    welcomes: BTreeMap<DeviceId, Vec<(u64, SpaceId, Vec<u8>)>>,
    next_welcome: u64,
    challenges: BTreeMap<String, DeviceId>,
    sessions: BTreeMap<String, DeviceId>,
    next_secret: u64,
    pub spaces: BTreeMap<SpaceId, Log>,
}

fn json<T: Serialize>(status: u16, value: &T) -> HttpResponse {
    HttpResponse {
        status,
        body: serde_json::to_vec(value).unwrap(),
    }
}

fn error(status: u16, code: &str, message: &str) -> HttpResponse {
    json(
        status,
        &api::ErrorBody {
            error: code.into(),
            message: message.into(),
        },
    )
}

impl Model {
    /// Registers a user's device (the account's creation is outside the
    /// engine).
    pub fn register(&mut self, identity: &UserIdentity, cert: &DeviceCertificate) {
        self.identity_keys
            .insert(identity.user().clone(), identity.public().0);
        self.users
            .entry(identity.user().clone())
            .or_default()
            .push(cert.clone());
        self.devices.insert(cert.device, cert.clone());
    }

    /// Ends every session (the server restarted with a new session key, or
    /// the sessions expired).
    pub fn expire_sessions(&mut self) {
        self.sessions.clear();
    }

    fn secret(&mut self) -> String {
        self.next_secret += 1;
        format!("{:064x}", self.next_secret)
    }

    /// The device behind a session token.
    pub fn session(&self, token: Option<&str>) -> Option<DeviceId> {
        token.and_then(|t| self.sessions.get(t).copied())
    }

    pub fn http(&mut self, request: &HttpRequest, token: Option<&str>) -> HttpResponse {
        let body = request.body.as_deref().unwrap_or(b"null");
        let path: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
        let caller = self.session(token);
        if request.signed_in && caller.is_none() {
            return error(401, "unauthenticated", "sign in first");
        }
        match (request.method, path.as_slice()) {
            (Method::Post, ["v1", "challenge"]) => {
                let Ok(r) = serde_json::from_slice::<api::ChallengeRequest>(body) else {
                    return error(400, "bad_request", "bad body");
                };
                let Some(device) = DeviceId::from_hex(&r.device)
                    .ok()
                    .filter(|d| self.devices.contains_key(d))
                else {
                    return error(404, "not_found", "no such device");
                };
                let challenge = self.secret();
                self.challenges.insert(challenge.clone(), device);
                json(200, &api::Challenge { challenge })
            }
            (Method::Post, ["v1", "session"]) => {
                let Ok(r) = serde_json::from_slice::<api::SignIn>(body) else {
                    return error(400, "bad_request", "bad body");
                };
                let Some(device) = self.challenges.remove(&r.challenge) else {
                    return error(401, "sign_in_refused", "unknown challenge");
                };
                let cert = self.devices[&device].clone();
                let mut challenge = [0u8; 32];
                let mut signature = [0u8; 64];
                let signed = hex::decode_to_slice(&r.challenge, &mut challenge).is_ok()
                    && hex::decode_to_slice(&r.signature, &mut signature).is_ok()
                    && r.device == device.to_hex()
                    && verify_statement(
                        &cert.device_key,
                        Statement::SignIn,
                        &challenge,
                        &signature,
                    );
                if !signed {
                    return error(401, "sign_in_refused", "bad signature");
                }
                let token = self.secret();
                self.sessions.insert(token.clone(), device);
                json(
                    200,
                    &api::Session {
                        token,
                        expires: u64::MAX,
                        user: cert.user.to_string(),
                    },
                )
            }
            (Method::Get, ["v1", "users", user]) => {
                let Some((name, certs)) = UserId::new(user)
                    .ok()
                    .and_then(|u| self.users.get_key_value(&u))
                else {
                    return error(404, "not_found", "no such user");
                };
                let listing = api::UserListing {
                    user: name.to_string(),
                    identity_key: hex::encode(self.identity_keys[name]),
                    safety_number: String::new(),
                    devices: certs
                        .iter()
                        .map(|c| api::ListedDevice {
                            device: c.device.to_hex(),
                            certificate: hex::encode(postcard::to_allocvec(c).unwrap()),
                            key_packages: self.key_packages.get(&c.device).map_or(0, |q| q.len())
                                as u64,
                        })
                        .collect(),
                    // The model has no revocations.
                    revoked: Vec::new(),
                    admin: false,
                };
                json(200, &listing)
            }
            (Method::Post, ["v1", "users", user, "key-packages", "claim"]) => {
                let Ok(claim) = serde_json::from_slice::<api::Claim>(body) else {
                    return error(400, "bad_request", "bad body");
                };
                let Some(certs) = UserId::new(user).ok().and_then(|u| self.users.get(&u)) else {
                    return error(404, "not_found", "no such user");
                };
                let mut claimed = api::Claimed {
                    key_packages: Vec::new(),
                    missing: Vec::new(),
                };
                for c in certs {
                    let id = c.device.to_hex();
                    if claim.except.contains(&id) {
                        continue;
                    }
                    match self
                        .key_packages
                        .get_mut(&c.device)
                        .and_then(|q| q.pop_front())
                    {
                        Some(kp) => claimed.key_packages.push(api::ClaimedKeyPackage {
                            device: id,
                            key_package: hex::encode(kp),
                        }),
                        None => claimed.missing.push(id),
                    }
                }
                json(200, &claimed)
            }
            (Method::Post, ["v1", "key-packages"]) => {
                let Ok(kps) = serde_json::from_slice::<api::KeyPackages>(body) else {
                    return error(400, "bad_request", "bad body");
                };
                let device = caller.expect("signed in");
                let queue = self.key_packages.entry(device).or_default();
                for k in kps.key_packages {
                    queue.push_back(hex::decode(k).unwrap());
                }
                json(
                    200,
                    &api::Count {
                        count: queue.len() as u64,
                    },
                )
            }
            // The model has no revocations.
            (Method::Get, ["v1", "revocations"]) => json(200, &api::Revocations::default()),
            (Method::Get, ["v1", "welcomes"]) => {
                let device = caller.expect("signed in");
                let list = self.welcomes.get(&device).cloned().unwrap_or_default();
                json(
                    200,
                    &api::Welcomes {
                        welcomes: list
                            .into_iter()
                            .map(|(id, space, w)| api::QueuedWelcome {
                                id,
                                space: space.to_hex(),
                                welcome: hex::encode(w),
                            })
                            .collect(),
                    },
                )
            }
            (Method::Delete, ["v1", "welcomes", id]) => {
                let device = caller.expect("signed in");
                let id: u64 = id.parse().unwrap_or(u64::MAX);
                let queue = self.welcomes.entry(device).or_default();
                let before = queue.len();
                queue.retain(|(i, _, _)| *i != id);
                if queue.len() < before {
                    HttpResponse {
                        status: 204,
                        body: Vec::new(),
                    }
                } else {
                    error(404, "not_found", "no such Welcome")
                }
            }
            (Method::Post, ["v1", "spaces"]) => {
                let Ok(new) = serde_json::from_slice::<api::NewSpace>(body) else {
                    return error(400, "bad_request", "bad body");
                };
                let Ok(id) = SpaceId::from_hex(&new.id) else {
                    return error(400, "bad_request", "bad id");
                };
                if self.spaces.contains_key(&id) {
                    return error(409, "conflict", "the space exists");
                }
                let device = caller.expect("signed in");
                let user = self.devices[&device].user.clone();
                let mut record = SpaceRecord {
                    id,
                    kind: SpaceKind::Confidential,
                    created_by: user.clone(),
                    epoch: 0,
                    next_seq: 0,
                    head: genesis(id),
                    roster: BTreeMap::new(),
                    roles: BTreeMap::new(),
                    snapshots: BTreeMap::new(),
                    name: None,
                    last_commit: None,
                    barred: Default::default(),
                };
                record.roster.insert(device, user);
                self.spaces.insert(
                    id,
                    Log {
                        record,
                        entries: Vec::new(),
                    },
                );
                json(201, &serde_json::json!({ "id": new.id }))
            }
            _ => error(404, "not_found", "no such route in the model"),
        }
    }

    /// A subscription: the entries from `from` on, then `Synced`; or a
    /// refusal for a device outside the roster.
    pub fn subscribe(
        &self,
        device: DeviceId,
        request: u32,
        space: SpaceId,
        from: u64,
    ) -> Vec<ServerFrame> {
        let Some(log) = self
            .spaces
            .get(&space)
            .filter(|l| l.record.roster.contains_key(&device))
        else {
            return vec![ServerFrame::Refused {
                request,
                code: RefusalCode::Forbidden,
                message: "this device is not in the space's roster".into(),
            }];
        };
        let mut out: Vec<ServerFrame> = log
            .entries
            .iter()
            .skip(from as usize)
            .map(|e| ServerFrame::Entry {
                space,
                entry: e.clone(),
            })
            .collect();
        out.push(ServerFrame::Synced {
            space,
            next_seq: log.record.next_seq,
            head: log.record.head,
            epoch: log.record.epoch,
        });
        out
    }

    /// A report of a refused commit, through the relay's own
    /// [`report`]: the answer, and the `Reopen` entry it appended if any.
    pub fn report(
        &mut self,
        device: DeviceId,
        request: u32,
        space: SpaceId,
        commit: u64,
    ) -> (ServerFrame, Option<(SpaceId, LogEntry)>) {
        let Some(user) = self.devices.get(&device).map(|c| c.user.clone()) else {
            return (
                ServerFrame::Refused {
                    request,
                    code: RefusalCode::Forbidden,
                    message: "unknown device".into(),
                },
                None,
            );
        };
        let Some(log) = self.spaces.get_mut(&space) else {
            return (
                ServerFrame::Refused {
                    request,
                    code: RefusalCode::Forbidden,
                    message: "no such space".into(),
                },
                None,
            );
        };
        match report(&mut log.record, (device, &user), commit) {
            Err(r) => (
                ServerFrame::Refused {
                    request,
                    code: r.code,
                    message: r.message,
                },
                None,
            ),
            Ok(r) => {
                let entry = r.reopen.inspect(|e| log.entries.push(e.clone()));
                (
                    ServerFrame::Reported {
                        request,
                        reopened: r.reopened,
                        reports: r.reports,
                        needed: r.needed,
                    },
                    entry.map(|e| (space, e)),
                )
            }
        }
    }

    pub fn append(
        &mut self,
        device: DeviceId,
        request: u32,
        space: SpaceId,
        item: AppendItem,
    ) -> Appended {
        let refused = |code, message: String| Appended {
            answer: ServerFrame::Refused {
                request,
                code,
                message,
            },
            entry: None,
            welcomes: Vec::new(),
            removed: Vec::new(),
        };
        let devices = &self.devices;
        let Some(log) = self
            .spaces
            .get_mut(&space)
            .filter(|l| l.record.roster.contains_key(&device))
        else {
            return refused(RefusalCode::Forbidden, "not in the roster".into());
        };
        let registered =
            |d: DeviceId, u: &UserId| Ok(devices.get(&d).is_some_and(|c| &c.user == u));
        let user = devices
            .get(&device)
            .map(|c| c.user.clone())
            .expect("registered");
        match decide(&mut log.record, (device, &user), item, registered) {
            Err(r) => refused(r.code, r.message),
            Ok(Decision::Relay(_)) => Appended {
                answer: ServerFrame::Accepted {
                    request,
                    seq: log.record.next_seq,
                    hash: log.record.head,
                },
                entry: None,
                welcomes: Vec::new(),
                removed: Vec::new(),
            },
            Ok(Decision::Log {
                entry,
                welcome,
                adds,
                removed,
            }) => {
                log.entries.push(entry.clone());
                let answer = ServerFrame::Accepted {
                    request,
                    seq: entry.seq,
                    hash: entry.hash(),
                };
                let mut welcomes = Vec::new();
                if let Some(w) = welcome {
                    for d in adds {
                        self.next_welcome += 1;
                        self.welcomes.entry(d).or_default().push((
                            self.next_welcome,
                            space,
                            w.clone(),
                        ));
                        welcomes.push((
                            d,
                            ServerFrame::Welcome {
                                space,
                                welcome: w.clone(),
                            },
                        ));
                    }
                }
                Appended {
                    answer,
                    entry: Some((space, entry)),
                    welcomes,
                    removed,
                }
            }
        }
    }
}
