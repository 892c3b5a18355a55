//! Human-readable reasons for a decision, derived from the features that drove it.
//!
//! Analysts read these next to the score, so each names the quantity and the user's own
//! baseline ("amount 6.1x the user's 7d mean") rather than a model-internal weight.

use crate::features::{WindowFeatures, AMOUNT_RATIO, LOCATION_NEW, SECS_SINCE_PREV, TIME_UNUSUAL, VELOCITY_SCORE};
use crate::json_out::{write_one_decimal, write_u64};

/// Amount ratio from which the amount is called out.
const AMOUNT_RATIO_NOTABLE: f64 = 3.0;
/// Transactions in the last hour from which the count is called out.
const HOURLY_COUNT_NOTABLE: f64 = 5.0;
/// Velocity from which the rate is called out.
const VELOCITY_NOTABLE: f64 = 3.0;

/// Writes the reasons as JSON string elements (without brackets); returns how many.
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
        item(out, &|o| {
            o.extend_from_slice(b"amount ");
            write_one_decimal(o, ratio);
            o.extend_from_slice(b"x the user's 7d mean");
        });
    }
    if features[LOCATION_NEW] == 1.0 {
        item(out, &|o| o.extend_from_slice(b"new location"));
    }
    let hourly = features[0];
    if hourly >= HOURLY_COUNT_NOTABLE {
        item(out, &|o| {
            write_u64(o, hourly as u64);
            o.extend_from_slice(b" transactions in the last hour");
        });
    }
    let velocity = features[VELOCITY_SCORE];
    if velocity >= VELOCITY_NOTABLE && hourly < HOURLY_COUNT_NOTABLE {
        item(out, &|o| {
            o.extend_from_slice(b"velocity ");
            write_one_decimal(o, velocity);
            o.extend_from_slice(b"x the user's usual hourly rate");
        });
    }
    if features[TIME_UNUSUAL] == 1.0 {
        item(out, &|o| o.extend_from_slice(b"unusual hour for this user"));
    }
    if features[SECS_SINCE_PREV] < 0.0 {
        item(out, &|o| o.extend_from_slice(b"first transaction of this user in 30 days"));
    }
    if late {
        item(out, &|o| o.extend_from_slice(b"late event"));
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
}
