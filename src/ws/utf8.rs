//! Incremental UTF-8 validation of a text message that arrives in pieces (RFC 6455 8.1): every
//! piece is checked as it arrives, so an invalid byte fails the connection at once instead of when
//! the message ends, and a code point may be split across pieces (frames or reads).

/// The text is not valid UTF-8 (an invalid byte, or the message ended inside a code point).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validation state carried between pieces of one text message.
#[derive(Debug, Default, Clone)]
pub struct Utf8Stream {
    /// The start of a code point cut off by the end of the previous piece (1 to 3 bytes, each one
    /// already known to be a valid prefix).
    partial: [u8; 4],
    partial_len: u8,
}

impl Utf8Stream {
    /// Check the next piece of the text.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), InvalidUtf8> {
        let bytes = self.complete_partial(bytes)?;
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            // `error_len() == None`: the piece ends inside a code point that may still be
            // completed by the next piece (std has already checked it is a valid prefix).
            Err(e) if e.error_len().is_none() => {
                let tail = bytes.get(e.valid_up_to()..).unwrap_or(&[]);
                let Some(slot) = self.partial.get_mut(..tail.len()) else { return Err(InvalidUtf8) };
                slot.copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// The message ended: it must not end inside a code point. Resets for the next message.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.partial_len == 0;
        self.partial_len = 0;
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    /// Forget any partial code point (a new message starts).
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }

    /// Finish the code point left over from the previous piece with the first bytes of `bytes`;
    /// returns the rest of `bytes`.
    fn complete_partial<'b>(&mut self, bytes: &'b [u8]) -> Result<&'b [u8], InvalidUtf8> {
        let have = usize::from(self.partial_len);
        if have == 0 {
            return Ok(bytes);
        }
        let take = sequence_len(self.partial[0]).saturating_sub(have).min(bytes.len());
        let mut seq = self.partial;
        let (Some(dst), Some(src)) = (seq.get_mut(have..have + take), bytes.get(..take)) else {
            return Err(InvalidUtf8);
        };
        dst.copy_from_slice(src);
        match std::str::from_utf8(seq.get(..have + take).unwrap_or(&[])) {
            Ok(_) => {
                self.partial_len = 0;
                Ok(bytes.get(take..).unwrap_or(&[]))
            }
            // Still short of the whole code point: `bytes` was too short to finish it.
            Err(e) if e.error_len().is_none() => {
                self.partial = seq;
                self.partial_len = (have + take) as u8;
                Ok(&[])
            }
            Err(_) => Err(InvalidUtf8),
        }
    }
}

/// Length of the UTF-8 sequence a lead byte starts (only called with the first byte of a valid
/// prefix, so 2-4).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
#[path = "utf8_tests.rs"]
mod tests;
