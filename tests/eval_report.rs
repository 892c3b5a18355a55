//! `vigil eval --report DIR`: the charts are valid PNG images, `index.html` shows every one
//! of them, and its metrics table holds exactly the numbers `vigil eval --json` prints.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use support::vigil;

mod support;

const CHARTS: [&str; 4] = ["pr_curve.png", "roc_curve.png", "score_histogram.png", "feature_importance.png"];

/// Decodes the whole image (signature, IHDR, every IDAT chunk and its checksums).
fn png_size(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut reader = png::Decoder::new(file).read_info().unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    // Not a blank canvas: a chart has both white background and darker ink.
    let data = &pixels[..frame.buffer_size()];
    assert!(data.contains(&255) && data.iter().any(|&b| b < 100), "{path:?} looks blank");
    (frame.width, frame.height)
}

/// `data-metric="name" data-value="v"` pairs of the metrics table.
fn html_metrics(html: &str) -> BTreeMap<String, String> {
    let mut metrics = BTreeMap::new();
    for cell in html.split("data-metric=\"").skip(1) {
        let (name, rest) = cell.split_once('"').unwrap();
        let value = rest.split_once("data-value=\"").unwrap().1.split_once('"').unwrap().0;
        metrics.insert(name.to_owned(), value.to_owned());
    }
    metrics
}

#[test]
fn report_charts_are_pngs_and_the_page_shows_the_json_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let status = vigil()
        .args(["gen", "--seed", "11", "--events", "20000", "--users", "800", "--out", input.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let report = dir.path().join("report");
    let output = vigil()
        .args(["eval", "--input", input.to_str().unwrap(), "--json", "--report", report.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(json["positives"].as_u64().unwrap() > 0, "{json}");

    for chart in CHARTS {
        let (w, h) = png_size(&report.join(chart));
        assert!(w >= 400 && h >= 300, "{chart}: {w}x{h}");
    }

    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    for tag in ["html", "head", "body", "table", "tr", "td", "h2"] {
        let opened = html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count();
        assert_eq!(opened, html.matches(&format!("</{tag}>")).count(), "unbalanced <{tag}>");
    }
    for chart in CHARTS {
        assert!(html.contains(&format!("<img src=\"{chart}\"")), "index.html does not show {chart}");
    }

    let metrics = html_metrics(&html);
    let fields = json.as_object().unwrap();
    assert_eq!(metrics.keys().collect::<Vec<_>>(), fields.keys().collect::<Vec<_>>());
    for (name, want) in fields {
        let got = &metrics[name];
        match want.as_f64() {
            Some(want) => {
                let got: f64 = got.parse().unwrap_or_else(|e| panic!("{name}: {got}: {e}"));
                // serde_json's float parser may be one ulp off Rust's exact one.
                assert!((got - want).abs() <= 1e-12 * want.abs().max(1.0), "{name}: {got} vs {want}");
            }
            None => assert_eq!(got, "null", "{name}"),
        }
    }
}
