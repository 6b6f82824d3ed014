use crate::conn::{Conn, St};

// ---------------------------------------------------------------- WebSocket framing (client side)

const WS_MASK: [u8; 4] = [0x5a, 0x13, 0xc7, 0x8e];
pub(crate) const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn xor_mask(buf: &mut [u8], mask: [u8; 4]) {
    let m32 = u32::from_ne_bytes(mask) as u64;
    let m64 = m32 | (m32 << 32);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().unwrap()) ^ m64;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    let rem = chunks.into_remainder();
    for (i, b) in rem.iter_mut().enumerate() {
        *b ^= mask[i % 4]; // the full chunks consumed a multiple of 4 bytes
    }
}

/// Appends one masked binary frame carrying `payload`; returns offset of the payload in `out`.
pub(crate) fn ws_frame(out: &mut Vec<u8>, payload: &[u8]) -> usize {
    out.push(0x82);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&WS_MASK);
    let start = out.len();
    out.extend_from_slice(payload);
    xor_mask(&mut out[start..], WS_MASK);
    start
}

fn ws_control(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let start = out.len();
    ws_frame(out, payload);
    out[start] = 0x80 | opcode;
}

pub(crate) fn ws_expected_accept() -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(WS_KEY.as_bytes());
    h.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A pre-encoded packet, already framed for the transport, with patchable fields.
#[derive(Clone)]
pub(crate) struct Template {
    pub(crate) bytes: Vec<u8>,
    mqtt_start: usize,
    ws: bool,
}

impl Template {
    pub(crate) fn new(pkt: &[u8], ws: bool) -> Self {
        if ws {
            let mut bytes = Vec::with_capacity(pkt.len() + 14);
            let start = ws_frame(&mut bytes, pkt);
            Template { bytes, mqtt_start: start, ws }
        } else {
            Template { bytes: pkt.to_vec(), mqtt_start: 0, ws }
        }
    }
    /// Overwrite bytes at `off` (offset inside the MQTT packet), masking as needed.
    #[inline]
    pub(crate) fn patch(&mut self, off: usize, val: &[u8]) {
        for (i, v) in val.iter().enumerate() {
            let m = if self.ws { WS_MASK[(off + i) % 4] } else { 0 };
            self.bytes[self.mqtt_start + off + i] = v ^ m;
        }
    }
}

impl Conn {
    /// Streaming WebSocket deframing: a frame header is parsed as soon as it is complete, then
    /// the frame's payload is passed on chunk by chunk as it arrives (unmasked in place if the
    /// server masked it), never waiting for the whole frame.
    pub(crate) fn feed_ws(&mut self, buf: &mut [u8]) {
        let n = buf.len();
        let mut p = 0;
        while p < n && self.st != St::Dead {
            if self.ws_left > 0 {
                let k = (n - p).min(self.ws_left.min(usize::MAX as u64) as usize);
                let chunk = &mut buf[p..p + k];
                if let Some(m) = self.ws_mask {
                    let o = self.ws_moff;
                    xor_mask(chunk, [m[o & 3], m[(o + 1) & 3], m[(o + 2) & 3], m[(o + 3) & 3]]);
                    self.ws_moff = (o + k) & 3;
                }
                if self.ws_op <= 2 {
                    self.dbg_ws += k as u64;
                    self.feed_mqtt(chunk);
                } else if self.ws_ctl.len() < 4096 {
                    self.ws_ctl.extend_from_slice(chunk);
                }
                self.ws_left -= k as u64;
                p += k;
                if self.ws_left == 0 {
                    self.end_frame();
                }
                continue;
            }
            // Frame header: 2 bytes, + 2 or 8 extended length, + 4 mask; it may straddle reads.
            if self.ws_hlen < 2 {
                let k = (2 - self.ws_hlen).min(n - p);
                self.ws_hdr[self.ws_hlen..self.ws_hlen + k].copy_from_slice(&buf[p..p + k]);
                self.ws_hlen += k;
                p += k;
                if self.ws_hlen < 2 {
                    continue;
                }
            }
            let b1 = self.ws_hdr[1];
            let need =
                2 + match b1 & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                } + if b1 & 0x80 != 0 { 4 } else { 0 };
            let k = (need - self.ws_hlen).min(n - p);
            self.ws_hdr[self.ws_hlen..self.ws_hlen + k].copy_from_slice(&buf[p..p + k]);
            self.ws_hlen += k;
            p += k;
            if self.ws_hlen < need {
                continue;
            }
            let h = &self.ws_hdr;
            let (len, mut o) = match h[1] & 0x7f {
                126 => (u16::from_be_bytes([h[2], h[3]]) as u64, 4),
                127 => (u64::from_be_bytes(h[2..10].try_into().unwrap()), 10),
                l => (l as u64, 2),
            };
            self.ws_mask = None;
            if h[1] & 0x80 != 0 {
                self.ws_mask = Some([h[o], h[o + 1], h[o + 2], h[o + 3]]);
                o += 4;
            }
            debug_assert_eq!(o, need);
            self.ws_op = h[0] & 0x0f;
            self.ws_moff = 0;
            self.ws_hlen = 0;
            self.ws_left = len;
            self.dbg_frames += 1;
            if len == 0 {
                self.end_frame();
            }
        }
    }

    /// The current WebSocket frame is complete: act on control frames.
    pub(crate) fn end_frame(&mut self) {
        match self.ws_op {
            8 => self.fail("websocket close frame from broker".into()),
            9 => {
                let p = std::mem::take(&mut self.ws_ctl);
                ws_control(&mut self.out, 0xA, &p);
            }
            _ => {}
        }
        self.ws_ctl.clear();
    }
}
