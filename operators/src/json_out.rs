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
    let bytes = s.as_bytes();
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain_from..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        plain_from = i + 1;
    }
    out.extend_from_slice(&bytes[plain_from..]);
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
    use super::*;

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
