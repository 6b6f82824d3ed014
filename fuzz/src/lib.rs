//! Helpers shared by the fuzz targets: reading decisions out of the fuzz input, and building the
//! client-side bytes (masked WebSocket frames) the targets feed midge.

/// The fuzz input read front to back as a series of decisions. Past the end every read yields
/// zeros or nothing, so every input is a complete program and no input is wasted.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Where to cut a stream into reads, chosen by the fuzzer: a count byte (0..=15), then that many
/// size bytes used in turn (size byte `b`: a read of `b + 1` bytes). No sizes: one read of
/// everything. Kept apart from the stream bytes so mutating one does not scramble the other.
#[derive(Debug, Clone)]
pub struct Splits {
    sizes: Vec<usize>,
}

impl Splits {
    pub fn read(input: &mut Input<'_>) -> Splits {
        let count = usize::from(input.u8() % 16);
        Splits { sizes: input.bytes(count).iter().map(|&b| usize::from(b) + 1).collect() }
    }

    /// `stream` cut into consecutive non-empty reads that together are exactly `stream`.
    pub fn chunks<'s>(&self, stream: &'s [u8]) -> Vec<&'s [u8]> {
        if self.sizes.is_empty() {
            return vec![stream];
        }
        let mut out = Vec::new();
        let mut rest = stream;
        for &size in self.sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (head, tail) = rest.split_at(size.min(rest.len()));
            out.push(head);
            rest = tail;
        }
        out
    }
}

/// Append a client-to-server WebSocket frame: masked with `mask`, shortest length form.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0F));
    let len = payload.len();
    if len <= 125 {
        out.push(0x80 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}
