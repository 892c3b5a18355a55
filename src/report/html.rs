//! The report's `index.html`: the metrics table and the charts. Each metric cell carries the
//! exact number `vigil eval --json` prints (`data-value`, serde_json's formatting) next to a
//! rounded display value, so the page can be checked against the JSON by a program.

use std::fmt::Write;

use learning::evaluation::Evaluation;

use super::importance::FeatureImportance;

/// What the page describes.
pub struct Page<'a> {
    pub model_version: &'a str,
    pub input: &'a str,
    pub evaluation: &'a Evaluation,
    /// `(file name, heading)` of each chart, in page order.
    pub charts: &'a [(&'a str, &'a str)],
    pub importance: &'a [FeatureImportance],
}

/// Renders the page.
pub fn render(page: &Page) -> anyhow::Result<String> {
    let mut html = String::new();
    writeln!(html, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">")?;
    writeln!(html, "<title>vigil model report: {}</title>", escape(page.model_version))?;
    writeln!(html, "<style>{STYLE}</style>\n</head>\n<body>")?;
    writeln!(html, "<h1>Model {}</h1>", escape(page.model_version))?;
    writeln!(html, "<p>Evaluated on <code>{}</code>.</p>", escape(page.input))?;
    metrics_table(&mut html, page.evaluation)?;
    for (file, heading) in page.charts {
        writeln!(html, "<h2>{}</h2>", escape(heading))?;
        writeln!(html, "<img src=\"{}\" alt=\"{}\">", escape(file), escape(heading))?;
    }
    importance_table(&mut html, page.importance)?;
    writeln!(html, "</body>\n</html>")?;
    Ok(html)
}

pub(crate) const STYLE: &str = "body{font-family:sans-serif;max-width:860px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}\
td.num{text-align:right;font-variant-numeric:tabular-nums}img{display:block;max-width:100%}";

/// One row per field of the JSON evaluation, in its order.
fn metrics_table(html: &mut String, evaluation: &Evaluation) -> anyhow::Result<()> {
    let value = serde_json::to_value(evaluation)?;
    let fields = value.as_object().ok_or_else(|| anyhow::anyhow!("an evaluation serialises to an object"))?;
    writeln!(html, "<table id=\"metrics\">\n<tr><th>metric</th><th>value</th></tr>")?;
    for (name, v) in fields {
        let shown = match v.as_f64() {
            Some(x) if v.is_f64() => format!("{x:.4}"),
            _ => v.to_string(),
        };
        let shown = if v.is_null() { "n/a (undefined)".to_string() } else { shown };
        writeln!(
            html,
            "<tr><td>{}</td><td class=\"num\" data-metric=\"{}\" data-value=\"{}\">{}</td></tr>",
            escape(name),
            escape(name),
            escape(&v.to_string()),
            escape(&shown)
        )?;
    }
    writeln!(html, "</table>")?;
    Ok(())
}

fn importance_table(html: &mut String, importance: &[FeatureImportance]) -> anyhow::Result<()> {
    let mut ranked: Vec<&FeatureImportance> = importance.iter().collect();
    ranked.sort_by(|a, b| b.pr_auc_drop.total_cmp(&a.pr_auc_drop));
    writeln!(html, "<table id=\"importance\">\n<tr><th>input</th><th>PR-AUC drop when shuffled</th></tr>")?;
    for f in ranked {
        writeln!(html, "<tr><td>{}</td><td class=\"num\">{:.4}</td></tr>", escape(&f.name), f.pr_auc_drop)?;
    }
    writeln!(html, "</table>")?;
    Ok(())
}

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b & \"c\"'"), "a&lt;b &amp; &quot;c&quot;&#39;");
    }
}
