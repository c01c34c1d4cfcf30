//! A device's local state on disk, encrypted at rest.
//!
//! The home directory holds `salt` (16 random bytes) and encrypted files.
//! The key is Argon2id(passphrase, salt) with m = 19 MiB, t = 2, p = 1 (the
//! OWASP minimum for Argon2id). Each file is
//! `"AMICUS-HOME" 0x01 || nonce[24] || XChaCha20-Poly1305(key, nonce,
//! aad = "AMICUS-HOME" 0x01 || name, plaintext)` with a random nonce, written
//! to a temporary file, synced and renamed, so a crash leaves the old or the
//! new file, never a torn one.

use std::path::{Path, PathBuf};

use amicus_core::at_rest::{AtRestError, StateKey};
use zeroize::Zeroizing;

/// Why the local state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// No state here: register or log in first.
    #[error("no Amicus device state in {0}; run `amicus register` or `amicus login` first")]
    Missing(PathBuf),
    /// A state exists already; refusing to overwrite it.
    #[error("{0} already holds a device's state; use another --home")]
    Exists(PathBuf),
    /// The passphrase is wrong or the file was altered.
    #[error("cannot decrypt {0}: wrong passphrase, or the file was altered")]
    Decrypt(String),
    /// The file decrypts but does not decode (written by another version?).
    #[error("{0} is corrupt or from another version")]
    Corrupt(String),
    /// Reading or writing failed.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// An unlocked home directory.
pub struct Home {
    dir: PathBuf,
    key: StateKey,
}

impl std::fmt::Debug for Home {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Home({})", self.dir.display())
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |e| HomeError::Io(path.to_path_buf(), e)
}

impl Home {
    /// Creates a new home in `dir` (refuses one that holds a state).
    pub fn create(dir: &Path, passphrase: &[u8]) -> Result<Self, HomeError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // Only the user may list or read it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(dir))?;
        }
        let salt_path = dir.join("salt");
        if salt_path.exists() {
            return Err(HomeError::Exists(dir.into()));
        }
        let salt = amicus_core::at_rest::new_salt();
        write_atomic(&salt_path, &salt)?;
        Ok(Self {
            dir: dir.into(),
            key: StateKey::derive(passphrase, &salt),
        })
    }

    /// Unlocks an existing home.
    pub fn open(dir: &Path, passphrase: &[u8]) -> Result<Self, HomeError> {
        let salt_path = dir.join("salt");
        let salt = match std::fs::read(&salt_path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(HomeError::Missing(dir.into()));
            }
            Err(e) => return Err(HomeError::Io(salt_path, e)),
        };
        Ok(Self {
            dir: dir.into(),
            key: StateKey::derive(passphrase, &salt),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Encrypts and writes `plaintext` as file `name` (atomic, synced).
    pub fn write(&self, name: &str, plaintext: &[u8]) -> Result<(), HomeError> {
        write_atomic(&self.dir.join(name), &self.key.seal(name, plaintext))
    }

    /// Reads and decrypts file `name`; `Ok(None)` if it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, HomeError> {
        let path = self.dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(HomeError::Io(path, e)),
        };
        match self.key.open(name, &bytes) {
            Ok(p) => Ok(Some(p)),
            Err(AtRestError::Corrupt(n) | AtRestError::State(n)) => Err(HomeError::Corrupt(n)),
            Err(AtRestError::Decrypt(n)) => Err(HomeError::Decrypt(n)),
        }
    }

    /// Removes this home's files (salt and state) and the directory if it
    /// is then empty; for a registration the server refused.
    pub fn destroy(self) -> Result<(), HomeError> {
        self.remove("state")?;
        self.remove("salt")?;
        let _ = std::fs::remove_dir(&self.dir);
        Ok(())
    }

    /// Deletes file `name` if it exists.
    pub fn remove(&self, name: &str) -> Result<(), HomeError> {
        let path = self.dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HomeError::Io(path, e)),
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    // Readable by the user only, whatever the umask.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp).map_err(io(&tmp))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // A temporary file left by a crash keeps its old mode: set it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io(&tmp))?;
    }
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seized device's home is no easier to read for another account on
    /// it: the directory and every file are the user's alone, whatever the
    /// umask.
    #[cfg(unix)]
    #[test]
    fn the_home_and_its_files_are_the_users_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home_dir = dir.path().join("home");
        let home = Home::create(&home_dir, b"correct horse").unwrap();
        home.write("state", b"secret").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&home_dir), 0o700);
        assert_eq!(mode(&home_dir.join("salt")), 0o600);
        assert_eq!(mode(&home_dir.join("state")), 0o600);
    }

    #[test]
    fn files_are_encrypted_bound_to_their_name_and_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::create(dir.path(), b"correct horse").unwrap();
        home.write("state", b"canary-7f3a secret").unwrap();
        let raw = std::fs::read(dir.path().join("state")).unwrap();
        assert!(!raw.windows(11).any(|w| w == b"canary-7f3a"));
        let again = Home::open(dir.path(), b"correct horse").unwrap();
        assert_eq!(
            &again.read("state").unwrap().unwrap()[..],
            b"canary-7f3a secret"
        );
        let wrong = Home::open(dir.path(), b"wrong").unwrap();
        assert!(matches!(wrong.read("state"), Err(HomeError::Decrypt(_))));
        std::fs::copy(dir.path().join("state"), dir.path().join("other")).unwrap();
        assert!(matches!(again.read("other"), Err(HomeError::Decrypt(_))));
        assert!(again.read("absent").unwrap().is_none());
        assert!(matches!(
            Home::create(dir.path(), b"x"),
            Err(HomeError::Exists(_))
        ));
    }
}
