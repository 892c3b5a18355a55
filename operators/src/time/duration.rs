//! Durations as users write them in flags and files: `250ms`, `10s`, `5m`, `2h`, `30d`.

/// Milliseconds of a duration like `250ms`, `10s`, `5m`, `2h` or `30d`; the error says why not.
pub fn parse_ms(text: &str) -> Result<i64, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if scale > 0 => n.checked_mul(scale).ok_or_else(|| format!("duration `{text}` is too large")),
        _ => Err(format!("`{text}` is not a duration like 500ms, 10s, 5m, 2h or 30d")),
    }
}
