//! mosquitto's ACL file (`acl_file`): parsing and access checks, sans-IO.
//!
//! A user should be able to point midge at the file their mosquitto uses and get the same
//! decisions. The semantics below are mosquitto 2.0.11's (Debian 12), taken from its
//! `security_default.c` and checked against the real broker (`tests/acl_mosquitto.rs` compares
//! this module with it case by case).
//!
//! # Format
//!
//! ```text
//! # comment: only with `#` in the first column
//! topic read $SYS/#            <- before any `user` line: clients without a username
//! user alice                   <- the rest of the line, trimmed, is the username
//! topic readwrite sensors/#    <- access word: read | write | readwrite | deny
//! topic deny sensors/secret
//! topic a topic with spaces    <- no access word: readwrite; spaces need an access word
//! pattern write dev/%u/%c/out  <- for every client: %c client id, %u username
//! ```
//!
//! Words are separated by spaces only (a tab is part of the word, so `topic<TAB>x` is an unknown
//! keyword, as in mosquitto). Trailing whitespace and blank lines are ignored. The topic is the
//! rest of the line after the access word, trimmed. `topic x` alone grants readwrite on `x`, so
//! `topic read` alone grants readwrite on the topic `read` (mosquitto's reading; we warn).
//!
//! # Decisions (mosquitto 2.0.11)
//!
//! - A client's own rules are the section of its username; a client without a username gets the
//!   section before the first `user` line. A username without a section has no own rules. Two
//!   `user` lines with the same name add to one section.
//! - Own rules are checked first, then `pattern` rules. Within each list `deny` rules come first:
//!   a matching `deny` refuses at once; otherwise a matching rule that grants the access allows.
//!   So an own grant beats a pattern `deny`, and an own `deny` beats a pattern grant.
//! - Nothing matched: refused. An ACL file with no rules refuses everything.
//! - Topics starting with `$` only match rules starting with `$` (after substitution), and rules
//!   starting with `$` only match such topics: `#` and `+/x` do not match `$SYS/x`.
//! - `%c`/`%u` are replaced wherever they occur in a `pattern` line's topic, even inside a level
//!   (`a/x%cy`). The man page says they must be a whole level; 2.0.11 does not enforce that, so
//!   neither do we (we warn). A substituted `/` in a client id or username adds levels.
//! - A pattern using `%u` never matches a client without a username.
//! - If the username or client id contains `+` or `#`, no pattern applies to the client (mosquitto
//!   refuses such checks outright once own rules gave no answer, which is the same). `/` is
//!   allowed (mosquitto 1.x refused it too; 2.0 does not).
//! - SUBSCRIBE is not checked: mosquitto 2.0's ACL file code returns success for
//!   `MOSQ_ACL_SUBSCRIBE` ("FIXME - implement ACL subscription strings"), so SUBACK grants the
//!   requested QoS to any filter, and read rights are enforced per message at delivery,
//!   retained messages included. See [`Access::Subscribe`].
//!
//! # Refusals
//!
//! The whole file is refused (typed [`AclError`] with the line number) exactly where mosquitto
//! refuses to start: an unknown first word (including `  # comment` with leading spaces, and
//! tab-separated words), `topic`/`pattern` without a topic, an unknown access word (they are
//! case-sensitive), an invalid topic filter (`#` not alone as the last level, `+` not alone in
//! a level, more than 65535 bytes, more than 200 `/`), `user` without a name. Two refusals are
//! midge's own, for files that are not text: a NUL byte (mosquitto accepts it and, being C,
//! reads the line only up to it) and, in [`Acl::load`], bytes that are not UTF-8 (mosquitto
//! accepts such rules, which can never match an MQTT topic, but `user` lines among them would
//! shift later rules to the wrong user if we skipped them).
//!
//! Not here, because mosquitto does them outside the ACL file code: bridges bypass ACLs, and
//! publishing to `$SYS/...` (other than `$SYS/broker/connection/+/state`) or `$share/...` is
//! refused before the ACL file is consulted.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::rc::Rc;

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Receive a message published to the topic (each delivery, retained messages included).
    Read,
    /// Publish to the topic (a will included).
    Write,
    /// SUBSCRIBE to the filter. Always allowed: mosquitto 2.0's ACL file does not check
    /// subscriptions (its default check returns success for `MOSQ_ACL_SUBSCRIBE`), so a client
    /// may subscribe to `#` and receives only what [`Access::Read`] allows. Kept as a variant so
    /// the SUBSCRIBE path asks the ACL like every other path and stays right if this changes.
    Subscribe,
}

/// What one rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Deny,
    Read,
    Write,
    ReadWrite,
}

impl Grant {
    fn from_word(word: &str) -> Option<Grant> {
        match word {
            "read" => Some(Grant::Read),
            "write" => Some(Grant::Write),
            "readwrite" => Some(Grant::ReadWrite),
            "deny" => Some(Grant::Deny),
            _ => None,
        }
    }

    fn covers(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Grant::Read | Grant::ReadWrite, Access::Read) | (Grant::Write | Grant::ReadWrite, Access::Write)
        )
    }
}

/// A range in one of [`Acl`]'s arenas. 32-bit to keep levels small; [`AclError::TooLarge`]
/// guards the conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One level of a rule's topic filter, split at load time.
#[derive(Debug, Clone, Copy)]
enum Level {
    /// Literal text, a span of `Acl::text`.
    Exact(Span),
    /// `+`
    AnyOne,
    /// `#`, always the last level.
    AnyRest,
    /// A `pattern` level with `%c` or `%u` in it: a span of `Acl::pieces`.
    Substituted(Span),
}

/// Part of a substituted level.
#[derive(Debug, Clone, Copy)]
enum Piece {
    Text(Span),
    ClientId,
    Username,
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    grant: Grant,
    /// A span of `Acl::levels`.
    levels: Span,
    /// Contains `%u`: mosquitto skips such patterns for clients without a username.
    uses_username: bool,
}

/// A loaded ACL file. Immutable: a reload parses a new one and swaps the broker's `Rc<Acl>`;
/// handles made from the old one keep it alive until they are re-resolved ([`ClientAcl::rebind`]).
///
/// Rule topics are split into levels at load time and kept in three flat arenas (text, pieces,
/// levels), so a check follows no per-rule pointers and allocates nothing.
pub struct Acl {
    /// Literal level text of every rule, concatenated.
    text: String,
    pieces: Vec<Piece>,
    levels: Vec<Level>,
    /// Every section's rules, then the patterns; each list has its `deny` rules first.
    rules: Vec<Rule>,
    /// Per section, its span of `rules`.
    sections: Vec<Span>,
    /// Username -> index into `sections`.
    users: HashMap<Box<str>, u32>,
    /// The section for clients without a username (rules before the first `user` line).
    anonymous: Option<u32>,
    /// The `pattern` rules' span of `rules`.
    patterns: Span,
}

/// Why a file was refused.
#[derive(Debug)]
pub enum AclError {
    /// [`Acl::load`] could not read the file.
    Read { path: std::path::PathBuf, error: std::io::Error },
    /// A line that makes mosquitto refuse the file (or midge: see [`LineProblem`]).
    Line { line: usize, problem: LineProblem },
    /// More than 4 GiB of rules: offsets are 32-bit.
    TooLarge,
}

/// What is wrong with a refused line. mosquitto's log message for each is in its doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineProblem {
    /// The first word is not `topic`, `pattern` or `user` ("Invalid line in acl_file"). Also a
    /// comment that does not start in the first column, and words separated by tabs.
    UnknownKeyword(String),
    /// `topic` or `pattern` with nothing after it ("Empty topic in acl_file").
    MissingTopic,
    /// The access word is not `read`, `write`, `readwrite` or `deny` ("Invalid topic access
    /// type").
    UnknownAccess(String),
    /// Not a valid topic filter ("Invalid ACL topic").
    InvalidTopic { topic: String, reason: TopicProblem },
    /// `user` without a name ("Missing username in acl_file").
    MissingUsername,
    /// A NUL byte: midge's own refusal (mosquitto cuts the line at it without a word).
    NulByte,
    /// Bytes that are not UTF-8 ([`Acl::load`] only): midge's own refusal.
    NotUtf8,
}

/// Why a rule's topic is not a valid filter (mosquitto's `mosquitto_sub_topic_check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicProblem {
    /// `#` not alone in the last level, or `+` not alone in its level.
    Wildcard,
    /// More than 65535 bytes.
    TooLong,
    /// More than 200 `/` (mosquitto's `TOPIC_HIERARCHY_LIMIT`).
    TooManyLevels,
}

/// mosquitto's limits for a rule topic.
const MAX_TOPIC_BYTES: usize = 65535;
const MAX_TOPIC_SEPARATORS: usize = 200;

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclError::Read { path, error } => write!(f, "cannot read ACL file {}: {error}", path.display()),
            AclError::Line { line, problem } => write!(f, "line {line}: {problem}"),
            AclError::TooLarge => write!(f, "ACL file too large (over 4 GiB of rules)"),
        }
    }
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineProblem::UnknownKeyword(word) => write!(
                f,
                "invalid line starting with {:?}: expected topic, pattern or user, words separated by spaces \
                 (a comment needs its # in the first column)",
                shortened(word)
            ),
            LineProblem::MissingTopic => write!(f, "empty topic"),
            LineProblem::UnknownAccess(word) => {
                write!(f, "invalid topic access type {:?}: expected read, write, readwrite or deny", shortened(word))
            }
            LineProblem::InvalidTopic { topic, reason } => {
                let why = match reason {
                    TopicProblem::Wildcard => "# must be alone in the last level and + alone in its level",
                    TopicProblem::TooLong => "longer than 65535 bytes",
                    TopicProblem::TooManyLevels => "more than 200 levels separators",
                };
                write!(f, "invalid ACL topic {:?}: {why}", shortened(topic))
            }
            LineProblem::MissingUsername => write!(f, "missing username"),
            LineProblem::NulByte => write!(f, "NUL byte in the line"),
            LineProblem::NotUtf8 => write!(f, "not UTF-8"),
        }
    }
}

impl std::error::Error for AclError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AclError::Read { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// At most 100 characters of `s`, for messages about lines that may be 64 KB long.
fn shortened(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((cut, _)) => format!("{}...", s.get(..cut).unwrap_or("")),
        None => s.to_string(),
    }
}

/// C's `isspace` in the "C" locale: what mosquitto trims.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// mosquitto's `misc__trimblanks`.
fn trim_c_space(s: &str) -> &str {
    s.trim_matches(is_c_space)
}

/// One `strtok_r(.., " ")` step: skips leading spaces, takes the word up to the next space, and
/// returns what follows that space (`None` when nothing does, as `strtok_r(.., "")` would).
fn split_word(s: &str) -> Option<(&str, Option<&str>)> {
    let s = s.trim_start_matches(' ');
    if s.is_empty() {
        return None;
    }
    Some(match s.split_once(' ') {
        Some((word, rest)) => (word, Some(rest).filter(|r| !r.is_empty())),
        None => (s, None),
    })
}

fn check_topic(topic: &str) -> Result<(), TopicProblem> {
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(TopicProblem::TooLong);
    }
    if topic.bytes().filter(|&b| b == b'/').count() > MAX_TOPIC_SEPARATORS {
        return Err(TopicProblem::TooManyLevels);
    }
    let mut levels = topic.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if (level.contains('#') && !(level == "#" && last)) || (level.contains('+') && level != "+") {
            return Err(TopicProblem::Wildcard);
        }
    }
    Ok(())
}

fn to_u32(n: usize) -> Result<u32, AclError> {
    u32::try_from(n).map_err(|_| AclError::TooLarge)
}

/// The parser's state: the arenas being filled, and rules per section until `finish` lays them
/// out deny-first.
#[derive(Default)]
struct Builder {
    text: String,
    pieces: Vec<Piece>,
    levels: Vec<Level>,
    section_rules: Vec<Vec<Rule>>,
    users: HashMap<Box<str>, u32>,
    anonymous: Option<u32>,
    pattern_rules: Vec<Rule>,
    /// The username of the last `user` line (`None`: still the anonymous section).
    current_user: Option<String>,
    /// The section of `current_user`, once a rule needed it.
    current_section: Option<u32>,
}

impl Builder {
    fn parse_line(&mut self, raw: &str, line: usize, warnings: &mut Vec<String>) -> Result<(), AclError> {
        let refuse = |problem| AclError::Line { line, problem };
        if raw.contains('\0') {
            return Err(refuse(LineProblem::NulByte));
        }
        let text = raw.trim_end_matches(is_c_space);
        if text.starts_with('#') {
            return Ok(());
        }
        let Some((keyword, after_keyword)) = split_word(text) else {
            return Ok(()); // blank
        };
        match keyword {
            "topic" | "pattern" => {
                let is_pattern = keyword == "pattern";
                let (first, after_first) =
                    after_keyword.and_then(split_word).ok_or_else(|| refuse(LineProblem::MissingTopic))?;
                let (grant, topic) = match after_first {
                    Some(rest) => {
                        let grant = Grant::from_word(first)
                            .ok_or_else(|| refuse(LineProblem::UnknownAccess(first.to_string())))?;
                        (grant, trim_c_space(rest))
                    }
                    None => {
                        if Grant::from_word(first).is_some() {
                            warnings.push(format!(
                                "line {line}: \"{keyword} {first}\" has no topic after the access word; read as \
                                 readwrite access to the topic \"{first}\", as mosquitto does"
                            ));
                        }
                        (Grant::ReadWrite, first)
                    }
                };
                if topic.is_empty() {
                    return Err(refuse(LineProblem::MissingTopic));
                }
                check_topic(topic)
                    .map_err(|reason| refuse(LineProblem::InvalidTopic { topic: topic.to_string(), reason }))?;
                self.add_rule(is_pattern, grant, topic, line, warnings)
            }
            "user" => {
                let name = after_keyword.map(trim_c_space).filter(|n| !n.is_empty());
                let name = name.ok_or_else(|| refuse(LineProblem::MissingUsername))?;
                self.current_user = Some(name.to_string());
                self.current_section = None;
                Ok(())
            }
            other => Err(refuse(LineProblem::UnknownKeyword(other.to_string()))),
        }
    }

    fn add_rule(
        &mut self,
        is_pattern: bool,
        grant: Grant,
        topic: &str,
        line: usize,
        warnings: &mut Vec<String>,
    ) -> Result<(), AclError> {
        let first_level = to_u32(self.levels.len())?;
        let mut uses_username = false;
        let mut substitutes = false;
        let mut substitutes_inside_level = false;
        for level in topic.split('/') {
            let parsed = match level {
                "+" => Level::AnyOne,
                "#" => Level::AnyRest,
                _ if is_pattern && (level.contains("%c") || level.contains("%u")) => {
                    substitutes = true;
                    let (span, whole_level, username) = self.push_pieces(level)?;
                    substitutes_inside_level |= !whole_level;
                    uses_username |= username;
                    Level::Substituted(span)
                }
                _ => Level::Exact(self.push_text(level)?),
            };
            self.levels.push(parsed);
        }
        let rule = Rule { grant, levels: Span { start: first_level, end: to_u32(self.levels.len())? }, uses_username };
        if is_pattern {
            if !substitutes {
                // mosquitto's own warning for this.
                warnings.push(format!(
                    "line {line}: ACL pattern \"{}\" does not contain %c or %u, so it applies to every client alike",
                    shortened(topic)
                ));
            }
            if substitutes_inside_level {
                warnings.push(format!(
                    "line {line}: ACL pattern \"{}\" has %c or %u inside a level; the mosquitto man page forbids \
                     this, mosquitto 2.0 substitutes it anyway, and so does midge",
                    shortened(topic)
                ));
            }
            self.pattern_rules.push(rule);
        } else {
            let section = self.current_section()?;
            if let Some(rules) = self.section_rules.get_mut(section as usize) {
                rules.push(rule);
            }
        }
        Ok(())
    }

    fn push_text(&mut self, text: &str) -> Result<Span, AclError> {
        let start = to_u32(self.text.len())?;
        self.text.push_str(text);
        Ok(Span { start, end: to_u32(self.text.len())? })
    }

    /// Splits one pattern level into text, `%c` and `%u` pieces, scanning left to right like
    /// mosquitto (`%%c` is a `%` and then `%c`). Returns the pieces' span, whether the level was
    /// a single substitution, and whether it uses `%u`.
    fn push_pieces(&mut self, level: &str) -> Result<(Span, bool, bool), AclError> {
        let first = to_u32(self.pieces.len())?;
        let mut uses_username = false;
        let mut literal_start = 0;
        let mut i = 0;
        let bytes = level.as_bytes();
        while i < bytes.len() {
            let substitution = match (bytes.get(i), bytes.get(i + 1)) {
                (Some(b'%'), Some(b'c')) => Some(Piece::ClientId),
                (Some(b'%'), Some(b'u')) => Some(Piece::Username),
                _ => None,
            };
            match substitution {
                Some(piece) => {
                    // `i` and `literal_start` sit on ASCII bytes, so these are char boundaries.
                    if let Some(literal) = level.get(literal_start..i).filter(|l| !l.is_empty()) {
                        let span = self.push_text(literal)?;
                        self.pieces.push(Piece::Text(span));
                    }
                    uses_username |= matches!(piece, Piece::Username);
                    self.pieces.push(piece);
                    i += 2;
                    literal_start = i;
                }
                None => i += 1,
            }
        }
        if let Some(literal) = level.get(literal_start..).filter(|l| !l.is_empty()) {
            let span = self.push_text(literal)?;
            self.pieces.push(Piece::Text(span));
        }
        let end = to_u32(self.pieces.len())?;
        Ok((Span { start: first, end }, end - first == 1, uses_username))
    }

    /// The section that `topic` lines go to now, created on first use.
    fn current_section(&mut self) -> Result<u32, AclError> {
        if let Some(section) = self.current_section {
            return Ok(section);
        }
        let existing = match &self.current_user {
            Some(name) => self.users.get(name.as_str()).copied(),
            None => self.anonymous,
        };
        let section = match existing {
            Some(section) => section,
            None => {
                let section = to_u32(self.section_rules.len())?;
                self.section_rules.push(Vec::new());
                match &self.current_user {
                    Some(name) => {
                        self.users.insert(name.as_str().into(), section);
                    }
                    None => self.anonymous = Some(section),
                }
                section
            }
        };
        self.current_section = Some(section);
        Ok(section)
    }

    fn finish(self) -> Result<Acl, AclError> {
        let total = self.section_rules.iter().map(Vec::len).sum::<usize>() + self.pattern_rules.len();
        let mut rules = Vec::with_capacity(total);
        let mut sections = Vec::with_capacity(self.section_rules.len());
        for section in &self.section_rules {
            sections.push(append_deny_first(&mut rules, section)?);
        }
        let patterns = append_deny_first(&mut rules, &self.pattern_rules)?;
        Ok(Acl {
            text: self.text,
            pieces: self.pieces,
            levels: self.levels,
            rules,
            sections,
            users: self.users,
            anonymous: self.anonymous,
            patterns,
        })
    }
}

/// Appends `list` with its `deny` rules first (mosquitto puts each `deny` at the head of its
/// list), so the first matching rule decides.
fn append_deny_first(rules: &mut Vec<Rule>, list: &[Rule]) -> Result<Span, AclError> {
    let start = to_u32(rules.len())?;
    rules.extend(list.iter().filter(|r| r.grant == Grant::Deny));
    rules.extend(list.iter().filter(|r| r.grant != Grant::Deny));
    Ok(Span { start, end: to_u32(rules.len())? })
}

/// Who is asking, for `%c` and `%u`.
struct Identity<'a> {
    client_id: &'a [u8],
    username: Option<&'a [u8]>,
}

impl Acl {
    /// Parses an ACL file's text. Returns the ACL and warnings ("line N: ..."), or the first line
    /// mosquitto would refuse the file for.
    pub fn parse(text: &str) -> Result<(Acl, Vec<String>), AclError> {
        let mut builder = Builder::default();
        let mut warnings = Vec::new();
        // mosquitto reads with fgets: lines end at '\n' only ('\r' is trailing whitespace).
        for (index, raw) in text.split('\n').enumerate() {
            builder.parse_line(raw, index + 1, &mut warnings)?;
        }
        Ok((builder.finish()?, warnings))
    }

    /// Reads and parses an ACL file (see [`Acl::parse`]).
    pub fn load(path: impl AsRef<Path>) -> Result<(Acl, Vec<String>), AclError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|error| AclError::Read { path: path.to_path_buf(), error })?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let before = bytes.get(..e.valid_up_to()).unwrap_or(&[]);
            let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
            AclError::Line { line, problem: LineProblem::NotUtf8 }
        })?;
        Acl::parse(text)
    }

    /// Resolves a client's rules once, at CONNECT: one hash lookup for the username's section
    /// and one scan of the username and client id for `+`/`#`; no allocation (the `Rc`s are
    /// shared). `username` is `None` for a client that sent none (`Some("")` is a username).
    pub fn client(self: &Rc<Self>, username: Option<Rc<str>>, client_id: Rc<str>) -> ClientAcl {
        let section = match username.as_deref() {
            Some(name) => self.users.get(name).copied(),
            None => self.anonymous,
        };
        let has_wildcard = |s: &str| s.bytes().any(|b| b == b'+' || b == b'#');
        let patterns_apply = !has_wildcard(&client_id) && !username.as_deref().is_some_and(has_wildcard);
        ClientAcl { acl: Rc::clone(self), section, client_id, username, patterns_apply }
    }

    /// Number of `user` sections with rules (the anonymous section counts as one).
    pub fn section_count(&self) -> usize {
        self.sections.len()
    }

    /// Number of `topic` and `pattern` rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    fn rules_in(&self, span: Span) -> &[Rule] {
        self.rules.get(span.range()).unwrap_or(&[])
    }

    fn text_of(&self, span: Span) -> &[u8] {
        self.text.as_bytes().get(span.range()).unwrap_or(&[])
    }

    fn bytes_of<'a>(&'a self, piece: Piece, who: &Identity<'a>) -> &'a [u8] {
        match piece {
            Piece::Text(span) => self.text_of(span),
            Piece::ClientId => who.client_id,
            Piece::Username => who.username.unwrap_or(&[]),
        }
    }

    /// The first rule of `list` that matches `topic` and either denies or grants `access`
    /// decides: `Some(allowed)`. Rules that cannot grant `access` are skipped without matching.
    fn first_verdict(&self, list: Span, topic: &[u8], access: Access, who: &Identity) -> Option<bool> {
        for rule in self.rules_in(list) {
            if rule.uses_username && who.username.is_none() {
                continue;
            }
            let decides = rule.grant == Grant::Deny || rule.grant.covers(access);
            if decides && self.rule_matches(rule, topic, who) {
                return Some(rule.grant != Grant::Deny);
            }
        }
        None
    }

    /// Whether `rule`'s filter, with `%c`/`%u` substituted, matches `topic` (a valid topic name)
    /// as mosquitto's `mosquitto_topic_matches_sub` does. Walks the topic once with a cursor,
    /// comparing each level in place: O(topic length), no allocation.
    fn rule_matches(&self, rule: &Rule, topic: &[u8], who: &Identity) -> bool {
        let levels = self.levels.get(rule.levels.range()).unwrap_or(&[]);
        let topic_is_dollar = topic.first() == Some(&b'$');
        let filter_is_dollar = levels.first().is_some_and(|level| self.level_first_byte(*level, who) == Some(b'$'));
        if topic_is_dollar != filter_is_dollar {
            return false;
        }
        let mut pos = 0;
        for (index, level) in levels.iter().enumerate() {
            if index > 0 {
                match topic.get(pos) {
                    Some(b'/') => pos += 1,
                    // The topic ended: only a final `#` also matches the parent (`a/#` ~ `a`).
                    None => return matches!(level, Level::AnyRest),
                    Some(_) => return false,
                }
            }
            match *level {
                Level::AnyRest => return true,
                Level::AnyOne => {
                    pos = topic
                        .get(pos..)
                        .and_then(|rest| rest.iter().position(|&b| b == b'/'))
                        .map_or(topic.len(), |n| pos + n)
                }
                Level::Exact(span) => {
                    match eat(topic, pos, self.text_of(span)) {
                        Some(next) => pos = next,
                        None => return false,
                    }
                    if !at_level_end(topic, pos) {
                        return false;
                    }
                }
                Level::Substituted(span) => {
                    for piece in self.pieces.get(span.range()).unwrap_or(&[]) {
                        match eat(topic, pos, self.bytes_of(*piece, who)) {
                            Some(next) => pos = next,
                            None => return false,
                        }
                    }
                    // A substituted `/` may have crossed levels; the level still has to end here.
                    if !at_level_end(topic, pos) {
                        return false;
                    }
                }
            }
        }
        pos == topic.len()
    }

    /// The first byte `level` stands for once substituted; `None` if it is empty. Only the
    /// first level asks, for the `$` rule (an empty first level means the filter starts with `/`).
    fn level_first_byte(&self, level: Level, who: &Identity) -> Option<u8> {
        match level {
            Level::Exact(span) => self.text_of(span).first().copied(),
            Level::AnyOne => Some(b'+'),
            Level::AnyRest => Some(b'#'),
            Level::Substituted(span) => self
                .pieces
                .get(span.range())
                .unwrap_or(&[])
                .iter()
                .find_map(|piece| self.bytes_of(*piece, who).first().copied()),
        }
    }
}

// Counts, not the arenas: an ACL may hold 10,000 rules.
impl fmt::Debug for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acl")
            .field("sections", &self.sections.len())
            .field("rules", &self.rules.len())
            .field("patterns", &self.rules_in(self.patterns).len())
            .finish()
    }
}

/// `topic[pos..]` starts with `expected`: the position after it.
fn eat(topic: &[u8], pos: usize, expected: &[u8]) -> Option<usize> {
    let end = pos.checked_add(expected.len())?;
    (topic.get(pos..end)? == expected).then_some(end)
}

fn at_level_end(topic: &[u8], pos: usize) -> bool {
    matches!(topic.get(pos), None | Some(b'/'))
}

/// One client's view of an [`Acl`], resolved at CONNECT by [`Acl::client`]: the index of its
/// section, its identity for `%c`/`%u`, and whether patterns apply to it at all.
///
/// It holds the `Rc<Acl>` it was resolved against, so a check can never mix one file's section
/// index with another file's rules. After a reload, [`ClientAcl::rebind`] re-resolves a handle
/// against the new ACL (mosquitto re-applies ACLs to connected clients on reload); until then
/// the old file keeps deciding for it. Whoever caches decisions (the route cache) must drop them
/// when handles are rebound.
#[derive(Clone)]
pub struct ClientAcl {
    acl: Rc<Acl>,
    /// Index into `Acl::sections`; `None`: no own rules.
    section: Option<u32>,
    client_id: Rc<str>,
    username: Option<Rc<str>>,
    /// `false` if the username or client id contains `+` or `#`.
    patterns_apply: bool,
}

impl fmt::Debug for ClientAcl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAcl")
            .field("section", &self.section)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("patterns_apply", &self.patterns_apply)
            .finish()
    }
}

impl ClientAcl {
    /// Whether the client may do `access` on `topic` (a topic name, for `Read`/`Write`; a filter
    /// for `Subscribe`, which is always allowed, see [`Access::Subscribe`]). A topic with `+` or
    /// `#` is refused for `Read`/`Write`, as mosquitto's matcher does.
    ///
    /// Cost: O((r + p) x t) byte comparisons, r = rules in the client's own section, p = pattern
    /// rules, t = the topic's length (each rule is one pass over the topic's levels, substituting
    /// `%c`/`%u` in place); rules that cannot grant `access` are skipped without matching. No
    /// allocation, independent of the number of users and of other users' rules.
    pub fn allows(&self, topic: &str, access: Access) -> bool {
        if access == Access::Subscribe {
            return true;
        }
        let topic = topic.as_bytes();
        if topic.is_empty() || topic.iter().any(|&b| b == b'+' || b == b'#') {
            return false;
        }
        let acl = &*self.acl;
        let who =
            Identity { client_id: self.client_id.as_bytes(), username: self.username.as_deref().map(str::as_bytes) };
        if let Some(section) = self.section.and_then(|index| acl.sections.get(index as usize)) {
            if let Some(allowed) = acl.first_verdict(*section, topic, access, &who) {
                return allowed;
            }
        }
        if self.patterns_apply {
            if let Some(allowed) = acl.first_verdict(acl.patterns, topic, access, &who) {
                return allowed;
            }
        }
        false
    }

    /// The same client resolved against another (reloaded) ACL.
    pub fn rebind(&self, acl: &Rc<Acl>) -> ClientAcl {
        acl.client(self.username.clone(), Rc::clone(&self.client_id))
    }

    /// The ACL this handle decides with (compare with `Rc::ptr_eq` to find stale handles).
    pub fn acl(&self) -> &Rc<Acl> {
        &self.acl
    }
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;
