#!/usr/bin/env python3
"""MQTT 5.0 scenarios with Eclipse paho-mqtt 2.x (protocol MQTTv5), driven by tests/interop_v5.rs.

    paho_v5.py SCENARIO URL [-u USER -P PASSWORD]

Each scenario checks itself, prints "PASS SCENARIO" and exits 0, or prints the reason to
stderr and exits 1. Everything is bounded by a watchdog (20 s).
"""
import argparse
import os
import sys
import threading
import time
import urllib.parse

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

ARGS = None


def fail(msg):
    sys.stderr.write("FAIL: " + msg + "\n")
    sys.stderr.flush()
    os._exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def watchdog(seconds):
    t = threading.Timer(seconds, lambda: fail("timed out after %.0f s" % seconds))
    t.daemon = True
    t.start()


def wait_for(pred, what, within=5.0):
    end = time.time() + within
    while time.time() < end:
        if pred():
            return
        time.sleep(0.02)
    fail("waiting for " + what)


class C:
    """One paho client (5.0 unless level=4) with its events recorded."""

    def __init__(self, client_id, level=5, clean_start=True, props=None, manual_ack=False, url=None,
                 username=None, password=None):
        u = urllib.parse.urlparse(url or ARGS.url)
        transport = "websockets" if u.scheme == "ws" else "tcp"
        proto = mqtt.MQTTv5 if level == 5 else mqtt.MQTTv311
        kw = {} if level == 5 else {"clean_session": clean_start}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto,
                             transport=transport, **kw)
        if transport == "websockets":
            self.c.ws_set_options(path=u.path or "/mqtt")
        if username is not None:
            self.c.username_pw_set(username, password)
        if manual_ack:
            self.c.manual_ack_set(True)
        self.c.reconnect_delay_set(min_delay=60, max_delay=120)
        self.messages = []
        self.connack = None
        self.session_present = None
        self.disconnect_reason = None
        self.subacks = []
        self.lock = threading.Lock()
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.level = level
        self.c.connect_async(u.hostname, u.port, 30, clean_start=clean_start if level == 5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                             properties=props)
        self.c.loop_start()

    def _on_connect(self, c, userdata, flags, rc, props):
        self.session_present = flags.session_present
        self.connack = rc.value if hasattr(rc, "value") else int(rc)

    def _on_disconnect(self, c, userdata, flags, rc, props):
        self.disconnect_reason = rc.value if hasattr(rc, "value") else int(rc)

    def _on_message(self, c, userdata, msg):
        with self.lock:
            self.messages.append(msg)

    def _on_subscribe(self, c, userdata, mid, rcs, props):
        self.subacks.append([r.value if hasattr(r, "value") else int(r) for r in rcs])

    def connected(self):
        wait_for(lambda: self.connack is not None, "CONNACK")
        check(self.connack == 0, "CONNACK reason %r" % self.connack)
        return self

    def subscribe(self, topic, qos=1, **opts):
        n = len(self.subacks)
        if self.level == 5:
            self.c.subscribe(topic, options=SubscribeOptions(qos=qos, **opts))
        else:
            self.c.subscribe(topic, qos)
        wait_for(lambda: len(self.subacks) > n, "SUBACK")
        return self.subacks[-1]

    def publish(self, topic, payload, qos=1, retain=False, props=None):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if qos > 0:
            info.wait_for_publish(5)

    def got(self, n, within=5.0):
        wait_for(lambda: len(self.messages) >= n, "%d messages (have %d)" % (n, len(self.messages)), within)
        return self.messages

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def connect_props(**kw):
    p = Properties(PacketTypes.CONNECT)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def publish_props(**kw):
    p = Properties(PacketTypes.PUBLISH)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def uid(name):
    return "%s-%d-%d" % (name, os.getpid(), int(time.time() * 1000) % 100000)


# ------------------------------------------------------------------------------------------------


def interop_v311(pfx):
    """A 5.0 and a 3.1.1 client exchange messages both ways."""
    v5 = C(uid("v5")).connected()
    old = C(uid("old"), level=4).connected()
    v5.subscribe(pfx + "/to5")
    old.subscribe(pfx + "/to311", qos=1)
    v5.publish(pfx + "/to311", b"from5", props=publish_props(UserProperty=[("k", "v")]))
    old.publish(pfx + "/to5", b"from311")
    check(old.got(1)[0].payload == b"from5", "3.1.1 subscriber got %r" % old.messages[0].payload)
    m = v5.got(1)[0]
    check(m.payload == b"from311", "5.0 subscriber got %r" % m.payload)
    check(not getattr(m.properties, "UserProperty", None), "3.1.1 publisher's message has properties")


def user_properties(pfx):
    sub = C(uid("sub")).connected()
    sub.subscribe(pfx + "/t")
    pub = C(uid("pub")).connected()
    pairs = [("b", "2"), ("a", "1"), ("b", "3")]
    pub.publish(pfx + "/t", b"x", props=publish_props(UserProperty=pairs, ContentType="text/plain",
                                                        ResponseTopic=pfx + "/reply", CorrelationData=b"42"))
    m = sub.got(1)[0]
    check(m.properties.UserProperty == pairs, "user properties %r" % m.properties.UserProperty)
    check(m.properties.ContentType == "text/plain", "content type")
    check(m.properties.ResponseTopic == pfx + "/reply" and m.properties.CorrelationData == b"42", "request/response")


def message_expiry(pfx):
    sid = uid("sub")
    sub = C(sid, props=connect_props(SessionExpiryInterval=60)).connected()
    sub.subscribe(pfx + "/t")
    sub.close()
    pub = C(uid("pub")).connected()
    pub.publish(pfx + "/t", b"short", props=publish_props(MessageExpiryInterval=1))
    pub.publish(pfx + "/t", b"long", props=publish_props(MessageExpiryInterval=30))
    time.sleep(2.2)
    sub = C(sid, clean_start=False, props=connect_props(SessionExpiryInterval=60)).connected()
    check(sub.session_present, "session not present")
    msgs = sub.got(1)
    time.sleep(0.5)
    check([m.payload for m in msgs] == [b"long"], "got %r" % [m.payload for m in msgs])
    left = msgs[0].properties.MessageExpiryInterval
    check(left <= 28, "remaining expiry %r" % left)


def session_expiry(pfx):
    sid = uid("s")
    c = C(sid, props=connect_props(SessionExpiryInterval=2)).connected()
    c.subscribe(pfx + "/t")
    c.close()
    time.sleep(0.5)
    c = C(sid, clean_start=False, props=connect_props(SessionExpiryInterval=2)).connected()
    check(c.session_present, "session gone within its interval")
    c.close()
    time.sleep(3)
    c = C(sid, clean_start=False, props=connect_props(SessionExpiryInterval=2)).connected()
    check(not c.session_present, "session kept after its interval")


def no_local(pfx):
    me = C(uid("me")).connected()
    me.subscribe(pfx + "/t", noLocal=True)
    other = C(uid("other")).connected()
    me.publish(pfx + "/t", b"mine")
    other.publish(pfx + "/t", b"theirs")
    msgs = me.got(1)
    time.sleep(0.4)
    check([m.payload for m in msgs] == [b"theirs"], "got %r" % [m.payload for m in msgs])


def retain_handling(pfx):
    pub = C(uid("pub")).connected()
    pub.publish(pfx + "/r", b"kept", retain=True)
    s = C(uid("s")).connected()
    s.subscribe(pfx + "/r", retainHandling=0)
    s.got(1)
    s.subscribe(pfx + "/r", retainHandling=1)
    s.subscribe(pfx + "/r", retainHandling=2)
    time.sleep(0.4)
    check(len(s.messages) == 1, "1 and 2 on an existing subscription: %d messages" % len(s.messages))
    s.subscribe(pfx + "/r", retainHandling=0)
    s.got(2)
    n = C(uid("n")).connected()
    n.subscribe(pfx + "/r", retainHandling=2)
    n.subscribe(pfx + "/other", retainHandling=1)
    time.sleep(0.4)
    check(not n.messages, "2: never")
    m = C(uid("m")).connected()
    m.subscribe(pfx + "/r", retainHandling=1)
    check(m.got(1)[0].retain, "1 on a new subscription: retained, flag set")
    pub.publish(pfx + "/r", b"", retain=True)


def retain_as_published(pfx):
    keep = C(uid("keep")).connected()
    keep.subscribe(pfx + "/t", retainAsPublished=True)
    clear = C(uid("clear")).connected()
    clear.subscribe(pfx + "/t")
    pub = C(uid("pub")).connected()
    pub.publish(pfx + "/t", b"r", retain=True)
    check(keep.got(1)[0].retain, "retain as published: flag cleared")
    check(not clear.got(1)[0].retain, "without it: flag kept")
    pub.publish(pfx + "/t", b"", retain=True)


def receive_maximum(pfx):
    rm = ARGS.receive_max
    sub = C(uid("sub"), props=connect_props(ReceiveMaximum=rm), manual_ack=True).connected()
    sub.subscribe(pfx + "/t")
    pub = C(uid("pub")).connected()
    total = max(200, 3 * rm)
    for i in range(total):
        pub.c.publish(pfx + "/t", str(i).encode(), qos=1)
    acked = 0
    most = 0
    end = time.time() + 15
    while acked < total and time.time() < end:
        time.sleep(0.05)
        with sub.lock:
            outstanding = len(sub.messages) - acked
            pending = sub.messages[acked:]
        most = max(most, outstanding)
        check(outstanding <= rm, "%d unacknowledged with Receive Maximum %d" % (outstanding, rm))
        if outstanding == rm or (outstanding and len(sub.messages) >= total):
            time.sleep(0.2)  # would more come?
            with sub.lock:
                check(len(sub.messages) - acked <= rm, "more than %d in flight" % rm)
            for m in pending:
                sub.c.ack(m.mid, m.qos)
            acked += len(pending)
    check(acked == total, "%d of %d delivered" % (acked, total))
    check(most == rm, "window never filled: %d" % most)
    payloads = [int(m.payload) for m in sub.messages]
    check(payloads == list(range(total)), "order")


def maximum_packet_size(pfx):
    sub = C(uid("sub"), props=connect_props(MaximumPacketSize=200)).connected()
    sub.subscribe(pfx + "/t")
    pub = C(uid("pub")).connected()
    pub.publish(pfx + "/t", b"x" * 1000)
    pub.publish(pfx + "/t", b"small")
    msgs = sub.got(1)
    time.sleep(0.4)
    check([m.payload for m in msgs] == [b"small"], "got %r" % [len(m.payload) for m in msgs])
    check(sub.disconnect_reason is None, "disconnected")


def takeover(pfx):
    cid = uid("same")
    a = C(cid).connected()
    C(cid).connected()
    wait_for(lambda: a.disconnect_reason is not None, "the old client's DISCONNECT")
    check(a.disconnect_reason == 0x8E, "reason %r" % a.disconnect_reason)


def bad_password(pfx):
    c = C(uid("bad"), username=ARGS.user, password=ARGS.password + "-wrong")
    wait_for(lambda: c.connack is not None, "CONNACK")
    check(c.connack == 0x86, "CONNACK %r" % c.connack)
    good = C(uid("good"), username=ARGS.user, password=ARGS.password)
    good.connected()


def auth_method(pfx):
    c = C(uid("auth"), props=connect_props(AuthenticationMethod="SCRAM-SHA-256"))
    wait_for(lambda: c.connack is not None, "CONNACK")
    check(c.connack == 0x8C, "CONNACK %r" % c.connack)


def shared_subscription(pfx):
    """Load split over a group's members, each message once, and failover when one leaves."""
    a = C(uid("a")).connected()
    b = C(uid("b")).connected()
    old = C(uid("old"), level=4).connected()  # a 3.1.1 member of another group
    for c in (a, b):
        c.subscribe("$share/work/" + pfx + "/jobs")
    old.subscribe("$share/audit/" + pfx + "/jobs", qos=1)
    pub = C(uid("pub")).connected()
    for i in range(20):
        pub.publish(pfx + "/jobs", str(i).encode())
    wait_for(lambda: len(a.messages) + len(b.messages) >= 20, "20 jobs")
    old.got(20)
    time.sleep(0.3)
    got = sorted(int(m.payload) for m in a.messages + b.messages)
    check(got == list(range(20)), "each job once: %r" % got)
    check(len(a.messages) == 10 and len(b.messages) == 10, "split %d/%d" % (len(a.messages), len(b.messages)))
    a.close()
    time.sleep(0.2)
    for i in range(20, 30):
        pub.publish(pfx + "/jobs", str(i).encode())
    b.got(20)
    time.sleep(0.3)
    check(len(b.messages) == 20, "failover: %d" % len(b.messages))


SCENARIOS = {f.__name__: f for f in [interop_v311, user_properties, message_expiry, session_expiry, no_local,
                                     retain_handling, retain_as_published, receive_maximum, maximum_packet_size,
                                     takeover, bad_password, auth_method, shared_subscription]}


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("url")
    ap.add_argument("-u", dest="user")
    ap.add_argument("-P", dest="password")
    ap.add_argument("--receive-max", type=int, default=10)
    ARGS = ap.parse_args()
    watchdog(20)
    SCENARIOS[ARGS.scenario](uid("v5/" + ARGS.scenario))
    print("PASS " + ARGS.scenario)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
