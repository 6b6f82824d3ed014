#!/usr/bin/env python3
"""Eclipse paho-mqtt 2.x client driven by tests/interop.rs.

Every sub-command is bounded by --timeout (default 20 s) and exits non-zero on
failure, printing the reason to stderr. Lines on stdout are the protocol with
the Rust test: "READY" once subscriptions are acknowledged, one line per
received message, "PASS ..." when a self-checking scenario succeeded.

URLs: tcp://HOST:PORT or ws://HOST:PORT/PATH (MQTT over WebSocket, subprotocol "mqtt");
mqtts:// and wss:// use TLS, trusting --cafile (and presenting --cert/--key if given).
-u/-P set the username and password of every connection.
"""
import argparse
import hashlib
import os
import sys
import threading
import time
import urllib.parse

import paho.mqtt.client as mqtt


# Connection options from the command line (TLS files, credentials), for make_client.
OPTS = {}


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def fail(msg):
    sys.stderr.write("FAIL: " + msg + "\n")
    sys.stderr.flush()
    os._exit(1)


def watchdog(seconds):
    def boom():
        fail("timed out after %.1f s" % seconds)

    t = threading.Timer(seconds, boom)
    t.daemon = True
    t.start()


def make_client(url, client_id="", clean_session=True, keepalive=30):
    u = urllib.parse.urlparse(url)
    transport = {"tcp": "tcp", "mqtt": "tcp", "mqtts": "tcp", "ws": "websockets", "wss": "websockets"}[u.scheme]
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
        transport=transport,
    )
    if transport == "websockets":
        c.ws_set_options(path=u.path or "/mqtt")
    if u.scheme in ("mqtts", "wss"):
        c.tls_set(ca_certs=OPTS.get("cafile"), certfile=OPTS.get("cert"), keyfile=OPTS.get("key"))
    if OPTS.get("username") is not None:
        c.username_pw_set(OPTS["username"], OPTS.get("password"))
    # Never auto-reconnect quickly: a reconnect would hide broker behaviour.
    c.reconnect_delay_set(min_delay=60, max_delay=120)
    c._midge_addr = (u.hostname, u.port, keepalive)
    return c


class Conn:
    """A connected client with events for CONNACK/SUBACK/disconnect."""

    def __init__(self, url, client_id="", clean_session=True, will=None, on_message=None, on_connack=None):
        self.c = make_client(url, client_id, clean_session)
        self.on_connack = on_connack
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.session_present = None
        self.connect_rc = None
        self.subacks = {}
        self.suback_ev = threading.Condition()
        self.disconnect_rc = None
        if will is not None:
            self.c.will_set(*will)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.unsubacks = set()
        if on_message is not None:
            self.c.on_message = on_message

    def _on_connect(self, client, userdata, flags, rc, props):
        self.session_present = int(bool(flags.session_present))
        self.connect_rc = rc
        if self.on_connack is not None:
            self.on_connack(self)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, rc, props):
        self.disconnect_rc = rc
        self.disconnected.set()

    def _on_subscribe(self, client, userdata, mid, rcs, props):
        with self.suback_ev:
            self.subacks[mid] = [int(r.value) if hasattr(r, "value") else int(r) for r in rcs]
            self.suback_ev.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, rcs, props):
        with self.suback_ev:
            self.unsubacks.add(mid)
            self.suback_ev.notify_all()

    def connect(self, timeout=10):
        host, port, keepalive = self.c._midge_addr
        self.c.connect(host, port, keepalive)
        self.c.loop_start()
        if not self.connected.wait(timeout):
            fail("no CONNACK within %s s" % timeout)
        if self.connect_rc is not None and self.connect_rc.is_failure:
            fail("connection refused: %s" % self.connect_rc)
        return self

    def subscribe(self, topics, qos, timeout=10):
        mids = []
        for t in topics:
            rc, mid = self.c.subscribe(t, qos)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                fail("subscribe(%s) returned %s" % (t, rc))
            mids.append(mid)
        deadline = time.monotonic() + timeout
        with self.suback_ev:
            while not all(m in self.subacks for m in mids):
                left = deadline - time.monotonic()
                if left <= 0:
                    fail("no SUBACK within %s s" % timeout)
                self.suback_ev.wait(left)
        for m in mids:
            if self.subacks[m][0] == 0x80:
                fail("subscription refused")
        return [self.subacks[m][0] for m in mids]

    def unsubscribe(self, topic, timeout=10):
        rc, mid = self.c.unsubscribe(topic)
        deadline = time.monotonic() + timeout
        with self.suback_ev:
            while mid not in self.unsubacks:
                left = deadline - time.monotonic()
                if left <= 0:
                    fail("no UNSUBACK within %s s" % timeout)
                self.suback_ev.wait(left)

    def publish(self, topic, payload, qos=0, retain=False, timeout=10):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            fail("publish returned %s" % info.rc)
        return info

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def wait_all(infos, timeout=15):
    deadline = time.monotonic() + timeout
    for info in infos:
        info.wait_for_publish(max(0.01, deadline - time.monotonic()))
        if not info.is_published():
            fail("publish not acknowledged within %s s" % timeout)


class Inbox:
    def __init__(self):
        self.msgs = []
        self.cv = threading.Condition()

    def __call__(self, client, userdata, msg):
        with self.cv:
            self.msgs.append((msg.topic, msg.qos, int(msg.retain), bytes(msg.payload)))
            self.cv.notify_all()

    def wait_count(self, n, timeout):
        deadline = time.monotonic() + timeout
        with self.cv:
            while len(self.msgs) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(left)
        return True

    def snapshot(self):
        with self.cv:
            return list(self.msgs)


def fmt_msg(m, sha):
    topic, qos, retain, payload = m
    if sha:
        return "%s %d %d len=%d sha256=%s" % (topic, qos, retain, len(payload), hashlib.sha256(payload).hexdigest())
    return "%s %d %d %s" % (topic, qos, retain, payload.decode("utf-8", "replace"))


# ---------------------------------------------------------------- sub-commands


def cmd_sub(a):
    """Subscribe, print READY, print each message; exit after --count messages."""
    lock = threading.Lock()
    got = [0]
    done = threading.Event()

    def on_message(client, userdata, msg):
        with lock:
            payload = bytes(msg.payload)
            if a.save:
                with open(a.save, "wb") as f:
                    f.write(payload)
            out(fmt_msg((msg.topic, msg.qos, int(msg.retain), payload), a.sha or bool(a.save)))
            got[0] += 1
            if a.count and got[0] >= a.count:
                done.set()

    def on_connack(conn):
        # Printed from the network thread, before any message of the session.
        with lock:
            out("CONNACK session_present=%d" % conn.session_present)

    conn = Conn(a.url, a.id or "", not a.no_clean, on_message=on_message, on_connack=on_connack).connect()
    if a.topic:
        conn.subscribe(a.topic, a.qos)
    out("READY")
    if a.count == 0:
        conn.close()
        return
    if not done.wait(a.timeout):
        fail("received %d of %d messages" % (got[0], a.count))
    # Let late duplicates (which the test would count) show up before leaving.
    time.sleep(a.linger)
    conn.close()


def cmd_pub(a):
    conn = Conn(a.url, a.id or "").connect()
    infos = []
    if a.file:
        with open(a.file, "rb") as f:
            payloads = [f.read()]
    elif a.null:
        payloads = [b""]
    elif a.count:
        payloads = [("%s%d" % (a.message or "", i)).encode() for i in range(a.count)]
    else:
        payloads = [(a.message or "").encode()]
    for p in payloads:
        infos.append(conn.publish(a.topic[0], p, a.qos, a.retain))
    wait_all(infos, a.timeout)
    out("PUBLISHED %d" % len(infos))
    conn.close()


def cmd_will(a):
    """Connect with a will; --mode clean disconnects properly, --mode hang waits to be killed."""
    will = (a.will_topic, a.will_message.encode(), a.qos, False)
    conn = Conn(a.url, a.id or "", True, will=will).connect()
    out("READY")
    if a.mode == "clean":
        conn.c.disconnect()
        conn.c.loop_stop()
        out("DISCONNECTED")
        return
    time.sleep(a.timeout)  # the test kills us (SIGKILL) long before this


def cmd_takeover(a):
    cid = a.id or "midge-takeover"
    first = Conn(a.url, cid).connect()
    out("FIRST CONNECTED")
    inbox = Inbox()
    second = Conn(a.url, cid, on_message=inbox).connect()
    out("SECOND CONNECTED")
    if not first.disconnected.wait(10):
        fail("first client was not disconnected after the second connected with the same id")
    first.c.loop_stop()  # no reconnect (delay is 60 s anyway)
    out("FIRST DISCONNECTED")
    # The second connection must be fully usable.
    second.subscribe(["takeover/t"], 1)
    wait_all([second.publish("takeover/t", b"still here", 1)])
    if not inbox.wait_count(1, 10):
        fail("second client did not receive its own message")
    if second.disconnected.is_set():
        fail("second client was disconnected")
    out("PASS takeover")
    second.close()


def cmd_unsubscribe(a):
    inbox = Inbox()
    sub = Conn(a.url, on_message=inbox).connect()
    sub.subscribe(["u/t"], 1)
    pub = Conn(a.url).connect()
    wait_all([pub.publish("u/t", b"before", 1)])
    if not inbox.wait_count(1, 10):
        fail("message before unsubscribe not received")
    sub.unsubscribe("u/t")
    wait_all([pub.publish("u/t", b"after", 1), pub.publish("u/t", b"after2", 0)])
    # Subscribe to a sentinel topic; once the sentinel arrives, anything for
    # u/t published before it would have arrived as well.
    sub.subscribe(["u/sentinel"], 1)
    wait_all([pub.publish("u/sentinel", b"end", 1)])
    if not inbox.wait_count(2, 10):
        fail("sentinel not received")
    time.sleep(0.3)
    msgs = [(t, p) for (t, q, r, p) in inbox.snapshot()]
    if msgs != [("u/t", b"before"), ("u/sentinel", b"end")]:
        fail("unexpected messages after unsubscribe: %r" % msgs)
    out("PASS unsubscribe")
    sub.close()
    pub.close()


def cmd_many(a):
    n = a.clients
    inboxes = [Inbox() for _ in range(n)]
    conns = []
    for i in range(n):
        conns.append(Conn(a.url, "many-%d-%d" % (os.getpid(), i), on_message=inboxes[i]))
    for i, c in enumerate(conns):
        host, port, keepalive = c.c._midge_addr
        c.c.connect(host, port, keepalive)
        c.c.loop_start()
    for i, c in enumerate(conns):
        if not c.connected.wait(15):
            fail("client %d not connected" % i)
    # Each client subscribes to its own topic.
    mids = [c.c.subscribe("many/%d" % i, 1)[1] for i, c in enumerate(conns)]
    deadline = time.monotonic() + 15
    for c, mid in zip(conns, mids):
        with c.suback_ev:
            while mid not in c.subacks:
                left = deadline - time.monotonic()
                if left <= 0:
                    fail("missing SUBACK")
                c.suback_ev.wait(left)
    # Client i publishes to client (i+1) % n.
    infos = [c.publish("many/%d" % ((i + 1) % n), ("to %d" % ((i + 1) % n)).encode(), 1) for i, c in enumerate(conns)]
    wait_all(infos, 15)
    for i, box in enumerate(inboxes):
        if not box.wait_count(1, max(0.01, deadline - time.monotonic())):
            fail("client %d received nothing" % i)
    time.sleep(0.2)
    for i, box in enumerate(inboxes):
        msgs = box.snapshot()
        if msgs != [("many/%d" % i, 1, 0, ("to %d" % i).encode())]:
            fail("client %d received %r" % (i, msgs))
    out("PASS %d clients" % n)
    for c in conns:
        c.c.disconnect()
    for c in conns:
        c.c.loop_stop()


def cmd_selftest(a):
    """QoS 0/1/2 round trip and retained messages, all through --url."""
    inbox = Inbox()
    sub = Conn(a.url, on_message=inbox).connect()
    granted = sub.subscribe(["self/#"], 2)
    if granted != [2]:
        fail("granted %r" % granted)
    pub = Conn(a.url).connect()
    infos = [pub.publish("self/q%d" % q, ("payload qos %d" % q).encode(), q) for q in (0, 1, 2)]
    wait_all(infos)
    if not inbox.wait_count(3, 10):
        fail("got %r" % inbox.snapshot())
    time.sleep(0.3)
    got = sorted(inbox.snapshot())
    want = [("self/q%d" % q, q, 0, ("payload qos %d" % q).encode()) for q in (0, 1, 2)]
    if got != want:
        fail("QoS round trip: got %r want %r" % (got, want))
    out("PASS qos 0 1 2")
    sub.close()

    wait_all([pub.publish("retained/t", b"kept", 1, retain=True)])
    box2 = Inbox()
    late = Conn(a.url, on_message=box2).connect()
    late.subscribe(["retained/t"], 1)
    if not box2.wait_count(1, 10):
        fail("retained message not delivered to a new subscriber")
    if box2.snapshot() != [("retained/t", 1, 1, b"kept")]:
        fail("retained: got %r" % box2.snapshot())
    late.close()
    wait_all([pub.publish("retained/t", b"", 1, retain=True)])
    box3 = Inbox()
    later = Conn(a.url, on_message=box3).connect()
    later.subscribe(["retained/t", "retained/sentinel"], 1)
    wait_all([pub.publish("retained/sentinel", b"x", 1)])
    if not box3.wait_count(1, 10):
        fail("sentinel not received")
    if [m[0] for m in box3.snapshot()] != ["retained/sentinel"]:
        fail("retained message not cleared: %r" % box3.snapshot())
    out("PASS retained")
    later.close()
    pub.close()


def cmd_connect(a):
    """Connect once and print "CONNACK <code>" (0 = accepted); exits 0 whatever the code."""
    conn = Conn(a.url, client_id=a.id or "")
    host, port, keepalive = conn.c._midge_addr
    try:
        conn.c.connect(host, port, keepalive)
    except Exception as e:  # TLS refused, connection reset...
        out("ERROR %s" % type(e).__name__)
        return
    conn.c.loop_start()
    if not conn.connected.wait(10) and conn.connect_rc is None:
        out("ERROR no CONNACK")
        return
    rc = conn.connect_rc
    code = rc.value if hasattr(rc, "value") else int(rc)
    # paho 2 reports a 3.1.1 CONNACK code as the equivalent MQTT 5 reason code: map it back.
    v3 = {0: 0, 0x84: 1, 0x85: 2, 0x88: 3, 0x86: 4, 0x87: 5}
    out("CONNACK %d" % v3.get(code, code))
    conn.c.disconnect()
    conn.c.loop_stop()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["sub", "pub", "will", "takeover", "unsubscribe", "many", "selftest", "connect"])
    p.add_argument("--url", required=True)
    p.add_argument("-t", "--topic", action="append", default=[])
    p.add_argument("-q", "--qos", type=int, default=0)
    p.add_argument("-m", "--message")
    p.add_argument("-f", "--file")
    p.add_argument("-n", "--null", action="store_true")
    p.add_argument("-r", "--retain", action="store_true")
    p.add_argument("-C", "--count", type=int, default=0)
    p.add_argument("-i", "--id")
    p.add_argument("--no-clean", action="store_true")
    p.add_argument("--sha", action="store_true", help="print length and sha256 instead of the payload")
    p.add_argument("--save", help="write the (last) received payload to this file")
    p.add_argument("--linger", type=float, default=0.3)
    p.add_argument("--will-topic")
    p.add_argument("--will-message", default="")
    p.add_argument("--mode", choices=["clean", "hang"], default="hang")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--cafile")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("-u", "--username")
    p.add_argument("-P", "--password")
    a = p.parse_args()
    OPTS.update(cafile=a.cafile, cert=a.cert, key=a.key, username=a.username, password=a.password)
    watchdog(a.timeout + 5)
    globals()["cmd_" + a.cmd](a)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
