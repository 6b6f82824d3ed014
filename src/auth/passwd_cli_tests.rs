//! `midge passwd`: argument rules, in-place edits, and the files it leaves behind.

use super::*;
use crate::auth::passwd::PasswordFile;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A unique, empty scratch directory for one test.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("midge-passwd-cli-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_in(file: &Path, list: &[&str]) -> Result<(), String> {
    let file = file.to_str().unwrap();
    let full: Vec<&str> = list.iter().map(|a| if *a == "FILE" { file } else { a }).collect();
    run(&args(&full))
}

#[test]
fn arguments_follow_mosquitto_passwd() {
    let set = |create, password: Option<&str>| Request::Set {
        create,
        file: PathBuf::from("f"),
        username: "u".into(),
        password: password.map(|p| p.as_bytes().to_vec()),
    };
    assert_eq!(parse_args(&args(&["f", "u"])), Ok(set(false, None)));
    assert_eq!(parse_args(&args(&["-c", "f", "u"])), Ok(set(true, None)));
    assert_eq!(parse_args(&args(&["-b", "f", "u", "pw"])), Ok(set(false, Some("pw"))));
    assert_eq!(parse_args(&args(&["-c", "-b", "f", "u", "-pw"])), Ok(set(true, Some("-pw"))));
    assert_eq!(parse_args(&args(&["-b", "--", "f", "u", "-c"])), Ok(set(false, Some("-c"))));
    assert_eq!(parse_args(&args(&["-D", "f", "u"])), Ok(Request::Delete { file: "f".into(), username: "u".into() }));
    assert_eq!(parse_args(&args(&["-h"])), Ok(Request::Help));
}

#[test]
fn conflicting_or_missing_arguments_are_errors() {
    for bad in [
        &["-c", "-D", "f", "u"][..],
        &["-b", "-D", "f", "u", "p"],
        &["f"],
        &["f", "u", "p"],
        &["-b", "f", "u"],
        &["-D", "f"],
        &["-x", "f", "u"],
        &[],
    ] {
        assert!(parse_args(&args(bad)).is_err(), "{bad:?} accepted");
    }
    assert!(parse_args(&args(&["-c", "-D", "f", "u"])).unwrap_err().contains("-c and -D"));
}

#[test]
fn create_then_add_then_update_keeps_other_lines_verbatim() {
    let dir = scratch_dir("update");
    let file = dir.join("passwd");
    run_in(&file, &["-c", "-b", "FILE", "alice", "one"]).unwrap();
    let mut text = fs::read_to_string(&file).unwrap();
    text.push_str("# keep me: exactly\n\nnot a user line\n");
    fs::write(&file, &text).unwrap();
    run_in(&file, &["-b", "FILE", "bob", "two"]).unwrap();
    run_in(&file, &["-b", "FILE", "alice", "three"]).unwrap();

    let after = fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = after.lines().collect();
    assert_eq!(lines.len(), 5, "{after}");
    assert!(lines[0].starts_with("alice:$7$101$"), "alice's line stays first");
    assert_eq!(&lines[1..4], &["# keep me: exactly", "", "not a user line"]);
    assert!(lines[4].starts_with("bob:$7$101$"));
    let loaded = PasswordFile::parse(&after);
    assert!(loaded.verify("alice", b"three"));
    assert!(!loaded.verify("alice", b"one"));
    assert!(loaded.verify("bob", b"two"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn create_replaces_an_existing_file() {
    let dir = scratch_dir("create");
    let file = dir.join("passwd");
    fs::write(&file, "old:$6$x$y\n").unwrap();
    run_in(&file, &["-c", "-b", "FILE", "alice", "pw"]).unwrap();
    let loaded = PasswordFile::load(&file).unwrap();
    assert_eq!(loaded.len(), 1);
    assert!(loaded.verify("alice", b"pw"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_create_the_file_must_exist() {
    let dir = scratch_dir("exist");
    let error = run_in(&dir.join("nope"), &["-b", "FILE", "alice", "pw"]).unwrap_err();
    assert!(error.contains("use -c"), "{error}");
    assert!(!dir.join("nope").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn delete_removes_every_line_of_the_user_and_only_those() {
    let dir = scratch_dir("delete");
    let file = dir.join("passwd");
    fs::write(&file, "# c\nalice:a\nbob:b\n alice :again\r\n#alice:comment\n").unwrap();
    run_in(&file, &["-D", "FILE", "alice"]).unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), "# c\nbob:b\n#alice:comment\n");
    let error = run_in(&file, &["-D", "FILE", "alice"]).unwrap_err();
    assert!(error.contains("not found"), "{error}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_user_names_and_empty_passwords_are_refused() {
    let dir = scratch_dir("refuse");
    let file = dir.join("passwd");
    for name in ["a:b", "#x", "", " x"] {
        assert!(run_in(&file, &["-c", "-b", "FILE", name, "pw"]).is_err(), "{name:?}");
    }
    assert!(run_in(&file, &["-c", "-b", "FILE", "alice", ""]).unwrap_err().contains("empty password"));
    assert!(!file.exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn new_file_is_private_and_existing_mode_is_kept() {
    let dir = scratch_dir("mode");
    let file = dir.join("passwd");
    run_in(&file, &["-c", "-b", "FILE", "alice", "pw"]).unwrap();
    assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
    fs::set_permissions(&file, Permissions::from_mode(0o640)).unwrap();
    run_in(&file, &["-b", "FILE", "bob", "pw"]).unwrap();
    assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o640);
    let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("passwd")], "no temporary file left");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_symlinked_file_is_updated_through_the_link() {
    let dir = scratch_dir("symlink");
    let real = dir.join("real");
    let link = dir.join("link");
    run_in(&real, &["-c", "-b", "FILE", "alice", "pw"]).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    run_in(&link, &["-b", "FILE", "bob", "pw"]).unwrap();
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(PasswordFile::load(&real).unwrap().verify("bob", b"pw"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn non_utf8_file_is_not_rewritten() {
    let dir = scratch_dir("utf8");
    let file = dir.join("passwd");
    fs::write(&file, b"a:b\n\xff\n").unwrap();
    let error = run_in(&file, &["-b", "FILE", "bob", "pw"]).unwrap_err();
    assert!(error.contains("line 2 is not UTF-8"), "{error}");
    assert_eq!(fs::read(&file).unwrap(), b"a:b\n\xff\n");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn set_user_replaces_in_place_or_appends() {
    assert_eq!(set_user("", "u", "u:new"), "u:new\n");
    assert_eq!(set_user("a:1", "u", "u:new"), "a:1\nu:new\n");
    assert_eq!(set_user("a:1\n", "u", "u:new"), "a:1\nu:new\n");
    assert_eq!(set_user("a:1\r\nu:old\r\nb:2\r\n", "u", "u:new"), "a:1\r\nu:new\r\nb:2\r\n");
    assert_eq!(set_user("u:old\nu:older", "u", "u:new"), "u:new\nu:older");
    assert_eq!(set_user("#u:old\n", "u", "u:new"), "#u:old\nu:new\n");
}

#[test]
fn delete_user_keeps_the_end_of_file_as_it_was() {
    assert_eq!(delete_user("a:1\nu:2\n", "u"), ("a:1\n".to_string(), true));
    assert_eq!(delete_user("a:1\nu:2", "u"), ("a:1".to_string(), true));
    assert_eq!(delete_user("a:1\n", "u"), ("a:1\n".to_string(), false));
}

#[test]
fn read_line_strips_the_ending_and_stops_there() {
    let mut input: &[u8] = b"first\r\nsecond\nthird";
    assert_eq!(read_line(&mut input).unwrap(), Some(b"first".to_vec()));
    assert_eq!(read_line(&mut input).unwrap(), Some(b"second".to_vec()));
    assert_eq!(read_line(&mut input).unwrap(), Some(b"third".to_vec()));
    assert_eq!(read_line(&mut input).unwrap(), None);
    let long = vec![b'x'; 70000];
    assert!(read_line(&mut long.as_slice()).is_err());
}
