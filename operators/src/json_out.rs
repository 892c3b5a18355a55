//! Writing JSON by hand into byte buffers — the output side of the hot path, where building
//! `serde_json::Value`s or `format!` strings per record would dominate the cost.

/// Appends `s` as a JSON string literal (quotes and escapes included).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_str_body(out, s);
    out.push(b'"');
}

/// Appends `s` escaped for the inside of a JSON string literal (no quotes), for strings
/// assembled from several pieces.
pub fn write_str_body(out: &mut Vec<u8>, s: &str) {
    let mut rest = s.as_bytes();
    while let Some(i) = first_to_escape(rest) {
        out.extend_from_slice(&rest[..i]);
        let b = rest[i];
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => b"",
        };
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// Position of the first byte that a JSON string must escape: a quote, a backslash or a
/// control character. Eight bytes per step (SWAR: a byte-wise "has zero"/"less than" test on a
/// u64, whose lowest flagged byte is exact), since the strings of a record are short and rarely
/// need escaping; shared by the parser's fast scan and the writers here.
pub fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of eight"));
        let stops =
            below(word ^ (ONES * u64::from(b'"')), 1) | below(word ^ (ONES * u64::from(b'\\')), 1) | below(word, 0x20);
        if stops != 0 {
            return Some(i * 8 + (stops.trailing_zeros() / 8) as usize);
        }
    }
    let tail = chunks.remainder();
    let at = tail.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    Some(bytes.len() - tail.len() + at)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends a number; non-finite values (missing features) become `null`.
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let mut buf = ryu::Buffer::new();
        out.extend_from_slice(buf.format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Appends an integer.
pub fn write_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(v).as_bytes());
}

/// Appends `v` rounded to one decimal (`6.1`), for human-readable reasons.
pub fn write_one_decimal(out: &mut Vec<u8>, v: f64) {
    let tenths = (v * 10.0).round();
    if !tenths.is_finite() || tenths.abs() >= 1e17 {
        write_f64(out, v);
        return;
    }
    let tenths = tenths as i64;
    if tenths < 0 {
        out.push(b'-');
    }
    write_u64(out, tenths.unsigned_abs() / 10);
    out.push(b'.');
    out.push(b'0' + (tenths.unsigned_abs() % 10) as u8);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn first_to_escape_finds_the_first_such_byte(bytes in prop::collection::vec(prop_oneof![0x20u8..0x7f, Just(b'"'), Just(b'\\'), 0u8..0x20, 0x80u8..=0xff], 0..40)) {
            let expected = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            prop_assert_eq!(first_to_escape(&bytes), expected);
        }

        #[test]
        fn any_string_round_trips_through_serde(s in any::<String>()) {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            let back: String = serde_json::from_slice(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, s);
        }
    }

    #[test]
    fn escaped_strings_round_trip_through_serde() {
        for s in ["plain", "quote\"back\\slash", "ctl\u{1}\n\t", "ünïcødé", ""] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        write_f64(&mut out, f64::NAN);
        out.push(b' ');
        write_f64(&mut out, 0.25);
        out.push(b' ');
        write_one_decimal(&mut out, 6.06);
        out.push(b' ');
        write_one_decimal(&mut out, -0.04);
        assert_eq!(String::from_utf8(out).unwrap(), "null 0.25 6.1 0.0");
    }
}
