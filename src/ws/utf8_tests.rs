//! Tests for incremental UTF-8 validation; names cite the rule each one proves.
//! Test-only: included under #[cfg(test)] by the parent module.

use super::*;

/// Push `pieces` in order, then finish; `Err(i)`: piece `i` failed (`pieces.len()`: finish did).
fn check(pieces: &[&[u8]]) -> Result<(), usize> {
    let mut v = Utf8Stream::default();
    for (i, p) in pieces.iter().enumerate() {
        v.push(p).map_err(|_| i)?;
    }
    v.finish().map_err(|_| pieces.len())
}

/// Index of the first byte after which the text can no longer become valid UTF-8: what a
/// validator fed one byte at a time must report (std decides validity).
fn first_hopeless_byte(text: &[u8]) -> Option<usize> {
    (0..text.len()).find(|&i| matches!(std::str::from_utf8(&text[..=i]), Err(e) if e.error_len().is_some()))
}

const SAMPLES: &[&[u8]] = &[
    b"",
    b"plain ascii",
    "\u{3ba}\u{1f79}\u{3c3}\u{3bc}\u{3b5}".as_bytes(),
    "\u{7f}\u{80}\u{7ff}\u{800}\u{fffd}\u{ffff}\u{10000}\u{10ffff}".as_bytes(),
    "Hello-\u{b5}@\u{df}\u{f6}\u{e4}\u{fc}\u{e0}\u{e1}-UTF-8!!".as_bytes(),
    // Invalid: lone continuation, overlong forms, surrogates, beyond U+10FFFF, truncations.
    b"\x80",
    b"ab\xC0\x80cd",
    b"\xE0\x80\x80",
    b"\xF0\x80\x80\x80",
    b"\xED\xA0\x80",
    b"\xED\xBF\xBF",
    b"\xF4\x90\x80\x80",
    b"\xF5\x80\x80\x80",
    b"\xFE",
    b"\xFF",
    b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80edited",
    b"\xE2\x82",
    b"\xF0\x9F\x98",
    b"x\xC2",
    b"\xC2\x41",
    b"\xE2\x28\xA1",
];

#[test]
fn rfc6455_8_1_valid_text_split_anywhere_is_accepted() {
    for text in SAMPLES.iter().filter(|t| std::str::from_utf8(t).is_ok()) {
        for a in 0..=text.len() {
            for b in a..=text.len() {
                assert_eq!(check(&[&text[..a], &text[a..b], &text[b..]]), Ok(()), "{text:02x?} at {a},{b}");
            }
        }
    }
}

#[test]
fn rfc6455_8_1_invalid_text_is_refused_wherever_it_is_split() {
    for text in SAMPLES.iter().filter(|t| std::str::from_utf8(t).is_err()) {
        for a in 0..=text.len() {
            assert!(check(&[&text[..a], &text[a..]]).is_err(), "{text:02x?} at {a}");
        }
    }
}

#[test]
fn rfc6455_8_1_fails_fast_on_the_byte_that_makes_text_invalid() {
    for text in SAMPLES {
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        let expected = match (first_hopeless_byte(text), std::str::from_utf8(text)) {
            (Some(i), _) => Err(i),
            (None, Ok(_)) => Ok(()),
            // Valid so far but cut short: only the end of the message tells.
            (None, Err(_)) => Err(text.len()),
        };
        assert_eq!(check(&bytes), expected, "{text:02x?}");
    }
}

#[test]
fn rfc6455_8_1_message_ending_inside_a_code_point_is_refused() {
    assert_eq!(check(&[b"ok\xE2\x82"]), Err(1));
    assert_eq!(check(&[b"ok\xE2", b"\x82"]), Err(2));
    assert_eq!(check(&[b"ok\xE2", b"\x82", b"\xAC"]), Ok(()));
}

#[test]
fn finish_resets_for_the_next_message() {
    let mut v = Utf8Stream::default();
    assert_eq!(v.push(b"\xF0\x9F"), Ok(()));
    assert_eq!(v.finish(), Err(InvalidUtf8));
    assert_eq!(v.push(b"\x98\x80"), Err(InvalidUtf8), "the old partial code point is gone");
    let mut v = Utf8Stream::default();
    assert_eq!(v.push(b"\xF0\x9F"), Ok(()));
    v.reset();
    assert_eq!(v.push(b"abc"), Ok(()));
    assert_eq!(v.finish(), Ok(()));
}

#[test]
fn random_pieces_agree_with_std() {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Bytes drawn mostly from lead/continuation ranges so that multi-byte sequences are common.
    const POOL: &[u8] =
        &[b'a', 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF4];
    for _ in 0..20_000 {
        let len = (next() % 12) as usize;
        let text: Vec<u8> = (0..len).map(|_| POOL[(next() % POOL.len() as u64) as usize]).collect();
        let cut = if len == 0 { 0 } else { (next() % (len as u64 + 1)) as usize };
        let ok = check(&[&text[..cut], &text[cut..]]).is_ok();
        assert_eq!(ok, std::str::from_utf8(&text).is_ok(), "{text:02x?} cut {cut}");
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        if let Some(i) = first_hopeless_byte(&text) {
            assert_eq!(check(&bytes), Err(i), "{text:02x?}");
        }
    }
}
