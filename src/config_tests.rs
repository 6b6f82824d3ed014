//! Tests for the command line and mosquitto.conf parsing.
//! Test-only: included under #[cfg(test)] by the parent module.

use super::*;

fn parse(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
    parse_mosquitto_conf(text, Path::new("test.conf"))
}

#[test]
fn users_example_config_works_as_is() {
    let (c, warnings) =
        parse("listener 1883 127.0.0.1\nlistener 8083 127.0.0.1\nprotocol websockets\nallow_anonymous true\n").unwrap();
    assert!(warnings.is_empty());
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[0].addr, "127.0.0.1:1883".parse().unwrap());
    assert_eq!(c.listeners[0].protocol, Protocol::Mqtt);
    assert_eq!(c.listeners[1].addr, "127.0.0.1:8083".parse().unwrap());
    assert_eq!(c.listeners[1].protocol, Protocol::WebSockets);
    assert!(c.allow_anonymous);
}

#[test]
fn unknown_and_later_options_warn_with_line() {
    let (_, warnings) = parse("# comment\n\npersistence true\nfrobnicate 3\n").unwrap();
    assert_eq!(warnings.len(), 2);
    assert!(warnings[0].starts_with("test.conf:3:"), "{}", warnings[0]);
    assert!(warnings[1].starts_with("test.conf:4:"), "{}", warnings[1]);
}

#[test]
fn invalid_values_are_errors_naming_file_and_line() {
    for text in [
        "port 99999",
        "allow_anonymous maybe",
        "protocol websockets",
        "listener 80 not-an-ip",
        "listener 80\nprotocol ftp",
        "max_inflight_messages -1",
    ] {
        match parse(text) {
            Err(ConfigError::Invalid { line, .. }) => assert_eq!(line, text.lines().count(), "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn port_sets_default_listener_beside_listeners() {
    let (c, _) = parse("port 1884\nlistener 9001\nprotocol websockets\nwebsockets_path /ws\n").unwrap();
    assert_eq!(c.listeners[0].addr.port(), 1884);
    assert_eq!(c.listeners[1].protocol, Protocol::WebSockets);
    assert_eq!(c.listeners[1].ws.path, "/ws");
}

#[test]
fn command_line_flags() {
    let args = |a: &[&str]| parse_args(a.iter().map(|s| s.to_string()));
    match args(&["-p", "1999", "-b", "127.0.0.1", "--ws-port", "9001", "-v"]).unwrap() {
        Command::Run { config, verbose } => {
            assert!(verbose);
            assert_eq!(config.listeners[0].addr, "127.0.0.1:1999".parse().unwrap());
            assert_eq!(config.listeners[1].addr, "127.0.0.1:9001".parse().unwrap());
            assert_eq!(config.listeners.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(args(&["--help"]).unwrap(), Command::Help));
    assert!(matches!(args(&["--version"]).unwrap(), Command::Version));
    assert!(args(&["--bogus"]).is_err());
    assert!(args(&["-p"]).is_err());
}

#[test]
fn bind_flag_applies_to_every_default_listener() {
    let args = |a: &[&str]| parse_args(a.iter().map(|s| s.to_string()));
    match args(&["-b", "192.0.2.1"]).unwrap() {
        Command::Run { config, .. } => {
            assert_eq!(config.listeners.len(), 2);
            for l in &config.listeners {
                assert_eq!(l.addr.ip(), "192.0.2.1".parse::<IpAddr>().unwrap(), "{l:?}");
            }
            assert_eq!(config.listeners[1].addr.port(), DEFAULT_WS_PORT);
            assert!(!config.local_only);
        }
        other => panic!("{other:?}"),
    }
}

/// mosquitto 2's safe defaults: without a file, loopback only (said at start) and anonymous
/// clients allowed; with a file, anonymous clients refused unless `allow_anonymous true`.
#[test]
fn safe_defaults_local_only_without_file_and_no_anonymous_with_one() {
    let args = |a: &[&str]| parse_args(a.iter().map(|s| s.to_string()));
    for flags in [&[][..], &["-p", "1999"][..]] {
        let Command::Run { config, .. } = args(flags).unwrap() else { panic!() };
        assert!(config.local_only && config.allow_anonymous, "{flags:?}");
        for l in &config.listeners {
            assert!(l.addr.ip().is_loopback(), "{flags:?}: {l:?}");
        }
    }
    let (c, _) = parse("listener 1883\n").unwrap();
    assert!(!c.allow_anonymous && !c.local_only);
    assert!(c.listeners[0].addr.ip().is_unspecified());
    let (c, _) = parse("allow_anonymous true\n").unwrap();
    assert!(c.allow_anonymous);
    assert!(c.listeners.iter().all(|l| l.addr.ip().is_unspecified()));
}

#[test]
fn auth_files_are_global_or_per_listener() {
    let (c, _) =
        parse("password_file /pw\nacl_file /acl\nlistener 1883\nlistener 8083\nallow_anonymous true\n").unwrap();
    for i in 0..2 {
        let a = c.auth_for(i);
        assert_eq!(a.password_file.as_deref(), Some(std::path::Path::new("/pw")));
        assert_eq!(a.acl_file.as_deref(), Some(std::path::Path::new("/acl")));
        assert_eq!(a.allow_anonymous, Some(true), "without per_listener_settings every line is global");
    }
    let (c, _) = parse(
        "per_listener_settings true\nlistener 1883\npassword_file /a\nallow_anonymous false\n\
         listener 8083\nprotocol websockets\nallow_anonymous true\nacl_file /b\n",
    )
    .unwrap();
    let (tcp, ws) = (c.auth_for(0), c.auth_for(1));
    assert_eq!(tcp.password_file.as_deref(), Some(std::path::Path::new("/a")));
    assert_eq!((tcp.allow_anonymous, tcp.acl_file), (Some(false), None));
    assert_eq!((ws.password_file, ws.allow_anonymous), (None, Some(true)));
    assert_eq!(ws.acl_file.as_deref(), Some(std::path::Path::new("/b")));
}

#[test]
fn tls_options_apply_to_their_listener() {
    let (c, warnings) = parse(
        "port 8883\ncertfile /a.crt\nkeyfile /a.key\n\
         listener 1883\n\
         listener 8084\nprotocol websockets\ncertfile /b.crt\nkeyfile /b.key\ncafile /ca.crt\n\
         crlfile /ca.crl\nrequire_certificate true\nuse_identity_as_username true\ntls_version tlsv1.3\nciphers HIGH\n",
    )
    .unwrap();
    assert_eq!(c.listeners.len(), 3);
    let (default, plain, wss) = (&c.listeners[0].tls, &c.listeners[1].tls, &c.listeners[2].tls);
    assert_eq!(c.listeners[0].addr.port(), 8883);
    assert_eq!(default.certfile.as_deref(), Some(std::path::Path::new("/a.crt")));
    assert!(!plain.enabled());
    assert!(wss.enabled() && wss.require_certificate && wss.use_identity_as_username);
    assert_eq!(wss.cafile.as_deref(), Some(std::path::Path::new("/ca.crt")));
    assert_eq!(wss.crlfile.as_deref(), Some(std::path::Path::new("/ca.crl")));
    assert_eq!(wss.min_version, crate::config::TlsVersion::V1_3);
    assert!(warnings.iter().any(|w| w.contains("ciphers")), "{warnings:?}");
    assert!(parse("listener 1\ntls_version sslv3\n").is_err());
    // Without a port line, TLS options before any listener have no listener to go to.
    assert!(parse("certfile /a.crt\nlistener 1883\n").is_err());
}

#[test]
fn limits_parse_with_mosquitto_names_and_syntax() {
    let (c, warnings) = parse(
        "memory_limit 1000000\nmax_queued_bytes 5000\nmessage_size_limit 100\n\
         persistent_client_expiration 2h\nmax_connections 10\nlistener 1884\nmax_connections -1\n\
         listener 1885\nmax_connections 3\nmax_topic_levels 10\nsend_timeout 5\n",
    )
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.memory_limit, MemoryLimit::Bytes(1_000_000));
    assert_eq!(c.max_queued_bytes, 5000);
    assert_eq!(c.message_size_limit, 100);
    assert_eq!(c.persistent_client_expiration, Some(Duration::from_secs(7200)));
    assert_eq!(c.max_connections, Some(10));
    assert_eq!(c.listeners[0].max_connections, None);
    assert_eq!(c.listeners[1].max_connections, Some(3));
    assert_eq!(c.max_topic_levels, 10);
    assert_eq!(c.send_timeout, Duration::from_secs(5));
    assert_eq!(parse("memory_limit 0\n").unwrap().0.memory_limit, MemoryLimit::Unlimited);
    assert_eq!(Config::default().memory_limit, MemoryLimit::Auto);
    for (text, secs) in [("14d", 14 * 86_400), ("1w", 604_800), ("1m", 30 * 86_400), ("1y", 365 * 86_400), ("90", 90)] {
        assert_eq!(parse_duration(text), Ok(Duration::from_secs(secs)), "{text}");
    }
    for bad in ["", "h", "2x", "-1d", "99999999999999999999y"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}
