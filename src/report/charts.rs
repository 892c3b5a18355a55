//! The report's PNG charts, drawn with plotters' bitmap backend. Text uses a font compiled
//! into the binary (DejaVu Sans, subset, `assets/fonts/`) through plotters' `ab_glyph`
//! feature, so charts render the same on a machine without fontconfig or any system font.

use std::path::Path;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::curves::ClassHistogram;
use super::importance::FeatureImportance;

/// Pixel size of every chart.
const SIZE: (u32, u32) = (800, 500);
const FONT: &str = "sans-serif";
const FRAUD: RGBColor = RGBColor(214, 39, 40);
const LEGIT: RGBColor = RGBColor(31, 119, 180);

/// Makes the shipped font plotters' sans-serif family; needed once per process before drawing.
pub fn register_font() -> anyhow::Result<()> {
    static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");
    plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS)
        .map_err(|_| anyhow!("the font compiled into vigil is not a valid TrueType font"))
}

/// A curve in the unit square.
pub struct Curve<'a> {
    pub title: String,
    pub x_label: &'static str,
    pub y_label: &'static str,
    pub points: &'a [(f64, f64)],
    /// A straight reference line (e.g. a random ranking), drawn in grey.
    pub reference: [(f64, f64); 2],
}

/// Draws `curve` into the PNG file `path`.
pub fn curve_chart(path: &Path, curve: &Curve) -> anyhow::Result<()> {
    let root = canvas(path)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&curve.title, (FONT, 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)?;
    chart
        .configure_mesh()
        .x_desc(curve.x_label)
        .y_desc(curve.y_label)
        .label_style((FONT, 15))
        .light_line_style(TRANSPARENT)
        .draw()?;
    chart.draw_series(LineSeries::new(curve.reference, RGBColor(160, 160, 160).stroke_width(1)))?;
    chart.draw_series(LineSeries::new(curve.points.iter().copied(), LEGIT.stroke_width(2)))?;
    root.present()?;
    Ok(())
}

/// Draws the per-class score histogram into the PNG file `path` (fraud over legitimate, both
/// translucent so overlaps stay visible).
pub fn histogram_chart(path: &Path, histogram: &ClassHistogram) -> anyhow::Result<()> {
    let root = canvas(path)?;
    let top = histogram.legit.iter().chain(&histogram.fraud).fold(0f64, |a, &b| a.max(b)).max(0.01) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption("Score by class (share of each class per bin)", (FONT, 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..1f64, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("anomaly score")
        .y_desc("share of class")
        .label_style((FONT, 15))
        .light_line_style(TRANSPARENT)
        .draw()?;
    for (shares, color, name) in [(&histogram.legit, LEGIT, "legitimate"), (&histogram.fraud, FRAUD, "fraud")] {
        let width = 1.0 / shares.len().max(1) as f64;
        let bars = shares.iter().enumerate().map(move |(i, &v)| {
            Rectangle::new([(i as f64 * width, 0.0), ((i + 1) as f64 * width, v)], color.mix(0.55).filled())
        });
        chart
            .draw_series(bars)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.mix(0.55).filled()));
    }
    chart.configure_series_labels().label_font((FONT, 16)).border_style(BLACK).background_style(WHITE).draw()?;
    root.present()?;
    Ok(())
}

/// Draws one horizontal bar per input, most important on top, into the PNG file `path`.
pub fn importance_chart(path: &Path, importance: &[FeatureImportance]) -> anyhow::Result<()> {
    let mut ranked: Vec<&FeatureImportance> = importance.iter().collect();
    ranked.sort_by(|a, b| a.pr_auc_drop.total_cmp(&b.pr_auc_drop));
    let (lo, hi) = ranked.iter().fold((0f64, 0f64), |(lo, hi), f| (lo.min(f.pr_auc_drop), hi.max(f.pr_auc_drop)));
    let pad = (hi - lo).max(0.01) * 0.05;
    let height = (120 + 22 * ranked.len() as u32).max(SIZE.1);
    let root = BitMapBackend::new(path, (SIZE.0, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let names: Vec<String> = ranked.iter().map(|f| f.name.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption("Permutation importance (drop in PR-AUC)", (FONT, 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(170)
        .build_cartesian_2d((lo - pad)..(hi + pad), (0..ranked.len() as i32).into_segmented())?;
    chart
        .configure_mesh()
        .y_labels(ranked.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => names.get(*i as usize).cloned().unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .x_desc("PR-AUC with the input shuffled, subtracted from the intact PR-AUC")
        .label_style((FONT, 14))
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .draw()?;
    chart.draw_series(ranked.iter().enumerate().map(|(i, f)| {
        let mut bar = Rectangle::new(
            [(0.0, SegmentValue::Exact(i as i32)), (f.pr_auc_drop, SegmentValue::Exact(i as i32 + 1))],
            LEGIT.filled(),
        );
        bar.set_margin(3, 3, 0, 0);
        bar
    }))?;
    root.present()?;
    Ok(())
}

fn canvas(path: &Path) -> anyhow::Result<DrawingArea<BitMapBackend<'_>, Shift>> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    Ok(root)
}
