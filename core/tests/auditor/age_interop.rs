//! Interoperability with the reference `age` command-line tool, both ways.
//!
//! These tests need the `age` and `age-keygen` programs on PATH (Debian and
//! Ubuntu: `apt-get install age`); they fail, rather than skip, without them.
//! Only the binary age format is covered: the module does not read the ASCII
//! armor (`age -a`), and one test checks that armored files are refused
//! clearly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use amicus_core::intake::{
    IntakeError, IntakePublicKey, IntakeSecretKey, open, seal, seal_to_many,
};

const SIZES: [usize; 5] = [0, 1, 65_536, 65_537, 200_000];

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Runs one of the age programs, failing the test with a clear message when
/// the program is not installed.
fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{program}` ({e}): these interoperability tests need the \
                 reference age tools on PATH (Debian/Ubuntu: apt-get install age)"
            )
        });
    assert!(
        output.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A scratch directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("amicus-intake-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn write_identity(dir: &TempDir, key: &IntakeSecretKey) -> PathBuf {
    let path = dir.path("identity.txt");
    let contents = format!(
        "# public key: {}\n{}\n",
        key.public(),
        key.to_age_identity_string().as_str()
    );
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn age_cli_decrypts_what_the_module_seals() {
    let dir = TempDir::new("cli-decrypts");
    let key = IntakeSecretKey::generate();
    let identity = write_identity(&dir, &key);
    let other = IntakeSecretKey::generate().public();
    for size in SIZES {
        let plaintext = data(size);
        for (label, sealed) in [
            ("one recipient", seal(&key.public(), &plaintext)),
            (
                "two recipients",
                seal_to_many(&[other, key.public()], &plaintext).unwrap(),
            ),
        ] {
            let input = dir.path("sealed.age");
            std::fs::write(&input, &sealed).unwrap();
            // Decrypt to standard output: `age -o` creates no file for an
            // empty plaintext.
            let opened = run("age", &["-d", "-i", s(&identity), s(&input)]);
            assert_eq!(opened.stdout, plaintext, "size {size}, {label}");
        }
    }
}

#[test]
fn module_opens_what_the_age_cli_encrypts() {
    let dir = TempDir::new("module-opens");
    let key = IntakeSecretKey::generate();
    let recipient = key.public().to_age_recipient_string();
    let other = IntakeSecretKey::generate()
        .public()
        .to_age_recipient_string();
    for size in SIZES {
        let plaintext = data(size);
        let input = dir.path("plain.bin");
        let output = dir.path("encrypted.age");
        std::fs::write(&input, &plaintext).unwrap();
        for recipients in [vec!["-r", &recipient], vec!["-r", &other, "-r", &recipient]] {
            let mut args = recipients.clone();
            args.extend(["-o", s(&output), s(&input)]);
            run("age", &args);
            let file = std::fs::read(&output).unwrap();
            assert_eq!(
                open(std::slice::from_ref(&key), &file, size).unwrap(),
                plaintext,
                "size {size}, {} recipient(s)",
                recipients.len() / 2
            );
        }
    }
}

#[test]
fn keys_interoperate_with_age_keygen() {
    let dir = TempDir::new("keygen");
    let generated = dir.path("generated.txt");
    run("age-keygen", &["-o", s(&generated)]);
    let text = std::fs::read_to_string(&generated).unwrap();
    let secret_line = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .expect("identity line");
    let public_line = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("public key comment");
    let key = IntakeSecretKey::parse_age_identity(secret_line).unwrap();
    assert_eq!(key.public().to_age_recipient_string(), public_line);
    assert_eq!(
        IntakePublicKey::parse_age_recipient(public_line).unwrap(),
        key.public()
    );
    assert_eq!(key.to_age_identity_string().as_str(), secret_line);

    let ours = IntakeSecretKey::generate();
    let identity = write_identity(&dir, &ours);
    let derived = run("age-keygen", &["-y", s(&identity)]);
    assert_eq!(
        String::from_utf8(derived.stdout).unwrap().trim_end(),
        ours.public().to_age_recipient_string()
    );
}

#[test]
fn armored_files_are_refused_clearly() {
    let dir = TempDir::new("armor");
    let key = IntakeSecretKey::generate();
    let input = dir.path("plain.txt");
    let output = dir.path("armored.age");
    std::fs::write(&input, b"armored note").unwrap();
    run(
        "age",
        &[
            "-a",
            "-r",
            &key.public().to_age_recipient_string(),
            "-o",
            s(&output),
            s(&input),
        ],
    );
    let file = std::fs::read(&output).unwrap();
    assert_eq!(
        open(&[key], &file, 1000),
        Err(IntakeError::ArmorNotSupported)
    );
}

#[test]
fn fixture_matches_the_age_cli() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let file = fixtures.join("cli_x25519.age");
    let identity = fixtures.join("cli_x25519_identity.txt");
    let expected = std::fs::read(fixtures.join("cli_x25519_plaintext.txt")).unwrap();

    let decrypted = run("age", &["-d", "-i", s(&identity), s(&file)]);
    assert_eq!(decrypted.stdout, expected);

    let text = std::fs::read_to_string(&identity).unwrap();
    let secret_line = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap();
    let key = IntakeSecretKey::parse_age_identity(secret_line).unwrap();
    assert_eq!(
        open(&[key], &std::fs::read(&file).unwrap(), 1000).unwrap(),
        expected
    );
}
