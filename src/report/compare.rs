//! `vigil eval --report DIR` with several `--model`s: `DIR/index.html` puts every model's
//! kind and metrics side by side and links each model's own report (`DIR/<version>/`).

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;
use learning::evaluation::Evaluation;
use operators::model::file::ModelMetadata;

use super::html::escape;

/// One model's column.
pub struct Row<'a> {
    pub meta: &'a ModelMetadata,
    pub evaluation: &'a Evaluation,
}

/// Writes `dir/index.html`.
pub fn write(dir: &Path, input: &str, rows: &[Row]) -> anyhow::Result<()> {
    let index = dir.join("index.html");
    std::fs::write(&index, render(input, rows)?).with_context(|| format!("--report: cannot write {}", index.display()))
}

/// The comparison page: one row per model, the exact metric values in `data-value`.
pub fn render(input: &str, rows: &[Row]) -> anyhow::Result<String> {
    let mut html = String::new();
    writeln!(html, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">")?;
    writeln!(html, "<title>vigil model comparison</title>\n<style>{}</style>\n</head>\n<body>", super::html::STYLE)?;
    writeln!(html, "<h1>Models side by side</h1>\n<p>Evaluated on <code>{}</code>.</p>", escape(input))?;
    writeln!(html, "<table id=\"models\">\n<tr><th>model</th><th>kind</th>")?;
    let metrics = ["pr_auc", "roc_auc", "precision", "recall", "f1", "recall_at_1pct_fpr", "ece", "threshold"];
    for m in metrics {
        write!(html, "<th>{m}</th>")?;
    }
    writeln!(html, "</tr>")?;
    for row in rows {
        let version = escape(&row.meta.version);
        write!(html, "<tr><td><a href=\"{version}/index.html\">{version}</a></td><td>{}</td>", escape(&row.meta.kind))?;
        let value = serde_json::to_value(row.evaluation)?;
        for m in metrics {
            let v = &value[m];
            let shown = v.as_f64().map_or_else(|| "n/a".to_string(), |x| format!("{x:.4}"));
            write!(
                html,
                "<td class=\"num\" data-metric=\"{m}\" data-value=\"{}\">{shown}</td>",
                escape(&v.to_string())
            )?;
        }
        writeln!(html, "</tr>")?;
    }
    writeln!(html, "</table>\n</body>\n</html>")?;
    Ok(html)
}
