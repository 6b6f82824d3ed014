#!/usr/bin/env python3
"""Write the hand-made seed inputs under fuzz/corpus/<target>/ (committed; the fuzzer's own
finds go to fuzz/out/, which git ignores). Each seed is a valid input in the layout its target
reads: see the comment at the top of each fuzz_targets/*.rs. Run from anywhere:
    python3 fuzz/make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


# --- MQTT -------------------------------------------------------------------------------------

def rlen(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pkt(first, body):
    return bytes([first]) + rlen(len(body)) + body


def field(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack(">H", len(s)) + s


def connect(client_id, level=4, clean=True, keep_alive=10, will=None, user=None, password=None):
    name = b"MQTT" if level == 4 else b"MQIsdp"
    flags = 0x02 if clean else 0
    payload = field(client_id)
    if will:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += field(topic) + field(msg)
    if user is not None:
        flags |= 0x80
        payload += field(user)
    if password is not None:
        flags |= 0x40
        payload += field(password)
    return pkt(0x10, field(name) + bytes([level, flags]) + struct.pack(">H", keep_alive) + payload)


def publish(topic, payload, qos=0, pid=1, retain=False, dup=False):
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = field(topic) + (struct.pack(">H", pid) if qos else b"") + payload
    return pkt(first, body)


def subscribe(pid, filters):
    return pkt(0x82, struct.pack(">H", pid) + b"".join(field(f) + bytes([q]) for f, q in filters))


def unsubscribe(pid, filters):
    return pkt(0xA2, struct.pack(">H", pid) + b"".join(field(f) for f in filters))


def ack(first, pid):
    return pkt(first, struct.pack(">H", pid))


PACKETS = {
    "connect_v311": connect("client-1", will=("will/t", b"bye", 1, True), user="u", password=b"p"),
    "connect_v31": connect("c31", level=3, clean=False, keep_alive=0),
    "connect_empty_id": connect("", keep_alive=60),
    "connack": bytes([0x20, 2, 0, 0]),
    "publish_qos0": publish("a/b", b"hello"),
    "publish_qos1": publish("a/b", b"x" * 200, qos=1, pid=7, retain=True),
    "publish_qos2": publish("sensors/1/temp", b"21.5", qos=2, pid=65535, dup=True),
    "puback": ack(0x40, 1),
    "pubrec": ack(0x50, 2),
    "pubrel": ack(0x62, 3),
    "pubcomp": ack(0x70, 4),
    "subscribe": subscribe(10, [("a/#", 0), ("+/b", 1), ("x", 2)]),
    "suback": pkt(0x90, struct.pack(">H", 10) + bytes([0, 1, 2, 0x80])),
    "unsubscribe": unsubscribe(11, ["a/#", "x"]),
    "unsuback": ack(0xB0, 11),
    "pingreq": bytes([0xC0, 0]),
    "pingresp": bytes([0xD0, 0]),
    "disconnect": bytes([0xE0, 0]),
}

for name, p in PACKETS.items():
    # Selector 0xFF: max_packet_size 512; no split plan.
    write("mqtt_decode", name, b"\xff\x00" + p)
stream = b"".join(PACKETS.values())
write("mqtt_decode", "all_split", b"\xff\x04\x00\x02\x06\x1f" + stream)
write("mqtt_decode", "long_remaining_length", b"\x00\x00" + publish("t", b"y" * 300))


# MQTT 5.0: a property block (variable byte integer length, then the properties) after the
# fixed fields. The target decodes every input at every level, so these exercise 5.0 decoding.
def props(*items):
    body = b"".join(items)
    return rlen(len(body)) + body


def user_prop(k, v):
    return b"\x26" + field(k) + field(v)


V5_PACKETS = {
    "v5_connect": pkt(0x10, field(b"MQTT") + bytes([5, 0xC6 | (1 << 3), 0, 30])
                  + props(b"\x11\x00\x00\x00\x78", b"\x21\x00\x0a", b"\x22\x00\x05", b"\x15" + field("M"),
                          user_prop("k", "v"))
                  + field("c5")
                  + props(b"\x18\x00\x00\x00\x05", b"\x01\x01", b"\x08" + field("resp/t"), user_prop("a", "b"))
                  + field("will/t") + field(b"bye") + field("user") + field(b"pw")),
    "v5_connack": pkt(0x20, bytes([1, 0]) + props(b"\x24\x01", b"\x25\x00", b"\x27\x00\x01\x00\x00",
                                               b"\x12" + field("auto"), b"\x13\x00\x3c")),
    "v5_publish_props": pkt(0x33, field("a/b") + b"\x00\x07"
                            + props(b"\x23\x00\x01", b"\x02\x00\x00\x00\x3c", b"\x0b\x05", b"\x03" + field("text"),
                                    b"\x09" + field(b"\x00\x01"), user_prop("k", "v"), user_prop("k", "w"))
                            + b"payload"),
    "v5_publish_alias": pkt(0x30, field("") + props(b"\x23\x00\x02") + b"x"),
    "v5_puback_reason": pkt(0x40, b"\x00\x01\x10" + props(b"\x1f" + field("none"))),
    "v5_pubrel_short": pkt(0x62, b"\x00\x02\x92"),
    "v5_subscribe": pkt(0x82, b"\x00\x0a" + props(b"\x0b\x7f") + field("a/#") + bytes([0x2e])
                        + field("$share/g/x") + bytes([0x11])),
    "v5_suback": pkt(0x90, b"\x00\x0a" + props() + bytes([0, 2, 0x87, 0xa2])),
    "v5_unsubscribe": pkt(0xA2, b"\x00\x0b" + props(user_prop("k", "v")) + field("a/#")),
    "v5_unsuback": pkt(0xB0, b"\x00\x0b" + props() + bytes([0x00, 0x11])),
    "v5_disconnect": pkt(0xE0, b"\x04" + props(b"\x11\x00\x00\x00\x00", b"\x1f" + field("bye"))),
    "v5_auth": pkt(0xF0, b"\x18" + props(b"\x15" + field("SCRAM-SHA-1"), b"\x16" + field(b"data"))),
}

for name, p in V5_PACKETS.items():
    write("mqtt_decode", name, b"\xff\x00" + p)
write("mqtt_decode", "v5_all_split", b"\xff\x04\x00\x02\x06\x1f" + b"".join(V5_PACKETS.values()))


# --- WebSocket frames -------------------------------------------------------------------------

def frame(opcode, payload, fin=True, mask=b"\x37\xfa\x21\x3d", form=None):
    n = len(payload)
    out = bytes([(0x80 if fin else 0) | opcode])
    form = form or (7 if n <= 125 else 16 if n <= 0xFFFF else 64)
    if form == 7:
        out += bytes([0x80 | n])
    elif form == 16:
        out += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        out += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return out + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


mqtt = PACKETS["connect_v311"] + PACKETS["publish_qos1"]
FRAMES = {
    "binary": frame(2, mqtt),
    "small_frames": b"".join(frame(2, p) for p in PACKETS.values()),
    "fragmented_with_ping": frame(2, mqtt[:10], fin=False) + frame(9, b"ping")
    + frame(0, mqtt[10:50], fin=False) + frame(0, mqtt[50:]),
    "len16_len64": frame(2, b"a" * 300) + frame(2, b"b" * 5, form=64) + frame(0xA, b""),
    "close": frame(2, b"\xc0\x00") + frame(8, struct.pack(">H", 1000) + b"bye") + frame(2, b"ignored"),
}
for name, f in FRAMES.items():
    # Selector 7: no size limit, in-place split run; 0x0f: copying decode, limit 512 (index 4).
    write("ws_frame", name, b"\x07\x00" + f)
write("ws_frame", "split_copying", b"\x0c\x05\x00\x01\x02\x0d\x7f" + FRAMES["fragmented_with_ping"])
write("ws_frame", "split_in_place", b"\x07\x03\x00\x05\x01" + FRAMES["small_frames"])


# --- HTTP upgrade -----------------------------------------------------------------------------

def upgrade(path="/mqtt", proto="mqtt", extra=""):
    p = f"Sec-WebSocket-Protocol: {proto}\r\n" if proto else ""
    return (f"GET {path} HTTP/1.1\r\nHost: broker:8083\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{p}{extra}\r\n").encode()


HEADS = {
    "upgrade": (0x00, upgrade()),
    "upgrade_v31_and_frames": (0x00, upgrade(proto="mqttv3.1, other") + frame(2, PACKETS["pingreq"])),
    "upgrade_no_subprotocol": (0x02, upgrade(proto=None)),
    "upgrade_origin_proxy": (0x0C, upgrade(extra="Origin: http://ok.example\r\nX-Forwarded-For: 10.1.2.3, 10.0.0.1\r\n")),
    "upgrade_bad_origin": (0x04, upgrade(extra="Origin: http://evil.example\r\n")),
    "upgrade_real_ip": (0x08, upgrade(extra="X-Real-IP: 192.0.2.7\r\n")),
    "plain_get_info": (0x00, b"GET / HTTP/1.1\r\nHost: broker\r\n\r\n"),
    "plain_get_ws_path": (0x00, b"GET /mqtt?x=1 HTTP/1.1\r\nHost: broker\r\n\r\n"),
    "post": (0x00, b"POST /mqtt HTTP/1.1\r\nHost: b\r\nContent-Length: 0\r\n\r\n"),
    "http10": (0x00, b"GET /mqtt HTTP/1.0\r\nHost: b\r\n\r\n"),
    "bad_version": (0x00, upgrade().replace(b"Version: 13", b"Version: 8")),
    "small_limit": (0x10, upgrade()),
}
for name, (sel, head) in HEADS.items():
    write("http_upgrade", name, bytes([sel, 0]) + head)
write("http_upgrade", "upgrade_split", b"\x00\x04\x00\x03\x10\x01" + upgrade())


# --- Broker -----------------------------------------------------------------------------------
# Ops (see fuzz_targets/broker.rs, `World::step`): op byte = kind | slot << 4 | flags << 6.

def op(kind, slot=0, flags=0, *args):
    return bytes([kind | slot << 4 | flags << 6, *args])


OPEN, RAW, DELIVER, CLOCK, HANGUP, BUDGET, UPGRADE, CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, ACK, PING, \
    WSCTL, MODE, RAWMQTT = range(16)
# FILTERS index is f >> 2, QoS is f & 3.
F_HASH, F_A_HASH, F_A_PLUS, F_PLUS_B, F_AB = (0 << 2), (1 << 2), (2 << 2), (3 << 2), (4 << 2)

tcp_pubsub = (
    b"\x00"  # config: anonymous allowed, inflight 1, queue 0
    + op(OPEN, 0) + op(CONNECT, 0, 0, 0, 0x02, 10)
    + op(OPEN, 1) + op(CONNECT, 1, 0, 1, 0x02, 0)
    + op(SUBSCRIBE, 0, 1, 1, F_HASH | 1, F_A_PLUS | 2)
    + op(PUBLISH, 1, 0, 1, 0x01, 5, 10)  # a/b QoS 1
    + op(PUBLISH, 1, 0, 2, 0x0A, 6, 3)   # a/b/c QoS 2 retained
    + op(ACK, 0, 0, 1) + op(ACK, 0, 1, 2) + op(ACK, 0, 3, 2) + op(ACK, 1, 2, 6)
    + op(UNSUBSCRIBE, 0, 0, 3, 0) + op(PING, 0) + op(PING, 1, 1)
    + op(CLOCK, 0, 2, 20)  # 20 s: keep alive of client 0 (10 s x 1.5) runs out
)
write("broker", "tcp_pubsub", tcp_pubsub)

ws_pubsub = (
    b"\x1e"  # inflight 4, queue 3
    + op(OPEN, 0, 1) + op(UPGRADE, 0, 0) + op(CONNECT, 0, 0, 2, 0x06 | (1 << 3), 30)  # will QoS 1
    + op(OPEN, 1, 2) + op(UPGRADE, 1, 2) + op(MODE, 1, 0, 3) + op(CONNECT, 1, 0, 3, 0x00, 0)
    + op(SUBSCRIBE, 1, 0, 9, F_HASH | 2, 0)
    + op(PUBLISH, 0, 0, 3, 0x02, 4, 100)  # x/y QoS 2, fragmented frames on the way in
    + op(WSCTL, 0, 0, 7) + op(WSCTL, 0, 1, 0)
    + op(BUDGET, 1, 0, 2) + op(PUBLISH, 0, 0, 0, 0x00, 0, 50) + op(BUDGET, 1, 0, 255)
    + op(HANGUP, 0, 1)  # the will goes to client 1
    + op(WSCTL, 1, 2, 0)
)
write("broker", "ws_pubsub", ws_pubsub)

# A persistent session resumed over the other transport, with bytes held and read in pieces.
connect_c5 = connect("c5", clean=False, keep_alive=5)
persistent = (
    b"\x1a"  # inflight 2, queue 3
    + op(OPEN, 0) + op(MODE, 0, 1, 0) + op(CONNECT, 0, 0, 5, 0x00, 5)
    + op(SUBSCRIBE, 0, 0, 1, F_A_HASH | 1, 0)
    + op(DELIVER, 0, 0, 2) + op(DELIVER, 0, 0, 7) + op(DELIVER, 0, 1, 0)
    + op(HANGUP, 0)
    + op(OPEN, 1) + op(CONNECT, 1, 0, 1, 0x02, 0) + op(PUBLISH, 1, 0, 1, 0x01, 9, 1)
    + op(PUBLISH, 1, 0, 2, 0x02, 9, 1)
    + op(OPEN, 0, 1) + op(UPGRADE, 0) + op(RAWMQTT, 0, 0, len(connect_c5)) + connect_c5
    + op(CLOCK, 0, 1, 90)
)
write("broker", "persistent_session", persistent)

# Garbage and limits: an oversized packet, a bad upgrade, a connect timeout.
limits = (
    b"\x00"
    + op(OPEN, 0) + op(RAW, 0, 0, 6) + bytes([0x10, 0xFF, 0xFF, 0x03, 0x00, 0x04]) + op(DELIVER, 0, 1, 0)
    + op(OPEN, 1, 1) + op(RAW, 1, 0, 20) + b"GET /nope HTTP/1.1\r\n" + op(DELIVER, 1, 0, 9) + op(DELIVER, 1, 1, 0)
    + op(OPEN, 2, 2) + op(CLOCK, 2, 2, 6)
    + op(OPEN, 3) + op(CONNECT, 3, 0, 6, 0x02, 1) + op(CLOCK, 3, 1, 20)  # 2 s: past the 1 s keep alive x 1.5
)
write("broker", "limits", limits)
