//! A 512 MiB file through the whole path, with bounded memory on both sides
//! and an upload interrupted by SIGKILL that resumes.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{PASS, Server, amicus_bin, peak_rss, register};

const SIZE: u64 = 512 << 20;
/// Far below the file's size: neither side may hold the file.
const MEMORY_BOUND: u64 = 192 << 20;

fn write_source(path: &std::path::Path) -> [u8; 32] {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut xof = blake3::Hasher::new()
        .update(b"amicus e2e file")
        .finalize_xof();
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..(SIZE >> 20) {
        xof.fill(&mut buf);
        hasher.update(&buf);
        out.write_all(&buf).unwrap();
    }
    out.flush().unwrap();
    *hasher.finalize().as_bytes()
}

fn blob_files(dir: &std::path::Path) -> u64 {
    let mut n = 0;
    for shard in std::fs::read_dir(dir).unwrap() {
        let shard = shard.unwrap().path();
        if shard.file_name().is_some_and(|f| f != "tmp") {
            n += std::fs::read_dir(&shard).unwrap().count() as u64;
        }
    }
    n
}

fn hash_file(path: &std::path::Path) -> [u8; 32] {
    let mut f = std::fs::File::open(path).unwrap();
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return *hasher.finalize().as_bytes();
        }
        hasher.update(&buf[..n]);
    }
}

fn cli(home: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(amicus_bin());
    c.arg("--home").arg(home).arg("--json").args(args);
    c.env("AMICUS_PASSPHRASE", std::str::from_utf8(PASS).unwrap());
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// Runs a client process to its end, sampling its peak memory.
async fn run_sampled(mut cmd: Command) -> (serde_json::Value, u64) {
    let mut child = cmd.spawn().unwrap();
    let mut peak = 0;
    loop {
        if let Some(p) = peak_rss(child.id()) {
            peak = peak.max(p);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    (
        serde_json::from_str(line.lines().last().unwrap()).unwrap(),
        peak,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_512_mib_file_round_trips_with_bounded_memory_and_an_interrupted_upload_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut alice = register(dir.path(), &server, "alice").await;
    let space = alice.create_space().await.unwrap().to_hex();
    drop(alice);
    let home = dir.path().join("alice");
    let source = dir.path().join("evidence.bin");
    let source_hash = write_source(&source);

    // Start an upload and kill the client with SIGKILL part-way.
    let mut first = cli(&home, &["file", "put", &space])
        .arg(&source)
        .spawn()
        .unwrap();
    let mut waited = 0;
    while server.metric("amicus_blobs_stored_total").await < 120 {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the upload ended before it could be interrupted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
        assert!(waited < 30_000, "the upload made no progress");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let before = server.metric("amicus_blobs_stored_total").await;

    // The same command resumes: chunks on the server are not sent again.
    let mut put = cli(&home, &["file", "put", &space]);
    put.arg(&source);
    let (answer, put_peak) = run_sampled(put).await;
    let chunks = answer["chunks"].as_u64().unwrap();
    // A restarted upload (new secret) would have stored every chunk again.
    let on_disk = blob_files(&dir.path().join("data").join("blobs"));
    assert_eq!(
        on_disk, chunks,
        "every chunk is stored once: the upload resumed rather than restarted"
    );
    assert!(before < chunks);

    let out = dir.path().join("evidence.out");
    let mut get = cli(&home, &["file", "get", &space, "evidence.bin"]);
    get.arg(&out);
    let (answer, get_peak) = run_sampled(get).await;
    assert_eq!(answer["bytes"].as_u64(), Some(SIZE));
    assert_eq!(hash_file(&out), source_hash, "the downloaded file differs");

    let server_peak = peak_rss(server.pid()).unwrap();
    println!(
        "512 MiB: {chunks} chunks, {before} stored before the kill; peak memory: upload client {} MiB, download client {} MiB, server {} MiB",
        put_peak >> 20,
        get_peak >> 20,
        server_peak >> 20
    );
    for (what, peak) in [
        ("upload client", put_peak),
        ("download client", get_peak),
        ("server", server_peak),
    ] {
        assert!(
            peak > 0 && peak < MEMORY_BOUND,
            "{what} peaked at {} MiB",
            peak >> 20
        );
    }
}

/// The crash the write-ahead must survive without reusing a nonce: a
/// sealed chunk kept beside a progress that does not cover it (what an
/// earlier version left when it stopped between writing the one and the
/// other), and the file changed meanwhile. The resumed upload must not send
/// that chunk: the same chunk, sealed again from the changed file under the
/// same nonce, would put two ciphertexts under one nonce on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_its_progress_does_not_cover_is_never_sent() {
    use amicus_core::files::{CHUNK_SIZE, ChunkId, FileSealer};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut amina = register(dir.path(), &server, "amina").await;
    let space = amina.create_space().await.unwrap();

    let path = dir.path().join("pièce.bin");
    let mut content: Vec<u8> = (0..3 * CHUNK_SIZE).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let mut sealer = FileSealer::new(
        "pièce.bin",
        "application/octet-stream",
        content.len() as u64,
    )
    .unwrap();
    // Sealed chunk by chunk: the progress once the first has come out,
    // then the second.
    let mut emitted = Vec::new();
    let mut before = None;
    for part in content.chunks(CHUNK_SIZE / 4) {
        emitted.extend(sealer.push(part).unwrap());
        if emitted.len() == 1 && before.is_none() {
            before = Some(sealer.progress());
        }
        if emitted.len() >= 2 {
            break;
        }
    }
    let before = before.expect("a progress after the first chunk");
    let (first, second) = (emitted[0].clone(), emitted[1].clone());
    amina
        .http()
        .put_blob(&first.id.to_string(), first.blob.clone())
        .await
        .unwrap();
    let name = amicus_cli::client::upload_record_name(space, &path);
    let home = amicus_cli::home::Home::open(&dir.path().join("amina"), PASS).unwrap();
    assert!(
        !before.chunk_ids().contains(&second.id),
        "covers chunk 0 only"
    );
    home.write(&name, &postcard::to_allocvec(&before).unwrap())
        .unwrap();
    home.write(&format!("{name}.chunk"), &second.blob).unwrap();
    drop(amina);

    // The file changes in its second chunk, then the upload is resumed.
    content[CHUNK_SIZE + 10] ^= 0xff;
    std::fs::write(&path, &content).unwrap();
    let mut amina = amicus_cli::Client::open(&dir.path().join("amina"), PASS)
        .await
        .unwrap();
    amina
        .put_file(space, &path, "pièce.bin", &mut |_, _| {})
        .await
        .unwrap();
    let missing: serde_json::Value = amina
        .http()
        .post(
            "/v1/blobs/missing",
            &serde_json::json!({ "ids": [second.id.to_string()] }),
        )
        .await
        .unwrap();
    assert_eq!(
        missing["missing"],
        serde_json::json!([second.id.to_string()]),
        "the chunk its progress did not cover was sent"
    );
    assert_ne!(ChunkId::of(&second.blob), first.id);
    let out = dir.path().join("reçue.bin");
    amina
        .get_file(space, "pièce.bin", &out, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), content);
}

/// The library from the command line: folders nest (`folder new --in`), a
/// file is uploaded into one (`file put --folder`), moved and renamed
/// (`file mv`), a filing moved (`doc mv`); the other member lists them
/// where they were put; a folder that holds entries is not removed, an
/// empty one is, and a file removed from the listing is gone from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_is_organised_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut alice = register(dir.path(), &server, "alice").await;
    let mut bob = register(dir.path(), &server, "bob").await;
    let (space, doc) = crate::support::shared_filing(&mut alice, "bob").await;
    drop(alice);
    let home = dir.path().join("alice");
    let s = space.to_hex();
    let run = |args: &[&str]| crate::support::amicus_json(&home, args);
    let pieces = run(&["folder", "new", &s, "Pièces"])["folder"]
        .as_str()
        .unwrap()
        .to_owned();
    let temoins = run(&["folder", "new", &s, "Témoins", "--in", "Pièces"])["folder"]
        .as_str()
        .unwrap()
        .to_owned();
    let statement = dir.path().join("statement.txt");
    std::fs::write(&statement, "Déclaration du témoin.\n").unwrap();
    let file = run(&[
        "file",
        "put",
        &s,
        statement.to_str().unwrap(),
        "--folder",
        &pieces,
    ])["file"]
        .as_str()
        .unwrap()
        .to_owned();
    run(&[
        "file",
        "mv",
        &s,
        "statement.txt",
        "--to",
        "Témoins",
        "--name",
        "déclaration.txt",
    ]);
    run(&["doc", "mv", &s, &doc.to_hex(), "--to", "Pièces"]);

    bob.sync_all().await.unwrap();
    let listed = bob.library(space).unwrap();
    let find = |id: &str| listed.iter().find(|e| e.id == id).unwrap().clone();
    assert_eq!(find(&temoins).folder, pieces);
    assert_eq!(find(&file).folder, temoins);
    assert_eq!(find(&file).name, "déclaration.txt");
    assert_eq!(find(&doc.to_hex()).folder, pieces);
    drop(bob);

    // A new version keeps the file's name and place; the older one stays
    // downloadable by its own id, at Bob's.
    let revised = dir.path().join("revised.txt");
    std::fs::write(&revised, "Déclaration du témoin, corrigée.\n").unwrap();
    let said = crate::support::amicus_refused(
        &home,
        &[
            "file",
            "put",
            &s,
            revised.to_str().unwrap(),
            "--version-of",
            "nope.txt",
        ],
    );
    assert!(said.contains("nope.txt"), "{said}");
    run(&[
        "file",
        "put",
        &s,
        revised.to_str().unwrap(),
        "--version-of",
        "déclaration.txt",
    ]);
    let bob_home = dir.path().join("bob");
    let versions =
        crate::support::amicus_json(&bob_home, &["file", "versions", &s, "déclaration.txt"]);
    let versions = versions["versions"].as_array().unwrap().clone();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(versions[0]["file"], file.as_str());
    assert_eq!(versions[1]["current"], true);
    let listed = crate::support::amicus_json(&bob_home, &["file", "ls", &s]);
    let entry = &listed["entries"][0];
    assert_eq!(
        (entry["id"].as_str(), entry["name"].as_str()),
        (Some(file.as_str()), Some("déclaration.txt"))
    );
    assert_eq!(
        (entry["folder"].as_str(), entry["versions"].as_u64()),
        (Some(temoins.as_str()), Some(2))
    );
    let (old, new) = (dir.path().join("old.txt"), dir.path().join("new.txt"));
    crate::support::amicus_json(
        &bob_home,
        &[
            "file",
            "get",
            &s,
            &file,
            old.to_str().unwrap(),
            "--version",
            "1",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(&old).unwrap(),
        "Déclaration du témoin.\n"
    );
    let said = crate::support::amicus_refused(
        &bob_home,
        &[
            "file",
            "get",
            &s,
            &file,
            old.to_str().unwrap(),
            "--version",
            "3",
        ],
    );
    assert!(said.contains("2 version(s)"), "{said}");
    crate::support::amicus_json(
        &bob_home,
        &["file", "get", &s, "déclaration.txt", new.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read_to_string(&new).unwrap(),
        "Déclaration du témoin, corrigée.\n"
    );
    let v2 = versions[1]["file"].as_str().unwrap();
    let older = dir.path().join("older.txt");
    crate::support::amicus_json(&bob_home, &["file", "get", &s, v2, older.to_str().unwrap()]);
    assert_eq!(std::fs::read(&older).unwrap(), std::fs::read(&new).unwrap());

    // Refusals: a cycle, a folder that holds entries; nothing changes.
    let refused = |args: &[&str]| crate::support::amicus_refused(&home, args);
    let said = refused(&["folder", "mv", &s, "Pièces", "--to", "Témoins"]);
    assert!(said.contains("itself"), "{said}");
    let said = refused(&["folder", "rm", &s, "Pièces"]);
    assert!(said.contains("not empty"), "{said}");
    let removed = run(&["file", "rm", &s, "déclaration.txt"]);
    let removed = removed["removed"].as_str().unwrap().to_owned();
    assert_eq!(removed, file, "the entry's id is its first version's");
    // Put back as it was, with both versions; then removed for good.
    run(&["restore", &s, &removed]);
    let back = run(&["file", "versions", &s, "déclaration.txt"]);
    assert_eq!(back["versions"].as_array().map(Vec::len), Some(2), "{back}");
    let said = refused(&["restore", &s, &removed]);
    assert!(said.contains("in the library already"), "{said}");
    run(&["file", "rm", &s, "déclaration.txt"]);
    run(&["folder", "rm", &s, "Témoins"]);
    let left = run(&["doc", "ls", &s]);
    let ids: Vec<&str> = left["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{left}");
    assert!(ids.contains(&pieces.as_str()) && ids.contains(&doc.to_hex().as_str()));
}
