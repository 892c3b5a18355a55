//! Human-readable reasons for a decision, derived from the features that drove it.
//!
//! Analysts read these next to the score, so each names the quantity and the user's own
//! baseline ("amount 6.1x the user's 7d mean") rather than a model-internal weight. Two
//! sources use the same phrases: the model's own ranking of its inputs for explained (high
//! score) decisions ([`write_input_reason`], see `model/explain.rs`), and fixed rules on the
//! windowed features for the others ([`write_reasons`]).

use crate::features::{WindowFeatures, AMOUNT_RATIO, LOCATION_NEW, SECS_SINCE_PREV, TIME_UNUSUAL, VELOCITY_SCORE};
use crate::json_out::{write_one_decimal, write_str_body, write_u64};

/// Amount ratio from which the amount is called out.
const AMOUNT_RATIO_NOTABLE: f64 = 3.0;
/// Transactions in the last hour from which the count is called out.
const HOURLY_COUNT_NOTABLE: f64 = 5.0;
/// Velocity from which the rate is called out.
const VELOCITY_NOTABLE: f64 = 3.0;

const NEW_LOCATION: &[u8] = b"new location";
const UNUSUAL_HOUR: &[u8] = b"unusual hour for this user";
const FIRST_TRANSACTION: &[u8] = b"first transaction of this user in 30 days";
/// The reason added to every late event (SPEC §2), whatever else is named.
pub const LATE_EVENT: &[u8] = b"\"late event\"";

fn amount_ratio_phrase(o: &mut Vec<u8>, ratio: f64) {
    o.extend_from_slice(b"amount ");
    write_one_decimal(o, ratio);
    o.extend_from_slice(b"x the user's 7d mean");
}

fn hourly_count_phrase(o: &mut Vec<u8>, count: f64) {
    write_u64(o, count.max(0.0) as u64);
    o.extend_from_slice(b" transactions in the last hour");
}

fn velocity_phrase(o: &mut Vec<u8>, velocity: f64) {
    o.extend_from_slice(b"velocity ");
    write_one_decimal(o, velocity);
    o.extend_from_slice(b"x the user's usual hourly rate");
}

/// "v14 unusually low (-7.2 vs mean 0.0)": for inputs without a phrase of their own.
fn generic_phrase(o: &mut Vec<u8>, name: &str, value: f64, mean: f64) {
    write_label(o, name);
    o.extend_from_slice(if value >= mean { b" unusually high (" } else { b" unusually low (" });
    write_one_decimal(o, value);
    o.extend_from_slice(b" vs mean ");
    write_one_decimal(o, mean);
    o.push(b')');
}

/// An unsupervised model's reason: `"amount 5234.1 above 99.95 % of events seen"`, from the
/// input's rarity term `−ln(2·t)` (t = the share of training events at least as extreme on
/// that side; `learning::unsupervised`). The percentage has as many decimals as it takes not
/// to round to 100.
pub fn write_rarity_reason(out: &mut Vec<u8>, name: &str, value: f64, mean: f64, term: f64) {
    let tail = (-term).exp() / 2.0;
    let percent = 100.0 * (1.0 - tail);
    let decimals = (-(tail * 100.0).log10()).ceil().clamp(1.0, 6.0) as usize;
    out.push(b'"');
    write_label(out, name);
    out.push(b' ');
    write_one_decimal(out, value);
    out.extend_from_slice(if value >= mean { b" above " } else { b" below " });
    let shown = format!("{:.*}", decimals, percent.min(100.0 - 10f64.powi(-(decimals as i32))));
    out.extend_from_slice(shown.as_bytes());
    out.extend_from_slice(b" % of events seen\"");
}

/// Statistics of the SPEC §2 windows, as an analyst would say them.
const WINDOW_STATS: [(&str, &str); 5] = [
    ("cnt", "transactions"),
    ("sum", "total amount"),
    ("max", "largest amount"),
    ("mean", "mean amount"),
    ("std", "spread of amounts"),
];

/// The underlying fact an input measures. Several inputs can say the same thing (a large
/// amount shows in `amount`, `amount_ratio` and every window's max, mean, sum and spread), and
/// a decision names each fact once, through its strongest input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact {
    /// The size of the amount, absolute or against the user's history.
    Amount,
    /// How many transactions, and how fast.
    Frequency,
    Location,
    HourOfDay,
    /// Time since the previous transaction.
    Recency,
    /// An input with no known relatives (e.g. an imported `v14`): its own fact, by position.
    Input(usize),
}

/// The fact model input `index`, named `name`, measures.
pub fn fact_of(index: usize, name: &str) -> Fact {
    let stat = name.split_once('_').filter(|(_, window)| ["1h", "24h", "7d"].contains(window)).map(|(stat, _)| stat);
    match (name, stat) {
        ("amount" | "amount_ratio", _) | (_, Some("sum" | "max" | "mean" | "std")) => Fact::Amount,
        ("velocity_score", _) | (_, Some("cnt")) => Fact::Frequency,
        ("location_new" | "location_distance", _) => Fact::Location,
        ("time_unusual" | "hour_of_day", _) => Fact::HourOfDay,
        ("secs_since_prev" | "days_since_last_txn", _) => Fact::Recency,
        _ => Fact::Input(index),
    }
}

/// Writes an entity feature's name (SPEC §2b, `card.cnt_1h`) in words ("transactions of this
/// card in the last 1h"); false when `name` is not one vigil words.
fn write_entity_label(o: &mut Vec<u8>, name: &str) -> bool {
    let Some((entity, feature)) = name.split_once('.') else { return false };
    let mut words = |text: &str| o.extend_from_slice(text.as_bytes());
    if feature == "secs_since_prev" {
        words(&format!("seconds since this {entity}'s previous transaction"));
    } else if feature == "amount_ratio" {
        words(&format!("amount relative to this {entity}'s 7d mean"));
    } else if let Some((attr, window)) = feature.strip_prefix("distinct_").and_then(|f| f.rsplit_once('_')) {
        let what = if attr == "userId" { "accounts".to_owned() } else { format!("distinct {attr} values") };
        words(&format!("{what} of this {entity} in {window}"));
    } else if let Some((attr, window)) = feature.strip_prefix("new_").and_then(|f| f.rsplit_once('_')) {
        words(&format!("{attr} new to this {entity} in {window}"));
    } else if let Some((stat, window)) = feature.rsplit_once('_') {
        let Some(stat_words) = WINDOW_STATS
            .iter()
            .find(|(s, _)| *s == stat)
            .map(|(_, w)| *w)
            .or((stat == "min").then_some("smallest amount"))
        else {
            return false;
        };
        let span = if window == "all" { "ever".to_owned() } else { format!("in the last {window}") };
        words(&format!("{stat_words} of this {entity} {span}"));
    } else {
        return false;
    }
    true
}

/// Writes a known input's name in words ("mean amount in the user's last 1h"), any other
/// (e.g. an imported `v14`) as it is.
fn write_label(o: &mut Vec<u8>, name: &str) {
    if write_entity_label(o, name) {
        return;
    }
    let words: Option<&[u8]> = match name {
        "hour_of_day" => Some(b"hour of day"),
        "location_distance" => Some(b"distance from the usual location"),
        "days_since_last_txn" => Some(b"days since the user's last transaction"),
        "secs_since_prev" => Some(b"seconds since the user's previous transaction"),
        _ => None,
    };
    if let Some(words) = words {
        o.extend_from_slice(words);
        return;
    }
    let window = name.split_once('_').and_then(|(stat, window)| {
        let (_, words) = WINDOW_STATS.iter().find(|(s, _)| *s == stat)?;
        ["1h", "24h", "7d"].contains(&window).then_some((words, window))
    });
    match window {
        Some((words, window)) => {
            o.extend_from_slice(words.as_bytes());
            o.extend_from_slice(b" in the user's last ");
            o.extend_from_slice(window.as_bytes());
        }
        None => write_str_body(o, name),
    }
}

/// Writes the reason for model input `name` at `value` (its training mean is `mean`) as one
/// JSON string element: the analyst's phrase for the SPEC §2 features that have one, worded
/// for the value at hand, else a comparison with the mean.
pub fn write_input_reason(out: &mut Vec<u8>, name: &str, value: f64, mean: f64) {
    out.push(b'"');
    let accounts = name.split_once('.').and_then(|(entity, f)| Some((entity, f.strip_prefix("distinct_userId_")?)));
    match name {
        // "card used by 7 accounts in 1h" (SPEC §2b, the example).
        _ if accounts.is_some() && value >= 2.0 => {
            let (entity, window) = accounts.unwrap_or_default();
            out.extend_from_slice(entity.as_bytes());
            out.extend_from_slice(b" used by ");
            write_u64(out, value as u64);
            out.extend_from_slice(b" accounts in ");
            out.extend_from_slice(window.as_bytes());
        }
        "amount_ratio" => amount_ratio_phrase(out, value),
        "cnt_1h" => hourly_count_phrase(out, value),
        "velocity_score" => velocity_phrase(out, value),
        "location_new" if value == 1.0 => out.extend_from_slice(NEW_LOCATION),
        "location_new" => out.extend_from_slice(b"known location"),
        "time_unusual" if value == 1.0 => out.extend_from_slice(UNUSUAL_HOUR),
        "time_unusual" => out.extend_from_slice(b"usual hour for this user"),
        "secs_since_prev" if value < 0.0 => out.extend_from_slice(FIRST_TRANSACTION),
        _ => generic_phrase(out, name, value, mean),
    }
    out.push(b'"');
}

/// Writes the rule-based reasons as JSON string elements (without brackets); returns how many.
pub fn write_reasons(out: &mut Vec<u8>, features: &WindowFeatures, late: bool) -> usize {
    let mut count = 0;
    let mut item = |out: &mut Vec<u8>, body: &dyn Fn(&mut Vec<u8>)| {
        if count > 0 {
            out.push(b',');
        }
        out.push(b'"');
        body(out);
        out.push(b'"');
        count += 1;
    };
    let ratio = features[AMOUNT_RATIO];
    if ratio >= AMOUNT_RATIO_NOTABLE {
        item(out, &|o| amount_ratio_phrase(o, ratio));
    }
    if features[LOCATION_NEW] == 1.0 {
        item(out, &|o| o.extend_from_slice(NEW_LOCATION));
    }
    let hourly = features[0];
    if hourly >= HOURLY_COUNT_NOTABLE {
        item(out, &|o| hourly_count_phrase(o, hourly));
    }
    let velocity = features[VELOCITY_SCORE];
    if velocity >= VELOCITY_NOTABLE && hourly < HOURLY_COUNT_NOTABLE {
        item(out, &|o| velocity_phrase(o, velocity));
    }
    if features[TIME_UNUSUAL] == 1.0 {
        item(out, &|o| o.extend_from_slice(UNUSUAL_HOUR));
    }
    if features[SECS_SINCE_PREV] < 0.0 {
        item(out, &|o| o.extend_from_slice(FIRST_TRANSACTION));
    }
    if late {
        if count > 0 {
            out.push(b',');
        }
        out.extend_from_slice(LATE_EVENT);
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(features: &WindowFeatures, late: bool) -> Vec<String> {
        let mut out = b"[".to_vec();
        write_reasons(&mut out, features, late);
        out.push(b']');
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn crafted_events_get_their_reasons() {
        let mut f = [0.0; 20];
        f[SECS_SINCE_PREV] = 60.0;
        f[0] = 1.0;
        assert!(reasons(&f, false).is_empty());
        f[AMOUNT_RATIO] = 6.06;
        f[LOCATION_NEW] = 1.0;
        f[0] = 5.0;
        f[TIME_UNUSUAL] = 1.0;
        assert_eq!(
            reasons(&f, true),
            [
                "amount 6.1x the user's 7d mean",
                "new location",
                "5 transactions in the last hour",
                "unusual hour for this user",
                "late event"
            ]
        );
        let mut g = [0.0; 20];
        g[0] = 2.0;
        g[VELOCITY_SCORE] = 4.0;
        g[SECS_SINCE_PREV] = -1.0;
        assert_eq!(
            reasons(&g, false),
            ["velocity 4.0x the user's usual hourly rate", "first transaction of this user in 30 days"]
        );
    }

    fn input_reason(name: &str, value: f64, mean: f64) -> String {
        let mut out = Vec::new();
        write_input_reason(&mut out, name, value, mean);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn entity_features_are_worded() {
        assert_eq!(input_reason("card.distinct_userId_1h", 7.0, 1.1), "card used by 7 accounts in 1h");
        assert_eq!(
            input_reason("device.cnt_24h", 40.0, 3.0),
            "transactions of this device in the last 24h unusually high (40.0 vs mean 3.0)"
        );
        assert_eq!(
            input_reason("ip.min_all", 0.5, 30.0),
            "smallest amount of this ip ever unusually low (0.5 vs mean 30.0)"
        );
        assert_eq!(
            input_reason("card.new_device_30d", 1.0, 0.1),
            "device new to this card in 30d unusually high (1.0 vs mean 0.1)"
        );
        assert_eq!(
            input_reason("card.distinct_device_7d", 4.0, 1.0),
            "distinct device values of this card in 7d unusually high (4.0 vs mean 1.0)"
        );
    }

    #[test]
    fn related_inputs_share_their_fact() {
        let names = ["amount", "amount_ratio", "max_1h", "mean_24h", "sum_7d", "std_1h"];
        assert!(names.iter().enumerate().all(|(i, n)| fact_of(i, n) == Fact::Amount));
        assert_eq!(fact_of(0, "cnt_24h"), fact_of(1, "velocity_score"));
        assert_eq!(fact_of(0, "location_new"), fact_of(1, "location_distance"));
        assert_eq!(fact_of(0, "time_unusual"), fact_of(1, "hour_of_day"));
        assert_eq!(fact_of(0, "secs_since_prev"), fact_of(1, "days_since_last_txn"));
        assert_ne!(fact_of(0, "v14"), fact_of(1, "v3"));
        assert_eq!(fact_of(5, "mean_2h"), Fact::Input(5));
    }

    #[test]
    fn input_reasons_use_the_analyst_phrases_and_a_generic_comparison() {
        assert_eq!(input_reason("amount_ratio", 6.06, 1.0), "amount 6.1x the user's 7d mean");
        assert_eq!(input_reason("cnt_1h", 7.0, 2.4), "7 transactions in the last hour");
        assert_eq!(input_reason("velocity_score", 4.0, 1.0), "velocity 4.0x the user's usual hourly rate");
        assert_eq!(input_reason("location_new", 1.0, 0.05), "new location");
        assert_eq!(input_reason("location_new", 0.0, 0.05), "known location");
        assert_eq!(input_reason("time_unusual", 1.0, 0.1), "unusual hour for this user");
        assert_eq!(input_reason("secs_since_prev", -1.0, 9000.0), "first transaction of this user in 30 days");
        assert_eq!(
            input_reason("secs_since_prev", 12.0, 9000.0),
            "seconds since the user's previous transaction unusually low (12.0 vs mean 9000.0)"
        );
        assert_eq!(input_reason("v14", -7.24, 0.01), "v14 unusually low (-7.2 vs mean 0.0)");
        assert_eq!(
            input_reason("mean_1h", 297.14, 77.7),
            "mean amount in the user's last 1h unusually high (297.1 vs mean 77.7)"
        );
        assert_eq!(
            input_reason("cnt_7d", 0.0, 9.5),
            "transactions in the user's last 7d unusually low (0.0 vs mean 9.5)"
        );
        assert_eq!(input_reason("hour_of_day", 4.0, 13.1), "hour of day unusually low (4.0 vs mean 13.1)");
        assert_eq!(input_reason("mean_2h", 1.0, 0.0), "mean_2h unusually high (1.0 vs mean 0.0)");
        assert_eq!(input_reason("amount", 950.0, 77.72), "amount unusually high (950.0 vs mean 77.7)");
        assert_eq!(input_reason("odd\"name", 2.0, 1.0), "odd\"name unusually high (2.0 vs mean 1.0)");
    }

    #[test]
    fn rarity_reasons_give_the_tail_share_back() {
        let phrase = |name: &str, value: f64, mean: f64, tail: f64| {
            let mut out = Vec::new();
            write_rarity_reason(&mut out, name, value, mean, -(2.0 * tail).ln());
            String::from_utf8(out).unwrap_or_default()
        };
        assert_eq!(phrase("amount", 5234.1, 88.0, 0.0005), "\"amount 5234.1 above 99.95 % of events seen\"");
        assert_eq!(phrase("v14", -9.25, 0.0, 0.01), "\"v14 -9.3 below 99.0 % of events seen\"");
        assert_eq!(phrase("v3", 4.0, 0.0, 1.0 / 145_001.0), "\"v3 4.0 above 99.9993 % of events seen\"");
    }
}
