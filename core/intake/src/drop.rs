//! A witness's submission through a drop box: what each sealed part holds,
//! how a sealed part is cut into chunks for a resumable upload, and the
//! link that names a box and pins its key.
//!
//! A submission is one or more **parts**, each a separate age v1 file (the
//! format of the crate root) sealed to the space's intake key. The page of
//! a drop box writes a part as
//!
//! ```text
//! "amicus drop v1\n" || kind[1] || u16-be len || name || u16-be len || media type || content
//! ```
//!
//! with `kind` 0 for the witness's written statement and 1 for an attached
//! file, so that a file's name and type are sealed with it and never
//! reach the server. A part sealed by anything else (the stock `age` tool)
//! is the raw content of one file: [`Part::parse`] reads it as a file with
//! no name. Names are hostile input: [`Part::safe_name`] gives one that
//! can be written into a directory.
//!
//! A sealed part travels as chunks of [`CHUNK_LEN`] bytes (the last one
//! shorter), each named by its BLAKE3 hash, so that an interrupted upload
//! goes on with the chunks the server lacks and the server stores nothing
//! whose hash it did not check.

use subtle::ConstantTimeEq;

/// The first bytes of a part written by the drop-box page.
pub const MAGIC: &[u8] = b"amicus drop v1\n";

/// The size of an upload chunk (the last chunk of a part is shorter).
pub const CHUNK_LEN: usize = 1 << 20;

/// The longest file name or media type kept in a part, in bytes.
pub const MAX_LABEL_LEN: usize = 255;

/// The most parts one submission may have.
pub const MAX_PARTS: usize = 16;

/// What a part holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The witness's written statement (UTF-8 text).
    Statement,
    /// An attached file.
    File,
}

/// One opened part of a submission.
#[derive(Clone, PartialEq, Eq)]
pub struct Part {
    /// Statement or file.
    pub kind: Kind,
    /// The file's name as the witness's device gave it (may be empty).
    pub name: String,
    /// The media type the witness's browser gave (may be empty).
    pub media_type: String,
    /// The content.
    pub content: Vec<u8>,
}

impl core::fmt::Debug for Part {
    // The content of a submission is what the intake protects: never in a log.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Part")
            .field("kind", &self.kind)
            .field("bytes", &self.content.len())
            .finish_non_exhaustive()
    }
}

/// Why a part's plaintext is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    /// It starts as a drop-box part but its header is cut or wrong.
    #[error("the submission part's header is malformed: {0}")]
    Malformed(&'static str),
    /// A statement that is not UTF-8 text.
    #[error("the witness's statement is not UTF-8 text")]
    StatementNotText,
}

impl Part {
    /// A statement.
    pub fn statement(text: &str) -> Self {
        Self {
            kind: Kind::Statement,
            name: String::new(),
            media_type: "text/plain; charset=utf-8".into(),
            content: text.as_bytes().to_vec(),
        }
    }

    /// An attached file; the name and type are cut to [`MAX_LABEL_LEN`]
    /// bytes (at a character boundary).
    pub fn file(name: &str, media_type: &str, content: Vec<u8>) -> Self {
        Self {
            kind: Kind::File,
            name: cut(name, MAX_LABEL_LEN).to_owned(),
            media_type: cut(media_type, MAX_LABEL_LEN).to_owned(),
            content,
        }
    }

    /// The plaintext to seal.
    pub fn encode(&self) -> Vec<u8> {
        let name = cut(&self.name, MAX_LABEL_LEN).as_bytes();
        let media = cut(&self.media_type, MAX_LABEL_LEN).as_bytes();
        let mut out =
            Vec::with_capacity(MAGIC.len() + 5 + name.len() + media.len() + self.content.len());
        out.extend_from_slice(MAGIC);
        out.push(match self.kind {
            Kind::Statement => 0,
            Kind::File => 1,
        });
        for label in [name, media] {
            out.extend_from_slice(&(label.len() as u16).to_be_bytes());
            out.extend_from_slice(label);
        }
        out.extend_from_slice(&self.content);
        out
    }

    /// Reads an opened part: the page's layout, or (without [`MAGIC`]) a
    /// raw file sealed by another tool. A statement must be UTF-8; names
    /// and types that are not UTF-8 or hold control characters are
    /// refused.
    pub fn parse(plaintext: Vec<u8>) -> Result<Self, PartError> {
        let Some(rest) = plaintext.strip_prefix(MAGIC) else {
            return Ok(Self {
                kind: Kind::File,
                name: String::new(),
                media_type: String::new(),
                content: plaintext,
            });
        };
        let (&kind, mut rest) = rest.split_first().ok_or(PartError::Malformed("no kind"))?;
        let kind = match kind {
            0 => Kind::Statement,
            1 => Kind::File,
            _ => return Err(PartError::Malformed("unknown kind")),
        };
        let mut label = || -> Result<String, PartError> {
            let (len, tail) = rest
                .split_first_chunk::<2>()
                .ok_or(PartError::Malformed("cut in a length"))?;
            let len = usize::from(u16::from_be_bytes(*len));
            if len > MAX_LABEL_LEN {
                return Err(PartError::Malformed("a name or type is too long"));
            }
            let (bytes, tail) = tail
                .split_at_checked(len)
                .ok_or(PartError::Malformed("cut in a name or type"))?;
            let text = core::str::from_utf8(bytes)
                .map_err(|_| PartError::Malformed("a name or type is not UTF-8"))?;
            if text.chars().any(char::is_control) {
                return Err(PartError::Malformed(
                    "a name or type holds control characters",
                ));
            }
            rest = tail;
            Ok(text.to_owned())
        };
        let name = label()?;
        let media_type = label()?;
        let content = rest.to_vec();
        if kind == Kind::Statement && core::str::from_utf8(&content).is_err() {
            return Err(PartError::StatementNotText);
        }
        Ok(Self {
            kind,
            name,
            media_type,
            content,
        })
    }

    /// A file name safe to create in a directory: the last component of
    /// the witness's name with separators, control characters and leading
    /// dots removed, or `fallback` when nothing is left.
    pub fn safe_name(&self, fallback: &str) -> String {
        let last = self
            .name
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control() && !matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|'))
            .collect::<String>();
        let trimmed = last.trim().trim_start_matches('.').trim();
        if trimmed.is_empty() {
            fallback.to_owned()
        } else {
            cut(trimmed, 120).to_owned()
        }
    }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The chunks of a sealed part: (BLAKE3 hash, bytes), in order.
pub fn chunks(sealed: &[u8]) -> impl Iterator<Item = ([u8; 32], &[u8])> {
    sealed
        .chunks(CHUNK_LEN)
        .map(|c| (*blake3::hash(c).as_bytes(), c))
}

/// A drop box's id: 16 random bytes, 32 hex digits in paths and links.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoxId(pub [u8; 16]);

impl BoxId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).expect("the operating system's random number generator failed");
        Self(b)
    }

    /// Exactly 32 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Self(out))
    }

    /// The hex form.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl core::fmt::Debug for BoxId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "BoxId({})", self.to_hex())
    }
}

impl core::fmt::Display for BoxId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The fragment of a drop box's link (what follows `/drop#`): the box id
/// and the fingerprint (§11.4) of the intake key the link was made with,
/// `<32 hex>.<22 base64url>`. A browser never sends a fragment to a
/// server; the page refuses to seal unless the key the server serves has
/// this fingerprint.
pub fn link_fragment(dropbox: BoxId, recipient: &crate::IntakePublicKey) -> String {
    format!("{}.{}", dropbox.to_hex(), recipient.fingerprint())
}

/// Reads a link's fragment (with or without its `#`).
pub fn parse_fragment(fragment: &str) -> Option<(BoxId, &str)> {
    let (id, fingerprint) = fragment.trim_start_matches('#').split_once('.')?;
    let dropbox = BoxId::parse(id)?;
    (fingerprint.len() == 22
        && fingerprint
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some((dropbox, fingerprint))
}

/// Whether `recipient` is the key a link's `fingerprint` names (constant
/// time).
pub fn key_matches(recipient: &crate::IntakePublicKey, fingerprint: &str) -> bool {
    bool::from(
        recipient
            .fingerprint()
            .as_bytes()
            .ct_eq(fingerprint.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IntakeSecretKey, open, seal};

    #[test]
    fn a_part_round_trips_through_a_sealed_file() {
        let key = IntakeSecretKey::generate();
        let part = Part::file("photo.jpg", "image/jpeg", vec![7; 3000]);
        let sealed = seal(&key.public(), &part.encode());
        let opened = open(core::slice::from_ref(&key), &sealed, 1 << 20).unwrap();
        assert_eq!(Part::parse(opened).unwrap(), part);
        let statement = Part::statement("Il était là, à 9 h — شاهد");
        assert_eq!(Part::parse(statement.encode()).unwrap(), statement);
    }

    #[test]
    fn a_file_sealed_by_another_tool_is_a_file_without_a_name() {
        let part = Part::parse(b"raw bytes".to_vec()).unwrap();
        assert_eq!(part.kind, Kind::File);
        assert_eq!(part.content, b"raw bytes");
        assert_eq!(part.safe_name("submission-1"), "submission-1");
    }

    #[test]
    fn cut_or_hostile_headers_are_refused() {
        let good = Part::file("a.pdf", "application/pdf", b"%PDF".to_vec()).encode();
        for len in MAGIC.len()..MAGIC.len() + 5 {
            assert!(Part::parse(good[..len].to_vec()).is_err(), "cut at {len}");
        }
        let mut kind = good.clone();
        kind[MAGIC.len()] = 9;
        assert_eq!(Part::parse(kind), Err(PartError::Malformed("unknown kind")));
        let mut control = MAGIC.to_vec();
        control.extend_from_slice(&[1, 0, 3, b'a', 0x1b, b'b', 0, 0]);
        assert!(Part::parse(control).is_err());
        let mut statement = Part::statement("x").encode();
        statement.push(0xff);
        assert_eq!(Part::parse(statement), Err(PartError::StatementNotText));
    }

    #[test]
    fn a_hostile_name_cannot_leave_the_directory() {
        for (name, safe) in [
            ("../../.bashrc", "bashrc"),
            ("C:\\Windows\\evil.exe", "evil.exe"),
            ("..", "fallback"),
            ("photo.jpg", "photo.jpg"),
            ("a/b/", "fallback"),
        ] {
            let part = Part::file(name, "", vec![]);
            assert_eq!(part.safe_name("fallback"), safe, "{name}");
        }
    }

    #[test]
    fn chunks_cover_the_part_and_name_their_bytes() {
        let sealed = vec![3u8; CHUNK_LEN * 2 + 5];
        let chunks: Vec<_> = chunks(&sealed).collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2].1.len(), 5);
        assert_eq!(chunks[0].0, *blake3::hash(&sealed[..CHUNK_LEN]).as_bytes());
    }

    #[test]
    fn a_link_pins_the_key_it_was_made_with() {
        let key = IntakeSecretKey::generate().public();
        let other = IntakeSecretKey::generate().public();
        let id = BoxId::random();
        let fragment = link_fragment(id, &key);
        let with_hash = format!("#{fragment}");
        let (parsed, fingerprint) = parse_fragment(&with_hash).unwrap();
        assert_eq!(parsed, id);
        assert!(key_matches(&key, fingerprint));
        assert!(!key_matches(&other, fingerprint));
        assert!(parse_fragment("zz.abc").is_none());
        assert!(parse_fragment(&fragment.replace('.', "")).is_none());
    }
}
