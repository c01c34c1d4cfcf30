//! MLS: the cost of membership operations as a confidential space grows.
//!
//! One space (`amicus_core::space::Space`, openmls, ciphersuite 0x0003) is
//! grown to 2, 10, 100, 1,000 and 10,000 devices (`AMICUS_BENCH_MLS_SIZES`;
//! 2 and 10 in quick mode), each new device a user of its own (the worst
//! case for the policy extension, which pins one identity key per user),
//! added by the space manager in commits of at most 1,000 devices. A second
//! real member (the observer) joins at size 2 and processes every commit.
//! At each size, criterion measures:
//!
//! - add one member: stage the commit adding a new user's device (with its
//!   Welcome), as the manager does before sending it;
//! - remove one: stage the commit removing one device;
//! - self-update: stage a commit with a fresh leaf key;
//! - process a commit: the observer verifies and merges a self-update
//!   commit of the manager (a path of new secrets), and derives the new
//!   epoch's keys;
//! - join from a Welcome: a new device checks the Welcome (every leaf's
//!   device certificate against its user's pinned key) and builds its
//!   group from the ratchet tree the Welcome carries.
//!
//! Staged commits are discarded after each iteration (`commit_rejected`),
//! so the group does not change while an operation is measured, except for
//! "process", measured first, where each iteration is a new epoch. Medians are compared
//! with the same operation at size 2 in the same run, and their growth is
//! fitted against `a + b·log2(n)` (what the protocol's tree promises for
//! the path operations) and `a + b·n`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use amicus_benches::{criterion, criterion_median, fmt_duration, quick, write_section};
use amicus_core::identity::{Device, IdentityPublicKey, UserIdentity};
use amicus_core::space::{HistoryPolicy, NewMember, PendingCommit, Processed, Role, Space};
use amicus_core::{DeviceId, MlsProvider, UserId};
use criterion::{BatchSize, Criterion, SamplingMode};
use serde_json::json;

const LOG: (u64, [u8; 32]) = (0, [0; 32]);
const BATCH: usize = 1_000;
const OPS: [&str; 5] = ["add", "remove", "self-update", "process", "join"];
/// Past this median for one operation, larger sizes are not attempted.
const GIVE_UP: Duration = Duration::from_secs(20);

fn sizes() -> Vec<usize> {
    if let Ok(v) = std::env::var("AMICUS_BENCH_MLS_SIZES") {
        return v
            .split(',')
            .map(|s| s.trim().parse().expect("AMICUS_BENCH_MLS_SIZES: numbers"))
            .collect();
    }
    if quick() {
        vec![2, 10]
    } else {
        vec![2, 10, 100, 1_000, 10_000]
    }
}

struct Member {
    provider: MlsProvider,
    device: Device,
    identity: IdentityPublicKey,
}

impl Member {
    fn new(name: &str) -> (Self, UserIdentity) {
        let user = UserIdentity::generate(UserId::new(name).expect("a user name"));
        let member = Self {
            provider: MlsProvider::new(),
            device: user.new_device(),
            identity: user.public(),
        };
        (member, user)
    }

    fn as_new_member(&self) -> NewMember {
        NewMember {
            user: self.device.user().clone(),
            identity_key: self.identity,
            role: Role::Contributor,
            key_packages: self
                .device
                .key_packages(&self.provider, 1)
                .expect("a KeyPackage"),
            revoked: Vec::new(),
        }
    }
}

/// The space, its manager, the observer and the other devices.
struct Group {
    manager: Member,
    space: Space,
    observer: Member,
    observed: Space,
    /// Holds the private keys of the other devices' KeyPackages.
    pool: MlsProvider,
    others: Vec<DeviceId>,
    size: usize,
    names: usize,
}

impl Group {
    fn new() -> Self {
        let (manager, _) = Member::new("manager");
        let mut space = Space::create(
            &manager.provider,
            &manager.device,
            manager.identity,
            HistoryPolicy::Full,
        )
        .expect("create the space");
        let (observer, _) = Member::new("observer");
        let pending = space
            .add_members(
                &manager.provider,
                &manager.device,
                &[observer.as_new_member()],
                LOG,
            )
            .expect("add the observer");
        space.commit_accepted(&manager.provider).expect("merge");
        let observed = Space::join(
            &observer.provider,
            &observer.device,
            &observer.identity,
            pending.welcome.as_deref().expect("a Welcome"),
        )
        .expect("the observer joins");
        Self {
            manager,
            space,
            observer,
            observed,
            pool: MlsProvider::new(),
            others: Vec::new(),
            size: 2,
            names: 0,
        }
    }

    fn fresh_name(&mut self) -> String {
        self.names += 1;
        format!("member-{}", self.names)
    }

    /// A new user with one device whose KeyPackage's keys are in the pool.
    fn newcomer(&mut self) -> (NewMember, DeviceId) {
        let name = self.fresh_name();
        let user = UserIdentity::generate(UserId::new(&name).expect("a user name"));
        let device = user.new_device();
        let member = NewMember {
            user: device.user().clone(),
            identity_key: user.public(),
            role: Role::Contributor,
            key_packages: device.key_packages(&self.pool, 1).expect("a KeyPackage"),
            revoked: Vec::new(),
        };
        (member, device.id())
    }

    /// Adds devices in commits of at most 1,000; the observer processes each.
    fn grow_to(&mut self, target: usize) {
        while self.size < target {
            let n = BATCH.min(target - self.size);
            let (members, ids): (Vec<NewMember>, Vec<DeviceId>) =
                (0..n).map(|_| self.newcomer()).unzip();
            let pending = self
                .space
                .add_members(&self.manager.provider, &self.manager.device, &members, LOG)
                .expect("add members");
            self.space
                .commit_accepted(&self.manager.provider)
                .expect("merge");
            let processed = self
                .observed
                .process(
                    &self.observer.provider,
                    &pending.commit,
                    amicus_core::space::Content::Commit,
                )
                .expect("the observer processes the commit");
            assert!(matches!(processed, Processed::Commit { .. }));
            self.others.extend(ids);
            self.size += n;
        }
        assert_eq!(self.space.members().expect("roster").len(), self.size);
        assert_eq!(self.observed.epoch(), self.space.epoch());
    }
}

/// A commit the manager stages and then discards.
enum Staged<'a> {
    Add(&'a NewMember),
    Remove(DeviceId),
    SelfUpdate,
}

impl Group {
    /// Stages `what` as the manager, then discards it: the group is as
    /// before (except for the manager's handshake ratchet, see `measure`).
    fn staged(&mut self, what: Staged<'_>) -> PendingCommit {
        let (provider, device) = (&self.manager.provider, &self.manager.device);
        let p = match what {
            Staged::Add(m) => {
                self.space
                    .add_members(provider, device, std::slice::from_ref(m), LOG)
            }
            Staged::Remove(d) => self.space.remove_devices(provider, device, &[d], LOG),
            Staged::SelfUpdate => self.space.self_update(provider, device, LOG),
        }
        .expect("stage a commit");
        self.space.commit_rejected(provider).expect("discard");
        p
    }
}

#[derive(Default)]
struct Sizes {
    add_commit: usize,
    welcome: usize,
    update_commit: usize,
}

fn measure(c: &mut Criterion, g: &mut Group, n: usize) -> Sizes {
    let mut bytes = Sizes::default();
    let mut group = c.benchmark_group(format!("mls/{n}"));
    group.sample_size(10);
    if n >= 1_000 {
        group.sampling_mode(SamplingMode::Flat);
        group.warm_up_time(Duration::from_millis(100));
    }
    {
        let Group {
            manager,
            space,
            observer,
            observed,
            ..
        } = g;
        group.bench_function("process", |b| {
            b.iter_batched(
                || {
                    let p = space
                        .self_update(&manager.provider, &manager.device, LOG)
                        .expect("stage a self-update");
                    space.commit_accepted(&manager.provider).expect("merge");
                    p.commit
                },
                |commit| {
                    let processed = observed
                        .process(
                            &observer.provider,
                            &commit,
                            amicus_core::space::Content::Commit,
                        )
                        .expect("process the commit");
                    assert!(matches!(processed, Processed::Commit { .. }));
                },
                BatchSize::PerIteration,
            )
        });
    }
    let (extra, _) = g.newcomer();
    let p = g.staged(Staged::Add(&extra));
    bytes.add_commit = p.commit.len();
    bytes.welcome = p.welcome.as_ref().map_or(0, Vec::len);
    bytes.update_commit = g.staged(Staged::SelfUpdate).commit.len();
    group.bench_function("add", |b| {
        b.iter(|| black_box(g.staged(Staged::Add(&extra))))
    });
    let victim = *g.others.last().unwrap_or(&g.observer.device.id());
    group.bench_function("remove", |b| {
        b.iter(|| black_box(g.staged(Staged::Remove(victim))))
    });
    group.bench_function("self-update", |b| {
        b.iter(|| black_box(g.staged(Staged::SelfUpdate)))
    });
    group.bench_function("join", |b| {
        b.iter_batched(
            || {
                let (joiner, _) = Member::new(&g.fresh_name());
                let p = g.staged(Staged::Add(&joiner.as_new_member()));
                (joiner, p.welcome.expect("a Welcome"))
            },
            |(joiner, welcome)| {
                Space::join(&joiner.provider, &joiner.device, &joiner.identity, &welcome)
                    .expect("join")
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    // Every commit staged and discarded above consumed a generation of the
    // manager's handshake ratchet in this epoch, more than a receiver will
    // skip ahead: the observer moves the space to a fresh epoch.
    let p = g
        .observed
        .self_update(&g.observer.provider, &g.observer.device, LOG)
        .expect("the observer's self-update");
    g.observed
        .commit_accepted(&g.observer.provider)
        .expect("merge");
    g.space
        .process(
            &g.manager.provider,
            &p.commit,
            amicus_core::space::Content::Commit,
        )
        .expect("the manager processes it");
    bytes
}

/// Least squares of `y = a + b·x`; returns (a, b, R²).
fn fit(x: &[f64], y: &[f64]) -> (f64, f64, f64) {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = x.iter().map(|x| (x - mx).powi(2)).sum();
    let b = if sxx == 0.0 { 0.0 } else { sxy / sxx };
    let a = my - b * mx;
    let ss_res: f64 = x.iter().zip(y).map(|(x, y)| (y - a - b * x).powi(2)).sum();
    let ss_tot: f64 = y.iter().map(|y| (y - my).powi(2)).sum();
    let r2 = if ss_tot == 0.0 {
        1.0
    } else {
        1.0 - ss_res / ss_tot
    };
    (a, b, r2)
}

fn main() {
    let sizes = sizes();
    let mut c = criterion();
    let mut g = Group::new();
    let mut done: Vec<(usize, Duration, Sizes)> = Vec::new();
    let mut stopped = None;
    for &n in &sizes {
        let started = Instant::now();
        g.grow_to(n);
        let grown = started.elapsed();
        eprintln!("mls: grew the space to {n} devices in {grown:?}");
        let bytes = measure(&mut c, &mut g, n);
        done.push((n, grown, bytes));
        let slowest = OPS
            .iter()
            .filter_map(|op| criterion_median(&format!("mls/{n}"), op))
            .max()
            .unwrap_or_default();
        if slowest > GIVE_UP {
            stopped = Some((n, slowest));
            break;
        }
    }
    c.final_summary();

    let median = |n: usize, op: &str| criterion_median(&format!("mls/{n}"), op);
    let mut md = String::from("## MLS\n\n");
    md.push_str("Membership operations on one confidential space (openmls 0.9, ciphersuite `MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519`) as it grows; every device is a user of its own. \"add\", \"remove\" and \"self-update\" stage the commit a space manager sends (the Welcome included for an add); \"process\" is another member verifying and merging a self-update commit and deriving the new epoch's keys; \"join\" is a new device checking a Welcome (each leaf's device certificate against its user's pinned key) and building the group from the ratchet tree it carries. Criterion medians (10 samples); the ratio is to the same operation at 2 devices in the same run.\n\n");
    md.push_str("| devices | build | add | remove | self-update | process | join | add commit | Welcome | update commit |\n|---|---|---|---|---|---|---|---|---|---|\n");
    let base: Vec<Option<Duration>> = OPS.iter().map(|op| median(sizes[0], op)).collect();
    let mut raw_rows = Vec::new();
    for (n, grown, bytes) in &done {
        let mut cells = Vec::new();
        let mut raw_ops = serde_json::Map::new();
        for (i, op) in OPS.iter().enumerate() {
            let m = median(*n, op);
            raw_ops.insert((*op).into(), json!(m.map(|d| d.as_nanos() as u64)));
            cells.push(match (m, base[i]) {
                (Some(m), Some(b)) if *n != sizes[0] => format!(
                    "{} ({:.1}×)",
                    fmt_duration(m),
                    m.as_secs_f64() / b.as_secs_f64()
                ),
                (Some(m), _) => fmt_duration(m),
                _ => "—".into(),
            });
        }
        md.push_str(&format!(
            "| {n} | {} | {} | {:.1} KiB | {:.1} KiB | {:.1} KiB |\n",
            fmt_duration(*grown),
            cells.join(" | "),
            bytes.add_commit as f64 / 1024.0,
            bytes.welcome as f64 / 1024.0,
            bytes.update_commit as f64 / 1024.0,
        ));
        raw_rows.push(json!({
            "devices": n,
            "build_ns": grown.as_nanos() as u64,
            "median_ns": raw_ops,
            "add_commit_bytes": bytes.add_commit,
            "welcome_bytes": bytes.welcome,
            "update_commit_bytes": bytes.update_commit,
        }));
    }
    md.push_str("\n\"build\" is the time to grow the space from the previous size (adds in commits of at most 1,000 devices, each also processed by the observer).\n\n");
    if let [.., (n1, _, b1), (n2, _, b2)] = done.as_slice() {
        let per_device = (b2.update_commit as f64 - b1.update_commit as f64) / (n2 - n1) as f64;
        md.push_str(&format!(
            "Between {n1} and {n2} devices the self-update commit grows by {per_device:.0} bytes per device, about one HPKE ciphertext (32-byte encapsulated key, 32-byte secret, 16-byte tag) each: every device here is as it was added, so the tree's inner nodes above the added leaves are blank, and a new path secret is encrypted to every leaf of the copath's resolution, nearly every device, rather than to about log2 n nodes. MLS's logarithmic cost assumes members whose own updates have filled the tree; this benchmark does not measure such a tree.\n\n"
        ));
    }
    match stopped {
        Some((n, slowest)) => md.push_str(&format!(
            "Stopped after {n} devices: an operation's median there was {}, past the {} limit set for this benchmark.\n\n",
            fmt_duration(slowest),
            fmt_duration(GIVE_UP)
        )),
        None if done.len() == sizes.len() => {}
        None => md.push_str("Not every size was reached.\n\n"),
    }

    // Growth: fits over the sizes from 10 on (size 2 is mostly fixed costs).
    let fitted: Vec<&(usize, Duration, Sizes)> = done.iter().filter(|(n, ..)| *n >= 10).collect();
    let mut raw_fits = serde_json::Map::new();
    if fitted.len() >= 3 {
        md.push_str("How the median grows with the number of devices n (least squares over the sizes from 10 on): the exponent k of t ∝ n^k (about 0 for logarithmic growth, 1 for linear), and the share of variance explained by t = a + b·log2 n and by t = a + b·n.\n\n| operation | k | R², a + b·log2 n | R², a + b·n | grows like |\n|---|---|---|---|---|\n");
        for op in OPS {
            let points: Vec<(f64, f64)> = fitted
                .iter()
                .filter_map(|(n, ..)| median(*n, op).map(|m| (*n as f64, m.as_secs_f64())))
                .collect();
            if points.len() < 3 {
                continue;
            }
            let x: Vec<f64> = points.iter().map(|p| p.0).collect();
            let y: Vec<f64> = points.iter().map(|p| p.1).collect();
            let ln = |v: &[f64]| v.iter().map(|v| v.ln()).collect::<Vec<_>>();
            let (_, k, _) = fit(&ln(&x), &ln(&y));
            let log2: Vec<f64> = x.iter().map(|v| v.log2()).collect();
            let (_, _, r2_log) = fit(&log2, &y);
            let (_, _, r2_lin) = fit(&x, &y);
            let verdict = if k < 0.25 {
                "logarithmic or flatter"
            } else if k < 0.75 {
                "between logarithmic and linear"
            } else {
                "linear or worse"
            };
            md.push_str(&format!(
                "| {op} | {k:.2} | {r2_log:.3} | {r2_lin:.3} | {verdict} |\n"
            ));
            raw_fits.insert(
                op.into(),
                json!({ "k": k, "r2_log": r2_log, "r2_linear": r2_lin }),
            );
        }
        md.push('\n');
    } else {
        md.push_str("Fewer than three sizes from 10 on were measured: no fit.\n\n");
    }
    write_section(
        "mls",
        &md,
        &json!({ "sizes": raw_rows, "fits": raw_fits, "stopped_at": stopped.map(|s| s.0) }),
    );
}
