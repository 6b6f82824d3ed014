//! Tests for the ACL file: each named after the mosquitto 2.0.11 rule it proves.
//! Test-only: included under #[cfg(test)] by the parent module.

use super::Access::{Read, Subscribe, Write};
use super::*;

fn acl(text: &str) -> Rc<Acl> {
    let (acl, _warnings) = Acl::parse(text).unwrap();
    Rc::new(acl)
}

fn warnings(text: &str) -> Vec<String> {
    Acl::parse(text).unwrap().1
}

fn client(acl: &Rc<Acl>, username: Option<&str>, client_id: &str) -> ClientAcl {
    acl.client(username.map(Rc::from), Rc::from(client_id))
}

fn can(acl: &Rc<Acl>, username: Option<&str>, client_id: &str, topic: &str, access: Access) -> bool {
    client(acl, username, client_id).allows(topic, access)
}

fn refusal(text: &str) -> (usize, LineProblem) {
    match Acl::parse(text) {
        Err(AclError::Line { line, problem }) => (line, problem),
        other => panic!("expected a refused line for {text:?}, got {other:?}"),
    }
}

// ------------------------------------------------------------------------------------------------
// The issue's example

#[test]
fn issue_example_client_uploads_and_server_downloads() {
    let acl = acl("user client\n\
         topic write /p/client/upload\n\
         topic read /p/client/download\n\
         \n\
         user server\n\
         topic read /p/client/upload\n\
         topic write /p/client/download\n");
    let (c, s) = (Some("client"), Some("server"));
    assert!(can(&acl, c, "c1", "/p/client/upload", Write));
    assert!(!can(&acl, c, "c1", "/p/client/upload", Read));
    assert!(can(&acl, c, "c1", "/p/client/download", Read));
    assert!(!can(&acl, c, "c1", "/p/client/download", Write));
    assert!(can(&acl, s, "s1", "/p/client/upload", Read));
    assert!(!can(&acl, s, "s1", "/p/client/upload", Write));
    assert!(can(&acl, s, "s1", "/p/client/download", Write));
    assert!(!can(&acl, s, "s1", "/p/client/download", Read));
    // The leading `/` is an empty first level: without it, it is another topic.
    assert!(!can(&acl, c, "c1", "p/client/upload", Write));
    assert!(!can(&acl, c, "c1", "//p/client/upload", Write));
    // Nobody else has any right.
    assert!(!can(&acl, None, "anon", "/p/client/upload", Write));
    assert!(!can(&acl, Some("other"), "o", "/p/client/download", Read));
}

// ------------------------------------------------------------------------------------------------
// Access words

#[test]
fn topic_without_access_word_is_readwrite() {
    let acl = acl("topic a/b\n");
    assert!(can(&acl, None, "x", "a/b", Read));
    assert!(can(&acl, None, "x", "a/b", Write));
}

#[test]
fn access_words_grant_only_what_they_name() {
    let acl = acl("topic read r\ntopic write w\ntopic readwrite rw\ntopic deny d\n");
    let rights = |topic| (can(&acl, None, "x", topic, Read), can(&acl, None, "x", topic, Write));
    assert_eq!(rights("r"), (true, false));
    assert_eq!(rights("w"), (false, true));
    assert_eq!(rights("rw"), (true, true));
    assert_eq!(rights("d"), (false, false));
}

#[test]
fn lone_access_word_is_the_topic_with_a_warning() {
    // mosquitto: a single word after `topic` is the topic, with readwrite access.
    let text = "topic read\n";
    let acl = acl(text);
    assert!(can(&acl, None, "x", "read", Write));
    let w = warnings(text);
    assert_eq!(w.len(), 1);
    assert!(w[0].starts_with("line 1:") && w[0].contains("\"read\""), "{}", w[0]);
}

#[test]
fn deny_by_default() {
    let acl = acl("topic read a\n");
    assert!(!can(&acl, None, "x", "b", Read));
    assert!(!can(&acl, None, "x", "a", Write));
    assert!(!can(&acl, Some("u"), "x", "a", Read));
}

#[test]
fn empty_file_refuses_everything() {
    // CVE-2018-12550: an empty ACL file must not mean "no ACL".
    for text in ["", "\n\n", "# only a comment\n", "   \n\t\n"] {
        let acl = acl(text);
        assert_eq!(acl.rule_count(), 0);
        assert!(!can(&acl, None, "x", "a", Read), "{text:?}");
        assert!(!can(&acl, Some("u"), "x", "a", Write), "{text:?}");
    }
}

// ------------------------------------------------------------------------------------------------
// Sections

#[test]
fn anonymous_section_is_the_rules_before_the_first_user_line() {
    let acl = acl("topic read public/#\nuser alice\ntopic read alice/#\n");
    assert!(can(&acl, None, "x", "public/news", Read));
    assert!(!can(&acl, None, "x", "alice/inbox", Read));
    assert!(can(&acl, Some("alice"), "x", "alice/inbox", Read));
    // Named users do not get the anonymous section, nor does a username without a section.
    assert!(!can(&acl, Some("alice"), "x", "public/news", Read));
    assert!(!can(&acl, Some("bob"), "x", "public/news", Read));
}

#[test]
fn empty_username_is_a_username_not_anonymous() {
    let acl = acl("topic read public\npattern read u/%u/x\n");
    assert!(!can(&acl, Some(""), "x", "public", Read));
    // `%u` is the empty string.
    assert!(can(&acl, Some(""), "x", "u//x", Read));
    assert!(!can(&acl, None, "x", "u//x", Read));
}

#[test]
fn repeated_user_lines_add_to_one_section() {
    let acl = acl("user a\ntopic read one\nuser b\ntopic read two\nuser a\ntopic read three\n");
    assert!(can(&acl, Some("a"), "x", "one", Read));
    assert!(can(&acl, Some("a"), "x", "three", Read));
    assert!(!can(&acl, Some("a"), "x", "two", Read));
    assert_eq!(acl.section_count(), 2);
}

#[test]
fn username_is_the_rest_of_the_line_trimmed() {
    let acl = acl("user   John Smith \t\ntopic read js\nuser \tbob\ntopic read b\n");
    assert!(can(&acl, Some("John Smith"), "x", "js", Read));
    assert!(!can(&acl, Some("John"), "x", "js", Read));
    assert!(can(&acl, Some("bob"), "x", "b", Read));
}

// ------------------------------------------------------------------------------------------------
// Order of rules

#[test]
fn deny_is_checked_before_grants_whatever_the_order() {
    for text in ["topic readwrite a/#\ntopic deny a/secret\n", "topic deny a/secret\ntopic readwrite a/#\n"] {
        let acl = acl(text);
        assert!(can(&acl, None, "x", "a/public", Read), "{text}");
        assert!(!can(&acl, None, "x", "a/secret", Read), "{text}");
        assert!(!can(&acl, None, "x", "a/secret", Write), "{text}");
    }
    let acl = acl("pattern readwrite p/%c/#\npattern deny p/%c/secret\n");
    assert!(can(&acl, None, "me", "p/me/x", Write));
    assert!(!can(&acl, None, "me", "p/me/secret", Write));
}

#[test]
fn own_rules_decide_before_patterns() {
    let acl = acl("user alice\n\
         topic readwrite #\n\
         topic deny secret/#\n\
         pattern deny p/%c/private\n\
         pattern readwrite p/%c/#\n\
         pattern readwrite secret/%c\n");
    // An own grant beats a pattern deny (mosquitto returns on the first list that decides).
    assert!(can(&acl, Some("alice"), "id", "p/id/private", Write));
    // An own deny beats a pattern grant.
    assert!(!can(&acl, Some("alice"), "id", "secret/id", Write));
    // For others the patterns decide.
    assert!(!can(&acl, Some("bob"), "id", "p/id/private", Write));
    assert!(can(&acl, Some("bob"), "id", "p/id/public", Write));
    assert!(can(&acl, Some("bob"), "id", "secret/id", Write));
}

#[test]
fn a_rule_without_the_access_does_not_stop_the_search() {
    let acl = acl("topic read a\ntopic write a\n");
    assert!(can(&acl, None, "x", "a", Read));
    assert!(can(&acl, None, "x", "a", Write));
}

// ------------------------------------------------------------------------------------------------
// Matching

#[test]
fn wildcards_match_like_mqtt_filters() {
    let acl = acl("topic read a/+/c\ntopic read b/#\ntopic read d/+\ntopic read e/+/#\ntopic read /+\n");
    let read = |topic| can(&acl, None, "x", topic, Read);
    assert!(read("a/b/c") && read("a//c"));
    assert!(!read("a/b/c/d") && !read("a/c") && !read("a/b"));
    // `#` matches the parent level too, and any depth.
    assert!(read("b") && read("b/") && read("b/x/y/z"));
    assert!(!read("bb"));
    // `+` matches one level, possibly empty, never the parent.
    assert!(read("d/x") && read("d/"));
    assert!(!read("d") && !read("d/x/y"));
    assert!(read("e/x") && read("e/x/y"));
    assert!(!read("e"));
    assert!(read("/x") && !read("x"));
}

#[test]
fn hash_alone_matches_every_topic_but_dollar_ones() {
    let acl = acl("topic read #\n");
    assert!(can(&acl, None, "x", "a", Read));
    assert!(can(&acl, None, "x", "/", Read));
    assert!(can(&acl, None, "x", "a/b/c", Read));
    assert!(!can(&acl, None, "x", "$SYS/broker/uptime", Read));
}

#[test]
fn dollar_topics_only_match_rules_starting_with_dollar() {
    let acl = acl("topic read #\ntopic read +/x\ntopic read +/+/y\ntopic read $SYS/#\ntopic read $app/+\n");
    assert!(!can(&acl, None, "x", "$foo/x", Read));
    assert!(!can(&acl, None, "x", "$foo/a/y", Read));
    assert!(can(&acl, None, "x", "$SYS/broker/uptime", Read));
    assert!(can(&acl, None, "x", "$app/1", Read));
    assert!(!can(&acl, None, "x", "$apps/1", Read));
    // A `$` later in the topic is an ordinary character.
    assert!(can(&acl, None, "x", "a/$x", Read));
}

#[test]
fn dollar_rules_only_match_dollar_topics() {
    let acl = acl("topic read $SYS/#\n");
    assert!(!can(&acl, None, "x", "SYS/x", Read));
    assert!(can(&acl, None, "x", "$SYS", Read));
}

#[test]
fn read_and_write_checks_refuse_topics_with_wildcards() {
    let acl = acl("topic readwrite #\n");
    assert!(!can(&acl, None, "x", "a/+", Read));
    assert!(!can(&acl, None, "x", "#", Write));
    assert!(!can(&acl, None, "x", "", Write));
}

#[test]
fn subscribe_is_always_allowed_as_in_mosquitto_2_0() {
    // mosquitto 2.0's ACL file check returns success for MOSQ_ACL_SUBSCRIBE: SUBACK grants the
    // QoS, and each delivered message is checked with Read.
    let acl = acl("topic deny #\nuser u\ntopic deny secret/#\n");
    assert!(can(&acl, None, "x", "#", Subscribe));
    assert!(can(&acl, Some("u"), "x", "secret/#", Subscribe));
    assert!(can(&acl, Some("nobody"), "x", "$SYS/#", Subscribe));
    assert!(!can(&acl, Some("u"), "x", "secret/a", Read));
    assert!(can(&acl, Some("u"), "x", "secret/+", Subscribe));
}

#[test]
fn topic_is_the_rest_of_the_line_and_may_contain_spaces() {
    let acl = acl("topic read  my topic/with spaces  \ntopic write \tleading tab\n");
    assert!(can(&acl, None, "x", "my topic/with spaces", Read));
    assert!(!can(&acl, None, "x", "my topic/with spaces ", Read));
    assert!(can(&acl, None, "x", "leading tab", Write));
}

// ------------------------------------------------------------------------------------------------
// Patterns

#[test]
fn pattern_substitutes_client_id_and_username_for_each_client() {
    let acl = acl("pattern readwrite dev/%c/#\npattern read users/%u/inbox\npattern write both/%u/%c\n");
    assert!(can(&acl, None, "d1", "dev/d1/temp", Write));
    assert!(can(&acl, None, "d1", "dev/d1", Write));
    assert!(!can(&acl, None, "d1", "dev/d2/temp", Write));
    assert!(can(&acl, Some("ann"), "d1", "users/ann/inbox", Read));
    assert!(!can(&acl, Some("ann"), "d1", "users/bob/inbox", Read));
    assert!(can(&acl, Some("ann"), "d1", "both/ann/d1", Write));
    assert!(!can(&acl, Some("ann"), "d1", "both/d1/ann", Write));
    // Patterns apply to users with a section as well.
    let acl2 = self::acl("user ann\ntopic read x\npattern read users/%u/inbox\n");
    assert!(can(&acl2, Some("ann"), "d1", "users/ann/inbox", Read));
}

#[test]
fn topic_lines_do_not_substitute() {
    let acl = acl("topic read dev/%c\n");
    assert!(!can(&acl, None, "d1", "dev/d1", Read));
    assert!(can(&acl, None, "d1", "dev/%c", Read));
}

#[test]
fn pattern_with_username_never_matches_clients_without_one() {
    let acl = acl("pattern read u/%u/#\npattern read c/%c/#\n");
    assert!(!can(&acl, None, "id", "u//x", Read));
    assert!(!can(&acl, None, "id", "u/id/x", Read));
    assert!(can(&acl, None, "id", "c/id/x", Read));
}

#[test]
fn pattern_substitutes_inside_a_level_as_mosquitto_2_0_does() {
    // The man page says %c must be a whole level; 2.0.11 substitutes it anywhere (tested
    // against the real broker), so we do too, and warn.
    let text = "pattern read in/x%cy\npattern read pre-%u\n";
    let acl = acl(text);
    assert!(can(&acl, None, "id", "in/xidy", Read));
    assert!(!can(&acl, None, "id", "in/id", Read));
    assert!(can(&acl, Some("bo"), "id", "pre-bo", Read));
    let w = warnings(text);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("line 1:") && w[0].contains("inside a level"), "{}", w[0]);
}

#[test]
fn percent_other_than_c_and_u_is_literal() {
    let acl = acl("pattern read a/%%c\npattern read b/%x/%c\npattern read c/100%\n");
    assert!(can(&acl, None, "id", "a/%id", Read));
    assert!(can(&acl, None, "id", "b/%x/id", Read));
    assert!(can(&acl, None, "id", "c/100%", Read));
}

#[test]
fn pattern_without_substitution_warns_like_mosquitto_and_applies_to_all() {
    let text = "\npattern read shared/#\n";
    let w = warnings(text);
    assert_eq!(w.len(), 1);
    assert!(w[0].starts_with("line 2:") && w[0].contains("does not contain %c or %u"), "{}", w[0]);
    let acl = acl(text);
    assert!(can(&acl, None, "a", "shared/x", Read));
    assert!(can(&acl, Some("u"), "b", "shared/x", Read));
}

#[test]
fn patterns_do_not_apply_to_client_ids_or_usernames_with_wildcards() {
    let acl = acl("topic readwrite anon/#\nuser a+b\ntopic readwrite own/#\npattern readwrite free/#\n");
    // CVE-2017-7650: `+` or `#` in the id or username would widen a pattern.
    assert!(!can(&acl, None, "x+y", "free/a", Write));
    assert!(!can(&acl, None, "x#", "free/a", Write));
    assert!(!can(&acl, Some("a+b"), "id", "free/a", Write));
    assert!(!can(&acl, Some("#"), "id", "free/a", Write));
    // Own rules still apply to them.
    assert!(can(&acl, None, "x+y", "anon/q", Write));
    assert!(can(&acl, Some("a+b"), "id", "own/q", Write));
    // Others are unaffected.
    assert!(can(&acl, None, "xy", "free/a", Write));
}

#[test]
fn slash_in_client_id_or_username_adds_levels() {
    // mosquitto 2.0 only rejects `+` and `#`; a `/` is substituted like any character.
    let acl = acl("pattern readwrite p/%c/#\npattern read u/%u\n");
    assert!(can(&acl, None, "x/y", "p/x/y/q", Write));
    assert!(can(&acl, None, "x/y", "p/x/y", Write));
    assert!(!can(&acl, None, "x/y", "p/x/q", Write));
    assert!(!can(&acl, None, "x/y", "p/x/yq", Write));
    assert!(can(&acl, Some("a/b"), "id", "u/a/b", Read));
    assert!(!can(&acl, Some("a/b"), "id", "u/a", Read));
    assert!(!can(&acl, Some("a/b"), "id", "u/a/b/c", Read));
}

#[test]
fn dollar_rule_applies_after_substitution() {
    let acl = acl("pattern readwrite %c/#\npattern read %u/x\n");
    // The substituted filter starts with `$`, so it matches `$` topics.
    assert!(can(&acl, None, "$dev", "$dev/x", Write));
    assert!(!can(&acl, None, "dev", "$dev/x", Write));
    // An empty client id leaves a filter starting with `/`.
    assert!(can(&acl, None, "", "/q", Write));
    assert!(can(&acl, Some("$u"), "id", "$u/x", Read));
}

// ------------------------------------------------------------------------------------------------
// Whitespace, comments, refusals

#[test]
fn comments_blank_lines_and_surrounding_whitespace_are_ignored() {
    let acl = acl("# anonymous\r\n\r\n   topic read a \t\r\n#user ignored\n\n  user  bob \n   \n  topic read b\n");
    assert!(can(&acl, None, "x", "a", Read));
    assert!(!can(&acl, None, "x", "a ", Read));
    assert!(can(&acl, Some("bob"), "x", "b", Read));
    assert!(!can(&acl, Some("ignored"), "x", "b", Read));
    assert_eq!(acl.section_count(), 2);
}

#[test]
fn comment_must_start_in_the_first_column() {
    // mosquitto: "Invalid line in acl_file: #".
    assert_eq!(refusal("topic a\n  # indented comment\n"), (2, LineProblem::UnknownKeyword("#".into())));
    assert_eq!(refusal("topic a # trailing comment\n").1, LineProblem::UnknownAccess("a".into()));
    assert!(matches!(
        refusal("topic read a # trailing\n").1,
        LineProblem::InvalidTopic { reason: TopicProblem::Wildcard, .. }
    ));
}

#[test]
fn words_are_separated_by_spaces_not_tabs() {
    assert_eq!(refusal("topic\tread\tx\n"), (1, LineProblem::UnknownKeyword("topic\tread\tx".into())));
    assert_eq!(refusal("\ttopic x\n"), (1, LineProblem::UnknownKeyword("\ttopic".into())));
    assert_eq!(refusal("user\tbob\n"), (1, LineProblem::UnknownKeyword("user\tbob".into())));
    assert_eq!(refusal("topic \tread x\n"), (1, LineProblem::UnknownAccess("\tread".into())));
}

#[test]
fn refused_lines_name_the_line_and_problem() {
    let long = format!("topic read {}\n", "a".repeat(65536));
    let deep = format!("topic read {}b\n", "a/".repeat(201));
    let cases: Vec<(&str, LineProblem)> = vec![
        ("bogus x", LineProblem::UnknownKeyword("bogus".into())),
        ("TOPIC x", LineProblem::UnknownKeyword("TOPIC".into())),
        ("topic", LineProblem::MissingTopic),
        ("pattern   ", LineProblem::MissingTopic),
        ("topic Read x", LineProblem::UnknownAccess("Read".into())),
        ("topic readonly x", LineProblem::UnknownAccess("readonly".into())),
        ("user", LineProblem::MissingUsername),
        ("user  \t ", LineProblem::MissingUsername),
        ("topic read a\0b", LineProblem::NulByte),
        ("# comment \0", LineProblem::NulByte),
    ];
    for (line, problem) in cases {
        let text = format!("topic ok\n\n{line}\ntopic ok2\n");
        assert_eq!(refusal(&text), (3, problem), "{line:?}");
    }
    for topic in ["a/b#", "a/+b", "#/a", "a/#/b", "+a", "a+", "##"] {
        assert_eq!(
            refusal(&format!("pattern read {topic}\n")),
            (1, LineProblem::InvalidTopic { topic: topic.into(), reason: TopicProblem::Wildcard }),
            "{topic}"
        );
    }
    assert!(matches!(refusal(&long).1, LineProblem::InvalidTopic { reason: TopicProblem::TooLong, .. }));
    assert!(matches!(refusal(&deep).1, LineProblem::InvalidTopic { reason: TopicProblem::TooManyLevels, .. }));
}

#[test]
fn topic_limits_are_mosquittos() {
    // Up to 65535 bytes and 200 separators, as mosquitto_sub_topic_check in the broker.
    let longest = "a".repeat(65535);
    let deepest = format!("{}b", "a/".repeat(200));
    let acl = acl(&format!("topic read {longest}\ntopic read {deepest}\n"));
    assert!(can(&acl, None, "x", &longest, Read));
    assert!(can(&acl, None, "x", &deepest, Read));
}

#[test]
fn error_messages_are_readable() {
    let e = Acl::parse("topic a\nfrobnicate 3\n").unwrap_err();
    assert!(e.to_string().starts_with("line 2: invalid line starting with \"frobnicate\""), "{e}");
    let long = format!("topic read {}#\n", "x".repeat(1000));
    let e = Acl::parse(&long).unwrap_err().to_string();
    assert!(e.len() < 300, "{e}");
}

#[test]
fn load_reads_a_file_and_refuses_non_utf8_naming_the_line() {
    let dir = std::env::temp_dir().join(format!("midge-acl-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.acl");
    std::fs::write(&good, "user u\ntopic read a\n").unwrap();
    let (acl, _) = Acl::load(&good).unwrap();
    let acl = Rc::new(acl);
    assert!(can(&acl, Some("u"), "x", "a", Read));

    let bad = dir.join("bad.acl");
    std::fs::write(&bad, b"topic read a\nuser \xff\xfe\ntopic read b\n").unwrap();
    assert!(matches!(Acl::load(&bad), Err(AclError::Line { line: 2, problem: LineProblem::NotUtf8 })));

    let missing = dir.join("missing.acl");
    let e = Acl::load(&missing).unwrap_err();
    assert!(matches!(e, AclError::Read { .. }));
    assert!(e.to_string().contains("missing.acl"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ------------------------------------------------------------------------------------------------
// Handles and reload

#[test]
fn rebind_resolves_against_the_reloaded_acl_while_old_handles_keep_the_old_one() {
    let old = acl("user u\ntopic read a\n");
    let handle = client(&old, Some("u"), "id");
    let new = acl("user other\ntopic read x\nuser u\ntopic read b\n");
    drop(old);
    // The old handle still decides with the old file (kept alive by the handle).
    assert!(handle.allows("a", Read));
    assert!(!handle.allows("b", Read));
    let rebound = handle.rebind(&new);
    assert!(Rc::ptr_eq(rebound.acl(), &new));
    assert!(!rebound.allows("a", Read));
    assert!(rebound.allows("b", Read));
}

#[test]
fn thousand_users_and_ten_thousand_rules_resolve_once_and_check() {
    let mut text = String::from("topic read public/#\n");
    for u in 0..1000 {
        text.push_str(&format!("\nuser user{u}\n"));
        for r in 0..9 {
            text.push_str(&format!("topic readwrite tenants/{u}/devices/{r}/#\n"));
        }
        text.push_str(&format!("topic deny tenants/{u}/devices/3/secret\n"));
    }
    text.push_str("pattern readwrite clients/%c/#\npattern read users/%u/#\n");
    let acl = acl(&text);
    assert_eq!(acl.rule_count(), 1 + 10_000 + 2);
    assert_eq!(acl.section_count(), 1001);
    for u in [0, 1, 499, 999] {
        let id = format!("dev{u}");
        let handle = client(&acl, Some(&format!("user{u}")), &id);
        for r in 0..9 {
            assert!(handle.allows(&format!("tenants/{u}/devices/{r}/state"), Write));
        }
        assert!(!handle.allows(&format!("tenants/{u}/devices/9/state"), Write));
        assert!(!handle.allows(&format!("tenants/{u}/devices/3/secret"), Read));
        assert!(!handle.allows(&format!("tenants/{}/devices/0/state", (u + 1) % 1000), Write));
        assert!(handle.allows(&format!("clients/{id}/x"), Write));
        assert!(handle.allows(&format!("users/user{u}/inbox"), Read));
        assert!(!handle.allows("public/news", Read)); // named users do not get the anonymous section
    }
    assert!(client(&acl, None, "anon").allows("public/news", Read));
}

/// A tiny deterministic generator, so the test needs no dependency.
struct Lcg(u64);

impl Lcg {
    fn next_index(&mut self) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

#[test]
fn arbitrary_input_never_panics() {
    let tokens = [
        "topic",
        "pattern",
        "user",
        "read",
        "write",
        "readwrite",
        "deny",
        " ",
        "  ",
        "\t",
        "\r",
        "\n",
        "#",
        "+",
        "/",
        "%c",
        "%u",
        "%",
        "$",
        "$SYS",
        "a",
        "é",
        "\u{0}",
        "\x0b",
        "x%cy",
        "//",
    ];
    let ids = ["", "a", "a/b", "$x", "+", "#", "é", "%c"];
    let topics = ["a", "/", "a/b", "$SYS/x", "$x/a", "a//b", "é/a", "%c", "x/a/b/c"];
    let mut rng = Lcg(42);
    let mut parsed = 0;
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..rng.next_index() % 40 {
            text.push_str(tokens[rng.next_index() % tokens.len()]);
        }
        if let Ok((acl, _)) = Acl::parse(&text) {
            parsed += 1;
            let acl = Rc::new(acl);
            for _ in 0..8 {
                let username = Some(ids[rng.next_index() % ids.len()]).filter(|_| rng.next_index() % 3 != 0);
                let handle = client(&acl, username, ids[rng.next_index() % ids.len()]);
                for access in [Read, Write, Subscribe] {
                    handle.allows(topics[rng.next_index() % topics.len()], access);
                }
            }
        }
    }
    assert!(parsed > 100, "the generator should produce some valid files, got {parsed}");
}
