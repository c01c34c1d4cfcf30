//! Notification emails (PROTOCOL §15.2) through a real SMTP server: Debian's
//! `python3-aiosmtpd`, writing what it receives to a Maildir.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use amicus_cli::Edit;
use amicus_core::api::Notifications;
use amicus_core::space::Role;
use serde_json::{Value, json};

use crate::support::{Server, register};

const PATH: &str = "/v1/account/notifications";

/// The `[mail]` table of a server sending to `smtp` at once.
pub(crate) fn mail_config(smtp: &Smtp) -> String {
    format!(
        "[mail]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
         from = \"Amicus <notices@amicus.test>\"\nlink = \"https://amicus.test/\"\n\
         immediate_delay_secs = 1\nmin_interval_secs = 0\ncheck_secs = 1\n",
        smtp.port
    )
}

/// An SMTP server on a loopback port, storing each message it accepts as
/// a file under `maildir/new`; stopped when dropped.
pub(crate) struct Smtp {
    child: Child,
    pub(crate) port: u16,
    maildir: PathBuf,
}

impl Smtp {
    pub(crate) fn start(maildir: &Path) -> Self {
        // Debian's interpreter holds the Debian package; another `python3`
        // first on the PATH may not.
        let python = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .args(["-c", "import aiosmtpd"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .expect("aiosmtpd is missing: run `cargo xtask test`, or install python3-aiosmtpd");
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(python)
                .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(maildir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start aiosmtpd");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self {
                        child,
                        port,
                        maildir: maildir.to_path_buf(),
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // the port was taken meanwhile: another one
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the SMTP server did not start");
    }

    /// Every message received so far, raw.
    pub(crate) fn messages(&self) -> Vec<Vec<u8>> {
        let Ok(dir) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        dir.map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect()
    }

    /// The messages to `to`, parsed: (subject, text).
    pub(crate) fn to(&self, to: &str) -> Vec<(String, String)> {
        self.messages()
            .iter()
            .filter_map(|raw| {
                let m = mail_parser::MessageParser::default().parse(raw)?;
                let addressed = m
                    .to()
                    .and_then(|a| a.first())
                    .and_then(|a| a.address())
                    .is_some_and(|a| a == to);
                addressed.then(|| {
                    (
                        m.subject().unwrap_or_default().to_owned(),
                        m.body_text(0).unwrap_or_default().into_owned(),
                    )
                })
            })
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bruno asked for immediate emails and is away; Carla asked too but has
/// a device connected. Amina writes a filing in a space with both: Bruno
/// gets one message, in French as he chose, with the app's address and
/// nothing else (no title, text, space, document or author, in the raw
/// message or decoded); Carla gets none. Bad settings are refused with a
/// sentence and change nothing; the data directory's audit finds no
/// canary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_away_member_is_told_by_email_only_that_there_is_activity() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(&dir.path().join("mail"));
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &mail_config(&smtp));
    let mut amina = register(dir.path(), &server, "amina").await;
    let bruno = register(dir.path(), &server, "bruno").await;
    let carla = register(dir.path(), &server, "carla").await;

    // Bad settings: a sentence each, nothing stored.
    for (body, says) in [
        (
            json!({ "email": "bruno", "mode": "immediate" }),
            "not an email address",
        ),
        (
            json!({ "email": "bruno@example.org", "mode": "weekly" }),
            "off, daily or immediate",
        ),
        (
            json!({ "email": "bruno@example.org", "mode": "daily", "language": "xx" }),
            "`language`",
        ),
        (
            json!({ "email": "bruno@example.org", "mode": "daily", "cc": "x@example.org" }),
            "cc",
        ),
    ] {
        let err = bruno.http().put::<Value>(PATH, &body).await.unwrap_err();
        assert!(err.to_string().contains(says), "{body}: {err}");
    }
    let now: Notifications = bruno.http().get(PATH).await.unwrap();
    assert_eq!((now.available, now.mode.as_str()), (true, "off"));

    let set: Notifications = bruno
        .http()
        .put(
            PATH,
            &json!({ "email": " bruno@example.org ", "mode": "immediate", "language": "fr" }),
        )
        .await
        .unwrap();
    assert_eq!(
        (set.email.as_str(), set.mode.as_str(), set.language.as_str()),
        ("bruno@example.org", "immediate", "fr")
    );
    let _: Notifications = carla
        .http()
        .put(
            PATH,
            &json!({ "email": "carla@example.org", "mode": "immediate" }),
        )
        .await
        .unwrap();
    // Carla keeps a device connected; Bruno's client is closed.
    let _carla_online = crate::support::connect(&server, carla.http().token())
        .await
        .unwrap();
    drop(bruno);

    let tag = hex::encode(amicus_core::MessageId::random().0);
    let (title, text) = (format!("canary-title-{tag}"), format!("canary-text-{tag}"));
    let space = amina.create_space().await.unwrap();
    amina
        .invite(space, "bruno", Role::Contributor)
        .await
        .unwrap();
    amina
        .invite(space, "carla", Role::Contributor)
        .await
        .unwrap();
    let doc = amina.new_document(space, &title).await.unwrap();
    amina
        .edit(
            space,
            doc,
            &[Edit::Insert(None, format!("Témoin : {text}"))],
        )
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    while smtp.to("bruno@example.org").is_empty() {
        assert!(Instant::now() < deadline, "no email reached Bruno");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A few more rounds of the server's check: still nothing for Carla,
    // and Bruno's burst of activity made one message.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(smtp.to("carla@example.org").is_empty());
    let to_bruno = smtp.to("bruno@example.org");
    assert_eq!(to_bruno.len(), 1, "{to_bruno:?}");
    let (subject, body) = &to_bruno[0];
    assert_eq!(subject, "Amicus : nouvelle activité");
    assert!(body.contains("https://amicus.test/"), "{body}");
    let secrets = [
        title.clone(),
        text.clone(),
        tag.clone(),
        space.to_hex(),
        doc.to_hex(),
        "amina".to_owned(),
    ];
    for raw in smtp.messages() {
        let raw = String::from_utf8_lossy(&raw).into_owned();
        for s in &secrets {
            assert!(!raw.contains(s.as_str()), "{s} in {raw}");
            assert!(!body.contains(s.as_str()), "{s} in {body}");
        }
    }

    // The command shows Bruno's choice (read once the message is in: the
    // command signs his device in).
    let shown = crate::support::amicus_json(&dir.path().join("bruno"), &["notifications"]);
    assert_eq!(
        (&shown["email"], &shown["mode"], &shown["language"]),
        (
            &json!("bruno@example.org"),
            &json!("immediate"),
            &json!("fr")
        ),
        "{shown}"
    );

    // Turning it off forgets the address.
    let off: Notifications = carla
        .http()
        .put(PATH, &json!({ "email": "", "mode": "off" }))
        .await
        .unwrap();
    assert_eq!((off.email.as_str(), off.mode.as_str()), ("", "off"));

    drop(amina);
    drop(carla);
    server.stop();
    let canary_file = dir.path().join("canaries.txt");
    std::fs::write(&canary_file, format!("{title}\n{text}\n")).unwrap();
    let (passed, report) = crate::canaries::audit(&data, &canary_file);
    assert!(passed, "{report:#}");
}

/// A server without `[mail]` says so, and refuses to store an address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_a_mail_server_says_it_sends_no_email() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let bruno = register(dir.path(), &server, "bruno").await;
    let now: Notifications = bruno.http().get(PATH).await.unwrap();
    assert!(!now.available);
    let err = bruno
        .http()
        .put::<Value>(
            PATH,
            &json!({ "email": "bruno@example.org", "mode": "daily" }),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sends no email"), "{err}");
    let now: Notifications = bruno.http().get(PATH).await.unwrap();
    assert_eq!((now.mode.as_str(), now.email.as_str()), ("off", ""));
}
