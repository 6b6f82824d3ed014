use std::sync::atomic::{AtomicBool, Ordering};

use crate::clock::now_ns;
use crate::conn::{Conn, St, DISCARD_MIN};

// ---------------------------------------------------------------- MQTT 3.1.1 / 5.0 encoding

/// `--mqtt 5`: every connection speaks MQTT 5.0 (empty property blocks on what it sends; the
/// broker's property blocks skipped on what it receives). One setting for the whole run.
static V5: AtomicBool = AtomicBool::new(false);

pub(crate) fn set_v5(on: bool) {
    V5.store(on, Ordering::Relaxed);
}

fn v5() -> bool {
    V5.load(Ordering::Relaxed)
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn enc_connect(client_id: &str, keepalive: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + client_id.len());
    put_str(&mut body, "MQTT");
    body.push(if v5() { 5 } else { 4 }); // protocol level
    body.push(0x02); // clean session / clean start (session expiry 0)
    body.extend_from_slice(&keepalive.to_be_bytes());
    if v5() {
        body.push(0); // no properties
    }
    put_str(&mut body, client_id);
    let mut out = vec![0x10];
    put_varint(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn enc_subscribe(pid: u16, topic: &str, qos: u8) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&pid.to_be_bytes());
    if v5() {
        body.push(0); // no properties
    }
    put_str(&mut body, topic);
    body.push(qos); // 5.0: subscription options with only the QoS bits set
    let mut out = vec![0x82];
    put_varint(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// Returns (packet, offset of packet id if qos>0, offset of payload).
pub(crate) fn enc_publish(topic: &str, qos: u8, pid: u16, payload: &[u8]) -> (Vec<u8>, usize, usize) {
    let props = usize::from(v5());
    let rl = 2 + topic.len() + if qos > 0 { 2 } else { 0 } + props + payload.len();
    let mut out = Vec::with_capacity(rl + 5);
    out.push(0x30 | (qos << 1));
    put_varint(&mut out, rl);
    put_str(&mut out, topic);
    let pid_off = out.len();
    if qos > 0 {
        out.extend_from_slice(&pid.to_be_bytes());
    }
    if props > 0 {
        out.push(0); // no properties
    }
    let pay_off = out.len();
    out.extend_from_slice(payload);
    (out, pid_off, pay_off)
}

/// A variable byte integer at the start of `d`: (value, bytes used); Err(true): `d` ends inside
/// it; Err(false): more than 4 bytes.
fn read_varint(d: &[u8]) -> Result<(usize, usize), bool> {
    let mut value = 0usize;
    for (i, &b) in d.iter().enumerate().take(4) {
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(d.len() < 4)
}

impl Conn {
    /// Streaming MQTT parsing: packet heads are parsed in place (or from `carry` when a read
    /// or frame boundary splits one), PUBLISH payloads are skipped by counting.
    pub(crate) fn feed_mqtt(&mut self, data: &[u8]) {
        let n = data.len();
        let mut p = 0;
        while p < n && self.st != St::Dead {
            if self.skip > 0 {
                let k = self.skip.min(n - p);
                if self.lat_have < self.lat_want {
                    let t = k.min(self.lat_want - self.lat_have);
                    self.lat_buf[self.lat_have..self.lat_have + t].copy_from_slice(&data[p..p + t]);
                    self.lat_have += t;
                }
                self.skip -= k;
                p += k;
                if self.skip == 0 {
                    self.end_publish();
                }
                continue;
            }
            if self.carry.is_empty() {
                match self.parse_head(&data[p..]) {
                    Some(Ok(used)) => p += used,
                    Some(Err(_)) => {
                        // Incomplete head: everything left is part of it (a head never
                        // reaches into the bytes that follow it).
                        self.carry.extend_from_slice(&data[p..]);
                        p = n;
                    }
                    None => return,
                }
            } else {
                // Top the carry up to exactly the size the parser asks for, then parse it.
                let mut carry = std::mem::take(&mut self.carry);
                loop {
                    match self.parse_head(&carry) {
                        Some(Ok(used)) => {
                            debug_assert_eq!(used, carry.len());
                            carry.clear();
                            break;
                        }
                        Some(Err(need)) => {
                            if p == n {
                                break;
                            }
                            let t = (need - carry.len()).min(n - p);
                            carry.extend_from_slice(&data[p..p + t]);
                            p += t;
                        }
                        None => break,
                    }
                }
                self.carry = carry;
            }
        }
    }

    /// Parse one packet head at the start of `d`. Returns Some(Ok(bytes consumed)): a whole
    /// non-PUBLISH packet, or a PUBLISH's fixed + variable header (its payload is then skipped
    /// by `feed_mqtt`; a PUBLISH wholly inside `d` is consumed at once); Some(Err(n)): `d` is
    /// incomplete and at least `n` bytes are needed, where `n` never exceeds the head's size;
    /// None: protocol error (the connection failed).
    fn parse_head(&mut self, d: &[u8]) -> Option<Result<usize, usize>> {
        if d.len() < 2 {
            return Some(Err(2));
        }
        let mut rl = 0usize;
        let mut mult = 1usize;
        let mut i = 1;
        loop {
            if i > 4 {
                self.fail("malformed remaining length".into());
                return None;
            }
            if i >= d.len() {
                return Some(Err(i + 1));
            }
            let b = d[i];
            rl += (b & 0x7f) as usize * mult;
            mult *= 128;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        let h = d[0];
        if h >> 4 == 3 {
            let qos = (h >> 1) & 3;
            if rl < 2 {
                self.fail("short PUBLISH".into());
                return None;
            }
            if d.len() < i + 2 {
                return Some(Err(i + 2));
            }
            let tl = u16::from_be_bytes([d[i], d[i + 1]]) as usize;
            let mut vh = 2 + tl;
            if qos > 0 {
                if rl < vh + 2 {
                    self.fail("short PUBLISH".into());
                    return None;
                }
                vh += 2;
            } else {
                vh = vh.min(rl);
            }
            if d.len() < i + vh {
                return Some(Err(i + vh));
            }
            if qos > 0 {
                self.cur_ack = Some([d[i + vh - 2], d[i + vh - 1]]);
            }
            if v5() {
                // Property Length (a variable byte integer), then that many bytes.
                let (len, used) = match read_varint(&d[i + vh..]) {
                    Ok(v) => v,
                    Err(true) => return Some(Err(d.len() + 1)),
                    Err(false) => {
                        self.fail("malformed property length".into());
                        return None;
                    }
                };
                vh += used + len;
                if rl < vh {
                    self.fail("short PUBLISH".into());
                    return None;
                }
                if d.len() < i + vh {
                    return Some(Err(i + vh));
                }
            }
            let pay = rl - vh;
            self.cur_pay = pay;
            self.lat_want = if self.record_lat && pay >= 8 { 8 } else { 0 };
            self.lat_have = 0;
            if d.len() >= i + rl {
                // The whole PUBLISH is here: no need to go through the skip state.
                if self.lat_want > 0 {
                    self.lat_buf.copy_from_slice(&d[i + vh..i + vh + 8]);
                    self.lat_have = 8;
                }
                self.end_publish();
                return Some(Ok(i + rl));
            }
            self.skip = pay;
            return Some(Ok(i + vh));
        }
        if d.len() < i + rl {
            return Some(Err(i + rl));
        }
        let body = &d[i..i + rl];
        match h >> 4 {
            4 => {
                self.acks += 1;
                self.inflight = self.inflight.saturating_sub(1);
            }
            2 => {
                if body.len() < 2 || body[1] != 0 {
                    self.fail(format!("CONNACK refused: {:?}", body));
                    return None;
                }
                if let Some((t, q)) = self.sub.clone() {
                    let pid = self.alloc_pid();
                    let pkt = enc_subscribe(pid, &t, q);
                    self.send_mqtt(&pkt);
                    self.st = St::Subscribing;
                } else {
                    self.st = St::Ready;
                }
            }
            9 => {
                // 5.0: a property block sits between the packet id and the reason codes.
                let codes = if v5() {
                    match body.get(2..).map(read_varint) {
                        Some(Ok((len, used))) => body.get(2 + used + len..).unwrap_or(&[]),
                        _ => &[],
                    }
                } else {
                    body.get(2..).unwrap_or(&[])
                };
                if codes.first().is_none_or(|&c| c >= 0x80) {
                    self.fail(format!("SUBACK failure: {body:?}"));
                    return None;
                }
                self.st = St::Ready;
            }
            14 => {
                self.fail(format!("DISCONNECT from the broker: {body:?}"));
                return None;
            }
            13 => {}
            t => {
                self.fail(format!("unexpected packet type {t}"));
                return None;
            }
        }
        Some(Ok(i + rl))
    }

    /// A PUBLISH has been received completely: acknowledge (QoS 1) and count it.
    pub(crate) fn end_publish(&mut self) {
        if let Some(pid) = self.cur_ack.take() {
            let ack = [0x40, 2, pid[0], pid[1]];
            self.send_mqtt(&ack);
        }
        self.pubs += 1;
        self.pub_bytes += self.cur_pay as u64;
        self.big = self.cur_pay >= DISCARD_MIN;
        if self.lat_want > 0 && self.lat_have >= 8 {
            if self.now == 0 {
                self.now = now_ns();
            }
            let ts = u64::from_le_bytes(self.lat_buf);
            self.lat.push((ts, self.now.saturating_sub(ts)));
        }
        self.lat_want = 0;
        self.lat_have = 0;
    }
}
