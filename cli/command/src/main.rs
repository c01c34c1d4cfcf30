//! The `amicus` command: `amicus serve` runs the relay server; every other
//! command is the native client of one device, whose state lives encrypted
//! in `--home` (default `~/.amicus`), unlocked by `AMICUS_PASSPHRASE` or a
//! prompt.

use std::path::{Path, PathBuf};

use amicus_cli::{Client, Edit};
use amicus_core::space::Role;
use amicus_core::{SpaceId, StreamId};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "amicus",
    version,
    about = "End-to-end encrypted collaborative documents"
)]
struct Cli {
    /// The device's state directory.
    #[arg(long, global = true, env = "AMICUS_HOME")]
    home: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Trust the certificates of this PEM file, besides the system's, to
    /// check an https:// server's (an organisation's own authority).
    #[arg(long, global = true, env = "AMICUS_CA_CERT")]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay server.
    Serve {
        /// Data directory (store, blobs).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// A TOML configuration file.
        #[arg(long, env = "AMICUS_CONFIG")]
        config: Option<PathBuf>,
        /// Who may register: `open` or `invite`.
        #[arg(long)]
        registration: Option<String>,
        /// The web app's directory (built by `cargo xtask web`), served at `/`.
        #[arg(long)]
        web: Option<PathBuf>,
        /// Serve over TLS with this certificate chain (PEM), and `--tls-key`.
        #[arg(long, env = "AMICUS_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key (PEM) of `--tls-cert`.
        #[arg(long, env = "AMICUS_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Create an account and this device.
    Register {
        /// Server address: https://host[:port], or http://host:port for a local server or a tunnel.
        #[arg(long, env = "AMICUS_SERVER")]
        server: String,
        /// User name.
        user: String,
        /// Invitation code.
        #[arg(long)]
        invite: Option<String>,
    },
    /// Sign in again (new session token) and refill KeyPackages.
    Login {
        /// Point the device at a new server address.
        #[arg(long)]
        server: Option<String>,
    },
    /// Devices of this user.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Create an invitation code (administrator).
    Invite,
    /// Email when there is activity while none of your devices is
    /// connected. The message says only that: no title, name or text.
    /// Without options, shows the current choice.
    Notifications {
        /// The address to write to.
        #[arg(long)]
        email: Option<String>,
        /// `off` (the server forgets the address), `daily` or `immediate`.
        #[arg(long)]
        mode: Option<String>,
        /// The messages' language: en, fr, ar, de or pt.
        #[arg(long)]
        language: Option<String>,
    },
    /// Confidential and public spaces.
    Space {
        #[command(subcommand)]
        command: SpaceCommand,
    },
    /// Filings.
    Doc {
        #[command(subcommand)]
        command: DocCommand,
    },
    /// Drop boxes: people without an account send sealed statements and
    /// files to a space (through the page of the box's link, or `age` and
    /// `curl`); its members open them.
    Intake {
        #[command(subcommand)]
        command: IntakeCommand,
    },
    /// Encrypted files.
    File {
        #[command(subcommand)]
        command: FileCommand,
    },
    /// Folders of a space's library.
    Folder {
        #[command(subcommand)]
        command: FolderCommand,
    },
    /// Case records of violations (monitoring), their counts, and the
    /// aggregates published for the public map.
    Record {
        #[command(subcommand)]
        command: RecordCommand,
    },
    /// Discussions: threads of posts and replies in a space.
    Thread {
        #[command(subcommand)]
        command: ThreadCommand,
    },
    /// What others changed since you last looked, in every space: new
    /// filings, edits and by whom, new files, new posts, mentions. Kept on
    /// this device only.
    Activity {
        /// Then count everything as seen.
        #[arg(long)]
        seen: bool,
    },
    /// Publish a filing's text into a public space with signed provenance.
    Publish {
        /// The confidential space.
        space: String,
        /// The filing.
        doc: String,
        /// The public space.
        #[arg(long)]
        to: String,
        /// The public document id.
        #[arg(long)]
        id: String,
        /// Its language (e.g. `fr`).
        #[arg(long)]
        language: Option<String>,
    },
    /// Put back a filing, file or folder removed from a space's library, as
    /// it was just before its removal (a file with its versions).
    Restore {
        /// The space.
        space: String,
        /// The entry's id (as `doc ls --json` or the removal printed it).
        id: String,
    },
    /// Withdraw a public copy (one you published, or any as a content
    /// manager of its space): it is no longer read or found; the server
    /// keeps a tombstone signed by this device.
    Withdraw {
        /// The public space.
        #[arg(long)]
        from: String,
        /// The public document id.
        id: String,
    },
    /// Sync every space and show what changed.
    Sync,
    /// Search the public libraries.
    Search {
        /// The words ("quoted phrases" allowed).
        query: String,
        /// Languages, comma-separated (fr,en,ar,de,pt,es,nl,sw,ln,rn,lg).
        #[arg(long)]
        lang: Option<String>,
        /// Only this public space.
        #[arg(long)]
        space: Option<String>,
        /// Hits per page.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Hits to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Rebuild the search index from the store (with the server stopped).
    Reindex {
        /// Data directory.
        #[arg(long, default_value = "./data")]
        data: PathBuf,
    },
    /// Audit a server's data directory (server stopped, or a copy): every
    /// space log's hash chain, every blob's hash, that the search index
    /// holds only public documents, and every byte (sled values read
    /// through sled) for canaries. Prints a JSON report; exits with 1 on
    /// any finding.
    Audit {
        /// Data directory.
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        /// A file of canaries, one per line (at least 12 bytes each); may
        /// be given several times.
        #[arg(long)]
        canary: Vec<PathBuf>,
    },
}

/// The audit found something (its report is already printed).
#[derive(Debug)]
struct AuditFailed(usize);

impl std::fmt::Display for AuditFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the audit found {} problem(s)", self.0)
    }
}

impl std::error::Error for AuditFailed {}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Create another device of this user in a new home directory.
    Add {
        /// The new device's home.
        new_home: PathBuf,
    },
    /// This device's id and the user's safety number.
    Show,
    /// Every device of this user, revoked ones included.
    List,
    /// Revoke another device of this user (seized, lost, sold): it can no
    /// longer sign in, and every space this device shares with it removes
    /// it. Run it on the device that holds the identity key.
    Revoke {
        /// The device id (see `amicus device list`).
        device: String,
    },
}

#[derive(Subcommand)]
enum IntakeCommand {
    /// Open a drop box for a space and print its link (space managers).
    Create {
        /// The space.
        space: String,
        /// What members call it (kept inside the space).
        #[arg(long)]
        label: String,
        /// Days it stays open (1 to 365).
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// The megabytes it may take, sealed.
        #[arg(long, default_value_t = 100)]
        quota_mb: u64,
    },
    /// The space's drop boxes and their submissions.
    List {
        /// The space.
        space: String,
    },
    /// Open a submission: its statement is printed, its files written
    /// into a directory (never over an existing file).
    Open {
        /// The space.
        space: String,
        /// The submission's id (or its first characters).
        submission: String,
        /// Where to write its files.
        #[arg(short = 'o', long, default_value = ".")]
        out: PathBuf,
    },
    /// Close a drop box: its link stops taking submissions (space
    /// managers).
    Close {
        /// The space.
        space: String,
        /// The box's id.
        dropbox: String,
    },
}

#[derive(Subcommand)]
enum SpaceCommand {
    /// Create a confidential space (or, with --public NAME, a public one).
    Create {
        /// The confidential space's name (kept inside the space).
        #[arg(long, conflicts_with = "public")]
        name: Option<String>,
        /// Create a public space with this name.
        #[arg(long)]
        public: Option<String>,
    },
    /// Name and describe a confidential space (space managers).
    Rename {
        /// The space.
        space: String,
        /// The new name.
        name: String,
        /// Its description (empty: none).
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Spaces of this device.
    List,
    /// Add a user (all their devices), or a member's new devices.
    Invite {
        /// The space.
        space: String,
        /// The user.
        user: String,
        /// reader, contributor, content_manager or space_manager (a hyphen
        /// may stand for the underscore).
        #[arg(long, default_value = "contributor")]
        role: String,
    },
    /// Remove a user and all their devices.
    Remove {
        /// The space.
        space: String,
        /// The user.
        user: String,
    },
    /// Members, roles and safety numbers; the epoch and safety code.
    Members {
        /// The space.
        space: String,
    },
    /// The network's directory of spaces: those whose managers listed them.
    Directory {
        /// Words the name or description must hold.
        #[arg(default_value = "")]
        query: String,
    },
    /// List a space in the directory with a public name and description
    /// (everyone on the server reads them), or take it out with --off.
    /// Space managers only.
    Listing {
        /// The space.
        space: String,
        /// The public name.
        #[arg(long, required_unless_present = "off")]
        name: Option<String>,
        /// The public description.
        #[arg(long, default_value = "")]
        description: String,
        /// Take the space out of the directory.
        #[arg(long, conflicts_with = "name")]
        off: bool,
        /// Open to everyone on the server: whoever asks is added as a
        /// contributor by the first device of a space manager online, with
        /// no one answering (they read what the space's history policy
        /// lets joiners read).
        #[arg(long, conflicts_with = "off")]
        open: bool,
    },
    /// Ask to join a listed space (the server and its members read the
    /// message), or withdraw the request.
    Request {
        /// The space.
        space: String,
        /// A message to its managers.
        #[arg(long, default_value = "")]
        message: String,
        /// Withdraw the request.
        #[arg(long, conflicts_with = "message")]
        withdraw: bool,
    },
    /// Without a space: your requests to join and their state. With one
    /// (a space you are in): the requests waiting to be answered.
    Requests {
        /// The space.
        space: Option<String>,
    },
    /// Accept a request to join: add every device of the user. Space
    /// managers only.
    Accept {
        /// The space.
        space: String,
        /// Who asked.
        user: String,
        /// Their role.
        #[arg(long, default_value = "contributor")]
        role: String,
    },
    /// Decline a request to join (the requester is told). Space managers
    /// only.
    Decline {
        /// The space.
        space: String,
        /// Who asked.
        user: String,
    },
}

#[derive(Subcommand)]
// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
enum DocCommand {
    /// Create a filing.
    New {
        /// The space.
        space: String,
        /// The title.
        title: String,
    },
    /// Edit a filing.
    Edit {
        /// The space.
        space: String,
        /// The filing.
        doc: String,
        /// New title.
        #[arg(long)]
        title: Option<String>,
        /// Text to append at the end.
        #[arg(long)]
        append: Option<String>,
        /// Insert text: POS:TEXT.
        #[arg(long)]
        insert: Option<String>,
        /// Delete: POS:LEN.
        #[arg(long)]
        delete: Option<String>,
        /// Comment a passage: START:END:TEXT.
        #[arg(long)]
        comment: Option<String>,
        /// Format a passage: START:END:MARK.
        #[arg(long)]
        format: Option<String>,
        /// Name the resulting version.
        #[arg(long)]
        version: Option<String>,
        /// Reply in a comment thread: THREAD:TEXT (`doc cat` shows the ids).
        #[arg(long)]
        reply: Option<String>,
        /// Mark a comment thread resolved.
        #[arg(long)]
        resolve: Option<String>,
        /// Open a resolved comment thread again.
        #[arg(long)]
        reopen: Option<String>,
    },
    /// Print a filing.
    Cat {
        /// The space.
        space: String,
        /// The filing.
        doc: String,
    },
    /// Named versions and the number of changes.
    History {
        /// The space.
        space: String,
        /// The filing.
        doc: String,
    },
    /// The library: documents, files, folders.
    Ls {
        /// The space.
        space: String,
    },
    /// Move a filing to a folder and/or rename it as listed.
    Mv {
        /// The space.
        space: String,
        /// The filing (id or title).
        doc: String,
        /// The folder (id or name; "" for the top of the library).
        #[arg(long)]
        to: Option<String>,
        /// Its new title in the library.
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a filing from the library.
    Rm {
        /// The space.
        space: String,
        /// The filing (id or title).
        doc: String,
    },
    /// Documents holding edits of this device the server has not
    /// acknowledged, and why they cannot be sent (removed, Reader).
    Unsent {
        /// Write each filing as this device has it (edits included) to
        /// DIR/<doc>.md.
        #[arg(long)]
        export: Option<std::path::PathBuf>,
        /// Then drop those edits (after exporting them, or for good).
        #[arg(long)]
        discard: bool,
    },
}

/// A record's fields as options (all of them for `new`; those given for
/// `edit`).
#[derive(clap::Args, Default)]
struct RecordArgs {
    /// The date: YYYY-MM-DD, YYYY-MM or YYYY.
    #[arg(long)]
    date: Option<String>,
    /// The country: ISO 3166-1 alpha-2 (FR, TN...).
    #[arg(long)]
    country: Option<String>,
    /// The region: ISO 3166-2 (FR-75, TN-11...); empty for none.
    #[arg(long)]
    region: Option<String>,
    /// A type of violation (threat, judicial_harassment, arrest, detention,
    /// assault, disbarment, killing, surveillance, disappearance,
    /// travel_ban, smear_campaign, other, or one the space added);
    /// repeatable.
    #[arg(long = "type")]
    types: Vec<String>,
    /// lawyer, defender, journalist, judge, trainee or other.
    #[arg(long)]
    profession: Option<String>,
    /// woman, man, non_binary or undisclosed.
    #[arg(long)]
    gender: Option<String>,
    /// open, ongoing or closed.
    #[arg(long)]
    status: Option<String>,
    /// How a closed case ended.
    #[arg(long)]
    outcome: Option<String>,
    /// A filing or file of the library the record relies on (id or name);
    /// repeatable.
    #[arg(long)]
    source: Vec<String>,
    /// Notes.
    #[arg(long)]
    notes: Option<String>,
}

#[derive(Subcommand)]
enum RecordCommand {
    /// Write a new case record.
    New {
        /// The space.
        space: String,
        #[command(flatten)]
        fields: RecordArgs,
    },
    /// Change fields of a record (those given).
    Edit {
        /// The space.
        space: String,
        /// The record's id.
        record: String,
        #[command(flatten)]
        fields: RecordArgs,
    },
    /// Take a record out (its history keeps it).
    Rm {
        /// The space.
        space: String,
        /// The record's id.
        record: String,
    },
    /// The records of a space, filtered and sorted.
    Ls {
        /// The space.
        space: String,
        /// Only this country.
        #[arg(long)]
        country: Option<String>,
        /// Only records of this type.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only this year.
        #[arg(long)]
        year: Option<String>,
        /// Only this status.
        #[arg(long)]
        status: Option<String>,
        /// Sort by date (newest first, the default), country or status.
        #[arg(long, default_value = "date")]
        sort: String,
    },
    /// The counts by country, region, type, year, gender, status and
    /// profession.
    Counts {
        /// The space.
        space: String,
    },
    /// The records (or, with --counts, the counts) as CSV on standard output.
    Export {
        /// The space.
        space: String,
        /// The counts rather than the records.
        #[arg(long)]
        counts: bool,
    },
    /// Add a type of violation to the space's list (space managers).
    AddType {
        /// The space.
        space: String,
        /// Its code: 2 to 40 of a-z, 0-9, _.
        code: String,
        /// Its label.
        label: String,
    },
    /// Compare a published aggregate with your own records of the space it
    /// comes from: `matches`, `differs` (altered after it was computed) or
    /// `unknown` (this device does not hold what it names yet).
    Check {
        /// The public space.
        public: String,
        /// The publication's id.
        id: String,
    },
    /// Publish counts (never a record) into a public space for the map
    /// (space managers). Prints what is published.
    Publish {
        /// The confidential space the records are in.
        space: String,
        /// The public space.
        #[arg(long)]
        to: String,
        /// The publication's id in the public space (publishing again
        /// under it replaces it).
        #[arg(long)]
        id: String,
        /// Its title.
        #[arg(long)]
        title: String,
        /// The dimensions, comma-separated: country (and region, if
        /// wanted), and any of type, year, gender, status, profession.
        #[arg(long, default_value = "country,type,year")]
        by: String,
        /// Cells of fewer records are left out.
        #[arg(long, default_value_t = amicus_core::monitoring::DEFAULT_K)]
        k: u32,
        /// Only print what would be published.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum ThreadCommand {
    /// Start a discussion with its first post.
    New {
        /// The space.
        space: String,
        /// Its title.
        title: String,
        /// The first post (`@user` mentions a member).
        text: String,
        /// Attach a file or filing of the library (id or name); repeatable.
        #[arg(long)]
        attach: Vec<String>,
    },
    /// Post in a discussion.
    Reply {
        /// The space.
        space: String,
        /// The discussion (id or title).
        thread: String,
        /// The text (`@user` mentions a member).
        text: String,
        /// The post replied to (its id, as `thread cat` shows it).
        #[arg(long)]
        to: Option<String>,
        /// Attach a file or filing of the library (id or name); repeatable.
        #[arg(long)]
        attach: Vec<String>,
    },
    /// Change the text of one of your posts.
    Edit {
        /// The space.
        space: String,
        /// The discussion (id or title).
        thread: String,
        /// The post (its id).
        post: String,
        /// The new text.
        text: String,
    },
    /// The discussions of a space.
    Ls {
        /// The space.
        space: String,
    },
    /// Print a discussion (and count it as seen).
    Cat {
        /// The space.
        space: String,
        /// The discussion (id or title).
        thread: String,
    },
}

#[derive(Subcommand)]
enum FolderCommand {
    /// Create a folder.
    New {
        /// The space.
        space: String,
        /// Its name.
        name: String,
        /// The folder to create it in (id or name; default: the top).
        #[arg(long = "in")]
        parent: Option<String>,
    },
    /// Move a folder into another and/or rename it.
    Mv {
        /// The space.
        space: String,
        /// The folder (id or name).
        folder: String,
        /// The folder to move it into (id or name; "" for the top).
        #[arg(long)]
        to: Option<String>,
        /// Its new name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove an empty folder.
    Rm {
        /// The space.
        space: String,
        /// The folder (id or name).
        folder: String,
    },
}

#[derive(Subcommand)]
enum FileCommand {
    /// Encrypt and upload a file (resumes an interrupted upload).
    Put {
        /// The space.
        space: String,
        /// The file.
        path: PathBuf,
        /// Name in the library (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// The folder to put it in (id or name; default: the top).
        #[arg(long, conflicts_with = "version_of")]
        folder: Option<String>,
        /// Upload it as a new version of this file of the library (name or
        /// id): it keeps that file's name and place, and the version it
        /// replaces stays downloadable (`file versions`).
        #[arg(long, conflicts_with = "name")]
        version_of: Option<String>,
    },
    /// The versions of a file, oldest first (`file get` takes any
    /// version's id).
    Versions {
        /// The space.
        space: String,
        /// Name or file id.
        file: String,
    },
    /// Move a file to a folder and/or rename it.
    Mv {
        /// The space.
        space: String,
        /// Name or file id.
        file: String,
        /// The folder (id or name; "" for the top of the library).
        #[arg(long)]
        to: Option<String>,
        /// Its new name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a file from the library (its encrypted chunks stay on the
    /// server).
    Rm {
        /// The space.
        space: String,
        /// Name or file id.
        file: String,
    },
    /// Download and decrypt a file.
    Get {
        /// The space.
        space: String,
        /// Name or file id (or a version's id, as `file versions` lists it).
        file: String,
        /// Where to write it.
        out: PathBuf,
        /// An earlier version: its number in `file versions` (1: the oldest).
        #[arg(long)]
        version: Option<usize>,
    },
    /// Files of the library.
    Ls {
        /// The space.
        space: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<AuditFailed>().is_some() => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            if json {
                println!("{}", json!({ "error": format!("{e:#}") }));
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn passphrase() -> anyhow::Result<zeroize::Zeroizing<String>> {
    if let Ok(p) = std::env::var("AMICUS_PASSPHRASE") {
        return Ok(zeroize::Zeroizing::new(p));
    }
    let p = rpassword::prompt_password("passphrase: ")
        .context("no AMICUS_PASSPHRASE and no terminal to ask for a passphrase")?;
    Ok(zeroize::Zeroizing::new(p))
}

fn home_dir(cli_home: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match cli_home {
        Some(h) => Ok(h),
        None => {
            let base = std::env::var_os("HOME").context("set --home or HOME")?;
            Ok(Path::new(&base).join(".amicus"))
        }
    }
}

fn space(s: &str) -> anyhow::Result<SpaceId> {
    SpaceId::from_hex(s).map_err(|_| anyhow::anyhow!("a space id is 32 hex digits, got {s:?}"))
}

fn stream(s: &str) -> anyhow::Result<StreamId> {
    StreamId::from_hex(s).map_err(|_| anyhow::anyhow!("a document id is 32 hex digits, got {s:?}"))
}

/// Who wrote a comment: the signer's user, or a name only claimed.
fn author(message: &Value) -> String {
    let name = message["author"].as_str().unwrap_or("?");
    if message["verified"] == true {
        name.to_owned()
    } else {
        format!("{name} (name not verified)")
    }
}

fn role(s: &str) -> anyhow::Result<Role> {
    Role::parse(s).ok_or_else(|| {
        anyhow::anyhow!("a role is reader, contributor, content_manager or space_manager")
    })
}

fn split_pos(s: &str, parts: usize) -> anyhow::Result<Vec<String>> {
    let v: Vec<String> = s.splitn(parts, ':').map(str::to_owned).collect();
    if v.len() != parts {
        bail!("expected {parts} parts separated by ':' in {s:?}");
    }
    Ok(v)
}

fn num(s: &str) -> anyhow::Result<usize> {
    s.parse()
        .with_context(|| format!("{s:?} is not a position"))
}

/// One line per item, or `empty` when there is none.
fn lines<T>(items: &[T], empty: &str, line: impl Fn(&T) -> String) -> String {
    if items.is_empty() {
        return empty.to_owned();
    }
    items.iter().map(line).collect::<Vec<_>>().join("\n")
}

fn print(json_out: bool, value: Value, text: impl FnOnce() -> String) {
    if json_out {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

fn audit(data: &Path, canary_files: &[PathBuf]) -> anyhow::Result<()> {
    use amicus_server::audit::Canary;
    let mut canaries = Vec::new();
    for file in canary_files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the canary file {}", file.display()))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            canaries
                .push(Canary::new(line).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?);
        }
    }
    let report = amicus_server::audit::audit(data, &canaries)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!(
        "audited {}: {} spaces ({} log entries), {} blobs ({} bytes), {} drop-box chunks ({} bytes), {} index documents, {} files ({} bytes) and {} sled entries scanned for {} canaries: {} finding(s)",
        data.display(),
        report.spaces,
        report.log_entries,
        report.blobs,
        report.blob_bytes,
        report.drop_chunks,
        report.drop_chunk_bytes,
        report.index_documents,
        report.files_scanned,
        report.bytes_scanned,
        report.sled_entries,
        report.canaries,
        report.findings.len()
    );
    if report.passed() {
        Ok(())
    } else {
        Err(AuditFailed(report.findings.len()).into())
    }
}

fn bar(json_out: bool, what: &str) -> indicatif::ProgressBar {
    if json_out {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} chunks ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json_out = cli.json;
    let home = cli.home;
    if let Some(pem) = &cli.ca_cert {
        amicus_cli::transport::trust_certificates(pem)?;
    }
    match cli.command {
        Command::Serve {
            data,
            listen,
            config,
            registration,
            web,
            tls_cert,
            tls_key,
        } => {
            let tls = tls_cert.zip(tls_key);
            serve(data, listen, config, registration, web, tls).await
        }
        Command::Reindex { data } => {
            let store =
                amicus_server::store::SledStore::open(&data.join("store")).with_context(|| {
                    format!(
                        "cannot open the store in {} (is the server running?)",
                        data.display()
                    )
                })?;
            let search = amicus_server::search::SearchService::open(&data.join("index"))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let n = search.rebuild(&store).map_err(|e| anyhow::anyhow!("{e}"))?;
            print(json_out, json!({ "indexed": n }), || {
                format!("indexed {n} public documents")
            });
            Ok(())
        }
        Command::Audit { data, canary } => audit(&data, &canary),
        Command::Register {
            server,
            user,
            invite,
        } => {
            let dir = home_dir(home)?;
            let pass = passphrase()?;
            // The state it protects goes wherever the device goes.
            amicus_core::at_rest::check_new_passphrase(&pass, &[&user])?;
            let c =
                Client::register(&dir, pass.as_bytes(), &server, &user, invite.as_deref()).await?;
            print(
                json_out,
                json!({ "user": c.user().as_str(), "device": c.device_id(), "safety_number": c.safety_number() }),
                || {
                    format!(
                        "registered {} (device {})\nsafety number: {}",
                        c.user(),
                        c.device_id(),
                        c.safety_number()
                    )
                },
            );
            Ok(())
        }
        command => {
            let dir = home_dir(home)?;
            let pass = passphrase()?;
            let mut c = Client::open(&dir, pass.as_bytes()).await?;
            let result = client_command(&mut c, command, json_out, pass.as_bytes()).await;
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            c.save()?;
            result
        }
    }
}

async fn client_command(
    c: &mut Client,
    command: Command,
    json_out: bool,
    pass: &[u8],
) -> anyhow::Result<()> {
    match command {
        Command::Search {
            query,
            lang,
            space,
            limit,
            offset,
        } => {
            let mut params = vec![
                ("q", query),
                ("limit", limit.to_string()),
                ("offset", offset.to_string()),
            ];
            if let Some(l) = lang {
                params.push(("lang", l));
            }
            if let Some(s) = space {
                params.push(("space", s));
            }
            let v: Value = c.http().get_query("/v1/search", &params).await?;
            print(json_out, v.clone(), || {
                let mut out = vec![format!("{} results", v["total"])];
                for h in v["hits"].as_array().into_iter().flatten() {
                    out.push(format!(
                        "[{}] {} ({}/{})\n    {}",
                        h["language"].as_str().unwrap_or("?"),
                        h["title"].as_str().unwrap_or(""),
                        h["space"].as_str().unwrap_or(""),
                        h["id"].as_str().unwrap_or(""),
                        h["snippet"].as_str().unwrap_or("")
                    ));
                }
                out.join("\n")
            });
        }
        Command::Serve { .. }
        | Command::Register { .. }
        | Command::Reindex { .. }
        | Command::Audit { .. } => {
            bail!("this command does not use a device's state")
        }
        Command::Login { server } => {
            if let Some(s) = server {
                c.set_server(&s)?;
            }
            c.login().await?;
            print(json_out, json!({ "user": c.user().as_str() }), || {
                format!("signed in as {}", c.user())
            });
        }
        Command::Device {
            command: DeviceCommand::Add { new_home },
        } => {
            let d = c.add_device(&new_home, pass).await?;
            print(
                json_out,
                json!({ "device": d.device_id(), "home": new_home }),
                || format!("device {} created in {}", d.device_id(), new_home.display()),
            );
        }
        Command::Device {
            command: DeviceCommand::Show,
        } => {
            print(
                json_out,
                json!({ "user": c.user().as_str(), "device": c.device_id(), "safety_number": c.safety_number() }),
                || {
                    format!(
                        "{} device {}\nsafety number: {}",
                        c.user(),
                        c.device_id(),
                        c.safety_number()
                    )
                },
            );
        }
        Command::Device {
            command: DeviceCommand::List,
        } => {
            let devices = c.devices().await?;
            print(json_out, json!({ "devices": devices }), || {
                devices
                    .iter()
                    .map(|d| {
                        let state = if d.revoked {
                            "revoked".to_owned()
                        } else {
                            format!("{} KeyPackages", d.key_packages)
                        };
                        let this = if d.this { " (this device)" } else { "" };
                        format!("{}{this}  {state}", d.device)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Device {
            command: DeviceCommand::Revoke { device },
        } => {
            let spaces = c.revoke_device(&device).await?;
            let ids: Vec<String> = spaces.iter().map(|s| s.to_hex()).collect();
            print(
                json_out,
                json!({ "device": device, "removed_from": ids }),
                || {
                    format!(
                        "device {device} revoked; removed from {} space(s)",
                        spaces.len()
                    )
                },
            );
        }
        Command::Invite => {
            let v: Value = c.http().post("/v1/invites", &json!({})).await?;
            print(json_out, v.clone(), || {
                format!("invitation code: {}", v["code"].as_str().unwrap_or(""))
            });
        }
        Command::Notifications {
            email,
            mode,
            language,
        } => {
            let path = "/v1/account/notifications";
            let mut now: amicus_core::api::Notifications = c.http().get(path).await?;
            if email.is_some() || mode.is_some() || language.is_some() {
                let settings = amicus_core::api::NotificationSettings {
                    mode: mode.unwrap_or_else(|| {
                        if now.mode == "off" {
                            "daily".into()
                        } else {
                            now.mode.clone()
                        }
                    }),
                    email: email.unwrap_or(now.email),
                    language: Some(language.unwrap_or(now.language)),
                };
                now = c
                    .http()
                    .put(path, &serde_json::to_value(&settings)?)
                    .await?;
            }
            print(json_out, serde_json::to_value(&now)?, || {
                if !now.available {
                    "this server sends no email (it has no mail server)".to_owned()
                } else if now.mode == "off" {
                    "no notification emails".to_owned()
                } else {
                    format!(
                        "{} emails to {} in {} when there is activity while you are away (they say nothing more)",
                        now.mode, now.email, now.language
                    )
                }
            });
        }
        Command::Sync => {
            c.sync_all().await?;
            let spaces: Vec<Value> = c
                .spaces()
                .into_iter()
                .map(|id| {
                    let (epoch, authenticator) = c.epoch(id).unwrap_or_default();
                    let code = c.space_code(id).unwrap_or_default();
                    json!({ "space": id.to_hex(), "epoch": epoch, "safety_code": code, "authenticator": authenticator, "removed": c.is_removed(id) })
                })
                .collect();
            // Edits that can no longer be sent are said at every sync.
            let blocked = c.unsent().iter().filter(|u| u.blocked.is_some()).count();
            print(
                json_out,
                json!({ "spaces": spaces, "unsent_blocked": blocked }),
                || {
                    let mut lines: Vec<String> = spaces
                        .iter()
                        .map(|s| {
                            format!(
                                "{} epoch {} · space code {}",
                                s["space"].as_str().unwrap_or(""),
                                s["epoch"],
                                s["safety_code"].as_str().unwrap_or("")
                            )
                        })
                        .collect();
                    if blocked > 0 {
                        lines.push(format!(
                        "{blocked} document(s) hold edits of this device that can no longer be sent: `amicus doc unsent --export DIR` writes them out"
                    ));
                    }
                    lines.join("\n")
                },
            );
        }
        Command::Space { command } => space_command(c, command, json_out).await?,
        Command::Doc { command } => doc_command(c, command, json_out).await?,
        Command::Intake { command } => intake_command(c, command, json_out).await?,
        Command::File { command } => file_command(c, command, json_out).await?,
        Command::Folder { command } => folder_command(c, command, json_out).await?,
        Command::Record { command } => record_command(c, command, json_out).await?,
        Command::Thread { command } => thread_command(c, command, json_out).await?,
        Command::Activity { seen } => {
            c.sync_all().await?;
            let items = c.activity();
            let value: Vec<Value> = items
                .iter()
                .map(|i| {
                    json!({
                        "space": i.space.to_hex(),
                        "id": i.stream.to_hex(),
                        "kind": i.kind.as_str(),
                        "title": i.title,
                        "new": i.changes.new,
                        "by": i.changes.by,
                        "posts": i.changes.posts,
                        "mentions": i.changes.mentions,
                        "added": i.changes.added,
                    })
                })
                .collect();
            let mentions: usize = items.iter().map(|i| i.changes.mentions).sum();
            print(
                json_out,
                json!({ "items": value, "mentions": mentions }),
                || {
                    if items.is_empty() {
                        return "nothing new".to_owned();
                    }
                    let mut lines = Vec::new();
                    for i in &items {
                        let by = i.changes.by.join(", ");
                        let mut line = match i.kind {
                            amicus_core::activity::Kind::Library => format!(
                                "{} library: {} added by {by}",
                                i.space,
                                if i.changes.added.is_empty() {
                                    "changes".to_owned()
                                } else {
                                    i.changes.added.join(", ")
                                }
                            ),
                            kind => format!(
                                "{} {} {} «{}»: {} by {by}",
                                i.space,
                                kind.as_str(),
                                i.stream,
                                i.title,
                                if i.changes.new { "new" } else { "changed" },
                            ),
                        };
                        if i.changes.posts > 0 {
                            line.push_str(&format!(", {} new post(s)", i.changes.posts));
                        }
                        if i.changes.mentions > 0 {
                            line.push_str(&format!(", {} mention(s) of you", i.changes.mentions));
                        }
                        lines.push(line);
                    }
                    lines.join("\n")
                },
            );
            if seen {
                for i in &items {
                    c.seen(i.space, i.stream)?;
                }
            }
        }
        Command::Publish {
            space: s,
            doc,
            to,
            id,
            language,
        } => {
            c.sync_all().await?;
            c.publish(
                space(&s)?,
                stream(&doc)?,
                space(&to)?,
                &id,
                language.as_deref(),
            )
            .await?;
            print(json_out, json!({ "published": id }), || {
                format!("published as {id}")
            });
        }
        Command::Restore { space: s, id } => {
            c.sync_all().await?;
            c.restore_entry(space(&s)?, &id).await?;
            print(json_out, json!({ "restored": id }), || {
                format!("{id} is back in the library")
            });
        }
        Command::Withdraw { from, id } => {
            c.withdraw(space(&from)?, &id).await?;
            print(json_out, json!({ "withdrawn": id }), || {
                format!("{id} withdrawn; the server keeps a tombstone signed by this device")
            });
        }
    }
    Ok(())
}

async fn intake_command(
    c: &mut Client,
    command: IntakeCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    let link = |c: &Client, fragment: &str| {
        format!("{}/drop/#{fragment}", c.http().base().trim_end_matches('/'))
    };
    // Joins what waits (a Welcome) and reads every space first.
    c.sync_all().await?;
    match command {
        IntakeCommand::Create {
            space: s,
            label,
            days,
            quota_mb,
        } => {
            let quota = quota_mb
                .checked_mul(1 << 20)
                .ok_or_else(|| anyhow::anyhow!("--quota-mb is too large"))?;
            let (id, fragment) = c.open_drop_box(space(&s)?, &label, days, quota).await?;
            let url = link(c, &fragment);
            print(json_out, json!({ "id": id, "link": url }), || {
                format!(
                    "drop box {id} open for {days} days; give this link to whoever should send to it:\n{url}"
                )
            });
        }
        IntakeCommand::List { space: s } => {
            let list = c.drop_boxes(space(&s)?).await?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let boxes: Vec<Value> = list
                .boxes
                .iter()
                .map(|b| {
                    json!({
                        "id": b.id,
                        "label": b.label,
                        "created_by": b.created_by,
                        "created": b.created,
                        "expires": b.expires,
                        "quota": b.quota,
                        "used": b.used,
                        "closed": b.closed,
                        "link": b.fragment.as_deref().map(|f| link(c, f)),
                        "submissions": b.submissions,
                    })
                })
                .collect();
            let value = json!({ "key": list.key.as_str(), "boxes": boxes });
            print(json_out, value, || {
                let mut out = Vec::new();
                match list.key {
                    amicus_core::dropbox::KeyState::Foreign => out.push(
                        "WARNING: the server serves a key that is not this space's; no link is given"
                            .to_owned(),
                    ),
                    amicus_core::dropbox::KeyState::Stale => out.push(
                        "the server still serves the key from before the last removal".to_owned(),
                    ),
                    amicus_core::dropbox::KeyState::Unknown if !list.boxes.is_empty() => out.push(
                        "this device has not read yet that the served key is in force; no link is given until it has"
                            .to_owned(),
                    ),
                    _ => {}
                }
                if list.boxes.is_empty() {
                    out.push("no drop box".to_owned());
                }
                for b in &list.boxes {
                    let state = if b.closed.is_some() {
                        "closed".to_owned()
                    } else if b.expires <= now {
                        "expired".to_owned()
                    } else {
                        format!("open, {} of {} MB used", b.used >> 20, b.quota >> 20)
                    };
                    out.push(format!(
                        "{} {} ({state})",
                        b.id,
                        b.label.as_deref().unwrap_or("(no label yet)")
                    ));
                    if b.closed.is_none()
                        && b.expires > now
                        && let Some(f) = &b.fragment
                    {
                        out.push(format!("    {}", link(c, f)));
                    }
                    for sub in &b.submissions {
                        let size: u64 = sub.parts.iter().map(|p| p.size).sum();
                        out.push(format!(
                            "    {} {} part(s), {size} bytes, at {}",
                            sub.id,
                            sub.parts.len(),
                            sub.at
                        ));
                    }
                }
                out.join("\n")
            });
        }
        IntakeCommand::Open {
            space: s,
            submission,
            out,
        } => {
            let (sub, parts) = c.open_submission(space(&s)?, &submission).await?;
            std::fs::create_dir_all(&out)?;
            let mut statements = Vec::new();
            let mut files = Vec::new();
            for (n, part) in parts.iter().enumerate() {
                match part.kind {
                    amicus_core::intake::drop::Kind::Statement => {
                        statements.push(String::from_utf8_lossy(&part.content).into_owned());
                    }
                    amicus_core::intake::drop::Kind::File => {
                        let fallback = format!("submission-{}-{}", &sub.id[..8], n + 1);
                        let name = part.safe_name(&fallback);
                        let path = free_path(&out, &name);
                        // Never over an existing file.
                        let mut file = std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&path)?;
                        std::io::Write::write_all(&mut file, &part.content)?;
                        file.sync_all()?;
                        files.push(json!({
                            "path": path.display().to_string(),
                            "name": part.name,
                            "type": part.media_type,
                            "size": part.content.len(),
                        }));
                    }
                }
            }
            let value = json!({
                "id": sub.id,
                "at": sub.at,
                "statements": statements,
                "files": files,
            });
            print(json_out, value, || {
                let mut lines = vec![format!("submission {} sent at {}", sub.id, sub.at)];
                for text in &statements {
                    // A witness's text never drives the terminal: control
                    // characters (escape sequences) are shown, not sent.
                    let shown: String = text
                        .chars()
                        .flat_map(|c| match c {
                            '\n' | '\t' => vec![c],
                            c if c.is_control() => c.escape_unicode().collect(),
                            c => vec![c],
                        })
                        .collect();
                    lines.push(format!("statement:\n{shown}"));
                }
                for f in &files {
                    lines.push(format!(
                        "file: {} ({} bytes)",
                        f["path"].as_str().unwrap_or(""),
                        f["size"]
                    ));
                }
                lines.join("\n")
            });
        }
        IntakeCommand::Close { space: s, dropbox } => {
            c.close_drop_box(space(&s)?, &dropbox).await?;
            print(json_out, json!({ "closed": dropbox }), || {
                format!("drop box {dropbox} closed: its link takes nothing more")
            });
        }
    }
    Ok(())
}

/// `dir/name`, or `dir/name (2)` and so on if that exists.
fn free_path(dir: &std::path::Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    (2..)
        .map(|n| dir.join(format!("{stem} ({n}){ext}")))
        .find(|p| !p.exists())
        .expect("some name is free")
}

async fn space_command(
    c: &mut Client,
    command: SpaceCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    match command {
        SpaceCommand::Create { name, public } => {
            let id = match public {
                Some(name) => c.create_public_space(&name).await?,
                None => c.create_space().await?,
            };
            if let Some(name) = name {
                c.set_profile(id, &name, "").await?;
            }
            print(json_out, json!({ "space": id.to_hex() }), || id.to_hex());
        }
        SpaceCommand::Rename {
            space: s,
            name,
            description,
        } => {
            let id = space(&s)?;
            c.set_profile(id, &name, &description).await?;
            let p = c.profile(id)?;
            print(
                json_out,
                json!({ "space": s, "name": p.name, "description": p.description }),
                || format!("space {s} is named {:?}", p.name.unwrap_or_default()),
            );
        }
        SpaceCommand::List => {
            c.sync_all().await?;
            let v = c.list_spaces().await?;
            print(json_out, v.clone(), || {
                v["spaces"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        format!(
                            "{} {} epoch {} {}",
                            s["id"].as_str().unwrap_or(""),
                            s["kind"].as_str().unwrap_or(""),
                            s["epoch"],
                            s["name"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        SpaceCommand::Invite {
            space: s,
            user,
            role: r,
        } => {
            c.sync_all().await?;
            let epoch = c.invite(space(&s)?, &user, role(&r)?).await?;
            print(json_out, json!({ "epoch": epoch }), || {
                format!("{user} added; the space is in epoch {epoch}")
            });
        }
        SpaceCommand::Directory { query } => {
            let d = c.directory(&query).await?;
            print(json_out, serde_json::to_value(&d)?, || {
                lines(&d.spaces, "no listed space matches", |l| {
                    let open = if l.open { " (open)" } else { "" };
                    if l.description.is_empty() {
                        format!("{} {}{open}", l.space, l.name)
                    } else {
                        format!(
                            "{} {}{open}\n    {}",
                            l.space,
                            l.name,
                            l.description.replace('\n', "\n    ")
                        )
                    }
                })
            });
        }
        SpaceCommand::Listing {
            space: s,
            name,
            description,
            off,
            open,
        } => {
            let listing = (!off).then(|| amicus_core::api::Listing {
                name: name.unwrap_or_default(),
                description,
                open,
            });
            c.sync_all().await?;
            c.list_in_directory(space(&s)?, listing).await?;
            print(json_out, json!({ "listed": !off, "open": open }), || {
                match (off, open) {
                    (true, _) => "taken out of the directory",
                    (false, true) => {
                        "listed in the directory, open: whoever asks is added as a contributor"
                    }
                    (false, false) => {
                        "listed in the directory; requests to join wait for a manager"
                    }
                }
                .to_owned()
            });
        }
        SpaceCommand::Request {
            space: s,
            message,
            withdraw,
        } => {
            let open = if withdraw {
                c.withdraw_request(space(&s)?).await?;
                false
            } else {
                c.ask_to_join(space(&s)?, &message).await?
            };
            let answer = json!({ "requested": !withdraw, "open": open });
            print(json_out, answer, || {
                match (withdraw, open) {
                    (true, _) => "request withdrawn",
                    (false, true) => {
                        "asked; the space is open: the first device of one of its managers to be online adds you"
                    }
                    (false, false) => "asked; a manager of the space will answer",
                }
                .to_owned()
            });
        }
        SpaceCommand::Requests { space: None } => {
            let own = c.own_requests().await?;
            print(json_out, serde_json::to_value(&own)?, || {
                lines(&own.requests, "no request waiting", |r| {
                    format!(
                        "{} {} {}",
                        r.space,
                        r.name.as_deref().unwrap_or("(no longer listed)"),
                        r.state
                    )
                })
            });
        }
        SpaceCommand::Requests { space: Some(s) } => {
            let waiting = c.join_requests(space(&s)?).await?;
            print(json_out, serde_json::to_value(&waiting)?, || {
                lines(&waiting.requests, "no request waiting", |r| {
                    format!("{}: {}", r.user, r.message)
                })
            });
        }
        SpaceCommand::Accept {
            space: s,
            user,
            role: r,
        } => {
            c.sync_all().await?;
            c.accept(space(&s)?, &user, role(&r)?).await?;
            print(json_out, json!({ "accepted": user }), || {
                format!("{user} added")
            });
        }
        SpaceCommand::Decline { space: s, user } => {
            c.sync_all().await?;
            c.decline(space(&s)?, &user).await?;
            print(json_out, json!({ "declined": user }), || {
                format!("{user}'s request declined")
            });
        }
        SpaceCommand::Remove { space: s, user } => {
            c.sync_all().await?;
            let epoch = c.remove(space(&s)?, &user).await?;
            print(json_out, json!({ "epoch": epoch }), || {
                format!("{user} removed; the space is in epoch {epoch}")
            });
        }
        SpaceCommand::Members { space: s } => {
            c.sync_all().await?;
            let id = space(&s)?;
            let members = c.members(id)?;
            let (epoch, authenticator) = c.epoch(id)?;
            let code = c.space_code(id)?;
            print(
                json_out,
                json!({ "members": members, "epoch": epoch, "safety_code": code, "authenticator": authenticator }),
                || {
                    let mut out: Vec<String> = members
                        .iter()
                        .map(|m| {
                            format!(
                                "{} {} {} {}",
                                m["user"].as_str().unwrap_or(""),
                                m["device"].as_str().unwrap_or(""),
                                m["role"].as_str().unwrap_or(""),
                                m["safety_number"].as_str().unwrap_or("")
                            )
                        })
                        .collect();
                    out.push(format!("epoch {epoch} · space code {code}"));
                    out.join("\n")
                },
            );
        }
    }
    Ok(())
}

async fn doc_command(c: &mut Client, command: DocCommand, json_out: bool) -> anyhow::Result<()> {
    c.sync_all().await?;
    match command {
        DocCommand::New { space: s, title } => {
            let id = c.new_document(space(&s)?, &title).await?;
            print(json_out, json!({ "doc": id.to_hex() }), || id.to_hex());
        }
        DocCommand::Edit {
            space: s,
            doc,
            title,
            append,
            insert,
            delete,
            comment,
            format,
            version,
            reply,
            resolve,
            reopen,
        } => {
            let mut edits = Vec::new();
            if let Some(t) = title {
                edits.push(Edit::Title(t));
            }
            if let Some(p) = delete {
                let v = split_pos(&p, 2)?;
                edits.push(Edit::Delete(num(&v[0])?, num(&v[1])?));
            }
            if let Some(p) = insert {
                let v = split_pos(&p, 2)?;
                edits.push(Edit::Insert(Some(num(&v[0])?), v[1].clone()));
            }
            if let Some(t) = append {
                edits.push(Edit::Insert(None, t));
            }
            if let Some(p) = format {
                let v = split_pos(&p, 3)?;
                edits.push(Edit::Format(num(&v[0])?, num(&v[1])?, v[2].clone()));
            }
            if let Some(p) = comment {
                let v = split_pos(&p, 3)?;
                edits.push(Edit::Comment(num(&v[0])?, num(&v[1])?, v[2].clone()));
            }
            if let Some(v) = version {
                edits.push(Edit::Version(v));
            }
            if let Some(p) = reply {
                let v = split_pos(&p, 2)?;
                edits.push(Edit::Reply(v[0].clone(), v[1].clone()));
            }
            if let Some(t) = resolve {
                edits.push(Edit::Resolve(t, true));
            }
            if let Some(t) = reopen {
                edits.push(Edit::Resolve(t, false));
            }
            if edits.is_empty() {
                bail!(
                    "nothing to do: give --title, --append, --insert, --delete, --comment, --format, --version, --reply, --resolve or --reopen"
                );
            }
            c.edit(space(&s)?, stream(&doc)?, &edits).await?;
            print(json_out, json!({ "edited": doc }), || "saved".to_owned());
        }
        DocCommand::Cat { space: s, doc } => {
            let f = c.read(space(&s)?, stream(&doc)?)?;
            c.seen(space(&s)?, stream(&doc)?)?;
            print(json_out, serde_json::to_value(&f)?, || {
                let mut out = format!("# {}\n\n{}", f.title, f.body);
                // Comments after the text, each on the passage it marks,
                // as the browser shows them.
                let chars: Vec<char> = f.body.chars().collect();
                for t in &f.comments {
                    let at = |k: &str| t[k].as_u64().unwrap_or(0) as usize;
                    let passage: String = chars
                        .get(at("start").min(chars.len())..at("end").min(chars.len()))
                        .map(|p| p.iter().collect())
                        .unwrap_or_default();
                    let state = match &t["resolved_by"] {
                        by if t["resolved"] == true && by.is_object() => {
                            format!(" (resolved by {})", author(by))
                        }
                        _ if t["resolved"] == true => " (resolved)".to_owned(),
                        _ => String::new(),
                    };
                    let id = t["thread"].as_str().unwrap_or("");
                    out.push_str(&format!("\n\n> {passage}{state} [thread {id}]"));
                    for m in t["messages"].as_array().into_iter().flatten() {
                        let when = m["at"]
                            .as_str()
                            .map(|a| format!(" ({a})"))
                            .unwrap_or_default();
                        out.push_str(&format!(
                            "\n{}{when}: {}",
                            author(m),
                            m["text"].as_str().unwrap_or("")
                        ));
                    }
                }
                out
            });
        }
        DocCommand::History { space: s, doc } => {
            let f = c.read(space(&s)?, stream(&doc)?)?;
            print(
                json_out,
                json!({ "versions": f.versions, "changes": f.changes }),
                || {
                    let mut out = vec![format!("{} changes", f.changes)];
                    out.extend(f.versions.iter().map(|v| {
                        let by = if v.verified {
                            v.author.clone()
                        } else {
                            format!("{} (name not verified)", v.author)
                        };
                        match &v.at {
                            Some(at) => format!("version: {} — {by}, {at}", v.name),
                            None => format!("version: {} — {by}", v.name),
                        }
                    }));
                    out.join("\n")
                },
            );
        }
        DocCommand::Ls { space: s } => list(c, &s, json_out, None)?,
        DocCommand::Mv {
            space: s,
            doc,
            to,
            name,
        } => move_entry(c, &s, "document", &doc, to, name, json_out).await?,
        DocCommand::Rm { space: s, doc } => remove_entry(c, &s, "document", &doc, json_out).await?,
        DocCommand::Unsent { export, discard } => unsent(c, export, discard, json_out)?,
    }
    Ok(())
}

/// Lists (and exports, discards) the documents with unacknowledged edits.
fn unsent(
    c: &mut Client,
    export: Option<std::path::PathBuf>,
    discard: bool,
    json_out: bool,
) -> anyhow::Result<()> {
    let waiting = c.unsent();
    let mut listed = Vec::new();
    for u in &waiting {
        let mut file = None;
        if let (Some(dir), Some((title, body))) = (&export, &u.text) {
            std::fs::create_dir_all(dir)?;
            let path = dir.join(format!("{}.md", u.stream.to_hex()));
            std::fs::write(&path, format!("# {title}\n\n{body}\n"))?;
            file = Some(path.display().to_string());
        }
        listed.push(json!({
            "space": u.space.to_hex(),
            "doc": u.stream.to_hex(),
            "title": u.text.as_ref().map(|(t, _)| t),
            "changes": u.changes,
            "blocked": u.blocked,
            "exported": file,
        }));
    }
    if discard {
        for u in &waiting {
            c.discard_unsent(u.space, u.stream)?;
        }
    }
    print(
        json_out,
        json!({ "unsent": listed, "discarded": discard }),
        || {
            if listed.is_empty() {
                return "every edit of this device has reached the server".to_owned();
            }
            listed
                .iter()
                .map(|u| {
                    let title = u["title"].as_str().unwrap_or("library");
                    let state = u["blocked"].as_str().unwrap_or("waiting to be sent");
                    let mut line = format!(
                        "{} {} ({}): {} change(s); {state}",
                        u["space"].as_str().unwrap_or(""),
                        u["doc"].as_str().unwrap_or(""),
                        title,
                        u["changes"]
                    );
                    if let Some(f) = u["exported"].as_str() {
                        line.push_str(&format!("; written to {f}"));
                    }
                    if discard {
                        line.push_str("; discarded");
                    }
                    line
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    Ok(())
}

/// The ids of the files or filings of a space's library named (by id or
/// name) in `names`, for a post to attach or a record to cite (`what`).
fn library_entries(
    c: &mut Client,
    id: SpaceId,
    names: &[String],
    what: &str,
) -> anyhow::Result<Vec<String>> {
    names
        .iter()
        .map(|n| {
            c.entry_id(id, "file", n)
                .or_else(|_| c.entry_id(id, "document", n))
                .map_err(|_| anyhow::anyhow!("the library has no file or filing {n:?} to {what}"))
        })
        .collect()
}

impl RecordArgs {
    /// These options over `base` (a record's fields, or none).
    fn over(
        self,
        base: amicus_core::monitoring::Fields,
        sources: Vec<String>,
    ) -> amicus_core::monitoring::Fields {
        let mut f = base;
        let set = |field: &mut String, v: Option<String>| {
            if let Some(v) = v {
                *field = v;
            }
        };
        set(&mut f.date, self.date);
        set(&mut f.country, self.country.map(|c| c.to_uppercase()));
        set(&mut f.region, self.region.map(|r| r.to_uppercase()));
        set(&mut f.profession, self.profession);
        set(&mut f.gender, self.gender);
        set(&mut f.status, self.status);
        set(&mut f.outcome, self.outcome);
        set(&mut f.notes, self.notes);
        if !self.types.is_empty() {
            f.types = self.types;
        }
        if !sources.is_empty() {
            f.sources = sources;
        }
        f
    }
}

fn record_json(r: &amicus_core::monitoring::Record) -> Value {
    let f = &r.fields;
    json!({
        "record": r.id,
        "date": f.date,
        "country": f.country,
        "region": f.region,
        "types": f.types,
        "profession": f.profession,
        "gender": f.gender,
        "status": f.status,
        "outcome": f.outcome,
        "sources": f.sources,
        "notes": f.notes,
        "by": { "author": r.by.name, "verified": r.by.verified },
        "edited_by": { "author": r.edited_by.name, "verified": r.edited_by.verified },
        "created": r.created_ms.and_then(amicus_cli::client::rfc3339),
        "edited": r.edited_ms.and_then(amicus_cli::client::rfc3339),
    })
}

async fn record_command(
    c: &mut Client,
    command: RecordCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    use amicus_core::monitoring::{self, Dim};
    c.sync_all().await?;
    match command {
        RecordCommand::New { space: s, fields } => {
            let id = space(&s)?;
            let cited = library_entries(c, id, &fields.source, "cite")?;
            let fields = fields.over(monitoring::Fields::default(), cited);
            let record = c.new_record(id, &fields).await?;
            print(json_out, json!({ "record": record }), || record.clone());
        }
        RecordCommand::Edit {
            space: s,
            record,
            fields,
        } => {
            let id = space(&s)?;
            let base = c
                .records(id)?
                .records
                .into_iter()
                .find(|r| r.id == record)
                .ok_or_else(|| anyhow::anyhow!("this space has no record {record}"))?;
            let cited = library_entries(c, id, &fields.source, "cite")?;
            let before = base.fields.clone();
            let fields = fields.over(base.fields, cited);
            c.edit_record(id, &record, &before, &fields).await?;
            print(json_out, json!({ "edited": record }), || "saved".to_owned());
        }
        RecordCommand::Ls {
            space: s,
            country,
            kind,
            year,
            status,
            sort,
        } => {
            let id = space(&s)?;
            let mut records: Vec<_> = c
                .records(id)?
                .records
                .into_iter()
                .filter(|r| {
                    let f = &r.fields;
                    country
                        .as_ref()
                        .is_none_or(|c| f.country.eq_ignore_ascii_case(c))
                        && kind.as_ref().is_none_or(|k| f.types.contains(k))
                        && year.as_ref().is_none_or(|y| f.date.starts_with(y.as_str()))
                        && status.as_ref().is_none_or(|st| f.status == *st)
                })
                .collect();
            match sort.as_str() {
                "date" => records.sort_by(|a, b| b.fields.date.cmp(&a.fields.date)),
                "country" => records.sort_by(|a, b| {
                    (&a.fields.country, &b.fields.date).cmp(&(&b.fields.country, &a.fields.date))
                }),
                "status" => records.sort_by(|a, b| a.fields.status.cmp(&b.fields.status)),
                other => anyhow::bail!("--sort is date, country or status, not {other:?}"),
            }
            let value: Vec<Value> = records.iter().map(record_json).collect();
            print(json_out, Value::Array(value), || {
                records
                    .iter()
                    .map(|r| {
                        let f = &r.fields;
                        let place = if f.region.is_empty() {
                            &f.country
                        } else {
                            &f.region
                        };
                        format!(
                            "{}  {:<10}  {:<6}  {:<30}  {:<8}  {}",
                            r.id,
                            f.date,
                            place,
                            f.types.join(","),
                            f.status,
                            f.gender
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        RecordCommand::Counts { space: s } => {
            let id = space(&s)?;
            let counts = monitoring::counts(&c.records(id)?.records);
            let value: serde_json::Map<String, Value> = counts
                .iter()
                .map(|(d, v)| (d.as_str().to_owned(), json!(v)))
                .collect();
            print(json_out, Value::Object(value), || {
                let mut out = Vec::new();
                for (dim, values) in &counts {
                    out.push(format!("{}:", dim.as_str()));
                    for (v, n) in values {
                        let v = if v.is_empty() { "(none)" } else { v };
                        out.push(format!("  {v:<24} {n}"));
                    }
                }
                out.join("\n")
            });
        }
        RecordCommand::Export { space: s, counts } => {
            let id = space(&s)?;
            let records = c.records(id)?.records;
            let csv = if counts {
                monitoring::counts_csv(&monitoring::counts(&records))
            } else {
                monitoring::records_csv(&records)
            };
            print!("{csv}");
        }
        RecordCommand::Rm { space: s, record } => {
            let id = space(&s)?;
            c.remove_record(id, &record).await?;
            print(json_out, json!({ "removed": record }), || {
                "removed".to_owned()
            });
        }
        RecordCommand::AddType {
            space: s,
            code,
            label,
        } => {
            let id = space(&s)?;
            c.add_violation_type(id, &code, &label).await?;
            print(json_out, json!({ "type": code }), || "saved".to_owned());
        }
        RecordCommand::Check { public, id } => {
            let check = c.check_aggregate(space(&public)?, &id).await?;
            let word = match check {
                monitoring::Check::Matches => "matches",
                monitoring::Check::Differs => "differs",
                monitoring::Check::Unknown => "unknown",
            };
            print(json_out, json!({ "check": word }), || word.to_owned());
            if check == monitoring::Check::Differs {
                anyhow::bail!(
                    "the published counts are not what your records give at the heads they name"
                );
            }
        }
        RecordCommand::Publish {
            space: s,
            to,
            id: pub_id,
            title,
            by,
            k,
            dry_run,
        } => {
            let id = space(&s)?;
            let public = space(&to)?;
            let dims = by
                .split(',')
                .map(|d| {
                    Dim::parse(d.trim()).ok_or_else(|| {
                        anyhow::anyhow!(
                            "{d:?} is not a dimension: country, region, type, year, gender, status, profession"
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let aggregate = if dry_run {
                c.aggregate(id, &title, &dims, k)?
            } else {
                c.publish_aggregate(id, public, &pub_id, &title, &dims, k)
                    .await?
                    .aggregate
            };
            print(json_out, json!(aggregate), || {
                let mut out = vec![format!(
                    "{} ({}; k = {}){}",
                    aggregate.title,
                    dims.iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(" × "),
                    aggregate.k,
                    if dry_run {
                        ", not published"
                    } else {
                        ", published"
                    }
                )];
                for cell in &aggregate.cells {
                    out.push(format!("  {:<40} {}", cell.values.join("  "), cell.count));
                }
                out.push(format!(
                    "{} cell(s) under {} left out",
                    aggregate.suppressed, aggregate.k
                ));
                out.join("\n")
            });
        }
    }
    Ok(())
}

async fn thread_command(
    c: &mut Client,
    command: ThreadCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    c.sync_all().await?;
    match command {
        ThreadCommand::New {
            space: s,
            title,
            text,
            attach,
        } => {
            let id = space(&s)?;
            let attach = library_entries(c, id, &attach, "attach")?;
            let stream = c.new_discussion(id, &title, &text, &attach).await?;
            print(json_out, json!({ "thread": stream.to_hex() }), || {
                stream.to_hex()
            });
        }
        ThreadCommand::Reply {
            space: s,
            thread,
            text,
            to,
            attach,
        } => {
            let id = space(&s)?;
            let stream = stream(&c.entry_id(id, "discussion", &thread)?)?;
            let attach = library_entries(c, id, &attach, "attach")?;
            let post = c.post(id, stream, to.as_deref(), &text, &attach).await?;
            print(json_out, json!({ "post": post }), || post.clone());
        }
        ThreadCommand::Edit {
            space: s,
            thread,
            post,
            text,
        } => {
            let id = space(&s)?;
            let stream = stream(&c.entry_id(id, "discussion", &thread)?)?;
            c.edit_post(id, stream, &post, &text).await?;
            print(json_out, json!({ "edited": post }), || "saved".to_owned());
        }
        ThreadCommand::Ls { space: s } => list(c, &s, json_out, Some("discussion"))?,
        ThreadCommand::Cat { space: s, thread } => {
            let id = space(&s)?;
            let stream = stream(&c.entry_id(id, "discussion", &thread)?)?;
            let d = c.discussion(id, stream)?;
            let who = |a: &amicus_core::document::filing::Author| json!({ "author": a.name, "verified": a.verified });
            let posts: Vec<Value> = d
                .posts
                .iter()
                .map(|p| {
                    json!({
                        "post": p.id,
                        "author": p.author.name,
                        "verified": p.author.verified,
                        "by": who(&p.by),
                        "text": p.text,
                        "at": p.at_ms.and_then(amicus_cli::client::rfc3339),
                        "edited": p.edited_ms.and_then(amicus_cli::client::rfc3339),
                        "reply_to": p.reply_to,
                        "attachments": p.attachments,
                        "mentions": p.mentions,
                    })
                })
                .collect();
            print(
                json_out,
                json!({ "thread": stream.to_hex(), "title": d.title, "posts": posts }),
                || {
                    let mut out = format!("# {}", d.title);
                    for (p, v) in d.posts.iter().zip(&posts) {
                        let when = v["at"]
                            .as_str()
                            .map(|a| format!(" ({a})"))
                            .unwrap_or_default();
                        let reply = p
                            .reply_to
                            .as_ref()
                            .map(|r| format!(" in reply to {r}"))
                            .unwrap_or_default();
                        let edited = match (&p.edited_ms, p.edited_by_other()) {
                            (_, true) => {
                                format!(" [text written by {}, not by {}]", author(v), p.by.name)
                            }
                            (Some(_), false) => " [edited]".to_owned(),
                            _ => String::new(),
                        };
                        out.push_str(&format!(
                            "\n\n[post {}] {}{when}{reply}{edited}:\n{}",
                            p.id,
                            author(v),
                            p.text
                        ));
                        if !p.attachments.is_empty() {
                            out.push_str(&format!("\nattached: {}", p.attachments.join(", ")));
                        }
                    }
                    out
                },
            );
        }
    }
    Ok(())
}

fn list(c: &mut Client, s: &str, json_out: bool, only: Option<&str>) -> anyhow::Result<()> {
    let entries: Vec<_> = c
        .library(space(s)?)?
        .into_iter()
        .filter(|e| only.is_none_or(|k| e.kind == k))
        .collect();
    let id = space(s)?;
    c.seen(id, amicus_core::library::stream(id))?;
    print(json_out, json!({ "entries": entries }), || {
        entries
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}{}{}",
                    e.kind,
                    e.id,
                    e.name,
                    e.size.map(|s| format!(" ({s} bytes)")).unwrap_or_default(),
                    if e.folder.is_empty() {
                        String::new()
                    } else {
                        format!(" in {}", e.folder)
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

async fn file_command(c: &mut Client, command: FileCommand, json_out: bool) -> anyhow::Result<()> {
    c.sync_all().await?;
    match command {
        FileCommand::Put {
            space: s,
            path,
            name,
            folder,
            version_of,
        } => {
            if let Some(of) = version_of {
                let id = space(&s)?;
                let entry = c.entry_id(id, "file", &of)?;
                let b = bar(json_out, "encrypting and uploading");
                let manifest = c
                    .put_version(id, &path, &entry, &mut |done, total| {
                        b.set_length(total);
                        b.set_position(done);
                    })
                    .await?;
                b.finish_and_clear();
                print(
                    json_out,
                    json!({ "file": entry, "version": manifest.file_id.to_string(), "size": manifest.plaintext_size }),
                    || format!("new version of {of} ({} bytes)", manifest.plaintext_size),
                );
                return Ok(());
            }
            let folder = match folder {
                Some(f) => folder_id(c, space(&s)?, &f)?,
                None => String::new(),
            };
            let name = match name {
                Some(n) => n,
                None => path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .context("give --name")?,
            };
            let b = bar(json_out, "encrypting and uploading");
            let manifest = c
                .put_file_in(space(&s)?, &path, &name, &folder, &mut |done, total| {
                    b.set_length(total);
                    b.set_position(done);
                })
                .await?;
            b.finish_and_clear();
            print(
                json_out,
                json!({ "file": manifest.file_id.to_string(), "name": manifest.name, "size": manifest.plaintext_size, "chunks": manifest.chunk_ids.len() }),
                || {
                    format!(
                        "uploaded {} ({} bytes)",
                        manifest.name, manifest.plaintext_size
                    )
                },
            );
        }
        FileCommand::Get {
            space: s,
            file,
            out,
            version,
        } => {
            let b = bar(json_out, "downloading and decrypting");
            let n = c
                .get_file_version(space(&s)?, &file, version, &out, &mut |done, total| {
                    b.set_length(total);
                    b.set_position(done);
                })
                .await?;
            b.finish_and_clear();
            print(json_out, json!({ "bytes": n, "out": out }), || {
                format!("wrote {n} bytes to {}", out.display())
            });
        }
        FileCommand::Ls { space: s } => list(c, &s, json_out, Some("file"))?,
        FileCommand::Versions { space: s, file } => {
            let versions = c.file_versions(space(&s)?, &file)?;
            print(json_out, json!({ "versions": versions }), || {
                versions
                    .iter()
                    .map(|v| {
                        format!(
                            "{} {} {} ({} bytes){}",
                            v["version"],
                            v["file"].as_str().unwrap_or(""),
                            v["name"].as_str().unwrap_or(""),
                            v["size"],
                            if v["current"] == true { " current" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        FileCommand::Mv {
            space: s,
            file,
            to,
            name,
        } => move_entry(c, &s, "file", &file, to, name, json_out).await?,
        FileCommand::Rm { space: s, file } => remove_entry(c, &s, "file", &file, json_out).await?,
    }
    Ok(())
}

/// A folder given by id or name; "" or "/" is the top of the library.
fn folder_id(c: &mut Client, id: amicus_core::SpaceId, key: &str) -> anyhow::Result<String> {
    Ok(match key {
        "" | "/" => String::new(),
        key => c.entry_id(id, "folder", key)?,
    })
}

async fn move_entry(
    c: &mut Client,
    s: &str,
    kind: &str,
    key: &str,
    to: Option<String>,
    name: Option<String>,
    json_out: bool,
) -> anyhow::Result<()> {
    if to.is_none() && name.is_none() {
        bail!("nothing to do: give --to FOLDER (\"\" for the top of the library) or --name NAME");
    }
    let id = space(s)?;
    let entry = c.entry_id(id, kind, key)?;
    if let Some(n) = &name {
        c.rename_entry(id, &entry, n).await?;
    }
    let folder = match &to {
        Some(t) => {
            let f = folder_id(c, id, t)?;
            c.move_entry(id, &entry, &f).await?;
            Some(f)
        }
        None => None,
    };
    print(
        json_out,
        json!({ "kind": kind, "id": entry, "folder": folder, "name": name }),
        || format!("{kind} {entry} updated"),
    );
    Ok(())
}

async fn remove_entry(
    c: &mut Client,
    s: &str,
    kind: &str,
    key: &str,
    json_out: bool,
) -> anyhow::Result<()> {
    let id = space(s)?;
    let entry = c.entry_id(id, kind, key)?;
    c.remove_entry(id, &entry).await?;
    print(json_out, json!({ "kind": kind, "removed": entry }), || {
        format!("{kind} {entry} removed from the library")
    });
    Ok(())
}

async fn folder_command(
    c: &mut Client,
    command: FolderCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    c.sync_all().await?;
    match command {
        FolderCommand::New {
            space: s,
            name,
            parent,
        } => {
            let id = space(&s)?;
            let parent = match parent {
                Some(p) => folder_id(c, id, &p)?,
                None => String::new(),
            };
            let folder = c.new_folder(id, &name, &parent).await?;
            print(
                json_out,
                json!({ "folder": folder, "parent": parent }),
                || folder.clone(),
            );
        }
        FolderCommand::Mv {
            space: s,
            folder,
            to,
            name,
        } => move_entry(c, &s, "folder", &folder, to, name, json_out).await?,
        FolderCommand::Rm { space: s, folder } => {
            remove_entry(c, &s, "folder", &folder, json_out).await?
        }
    }
    Ok(())
}

async fn serve(
    data: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    config_file: Option<PathBuf>,
    registration: Option<String>,
    web: Option<PathBuf>,
    tls: Option<(PathBuf, PathBuf)>,
) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AMICUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = match &config_file {
        Some(path) => amicus_server::Config::from_file(path)?,
        None => amicus_server::Config::default(),
    };
    config.apply_env(|k| std::env::var(k).ok())?;
    if let Some(d) = data {
        config.data = d;
    }
    if let Some(l) = listen {
        config.listen = l;
    }
    if let Some(w) = web {
        if !w.join("index.html").is_file() {
            bail!(
                "{} holds no index.html: build the web app with `cargo xtask web`",
                w.display()
            );
        }
        config.web = Some(w);
    }
    if let Some(r) = registration {
        config.registration = match r.as_str() {
            "open" => amicus_server::Registration::Open,
            "invite" => amicus_server::Registration::Invite,
            _ => bail!("--registration is `open` or `invite`"),
        };
    }
    let acceptor = match &tls {
        Some((cert, key)) => {
            Some(amicus_server::tls_acceptor(cert, key).map_err(|e| anyhow::anyhow!(e))?)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let state = amicus_server::open(config.clone()).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the data directory {}: {e}",
            config.data.display()
        )
    })?;
    tracing::info!(listen = %addr, data = %config.data.display(), registration = ?config.registration, "amicus server listening");
    // Scripts and tests read the bound address from this line.
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{addr}");
    amicus_server::serve(listener, state, acceptor, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
