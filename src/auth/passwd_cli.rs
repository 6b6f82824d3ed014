//! `midge passwd [-c] [-b] [-D] FILE USER [PASSWORD]`: adds, updates or deletes a user of a
//! mosquitto password file, with `mosquitto_passwd`'s options and meaning.
//!
//! - `-c` creates FILE, replacing any file already there (mosquitto 2.0's behaviour); without it
//!   FILE must exist.
//! - `-b` takes the password from the command line. Without it the password is asked twice on the
//!   terminal with echo off (termios on /dev/tty), or, when standard input is not a terminal,
//!   read from its first line (a second line, if there is one, must repeat it, so input meant for
//!   `mosquitto_passwd` works too).
//! - `-D` deletes USER (every line of it); deleting a user who is not there is an error.
//!
//! Unlike `mosquitto_passwd` 2.0, which refuses a file with comments or blank lines and then
//! truncates it, every other line (comments, blanks, lines it cannot read) is kept byte for byte:
//! USER's first line is replaced in place, or a line is appended. The file is replaced
//! atomically (a temporary file in the same directory, synced, then renamed over it), keeping the
//! mode and, where permitted, the owner and group of the file it replaces (a broker running as
//! another user must still read it); a new file is mode 0600. Entries are written with
//! mosquitto 2.0's defaults (see [`new_password_line`]). An empty password is refused.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::passwd::{line_username, new_password_line};

/// Help for `midge passwd -h`.
pub const USAGE: &str = "\
usage: midge passwd [-c] FILE USER            add or update USER, asking for the password
       midge passwd [-c] -b FILE USER PASSWORD  add or update USER with PASSWORD
       midge passwd -D FILE USER              delete USER
  -c  create FILE (replacing it if it exists); without -c, FILE must exist
  -b  batch mode: the password is the last argument
  -D  delete USER
Writes mosquitto's format (PBKDF2-SHA512, 101 iterations, 12-byte salt), which mosquitto 2.0
and later read, and so does midge's password_file.
";

/// Longest password accepted: MQTT's limit for the password field.
const MAX_PASSWORD_LEN: usize = 65535;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Help,
    Set { create: bool, file: PathBuf, username: String, password: Option<Vec<u8>> },
    Delete { file: PathBuf, username: String },
}

/// Runs `midge passwd` with the arguments that follow `passwd`. Returns the message to print
/// (after "midge passwd: ") and exit non-zero with on failure.
pub fn run(args: &[String]) -> Result<(), String> {
    match parse_args(args)? {
        Request::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Request::Set { create, file, username, password } => {
            super::passwd::check_username(&username).map_err(|e| e.to_string())?;
            let password = match password {
                Some(password) => password,
                None => read_password()?,
            };
            if password.is_empty() {
                return Err("empty password refused".to_string());
            }
            if password.len() > MAX_PASSWORD_LEN {
                return Err("password longer than 65535 bytes".to_string());
            }
            let line = new_password_line(&username, &password).map_err(|e| e.to_string())?;
            let text = if create { format!("{line}\n") } else { set_user(&read_text(&file)?, &username, &line) };
            write_atomically(&file, text.as_bytes())
        }
        Request::Delete { file, username } => {
            let (text, found) = delete_user(&read_text(&file)?, &username);
            if !found {
                return Err(format!("user {username:?} not found in {}", file.display()));
            }
            write_atomically(&file, text.as_bytes())
        }
    }
}

fn parse_args(args: &[String]) -> Result<Request, String> {
    let (mut create, mut batch, mut delete) = (false, false, false);
    let mut positional: Vec<&str> = Vec::new();
    let mut options_done = false;
    for arg in args {
        match arg.as_str() {
            "-c" if !options_done => create = true,
            "-b" if !options_done => batch = true,
            "-D" if !options_done => delete = true,
            "-h" | "--help" if !options_done => return Ok(Request::Help),
            "--" if !options_done => options_done = true,
            option if !options_done && option.len() > 1 && option.starts_with('-') => {
                return Err(format!("unknown option '{option}'\n\n{USAGE}"));
            }
            value => {
                // Like mosquitto_passwd, options come first; the rest is FILE USER [PASSWORD].
                options_done = true;
                positional.push(value);
            }
        }
    }
    if create && delete {
        return Err("-c and -D cannot be used together".to_string());
    }
    if batch && delete {
        return Err("-b and -D cannot be used together".to_string());
    }
    match (batch, delete, positional.as_slice()) {
        (false, true, [file, username]) => {
            Ok(Request::Delete { file: PathBuf::from(file), username: (*username).to_string() })
        }
        (false, false, [file, username]) => {
            Ok(Request::Set { create, file: PathBuf::from(file), username: (*username).to_string(), password: None })
        }
        (true, false, [file, username, password]) => Ok(Request::Set {
            create,
            file: PathBuf::from(file),
            username: (*username).to_string(),
            password: Some(password.as_bytes().to_vec()),
        }),
        _ => Err(format!("expected FILE USER{}\n\n{USAGE}", if batch { " PASSWORD" } else { "" })),
    }
}

/// The file as text; an error tells how to create it when it is missing.
fn read_text(path: &Path) -> Result<String, String> {
    let bytes = fs::read(path).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::NotFound { " (use -c to create it)" } else { "" };
        format!("{}: {e}{hint}", path.display())
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes().get(..offset).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count()) + 1;
        format!("{}: line {line} is not UTF-8; not rewriting it", path.display())
    })
}

/// `text` with `username`'s first line replaced by `new_line` (the line ending kept, CRLF
/// included), or `new_line` appended. Later lines of the same user are left as they are, as
/// `mosquitto_passwd` leaves them (the loaders use the first).
fn set_user(text: &str, username: &str, new_line: &str) -> String {
    let mut out = String::with_capacity(text.len() + new_line.len() + 2);
    let mut replaced = false;
    for (index, line) in text.split('\n').enumerate() {
        if index > 0 {
            out.push('\n');
        }
        if !replaced && line_username(line) == Some(username) {
            out.push_str(new_line);
            if line.ends_with('\r') {
                out.push('\r');
            }
            replaced = true;
        } else {
            out.push_str(line);
        }
    }
    if !replaced {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(new_line);
        out.push('\n');
    }
    out
}

/// `text` without any line of `username`, and whether there was one.
fn delete_user(text: &str, username: &str) -> (String, bool) {
    let mut found = false;
    let kept: Vec<&str> = text
        .split('\n')
        .filter(|line| {
            let matches = line_username(line) == Some(username);
            found |= matches;
            !matches
        })
        .collect();
    (kept.join("\n"), found)
}

/// Replaces `path` with `contents` so that a reader (the broker, on reload) sees either the old
/// file or the new one, never a half-written one.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), String> {
    let shown = path.display();
    // Through a symlink, replace the file it points to, not the link.
    let target = match fs::canonicalize(path) {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(format!("{shown}: {e}")),
    };
    let name = target.file_name().ok_or_else(|| format!("{shown}: not a file name"))?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = dir.join(format!(".{}.midge-tmp-{}", name.to_string_lossy(), std::process::id()));
    let existing = fs::metadata(&target).ok();
    // A leftover of a killed run with the same pid would make create_new fail.
    let _ = fs::remove_file(&temp);
    replace_with_temp(&temp, &target, &dir, existing.as_ref(), contents).map_err(|e| {
        let _ = fs::remove_file(&temp);
        format!("{shown}: cannot write: {e}")
    })
}

/// Writes `temp` (owner and mode of `existing` when there is one, else 0600), syncs it and
/// renames it to `target` in `dir`.
fn replace_with_temp(
    temp: &Path,
    target: &Path,
    dir: &Path,
    existing: Option<&fs::Metadata>,
    contents: &[u8],
) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(temp)?;
    if let Some(old) = existing {
        // Best effort: only root may give a file away; the mode is ours to set.
        let _ = std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()));
        file.set_permissions(Permissions::from_mode(old.mode() & 0o7777))?;
    }
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(temp, target)?;
    // The rename is durable once the directory is synced; failing that is not worth an error.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The password from the terminal (asked twice, echo off) or from standard input.
fn read_password() -> Result<Vec<u8>, String> {
    if io::stdin().is_terminal() {
        let tty = OpenOptions::new().read(true).write(true).open("/dev/tty").map_err(|e| format!("/dev/tty: {e}"))?;
        let first = prompt(&tty, "Password: ")?;
        let second = prompt(&tty, "Reenter password: ")?;
        if first != second {
            return Err("passwords do not match".to_string());
        }
        Ok(first)
    } else {
        let mut stdin = io::stdin().lock();
        let first = read_line(&mut stdin).map_err(|e| format!("standard input: {e}"))?;
        let first = first.ok_or("no password on standard input")?;
        match read_line(&mut stdin).map_err(|e| format!("standard input: {e}"))? {
            Some(second) if second != first => Err("passwords do not match".to_string()),
            _ => Ok(first),
        }
    }
}

/// Asks once on the terminal with echo off, and turns echo back on whatever happens (short of a
/// signal: a Ctrl-C here leaves echo off until `stty echo` or the shell's next prompt).
fn prompt(tty: &File, text: &str) -> Result<Vec<u8>, String> {
    let tty_error = |e: io::Error| format!("/dev/tty: {e}");
    let mut out = tty;
    out.write_all(text.as_bytes()).map_err(tty_error)?;
    set_echo(tty, false).map_err(|e| format!("cannot turn off echo ({e}); use -b or pipe the password in"))?;
    let mut input = tty;
    let line = read_line(&mut input);
    let restored = set_echo(tty, true);
    // The Enter that ended the password was not echoed.
    let _ = out.write_all(b"\n");
    restored.map_err(|e| format!("cannot turn echo back on ({e}); run `stty echo`"))?;
    line.map_err(tty_error)?.ok_or_else(|| "no password entered".to_string())
}

/// Terminal echo on or off (termios `ECHO` on /dev/tty), as `stty -echo` would set it, without
/// spawning `stty` (process spawning is ~25 KB of the binary).
fn set_echo(tty: &File, on: bool) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let fd = tty.as_raw_fd();
    // SAFETY: `termios` is plain data that tcgetattr fills in; `fd` stays open (borrowed from
    // `tty`) for both calls, and tcsetattr only reads the struct.
    let mut termios: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut termios) } != 0 {
        return Err(io::Error::last_os_error().to_string());
    }
    if on {
        termios.c_lflag |= libc::ECHO;
    } else {
        termios.c_lflag &= !libc::ECHO;
    }
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &termios) } != 0 {
        return Err(io::Error::last_os_error().to_string());
    }
    Ok(())
}

/// One line without its `\n` (and a `\r` before it), read a byte at a time so nothing after it
/// is consumed; `None` at end of input with nothing read. At most 65535 bytes plus the ending.
fn read_line(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match input.read(&mut byte) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(0) => break,
            Ok(_) => match byte {
                [b'\n'] => break,
                [b] => line.push(b),
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if line.len() > MAX_PASSWORD_LEN + 1 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "password longer than 65535 bytes"));
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

#[cfg(test)]
#[path = "passwd_cli_tests.rs"]
mod tests;
