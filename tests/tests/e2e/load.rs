//! Load: hundreds of native clients in tens of spaces edit one filing per
//! space at once for a bounded time, pausing at random and dropping their
//! connection now and then, while every space gains a member midway (an
//! epoch change under load). At quiescence every replica of a space is
//! identical and every member of a space shows the same epoch and safety
//! code. Throughput and errors are printed.
//!
//! Sizes: `AMICUS_LOAD_SPACES` (20), `AMICUS_LOAD_MEMBERS` (10 from the
//! start, plus one who joins midway), `AMICUS_LOAD_SECONDS` (20);
//! `AMICUS_LONG=1` makes it 40 spaces for 120 s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use amicus_cli::{Client, ClientError, Edit};
use amicus_core::space::Role;
use amicus_core::{SpaceId, StreamId};
use futures_util::future::join_all;

use crate::support::{Server, long, register, setting};

fn random(below: u64) -> u64 {
    u64::from_le_bytes(amicus_core::MessageId::random().0[..8].try_into().unwrap()) % below
}

const WORDS: [&str; 8] = [
    "détention",
    "arbitraire",
    "المحكمة",
    "haki",
    "témoin",
    "Makala",
    "recours",
    "ubuntu",
];

#[derive(Default)]
struct Tally {
    acknowledged: u64,
    reconnects: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn error(&mut self, e: &ClientError) {
        let kind = match e {
            ClientError::Network(_) => "network",
            ClientError::Refused(_) => "refused",
            ClientError::Server { .. } => "server",
            ClientError::Forked(_) => "forked",
            ClientError::Withheld(_) => "withheld",
            _ => "other",
        };
        *self.errors.entry(kind.to_owned()).or_default() += 1;
    }

    fn add(&mut self, other: Tally) {
        self.acknowledged += other.acknowledged;
        self.reconnects += other.reconnects;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

/// One member's work until `deadline`: pause, sometimes drop the
/// connection, insert a word at a random place.
async fn edit_until(
    client: &mut Client,
    space: SpaceId,
    doc: StreamId,
    deadline: Instant,
    url: &str,
) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50 + random(400))).await;
        if random(40) == 0 {
            client.set_server(url).unwrap();
            tally.reconnects += 1;
        }
        let len = match client.read(space, doc) {
            Ok(f) => f.body.chars().count(),
            Err(e) => {
                tally.error(&e);
                continue;
            }
        };
        let word = format!(" {}", WORDS[random(WORDS.len() as u64) as usize]);
        let at = random(len as u64 + 1) as usize;
        match client
            .edit(space, doc, &[Edit::Insert(Some(at), word)])
            .await
        {
            Ok(()) => tally.acknowledged += 1,
            Err(e) => {
                if tally.errors.is_empty() {
                    eprintln!("{}: {e}", client.user());
                }
                tally.error(&e);
            }
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_clients_in_twenty_spaces_converge() {
    let spaces = setting("AMICUS_LOAD_SPACES", if long() { 40 } else { 20 });
    let members = setting("AMICUS_LOAD_MEMBERS", 10usize);
    let seconds = setting("AMICUS_LOAD_SECONDS", if long() { 120 } else { 20 });
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let started = Instant::now();

    // Everyone registers; each space's first member creates it, invites
    // the others and writes the filing's title.
    let mut groups = Vec::new();
    for s in 0..spaces {
        let mut group = Vec::new();
        for m in 0..=members {
            group.push(register(dir.path(), &server, &format!("s{s}m{m}")).await);
        }
        groups.push(group);
    }
    let setup = join_all(groups.iter_mut().enumerate().map(|(s, group)| async move {
        let owner = &mut group[0];
        let space = owner.create_space().await.unwrap();
        for m in 1..members {
            owner
                .invite(space, &format!("s{s}m{m}"), Role::Contributor)
                .await
                .unwrap();
        }
        let doc = owner.new_document(space, "Mémoire").await.unwrap();
        for member in &mut group[1..members] {
            member.sync_all().await.unwrap();
        }
        (space, doc)
    }))
    .await;
    let ready = started.elapsed();
    let clients = spaces * (members + 1);
    println!(
        "{clients} clients registered, {spaces} spaces of {members} members set up in {:.1} s",
        ready.as_secs_f64()
    );

    // The load: everyone edits; midway each space's creator invites the
    // last member, who joins and edits too.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let midway = Instant::now() + Duration::from_secs(seconds / 2);
    let url = server.url.clone();
    let load_started = Instant::now();
    let tallies: Vec<Tally> = join_all(groups.iter_mut().zip(&setup).enumerate().flat_map(
        |(s, (group, &(space, doc)))| {
            let url = url.clone();
            group.iter_mut().enumerate().map(move |(m, client)| {
                let url = url.clone();
                async move {
                    let mut tally = Tally::default();
                    if m == members {
                        // The late member waits for its invitation.
                        while !client.spaces().contains(&space) {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            if let Err(e) = client.sync_all().await {
                                tally.error(&e);
                            }
                        }
                    }
                    if m == 0 {
                        tally.add(edit_until(client, space, doc, midway, &url).await);
                        client
                            .invite(space, &format!("s{s}m{members}"), Role::Contributor)
                            .await
                            .unwrap();
                    }
                    tally.add(edit_until(client, space, doc, deadline, &url).await);
                    tally
                }
            })
        },
    ))
    .await;
    let load_time = load_started.elapsed();

    // Quiescence: everyone sends what it still holds, then reads to the end.
    let quiet_started = Instant::now();
    for _ in 0..2 {
        join_all(
            groups
                .iter_mut()
                .zip(&setup)
                .flat_map(|(group, &(space, doc))| {
                    group.iter_mut().map(move |client| async move {
                        for _ in 0..5 {
                            if client.edit(space, doc, &[]).await.is_ok() {
                                break;
                            }
                        }
                        client.sync(space).await.unwrap();
                    })
                }),
        )
        .await;
    }
    let quiet = quiet_started.elapsed();

    let mut chars = 0;
    for (s, (group, &(space, doc))) in groups.iter_mut().zip(&setup).enumerate() {
        let reference = group[0].read(space, doc).unwrap().body;
        let code = group[0].epoch(space).unwrap();
        assert_eq!(
            code.0, members as u64,
            "space {s}: one commit per member added"
        );
        for (m, client) in group.iter_mut().enumerate() {
            assert_eq!(
                client.read(space, doc).unwrap().body,
                reference,
                "space {s}: member {m}'s replica differs"
            );
            assert_eq!(
                client.epoch(space).unwrap(),
                code,
                "space {s}: member {m}'s safety code differs"
            );
            assert!(
                client.warnings.is_empty(),
                "s{s}m{m}: {:?}",
                client.warnings
            );
        }
        chars += reference.chars().count();
    }

    let mut total = Tally::default();
    for t in tallies {
        total.add(t);
    }
    let Tally {
        acknowledged,
        reconnects,
        errors,
    } = total;
    let failed: u64 = errors.values().sum();
    println!(
        "{clients} clients, {spaces} spaces, {:.1} s of editing: {acknowledged} edits acknowledged ({:.0}/s), {reconnects} reconnections, errors {errors:?}; quiescent {:.1} s later; {chars} characters in all, every replica identical, every safety code equal",
        load_time.as_secs_f64(),
        acknowledged as f64 / load_time.as_secs_f64(),
        quiet.as_secs_f64()
    );
    assert!(
        failed * 100 <= acknowledged,
        "more than 1% of the edits failed: {errors:?}"
    );
}
