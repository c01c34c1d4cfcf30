//! Notification emails that carry no content (PROTOCOL §15.2).
//!
//! A member may give an address and choose `daily` or `immediate`. When an
//! entry is appended to a confidential space while none of a member's
//! devices is connected, the server notes *since when* there has been
//! activity for that member, nothing else (not which space, not how much).
//! A message then says only that there is activity, with the web app's
//! address; connecting any device clears the note (the person is looking).
//!
//! [`Notifier`] holds the records in memory (one per member who asked) and
//! counts connections per user; [`due`] decides, as a pure function, when a
//! message leaves; [`run`] looks every `check_secs` and sends through the
//! `[mail]` SMTP server with `lettre`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amicus_core::UserId;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Mail, MailSecurity};
use crate::state::{AppState, now};
use crate::store::{NotifyMode, NotifyRecord, Store, StoreError};

/// The languages messages are written in.
pub const LANGUAGES: [&str; 5] = ["en", "fr", "ar", "de", "pt"];

/// The longest address accepted (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// Whether a message is due for `record` at `now` (Unix seconds), the
/// member having no device connected.
///
/// - `immediate`: `immediate_delay_secs` after the first activity not
///   seen, and at least `min_interval_secs` after the last message;
/// - `daily`: at the day's `digest_hour_utc`, for activity from before
///   that hour, once per day.
pub fn due(record: &NotifyRecord, now: u64, mail: &Mail) -> bool {
    let Some(since) = record.pending_since else {
        return false;
    };
    match record.mode {
        NotifyMode::Off => false,
        NotifyMode::Immediate => {
            now >= since.saturating_add(mail.immediate_delay_secs)
                && record
                    .last_sent
                    .is_none_or(|last| now >= last.saturating_add(mail.min_interval_secs))
        }
        NotifyMode::Daily => {
            let hour = u64::from(mail.digest_hour_utc.min(23)) * 3600;
            // The latest digest time at or before now.
            let Some(since_hour) = now.checked_sub(hour) else {
                return false;
            };
            let digest = since_hour / 86_400 * 86_400 + hour;
            since < digest && record.last_sent.is_none_or(|last| last < digest)
        }
    }
}

/// The subject and text of a message in `language` (English if unknown).
/// They hold the app's address and nothing of any space.
pub fn message_text(language: &str, link: &str) -> (&'static str, String) {
    match language {
        "fr" => (
            "Amicus : nouvelle activité",
            format!(
                "Il y a du nouveau dans vos espaces sur Amicus.\n\n\
                 Ouvrez Amicus pour le voir : {link}\n\n\
                 Ce message n’en dit pas plus, à dessein : aucun titre, aucun nom \
                 et aucun texte ne sort de vos espaces. Vous pouvez changer ou \
                 arrêter ces messages dans Amicus, page Appareils.\n"
            ),
        ),
        "ar" => (
            "Amicus: نشاط جديد",
            format!(
                "هناك جديد في مساحاتك على Amicus.\n\n\
                 افتح Amicus لتراه: {link}\n\n\
                 لا تقول هذه الرسالة أكثر من ذلك عن قصد: لا عنوان ولا اسم ولا نص \
                 يخرج من مساحاتك. يمكنك تغيير هذه الرسائل أو إيقافها في Amicus، \
                 صفحة الأجهزة.\n"
            ),
        ),
        "de" => (
            "Amicus: neue Aktivität",
            format!(
                "In Ihren Bereichen auf Amicus gibt es Neues.\n\n\
                 Öffnen Sie Amicus, um es zu sehen: {link}\n\n\
                 Diese Nachricht sagt absichtlich nicht mehr: kein Titel, kein Name \
                 und kein Text verlässt Ihre Bereiche. Sie können diese Nachrichten \
                 in Amicus auf der Seite Geräte ändern oder abbestellen.\n"
            ),
        ),
        "pt" => (
            "Amicus: nova atividade",
            format!(
                "Há novidades nos seus espaços no Amicus.\n\n\
                 Abra o Amicus para ver: {link}\n\n\
                 Esta mensagem não diz mais de propósito: nenhum título, nenhum nome \
                 e nenhum texto sai dos seus espaços. Pode alterar ou parar estas \
                 mensagens no Amicus, na página Dispositivos.\n"
            ),
        ),
        _ => (
            "Amicus: new activity",
            format!(
                "There is something new in your spaces on Amicus.\n\n\
                 Open Amicus to see it: {link}\n\n\
                 This message says no more, on purpose: no title, no name and no \
                 text leaves your spaces. You can change or stop these messages in \
                 Amicus, on the Devices page.\n"
            ),
        ),
    }
}

/// An address as a member gives it, checked: trimmed, at most
/// [`MAX_EMAIL_BYTES`], one mailbox without a display name.
pub fn checked_email(raw: &str) -> Result<String, String> {
    let email = raw.trim();
    if email.is_empty() {
        return Err("give an email address".into());
    }
    if email.len() > MAX_EMAIL_BYTES {
        return Err(format!(
            "the email address is {} bytes long; at most {MAX_EMAIL_BYTES}",
            email.len()
        ));
    }
    email
        .parse::<lettre::Address>()
        .map(|a| a.to_string())
        .map_err(|_| format!("{email:?} is not an email address"))
}

/// The SMTP side: a transport and the sender.
struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    link: String,
}

impl Mailer {
    fn new(mail: &Mail) -> Result<Self, String> {
        if mail.host.trim().is_empty() {
            return Err("[mail] needs `host`, the SMTP server".into());
        }
        let from: Mailbox = mail
            .from
            .parse()
            .map_err(|_| format!("[mail] from = {:?} is not an email address", mail.from))?;
        if !(mail.link.starts_with("https://") || mail.link.starts_with("http://")) {
            return Err(format!(
                "[mail] link = {:?} must be the web app's http(s) address",
                mail.link
            ));
        }
        if mail.digest_hour_utc > 23 {
            return Err("[mail] digest_hour_utc is an hour, 0 to 23".into());
        }
        let builder = match mail.security {
            MailSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&mail.host),
            MailSecurity::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&mail.host)
            }
            MailSecurity::None => {
                let local = mail.host == "localhost"
                    || mail
                        .host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !local {
                    return Err(format!(
                        "[mail] security = \"none\" sends in the clear: only to a mail server \
                         on this machine, not {:?}",
                        mail.host
                    ));
                }
                Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                    &mail.host,
                ))
            }
        }
        .map_err(|e| format!("[mail] host {:?}: {e}", mail.host))?;
        let port = mail.port.unwrap_or(match mail.security {
            MailSecurity::Tls => 465,
            MailSecurity::Starttls => 587,
            MailSecurity::None => 25,
        });
        let mut builder = builder.port(port).timeout(Some(Duration::from_secs(30)));
        if let Some(user) = &mail.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                mail.password.clone().unwrap_or_default(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            link: mail.link.clone(),
        })
    }

    async fn send(&self, record: &NotifyRecord) -> Result<(), String> {
        let (subject, text) = message_text(&record.language, &self.link);
        let to: Mailbox = record
            .email
            .parse()
            .map_err(|_| "the stored address does not parse".to_owned())?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[derive(Default)]
struct Inner {
    records: HashMap<UserId, NotifyRecord>,
    online: HashMap<UserId, usize>,
    dirty: HashSet<UserId>,
}

/// Who wants email, who is connected, and who has activity waiting.
pub struct Notifier {
    mail: Option<(Mail, Mailer)>,
    inner: Mutex<Inner>,
}

impl Notifier {
    /// Reads every record from `store`; checks `[mail]` (an error names
    /// what is wrong in it).
    pub fn open(mail: Option<&Mail>, store: &dyn Store) -> Result<Self, String> {
        let mail = match mail {
            Some(m) => Some((m.clone(), Mailer::new(m)?)),
            None => None,
        };
        let records = store
            .all_notify()
            .map_err(|e| format!("reading notification settings: {e}"))?
            .into_iter()
            .collect();
        Ok(Self {
            mail,
            inner: Mutex::new(Inner {
                records,
                ..Inner::default()
            }),
        })
    }

    /// Whether this server sends email at all.
    pub fn available(&self) -> bool {
        self.mail.is_some()
    }

    /// Whether any member asked for email (else [`Self::activity`] has
    /// nothing to do).
    pub fn anyone(&self) -> bool {
        !self.lock().records.is_empty()
    }

    /// A user's settings.
    pub fn get(&self, user: &UserId) -> Option<NotifyRecord> {
        self.lock().records.get(user).cloned()
    }

    /// Sets a user's address, choice and language (`None`: forget them),
    /// durably, keeping what is pending.
    pub fn set(
        &self,
        store: &dyn Store,
        user: &UserId,
        settings: Option<(String, NotifyMode, String)>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let record = settings.map(|(email, mode, language)| {
            let old = inner.records.get(user);
            NotifyRecord {
                email,
                mode,
                language,
                pending_since: old.and_then(|o| o.pending_since),
                last_sent: old.and_then(|o| o.last_sent),
            }
        });
        store.put_notify(user, record.as_ref())?;
        match record {
            Some(r) => inner.records.insert(user.clone(), r),
            None => inner.records.remove(user),
        };
        Ok(())
    }

    /// A device of `user` connected for as long as the guard lives: the
    /// connection counts as gone when it is dropped, also when the task
    /// serving it panics (unwinding drops it).
    pub fn online(&self, user: &UserId) -> Online<'_> {
        self.connected(user);
        Online {
            notifier: self,
            user: user.clone(),
        }
    }

    /// A device of `user` connected: whatever was waiting is being seen.
    pub fn connected(&self, user: &UserId) {
        let mut inner = self.lock();
        *inner.online.entry(user.clone()).or_default() += 1;
        if let Some(r) = inner.records.get_mut(user)
            && r.pending_since.take().is_some()
        {
            inner.dirty.insert(user.clone());
        }
    }

    /// A device of `user` disconnected.
    pub fn disconnected(&self, user: &UserId) {
        let mut inner = self.lock();
        if let Some(n) = inner.online.get_mut(user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.online.remove(user);
            }
        }
    }

    /// An entry was appended to a space whose delivery roster holds
    /// `members`, by `author`: each other member who asked for email and
    /// has no device connected now has activity waiting.
    pub fn activity<'a>(
        &self,
        members: impl IntoIterator<Item = &'a UserId>,
        author: &UserId,
        now: u64,
    ) {
        let mut inner = self.lock();
        if inner.records.is_empty() {
            return;
        }
        let members: BTreeSet<&UserId> = members.into_iter().collect();
        for user in members {
            if user == author || inner.online.contains_key(user) {
                continue;
            }
            if let Some(r) = inner.records.get_mut(user)
                && r.mode != NotifyMode::Off
                && r.pending_since.is_none()
            {
                r.pending_since = Some(now);
                inner.dirty.insert(user.clone());
            }
        }
    }

    /// Sends what is due at `now`, then writes every changed record.
    pub async fn tick(&self, store: &dyn Store, now: u64) {
        let Some((mail, mailer)) = &self.mail else {
            return;
        };
        let due_now: Vec<(UserId, NotifyRecord)> = {
            let inner = self.lock();
            inner
                .records
                .iter()
                .filter(|(u, r)| !inner.online.contains_key(*u) && due(r, now, mail))
                .map(|(u, r)| (u.clone(), r.clone()))
                .collect()
        };
        for (user, record) in due_now {
            match mailer.send(&record).await {
                Ok(()) => {
                    let mut inner = self.lock();
                    if let Some(r) = inner.records.get_mut(&user) {
                        r.pending_since = None;
                        r.last_sent = Some(now);
                        inner.dirty.insert(user);
                    }
                }
                // The address is the member's: the log names the user.
                Err(e) => {
                    tracing::warn!(user = %user, error = %e, "notification email not sent; retried later")
                }
            }
        }
        let dirty: Vec<(UserId, Option<NotifyRecord>)> = {
            let mut inner = self.lock();
            let users: Vec<UserId> = inner.dirty.drain().collect();
            users
                .into_iter()
                .map(|u| {
                    let r = inner.records.get(&u).cloned();
                    (u, r)
                })
                .collect()
        };
        for (user, record) in dirty {
            if let Err(e) = store.put_notify(&user, record.as_ref()) {
                tracing::error!(error = %e, "writing a notification record failed");
                self.lock().dirty.insert(user);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("notifier lock")
    }
}

/// Looks for messages to send every `check_secs` until shutdown.
pub async fn run(state: Arc<AppState>) {
    let Some(every) = state.config.mail.as_ref().map(|m| m.check_secs.max(1)) else {
        return;
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(every)) => {}
            () = state.shutdown.cancelled() => return,
        }
        state.notifier.tick(state.store.as_ref(), now()).await;
    }
}

/// A connected device of a user ([`Notifier::online`]).
pub struct Online<'a> {
    notifier: &'a Notifier,
    user: UserId,
}

impl Drop for Online<'_> {
    fn drop(&mut self) {
        self.notifier.disconnected(&self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mode: NotifyMode, pending: Option<u64>, last: Option<u64>) -> NotifyRecord {
        NotifyRecord {
            email: "bruno@example.org".into(),
            mode,
            language: "fr".into(),
            pending_since: pending,
            last_sent: last,
        }
    }

    fn mail() -> Mail {
        Mail {
            immediate_delay_secs: 300,
            min_interval_secs: 3600,
            digest_hour_utc: 7,
            ..Mail::default()
        }
    }

    /// Immediate: not before the delay (a burst makes one message), not
    /// sooner than the interval after the last one, never without
    /// activity, never when off.
    #[test]
    fn an_immediate_message_waits_for_the_delay_and_the_interval() {
        let m = mail();
        let t = 1_000_000;
        let r = record(NotifyMode::Immediate, Some(t), None);
        assert!(!due(&r, t + 299, &m));
        assert!(due(&r, t + 300, &m));
        let r = record(NotifyMode::Immediate, Some(t), Some(t - 100));
        assert!(!due(&r, t + 300, &m), "an hour since the last message");
        assert!(due(&r, t - 100 + 3600, &m));
        assert!(!due(
            &record(NotifyMode::Immediate, None, None),
            t + 9999,
            &m
        ));
        assert!(!due(&record(NotifyMode::Off, Some(t), None), t + 9999, &m));
    }

    /// Daily: once a day at the digest hour, for activity from before it.
    #[test]
    fn a_daily_message_leaves_at_the_digest_hour_once() {
        let m = mail();
        let day = 20_000 * 86_400;
        let seven = day + 7 * 3600;
        let r = record(NotifyMode::Daily, Some(day + 3600), None);
        assert!(!due(&r, seven - 1, &m), "not before 07:00");
        assert!(due(&r, seven, &m));
        assert!(due(&r, seven + 5 * 3600, &m), "later that day still");
        let r = record(NotifyMode::Daily, Some(day + 3600), Some(seven + 10));
        assert!(!due(&r, seven + 3600, &m), "sent today already");
        // Activity after 07:00 waits for the next morning.
        let r = record(NotifyMode::Daily, Some(seven + 60), Some(seven + 10));
        assert!(!due(&r, seven + 12 * 3600, &m));
        assert!(due(&r, seven + 86_400, &m));
    }

    /// The message in every language holds the link and none of what a
    /// space could put there: the text is fixed but for the link.
    #[test]
    fn the_message_says_only_that_there_is_activity() {
        for language in LANGUAGES.iter().chain(&["xx"]) {
            let (subject, text) = message_text(language, "https://amicus.example/");
            assert!(subject.starts_with("Amicus"));
            assert!(text.contains("https://amicus.example/"), "{language}");
            let without_link = text.replace("https://amicus.example/", "");
            assert!(!without_link.contains("://"), "{language}");
        }
        assert_ne!(message_text("fr", "x").0, message_text("en", "x").0);
    }

    #[test]
    fn addresses_are_checked() {
        assert_eq!(
            checked_email("  bruno@example.org ").unwrap(),
            "bruno@example.org"
        );
        for bad in ["", "bruno", "Bruno <bruno@example.org>", "a@b@c"] {
            assert!(checked_email(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert!(checked_email(&long).unwrap_err().contains("at most 254"));
    }

    /// A connection whose task panics no longer counts its user as
    /// connected: activity after it is noted for them.
    #[test]
    fn a_connection_that_panics_is_counted_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SledStore::open(dir.path()).unwrap();
        let n = Notifier::open(None, &store).unwrap();
        let (amina, bruno) = (UserId::new("amina").unwrap(), UserId::new("bruno").unwrap());
        n.set(
            &store,
            &bruno,
            Some(("x@example.org".into(), NotifyMode::Immediate, "en".into())),
        )
        .unwrap();
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _online = n.online(&bruno);
            panic!("the connection's task fails");
        }));
        assert!(served.is_err());
        n.activity([&amina, &bruno], &amina, 100);
        assert_eq!(n.get(&bruno).unwrap().pending_since, Some(100));
    }

    /// A member with a device connected gets no activity noted; one
    /// without does, once, until a device connects.
    #[test]
    fn activity_is_noted_only_for_members_away() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SledStore::open(dir.path()).unwrap();
        let n = Notifier::open(None, &store).unwrap();
        let (amina, bruno, carla) = (
            UserId::new("amina").unwrap(),
            UserId::new("bruno").unwrap(),
            UserId::new("carla").unwrap(),
        );
        for u in [&bruno, &carla] {
            n.set(
                &store,
                u,
                Some(("x@example.org".into(), NotifyMode::Immediate, "en".into())),
            )
            .unwrap();
        }
        n.connected(&carla);
        n.activity([&amina, &bruno, &carla], &amina, 100);
        n.activity([&amina, &bruno, &carla], &amina, 200);
        assert_eq!(n.get(&bruno).unwrap().pending_since, Some(100));
        assert_eq!(n.get(&carla).unwrap().pending_since, None);
        n.activity([&bruno], &bruno, 300);
        n.connected(&bruno);
        assert_eq!(n.get(&bruno).unwrap().pending_since, None);
        // Forgetting the address removes the record.
        n.set(&store, &bruno, None).unwrap();
        assert!(store.notify(&bruno).unwrap().is_none());
    }
}
