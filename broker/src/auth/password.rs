//! The password file: Mosquitto's format, one `username:hash` per line.
//!
//! Three hash kinds are understood, so a file made by `mosquitto_passwd`
//! works unchanged:
//!
//! | prefix      | scheme                                                     | written by               |
//! |-------------|------------------------------------------------------------|--------------------------|
//! | `$6$`       | `$6$base64(salt)$base64(sha512(password ‖ salt))`          | `mosquitto_passwd` ≤ 1.6 |
//! | `$7$`       | `$7$iterations$base64(salt)$base64(pbkdf2_sha512(..))`     | `mosquitto_passwd` ≥ 2.0 |
//! | `$argon2id$`| the PHC string of the `argon2` crate                       | `midge passwd`           |
//!
//! Mosquitto's `$6$` is *not* `crypt(3)`'s SHA-512 scheme: it is one round
//! of SHA-512 over the password followed by a 12-byte salt, both parts in
//! standard base64. `$7$` is PBKDF2-HMAC-SHA512 with a 12-byte salt and a
//! 64-byte output.
//!
//! Lines starting with `#` and lines without a `:` are skipped, as Mosquitto
//! does; anything else that does not parse stops the load with the file
//! name and line number. Hashes are compared in constant time; a password
//! never reaches an error message or a log.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// Salt length of Mosquitto's `$6$` and `$7$` hashes, in bytes.
const MOSQUITTO_SALT_LEN: usize = 12;
/// Output length of Mosquitto's hashes: one SHA-512 digest.
const MOSQUITTO_HASH_LEN: usize = 64;
/// Upper bound on `$7$` iterations, so a corrupt file cannot stall logins.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// Why one hash string could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashFormatError {
    /// The string starts with none of `$6$`, `$7$`, `$argon2id$`.
    #[error("unknown hash type (expected $6$, $7$ or $argon2id$)")]
    UnknownScheme,
    /// A `$`-separated field is missing or there are too many.
    #[error("malformed {0} hash: wrong number of fields")]
    Fields(&'static str),
    /// The salt is not base64 of 12 bytes.
    #[error("malformed {0} hash: salt is not base64 of 12 bytes")]
    Salt(&'static str),
    /// The digest is not base64 of 64 bytes.
    #[error("malformed {0} hash: digest is not base64 of 64 bytes")]
    Digest(&'static str),
    /// The `$7$` iteration count is not a number in 1..=10,000,000.
    #[error("malformed $7$ hash: bad iteration count")]
    Iterations,
    /// The argon2 PHC string does not parse or is not argon2id.
    #[error("malformed argon2id hash: {0}")]
    Argon2(String),
}

/// Why a password file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    /// The file could not be read.
    #[error("cannot read password file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{}:{line}: {reason}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// One stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// Mosquitto 1.x `$6$`: SHA-512 of password then salt.
    Sha512 {
        /// The 12-byte salt.
        salt: Vec<u8>,
        /// The 64-byte digest.
        digest: Vec<u8>,
    },
    /// Mosquitto 2.x `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        /// PBKDF2 rounds.
        iterations: u32,
        /// The 12-byte salt.
        salt: Vec<u8>,
        /// The 64-byte derived key.
        digest: Vec<u8>,
    },
    /// Argon2id in PHC string format, as `midge passwd` writes.
    Argon2id(String),
}

impl fmt::Debug for PasswordHash {
    // Hashes are secrets too: show only the scheme.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PasswordHash::Sha512 { .. } => "PasswordHash($6$ <redacted>)",
            PasswordHash::Pbkdf2Sha512 { .. } => "PasswordHash($7$ <redacted>)",
            PasswordHash::Argon2id(_) => "PasswordHash($argon2id$ <redacted>)",
        })
    }
}

impl PasswordHash {
    /// Parses the hash part of a password file line.
    pub fn parse(s: &str) -> Result<PasswordHash, HashFormatError> {
        if s.starts_with("$argon2id$") {
            let parsed =
                argon2::PasswordHash::new(s).map_err(|e| HashFormatError::Argon2(e.to_string()))?;
            // Reject parameters the argon2 crate would refuse at login time.
            argon2::Params::try_from(&parsed)
                .map_err(|e| HashFormatError::Argon2(e.to_string()))?;
            if parsed.hash.is_none() {
                return Err(HashFormatError::Argon2("no hash output".into()));
            }
            return Ok(PasswordHash::Argon2id(s.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("$6$") {
            let (salt, digest) = split2(rest).ok_or(HashFormatError::Fields("$6$"))?;
            return Ok(PasswordHash::Sha512 {
                salt: decode_exact(salt, MOSQUITTO_SALT_LEN).ok_or(HashFormatError::Salt("$6$"))?,
                digest: decode_exact(digest, MOSQUITTO_HASH_LEN)
                    .ok_or(HashFormatError::Digest("$6$"))?,
            });
        }
        if let Some(rest) = s.strip_prefix("$7$") {
            let (iterations, rest) = rest.split_once('$').ok_or(HashFormatError::Fields("$7$"))?;
            let (salt, digest) = split2(rest).ok_or(HashFormatError::Fields("$7$"))?;
            let iterations: u32 = iterations
                .parse()
                .map_err(|_| HashFormatError::Iterations)?;
            if !(1..=MAX_PBKDF2_ITERATIONS).contains(&iterations) {
                return Err(HashFormatError::Iterations);
            }
            return Ok(PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt: decode_exact(salt, MOSQUITTO_SALT_LEN).ok_or(HashFormatError::Salt("$7$"))?,
                digest: decode_exact(digest, MOSQUITTO_HASH_LEN)
                    .ok_or(HashFormatError::Digest("$7$"))?,
            });
        }
        Err(HashFormatError::UnknownScheme)
    }

    /// Whether `password` matches this hash. Digests are compared in
    /// constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Sha512 { salt, digest } => {
                let mut h = Sha512::new();
                h.update(password);
                h.update(salt);
                bool::from(h.finalize().as_slice().ct_eq(digest))
            }
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                digest,
            } => {
                let mut out = [0u8; MOSQUITTO_HASH_LEN];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                bool::from(out.as_slice().ct_eq(digest))
            }
            PasswordHash::Argon2id(phc) => match argon2::PasswordHash::new(phc) {
                // The argon2 crate compares the outputs in constant time.
                Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
                Err(_) => false,
            },
        }
    }

    /// Hashes `password` with argon2id (the crate's default parameters,
    /// 19 MiB, 2 passes) and a random 16-byte salt; returns the PHC string
    /// `midge passwd` writes.
    pub fn new_argon2id(password: &[u8]) -> Result<String, HashFormatError> {
        let salt_bytes: [u8; 16] = rand::random();
        let salt = SaltString::encode_b64(&salt_bytes)
            .map_err(|e| HashFormatError::Argon2(e.to_string()))?;
        Argon2::default()
            .hash_password(password, &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashFormatError::Argon2(e.to_string()))
    }
}

/// Splits `a$b` into exactly two non-empty fields.
fn split2(s: &str) -> Option<(&str, &str)> {
    let (a, b) = s.split_once('$')?;
    (!a.is_empty() && !b.is_empty() && !b.contains('$')).then_some((a, b))
}

/// Standard base64 that must decode to exactly `len` bytes.
fn decode_exact(s: &str, len: usize) -> Option<Vec<u8>> {
    STANDARD.decode(s).ok().filter(|v| v.len() == len)
}

/// The user name on a password file line, or `None` for a line Mosquitto
/// skips (a comment, or no `:`). `midge passwd` uses it to find the line to
/// replace while keeping every other line as it was.
pub fn line_username(line: &str) -> Option<&str> {
    if line.starts_with('#') {
        return None;
    }
    line.split_once(':').map(|(user, _)| user.trim())
}

/// A loaded password file: user name to hash.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    entries: HashMap<String, PasswordHash>,
    /// Checked for unknown users, so they cost what a known one does: the
    /// file's first entry (files are usually all of one scheme).
    decoy: Option<PasswordHash>,
}

impl PasswordFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PasswordFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        PasswordFile::parse(&text, path)
    }

    /// Parses file contents; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let mut entries = HashMap::new();
        let mut decoy = None;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches(['\r', '\n']);
            let err = |reason: String| PasswordFileError::Line {
                path: path.to_owned(),
                line: index + 1,
                reason,
            };
            let Some(user) = line_username(line) else {
                continue;
            };
            let hash = line
                .split_once(':')
                .map(|(_, h)| h.trim())
                .unwrap_or_default();
            if user.is_empty() {
                return Err(err("empty user name".into()));
            }
            if hash.is_empty() {
                return Err(err(format!("no password hash for user {user:?}")));
            }
            let hash = PasswordHash::parse(hash).map_err(|e| err(format!("user {user:?}: {e}")))?;
            decoy.get_or_insert_with(|| hash.clone());
            if entries.insert(user.to_owned(), hash).is_some() {
                return Err(err(format!("user {user:?} appears more than once")));
            }
        }
        Ok(PasswordFile { entries, decoy })
    }

    /// Whether `username` and `password` match an entry. An unknown user
    /// costs about as much as a known one, so timing does not tell which
    /// user names exist.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        match self.entries.get(username) {
            Some(hash) => hash.verify(password),
            None => {
                self.decoy
                    .as_ref()
                    .unwrap_or_else(|| dummy_hash())
                    .verify(password);
                false
            }
        }
    }

    /// Whether the file has an entry for `username`.
    pub fn contains(&self, username: &str) -> bool {
        self.entries.contains_key(username)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// An argon2id hash of nothing in particular, checked for unknown users.
fn dummy_hash() -> &'static PasswordHash {
    static DUMMY: OnceLock<PasswordHash> = OnceLock::new();
    DUMMY.get_or_init(|| {
        PasswordHash::new_argon2id(b"midge-dummy")
            .ok()
            .and_then(|s| PasswordHash::parse(&s).ok())
            // Never reached: hashing a constant cannot fail. A cheap
            // stand-in keeps this free of panics all the same.
            .unwrap_or(PasswordHash::Sha512 {
                salt: vec![0; MOSQUITTO_SALT_LEN],
                digest: vec![0; MOSQUITTO_HASH_LEN],
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by mosquitto_passwd 2.0.11: `-H sha512` for alice, the default
    // (`sha512-pbkdf2`) for bob and carol (empty password).
    const MOSQUITTO_FILE: &str = "\
alice:$6$ppGs6qoFaNYD4IVd$5t4FcqpVnr2ZXY2rQlobClvtzpxk9IFCnn4FjxSlNqxpOhYRD6QL/Vv7o0PXhOt3xpZfh4aaVVyudiZrYW9UkA==
bob:$7$101$mxHQSvcnOeTCJNQs$p/p/OEwXUDWnwWB0+oH9sS14C5e+fJ3Yq4QsH1/5YV5lwQwwnLtttfkEUkRmo8bXRGVyvQ2lyTWNyL+raWXdAw==
carol:$7$101$Usmt6hHk+uAbv9SH$Pfk2uvX6Tf9MX1t6ZgMc0SPAi2VYWrf/O+SOOvdxwrjd18gMEMwgr9AOvBg3QSULfauWVA+lcLwpE7VbaOW9Ew==
";

    fn parse(text: &str) -> Result<PasswordFile, PasswordFileError> {
        PasswordFile::parse(text, Path::new("passwd"))
    }

    #[test]
    fn mosquitto_sha512_and_pbkdf2_hashes_verify() {
        let file = parse(MOSQUITTO_FILE).expect("parses");
        assert_eq!(file.len(), 3);
        assert!(file.verify("alice", b"correct horse"));
        assert!(!file.verify("alice", b"correct horsE"));
        assert!(!file.verify("alice", b""));
        assert!(file.verify("bob", b"s3cret:with:colons"));
        assert!(!file.verify("bob", b"s3cret"));
        assert!(file.verify("carol", b""));
        assert!(!file.verify("carol", b" "));
    }

    #[test]
    fn unknown_user_is_refused() {
        let file = parse(MOSQUITTO_FILE).expect("parses");
        assert!(!file.verify("mallory", b"correct horse"));
        assert!(!file.contains("mallory"));
        assert!(file.contains("alice"));
    }

    #[test]
    fn sha512_scheme_is_digest_of_password_then_salt() {
        let salt = b"0123456789ab".to_vec();
        let mut h = Sha512::new();
        h.update(b"pw");
        h.update(&salt);
        let line = format!(
            "$6${}${}",
            STANDARD.encode(&salt),
            STANDARD.encode(h.finalize())
        );
        let hash = PasswordHash::parse(&line).expect("parses");
        assert!(hash.verify(b"pw"));
        assert!(!hash.verify(b"pw0123456789ab"));
    }

    #[test]
    fn argon2id_round_trip() {
        let phc = PasswordHash::new_argon2id(b"hunter2").expect("hashes");
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        let hash = PasswordHash::parse(&phc).expect("parses");
        assert!(hash.verify(b"hunter2"));
        assert!(!hash.verify(b"hunter3"));
        let other = PasswordHash::new_argon2id(b"hunter2").expect("hashes");
        assert_ne!(phc, other, "salts are random");
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_tolerated() {
        let phc = PasswordHash::new_argon2id(b"pw").expect("hashes");
        let text = format!("# users\r\n\r\n dave : {phc} \r\n#eve:$6$x$y\r\n");
        let file = parse(&text).expect("parses");
        assert_eq!(file.len(), 1);
        assert!(file.verify("dave", b"pw"));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let text = "# ok\nalice:$6$ppGs6qoFaNYD4IVd$5t4Fcq\n";
        let e = parse(text).expect_err("bad digest");
        let msg = e.to_string();
        assert!(msg.starts_with("passwd:2: "), "{msg}");
        assert!(msg.contains("alice"), "{msg}");
    }

    #[test]
    fn malformed_entries_are_refused() {
        for (line, why) in [
            ("alice:", "no hash"),
            (":$6$ppGs6qoFaNYD4IVd$5t4F", "no user"),
            ("alice:plaintext", "unknown scheme"),
            ("alice:$5$abc$def", "unknown scheme"),
            ("alice:$6$ppGs6qoFaNYD4IVd", "missing digest"),
            ("alice:$6$!!!!$5t4F", "bad salt"),
            ("alice:$7$0$mxHQSvcnOeTCJNQs$p/p/", "zero iterations"),
            ("alice:$7$x$mxHQSvcnOeTCJNQs$p/p/", "bad iterations"),
            ("alice:$argon2id$v=19$m=19456", "truncated argon2"),
            (
                "alice:$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
                "not argon2id",
            ),
        ] {
            assert!(parse(line).is_err(), "{why}: {line}");
        }
    }

    #[test]
    fn duplicate_users_are_refused() {
        let text = format!(
            "{MOSQUITTO_FILE}alice:{}\n",
            MOSQUITTO_FILE
                .lines()
                .nth(1)
                .unwrap_or_default()
                .split_once(':')
                .map(|(_, h)| h)
                .unwrap_or_default()
        );
        let e = parse(&text).expect_err("duplicate");
        assert!(e.to_string().contains("passwd:4:"), "{e}");
    }

    #[test]
    fn debug_output_hides_hashes() {
        let file = parse(MOSQUITTO_FILE).expect("parses");
        let shown = format!("{file:?}");
        assert!(!shown.contains("ppGs6q"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn line_username_follows_mosquitto() {
        assert_eq!(line_username("bob:$7$..."), Some("bob"));
        assert_eq!(line_username("#bob:$7$..."), None);
        assert_eq!(line_username(""), None);
        assert_eq!(line_username("nocolon"), None);
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let e = PasswordFile::load(Path::new("/nonexistent/midge-passwd")).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/midge-passwd"), "{e}");
    }
}
