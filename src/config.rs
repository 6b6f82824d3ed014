//! Configuration: defaults, the command line, and mosquitto.conf syntax (the files our users
//! already have). Options midge does not implement yet are warned about, naming the line, and
//! otherwise ignored; invalid values are errors naming file:line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ws::HandshakeConfig;

pub const DEFAULT_MQTT_PORT: u16 = 1883;
pub const DEFAULT_WS_PORT: u16 = 8083;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Mqtt,
    WebSockets,
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// Handshake settings, for a WebSocket listener.
    pub ws: HandshakeConfig,
    /// mosquitto's per-listener `max_connections`; `None`: the global setting applies.
    pub max_connections: Option<usize>,
    /// TLS (`mqtts`, `wss`) when `certfile` is set.
    pub tls: TlsSettings,
    /// This listener's own `allow_anonymous`, `password_file` and `acl_file`, used with
    /// `per_listener_settings true`.
    pub auth: AuthSettings,
}

/// Who may connect and what they may touch (mosquitto's names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSettings {
    pub allow_anonymous: Option<bool>,
    /// mosquitto_passwd's format.
    pub password_file: Option<PathBuf>,
    /// mosquitto's ACL file format.
    pub acl_file: Option<PathBuf>,
}

/// The lowest TLS version a listener accepts (mosquitto's `tls_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (also what `tlsv1.1` gets: rustls has nothing older than 1.2).
    #[default]
    V1_2,
    V1_3,
}

/// mosquitto's per-listener TLS options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    /// CA certificates that client certificates are verified against.
    pub cafile: Option<PathBuf>,
    /// A directory of CA certificates (PEM files), as `cafile`.
    pub capath: Option<PathBuf>,
    /// Certificate revocation lists (PEM): a client certificate they revoke is refused.
    pub crlfile: Option<PathBuf>,
    /// Clients must present a certificate signed by `cafile`/`capath`.
    pub require_certificate: bool,
    /// The client certificate's subject CN is the username (no password needed).
    pub use_identity_as_username: bool,
    pub min_version: TlsVersion,
}

impl TlsSettings {
    /// Whether the listener speaks TLS: mosquitto turns it on with `certfile`.
    pub fn enabled(&self) -> bool {
        self.certfile.is_some() || self.keyfile.is_some()
    }
}

impl ListenerConfig {
    pub fn mqtt(addr: SocketAddr) -> Self {
        ListenerConfig {
            addr,
            protocol: Protocol::Mqtt,
            ws: HandshakeConfig::default(),
            max_connections: None,
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
        }
    }

    pub fn websockets(addr: SocketAddr) -> Self {
        ListenerConfig { addr, protocol: Protocol::WebSockets, ..ListenerConfig::mqtt(addr) }
    }
}

/// `memory_limit`: the heap the broker may hold before it refuses new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimit {
    /// Not configured: half of physical memory (or of the cgroup's limit, if lower), so a gateway
    /// refuses clients before the kernel kills the broker.
    Auto,
    /// `memory_limit 0`, as in mosquitto.
    Unlimited,
    Bytes(usize),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listeners: Vec<ListenerConfig>,
    /// Largest packet accepted, fixed header included (the spec's maximum by default).
    pub max_packet_size: usize,
    /// Outbound QoS 1/2 messages in flight per client.
    pub max_inflight: usize,
    /// mosquitto's `max_keepalive`: a 5.0 client asking for more (or for none) is told to use
    /// this in CONNACK's Server Keep Alive (3.2.2.3.14). 65535: no limit.
    pub max_keepalive: u16,
    /// QoS 1/2 messages queued per client beyond the in-flight window or while offline; further
    /// messages are dropped.
    pub max_queued: usize,
    /// Bytes of QoS 1/2 messages queued per client (mosquitto's `max_queued_bytes`); 0: no limit
    /// beyond `max_queued`.
    pub max_queued_bytes: usize,
    /// Time allowed from accept to CONNECT (WebSocket handshake included).
    pub connect_timeout: Duration,
    pub allow_anonymous: bool,
    /// Without `per_listener_settings`: for every listener.
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
    /// mosquitto's `pid_file`: the process id is written there once the listeners are bound
    /// (not writable: an error, as in mosquitto) and the file removed on a clean stop.
    pub pid_file: Option<PathBuf>,
    /// mosquitto's `per_listener_settings`: `allow_anonymous`, `password_file` and `acl_file`
    /// after a `listener` line apply to that listener only.
    pub per_listener_settings: bool,
    /// Largest packet accepted before CONNECT is (CONNECT itself, will and credentials
    /// included), so an unauthenticated socket cannot make the broker buffer much.
    pub max_connect_packet_size: usize,
    /// Largest PUBLISH payload accepted (mosquitto's `message_size_limit`); 0: no limit beyond
    /// `max_packet_size`. Larger messages are acknowledged and dropped, as mosquitto does.
    pub message_size_limit: usize,
    /// Most levels in a topic name or filter (mosquitto refuses more than 200).
    pub max_topic_levels: usize,
    /// Longest topic name or filter, in bytes (the wire format allows 65535).
    pub max_topic_length: usize,
    /// Most filters in one SUBSCRIBE; the ones beyond get SUBACK 0x80.
    pub max_subscribe_filters: usize,
    /// Most subscriptions one session holds; 0: no limit.
    pub max_subscriptions: usize,
    /// Unsent output above which a connection is not read (it cannot make us produce more for
    /// it), publishers feeding it are paused, and, once it is a slow consumer, QoS 0 to it is
    /// dropped. Reading resumes below half of it.
    pub output_high_watermark: usize,
    /// A connection whose output makes no progress for this long is closed (its will published).
    pub send_timeout: Duration,
    pub memory_limit: MemoryLimit,
    /// Offline persistent sessions expire after this long (mosquitto's
    /// `persistent_client_expiration`); `None`: never.
    pub persistent_client_expiration: Option<Duration>,
    /// Connections accepted that have not completed CONNECT; beyond this the oldest is dropped.
    pub max_pending_connections: usize,
    /// Connections per listener unless the listener sets its own (mosquitto's `max_connections`);
    /// `None`: limited only by file descriptors.
    pub max_connections: Option<usize>,
    /// Started without a configuration file or `-b`: listening on loopback only (said at start).
    pub local_only: bool,
    /// What the configuration file says that midge ignores (file:line and why). Logged by
    /// `main` once the logger is up: parsing runs before it, and a warning logged then is lost.
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: vec![
                // Local only until configured otherwise, as mosquitto 2 starts without a file.
                ListenerConfig::mqtt(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_MQTT_PORT)),
                ListenerConfig::websockets(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_WS_PORT)),
            ],
            local_only: false,
            max_packet_size: 268_435_455,
            max_inflight: 20,
            max_keepalive: u16::MAX,
            max_queued: 1000,
            max_queued_bytes: 0,
            connect_timeout: Duration::from_secs(10),
            allow_anonymous: true,
            password_file: None,
            pid_file: None,
            acl_file: None,
            per_listener_settings: false,
            max_connect_packet_size: 16 * 1024,
            message_size_limit: 0,
            max_topic_levels: 200,
            max_topic_length: 65535,
            max_subscribe_filters: 1000,
            max_subscriptions: 1000,
            output_high_watermark: 1024 * 1024,
            send_timeout: Duration::from_secs(30),
            memory_limit: MemoryLimit::Auto,
            persistent_client_expiration: None,
            max_pending_connections: 1024,
            max_connections: None,
            warnings: Vec::new(),
        }
    }
}

impl Config {
    /// The authentication settings that apply to listener `index`: its own with
    /// `per_listener_settings` (the global ones where it sets none), else the global ones.
    pub fn auth_for(&self, index: usize) -> AuthSettings {
        let global = AuthSettings {
            allow_anonymous: Some(self.allow_anonymous),
            password_file: self.password_file.clone(),
            acl_file: self.acl_file.clone(),
        };
        match self.listeners.get(index).filter(|_| self.per_listener_settings) {
            Some(l) => AuthSettings {
                allow_anonymous: l.auth.allow_anonymous.or(global.allow_anonymous),
                password_file: l.auth.password_file.clone().or(global.password_file),
                acl_file: l.auth.acl_file.clone().or(global.acl_file),
            },
            None => global,
        }
    }

    /// A TCP and a WebSocket listener on 127.0.0.1, ephemeral ports (for tests).
    pub fn loopback_ephemeral() -> Config {
        let lo = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        Config { listeners: vec![ListenerConfig::mqtt(lo), ListenerConfig::websockets(lo)], ..Config::default() }
    }

    /// Read a mosquitto.conf-style file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.to_path_buf(), error: e.to_string() })?;
        let (mut config, warnings) = parse_mosquitto_conf(&text, path)?;
        config.warnings = warnings;
        Ok(config)
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        error: String,
    },
    /// A line whose value is invalid.
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A bad command-line argument.
    Usage(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            ConfigError::Invalid { path, line, message } => write!(f, "{}:{line}: {message}", path.display()),
            ConfigError::Usage(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// mosquitto options we know and will implement in later issues: accepted with a warning.
const LATER_OPTIONS: &[&str] = &[
    "persistence",
    "persistence_location",
    "persistence_file",
    "autosave_interval",
    "log_dest",
    "log_type",
    "log_timestamp",
    "log_timestamp_format",
    "connection_messages",
    "sys_interval",
    "bridge_cafile",
    "connection",
    "address",
    "topic",
    "retain_available",
    "set_tcp_nodelay",
    "user",
    "include_dir",
    "websockets_log_level",
    "http_dir",
    "socket_domain",
    "mount_point",
    "use_username_as_clientid",
    "queue_qos0_messages",
    "upgrade_outgoing_qos",
    "allow_zero_length_clientid",
    "auto_id_prefix",
    "max_inflight_bytes",
    "check_retain_source",
    "plugin",
    "auth_plugin",
    "websockets_headers_size",
    "allow_duplicate_messages",
    // TLS options rustls or midge does not have (TLS-PSK suites, DH parameters, OCSP stapling,
    // the whole subject DN as user name).
    "psk_hint",
    "psk_file",
    "dhparamfile",
    "ocsp_data",
    "use_subject_as_username",
];

/// Parse mosquitto.conf syntax. Returns the config and one warning per ignored line.
pub fn parse_mosquitto_conf(text: &str, path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
    // mosquitto 2: with a configuration file, anonymous clients are refused unless allowed.
    let mut config = Config { listeners: Vec::new(), allow_anonymous: false, ..Config::default() };
    let mut warnings = Vec::new();
    // `port` sets the default listener; it is added at the end unless listeners replace it.
    let mut default_port: Option<u16> = None;
    let mut saw_listener = false;
    // TLS options seen before any `listener` line: they belong to the `port` listener.
    let mut default_tls = TlsSettings::default();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(key) = words.next() else { continue };
        let args: Vec<&str> = words.collect();
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), line: line_no, message };
        let one = |what: &str| -> Result<&str, ConfigError> {
            match args.as_slice() {
                [v] => Ok(*v),
                _ => Err(invalid(format!("{key} takes one {what}"))),
            }
        };
        match key {
            "port" => {
                let v = one("port number")?;
                default_port = Some(parse_port(v).map_err(&invalid)?);
            }
            "bind_address" => {
                let v = one("address")?;
                let ip: IpAddr = v.parse().map_err(|_| invalid(format!("invalid bind_address '{v}'")))?;
                if let Some(first) = config.listeners.first_mut().filter(|_| !saw_listener) {
                    first.addr.set_ip(ip);
                } else {
                    config.listeners.insert(0, ListenerConfig::mqtt(SocketAddr::new(ip, DEFAULT_MQTT_PORT)));
                }
            }
            "listener" => {
                let (port, addr) = match args.as_slice() {
                    [p] => (*p, None),
                    [p, a] => (*p, Some(*a)),
                    _ => return Err(invalid("listener takes a port and an optional bind address".into())),
                };
                let port = parse_port(port).map_err(&invalid)?;
                let ip = match addr {
                    None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    Some("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    Some(a) => a.parse().map_err(|_| invalid(format!("invalid listener address '{a}'")))?,
                };
                saw_listener = true;
                config.listeners.push(ListenerConfig::mqtt(SocketAddr::new(ip, port)));
            }
            "protocol" => {
                let v = one("protocol")?;
                let Some(last) = config.listeners.last_mut().filter(|_| saw_listener) else {
                    return Err(invalid("protocol must follow a listener line".into()));
                };
                last.protocol = match v {
                    "mqtt" => Protocol::Mqtt,
                    "websockets" => Protocol::WebSockets,
                    other => return Err(invalid(format!("unknown protocol '{other}' (mqtt or websockets)"))),
                };
            }
            // The current listener's own (used with per_listener_settings), and global.
            "allow_anonymous" => {
                let v = parse_bool(one("true/false")?).map_err(&invalid)?;
                if !(saw_listener && config.per_listener_settings) {
                    config.allow_anonymous = v;
                }
                if let Some(last) = config.listeners.last_mut().filter(|_| saw_listener) {
                    last.auth.allow_anonymous = Some(v);
                }
            }
            "pid_file" => config.pid_file = Some(PathBuf::from(one("file name")?)),
            "password_file" | "acl_file" => {
                let v = PathBuf::from(one("file name")?);
                let (global, own) = match key {
                    "password_file" => {
                        (&mut config.password_file, config.listeners.last_mut().map(|l| &mut l.auth.password_file))
                    }
                    _ => (&mut config.acl_file, config.listeners.last_mut().map(|l| &mut l.auth.acl_file)),
                };
                // With per_listener_settings (set before the listeners, as mosquitto wants it),
                // a listener's line is its own; otherwise every line is global.
                if !(saw_listener && config.per_listener_settings) {
                    *global = Some(v.clone());
                }
                if let Some(own) = own.filter(|_| saw_listener) {
                    *own = Some(v);
                }
            }
            "per_listener_settings" => {
                config.per_listener_settings = parse_bool(one("true/false")?).map_err(&invalid)?
            }
            "max_inflight_messages" => {
                let n = parse_number(one("number")?).map_err(&invalid)?;
                // mosquitto: 0 means no limit.
                config.max_inflight = if n == 0 { u16::MAX as usize } else { n };
            }
            "max_keepalive" => {
                let n = parse_number(one("number")?).map_err(&invalid)?;
                config.max_keepalive = u16::try_from(n).map_err(|_| invalid("at most 65535".into()))?;
            }
            "max_queued_messages" => {
                let n = parse_number(one("number")?).map_err(&invalid)?;
                config.max_queued = if n == 0 { usize::MAX } else { n };
            }
            "max_packet_size" => {
                let n = parse_number(one("number")?).map_err(&invalid)?;
                if n < 20 {
                    return Err(invalid("max_packet_size must be at least 20".into()));
                }
                config.max_packet_size = n;
            }
            "max_queued_bytes" => config.max_queued_bytes = parse_number(one("number")?).map_err(&invalid)?,
            "message_size_limit" => config.message_size_limit = parse_number(one("number")?).map_err(&invalid)?,
            "memory_limit" => {
                config.memory_limit = match parse_number(one("number of bytes")?).map_err(&invalid)? {
                    0 => MemoryLimit::Unlimited,
                    n => MemoryLimit::Bytes(n),
                }
            }
            "persistent_client_expiration" => {
                let d = parse_duration(one("duration (e.g. 2h, 14d)")?).map_err(&invalid)?;
                config.persistent_client_expiration = Some(d);
            }
            "max_connections" => {
                let v = one("number")?;
                // mosquitto: -1 means no limit.
                let n = if v == "-1" { None } else { Some(parse_number(v).map_err(&invalid)?) };
                match config.listeners.last_mut().filter(|_| saw_listener) {
                    Some(last) => last.max_connections = n,
                    None => config.max_connections = n,
                }
            }
            // midge's own limits, in the same style.
            "max_connect_packet_size"
            | "max_topic_levels"
            | "max_topic_length"
            | "max_subscribe_filters"
            | "max_subscriptions"
            | "output_high_watermark"
            | "max_pending_connections" => {
                let n = parse_number(one("number")?).map_err(&invalid)?;
                let at_least = |min: usize| {
                    if n < min {
                        Err(invalid(format!("{key} must be at least {min}")))
                    } else {
                        Ok(n)
                    }
                };
                match key {
                    "max_connect_packet_size" => config.max_connect_packet_size = at_least(20)?,
                    "max_topic_levels" => config.max_topic_levels = at_least(1)?,
                    "max_topic_length" => config.max_topic_length = at_least(1)?.min(65535),
                    "max_subscribe_filters" => config.max_subscribe_filters = at_least(1)?,
                    "max_subscriptions" => config.max_subscriptions = n,
                    "output_high_watermark" => config.output_high_watermark = at_least(4096)?,
                    _ => config.max_pending_connections = at_least(1)?,
                }
            }
            "send_timeout" => {
                let secs = parse_number(one("seconds")?).map_err(&invalid)?;
                if secs == 0 {
                    return Err(invalid("send_timeout must be at least 1 second".into()));
                }
                config.send_timeout = Duration::from_secs(secs as u64);
            }
            // midge's own WebSocket settings, in the same style; they apply to the last listener.
            "websockets_path" | "websockets_origin" | "websockets_trusted_proxy" | "websockets_require_subprotocol" => {
                let v = one("value")?;
                let Some(last) = config.listeners.last_mut().filter(|_| saw_listener) else {
                    return Err(invalid(format!("{key} must follow a listener line")));
                };
                match key {
                    "websockets_path" if v.starts_with('/') => last.ws.path = v.to_string(),
                    "websockets_path" => return Err(invalid("websockets_path must start with '/'".into())),
                    "websockets_origin" => last.ws.allowed_origins.push(v.to_string()),
                    "websockets_trusted_proxy" => last.ws.trusted_proxies.push(v.to_string()),
                    _ => last.ws.require_subprotocol = parse_bool(v).map_err(&invalid)?,
                }
            }
            // TLS options apply to the last listener, or to the default one before any listener.
            "certfile"
            | "keyfile"
            | "cafile"
            | "capath"
            | "crlfile"
            | "require_certificate"
            | "use_identity_as_username"
            | "tls_version"
            | "ciphers"
            | "ciphers_tls1.3" => {
                let v = one("value")?;
                let tls = match config.listeners.last_mut().filter(|_| saw_listener) {
                    Some(last) => &mut last.tls,
                    None => &mut default_tls,
                };
                match key {
                    "certfile" => tls.certfile = Some(PathBuf::from(v)),
                    "keyfile" => tls.keyfile = Some(PathBuf::from(v)),
                    "cafile" => tls.cafile = Some(PathBuf::from(v)),
                    "capath" => tls.capath = Some(PathBuf::from(v)),
                    "crlfile" => tls.crlfile = Some(PathBuf::from(v)),
                    "require_certificate" => tls.require_certificate = parse_bool(v).map_err(&invalid)?,
                    "use_identity_as_username" => tls.use_identity_as_username = parse_bool(v).map_err(&invalid)?,
                    "tls_version" => {
                        tls.min_version = match v {
                            "tlsv1.3" => TlsVersion::V1_3,
                            "tlsv1.2" => TlsVersion::V1_2,
                            "tlsv1.1" | "tlsv1" => {
                                warnings.push(format!(
                                    "{}:{line_no}: {v} is not offered (rustls speaks TLS 1.2 and 1.3); using tlsv1.2",
                                    path.display()
                                ));
                                TlsVersion::V1_2
                            }
                            other => return Err(invalid(format!("unknown tls_version '{other}'"))),
                        }
                    }
                    _ => warnings.push(format!(
                        "{}:{line_no}: {key} takes OpenSSL cipher names; rustls' safe default suites are used",
                        path.display()
                    )),
                }
            }
            k if LATER_OPTIONS.contains(&k) => {
                warnings.push(format!("{}:{line_no}: option '{k}' is not supported yet; ignored", path.display()))
            }
            k => warnings.push(format!("{}:{line_no}: unknown option '{k}'; ignored", path.display())),
        }
    }
    if let Some(port) = default_port {
        // mosquitto: `port` is the default listener, beside any `listener` lines.
        let mut listener = ListenerConfig::mqtt(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
        listener.tls = std::mem::take(&mut default_tls);
        config.listeners.insert(0, listener);
    }
    if default_tls.enabled() {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            line: 0,
            message:
                "certfile/keyfile given before any listener and without a port line; put them after a listener line"
                    .into(),
        });
    }
    if config.listeners.is_empty() {
        // A file without listeners: the defaults, on every interface (the file is the choice).
        config.listeners = Config::default().listeners;
        for l in &mut config.listeners {
            l.addr.set_ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        }
    }
    Ok((config, warnings))
}

fn parse_port(v: &str) -> Result<u16, String> {
    v.parse::<u16>().map_err(|_| format!("invalid port '{v}'"))
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, got '{v}'")),
    }
}

fn parse_number(v: &str) -> Result<usize, String> {
    v.parse::<usize>().map_err(|_| format!("invalid number '{v}'"))
}

/// mosquitto's duration syntax: a number and a unit of h, d, w, m (months of 30 days) or y;
/// a bare number is seconds.
fn parse_duration(v: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration '{v}' (a number followed by h, d, w, m or y)");
    let (digits, unit) = match v.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (v.get(..i).unwrap_or(""), Some(c)),
        _ => (v, None),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        None => 1,
        Some('h') => 3600,
        Some('d') => 86_400,
        Some('w') => 7 * 86_400,
        Some('m') => 30 * 86_400,
        Some('y') => 365 * 86_400,
        Some(_) => return Err(bad()),
    };
    n.checked_mul(unit_secs).map(Duration::from_secs).ok_or_else(bad)
}

/// What the command line asks for.
#[derive(Debug, Clone)]
pub enum Command {
    Run { config: Box<Config>, verbose: bool },
    Help,
    Version,
}

pub const USAGE: &str = "\
Usage: midge [-c CONFIG] [-p PORT] [-b ADDRESS] [--ws-port PORT] [-v]

  -c, --config FILE   read a mosquitto.conf-style configuration file
  -p, --port PORT     MQTT over TCP port (default 1883)
  -b, --bind ADDRESS  address the default, -p and --ws-port listeners bind to (default
                      127.0.0.1 without a configuration file: local only; -b 0.0.0.0 opens it)
  -w, --ws-port PORT  also serve MQTT over WebSocket on PORT (path /mqtt)
  -v, --verbose       debug logging (RUST_LOG overrides)
  -h, --help          print this help
  -V, --version       print the version
";

/// Parse command-line arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, ConfigError> {
    let mut file: Option<PathBuf> = None;
    let mut port: Option<u16> = None;
    let mut ws_port: Option<u16> = None;
    let mut bind: Option<IpAddr> = None;
    let mut verbose = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| ConfigError::Usage(format!("{name} needs a value")));
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-v" | "--verbose" => verbose = true,
            "-c" | "--config" => file = Some(PathBuf::from(value(&arg)?)),
            "-p" | "--port" => port = Some(parse_port(&value(&arg)?).map_err(ConfigError::Usage)?),
            "-w" | "--ws-port" => ws_port = Some(parse_port(&value(&arg)?).map_err(ConfigError::Usage)?),
            "-b" | "--bind" => {
                let v = value(&arg)?;
                bind = Some(v.parse().map_err(|_| ConfigError::Usage(format!("invalid address '{v}'")))?);
            }
            other => return Err(ConfigError::Usage(format!("unknown argument '{other}'\n\n{USAGE}"))),
        }
    }
    let mut config = match &file {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let default_ip = if file.is_some() { Ipv4Addr::UNSPECIFIED } else { Ipv4Addr::LOCALHOST };
    let ip = bind.unwrap_or(IpAddr::V4(default_ip));
    config.local_only = file.is_none() && bind.is_none();
    if let Some(p) = port {
        // -p replaces the configured MQTT listeners, like mosquitto's -p.
        config.listeners.retain(|l| l.protocol != Protocol::Mqtt);
        config.listeners.insert(0, ListenerConfig::mqtt(SocketAddr::new(ip, p)));
    }
    if let Some(p) = ws_port {
        config.listeners.retain(|l| l.protocol != Protocol::WebSockets);
        config.listeners.push(ListenerConfig::websockets(SocketAddr::new(ip, p)));
    }
    if let Some(ip) = bind {
        // -b binds every listener midge made itself: the defaults when no file configured any,
        // and those of -p / --ws-port. A file's own `listener` lines keep their addresses.
        let defaults = file.is_none();
        for l in &mut config.listeners {
            let from_flags = (l.protocol == Protocol::Mqtt && port.is_some())
                || (l.protocol == Protocol::WebSockets && ws_port.is_some());
            if defaults || from_flags {
                l.addr.set_ip(ip);
            }
        }
    }
    Ok(Command::Run { config: Box::new(config), verbose })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
