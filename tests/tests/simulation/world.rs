//! One simulated world: three people's devices running the client engine,
//! the model server, a network with latency, and the faults a seed draws.
//! Time is simulated (ticks of 10 ms); the seed decides every schedule,
//! delay and fault.

use std::collections::{BTreeMap, BTreeSet};

use amicus_core::api::{HttpRequest, HttpResponse};
use amicus_core::at_rest::{DeviceRecord, Restored};
use amicus_core::document::filing;
use amicus_core::engine::{Code, Config, Engine, Event, Intent, Link, OpId, Output, RequestId};
use amicus_core::identity::{Contacts, UserIdentity};
use amicus_core::space::Role;
use amicus_core::wire::{ClientFrame, LogEntry, ServerFrame};
use amicus_core::{MlsProvider, SpaceId, StreamId, UserId};

use crate::model::Model;

const TICK: u64 = 10;
/// Faults happen before this; afterwards the world heals.
const FAULTY_UNTIL: u64 = 20_000;
const END: u64 = 45_000;

/// A deterministic generator (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    pub fn between(&mut self, a: u64, b: u64) -> u64 {
        a + self.below(b - a + 1)
    }
}

/// What the server does wrong to one device, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misbehaviour {
    Honest,
    /// Drops some entry frames.
    Drops,
    /// Sends some entry frames twice.
    Duplicates,
    /// Swaps some entry frames with the next frame.
    Reorders,
    /// From some point on, delivers no new entry while `Synced` announces them.
    Withholds,
    /// Announces a log shorter than the one the device read.
    RollsBack,
    /// Rewrites an entry's link to the previous one (a forked chain).
    Forks,
}

/// The mix of faults a seed drew, for the run's summary.
#[derive(Clone, Debug, Default)]
pub struct Mix {
    pub misbehaviour: Option<Misbehaviour>,
    pub latency_max: u64,
    pub disconnects: u32,
    pub crashes: u32,
    pub http_failures: u32,
    pub session_expiries: u32,
    pub removal: bool,
    pub entries: u64,
}

struct Node {
    name: &'static str,
    engine: Option<Engine>,
    /// The last durable state (what a crash keeps).
    disk: Vec<u8>,
    token: Option<String>,
    /// Incremented at each crash: answers for an earlier run are dropped.
    run: u32,
    conn: Option<u64>,
    down_until: u64,
    next_action: u64,
    next_refresh: u64,
    warnings: Vec<(Code, String)>,
    /// Flush operations started after typing a marker.
    flushes: BTreeMap<OpId, String>,
    /// Other operations the scenario waits for.
    pending: BTreeMap<OpId, &'static str>,
    typed: Vec<String>,
    acked: Vec<String>,
    /// Markers typed after this device had seen the removal of `carol`.
    after_removal: Vec<String>,
    /// Never crashes (the victim of withholding, so that it must notice).
    steady: bool,
}

struct Conn {
    node: usize,
    alive: bool,
    subs: BTreeSet<SpaceId>,
    /// Frames to the client leave in order: none before this time.
    last: u64,
}

enum Msg {
    ToServer {
        conn: u64,
        frame: ClientFrame,
    },
    ToClient {
        conn: u64,
        frame: ServerFrame,
        /// The misbehaving server altered it: it counts once the device
        /// has read it.
        altered: bool,
    },
    Http {
        node: usize,
        run: u32,
        id: RequestId,
        response: Result<HttpResponse, String>,
    },
}

pub struct World {
    rng: Rng,
    now: u64,
    model: Model,
    nodes: Vec<Node>,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    queue: BTreeMap<(u64, u64), Msg>,
    next_msg: u64,
    mix: Mix,
    misbehaviour: Misbehaviour,
    victim: usize,
    disconnect_per_mille: u64,
    crash_per_mille: u64,
    http_fail_per_mille: u64,
    remove_at: Option<u64>,
    space: Option<SpaceId>,
    stream: StreamId,
    invited: Vec<&'static str>,
    removal_epoch: Option<u64>,
    withhold_from: Option<u64>,
    held: Option<(u64, ServerFrame)>,
    /// An altered frame is on its way.
    altering: bool,
    triggered: bool,
    /// The filing's first change is in the log.
    filing: bool,
}

const ALICE: usize = 0;
const CAROL: usize = 2;

fn config() -> Config {
    Config::default()
}

impl World {
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut model = Model::default();
        let mut nodes = Vec::new();
        for name in ["alice", "bob", "carol"] {
            let identity = UserIdentity::generate(UserId::new(name).unwrap());
            let device = identity.new_device();
            model.register(&identity, device.certificate());
            let restored = Restored {
                identity: Some(identity),
                device,
                provider: MlsProvider::new(),
                spaces: Default::default(),
                contacts: Contacts::default(),
                seen: Some(Vec::new()),
            };
            let mut engine = Engine::new(restored, None, config());
            let disk = engine.persist().unwrap().encode().to_vec();
            nodes.push(Node {
                name,
                engine: Some(engine),
                disk,
                token: None,
                run: 0,
                conn: None,
                down_until: 0,
                next_action: 0,
                next_refresh: 0,
                warnings: Vec::new(),
                flushes: BTreeMap::new(),
                pending: BTreeMap::new(),
                typed: Vec::new(),
                acked: Vec::new(),
                after_removal: Vec::new(),
                steady: false,
            });
        }
        let misbehaviour = match rng.below(10) {
            0 => Misbehaviour::Drops,
            1 => Misbehaviour::Duplicates,
            2 => Misbehaviour::Reorders,
            3 => Misbehaviour::Withholds,
            4 => Misbehaviour::RollsBack,
            5 => Misbehaviour::Forks,
            _ => Misbehaviour::Honest,
        };
        let victim = 1 + rng.below(2) as usize;
        if misbehaviour == Misbehaviour::Withholds {
            nodes[victim].steady = true;
        }
        let latency_max = [5, 30, 120][rng.below(3) as usize];
        let remove_at = rng.chance(300).then(|| rng.between(8_000, 15_000));
        let mix = Mix {
            misbehaviour: Some(misbehaviour),
            latency_max,
            removal: remove_at.is_some(),
            ..Mix::default()
        };
        Self {
            disconnect_per_mille: rng.below(4),
            crash_per_mille: rng.below(3),
            http_fail_per_mille: rng.below(40),
            rng,
            now: 0,
            model,
            nodes,
            conns: BTreeMap::new(),
            next_conn: 0,
            queue: BTreeMap::new(),
            next_msg: 0,
            mix,
            misbehaviour,
            victim,
            remove_at,
            space: None,
            stream: StreamId::random(),
            invited: Vec::new(),
            removal_epoch: None,
            withhold_from: None,
            held: None,
            altering: false,
            triggered: false,
            filing: false,
        }
    }

    fn faulty(&self) -> bool {
        self.now < FAULTY_UNTIL
    }

    fn latency(&mut self) -> u64 {
        1 + self.rng.below(self.mix.latency_max)
    }

    fn push(&mut self, at: u64, msg: Msg) {
        self.next_msg += 1;
        self.queue.insert((at, self.next_msg), msg);
    }

    /// Runs the world to its end and checks what must hold.
    pub fn run(mut self) -> Result<Mix, String> {
        self.start(ALICE, Intent::Refresh, "refresh");
        self.start(1, Intent::Refresh, "refresh");
        self.start(CAROL, Intent::Refresh, "refresh");
        while self.now < END {
            self.deliver();
            self.scenario();
            for i in 0..self.nodes.len() {
                self.pump(i);
            }
            self.now += TICK;
        }
        self.check()
    }

    fn deliver(&mut self) {
        while let Some((&(at, seq), _)) = self.queue.first_key_value() {
            if at > self.now {
                break;
            }
            let msg = self.queue.remove(&(at, seq)).unwrap();
            match msg {
                Msg::ToServer { conn, frame } => self.serve(conn, frame),
                Msg::ToClient {
                    conn,
                    frame,
                    altered,
                } => {
                    let Some(c) = self.conns.get(&conn).filter(|c| c.alive) else {
                        self.altering &= !altered;
                        continue;
                    };
                    let node = c.node;
                    let Some(e) = self.nodes[node].engine.as_mut() else {
                        self.altering &= !altered;
                        continue;
                    };
                    if altered {
                        self.altering = false;
                        // A forked entry counts if it is read (the next one,
                        // or one already read); a shortened log if it is
                        // shorter than what was read.
                        let read = match &frame {
                            ServerFrame::Entry { space, .. }
                            | ServerFrame::Synced { space, .. } => {
                                e.view(*space).map_or(0, |v| v.read_to())
                            }
                            _ => 0,
                        };
                        self.triggered |= match &frame {
                            ServerFrame::Entry { entry, .. } => entry.seq <= read,
                            ServerFrame::Synced { next_seq, .. } => *next_seq < read,
                            _ => false,
                        };
                    }
                    e.handle_frame(self.now, frame);
                    // A driver hands the interface what a frame changed at
                    // once (before anything else can happen to the device).
                    let mut events = Vec::new();
                    while let Some(event) = e.poll_event() {
                        events.push(event);
                    }
                    for event in events {
                        self.on_event(node, event);
                    }
                }
                Msg::Http {
                    node,
                    run,
                    id,
                    response,
                } => {
                    let n = &mut self.nodes[node];
                    if n.run == run
                        && let Some(e) = n.engine.as_mut()
                    {
                        e.handle_response(self.now, id, response);
                    }
                }
            }
        }
    }

    /// Sends a frame to a client, through the misbehaving server if the
    /// client is its victim.
    fn send_to_client(&mut self, conn: u64, frame: ServerFrame) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let node = c.node;
        let mut frames = vec![(frame, false)];
        if node == self.victim && self.faulty() {
            let (frame, _) = frames.pop().unwrap();
            frames = self.misbehave(node, frame);
        }
        for (frame, altered) in frames {
            let latency = self.latency();
            let c = self.conns.get_mut(&conn).unwrap();
            let at = (self.now + latency).max(c.last);
            c.last = at;
            self.push(
                at,
                Msg::ToClient {
                    conn,
                    frame,
                    altered,
                },
            );
        }
    }

    fn misbehave(&mut self, node: usize, frame: ServerFrame) -> Vec<(ServerFrame, bool)> {
        let is_entry = matches!(frame, ServerFrame::Entry { .. });
        let plain = |f: ServerFrame| vec![(f, false)];
        match self.misbehaviour {
            Misbehaviour::Honest => plain(frame),
            Misbehaviour::Drops if is_entry && self.rng.chance(150) => Vec::new(),
            Misbehaviour::Duplicates if is_entry && self.rng.chance(150) => {
                vec![(frame.clone(), false), (frame, false)]
            }
            Misbehaviour::Reorders => match self.held.take() {
                Some((_, held)) => vec![(frame, false), (held, false)],
                None if is_entry && self.rng.chance(150) => {
                    self.held = Some((self.now, frame));
                    Vec::new()
                }
                None => plain(frame),
            },
            Misbehaviour::Withholds => {
                let log = self
                    .space
                    .map_or(0, |s| self.model.spaces[&s].record.next_seq);
                if self.withhold_from.is_none()
                    && (5_000..FAULTY_UNTIL - 10_000).contains(&self.now)
                    && log > 3
                {
                    self.withhold_from = Some(log);
                }
                match (&frame, self.withhold_from) {
                    (ServerFrame::Entry { entry, .. }, Some(from)) if entry.seq >= from => {
                        self.triggered = true;
                        Vec::new()
                    }
                    _ => plain(frame),
                }
            }
            Misbehaviour::RollsBack => match frame {
                ServerFrame::Synced {
                    space,
                    next_seq,
                    head,
                    epoch,
                } if !self.triggered && !self.altering && self.now > 5_000 && next_seq >= 3 => {
                    self.altering = true;
                    vec![(
                        ServerFrame::Synced {
                            space,
                            next_seq: next_seq - 2,
                            head,
                            epoch,
                        },
                        true,
                    )]
                }
                other => plain(other),
            },
            Misbehaviour::Forks => match frame {
                ServerFrame::Entry { space, mut entry }
                    if !self.triggered && !self.altering && self.now > 5_000 && entry.seq > 2 =>
                {
                    let _ = node;
                    self.altering = true;
                    entry.prev[0] ^= 1;
                    vec![(ServerFrame::Entry { space, entry }, true)]
                }
                other => plain(other),
            },
            _ => plain(frame),
        }
    }

    /// A new log entry to every live subscriber of its space.
    fn fan_out(&mut self, space: SpaceId, entry: LogEntry) {
        self.mix.entries += 1;
        let subscribers: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.alive && c.subs.contains(&space))
            .map(|(id, _)| *id)
            .collect();
        for s in subscribers {
            self.send_to_client(
                s,
                ServerFrame::Entry {
                    space,
                    entry: entry.clone(),
                },
            );
        }
    }

    fn serve(&mut self, conn: u64, frame: ClientFrame) {
        let Some(c) = self.conns.get(&conn).filter(|c| c.alive) else {
            return;
        };
        let node = c.node;
        let device = self.nodes[node].engine.as_ref().map(|e| e.device().id());
        let Some(device) = device else {
            return;
        };
        match frame {
            ClientFrame::Ping => self.send_to_client(conn, ServerFrame::Pong),
            ClientFrame::Subscribe {
                request,
                space,
                from_seq,
            } => {
                let frames = self.model.subscribe(device, request, space, from_seq);
                if !matches!(frames.last(), Some(ServerFrame::Refused { .. })) {
                    self.conns.get_mut(&conn).unwrap().subs.insert(space);
                }
                for f in frames {
                    self.send_to_client(conn, f);
                }
            }
            ClientFrame::Report {
                request,
                space,
                commit,
            } => {
                let (answer, entry) = self.model.report(device, request, space, commit);
                self.send_to_client(conn, answer);
                if let Some((space, entry)) = entry {
                    self.fan_out(space, entry);
                }
            }
            ClientFrame::Append {
                request,
                space,
                item,
            } => {
                let appended = self.model.append(device, request, space, item);
                self.send_to_client(conn, appended.answer);
                if let Some((space, entry)) = appended.entry {
                    self.fan_out(space, entry);
                }
                for (d, welcome) in appended.welcomes {
                    let targets: Vec<u64> = self
                        .conns
                        .iter()
                        .filter(|(_, c)| {
                            c.alive
                                && self.nodes[c.node]
                                    .engine
                                    .as_ref()
                                    .is_some_and(|e| e.device().id() == d)
                        })
                        .map(|(id, _)| *id)
                        .collect();
                    for t in targets {
                        self.send_to_client(t, welcome.clone());
                    }
                }
                if !appended.removed.is_empty() {
                    for c in self.conns.values_mut() {
                        let dev = self.nodes[c.node].engine.as_ref().map(|e| e.device().id());
                        if dev.is_some_and(|d| appended.removed.contains(&d)) {
                            c.subs.remove(&space);
                        }
                    }
                }
            }
        }
    }

    fn start(&mut self, node: usize, intent: Intent, purpose: &'static str) -> Option<OpId> {
        let now = self.now;
        let n = &mut self.nodes[node];
        let op = n.engine.as_mut()?.start(now, intent);
        n.pending.insert(op, purpose);
        Some(op)
    }

    fn inviting(&self) -> bool {
        self.nodes[ALICE]
            .pending
            .values()
            .any(|p| p.starts_with("invite"))
    }

    fn busy(&self, node: usize, purpose: &str) -> bool {
        self.nodes[node].pending.values().any(|p| *p == purpose)
    }

    /// What the people do: create the space, invite, type, remove.
    fn scenario(&mut self) {
        if self.space.is_none() && !self.busy(ALICE, "create") && self.nodes[ALICE].engine.is_some()
        {
            // Alice creates the space once signed in.
            if self.nodes[ALICE].engine.as_ref().unwrap().token().is_some() {
                self.start(ALICE, Intent::CreateSpace, "create");
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].engine.is_some() && self.now >= self.nodes[i].next_refresh {
                let every = if self.faulty() {
                    (800, 3_000)
                } else {
                    (4_000, 6_000)
                };
                self.nodes[i].next_refresh = self.now + self.rng.between(every.0, every.1);
                if !self.busy(i, "refresh") {
                    self.start(i, Intent::Refresh, "refresh");
                }
            }
        }
        let Some(space) = self.space else {
            return;
        };
        if !self.filing {
            // The answer to the filing's first flush may have been lost to a
            // crash: the log (whose headers are in clear) says whether it
            // went through. Starting it twice would make two filings.
            let stream = self.stream;
            self.filing = self.model.spaces[&space].entries.iter().any(|e| {
                amicus_core::envelope::Header::parse(&e.payload).is_ok_and(|h| h.stream == stream)
            });
        }
        if !self.filing && !self.busy(ALICE, "init") && self.nodes[ALICE].engine.is_some() {
            // Alice starts the filing (again, if a crash lost it before it
            // reached the server).
            let stream = self.stream;
            let engine = self.nodes[ALICE].engine.as_mut().unwrap();
            let started = engine
                .view_mut(space)
                .and_then(|v| v.existing_replica(stream))
                .is_some_and(|r| filing::body(r.doc()).is_ok());
            if !started {
                engine
                    .edit(space, stream, |r| filing::init(r.doc(), "Requête"))
                    .unwrap()
                    .unwrap();
            }
            self.start(ALICE, Intent::Flush { space, stream }, "init");
        }
        for name in ["bob", "carol"] {
            if !self.invited.contains(&name)
                && !self.inviting()
                && self.nodes[ALICE].engine.is_some()
            {
                self.start(
                    ALICE,
                    Intent::Invite {
                        space,
                        user: UserId::new(name).unwrap(),
                        role: Role::Contributor,
                    },
                    name_purpose(name),
                );
                break;
            }
        }
        if let Some(at) = self.remove_at
            && self.now >= at
            && self.invited.contains(&"carol")
            && !self.busy(ALICE, "remove")
            && !self.inviting()
        {
            self.remove_at = None;
            self.start(
                ALICE,
                Intent::Remove {
                    space,
                    user: UserId::new("carol").unwrap(),
                },
                "remove",
            );
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].engine.is_none() {
                continue;
            }
            if self.faulty() && self.now >= self.nodes[i].next_action {
                self.nodes[i].next_action = self.now + self.rng.between(300, 1_500);
                self.type_marker(i, space);
            }
            if !self.faulty() && self.now == FAULTY_UNTIL + 1_000 {
                // Edits kept from before a crash go out.
                let stream = self.stream;
                if let Some(op) = self.nodes[i]
                    .engine
                    .as_mut()
                    .map(|e| e.start(self.now, Intent::Flush { space, stream }))
                {
                    self.nodes[i].pending.insert(op, "flush");
                }
            }
        }
    }

    fn type_marker(&mut self, i: usize, space: SpaceId) {
        let stream = self.stream;
        let at_random = self.rng.below(1 << 20) as usize;
        let n = &mut self.nodes[i];
        let engine = n.engine.as_mut().unwrap();
        let Some(view) = engine.view_mut(space) else {
            return;
        };
        if view.is_removed() || view.broken().is_some() {
            return;
        }
        let epoch = view.space().epoch();
        let Some(replica) = view.existing_replica(stream) else {
            return;
        };
        let Ok(body) = filing::body(replica.doc()) else {
            return;
        };
        // Between two markers, never inside one.
        let places: Vec<usize> = std::iter::once(0)
            .chain(
                body.chars()
                    .enumerate()
                    .filter(|(_, c)| *c == '>')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        let marker = format!("<{}{}>", n.name, n.typed.len());
        let at = places[at_random % places.len()];
        let typed = engine
            .edit(space, stream, |r| filing::splice(r.doc(), at, 0, &marker))
            .is_ok_and(|r| r.is_ok());
        if !typed {
            return;
        }
        n.typed.push(marker.clone());
        if self.removal_epoch.is_some_and(|e| epoch >= e) {
            n.after_removal.push(marker.clone());
        }
        if self.rng.chance(700) {
            let op = self.nodes[i]
                .engine
                .as_mut()
                .unwrap()
                .start(self.now, Intent::Flush { space, stream });
            self.nodes[i].flushes.insert(op, marker);
        }
    }

    /// Does everything a node's engine asks for now.
    fn pump(&mut self, i: usize) {
        if self.nodes[i].engine.is_none() {
            if self.now >= self.nodes[i].down_until {
                self.restart(i);
            } else {
                return;
            }
        }
        if self.faulty() {
            if !self.nodes[i].steady && self.rng.chance(self.crash_per_mille) {
                self.crash(i);
                return;
            }
            if self.nodes[i].conn.is_some() && self.rng.chance(self.disconnect_per_mille) {
                self.mix.disconnects += 1;
                self.disconnect(i);
            }
            if self.rng.chance(self.crash_per_mille / 2) {
                self.mix.session_expiries += 1;
                self.model.expire_sessions();
            }
        }
        for _ in 0..100 {
            let mut moved = false;
            let now = self.now;
            let engine = self.nodes[i].engine.as_mut().unwrap();
            if engine.must_persist() || (engine.changed() && now.is_multiple_of(1_000)) {
                let record = engine.persist().unwrap();
                self.nodes[i].token = engine.token().map(str::to_owned);
                self.nodes[i].disk = record.encode().to_vec();
            }
            let node = &mut self.nodes[i];
            let engine = node.engine.as_mut().unwrap();
            if node.conn.is_none() && engine.wants_connection() {
                moved = true;
                let token = engine.token().map(str::to_owned);
                if self.model.session(token.as_deref()).is_some() {
                    self.next_conn += 1;
                    self.conns.insert(
                        self.next_conn,
                        Conn {
                            node: i,
                            alive: true,
                            subs: BTreeSet::new(),
                            last: 0,
                        },
                    );
                    node.conn = Some(self.next_conn);
                    engine.handle_link(now, Link::Up);
                } else {
                    engine.handle_link(now, Link::Unauthorized);
                }
            }
            let engine = self.nodes[i].engine.as_mut().unwrap();
            let mut frames = Vec::new();
            while let Some(f) = engine.poll_transmit() {
                frames.push(f);
            }
            let mut requests = Vec::new();
            while let Some(r) = engine.poll_request() {
                requests.push(r);
            }
            let token = engine.token().map(str::to_owned);
            for frame in frames {
                moved = true;
                if let Some(conn) = self.nodes[i].conn {
                    let at = now + self.latency();
                    self.push(at, Msg::ToServer { conn, frame });
                }
            }
            for (id, request) in requests {
                moved = true;
                self.request(i, id, &request, token.as_deref());
            }
            while let Some(event) = self.nodes[i].engine.as_mut().unwrap().poll_event() {
                self.on_event(i, event);
            }
            let engine = self.nodes[i].engine.as_mut().unwrap();
            if engine.poll_timeout().is_some_and(|t| t <= now) {
                engine.handle_timeout(now);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    fn request(&mut self, i: usize, id: RequestId, request: &HttpRequest, token: Option<&str>) {
        let run = self.nodes[i].run;
        let fail = self.faulty() && self.rng.chance(self.http_fail_per_mille);
        let response = if fail && self.rng.chance(500) {
            // Lost on the way there: the server never saw it.
            self.mix.http_failures += 1;
            Err("connection reset".to_owned())
        } else {
            let answer = self.model.http(request, token);
            if fail {
                // Lost on the way back: the server acted on it.
                self.mix.http_failures += 1;
                Err("connection reset".to_owned())
            } else {
                Ok(answer)
            }
        };
        let at = self.now + 2 * self.latency();
        self.push(
            at,
            Msg::Http {
                node: i,
                run,
                id,
                response,
            },
        );
    }

    fn on_event(&mut self, i: usize, event: Event) {
        match event {
            Event::Warning { code, message, .. } => self.nodes[i].warnings.push((code, message)),
            Event::Done { op, result } => {
                if let Some(marker) = self.nodes[i].flushes.remove(&op) {
                    if result.is_ok() {
                        self.nodes[i].acked.push(marker);
                    }
                    return;
                }
                let Some(purpose) = self.nodes[i].pending.remove(&op) else {
                    return;
                };
                match (purpose, result) {
                    ("create", Ok(Output::Space(space))) => self.space = Some(space),
                    ("init", Ok(_)) => self.filing = true,
                    ("invite bob", r) | ("invite carol", r) => {
                        let name = if purpose == "invite bob" {
                            "bob"
                        } else {
                            "carol"
                        };
                        // An invitation whose answer was lost to a crash
                        // may have gone through: the roster says.
                        let member = self.space.is_some_and(|space| {
                            self.nodes[i]
                                .engine
                                .as_ref()
                                .and_then(|e| e.view(space))
                                .and_then(|v| v.space().members().ok())
                                .is_some_and(|m| m.iter().any(|m| m.user.as_str() == name))
                        });
                        if r.is_ok() || member {
                            self.invited.push(name);
                        }
                    }
                    ("remove", Ok(Output::Epoch(e))) => self.removal_epoch = Some(e),
                    (purpose, Err(e)) if std::env::var("AMICUS_SIM_DEBUG").is_ok() => {
                        eprintln!(
                            "{} {}: {purpose} failed: {e:?}",
                            self.now, self.nodes[i].name
                        )
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn disconnect(&mut self, i: usize) {
        if let Some(conn) = self.nodes[i].conn.take() {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.alive = false;
            }
            if let Some(e) = self.nodes[i].engine.as_mut() {
                e.handle_link(self.now, Link::Down);
            }
        }
    }

    fn crash(&mut self, i: usize) {
        self.mix.crashes += 1;
        self.disconnect(i);
        let n = &mut self.nodes[i];
        n.engine = None;
        n.run += 1;
        n.flushes.clear();
        n.pending.clear();
        n.down_until = self.now + self.rng.between(100, 1_500);
    }

    fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let record = DeviceRecord::decode(&n.disk).expect("the saved state decodes");
        let restored = record.restore().expect("the saved state loads");
        n.engine = Some(Engine::new(restored, n.token.clone(), config()));
        let op = n.engine.as_mut().unwrap().start(self.now, Intent::Refresh);
        n.pending.insert(op, "refresh");
    }

    /// What must hold once the world has healed.
    fn check(mut self) -> Result<Mix, String> {
        let space = self.space.ok_or_else(|| {
            format!(
                "the space was never created (alice: {:?}, pending {:?}, token {:?})",
                self.nodes[ALICE].warnings,
                self.nodes[ALICE].pending,
                self.nodes[ALICE]
                    .engine
                    .as_ref()
                    .map(|e| e.token().is_some())
            )
        })?;
        let stream = self.stream;
        let broken_victim = matches!(
            self.misbehaviour,
            Misbehaviour::RollsBack | Misbehaviour::Forks
        ) && self.triggered;
        let reportable = matches!(
            self.misbehaviour,
            Misbehaviour::Withholds | Misbehaviour::RollsBack | Misbehaviour::Forks
        );
        // A victim removed from the space is no longer served at all: what
        // was withheld from it is not its to read.
        let victim_device = self.nodes[self.victim]
            .engine
            .as_ref()
            .map(|e| e.device().id());
        let victim_served =
            victim_device.is_some_and(|d| self.model.spaces[&space].record.roster.contains_key(&d));
        if reportable && self.triggered && victim_served {
            let expected = if self.misbehaviour == Misbehaviour::Withholds {
                Code::Withheld
            } else {
                Code::Forked
            };
            let reported = self
                .nodes
                .iter()
                .any(|n| n.warnings.iter().any(|(c, _)| *c == expected));
            if !reported {
                return Err(format!(
                    "the server {:?} and no client reported it (victim {}: {:?})",
                    self.misbehaviour,
                    self.nodes[self.victim].name,
                    self.nodes[self.victim].warnings
                ));
            }
        }
        let mut reference: Option<Seen> = None;
        if self.removal_epoch.is_none() {
            // The answer to the removal was lost to a crash: the rosters of
            // Alice's key ring say when Carol left.
            let carol = self.nodes[CAROL].engine.as_ref().map(|e| e.device().id());
            let alice = self.nodes[ALICE]
                .engine
                .as_ref()
                .and_then(|e| e.view(space));
            if let (Some(carol), Some(view)) = (carol, alice) {
                let ring = view.space().keyring();
                let mut was_in = false;
                for e in ring.epochs().collect::<Vec<_>>() {
                    let is_in = ring
                        .roster(e)
                        .is_some_and(|r| r.iter().any(|m| m.device == carol));
                    if was_in && !is_in {
                        self.removal_epoch = Some(e);
                    }
                    was_in = is_in;
                }
            }
        }
        let removal_epoch = self.removal_epoch;
        for i in 0..self.nodes.len() {
            let victim = i == self.victim;
            let n = &mut self.nodes[i];
            let engine = n
                .engine
                .as_mut()
                .ok_or("a device is still down at the end")?;
            let Some(view) = engine.view_mut(space) else {
                if n.name == "carol" && removal_epoch.is_some() {
                    continue;
                }
                return Err(format!("{} never joined the space", n.name));
            };
            if view.broken().is_some() {
                if victim && broken_victim {
                    continue;
                }
                return Err(format!("{}'s view broke: {:?}", n.name, view.broken()));
            }
            // Carol is out once the server's roster says so: her device
            // learns it from the removal commit if it read it, and otherwise
            // only from the server refusing to serve her, which alone does
            // not mark the space as left (a server could lie).
            let out = n.name == "carol" && removal_epoch.is_some();
            if view.is_removed() && !out {
                return Err(format!("{} was removed", n.name));
            }
            if out {
                // A removed member reads nothing written after its removal.
                let text = view
                    .existing_replica(stream)
                    .map(|r| filing::body(r.doc()).unwrap_or_default())
                    .unwrap_or_default();
                let e = removal_epoch.unwrap();
                if view.space().keyring().epochs().any(|k| k >= e) {
                    return Err(format!("carol holds the key of epoch {e} or later"));
                }
                let leaked: Vec<&String> = self
                    .nodes
                    .iter()
                    .flat_map(|o| o.after_removal.iter())
                    .filter(|m| text.contains(m.as_str()))
                    .collect();
                if !leaked.is_empty() {
                    return Err(format!(
                        "carol read edits made after her removal: {leaked:?}"
                    ));
                }
                continue;
            }
            let epoch = view.space().epoch();
            let code = view.space().epoch_authenticator();
            let Some(replica) = view.existing_replica(stream) else {
                return Err(format!("{} has no filing", n.name));
            };
            let pending = replica.pending();
            let log = self.model.spaces[&space].record.next_seq;
            let (unreadable, recorded, keys): (String, Vec<u64>, Vec<u64>) = {
                let v = engine.view(space).unwrap();
                (
                    format!("{} read of {log}, {}", v.read_to(), v.unreadable()),
                    (0..=epoch).filter(|e| v.has_record(*e)).collect(),
                    v.space().keyring().epochs().collect(),
                )
            };
            let engine = n.engine.as_mut().unwrap();
            let replica = engine
                .view_mut(space)
                .unwrap()
                .existing_replica(stream)
                .unwrap();
            let text = filing::body(replica.doc())
                .map_err(|e| format!("{}'s filing: {e} ({pending} changes wait for others; epoch {epoch}, {unreadable} unreadable, records of {recorded:?}, keys of {keys:?})", n.name))?;
            let heads: Vec<String> = replica.heads().iter().map(|h| h.to_string()).collect();
            let text = format!(
                "{text} [{pending} waiting, {unreadable} unreadable, epoch {epoch}, records {recorded:?}, keys {keys:?}]"
            );
            match &reference {
                None => reference = Some(Seen(n.name.to_owned(), text, heads, epoch, code)),
                Some(Seen(who, t, h, e, c)) => {
                    if *t != text || *h != heads {
                        let name = n.name;
                        let warnings: Vec<_> = self
                            .nodes
                            .iter()
                            .map(|n| (n.name, n.engine.as_ref().map(|e| e.status()), &n.pending))
                            .collect();
                        return Err(format!(
                            "{name} and {who} differ:\n{text}\n{t}\n{warnings:?}"
                        ));
                    }
                    if *e != epoch || *c != code {
                        return Err(format!(
                            "{} and {who} disagree on the epoch or safety code ({epoch} / {e})",
                            n.name
                        ));
                    }
                }
            }
        }
        let Seen(_, text, ..) = reference.ok_or("no honest member is left to compare")?;
        for n in &self.nodes {
            for m in &n.acked {
                let count = text.matches(m.as_str()).count();
                if count != 1 {
                    return Err(format!(
                        "{}'s acknowledged edit {m} appears {count} times in {text:?} (typed {:?}, acknowledged {:?})",
                        n.name, n.typed, n.acked
                    ));
                }
            }
            for m in &n.typed {
                if text.matches(m.as_str()).count() > 1 {
                    return Err(format!("{}'s edit {m} is doubled", n.name));
                }
            }
        }
        Ok(self.mix)
    }
}

/// What one member ends with: name, text, heads, epoch, safety code.
struct Seen(String, String, Vec<String>, u64, Vec<u8>);

fn name_purpose(name: &str) -> &'static str {
    if name == "bob" {
        "invite bob"
    } else {
        "invite carol"
    }
}
