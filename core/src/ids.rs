//! Identifiers. Users are named by a user name; devices, spaces, streams and
//! messages by 16 random bytes, written as 32 lower-case hex digits.

use core::fmt;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// A user name must be 1 to 64 characters of `a-z`, `0-9`, `.`, `_` or `-`,
    /// starting with a letter or digit. Choose another name.
    #[error(
        "invalid user name: 1 to 64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
    )]
    UserName,
    /// A 16-byte identifier must be written as exactly 32 lower-case hex digits.
    #[error("invalid identifier: expected 32 lower-case hex digits")]
    Hex,
}

/// A user name, unique on a server: `[a-z0-9][a-z0-9._-]{0,63}`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// Checks and wraps a user name.
    pub fn new(name: &str) -> Result<Self, IdError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(IdError::UserName)
        }
    }

    /// The user name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::new(&s)
    }
}

impl From<UserId> for String {
    fn from(u: UserId) -> String {
        u.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A fresh random identifier.
            pub fn random() -> Self {
                Self(crate::random::bytes())
            }

            /// The identifier as 32 lower-case hex digits.
            pub fn to_hex(&self) -> String {
                hex(&self.0)
            }

            /// Parses 32 lower-case hex digits.
            pub fn from_hex(s: &str) -> Result<Self, IdError> {
                unhex16(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }
    };
}

random_id!(
    /// A device of a user: one MLS leaf per device and space.
    DeviceId
);
random_id!(
    /// A space (an MLS group, confidential, or a public library).
    SpaceId
);
random_id!(
    /// A stream inside a space: one document, the library, or the epoch records.
    StreamId
);
random_id!(
    /// One envelope; with the signer, the key under which duplicates are dropped.
    MessageId
);

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex16(s: &str) -> Result<[u8; 16], IdError> {
    let b = s.as_bytes();
    if b.len() != 32 {
        return Err(IdError::Hex);
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(IdError::Hex),
    };
    let mut out = [0u8; 16];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for good in ["alice", "a", "m.dupont", "user_1", "9lives"] {
            assert!(UserId::new(good).is_ok(), "{good}");
        }
        for bad in ["", "Alice", "-x", ".x", "a/b", "a b", &"x".repeat(65), "é"] {
            assert_eq!(UserId::new(bad), Err(IdError::UserName), "{bad}");
        }
    }

    #[test]
    fn hex_round_trip() {
        let id = DeviceId::random();
        assert_eq!(DeviceId::from_hex(&id.to_hex()), Ok(id));
        assert_eq!(DeviceId::from_hex("00"), Err(IdError::Hex));
        assert_eq!(DeviceId::from_hex(&"G".repeat(32)), Err(IdError::Hex));
        assert_eq!(DeviceId::from_hex(&"AB".repeat(16)), Err(IdError::Hex));
    }
}
