//! Hostile and broken input, as property tests (the CI-time stand-in for a fuzzer): arbitrary
//! bytes and event-shaped records with extreme, mistyped, nested or non-finite fields never
//! panic the parser or the window state, and every record yields exactly one outcome — one
//! event or one dead letter with a reason.

use operators::batch::{EventBatch, Origin};
use operators::event::fields::ExtraFeatures;
use operators::event::parse::EventParser;
use operators::state::window::{KeyedState, WindowConfig};
use proptest::prelude::*;

/// Parses one record into `workers` batches; returns (events, dead letters) produced.
fn parse(parser: &mut EventParser, raw: &[u8], position: u64, batches: &mut [EventBatch]) -> (usize, usize) {
    let before: (usize, usize) = count(batches);
    parser.parse_into(raw, Origin { partition: 0, position }, batches, 0);
    let after = count(batches);
    (after.0 - before.0, after.1 - before.1)
}

fn count(batches: &[EventBatch]) -> (usize, usize) {
    (batches.iter().map(|b| b.events.len()).sum(), batches.iter().map(|b| b.dead.len()).sum())
}

fn parser() -> EventParser {
    EventParser::new(ExtraFeatures::new(vec!["v1".into(), "v2".into()]))
}

/// JSON text for a field value, from ordinary to hostile.
fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("\"\"".to_owned()),
        Just("{}".to_owned()),
        Just("[]".to_owned()),
        Just("NaN".to_owned()),
        Just("Infinity".to_owned()),
        Just("-Infinity".to_owned()),
        Just("\"NaN\"".to_owned()),
        Just("1e400".to_owned()),
        Just("-1e400".to_owned()),
        Just("1e308".to_owned()),
        Just("-0.0".to_owned()),
        Just("5e-324".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| format!("{x:e}")),
        (0i64..4_102_444_800_000).prop_map(|n| n.to_string()),
        "[a-zA-Z0-9 :.+-]{0,30}".prop_map(|s| format!("\"{s}\"")),
        Just("\"2026-02-30T10:00:00Z\"".to_owned()),
        Just("\"9999-12-31T23:59:59.999Z\"".to_owned()),
        Just("\"0000-01-01T00:00:00Z\"".to_owned()),
        Just("\"2026-01-15T10:30:00.123456789+14:00\"".to_owned()),
        (1usize..300).prop_map(|depth| format!("{}1{}", "[".repeat(depth), "]".repeat(depth))),
        (1usize..300).prop_map(|depth| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))),
        (0usize..3000).prop_map(|len| format!("\"{}\"", "é".repeat(len))),
    ]
}

/// An event-shaped record: each field present, absent or replaced by a hostile value,
/// possibly repeated, with noise keys.
fn record() -> impl Strategy<Value = String> {
    let field = |name: &'static str, good: &'static str| {
        prop_oneof![
            3 => Just(Some(format!("\"{name}\":{good}"))),
            1 => Just(None),
            2 => json_value().prop_map(move |v| Some(format!("\"{name}\":{v}"))),
        ]
    };
    let features = (
        field("amount", "12.5"),
        field("hour_of_day", "3"),
        field("location_distance", "4.0"),
        field("v1", "-1.5"),
        field("v2", "0.25"),
    )
        .prop_map(|(a, b, c, d, e)| {
            let inner: Vec<String> = [a, b, c, d, e].into_iter().flatten().collect();
            format!("{{{}}}", inner.join(","))
        });
    (
        field("eventId", "\"evt-1\""),
        field("userId", "\"user_7\""),
        field("timestamp", "\"2026-01-15T10:30:00.123Z\""),
        prop_oneof![3 => features.prop_map(|f| Some(format!("\"features\":{f}"))), 1 => Just(None)],
        field("label", "0"),
        proptest::option::of(json_value().prop_map(|v| format!("\"noise\":{v}"))),
        any::<bool>(),
    )
        .prop_map(|(id, user, ts, features, label, noise, repeat_id)| {
            let mut parts: Vec<String> = [id.clone(), user, ts, features, label, noise].into_iter().flatten().collect();
            if repeat_id {
                parts.extend(id);
            }
            format!("{{{}}}", parts.join(","))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_yield_exactly_one_outcome(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut batches = vec![EventBatch::default(); 2];
        let (events, dead) = parse(&mut parser(), &raw, 0, &mut batches);
        prop_assert_eq!(events + dead, 1);
        for letter in batches.iter().flat_map(|b| &b.dead) {
            prop_assert!(!letter.error.is_empty(), "a dead letter without a reason");
        }
    }

    /// Hostile records are conserved through parsing and then through the window state of
    /// two workers, whatever mix of events and dead letters they turn into.
    #[test]
    fn hostile_records_are_conserved_through_parse_and_window_state(
        records in proptest::collection::vec(record(), 1..40)
    ) {
        let mut parser = parser();
        let mut batches = vec![
            EventBatch { dest: 0, ..EventBatch::default() },
            EventBatch { dest: 1, ..EventBatch::default() },
        ];
        for (position, record) in records.iter().enumerate() {
            let (events, dead) = parse(&mut parser, record.as_bytes(), position as u64, &mut batches);
            prop_assert_eq!(events + dead, 1, "record {}", record);
        }
        let (events, dead) = count(&batches);
        let mut scored = 0;
        let mut dead_after = 0;
        for batch in batches {
            let mut state = KeyedState::new(WindowConfig::default());
            let out = state.process_epoch(&mut [batch]);
            for features in &out.windows {
                prop_assert!(features.iter().all(|f| !f.is_infinite()), "infinite feature {:?}", features);
            }
            scored += out.rows.len();
            dead_after += out.dead.len();
        }
        prop_assert_eq!(scored + dead_after, events + dead);
    }
}

#[test]
fn deep_nesting_never_overflows_the_stack() {
    for depth in [1_000, 100_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let ok = r#""eventId":"e","userId":"u","timestamp":1767225600000,"features":{"amount":1}"#;
        // An unknown key may nest as deep as it likes (it is skipped); a known one is mistyped.
        for (raw, outcome) in [
            (format!(r#"{{{ok},"noise":{nested}}}"#), (1, 0)),
            (format!(r#"{{"eventId":{nested}}}"#), (0, 1)),
            (format!(r#"{{"features":{{"amount":{nested}}}}}"#), (0, 1)),
        ] {
            let mut batches = vec![EventBatch::default()];
            let got = parse(&mut parser(), raw.as_bytes(), 0, &mut batches);
            assert_eq!(got, outcome, "depth {depth}: {}", &raw[..60]);
        }
    }
}

#[test]
fn non_finite_and_out_of_range_values_are_dead_letters_with_their_field() {
    let ok = r#""eventId":"e","userId":"u","timestamp":1767225600000"#;
    let cases = [
        (format!(r#"{{{ok},"features":{{"amount":1e999}}}}"#), "out of range"),
        (format!(r#"{{{ok},"features":{{"amount":1,"v1":-1e999}}}}"#), "out of range"),
        (format!(r#"{{{ok},"features":{{"amount":"Infinity"}}}}"#), "features.amount"),
        (format!(r#"{{{ok},"features":{{"amount":1,"hour_of_day":24}}}}"#), "hour_of_day"),
        (format!(r#"{{{ok},"features":{{"amount":-2e15}}}}"#), "magnitude above 1e15"),
        (r#"{"eventId":"e","userId":"u","timestamp":-62167219200001,"features":{"amount":1}}"#.to_owned(), "timestamp"),
        (
            r#"{"eventId":"e","userId":"u","timestamp":92233720368547758070000,"features":{"amount":1}}"#.to_owned(),
            "timestamp",
        ),
        (r#"{"eventId":"e","userId":"u","timestamp":1.5e400,"features":{"amount":1}}"#.to_owned(), "timestamp"),
    ];
    for (raw, reason) in cases {
        let mut batches = vec![EventBatch::default()];
        let (events, dead) = parse(&mut parser(), raw.as_bytes(), 0, &mut batches);
        assert_eq!((events, dead), (0, 1), "{raw}");
        let error = &batches[0].dead[0].error;
        assert!(error.contains(reason), "{raw}: `{error}` lacks `{reason}`");
    }
}
