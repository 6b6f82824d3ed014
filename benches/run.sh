#!/usr/bin/env bash
# `make bench`: midge vs mosquitto vs rumqttd, MQTT 3.1.1 over TCP and WebSocket, plain and under
# TLS, loopback only.
#
# Installs the peers when missing (Debian `mosquitto`; rumqttd 0.20.0 via `cargo install` into
# a cache dir outside the repo), builds midge and the load generator (benches/loadgen/) in
# release mode, pins every broker to one core and the load generator to another (taskset),
# runs every scenario against every broker in interleaved rounds (fresh broker per
# measurement), and prints a table of medians; JSON goes to bench-results/results.json.
#
# Rows (ids for BENCH_SCENARIOS): fanin-q0-PAYLOAD-TR, fanin-q1-PAYLOAD-TR, flood-PAYLOAD-TR,
# fanout-PAYLOAD-TR, latency-TR, conns-TR (TR = tcp or ws). fanin/fanout are closed loop (a
# window of outstanding deliveries: they measure capacity without overloading anyone). flood
# is open loop: 4 QoS 0 publishers write as fast as the broker's sockets accept, one wildcard
# subscriber reads as fast as it can; its metric is goodput (received/s) and its notes give
# "published/s" (accepted by the kernel: early in a run that includes filling the broker's
# receive queues, so at 16 B it can read 0 for a slow broker). A broker that is the
# bottleneck should push back on the publishers (TCP flow control) rather than drop.
# Every row has a loss column: messages sent x fan-out and not received after the drain, as
# a percentage, mosquitto/rumqttd/midge ("0" = nothing lost, "-" = broker not run).
#
# MQTT 5.0 rows (fanin-q0-16-TR-v5, fanin-q1-16-TR-v5, fanout-16-TR-v5): the same scenarios with
# every client speaking 5.0 (loadgen --mqtt 5); midge and mosquitto (rumqttd: n/a).
#
# ACL rows (fanin-q0-16-TR-acl, fanout-16-TR-acl, TR = tcp or ws): the same scenarios with an
# acl_file of BENCH_ACL_USERS users x 10 rules plus an anonymous section and two patterns
# (10,013 rules by default), loaded by midge and mosquitto; compare with the rows without -acl.
#
# TLS rows (TR = mqtts: MQTT over TLS; wss: WebSocket over TLS): fanin-q0-16-TR,
# fanin-q0-65536-TR, fanout-16-TR, conns-TR. One PKI per run (tests/tls/make-pki.sh into the
# bench tmp dir: a CA and an ECDSA P-256 server certificate for 127.0.0.1); for these rows
# every broker gets two more listeners on it (midge and mosquitto: `certfile`/`keyfile` on a
# `listener`, with `protocol websockets` for wss; rumqttd: [v4.2.tls]/[ws.2.tls]); the loadgen
# (--tls CA) trusts the CA, checks 127.0.0.1 as an IP SAN and never resumes a session, so each
# connect is a full handshake. conns-TR opens BENCH_TLS_CONNS (3000) idle subscribers: RSS
# KB/conn is what an idle TLS connection costs the broker (compare conns-tcp/conns-ws). The
# large fan-in rows note their goodput in GB/s against `openssl speed -evp CIPHER` at 16 KB
# blocks (a full TLS record) on the broker core, run once per run for the cipher suite the
# connections negotiated (the loadgen reports it: rustls' default order puts AES-256-GCM first).
#
# Knobs (environment): BENCH_ROUNDS (3), BENCH_DURATION (0.5 s per throughput measurement),
# BENCH_WARMUP (0.2 s), BENCH_LAT_DURATION (2 s), BENCH_LAT_RATE (10000 msg/s),
# BENCH_CONNS (10000), BENCH_CONN_ROUNDS (1), BENCH_CONN_TIMEOUT (20 s), BENCH_FANOUT_SUBS
# (1000), BENCH_PAYLOADS ("16 1024 65536"), BENCH_FLOOD_PAYLOADS ("1024"; e.g. "16 1024"),
# BENCH_FLOOD_DURATION (= BENCH_DURATION), BENCH_FLOOD_WARMUP (= BENCH_WARMUP),
# BENCH_TLS_TRANSPORTS ("mqtts wss"; "" drops the TLS rows), BENCH_TLS_PAYLOADS ("16 65536": TLS
# fan-in), BENCH_TLS_FANOUT_PAYLOADS ("16"), BENCH_TLS_CONNS (3000, at most BENCH_CONNS),
# BENCH_ACL_USERS (1000: users of the ACL rows' acl_file, 10 rules each),
# BENCH_BROKER_CORE (0), BENCH_LOADGEN_CORE (1),
# BENCH_ONLY (comma list of brokers: mosquitto,mosquitto-nodelay,rumqttd,midge), MIDGE_BIN (use this
# midge binary instead of building one: A/B runs against an older build), LOADGEN_BIN (the same
# for the load generator),
# BENCH_SCENARIOS (comma list of row-id prefixes, e.g. "fanin-q0,flood,fanout,latency,conns";
# a complete row id such as "fanout-16-ws" selects only that row, not fanout-16-wss;
# "footprint" selects the idle footprint section; default: everything),
# MIDGE_BENCH_CACHE (~/.cache/midge-bench).
# Just the flood rows: BENCH_SCENARIOS=flood make bench (add BENCH_ONLY=midge,mosquitto to
# skip rumqttd).
#
# Both mosquitto variants (as shipped = Nagle on, and set_tcp_nodelay true) run in the first
# round; later rounds re-run only the variant that did better on that row (the table reports
# the better one anyway). The default run takes about 7.5 minutes of measurements on 2 cores
# (2.5 of them the TLS rows).
set -uo pipefail
BENCH_T0=$(date +%s.%N)
export BENCH_T0

cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${MIDGE_BENCH_CACHE:-$HOME/.cache/midge-bench}
OUT=$ROOT/bench-results
mkdir -p "$CACHE" "$OUT"
log() { echo "[bench] $*" >&2; }

# 10k client sockets in the load generator and 10k in each broker.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "fd limit: $(ulimit -n)"
if [ "$(ulimit -n)" -lt 10100 ]; then log "warning: fd limit below 10100; the 10k-connection scenario may fail"; fi

# ---------------------------------------------------------------- peers
MOSQUITTO=$(command -v mosquitto || true)
[ -z "$MOSQUITTO" ] && [ -x /usr/sbin/mosquitto ] && MOSQUITTO=/usr/sbin/mosquitto
if [ -z "$MOSQUITTO" ]; then
    log "installing mosquitto (apt)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    (timeout 300 $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 300 $SUDO apt-get install -y -qq mosquitto) >&2 || log "mosquitto install failed"
    MOSQUITTO=$(command -v mosquitto || true)
    [ -z "$MOSQUITTO" ] && [ -x /usr/sbin/mosquitto ] && MOSQUITTO=/usr/sbin/mosquitto
fi

RUMQTTD=$CACHE/rumqttd/bin/rumqttd
if [ ! -x "$RUMQTTD" ]; then
    log "installing rumqttd 0.20.0 into $CACHE/rumqttd (takes a few minutes)"
    (cd /tmp && timeout 900 cargo install rumqttd --version 0.20.0 --locked --root "$CACHE/rumqttd" >&2) \
        || (cd /tmp && timeout 900 cargo install rumqttd --version 0.20.0 --root "$CACHE/rumqttd" >&2) \
        || log "rumqttd install failed: its column will read n/a"
fi
[ -x "$RUMQTTD" ] || RUMQTTD=""

# ---------------------------------------------------------------- builds
MIDGE=""
if [ -n "${MIDGE_BIN:-}" ]; then
    # A/B against another build of midge (e.g. the previous commit's), same loadgen and peers.
    MIDGE=$(realpath "$MIDGE_BIN")
    log "using midge binary $MIDGE"
else
    log "building midge (release)"
    if cargo build --release --bin midge >&2 2>"$OUT/build-midge.log" || cargo build --release >&2 2>>"$OUT/build-midge.log"; then
        [ -x target/release/midge ] && MIDGE=$ROOT/target/release/midge
    fi
fi
[ -n "$MIDGE" ] || log "midge did not build (see bench-results/build-midge.log): its column will read n/a"

build_loadgen() {
log "building the load generator"
LOADGEN=$(cargo bench --bench loadgen --no-run --message-format=json 2>"$OUT/build-loadgen.log" \
    | python3 -c 'import sys,json
for l in sys.stdin:
    try: m=json.loads(l)
    except Exception: continue
    if m.get("reason")=="compiler-artifact" and m.get("target",{}).get("name")=="loadgen" and m.get("executable"): print(m["executable"])' | tail -1)
if [ -z "$LOADGEN" ] || [ ! -x "$LOADGEN" ]; then
    # The midge library does not compile (a bench target links it): build the loadgen alone.
    log "cargo bench --no-run failed; building the loadgen as a standalone crate in $CACHE/loadgen"
    mkdir -p "$CACHE/loadgen/src"
    cp benches/loadgen/*.rs "$CACHE/loadgen/src/"
    cat > "$CACHE/loadgen/Cargo.toml" <<'EOF'
[package]
name = "loadgen"
version = "0.1.0"
edition = "2021"
[dependencies]
mio = { version = "1", features = ["os-poll", "net"] }
httparse = "1"
sha1 = { version = "0.10", default-features = false }
base64 = "0.22"
# mqtts/wss rows: the same rustls (ring provider) as midge, as a client.
rustls = { version = "0.23", default-features = false, features = ["ring", "std", "tls12", "logging"] }
[profile.release]
opt-level = 3
codegen-units = 1
panic = "abort"
EOF
    (cd "$CACHE/loadgen" && cargo build --release >&2 2>>"$OUT/build-loadgen.log") && LOADGEN=$CACHE/loadgen/target/release/loadgen
fi
}
if [ -n "${LOADGEN_BIN:-}" ]; then
    # A/B of load generator builds against the same brokers.
    LOADGEN=$(realpath "$LOADGEN_BIN")
    log "using load generator binary $LOADGEN"
else
    build_loadgen
fi
if [ -z "$LOADGEN" ] || [ ! -x "$LOADGEN" ]; then log "load generator did not build; see bench-results/build-loadgen.log"; exit 1; fi
log "loadgen: $LOADGEN"

export MOSQUITTO RUMQTTD MIDGE LOADGEN OUT
exec python3 - <<'PYEOF'
import json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

env = os.environ
ROUNDS = int(env.get("BENCH_ROUNDS", "3"))
DUR = float(env.get("BENCH_DURATION", "0.5"))
WARM = float(env.get("BENCH_WARMUP", "0.2"))
LAT_DUR = float(env.get("BENCH_LAT_DURATION", "2"))
LAT_RATE = int(env.get("BENCH_LAT_RATE", "10000"))
CONNS = int(env.get("BENCH_CONNS", "10000"))
CONN_ROUNDS = int(env.get("BENCH_CONN_ROUNDS", "1"))
CONN_TIMEOUT = float(env.get("BENCH_CONN_TIMEOUT", "20"))
FAN_SUBS = int(env.get("BENCH_FANOUT_SUBS", "1000"))
PAYLOADS = [int(x) for x in env.get("BENCH_PAYLOADS", "16 1024 65536").split()]
FLOOD_PAYLOADS = [int(x) for x in env.get("BENCH_FLOOD_PAYLOADS", "1024").split()]
FLOOD_DUR = float(env.get("BENCH_FLOOD_DURATION", str(DUR)))
FLOOD_WARM = float(env.get("BENCH_FLOOD_WARMUP", str(WARM)))
BCORE = env.get("BENCH_BROKER_CORE", "0")
LCORE = env.get("BENCH_LOADGEN_CORE", "1")
TLS_TRANSPORTS = env.get("BENCH_TLS_TRANSPORTS", "mqtts wss").split()
TLS_PAYLOADS = [int(x) for x in env.get("BENCH_TLS_PAYLOADS", "16 65536").split()]
TLS_FANOUT_PAYLOADS = [int(x) for x in env.get("BENCH_TLS_FANOUT_PAYLOADS", "16").split()]
# Full handshakes are slow next to plain connects (midge ~3,000/s here, mosquitto 1,000-2,000/s,
# rumqttd ~600/s, against 30,000+/s on plain TCP): 3000 keeps both TLS connection rows to about
# 40 s of the default run (10000 would take rumqttd most of BENCH_CONN_TIMEOUT); RSS KB/conn
# barely depends on the count (midge: 8.7 at 2000, 8.5 at 5000).
TLS_CONNS = int(env.get("BENCH_TLS_CONNS", str(min(CONNS, 3000))))
ONLY = [x for x in env.get("BENCH_ONLY", "").split(",") if x]
SCEN = [x.strip() for x in env.get("BENCH_SCENARIOS", "").split(",") if x.strip()]
LOADGEN, OUT = env["LOADGEN"], env["OUT"]
INFLIGHT, QUEUED = 1000, 1000000   # same limits for every broker
TMP = tempfile.mkdtemp(prefix="midge-bench-")
PKI = os.path.join(TMP, "pki")   # made below when a TLS row is selected
TLS = ("mqtts", "wss")
T_START = time.time()

def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)

# ------------------------------------------------------------ brokers
def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s); ports.append(s.getsockname()[1])
    for s in socks: s.close()
    return ports

def tls_listeners(ports):
    """mqtts and wss listeners in mosquitto.conf syntax (midge reads the same), if wanted."""
    if "mqtts" not in ports:
        return ""
    files = f"certfile {PKI}/server.crt\nkeyfile {PKI}/server.key\n"
    return (f"listener {ports['mqtts']} 127.0.0.1\n{files}"
            f"listener {ports['wss']} 127.0.0.1\nprotocol websockets\n{files}")

def acl_lines(ports):
    """`acl_file` for the ACL rows (midge and mosquitto read the same file)."""
    return f"acl_file {ports['acl']}\n" if "acl" in ports else ""

def mosquitto_conf(ports, nodelay):
    return f"""# generated by benches/run.sh
per_listener_settings false
allow_anonymous true
persistence false
log_dest none
max_connections -1
max_inflight_messages {INFLIGHT}
max_queued_messages {QUEUED}
max_queued_bytes 0
message_size_limit 0
set_tcp_nodelay {"true" if nodelay else "false"}
{acl_lines(ports)}listener {ports['tcp']} 127.0.0.1
listener {ports['ws']} 127.0.0.1
protocol websockets
{tls_listeners(ports)}"""

def midge_conf(ports):
    return f"""# generated by benches/run.sh (mosquitto.conf syntax)
allow_anonymous true
max_inflight_messages {INFLIGHT}
max_queued_messages {QUEUED}
{acl_lines(ports)}listener {ports['tcp']} 127.0.0.1
listener {ports['ws']} 127.0.0.1
protocol websockets
{tls_listeners(ports)}"""

def rumqttd_conf(ports):
    conn = f"""connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = {INFLIGHT}
    dynamic_filters = true"""
    def server(section, name, port, tls):
        t = f'\n    [{section}.tls]\n    certpath = "{PKI}/server.crt"\n    keypath = "{PKI}/server.key"' if tls else ""
        return f"""[{section}]
name = "{name}"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 0{t}
    [{section}.connections]
    {conn}
"""
    servers = server("v4.1", "v4-1", ports["tcp"], False) + server("ws.1", "ws-1", ports["ws"], False)
    if "mqtts" in ports:
        servers += server("v4.2", "v4-2", ports["mqtts"], True) + server("ws.2", "ws-2", ports["wss"], True)
    return f"""# generated by benches/run.sh
id = 0
[router]
id = 0
max_connections = 30000
max_outgoing_packet_count = 200
max_segment_size = 33554432
max_segment_count = 4
{servers}"""

BROKERS = {}
if env.get("MOSQUITTO"):
    BROKERS["mosquitto"] = dict(bin=env["MOSQUITTO"], conf=lambda ports: mosquitto_conf(ports, False), ext="conf",
                                cmd=lambda b, c: [b, "-c", c])
    BROKERS["mosquitto-nodelay"] = dict(bin=env["MOSQUITTO"], conf=lambda ports: mosquitto_conf(ports, True), ext="conf",
                                        cmd=lambda b, c: [b, "-c", c])
if env.get("RUMQTTD"):
    BROKERS["rumqttd"] = dict(bin=env["RUMQTTD"], conf=rumqttd_conf, ext="toml", cmd=lambda b, c: [b, "-q", "-c", c])
if env.get("MIDGE"):
    BROKERS["midge"] = dict(bin=env["MIDGE"], conf=midge_conf, ext="conf", cmd=lambda b, c: [b, "-c", c])
if ONLY:
    BROKERS = {k: v for k, v in BROKERS.items() if k in ONLY}
NAMES = list(BROKERS)
log("brokers:", ", ".join(NAMES) or "none")

def listening(ports):
    # A connect probe per port (refused until the listener is up); cheap and exact.
    for p in ports:
        s = socket.socket()
        try:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", p)) != 0:
                return False
        finally:
            s.close()
    return True

class Running:
    def __init__(self, name, tls=False, acl=False):
        """A fresh broker; `tls` adds mqtts and wss listeners (only for the TLS rows, so the
        other rows and the startup time measure the same configuration as before)."""
        b = BROKERS[name]
        self.name = name
        kinds = ("tcp", "ws") + (TLS if tls else ())
        self.ports = dict(zip(kinds, free_ports(len(kinds))))
        if acl:
            self.ports["acl"] = ACL_FILE
        conf = os.path.join(TMP, f"{name}.{b['ext']}")
        with open(conf, "w") as f: f.write(b["conf"](self.ports))
        self.logf = open(os.path.join(TMP, f"{name}.log"), "ab")
        t0 = time.perf_counter()
        self.p = subprocess.Popen(["taskset", "-c", BCORE] + b["cmd"](b["bin"], conf), stdout=self.logf,
                                  stderr=self.logf, stdin=subprocess.DEVNULL, start_new_session=True)
        self.startup_ms = None
        deadline = t0 + 15
        while time.perf_counter() < deadline:
            if listening([p for k, p in self.ports.items() if k != "acl"]):
                self.startup_ms = (time.perf_counter() - t0) * 1000
                break
            if self.p.poll() is not None:
                break
            time.sleep(0.0005)
        self.ok = self.startup_ms is not None
        if not self.ok:
            log(f"{name} did not start listening (exit {self.p.poll()}); log: {TMP}/{name}.log")
    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try: self.p.wait(3)
            except subprocess.TimeoutExpired:
                self.p.kill(); self.p.wait(3)
        self.logf.close()

def run_loadgen(br, tr, args, timeout):
    cmd = ["taskset", "-c", LCORE, LOADGEN] + args + ["--addr", f"127.0.0.1:{br.ports[tr]}", "--broker-pid", str(br.p.pid)]
    if tr in TLS:
        cmd += ["--tls", os.path.join(PKI, "ca.crt")]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": "loadgen timeout"}
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("{"):
            try: return json.loads(line)
            except ValueError: pass
    return {"error": f"loadgen exit {r.returncode}: {r.stderr.strip()[-300:]}"}

# ------------------------------------------------------------ scenarios
# (row id, label, loadgen args, timeout, metrics[(key, label, higher_is_better)])
ROWS = []
for tr in ("tcp", "ws"):
    base = ["--transport", tr, "--warmup", str(WARM), "--duration", str(DUR), "--drain", "1"]
    for pl in PAYLOADS:
        ROWS.append((f"fanin-q0-{pl}-{tr}", f"fan-in 4->1 QoS0 {pl}B", tr, ["--scenario", "fanin", "--qos", "0", "--payload", str(pl)] + base, 30,
                     [("msgs_per_sec", "msg/s", True)]))
    for pl in PAYLOADS:
        ROWS.append((f"fanin-q1-{pl}-{tr}", f"fan-in 4->1 QoS1 {pl}B", tr, ["--scenario", "fanin", "--qos", "1", "--inflight", "100", "--payload", str(pl)] + base, 30,
                     [("msgs_per_sec", "msg/s", True)]))
    # Open loop: publishers write as fast as the broker's sockets take it (no window); the
    # metric is the subscriber's goodput, the loss column what was published and never came.
    for pl in FLOOD_PAYLOADS:
        ROWS.append((f"flood-{pl}-{tr}", f"fan-in flood 4->1 QoS0 {pl}B", tr,
                     ["--scenario", "flood", "--transport", tr, "--qos", "0", "--payload", str(pl), "--warmup", str(FLOOD_WARM),
                      "--duration", str(FLOOD_DUR), "--drain", "5"], 40,
                     [("msgs_per_sec", "goodput msg/s", True)]))
    for pl in PAYLOADS:
        ROWS.append((f"fanout-{pl}-{tr}", f"fan-out 1->{FAN_SUBS} QoS0 {pl}B", tr, ["--scenario", "fanout", "--subscribers", str(FAN_SUBS), "--payload", str(pl)] + base, 60,
                     [("msgs_per_sec", "deliveries/s", True)]))
    ROWS.append((f"latency-{tr}", f"latency @{LAT_RATE}/s 16B", tr,
                 ["--scenario", "latency", "--transport", tr, "--rate", str(LAT_RATE), "--payload", "16", "--warmup", str(WARM), "--duration", str(LAT_DUR), "--drain", "1"], 30,
                 [("p50_us", "p50 us", False), ("p99_us", "p99 us", False), ("p999_us", "p99.9 us", False)]))
    ROWS.append((f"conns-{tr}", f"{CONNS} idle subscribers", tr,
                 ["--scenario", "conns", "--transport", tr, "--conns", str(CONNS), "--payload", "16", "--drain", "1", "--timeout", str(CONN_TIMEOUT)], CONN_TIMEOUT + 15,
                 [("rss_per_conn_kb", "RSS KB/conn", False), ("conns_per_sec", "connects/s", True), ("alive", "alive of %d" % CONNS, True)]))
# TLS (mqtts = MQTT over TLS, wss = WebSocket over TLS): fewer rows, same scenarios and brokers
# (each with two more listeners on the certificates of tests/tls/make-pki.sh).
ROW_NOTES = {}
for tr in TLS_TRANSPORTS:
    base = ["--transport", tr, "--warmup", str(WARM), "--duration", str(DUR), "--drain", "1"]
    for pl in TLS_PAYLOADS:
        ROWS.append((f"fanin-q0-{pl}-{tr}", f"fan-in 4->1 QoS0 {pl}B", tr, ["--scenario", "fanin", "--qos", "0", "--payload", str(pl)] + base, 30,
                     [("msgs_per_sec", "msg/s", True)]))
    for pl in TLS_FANOUT_PAYLOADS:
        ROWS.append((f"fanout-{pl}-{tr}", f"fan-out 1->{FAN_SUBS} QoS0 {pl}B", tr, ["--scenario", "fanout", "--subscribers", str(FAN_SUBS), "--payload", str(pl)] + base, 60,
                     [("msgs_per_sec", "deliveries/s", True)]))
    ROWS.append((f"conns-{tr}", f"{TLS_CONNS} idle subscribers", tr,
                 ["--scenario", "conns", "--transport", tr, "--conns", str(TLS_CONNS), "--payload", "16", "--drain", "1", "--timeout", str(CONN_TIMEOUT)], CONN_TIMEOUT + 15,
                 [("rss_per_conn_kb", "RSS KB/conn", False), ("conns_per_sec", "connects/s", True), ("alive", "alive of %d" % TLS_CONNS, True)]))
    if TLS_CONNS != CONNS:
        ROW_NOTES[f"conns-{tr}"] = f"{TLS_CONNS} conns (full TLS handshakes; BENCH_TLS_CONNS)"

# ACL rows: the same fan-in and fan-out with an ACL file of ACL_USERS users x 10 rules plus
# patterns (midge and mosquitto load the same file; rumqttd has no such file): the benchmark's
# anonymous clients get the anonymous section, whose last rule grants bench/#.
ACL_USERS = int(env.get("BENCH_ACL_USERS", "1000"))
ACL_FILE = os.path.join(TMP, "acl")
for tr in ("tcp", "ws"):
    base = ["--transport", tr, "--warmup", str(WARM), "--duration", str(DUR), "--drain", "1"]
    ROWS.append((f"fanin-q0-16-{tr}-acl", f"fan-in 4->1 QoS0 16B, ACL", tr, ["--scenario", "fanin", "--qos", "0", "--payload", "16"] + base, 30,
                 [("msgs_per_sec", "msg/s", True)]))
    ROWS.append((f"fanout-16-{tr}-acl", f"fan-out 1->{FAN_SUBS} QoS0 16B, ACL", tr, ["--scenario", "fanout", "--subscribers", str(FAN_SUBS), "--payload", "16"] + base, 60,
                 [("msgs_per_sec", "deliveries/s", True)]))
    for kind in ("fanin-q0-16", "fanout-16"):
        ROW_NOTES[f"{kind}-{tr}-acl"] = f"acl_file: {ACL_USERS} users, {ACL_USERS * 10 + 13} rules"

# MQTT 5.0 rows: the same closed-loop scenarios with every client speaking 5.0 (loadgen --mqtt 5:
# empty property blocks); compare with the 3.1.1 rows of the same transport. rumqttd is not
# configured with a 5.0 listener here.
for tr in ("tcp", "ws"):
    base = ["--transport", tr, "--warmup", str(WARM), "--duration", str(DUR), "--drain", "1", "--mqtt", "5"]
    ROWS.append((f"fanin-q0-16-{tr}-v5", f"fan-in 4->1 QoS0 16B, MQTT 5", tr, ["--scenario", "fanin", "--qos", "0", "--payload", "16"] + base, 30,
                 [("msgs_per_sec", "msg/s", True)]))
    ROWS.append((f"fanin-q1-16-{tr}-v5", f"fan-in 4->1 QoS1 16B, MQTT 5", tr, ["--scenario", "fanin", "--qos", "1", "--inflight", "100", "--payload", "16"] + base, 30,
                 [("msgs_per_sec", "msg/s", True)]))
    ROWS.append((f"fanout-16-{tr}-v5", f"fan-out 1->{FAN_SUBS} QoS0 16B, MQTT 5", tr, ["--scenario", "fanout", "--subscribers", str(FAN_SUBS), "--payload", "16"] + base, 60,
                 [("msgs_per_sec", "deliveries/s", True)]))

if SCEN:
    # A prefix selects every row it starts ("conns-ws" alone would also pick conns-wss), except
    # that a complete row id selects just that row.
    ids = {r[0] for r in ROWS}
    ROWS = [r for r in ROWS if any(r[0] == p or (p not in ids and r[0].startswith(p)) for p in SCEN)]
    log("scenarios:", ", ".join(r[0] for r in ROWS) or "none")
FOOTPRINT = not SCEN or "footprint" in SCEN
if any(r[2] in TLS for r in ROWS):
    # One PKI per run: CA, and an ECDSA P-256 server certificate for 127.0.0.1 (IP SAN).
    pki = subprocess.run(["bash", "tests/tls/make-pki.sh", PKI], capture_output=True, text=True)
    if pki.returncode != 0:
        log("tests/tls/make-pki.sh failed; dropping the TLS rows:", pki.stderr.strip()[-300:])
        ROWS = [r for r in ROWS if r[2] not in TLS]
    elif os.geteuid() == 0:
        # mosquitto started as root drops to its own user before it loads certificates: let
        # that user reach (not list) the private tmp dir and read the server's pair.
        import pwd
        try:
            mq = pwd.getpwnam("mosquitto")
            for d in (TMP, PKI): os.chmod(d, 0o711)
            for f in ("server.crt", "server.key"): os.chown(os.path.join(PKI, f), mq.pw_uid, mq.pw_gid)
        except (KeyError, OSError) as e:
            log(f"could not hand the server certificate to the mosquitto user: {e}")

if any(r[0].endswith("-acl") for r in ROWS):
    with open(ACL_FILE, "w") as f:
        f.write("# generated by benches/run.sh: anonymous section, users, patterns\n")
        for i in range(8):
            f.write(f"topic read other/{i}/#\n")
        f.write("topic deny bench/secret/#\ntopic read $SYS/#\ntopic readwrite bench/#\n")
        for u in range(ACL_USERS):
            f.write(f"user user{u}\n")
            for j in range(9):
                f.write(f"topic readwrite site/{u}/dev{j}/#\n")
            f.write(f"topic deny site/{u}/secret\n")
        f.write("pattern readwrite clients/%c/#\npattern read users/%u/#\n")
    os.chmod(ACL_FILE, 0o644)
    os.chmod(TMP, 0o711)   # mosquitto, started as root, reads it as its own user

results = {r[0]: {n: [] for n in NAMES} for r in ROWS}
startups = {n: [] for n in NAMES}

def med(vals):
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None

def measure(row, name):
    tls = row[2] in TLS
    acl = row[0].endswith("-acl")
    if acl and name == "rumqttd":
        return {"error": "no mosquitto ACL files"}
    if row[0].endswith("-v5") and name == "rumqttd":
        return {"error": "no MQTT 5 listener configured"}
    br = Running(name, tls, acl)
    try:
        if not br.ok:
            return {"error": "broker did not start"}
        if not tls:   # the footprint's startup time is that of the plain configuration
            startups[name].append(br.startup_ms)
        return run_loadgen(br, row[2], row[3], row[4])
    finally:
        br.stop()

MOSQ = ("mosquitto", "mosquitto-nodelay")

def mosq_loser(row):
    """After round 1: the mosquitto variant that did worse on this row (not re-run), or None."""
    if not all(n in NAMES for n in MOSQ):
        return None
    key, hib = row[5][0][0], row[5][0][2]
    v = {n: med([r.get(key) for r in results[row[0]][n] if "error" not in r]) for n in MOSQ}
    if any(x is None for x in v.values()):
        return None
    a, b = v[MOSQ[0]], v[MOSQ[1]]
    return MOSQ[1] if (a >= b) == hib else MOSQ[0]

total_runs = sum((CONN_ROUNDS if r[0].startswith("conns") else ROUNDS) for r in ROWS) * len(NAMES)
if all(n in NAMES for n in MOSQ):
    total_runs -= sum(max(0, (CONN_ROUNDS if r[0].startswith("conns") else ROUNDS) - 1) for r in ROWS)
done = 0
for rnd in range(max(ROUNDS, CONN_ROUNDS)):
    for row in ROWS:
        rounds = CONN_ROUNDS if row[0].startswith("conns") else ROUNDS
        if rnd >= rounds:
            continue
        k = rnd % max(1, len(NAMES))
        skip = mosq_loser(row) if rnd > 0 else None
        for name in NAMES[k:] + NAMES[:k]:   # rotate the order each round
            if name == skip:
                continue
            res = measure(row, name)
            results[row[0]][name].append(res)
            done += 1
            short = res.get("error") or " ".join(f"{m[0]}={res.get(m[0])}" for m in row[5])
            if "lost" in res: short += f" lost={res.get('lost')}"
            if "published_per_sec" in res:
                short += f" published={res.get('sent')} ({res.get('published_per_sec'):.0f}/s) loss={res.get('loss_pct'):.1f}%"
            log(f"[{done}/{total_runs} {time.time()-T_START:.0f}s] round {rnd+1} {row[0]} {name}: {short} "
                f"(broker cpu {res.get('broker_cpu_pct')}%, loadgen cpu {res.get('loadgen_cpu_pct')}%)")

# ------------------------------------------------------------ footprint
def proc_status(pid):
    d = {}
    try:
        for l in open(f"/proc/{pid}/status"):
            k, _, v = l.partition(":"); d[k] = v.strip()
    except OSError:
        pass
    return d

def ctx_switches(pid):
    tot = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            s = proc_status(f"{pid}/task/{t}")
            tot += int(s.get("voluntary_ctxt_switches", 0)) + int(s.get("nonvoluntary_ctxt_switches", 0))
    except OSError:
        pass
    return tot

def bin_size(path):
    tmp = os.path.join(TMP, "stripped-" + os.path.basename(path))
    shutil.copy(path, tmp)
    subprocess.run(["strip", tmp], capture_output=True)
    return os.path.getsize(tmp)

foot = {}
for name in (NAMES if FOOTPRINT else []):
    if name == "mosquitto-nodelay":
        continue
    br = Running(name)
    f = {}
    if br.ok:
        startups[name].append(br.startup_ms)
        time.sleep(1.0)
        f["idle_rss_kb"] = int(proc_status(br.p.pid).get("VmRSS", "0 kB").split()[0])
        f["threads"] = int(proc_status(br.p.pid).get("Threads", "0"))
        c0, t0 = ctx_switches(br.p.pid), time.perf_counter()
        time.sleep(2.0)
        f["idle_wakeups_per_s"] = (ctx_switches(br.p.pid) - c0) / (time.perf_counter() - t0)
    br.stop()
    f["binary_bytes_stripped"] = bin_size(BROKERS[name]["bin"])
    f["startup_ms"] = statistics.median(startups[name]) if startups[name] else None
    foot[name] = f

# ------------------------------------------------------------ cipher speed
# Large-payload TLS rows are compared with what one core of this machine encrypts with the
# negotiated cipher (OpenSSL's AES-NI/AVX code, 16 KB blocks = a full TLS record), measured
# once per run on the broker core after the measurements.
def evp_name(suite):
    for k, v in (("AES_128_GCM", "aes-128-gcm"), ("AES_256_GCM", "aes-256-gcm"), ("CHACHA20", "chacha20-poly1305")):
        if k in (suite or ""): return v
    return None

def openssl_speed(evp):
    """Bytes/s of `openssl speed -evp EVP` at 16384-byte blocks, or None."""
    try:
        r = subprocess.run(["taskset", "-c", BCORE, "openssl", "speed", "-evp", evp, "-seconds", "1", "-bytes", "16384"],
                           capture_output=True, text=True, timeout=30)
        last = r.stdout.strip().splitlines()[-1].split()[-1]   # "3084632.06k": 1000s of bytes/s
        return float(last.rstrip("k")) * (1000 if last.endswith("k") else 1)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None

BIG_TLS = [r for r in ROWS if r[2] in TLS and r[0].startswith("fanin") and int(r[0].split("-")[2]) >= 16384]
SUITES = {rid: {n: sorted({x.get("tls_cipher") for x in results[rid][n] if x.get("tls_cipher")}) for n in NAMES}
          for rid in (r[0] for r in ROWS if r[2] in TLS)}
SPEED = {}
for evp in sorted({evp_name(s) for r in BIG_TLS for v in SUITES[r[0]].values() for s in v} - {None}):
    SPEED[evp] = openssl_speed(evp)
    log(f"openssl speed -evp {evp} (16384-byte blocks, core {BCORE}): {SPEED[evp]}")

# ------------------------------------------------------------ report
def fmt(v):
    if v is None: return "n/a"
    if abs(v) >= 100: return f"{v:,.0f}"
    if abs(v) >= 10: return f"{v:.1f}"
    return f"{v:.2f}"

def loss_pct(r):
    """Messages lost in one run as a percentage of those expected (sent x fan-out), or None."""
    lost = r.get("lost")
    exp = r.get("expected", r.get("sent", r.get("conns")))
    if not isinstance(lost, (int, float)) or not isinstance(exp, (int, float)):
        return None
    return lost * 100.0 / exp if exp > 0 else 0.0

def fmt_loss(c):
    """One broker's share of the loss column: '0' exactly when nothing was lost."""
    if c is None: return "-"              # broker not run
    lost, pct = c.get("lost"), c.get("loss_pct")
    if lost is None: return "n/a"         # no successful run
    if lost == 0: return "0"
    if pct is None: return fmt(lost)
    if pct >= 10: return f"{pct:.0f}%"
    if pct >= 1: return f"{pct:.1f}%"
    if pct >= 0.01: return f"{pct:.2f}%"
    return "<0.01%"

def fmt_rate(v):
    if v is None: return "n/a"
    if v >= 1e6: return f"{v/1e6:.2f}M"
    if v >= 1e3: return f"{v/1e3:.0f}k"
    return f"{v:.0f}"

table, js_rows = [], []
for row in ROWS:
    rid, label, tr, _, _, metrics = row
    for key, unit, hib in metrics:
        cell = {}
        for n in NAMES:
            rs = results[rid][n]
            cell[n] = dict(median=med([r.get(key) for r in rs if "error" not in r]),
                           lost=med([r.get("lost") for r in rs if "error" not in r]),
                           loss_pct=med([loss_pct(r) for r in rs if "error" not in r]),
                           published_per_sec=med([r.get("published_per_sec") for r in rs if "error" not in r]),
                           broker_cpu=med([r.get("broker_cpu_pct") for r in rs if "error" not in r]),
                           loadgen_cpu=max([r.get("loadgen_cpu_pct") or 0 for r in rs if "error" not in r], default=None),
                           errors=[r["error"] for r in rs if "error" in r], runs=rs)
        # mosquitto: the better of as-shipped (Nagle on) and set_tcp_nodelay true
        mq = [n for n in ("mosquitto", "mosquitto-nodelay") if n in cell and cell[n]["median"] is not None]
        best = None
        if mq:
            best = (max if hib else min)(mq, key=lambda n: cell[n]["median"])
        def ratio(peer):
            m, p = cell.get("midge", {}).get("median"), peer
            if m is None or p is None or m == 0 or p == 0: return None
            return m / p if hib else p / m
        mosq_v = cell[best]["median"] if best else None
        rumq_v = cell.get("rumqttd", {}).get("median")
        midge_v = cell.get("midge", {}).get("median")
        lg = max([c["loadgen_cpu"] or 0 for c in cell.values()] or [0])
        mosq_c = cell[best] if best else next((cell[n] for n in MOSQ if n in cell), None)
        loss_cells = {"mosquitto": mosq_c, "rumqttd": cell.get("rumqttd"), "midge": cell.get("midge")}
        loss = "/".join(fmt_loss(loss_cells[n]) for n in ("mosquitto", "rumqttd", "midge"))
        notes = [ROW_NOTES[rid]] if rid in ROW_NOTES else []
        if rid in SUITES:
            suites = sorted({s for v in SUITES[rid].values() for s in v})
            if len(suites) > 1:   # a broker negotiated another suite than the others: name each
                notes.append("; ".join(f"{n} {'/'.join(v)}" for n, v in SUITES[rid].items() if v))
        if any(r[0] == rid for r in BIG_TLS) and key == "msgs_per_sec":
            # Goodput against one core's cipher speed for each broker's negotiated suite.
            pl = int(rid.split("-")[2])
            parts = []
            for n, v in (("mosquitto", mosq_v), ("rumqttd", rumq_v), ("midge", midge_v)):
                sn = best if n == "mosquitto" else n
                suite = next(iter(SUITES[rid].get(sn) or []), None)
                speed = SPEED.get(evp_name(suite))
                if v is None: parts.append("n/a")
                elif not speed: parts.append(f"{v * pl / 1e9:.2f}")
                else: parts.append(f"{v * pl / 1e9:.2f} ({v * pl * 100 / speed:.0f}%)")
            evps = sorted({evp_name(s) for v in SUITES[rid].values() for s in v} - {None})
            notes.append("goodput GB/s mosq/rumq/midge " + "/".join(parts) + " (% of openssl " +
                         ", ".join(f"{e} {SPEED[e]/1e9:.2f} GB/s" for e in evps if SPEED.get(e)) +
                         " per core; the broker decrypts and re-encrypts each byte)")
        if any(c and c.get("published_per_sec") is not None for c in loss_cells.values()):
            notes.append("published/s " + "/".join(fmt_rate(c.get("published_per_sec")) if c else "-"
                                                    for c in loss_cells.values()))
        for n, c in cell.items():
            if c["errors"]: notes.append(f"{n}: {c['errors'][0][:60]}")
        table.append([label, tr, unit,
                      fmt(mosq_v) + ("" if not best else (" (nd)" if best == "mosquitto-nodelay" else " (nagle)")),
                      fmt(rumq_v), fmt(midge_v),
                      (fmt(ratio(mosq_v)) + "x") if ratio(mosq_v) else "n/a",
                      (fmt(ratio(rumq_v)) + "x") if ratio(rumq_v) else "n/a",
                      f"{lg:.0f}%", loss, "; ".join(notes)])
        js_rows.append(dict(row=rid, scenario=label, transport=tr, metric=key, unit=unit, higher_is_better=hib,
                            mosquitto_best=best, mosquitto=mosq_v, rumqttd=rumq_v, midge=midge_v,
                            midge_vs_mosquitto=ratio(mosq_v), midge_vs_rumqttd=ratio(rumq_v),
                            max_loadgen_cpu_pct=lg,
                            lost={n: (c or {}).get("lost") for n, c in loss_cells.items()},
                            loss_pct={n: (c or {}).get("loss_pct") for n, c in loss_cells.items()},
                            per_broker={n: {k: v for k, v in c.items()} for n, c in cell.items()}))

for key, unit, hib in ((("binary_bytes_stripped", "bytes", False), ("idle_rss_kb", "KB", False),
                        ("idle_wakeups_per_s", "/s", False), ("startup_ms", "ms", False)) if FOOTPRINT else ()):
    g = lambda n: foot.get(n, {}).get(key)
    m = g("midge")
    def r(p):
        if m is None or p is None or m == 0 or p == 0: return "n/a"
        return fmt(p / m) + "x"
    table.append(["footprint " + key, "-", unit, fmt(g("mosquitto")), fmt(g("rumqttd")), fmt(m), r(g("mosquitto")), r(g("rumqttd")), "", "", ""])

hdr = ["scenario", "transport", "metric", "mosquitto", "rumqttd", "midge", "midge vs mosq", "midge vs rumq", "loadgen cpu", "loss mosq/rumq/midge", "notes"]
w = [max(len(str(x[i])) for x in table + [hdr]) for i in range(len(hdr))]
def line(cells): return " | ".join(str(c).ljust(w[i]) for i, c in enumerate(cells)).rstrip()
print()
flood_t = f" (flood: {FLOOD_WARM}s warm-up, {FLOOD_DUR}s)" if any(r[0].startswith("flood") for r in ROWS) and (FLOOD_DUR, FLOOD_WARM) != (DUR, WARM) else ""
print(f"midge benchmark: medians of {ROUNDS} rounds ({CONN_ROUNDS} for connections), {DUR}s per throughput run{flood_t}; "
      "brokers pinned to core %s, load generator to core %s" % (BCORE, LCORE))
print("ratios: >1x means midge is better (higher throughput, or lower latency/memory); mosquitto = better of "
      "as-shipped (nagle) and set_tcp_nodelay true (nd)")
print("loss: messages sent x fan-out and never received after the drain, % of those (0 = none lost); "
      "flood rows: notes give published/s (accepted by the kernel from the publishers) mosq/rumq/midge")
if any(r[2] in TLS for r in ROWS):
    used = sorted({c for v in SUITES.values() for l in v.values() for c in l})
    print("TLS rows (mqtts, wss): ECDSA P-256 server certificate (tests/tls/make-pki.sh), rustls client with no "
          "session resumption (every connect is a full handshake); negotiated: " + (", ".join(used) or "n/a") +
          "".join(f"; openssl speed -evp {e} 16384-byte blocks on core {BCORE}: {v/1e9:.2f} GB/s" for e, v in SPEED.items() if v))
print(line(hdr)); print("-+-".join("-" * x for x in w))
for t in table: print(line(t))
wall = time.time() - float(env.get("BENCH_T0") or T_START)
print(f"\nmeasurements {time.time()-T_START:.0f}s; total wall time {wall:.0f}s (installs and builds included); "
      f"broker logs and configs in {TMP}")
doc = dict(generated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), rounds=ROUNDS, conn_rounds=CONN_ROUNDS,
           duration_s=DUR, warmup_s=WARM, scenarios=SCEN or None, latency_rate=LAT_RATE, conns=CONNS, fanout_subscribers=FAN_SUBS,
           payloads=PAYLOADS, flood_payloads=FLOOD_PAYLOADS, flood_duration_s=FLOOD_DUR, flood_warmup_s=FLOOD_WARM,
           broker_core=BCORE, loadgen_core=LCORE, brokers=NAMES,
           binaries={n: BROKERS[n]["bin"] for n in NAMES}, rows=js_rows,
           tls=dict(transports=TLS_TRANSPORTS, payloads=TLS_PAYLOADS, fanout_payloads=TLS_FANOUT_PAYLOADS, conns=TLS_CONNS,
                    suites=SUITES, openssl_speed_16k_bytes_per_s=SPEED), footprint=foot, table_header=hdr, table=table)
with open(os.path.join(OUT, "results.json"), "w") as f:
    json.dump(doc, f, indent=1)
print(f"wrote {os.path.join(OUT, 'results.json')}")
PYEOF
