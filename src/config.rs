//! `--config FILE`: a TOML file whose `[COMMAND]` section gives flag values, e.g.
//!
//! ```toml
//! [run]
//! workers = 2
//! source = "file:data/events.jsonl"
//! emit-features = true
//! ```
//!
//! Keys are the long flag names (`_` and `-` both accepted). The section is turned into flags
//! placed *before* the command line's own, so clap validates them with the same messages and
//! an explicit flag overrides the file. Errors name the file and the key.

use std::ffi::OsString;
use std::path::Path;

use crate::error::UsageError;

/// Returns the arguments with the config file's flags for the chosen command spliced in.
pub fn expand_args(args: Vec<OsString>) -> Result<Vec<OsString>, UsageError> {
    let Some(path) = config_path(&args) else { return Ok(args) };
    let Some(command_at) = args
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-') && !is_config_value(&args, a))
        .map(|i| i + 1)
    else {
        return Ok(args);
    };
    let command = args[command_at].to_string_lossy().into_owned();
    let flags = flags_from_file(Path::new(&path), &command)?;
    let mut out = args[..=command_at].to_vec();
    out.extend(flags.into_iter().map(OsString::from));
    out.extend_from_slice(&args[command_at + 1..]);
    Ok(out)
}

fn is_config_value(args: &[OsString], candidate: &OsString) -> bool {
    args.windows(2).any(|w| w[0] == "--config" && std::ptr::eq(&w[1], candidate))
}

fn config_path(args: &[OsString]) -> Option<String> {
    let mut iter = args.iter().map(|a| a.to_string_lossy());
    while let Some(arg) = iter.next() {
        if arg == "--config" {
            return iter.next().map(|s| s.into_owned());
        }
        if let Some(value) = arg.strip_prefix("--config=") {
            return Some(value.to_owned());
        }
    }
    None
}

/// Reads `[command]` of the TOML file as a list of flags.
pub fn flags_from_file(path: &Path, command: &str) -> Result<Vec<String>, UsageError> {
    let fail = |msg: String| UsageError(format!("config file {}: {msg}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| fail(e.to_string()))?;
    let mut flags = Vec::new();
    for (key, value) in &table {
        if !value.is_table() {
            return Err(fail(format!("key `{key}` must be inside a [command] section, e.g. [{command}]")));
        }
    }
    let Some(toml::Value::Table(section)) = table.get(command) else { return Ok(flags) };
    for (key, value) in section {
        let flag = format!("--{}", key.replace('_', "-"));
        match value {
            toml::Value::Boolean(true) => flags.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => flags.extend([flag, s.clone()]),
            toml::Value::Integer(i) => flags.extend([flag, i.to_string()]),
            toml::Value::Float(f) => flags.extend([flag, f.to_string()]),
            toml::Value::Array(items) => {
                for item in items {
                    let Some(text) = item.as_str() else {
                        return Err(fail(format!("[{command}] {key}: expected an array of strings")));
                    };
                    flags.extend([flag.clone(), text.to_owned()]);
                }
            }
            _ => return Err(fail(format!("[{command}] {key}: expected a string, number or boolean"))),
        }
    }
    Ok(flags)
}

/// Parses a duration like `250ms`, `10s`, `5m`, `2h`, `30d` into milliseconds.
pub fn parse_duration_ms(field: &str, text: &str) -> Result<i64, UsageError> {
    operators::time::duration::parse_ms(text).map_err(|e| UsageError(format!("{field}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("lateness", "5m").unwrap(), 300_000);
        assert_eq!(parse_duration_ms("x", "250ms").unwrap(), 250);
        assert_eq!(parse_duration_ms("x", "30d").unwrap(), 2_592_000_000);
        let err = parse_duration_ms("lateness", "5 minutes").unwrap_err();
        assert!(err.0.contains("lateness"), "{}", err.0);
        assert!(parse_duration_ms("x", "m").is_err());
    }

    #[test]
    fn config_sections_become_flags_before_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.toml");
        std::fs::write(&path, "[run]\nworkers = 2\nemit_features = true\nsource = \"file:x\"\n[gen]\nseed = 3\n")
            .unwrap();
        let args: Vec<OsString> =
            ["vigil", "--config", path.to_str().unwrap(), "run", "--workers", "1"].iter().map(OsString::from).collect();
        let expanded: Vec<String> =
            expand_args(args).unwrap().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            &expanded[3..],
            ["run", "--emit-features", "--source", "file:x", "--workers", "2", "--workers", "1"]
        );
        std::fs::write(&path, "workers = 2\n").unwrap();
        let err = flags_from_file(&path, "run").unwrap_err();
        assert!(err.0.contains("workers") && err.0.contains("vigil.toml"), "{}", err.0);
    }

    #[test]
    fn arrays_repeat_their_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.toml");
        std::fs::write(&path, "[run]\nkafka_option = [\"a=1\", \"b=2\"]\n").unwrap();
        let flags = flags_from_file(&path, "run").unwrap();
        assert_eq!(flags, ["--kafka-option", "a=1", "--kafka-option", "b=2"]);
        std::fs::write(&path, "[run]\nkafka_option = [1]\n").unwrap();
        let err = flags_from_file(&path, "run").unwrap_err();
        assert!(err.0.contains("kafka_option: expected an array of strings"), "{}", err.0);
    }

    #[test]
    fn http_transport_keys_become_run_flags() {
        use clap::Parser;

        use crate::cli::{Cli, Command};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.toml");
        let parse = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let flags = flags_from_file(&path, "run").unwrap();
            Cli::try_parse_from(["vigil".to_owned(), "run".to_owned()].into_iter().chain(flags))
        };
        let cli = parse(
            "[run]\nhttp = \"127.0.0.1:0\"\nhttp_token_file = \"token\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nhttp_max_in_flight = 8\n",
        )
        .unwrap();
        let Command::Run(run) = cli.command else { panic!("not run") };
        assert_eq!(run.http_token_file.as_deref(), Some(Path::new("token")));
        assert_eq!(run.tls_cert.as_deref(), Some(Path::new("c.pem")));
        assert_eq!(run.tls_key.as_deref(), Some(Path::new("k.pem")));
        assert_eq!(run.http_max_in_flight, Some(8));
        // One TLS file without the other, or transport keys without `http`, are usage errors.
        assert!(parse("[run]\nhttp = \"127.0.0.1:0\"\ntls_cert = \"c.pem\"\n").is_err());
        assert!(parse("[run]\nhttp_token_file = \"token\"\n").is_err());
    }

    /// Fuzzing the loader within CI time: any file text becomes flags or a message naming the
    /// file, and whatever flags a file yields, clap accepts or rejects them without a panic.
    mod hostile {
        use clap::Parser;
        use proptest::prelude::*;

        use super::*;
        use crate::cli::Cli;

        const KEYS: [&str; 10] = [
            "workers",
            "threshold",
            "lateness",
            "checkpoint_interval",
            "checkpoint_dir",
            "block_len",
            "rate",
            "emit_features",
            "kafka_option",
            "no_such_flag",
        ];

        fn toml_value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|x| format!("{x:?}")),
                Just("nan".to_owned()),
                Just("-inf".to_owned()),
                any::<bool>().prop_map(|b| b.to_string()),
                "[ -~]{0,20}".prop_map(|s| format!("{s:?}")),
                Just("[1, \"a\"]".to_owned()),
                Just("{ a = 1 }".to_owned()),
                Just("2026-01-01T00:00:00Z".to_owned()),
            ]
        }

        fn load(text: &[u8]) -> Result<Vec<String>, UsageError> {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("hostile.toml");
            std::fs::write(&path, text).unwrap();
            flags_from_file(&path, "run")
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_bytes_are_flags_or_a_message_naming_the_file(
                text in proptest::collection::vec(any::<u8>(), 0..200)
            ) {
                if let Err(e) = load(&text) {
                    prop_assert!(e.0.contains("hostile.toml"), "{}", e.0);
                }
            }

            #[test]
            fn hostile_values_of_real_keys_never_panic_the_command_line(
                entries in proptest::collection::vec((proptest::sample::select(KEYS.to_vec()), toml_value()), 0..6)
            ) {
                let mut text = String::from("[run]\n");
                let mut seen = std::collections::BTreeSet::new();
                for (key, value) in entries.into_iter().filter(|(k, _)| seen.insert(*k)) {
                    text.push_str(&format!("{key} = {value}\n"));
                }
                match load(text.as_bytes()) {
                    Ok(flags) => {
                        let args = ["vigil".to_owned(), "run".to_owned()].into_iter().chain(flags);
                        let _ = Cli::try_parse_from(args);
                    }
                    Err(e) => prop_assert!(e.0.contains("hostile.toml"), "{}", e.0),
                }
            }
        }
    }
}
