//! mosquitto-compatible password files (`password_file` in mosquitto.conf), so a user can point
//! midge at the file `mosquitto_passwd` already made for them.
//!
//! # Format
//! One entry a line, `USER:HASH`, where HASH is one of
//! - `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 of the password with SALT, ITERATIONS rounds,
//!   64 bytes out (mosquitto 2.0 and later; `mosquitto_passwd` 2.0 writes 101 iterations and a
//!   12-byte salt, 2.1 writes 1000 iterations and a 64-byte salt);
//! - `$6$SALT$HASH`: SHA-512 over the password bytes followed by the salt bytes (mosquitto 1.x).
//!
//! SALT and HASH are standard base64 (`+/`, padded; a missing pad is accepted, as OpenSSL's
//! decoder that mosquitto uses accepts it).
//!
//! # Parsing rules, as in mosquitto 2.0 (`pwfile__parse` + `unpwd__decode_passwords`)
//! Read from mosquitto 2.0.x's `src/security_default.c`, 2.1's `password_file` plugin and
//! `libcommon`'s `mosquitto_pw_decode`, and checked against Debian's `mosquitto_passwd` 2.0.11:
//! - A line is split at `\n` only and may be of any length (mosquitto grows its line buffer).
//! - A line whose first byte is `#` is a comment; `  #x` is not (it usually has no `:` anyway).
//! - A line without `:` is ignored silently: blank lines, stray text.
//! - USER and HASH are the first two non-empty `:`-separated fields (mosquitto's `strtok`), so
//!   `a::h` is user `a` with hash `h`, and fields after the second are ignored. Each is trimmed of
//!   C `isspace` characters at both ends, which is how `\r` of a CRLF file goes.
//! - Inside HASH the `$`-separated fields are read the same way (empty fields skipped, fields after
//!   the hash ignored). Only types `6` and `7` are known; anything else (`$argon2id$` of 2.1
//!   develop, a plain-text password) is an unusable entry.
//! - Salt must decode to 12 or 64 bytes (2.0 accepts 12, 2.1 also 64), the hash to 64 bytes, and
//!   the iteration count must be at least 1.
//! - An unusable line does **not** refuse the file: mosquitto 2.0 and 2.1 log it ("removing
//!   entry", "ignoring") and load the rest, so that user cannot log in (fail closed) while the
//!   others can. midge does the same and keeps what it skipped in [`PasswordFile::skipped`], one
//!   [`PasswdError`] with its line number each, for the broker to log. (mosquitto's develop branch
//!   has started refusing the whole file instead; a caller that wants that checks
//!   `skipped().is_empty()`.) Skipped: an empty user name, a user or hash longer than 65535 bytes,
//!   a user with no hash (`bob:`; a bare `bob` has no `:` and is ignored silently), a second line
//!   for a user already seen (the first wins, as in 2.1; 2.0's hash table made it arbitrary),
//!   unknown types, bad base64, wrong lengths, zero or non-numeric iterations.
//!
//! Where midge is stricter, on purpose: the iteration count must be plain digits (mosquitto's
//! `atoi` reads `101abc` as 101) and at most [`MAX_ITERATIONS`]; a file that is not UTF-8 is a
//! load error (an MQTT user name is UTF-8, so such a line could never match anyway); a password
//! is compared as the bytes the client sent, where mosquitto stops at the first NUL byte.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use std::num::NonZeroU32;

use ring::{digest, pbkdf2};

/// Iterations [`new_password_line`] writes: mosquitto 2.0's default, so Debian's mosquitto
/// 2.0.11 reads what midge writes and a login costs about 70 us.
pub const DEFAULT_ITERATIONS: u32 = 101;

/// Largest PBKDF2 iteration count accepted from a file. A verify costs about 0.65 us an iteration
/// (release build on this project's 2-core machine) and blocks the event loop for that long, so
/// this bounds one CONNECT to about 0.7 s; it is five times OWASP's 2023 advice for
/// PBKDF2-HMAC-SHA512 (210,000, about 0.14 s), so a file made with a deliberately high
/// `mosquitto_passwd -I` still loads. Entries above it are skipped. Every CONNECT with a user name
/// pays the file's usual iteration count (unknown users too, by design), so a broker whose file
/// uses high counts wants CONNECT rate limits.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// Salt length [`new_password_line`] writes (mosquitto 2.0 reads only 12-byte salts).
pub const NEW_SALT_LEN: usize = 12;

/// SHA-512 output, the only hash length either scheme has.
const HASH_LEN: usize = 64;

/// mosquitto's limit for the user name and hash fields of a line (and MQTT's for a user name).
const MAX_FIELD_LEN: usize = 65535;

/// Decoder for salts and hashes: standard alphabet, padding optional, non-zero trailing bits
/// allowed, which is what OpenSSL's base64 BIO (mosquitto's decoder) accepts.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Why a file could not be loaded, why one of its lines was skipped, or why an entry could not be
/// written. Line numbers count from 1. Messages name the user but never show a hash.
#[derive(Debug)]
#[non_exhaustive]
pub enum PasswdError {
    /// Reading the file (or /dev/urandom, when writing) failed.
    Io { path: PathBuf, error: std::io::Error },
    /// The path is a directory, device or FIFO, not a regular file.
    NotAFile { path: PathBuf },
    /// The file is not UTF-8; `line` holds the first invalid byte.
    NotUtf8 { line: usize },
    /// A user name or hash longer than 65535 bytes.
    FieldTooLong { line: usize },
    /// `:HASH` or ` :HASH` with nothing before the colon.
    EmptyUsername { line: usize },
    /// `USER:` with no hash (or only blanks) after the colon.
    MissingPassword { line: usize, username: String },
    /// A second line for a user; the entry of `first_line` is kept.
    DuplicateUser { line: usize, username: String, first_line: usize },
    /// A hash that is neither `$6$` nor `$7$` (plain text, `$argon2id$`, ...).
    UnknownHashType { line: usize, username: String },
    /// A `$6$`/`$7$` hash with a missing field, bad base64 or a wrong length.
    InvalidHash { line: usize, username: String, reason: &'static str },
    /// A `$7$` iteration count above [`MAX_ITERATIONS`].
    IterationsTooHigh { line: usize, username: String },
    /// A user name that cannot be written to a password file.
    InvalidUsername { reason: &'static str },
    /// A password that cannot be written to a password file.
    InvalidPassword { reason: &'static str },
}

impl PasswdError {
    /// The line of the file this error is about, if it is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            PasswdError::NotUtf8 { line }
            | PasswdError::FieldTooLong { line }
            | PasswdError::EmptyUsername { line }
            | PasswdError::MissingPassword { line, .. }
            | PasswdError::DuplicateUser { line, .. }
            | PasswdError::UnknownHashType { line, .. }
            | PasswdError::InvalidHash { line, .. }
            | PasswdError::IterationsTooHigh { line, .. } => Some(*line),
            PasswdError::Io { .. }
            | PasswdError::NotAFile { .. }
            | PasswdError::InvalidUsername { .. }
            | PasswdError::InvalidPassword { .. } => None,
        }
    }
}

/// A user name as shown in a message: quoted, escaped, at most 64 characters.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        let head: String = chars.by_ref().take(64).collect();
        let more = if chars.next().is_some() { "..." } else { "" };
        write!(f, "{head:?}{more}")
    }
}

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswdError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            PasswdError::NotAFile { path } => write!(f, "{}: not a regular file", path.display()),
            PasswdError::NotUtf8 { line } => write!(f, "line {line}: not UTF-8"),
            PasswdError::FieldTooLong { line } => {
                write!(f, "line {line}: user name or hash longer than 65535 bytes, line skipped")
            }
            PasswdError::EmptyUsername { line } => write!(f, "line {line}: empty user name, line skipped"),
            PasswdError::MissingPassword { line, username } => {
                write!(f, "line {line}: user {} has no password hash, user skipped", Shown(username))
            }
            PasswdError::DuplicateUser { line, username, first_line } => {
                write!(f, "line {line}: user {} already defined on line {first_line}, line skipped", Shown(username))
            }
            PasswdError::UnknownHashType { line, username } => write!(
                f,
                "line {line}: user {}: unknown password hash type (midge reads $6$ and $7$), user skipped",
                Shown(username)
            ),
            PasswdError::InvalidHash { line, username, reason } => {
                write!(f, "line {line}: user {}: {reason}, user skipped", Shown(username))
            }
            PasswdError::IterationsTooHigh { line, username } => write!(
                f,
                "line {line}: user {}: more than {MAX_ITERATIONS} PBKDF2 iterations, user skipped",
                Shown(username)
            ),
            PasswdError::InvalidUsername { reason } => write!(f, "invalid user name: {reason}"),
            PasswdError::InvalidPassword { reason } => write!(f, "invalid password: {reason}"),
        }
    }
}

impl std::error::Error for PasswdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PasswdError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// How an entry's hash is derived from a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scheme {
    /// `$6$`: SHA-512(password || salt).
    Sha512,
    /// `$7$`: PBKDF2-HMAC-SHA512(password, salt, iterations), 64 bytes.
    Pbkdf2Sha512 { iterations: u32 },
}

/// One usable line of the file.
struct Entry {
    scheme: Scheme,
    salt: Box<[u8]>,
    hash: [u8; HASH_LEN],
    /// Where it came from, for the duplicate message.
    line: usize,
}

impl Entry {
    /// The hash `password` gives under this entry's scheme and salt. Cost: one SHA-512 for `$6$`;
    /// for `$7$` two SHA-512 compressions an iteration (about 0.65 us an iteration here).
    fn derive(&self, password: &[u8]) -> [u8; HASH_LEN] {
        match self.scheme {
            Scheme::Sha512 => {
                let mut hasher = digest::Context::new(&digest::SHA512);
                hasher.update(password);
                hasher.update(&self.salt);
                let mut out = [0u8; HASH_LEN];
                let sum = hasher.finish();
                debug_assert_eq!(sum.as_ref().len(), HASH_LEN, "SHA-512 output size");
                for (o, b) in out.iter_mut().zip(sum.as_ref()) {
                    *o = *b;
                }
                out
            }
            Scheme::Pbkdf2Sha512 { iterations } => pbkdf2_sha512(password, &self.salt, iterations),
        }
    }

    /// Constant-time in the compared bytes: how many leading bytes of a guess were right is not
    /// visible in the time taken (every byte is folded in, no early exit).
    fn matches(&self, password: &[u8]) -> bool {
        let derived = self.derive(password);
        let diff = derived.iter().zip(&self.hash).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// A loaded password file: immutable, so a reload is building a new one and swapping an
/// `Rc<PasswordFile>`. Lookups are a hash map probe; [`PasswordFile::verify`] costs one hash
/// derivation whether or not the user exists.
pub struct PasswordFile {
    users: HashMap<String, Entry>,
    /// Derived against when the user is unknown, with the scheme most entries use, so a missing
    /// user costs the same as a wrong password and user names cannot be probed by timing.
    dummy: Entry,
    skipped: Vec<PasswdError>,
}

impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile").field("users", &self.users.len()).field("skipped", &self.skipped).finish()
    }
}

impl PasswordFile {
    /// Parses the text of a password file by mosquitto's rules (see the module doc). Never fails:
    /// lines mosquitto would skip are skipped and listed in [`PasswordFile::skipped`]. Cost: one
    /// pass over the text; no hashing.
    pub fn parse(text: &str) -> PasswordFile {
        let mut users: HashMap<String, Entry> = HashMap::new();
        let mut skipped = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index.saturating_add(1);
            match parse_line(raw, line) {
                Ok(None) => {}
                Ok(Some((username, entry))) => match users.get(username) {
                    Some(first) => skipped.push(PasswdError::DuplicateUser {
                        line,
                        username: username.to_owned(),
                        first_line: first.line,
                    }),
                    None => {
                        users.insert(username.to_owned(), entry);
                    }
                },
                Err(error) => skipped.push(error),
            }
        }
        let dummy = dummy_entry(&users);
        PasswordFile { users, dummy, skipped }
    }

    /// Reads and parses the file at `path`. Fails if it cannot be read, is not a regular file or
    /// is not UTF-8; bad lines inside are skipped as in [`PasswordFile::parse`].
    pub fn load(path: &Path) -> Result<PasswordFile, PasswdError> {
        let io_error = |error| PasswdError::Io { path: path.to_path_buf(), error };
        let mut file = File::open(path).map_err(io_error)?;
        // Checked on the opened file, so a FIFO or /dev/zero is refused instead of read forever.
        if !file.metadata().map_err(io_error)?.is_file() {
            return Err(PasswdError::NotAFile { path: path.to_path_buf() });
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_error)?;
        let text =
            std::str::from_utf8(&bytes).map_err(|e| PasswdError::NotUtf8 { line: line_at(&bytes, e.valid_up_to()) })?;
        Ok(PasswordFile::parse(text))
    }

    /// True if `password` is `username`'s. Cost: one derivation under the user's scheme (PBKDF2
    /// with its iteration count, at most [`MAX_ITERATIONS`]); an unknown user costs the same,
    /// derived against a dummy entry. A CONNECT with a user name but no password field is
    /// refused by mosquitto; to keep that equally slow, call this with `b""` and refuse anyway.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        let (entry, known) = match self.users.get(username) {
            Some(entry) => (entry, true),
            None => (&self.dummy, false),
        };
        // black_box: the derivation must happen even when `known` already decides the answer.
        let matches = std::hint::black_box(entry.matches(password));
        known & matches
    }

    /// True if the file has a usable entry for `username`.
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// Usable entries.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// No usable entry (an empty file, or every line skipped).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Lines that were not loaded, in file order, for the caller to log (mosquitto logs each).
    pub fn skipped(&self) -> &[PasswdError] {
        &self.skipped
    }
}

/// Line number (from 1) of byte `offset` of `bytes`.
fn line_at(bytes: &[u8], offset: usize) -> usize {
    let before = bytes.get(..offset).unwrap_or(bytes);
    before.iter().filter(|&&b| b == b'\n').count().saturating_add(1)
}

/// C's `isspace` in the "C" locale, which mosquitto trims fields with.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// The user and hash fields of a line, trimmed, by mosquitto's tokenizing; `None` for a line
/// mosquitto ignores silently (comment, no `:`, nothing but colons). The hash is `None` for
/// `USER:`.
fn split_line(raw: &str) -> Option<(&str, Option<&str>)> {
    if raw.starts_with('#') || !raw.contains(':') {
        return None;
    }
    let mut fields = raw.split(':').filter(|field| !field.is_empty());
    let username = fields.next()?.trim_matches(is_c_space);
    let hash = fields.next().map(|field| field.trim_matches(is_c_space));
    Some((username, hash))
}

/// The user a line defines for mosquitto's loader, if any: what `midge passwd` matches on when
/// it replaces or deletes a user's line.
pub(crate) fn line_username(raw: &str) -> Option<&str> {
    split_line(raw).map(|(username, _)| username).filter(|username| !username.is_empty())
}

/// One line: `Ok(None)` if silently ignored, `Err` if mosquitto would skip it with a message.
fn parse_line(raw: &str, line: usize) -> Result<Option<(&str, Entry)>, PasswdError> {
    let Some((username, hash)) = split_line(raw) else {
        return Ok(None);
    };
    if username.len() > MAX_FIELD_LEN {
        return Err(PasswdError::FieldTooLong { line });
    }
    if username.is_empty() {
        return Err(PasswdError::EmptyUsername { line });
    }
    let Some(hash) = hash.filter(|hash| !hash.is_empty()) else {
        return Err(PasswdError::MissingPassword { line, username: username.to_owned() });
    };
    if hash.len() > MAX_FIELD_LEN {
        return Err(PasswdError::FieldTooLong { line });
    }
    let entry = decode_hash(hash, line).map_err(|problem| match problem {
        HashProblem::UnknownType => PasswdError::UnknownHashType { line, username: username.to_owned() },
        HashProblem::TooManyIterations => PasswdError::IterationsTooHigh { line, username: username.to_owned() },
        HashProblem::Invalid(reason) => PasswdError::InvalidHash { line, username: username.to_owned(), reason },
    })?;
    Ok(Some((username, entry)))
}

/// Why a hash field is unusable (turned into a [`PasswdError`] with the line and user).
enum HashProblem {
    UnknownType,
    TooManyIterations,
    Invalid(&'static str),
}

/// Decodes `$6$SALT$HASH` or `$7$ITERATIONS$SALT$HASH`. Cost: two small base64 decodes.
fn decode_hash(text: &str, line: usize) -> Result<Entry, HashProblem> {
    let mut fields = text.split('$').filter(|field| !field.is_empty());
    let scheme = match fields.next() {
        Some("6") => Scheme::Sha512,
        Some("7") => {
            let digits = fields.next().ok_or(HashProblem::Invalid("missing iteration count"))?;
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HashProblem::Invalid("iteration count is not a number"));
            }
            // Only digits, so a parse error can only be overflow: far above the cap.
            let iterations: u64 = digits.parse().map_err(|_| HashProblem::TooManyIterations)?;
            if iterations == 0 {
                return Err(HashProblem::Invalid("iteration count must be at least 1"));
            }
            if iterations > u64::from(MAX_ITERATIONS) {
                return Err(HashProblem::TooManyIterations);
            }
            let iterations = u32::try_from(iterations).map_err(|_| HashProblem::TooManyIterations)?;
            Scheme::Pbkdf2Sha512 { iterations }
        }
        _ => return Err(HashProblem::UnknownType),
    };
    let salt_text = fields.next().ok_or(HashProblem::Invalid("missing salt"))?;
    let salt = LENIENT_BASE64.decode(salt_text).map_err(|_| HashProblem::Invalid("salt is not base64"))?;
    if salt.len() != 12 && salt.len() != 64 {
        return Err(HashProblem::Invalid("salt must be 12 or 64 bytes"));
    }
    let hash_text = fields.next().ok_or(HashProblem::Invalid("missing hash"))?;
    let hash_bytes = LENIENT_BASE64.decode(hash_text).map_err(|_| HashProblem::Invalid("hash is not base64"))?;
    let hash: [u8; HASH_LEN] =
        hash_bytes.as_slice().try_into().map_err(|_| HashProblem::Invalid("hash must be 64 bytes"))?;
    Ok(Entry { scheme, salt: salt.into_boxed_slice(), hash, line })
}

/// The entry unknown users are derived against: the scheme (and salt length) most entries use,
/// so that for the usual file, where every line was made the same way, an unknown user costs
/// exactly what a known one does. Ties go to the cheaper scheme; an empty file gets mosquitto
/// 2.0's default. Its hash is never compared as a success (see `verify`).
fn dummy_entry(users: &HashMap<String, Entry>) -> Entry {
    let mut counts: BTreeMap<(Scheme, usize), usize> = BTreeMap::new();
    for entry in users.values() {
        *counts.entry((entry.scheme, entry.salt.len())).or_insert(0) += 1;
    }
    let mut most = ((Scheme::Pbkdf2Sha512 { iterations: DEFAULT_ITERATIONS }, NEW_SALT_LEN), 0usize);
    for (key, count) in counts {
        if count > most.1 {
            most = (key, count);
        }
    }
    let ((scheme, salt_len), _) = most;
    Entry { scheme, salt: vec![0u8; salt_len].into_boxed_slice(), hash: [0u8; HASH_LEN], line: 0 }
}

/// PBKDF2-HMAC-SHA512 with 64 bytes out, by ring: it is in the binary already for TLS, which
/// keeps the stripped broker under 1.5 MB (RustCrypto's pbkdf2 + sha2 added about 60 KB).
/// `iterations` 0 is taken as 1. Cost: `iterations` HMAC-SHA512 rounds.
fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; HASH_LEN] {
    let rounds = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    let mut out = [0u8; HASH_LEN];
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA512, rounds, salt, password, &mut out);
    out
}

/// The `$7$ITERATIONS$SALT$HASH` text for `password`: PBKDF2-HMAC-SHA512, 64 bytes, salt and
/// hash in padded standard base64, exactly as `mosquitto_passwd` writes it. `iterations` below 1
/// is taken as 1 (mosquitto refuses 0). mosquitto reads salts of 12 bytes (2.0) or 12 and 64
/// (2.1). Cost: `iterations` PBKDF2 rounds.
pub fn hash_password_pbkdf2(password: &[u8], iterations: u32, salt: &[u8]) -> String {
    let iterations = iterations.max(1);
    let hash = pbkdf2_sha512(password, salt, iterations);
    format!("$7${iterations}${}${}", STANDARD.encode(salt), STANDARD.encode(hash))
}

/// A full `USER:$7$101$SALT$HASH` line (without the newline) with a fresh 12-byte salt from
/// /dev/urandom and [`DEFAULT_ITERATIONS`], mosquitto 2.0's defaults, so Debian's mosquitto
/// 2.0.11 reads it. Refuses a user name the loaders would read differently (see
/// [`check_username`]) and a password longer than MQTT's 65535 bytes.
pub fn new_password_line(username: &str, password: &[u8]) -> Result<String, PasswdError> {
    check_username(username)?;
    if password.len() > MAX_FIELD_LEN {
        return Err(PasswdError::InvalidPassword { reason: "longer than 65535 bytes (MQTT's limit)" });
    }
    let salt = random_salt()?;
    Ok(format!("{username}:{}", hash_password_pbkdf2(password, DEFAULT_ITERATIONS, &salt)))
}

/// A user name that reads back as itself: not empty, at most 65535 bytes, no `:` or control
/// characters (mosquitto_passwd's rules), and, beyond those, no leading `#` (the line would be a
/// comment) and no blank at either end (the loader would trim it).
pub fn check_username(username: &str) -> Result<(), PasswdError> {
    let reason = if username.is_empty() {
        "empty"
    } else if username.len() > MAX_FIELD_LEN {
        "longer than 65535 bytes"
    } else if username.contains(':') {
        "contains ':'"
    } else if username.chars().any(|c| c.is_ascii_control()) {
        "contains a control character"
    } else if username.starts_with('#') {
        "starts with '#', which makes the line a comment"
    } else if username.starts_with(is_c_space) || username.ends_with(is_c_space) {
        "starts or ends with a blank, which the loader trims"
    } else {
        return Ok(());
    };
    Err(PasswdError::InvalidUsername { reason })
}

/// [`NEW_SALT_LEN`] bytes from the kernel's CSPRNG. Read through std from /dev/urandom rather than
/// with the `getrandom` crate: midge runs on Linux only and this is called once per written entry.
fn random_salt() -> Result<[u8; NEW_SALT_LEN], PasswdError> {
    const URANDOM: &str = "/dev/urandom";
    let mut salt = [0u8; NEW_SALT_LEN];
    File::open(URANDOM)
        .and_then(|mut file| file.read_exact(&mut salt))
        .map_err(|error| PasswdError::Io { path: PathBuf::from(URANDOM), error })?;
    Ok(salt)
}

#[cfg(test)]
#[path = "passwd_tests.rs"]
mod tests;
