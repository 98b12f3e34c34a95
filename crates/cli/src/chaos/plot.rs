//! An SVG of a chaos run: acknowledgements per second on top, spool depth below, with every
//! fault drawn as a shaded band across both. Written by hand (a few lines of SVG), so the
//! report needs no plotting library and renders in any browser or on GitHub.

use std::fmt::Write as _;

use super::faults::FaultEvent;
use super::report::Sample;
use super::schedule::FaultKind;

const W: f64 = 1000.0;
const PANEL_H: f64 = 190.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 45.0;

fn color(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::BrokerKill => "#d62728",
        FaultKind::BrokerPause => "#ff7f0e",
        FaultKind::Blackhole => "#7f7f7f",
        FaultKind::NetDrop => "#393b79",
        FaultKind::LeaderUnreachable => "#8c564b",
        FaultKind::LeaderMove => "#bcbd22",
        FaultKind::GatewayKill => "#1f77b4",
        FaultKind::GatewayKillOutage => "#9467bd",
        FaultKind::GatewayKillDrain => "#e377c2",
        FaultKind::DiskFull => "#2ca02c",
        FaultKind::TornWrite => "#17becf",
    }
}

/// A "nice" axis maximum at or above `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

struct Panel {
    top: f64,
    max: f64,
    t_max: f64,
}

impl Panel {
    fn x(&self, t: f64) -> f64 {
        LEFT + (W - LEFT - RIGHT) * (t / self.t_max).clamp(0.0, 1.0)
    }
    fn y(&self, v: f64) -> f64 {
        self.top + PANEL_H * (1.0 - (v / self.max).clamp(0.0, 1.0))
    }

    fn frame(&self, s: &mut String, title: &str, events: &[FaultEvent]) {
        for e in events {
            let (x0, x1) = (self.x(e.start_s), self.x(e.end_s));
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{PANEL_H}" fill="{}" fill-opacity="0.18"/>"#,
                self.top,
                (x1 - x0).max(1.0),
                color(e.kind)
            );
        }
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{:.1}" width="{:.1}" height="{PANEL_H}" fill="none" stroke="#333"/>"##,
            self.top,
            W - LEFT - RIGHT
        );
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{:.1}" font-size="13" font-weight="bold">{title}</text>"#,
            self.top - 6.0
        );
        for i in 0..=4 {
            let v = self.max * f64::from(i) / 4.0;
            let y = self.y(v);
            let _ = writeln!(
                s,
                r##"<line x1="{:.1}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="#333"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                LEFT - 4.0,
                LEFT - 6.0,
                y + 4.0,
                v.round()
            );
        }
        let step = nice_max(self.t_max / 10.0);
        let mut t = 0.0;
        while t <= self.t_max + 1e-9 {
            let x = self.x(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}s</text>"##,
                self.top + PANEL_H,
                self.top + PANEL_H + 4.0,
                self.top + PANEL_H + 16.0,
                t.round()
            );
            t += step;
        }
    }

    fn line(&self, s: &mut String, points: &[(f64, f64)], stroke: &str) {
        if points.is_empty() {
            return;
        }
        let mut d = String::new();
        for (i, (t, v)) in points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1} ",
                if i == 0 { "M" } else { "L" },
                self.x(*t),
                self.y(*v)
            );
        }
        let _ = writeln!(
            s,
            r#"<path d="{d}" fill="none" stroke="{stroke}" stroke-width="1.3"/>"#
        );
    }
}

/// The whole picture.
pub fn svg(title: &str, timeline: &[Sample], events: &[FaultEvent]) -> String {
    let t_max = timeline
        .iter()
        .map(|s| s.t)
        .chain(events.iter().map(|e| e.end_s))
        .fold(1.0f64, f64::max);
    let acks: Vec<(f64, f64)> = timeline.iter().map(|s| (s.t, s.acks_per_s)).collect();
    let depth: Vec<(f64, f64)> = timeline
        .iter()
        .filter_map(|s| Some((s.t, s.spool_records? as f64)))
        .collect();
    let top = Panel {
        top: TOP,
        max: nice_max(acks.iter().map(|p| p.1).fold(0.0, f64::max)),
        t_max,
    };
    let bottom = Panel {
        top: TOP + PANEL_H + GAP,
        max: nice_max(depth.iter().map(|p| p.1).fold(0.0, f64::max)),
        t_max,
    };
    let mut kinds: Vec<FaultKind> = events.iter().map(|e| e.kind).collect();
    kinds.sort();
    kinds.dedup();
    let legend_top = bottom.top + PANEL_H + 34.0;
    let h = legend_top + 20.0 * ((kinds.len() as f64) / 4.0).ceil() + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h:.0}" viewBox="0 0 {W} {h:.0}" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    top.frame(&mut s, "acknowledged records per second", events);
    top.line(&mut s, &acks, "#1f77b4");
    bottom.frame(&mut s, "records in the spool", events);
    bottom.line(&mut s, &depth, "#d62728");
    for (i, k) in kinds.iter().enumerate() {
        let x = LEFT + 230.0 * (i % 4) as f64;
        let y = legend_top + 20.0 * (i / 4) as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{:.1}" width="14" height="12" fill="{}" fill-opacity="0.45"/><text x="{:.1}" y="{y:.1}" font-size="12">{}</text>"#,
            y - 10.0,
            color(*k),
            x + 20.0,
            k.name()
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_draws_both_series_and_a_band_per_fault() {
        let timeline: Vec<Sample> = (0..10)
            .map(|i| Sample {
                t: f64::from(i),
                acks_per_s: 100.0,
                spool_records: Some(i as u64 * 10),
                gateway_rss_kib: None,
            })
            .collect();
        let events = vec![FaultEvent {
            index: 0,
            kind: FaultKind::BrokerKill,
            start_s: 2.0,
            end_s: 4.0,
            note: String::new(),
        }];
        let svg = svg("run <1>", &timeline, &events);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<path").count(), 2);
        assert!(svg.contains(color(FaultKind::BrokerKill)));
        assert!(svg.contains("run &lt;1&gt;"));
    }

    #[test]
    fn axis_maxima_are_round_numbers_at_or_above_the_data() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(180.0), 200.0);
        assert_eq!(nice_max(2100.0), 2500.0);
    }
}
