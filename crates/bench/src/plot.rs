//! Line charts as SVG files, for reports people would rather look at than read.
//!
//! [`line_chart`] is deliberately small and generic so that other reports (the chaos run's
//! throughput and spool depth) can use it: a title, named series of (x, y) points, one shared
//! pair of axes. The SVG backend of `plotters` needs no system fonts (the viewer renders the
//! text).

use std::path::Path;

use plotters::prelude::*;

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Only `.svg` files are written.
    #[error("unsupported chart format for {0} (only .svg)")]
    Format(String),
    /// There is nothing to draw.
    #[error("no points to plot")]
    Empty,
    /// Drawing or writing failed.
    #[error("drawing the chart: {0}")]
    Draw(String),
}

/// The axes' labels of a chart (defaults: "x" and "y").
#[derive(Debug, Clone)]
pub struct Axes<'a> {
    pub x: &'a str,
    pub y: &'a str,
}

impl Default for Axes<'_> {
    fn default() -> Self {
        Axes { x: "x", y: "y" }
    }
}

/// Draws `series` (name, points) as lines on one chart in the SVG file `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), PlotError> {
    line_chart_with(path, title, Axes::default(), series)
}

/// [`line_chart`] with axis labels.
pub fn line_chart_with(
    path: &Path,
    title: &str,
    axes: Axes<'_>,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), PlotError> {
    if path.extension().and_then(|e| e.to_str()) != Some("svg") {
        return Err(PlotError::Format(path.display().to_string()));
    }
    let (x0, x1, y0, y1) = bounds(series).ok_or(PlotError::Empty)?;
    let draw = |e: &dyn std::fmt::Display| PlotError::Draw(e.to_string());
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| draw(&e))?;
    chart
        .configure_mesh()
        .x_desc(axes.x)
        .y_desc(axes.y)
        .y_label_formatter(&|v| short_number(*v))
        .draw()
        .map_err(|e| draw(&e))?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| draw(&e))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| draw(&e))?;
    root.present().map_err(|e| draw(&e))?;
    Ok(())
}

/// The ranges covering every point, widened when flat; `None` without points.
fn bounds(series: &[(&str, Vec<(f64, f64)>)]) -> Option<(f64, f64, f64, f64)> {
    let mut it = series
        .iter()
        .flat_map(|(_, p)| p.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let &(x, y) = it.next()?;
    let (mut x0, mut x1, mut y0, mut y1) = (x, x, y.min(0.0), y);
    for &(x, y) in it {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    Some((x0, x1, y0, y1 + (y1 - y0) * 0.05))
}

/// 1234567 → "1.2M", 1500 → "1.5k".
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_written_as_svg_with_its_title_and_series_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        let up: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), f64::from(i * i))).collect();
        let flat = vec![(0.0, 5.0), (9.0, 5.0)];
        line_chart(&path, "a title", &[("squares", up), ("flat", flat)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("a title"));
        assert!(svg.contains("squares") && svg.contains("flat"));
    }

    #[test]
    fn only_svg_and_only_with_points() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("c.png");
        assert!(matches!(
            line_chart(&png, "t", &[("a", vec![(0.0, 1.0)])]),
            Err(PlotError::Format(_))
        ));
        let svg = dir.path().join("c.svg");
        assert!(matches!(
            line_chart(&svg, "t", &[("a", vec![])]),
            Err(PlotError::Empty)
        ));
        // One point still draws (its ranges are widened).
        line_chart(&svg, "t", &[("a", vec![(1.0, 1.0)])]).unwrap();
    }

    #[test]
    fn numbers_are_shortened_for_axis_labels() {
        assert_eq!(short_number(1_234_567.0), "1.2M");
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(42.0), "42");
        assert_eq!(short_number(0.5), "0.5");
        assert_eq!(short_number(0.0), "0");
    }
}
