//! The server's configuration: where it keeps data, where it listens, who may
//! register, and every limit. Read from a TOML file, then environment
//! variables, then command-line flags (later wins); see [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Who may create an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// Anyone who can reach the server.
    Open,
    /// Only holders of an invitation code created by the administrator (the
    /// first account is always allowed).
    Invite,
}

/// Every limit the server enforces. Defaults are in [`Limits::default`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest HTTP request body (JSON calls), bytes.
    pub max_body: usize,
    /// Largest blob (one file chunk), bytes.
    pub max_blob: usize,
    /// Blob bytes a user may store.
    pub quota_bytes: u64,
    /// Largest WebSocket frame, bytes.
    pub max_frame: usize,
    /// KeyPackages per upload call.
    pub max_key_packages_per_call: usize,
    /// KeyPackages a device may hold in the directory.
    pub max_key_packages_per_device: usize,
    /// Ids per "which blobs are missing" call.
    pub max_blob_query: usize,
    /// Sustained appends and writes per device per second.
    pub rate_per_second: u32,
    /// Burst allowance above the sustained rate.
    pub rate_burst: u32,
    /// Frames queued for one connection before it is disconnected as too slow.
    pub send_queue: usize,
    /// Bytes queued for one connection before it is disconnected as too slow.
    pub send_queue_bytes: usize,
    /// Seconds to receive a request's headers.
    pub header_timeout_secs: u64,
    /// Seconds without any byte of a request's body before the request ends.
    pub body_timeout_secs: u64,
    /// Seconds to receive a request's whole body, however it trickles in.
    pub body_deadline_secs: u64,
    /// Seconds without any frame before a WebSocket is closed (clients ping).
    pub idle_timeout_secs: u64,
    /// Seconds a session token stays valid.
    pub session_secs: u64,
    /// Seconds a sign-in challenge stays valid.
    pub challenge_secs: u64,
    /// WebSocket connections per device.
    pub connections_per_device: usize,
    /// Entries per catch-up page.
    pub catch_up_page: usize,
    /// Bytes of a public document's body.
    pub max_public_body: usize,
    /// Sustained requests per second from one address on the routes that
    /// need no account (drop boxes).
    pub anonymous_rate_per_second: u32,
    /// Burst allowance above it.
    pub anonymous_rate_burst: u32,
    /// Submissions one drop box takes per hour, whoever sends them.
    pub drop_submissions_per_hour: u32,
    /// Open drop boxes per space.
    pub drop_boxes_per_space: usize,
    /// The largest quota a drop box may be given, bytes.
    pub max_drop_quota: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 1 << 20,
            max_blob: amicus_core::files::CHUNK_SIZE + 4096,
            quota_bytes: 20 << 30,
            max_frame: amicus_core::wire::MAX_FRAME_LEN,
            max_key_packages_per_call: amicus_core::identity::MAX_KEY_PACKAGE_BATCH,
            max_key_packages_per_device: 2_000,
            max_blob_query: 10_000,
            rate_per_second: 50,
            rate_burst: 500,
            send_queue: 1_024,
            send_queue_bytes: 64 << 20,
            header_timeout_secs: 10,
            body_timeout_secs: 60,
            body_deadline_secs: 300,
            idle_timeout_secs: 90,
            session_secs: 30 * 24 * 3600,
            challenge_secs: 120,
            connections_per_device: 8,
            catch_up_page: 256,
            max_public_body: 4 << 20,
            anonymous_rate_per_second: 5,
            anonymous_rate_burst: 60,
            drop_submissions_per_hour: 30,
            drop_boxes_per_space: 20,
            max_drop_quota: 2 << 30,
        }
    }
}

impl Limits {
    /// Header timeout.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }
    /// Body timeout.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }

    /// [`Self::body_deadline_secs`] as a duration.
    pub fn body_deadline(&self) -> Duration {
        Duration::from_secs(self.body_deadline_secs)
    }
    /// WebSocket idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

/// How the server reaches its mail server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailSecurity {
    /// TLS from the first byte (port 465 by default).
    Tls,
    /// STARTTLS, required (port 587 by default): no mail leaves in the
    /// clear if the server does not offer it.
    Starttls,
    /// In the clear (port 25 by default): only to a mail server on this
    /// machine (a loopback address or `localhost`).
    None,
}

/// The `[mail]` section: the SMTP server notification emails leave
/// through (PROTOCOL §15.2). Without it the server sends no email.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mail {
    /// The SMTP server's host name.
    pub host: String,
    /// Its port (by default that of `security`).
    pub port: Option<u16>,
    /// How to connect.
    pub security: MailSecurity,
    /// The SMTP user name, if the server wants one.
    pub username: Option<String>,
    /// Its password (also `AMICUS_SMTP_PASSWORD`); never printed.
    pub password: Option<String>,
    /// The sender address, `Amicus <notices@example.org>` or bare.
    pub from: String,
    /// The address of the web app, given in each message.
    pub link: String,
    /// The hour (UTC, 0–23) daily messages leave at.
    pub digest_hour_utc: u8,
    /// How long after activity an immediate message leaves, seconds (so
    /// that a burst of edits makes one message).
    pub immediate_delay_secs: u64,
    /// The least time between two immediate messages to one person.
    pub min_interval_secs: u64,
    /// How often the server looks for messages to send, seconds.
    pub check_secs: u64,
}

impl Default for Mail {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: None,
            security: MailSecurity::Starttls,
            username: None,
            password: None,
            from: String::new(),
            link: String::new(),
            digest_hour_utc: 7,
            immediate_delay_secs: 300,
            min_interval_secs: 3600,
            check_secs: 30,
        }
    }
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("from", &self.from)
            .field("link", &self.link)
            .field("digest_hour_utc", &self.digest_hour_utc)
            .field("immediate_delay_secs", &self.immediate_delay_secs)
            .field("min_interval_secs", &self.min_interval_secs)
            .field("check_secs", &self.check_secs)
            .finish()
    }
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The data directory (store, blobs, index).
    pub data: PathBuf,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Who may register.
    pub registration: Registration,
    /// Limits.
    pub limits: Limits,
    /// The web app's directory (built by `cargo xtask web`), served at `/`.
    pub web: Option<PathBuf>,
    /// The mail server for notification emails (none: no email).
    pub mail: Option<Mail>,
    /// Public spaces' documents and search can be read without an account
    /// (per-address limits apply); `false`: signed-in devices only.
    pub public_read: bool,
    /// Reverse proxies whose `X-Forwarded-For` names the client: requests
    /// from them count against the address they saw (its rightmost entry)
    /// in the per-address limits, not against the proxy's own.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            registration: Registration::Invite,
            limits: Limits::default(),
            web: None,
            mail: None,
            public_read: true,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The file is not valid TOML for [`Config`].
    #[error("invalid configuration file {0}: {1}")]
    Parse(PathBuf, String),
    /// An environment variable holds an invalid value.
    #[error("invalid value for {0}: {1}")]
    Env(&'static str, String),
}

impl Config {
    /// Reads a TOML file (every field optional).
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.into(), e.to_string()))
    }

    /// Applies `AMICUS_DATA`, `AMICUS_LISTEN`, `AMICUS_WEB`,
    /// `AMICUS_REGISTRATION` (`open` or `invite`) and `AMICUS_SMTP_PASSWORD`
    /// (into `[mail]`) from `env`.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = env("AMICUS_DATA") {
            self.data = v.into();
        }
        if let Some(v) = env("AMICUS_LISTEN") {
            self.listen = v
                .parse()
                .map_err(|_| ConfigError::Env("AMICUS_LISTEN", v.clone()))?;
        }
        if let Some(v) = env("AMICUS_WEB") {
            self.web = Some(v.into());
        }
        if let Some(v) = env("AMICUS_SMTP_PASSWORD") {
            match self.mail.as_mut() {
                Some(mail) => mail.password = Some(v),
                None => {
                    return Err(ConfigError::Env(
                        "AMICUS_SMTP_PASSWORD",
                        "set, but the configuration has no [mail] section".into(),
                    ));
                }
            }
        }
        if let Some(v) = env("AMICUS_REGISTRATION") {
            self.registration = match v.as_str() {
                "open" => Registration::Open,
                "invite" => Registration::Invite,
                _ => return Err(ConfigError::Env("AMICUS_REGISTRATION", v)),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_file_keeps_the_defaults_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("amicus.toml");
        std::fs::write(&path, "registration = \"open\"\n[limits]\nrate_burst = 7\n").unwrap();
        let c = Config::from_file(&path).unwrap();
        assert_eq!(c.registration, Registration::Open);
        assert_eq!(c.limits.rate_burst, 7);
        assert_eq!(c.limits.max_blob, Limits::default().max_blob);
        std::fs::write(&path, "listen_on = 3\n").unwrap();
        assert!(matches!(
            Config::from_file(&path),
            Err(ConfigError::Parse(..))
        ));
    }

    #[test]
    fn environment_variables_override_and_are_checked() {
        let mut c = Config::default();
        c.apply_env(|k| (k == "AMICUS_LISTEN").then(|| "127.0.0.1:9".to_owned()))
            .unwrap();
        assert_eq!(c.listen.port(), 9);
        assert!(
            c.apply_env(|k| (k == "AMICUS_REGISTRATION").then(|| "maybe".to_owned()))
                .is_err()
        );
    }
}
