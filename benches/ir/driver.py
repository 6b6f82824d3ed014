#!/usr/bin/env python3
"""Fixed workload for instruction counting (benches/ir/run.sh): S raw-socket subscribers on
`a/b` and one publisher sending N PUBLISHes of 16 bytes in batches of 1000, at MQTT 3.1.1 or
5.0 (no properties), QoS 0 or 1 (acknowledgements not awaited). Waits until the subscribers
have the bytes. Independent of midge's code: its own tiny encoder.

usage: driver.py PORT N [QOS] [SUBSCRIBERS] [--v5]
"""
import selectors
import socket
import struct
import sys
import threading
import time

args = [a for a in sys.argv[1:] if a != "--v5"]
V5 = "--v5" in sys.argv
port, n = int(args[0]), int(args[1])
qos = int(args[2]) if len(args) > 2 else 0
subscribers = int(args[3]) if len(args) > 3 else 1


def connect(client_id):
    s = socket.create_connection(("127.0.0.1", port))
    header = b"\x00\x04MQTT" + (b"\x05\x02\x00\x3c\x00" if V5 else b"\x04\x02\x00\x3c")
    body = header + struct.pack(">H", len(client_id)) + client_id
    s.sendall(bytes([0x10, len(body)]) + body)
    s.recv(64)  # CONNACK
    return s


def publish(i):
    props = b"\x00" if V5 else b""
    pid = struct.pack(">H", i % 65535 + 1) if qos else b""
    body = b"\x00\x03a/b" + pid + props + b"x" * 16
    return bytes([0x30 | qos << 1, len(body)]) + body


received = [0]
sel = selectors.DefaultSelector()
for k in range(subscribers):
    s = connect(b"sub%d" % k)
    sub = b"\x00\x01" + (b"\x00" if V5 else b"") + b"\x00\x03a/b\x00"
    s.sendall(bytes([0x82, len(sub)]) + sub)
    s.recv(64)  # SUBACK
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)


def drain():
    while True:
        for key, _ in sel.select():
            try:
                received[0] += len(key.fileobj.recv(1 << 20))
            except BlockingIOError:
                pass


threading.Thread(target=drain, daemon=True).start()
pub = connect(b"pub")
size = len(publish(0))
batch = b"".join(publish(i) for i in range(1000))
for i in range(n // 1000):
    pub.sendall(batch)
    # Many subscribers: stay within a few batches of them, so no output cap drops anything.
    while subscribers > 1 and received[0] < (i - 2) * 1000 * size * subscribers:
        time.sleep(0.001)
expected = (n // 1000) * 1000 * size * subscribers
deadline = time.time() + 120
while received[0] < expected and time.time() < deadline:
    time.sleep(0.05)
print("received %d of %d bytes" % (received[0], expected))
sys.exit(0 if received[0] >= expected else 1)
