//! A whole scenario over TLS: `amicus serve --tls-cert --tls-key` with a
//! certificate made here by a certificate authority made here, and clients
//! that trust that authority through `--ca-cert` (the command) or
//! `trust_certificates` (the library behind it). A client that does not
//! trust it connects to nothing.

use std::ffi::OsStr;
use std::process::Command;

use amicus_cli::{Client, Edit};

use crate::support::{PASS, Server, amicus_bin, shared_filing};

/// A certificate authority and a certificate it signed for 127.0.0.1 and
/// localhost, as PEM files in `dir`: (authority, chain, key).
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Amicus test authority");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_scenario_runs_over_tls_with_the_servers_own_authority() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = certificates(dir.path());
    let server = Server::start_args(
        &dir.path().join("data"),
        "",
        "127.0.0.1:0",
        &[
            OsStr::new("--tls-cert"),
            chain.as_os_str(),
            OsStr::new("--tls-key"),
            key.as_os_str(),
        ],
    );
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    // The command: without the authority, the server's certificate is
    // refused and nothing is registered; with `--ca-cert`, it registers.
    let register_with = |name: &str, ca: Option<&std::path::Path>, pass: &str| {
        let mut c = Command::new(amicus_bin());
        if let Some(ca) = ca {
            c.arg("--ca-cert").arg(ca);
        }
        c.arg("--home")
            .arg(dir.path().join(name))
            .args(["register", "--server", &server.url, name])
            .env("AMICUS_PASSPHRASE", pass)
            .output()
            .expect("run amicus register")
    };
    let register = |name: &str, ca: Option<&std::path::Path>| {
        register_with(name, ca, std::str::from_utf8(PASS).unwrap())
    };
    let refused = register("nobody", None);
    assert!(
        !refused.status.success(),
        "an unknown authority was trusted"
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("certificate"), "{said}");
    let cleartext = reqwest::get(server.url.replace("https://", "http://") + "/healthz").await;
    assert!(cleartext.is_err(), "the TLS port answered in the clear");
    let weak = register_with("amina", Some(&ca), "amina2024");
    assert!(!weak.status.success(), "a weak passphrase was taken");
    let said = String::from_utf8_lossy(&weak.stderr);
    assert!(said.contains("too easy to guess"), "{said}");
    let out = register("amina", Some(&ca));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The library: the same transport, trusting the same authority. HTTP,
    // the WebSocket (commits, flushes, live entries) and blobs go over TLS.
    assert_eq!(amicus_cli::transport::trust_certificates(&ca).unwrap(), 1);
    let mut amina = Client::open(&dir.path().join("amina"), PASS).await.unwrap();
    amina.login().await.unwrap();
    let mut bruno = Client::register(&dir.path().join("bruno"), PASS, &server.url, "bruno", None)
        .await
        .unwrap();
    let (space, doc) = shared_filing(&mut amina, "bruno").await;
    let file = dir.path().join("pièce.bin");
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    amina
        .put_file(space, &file, "pièce.bin", &mut |_, _| {})
        .await
        .unwrap();

    bruno.sync_all().await.unwrap();
    assert_eq!(bruno.read(space, doc).unwrap().body, "Exposé des faits.");
    bruno
        .edit(space, doc, &[Edit::Insert(None, " Vu.".into())])
        .await
        .unwrap();
    let got = dir.path().join("reçu.bin");
    bruno
        .get_file(space, "pièce.bin", &got, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), bytes);
    amina.sync(space).await.unwrap();
    assert_eq!(
        amina.read(space, doc).unwrap().body,
        "Exposé des faits. Vu."
    );
}
