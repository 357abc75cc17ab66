//! Server-side SVG charts: a history chart with interval bands and alias markers, a confusion
//! heat map, horizontal bars, and the R(G) curve. Every chart scales to its container's width
//! (`viewBox`, `width: 100%`); labels are laid out so they do not overlap (fewer ticks, label
//! lanes, truncation with the full text in a `<title>`).

use std::fmt::Write;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};

use super::html::{num, truncate, E};

/// Okabe–Ito colours (colour-blind-safe), yellow left out (too light on white).
pub const PALETTE: [&str; 7] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000",
];

pub fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Approximate width in px of `s` at `size` px in the UI sans-serif font.
fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.58
}

#[derive(Debug, Clone, Copy)]
struct Scale {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl Scale {
    fn new(d0: f64, d1: f64, r0: f64, r1: f64) -> Scale {
        let (d0, d1) = if (d1 - d0).abs() < 1e-12 {
            (d0 - 0.5, d1 + 0.5)
        } else {
            (d0, d1)
        };
        Scale { d0, d1, r0, r1 }
    }
    fn at(&self, x: f64) -> f64 {
        self.r0 + (x - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

/// "Nice" ticks covering [lo, hi]: steps of 1, 2 or 5 × 10^k, at most `max_n` of them.
pub fn nice_ticks(lo: f64, hi: f64, max_n: usize) -> (Vec<f64>, f64) {
    let (lo, hi) = if (hi - lo).abs() < 1e-12 {
        let pad = if lo.abs() > 1e-12 {
            lo.abs() * 0.1
        } else {
            1.0
        };
        (lo - pad, hi + pad)
    } else {
        (lo, hi)
    };
    let span = hi - lo;
    let raw = span / max_n.max(2) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let mut step = mag;
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        step = m * mag;
        if span / step <= max_n as f64 {
            break;
        }
    }
    let first = (lo / step).floor() * step;
    let last = (hi / step).ceil() * step;
    let mut ticks = Vec::new();
    let mut k = 0;
    loop {
        let v = first + k as f64 * step;
        if v > last + step * 1e-9 || k > 100 {
            break;
        }
        ticks.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        k += 1;
    }
    (ticks, step)
}

/// A tick label with as many decimals as the step needs.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = (0..10)
        .find(|&d| {
            let x = step * 10f64.powi(d as i32);
            (x - x.round()).abs() < 1e-6 * x.abs().max(1.0)
        })
        .unwrap_or(10);
    let s = format!("{v:.decimals$}");
    let s = if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    };
    s.replacen('-', "−", 1)
}

fn svg_open(out: &mut String, w: f64, h: f64, label: &str, class: &str) {
    let _ = write!(
        out,
        "<svg class=\"chart {class}\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\" \
         xmlns=\"http://www.w3.org/2000/svg\" font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif\" font-size=\"12\">",
        E(label)
    );
    let _ = write!(out, "<title>{}</title>", E(label));
}

/// Horizontal grid lines and labels of a value axis on the left.
fn y_axis(out: &mut String, ys: &Scale, ticks: &[f64], step: f64, x0: f64, x1: f64) {
    for &t in ticks {
        let y = ys.at(t);
        let stroke = if t == 0.0 { "#888" } else { "#e3e3e3" };
        let _ = write!(
            out,
            "<line x1=\"{x0:.1}\" x2=\"{x1:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{stroke}\" />\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#444\">{}</text>",
            x0 - 6.0,
            y + 4.0,
            tick_label(t, step)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Time axis

/// Ticks over [t0, t1] (seconds since the epoch) at a readable step, at most `max_n`.
fn time_ticks(t0: f64, t1: f64, max_n: usize) -> (Vec<f64>, f64) {
    const STEPS: [f64; 25] = [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
        3600.0, 7200.0, 10800.0, 21600.0, 43200.0, 86400.0, 172800.0, 604800.0, 2592000.0,
        31536000.0,
    ];
    let span = (t1 - t0).max(0.1);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / s <= max_n as f64)
        .unwrap_or_else(|| (span / max_n as f64 / 31536000.0).ceil() * 31536000.0);
    let mut ticks = Vec::new();
    let first = (t0 / step).ceil() as i64;
    let mut i = first;
    while (i as f64) * step <= t1 && ticks.len() < 200 {
        ticks.push(i as f64 * step);
        i += 1;
    }
    (ticks, step)
}

fn utc(t: f64) -> DateTime<Utc> {
    Utc.timestamp_micros((t * 1e6).round() as i64)
        .single()
        .unwrap_or_default()
}

/// Two-line tick labels: the time of day (when the step is under a day) and the date where it
/// changes (always on the first tick).
fn time_labels(ticks: &[f64], step: f64) -> Vec<(String, Option<String>)> {
    let mut prev_day: Option<(i32, u32)> = None;
    ticks
        .iter()
        .map(|&t| {
            let d = utc(t);
            let day = (d.year(), d.ordinal());
            let date = if prev_day != Some(day) {
                Some(d.format("%Y-%m-%d").to_string())
            } else {
                None
            };
            prev_day = Some(day);
            if step >= 86400.0 {
                (d.format("%Y-%m-%d").to_string(), None)
            } else if step < 1.0 {
                (
                    format!(
                        "{:02}:{:02}:{:02}.{}",
                        d.hour(),
                        d.minute(),
                        d.second(),
                        d.timestamp_subsec_millis() / 100
                    ),
                    date,
                )
            } else if step < 60.0 {
                (
                    format!("{:02}:{:02}:{:02}", d.hour(), d.minute(), d.second()),
                    date,
                )
            } else {
                (format!("{:02}:{:02}", d.hour(), d.minute()), date)
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// History

/// One downsampled group: the results of one version within one time bucket.
#[derive(Debug, Clone)]
pub struct HistPoint {
    /// Mean time of the group's results, seconds since the epoch.
    pub t: f64,
    pub t_first: f64,
    pub t_last: f64,
    /// Index into the chart's versions.
    pub version: usize,
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub count: i64,
}

/// A vertical marker (an alias move).
#[derive(Debug, Clone)]
pub struct Marker {
    pub t: f64,
    pub label: String,
}

/// The history chart: mean per time bucket and version as dots (coloured by version), the min–max
/// of the bucket as a whisker, the interval as a band per version, alias moves as dashed lines.
pub fn history(
    points: &[HistPoint],
    versions: &[String],
    markers: &[Marker],
    y_label: &str,
    unit: &str,
) -> String {
    let (w, h) = (1180.0, 400.0);
    let lanes = 3usize;
    let lane_h = 15.0;
    let (ml, mr, mt, mb) = (78.0, 24.0, 14.0 + lanes as f64 * lane_h, 52.0);
    let finite: Vec<&HistPoint> = points.iter().filter(|p| p.mean.is_some()).collect();
    let mut t0 = f64::INFINITY;
    let mut t1 = f64::NEG_INFINITY;
    for p in points {
        t0 = t0.min(p.t_first);
        t1 = t1.max(p.t_last);
    }
    for m in markers {
        t0 = t0.min(m.t);
        t1 = t1.max(m.t);
    }
    if !t0.is_finite() {
        return String::new();
    }
    let pad = if t1 > t0 { (t1 - t0) * 0.03 } else { 30.0 };
    let xs = Scale::new(t0 - pad, t1 + pad, ml, w - mr);
    let mut v0 = f64::INFINITY;
    let mut v1 = f64::NEG_INFINITY;
    for p in &finite {
        for v in [p.min, p.max, p.mean, p.ci_low, p.ci_high]
            .into_iter()
            .flatten()
        {
            v0 = v0.min(v);
            v1 = v1.max(v);
        }
    }
    if !v0.is_finite() {
        v0 = 0.0;
        v1 = 1.0;
    }
    let (yt, ystep) = nice_ticks(v0, v1, 6);
    let ys = Scale::new(yt[0], *yt.last().unwrap(), h - mb, mt);

    let mut out = String::with_capacity(64 * 1024);
    svg_open(
        &mut out,
        w,
        h,
        &format!("History of {y_label} in {unit}"),
        "history",
    );
    y_axis(&mut out, &ys, &yt, ystep, ml, w - mr);
    let _ = write!(
        out,
        "<text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\" fill=\"#222\" font-weight=\"600\">{} ({})</text>",
        (mt + h - mb) / 2.0,
        E(y_label),
        E(unit)
    );
    // Time axis.
    let max_ticks = ((w - ml - mr) / 120.0).floor().max(2.0) as usize;
    let (tt, tstep) = time_ticks(xs.d0, xs.d1, max_ticks);
    let labels = time_labels(&tt, tstep);
    let _ = write!(
        out,
        "<line x1=\"{ml}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\" />",
        w - mr,
        h - mb,
        h - mb
    );
    for (t, (l1, l2)) in tt.iter().zip(&labels) {
        let x = xs.at(*t);
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\" />\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#444\">{}</text>",
            h - mb,
            h - mb + 5.0,
            h - mb + 18.0,
            E(l1)
        );
        if let Some(d) = l2 {
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#777\" font-size=\"11\">{}</text>",
                h - mb + 33.0,
                E(d)
            );
        }
    }
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#777\" font-size=\"11\">time (UTC)</text>",
        w - mr,
        h - 4.0
    );

    // Alias markers with their labels in lanes above the plot.
    let mut sorted: Vec<&Marker> = markers.iter().collect();
    sorted.sort_by(|a, b| a.t.total_cmp(&b.t));
    let mut lane_end = vec![f64::NEG_INFINITY; lanes];
    for m in sorted {
        let x = xs.at(m.t);
        let _ = write!(
            out,
            "<g class=\"marker\"><title>{}</title><line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#555\" stroke-dasharray=\"4 3\" />",
            E(&format!("{} at {}", m.label, utc(m.t).format("%Y-%m-%d %H:%M:%S UTC"))),
            mt - 2.0,
            h - mb
        );
        let label = truncate(&m.label, 28);
        let tw = text_width(&label, 11.0);
        // Left-aligned at the line, or right-aligned when it would run off the chart.
        let (lx, anchor, start, end) = if x + 3.0 + tw <= w - 2.0 {
            (x + 3.0, "start", x, x + 3.0 + tw)
        } else {
            (x - 3.0, "end", x - 3.0 - tw, x)
        };
        if let Some(lane) = (0..lanes).find(|&l| lane_end[l] + 8.0 < start) {
            lane_end[lane] = end;
            let y = 12.0 + lane as f64 * lane_h;
            let _ = write!(
                out,
                "<text x=\"{lx:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" fill=\"#333\" font-size=\"11\">{}</text>",
                E(&label)
            );
        }
        out.push_str("</g>");
    }

    // Bands and lines per version, broken where a version has a gap much longer than its usual
    // spacing (so a band never bridges days without data).
    let bucket = (t1 - t0).max(1e-3) / 240.0;
    for vi in 0..versions.len() {
        let pts: Vec<&&HistPoint> = finite.iter().filter(|p| p.version == vi).collect();
        if pts.is_empty() {
            continue;
        }
        let mut gaps: Vec<f64> = pts.windows(2).map(|w| w[1].t - w[0].t).collect();
        gaps.sort_by(f64::total_cmp);
        let typical = gaps.get(gaps.len() / 2).copied().unwrap_or(0.0);
        let max_gap = (typical * 5.0).max(bucket * 3.0);
        let mut segments: Vec<Vec<&HistPoint>> = vec![vec![]];
        for (i, p) in pts.iter().enumerate() {
            if i > 0 && p.t - pts[i - 1].t > max_gap {
                segments.push(vec![]);
            }
            segments.last_mut().unwrap().push(p);
        }
        let c = color(vi);
        // Interval bands over consecutive runs of points that have one.
        let mut run: Vec<&HistPoint> = Vec::new();
        let flush = |run: &mut Vec<&HistPoint>, out: &mut String| {
            if run.is_empty() {
                return;
            }
            let mut d = String::new();
            if run.len() == 1 {
                let p = run[0];
                let x = xs.at(p.t);
                let _ = write!(
                    d,
                    "M{:.1},{:.1}L{:.1},{:.1}L{:.1},{:.1}L{:.1},{:.1}Z",
                    x - 4.0,
                    ys.at(p.ci_high.unwrap()),
                    x + 4.0,
                    ys.at(p.ci_high.unwrap()),
                    x + 4.0,
                    ys.at(p.ci_low.unwrap()),
                    x - 4.0,
                    ys.at(p.ci_low.unwrap())
                );
            } else {
                for (i, p) in run.iter().enumerate() {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1}",
                        if i == 0 { "M" } else { "L" },
                        xs.at(p.t),
                        ys.at(p.ci_high.unwrap())
                    );
                }
                for p in run.iter().rev() {
                    let _ = write!(d, "L{:.1},{:.1}", xs.at(p.t), ys.at(p.ci_low.unwrap()));
                }
                d.push('Z');
            }
            let _ = write!(
                out,
                "<path d=\"{d}\" fill=\"{c}\" fill-opacity=\"0.16\" stroke=\"none\" />"
            );
            run.clear();
        };
        for seg in &segments {
            for p in seg {
                if p.ci_low.is_some() && p.ci_high.is_some() {
                    run.push(p);
                } else {
                    flush(&mut run, &mut out);
                }
            }
            flush(&mut run, &mut out);
        }
        for seg in segments.iter().filter(|s| s.len() > 1) {
            let mut d = String::new();
            for (i, p) in seg.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1}",
                    if i == 0 { "M" } else { "L" },
                    xs.at(p.t),
                    ys.at(p.mean.unwrap())
                );
            }
            let _ = write!(
                out,
                "<path d=\"{d}\" fill=\"none\" stroke=\"{c}\" stroke-opacity=\"0.55\" stroke-width=\"1.2\" />"
            );
        }
    }
    // Dots (with min–max whiskers) on top.
    let r = if finite.len() > 250 { 2.2 } else { 3.2 };
    for p in &finite {
        let c = color(p.version);
        let x = xs.at(p.t);
        let mean = p.mean.unwrap();
        let mut tip = format!(
            "{} · {}: {} {unit}",
            versions.get(p.version).map(String::as_str).unwrap_or("?"),
            utc(p.t).format("%Y-%m-%d %H:%M:%S"),
            num(mean)
        );
        if p.count > 1 {
            let _ = write!(
                tip,
                " (mean of {} results, min {}, max {})",
                p.count,
                num(p.min.unwrap_or(mean)),
                num(p.max.unwrap_or(mean))
            );
        }
        if let (Some(lo), Some(hi)) = (p.ci_low, p.ci_high) {
            let _ = write!(tip, ", interval [{}, {}]", num(lo), num(hi));
        }
        let _ = write!(out, "<g><title>{}</title>", E(&tip));
        if let (Some(mn), Some(mx)) = (p.min, p.max) {
            if mx > mn {
                let _ = write!(
                    out,
                    "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{c}\" stroke-width=\"1\" />",
                    ys.at(mn),
                    ys.at(mx)
                );
            }
        }
        if (p.version / PALETTE.len()) % 2 == 1 {
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{c}\" stroke=\"#fff\" stroke-width=\"0.6\" />",
                x - r,
                ys.at(mean) - r,
                2.0 * r,
                2.0 * r
            );
        } else {
            let _ = write!(
                out,
                "<circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{c}\" stroke=\"#fff\" stroke-width=\"0.6\" />",
                ys.at(mean)
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

// ---------------------------------------------------------------------------------------------
// Confusion heat map

/// A (possibly block-aggregated) confusion table for drawing.
pub struct Heat {
    /// Row labels (true classes or class ranges), column labels (predicted).
    pub rows: Vec<String>,
    pub cols: Vec<String>,
    /// Row-major counts.
    pub counts: Vec<f64>,
}

/// Sequential blue scale (luminance is monotone: readable without colour vision).
fn blues(f: f64) -> String {
    const STOPS: [(f64, [f64; 3]); 5] = [
        (0.0, [247.0, 251.0, 255.0]),
        (0.25, [198.0, 219.0, 239.0]),
        (0.5, [107.0, 174.0, 214.0]),
        (0.75, [33.0, 113.0, 181.0]),
        (1.0, [8.0, 48.0, 107.0]),
    ];
    let f = f.clamp(0.0, 1.0);
    for w in STOPS.windows(2) {
        let (a, ca) = w[0];
        let (b, cb) = w[1];
        if f <= b {
            let u = (f - a) / (b - a);
            let c: Vec<u8> = (0..3)
                .map(|i| (ca[i] + u * (cb[i] - ca[i])).round() as u8)
                .collect();
            return format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2]);
        }
    }
    "#08306b".into()
}

/// The heat map: cells coloured by the share of their true-class row (so every class's
/// confusions are visible whatever its frequency), counts written in cells when they fit.
#[allow(clippy::needless_range_loop)] // cells are addressed by (row, column)
pub fn heatmap(h: &Heat) -> String {
    let (kr, kc) = (h.rows.len(), h.cols.len());
    if kr == 0 || kc == 0 {
        return String::new();
    }
    let longest_row = h
        .rows
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(1)
        .min(22);
    let longest_col = h
        .cols
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(1)
        .min(22);
    let ml = 40.0 + text_width(&"m".repeat(longest_row), 12.0);
    let cell = (620.0 / kc.max(kr) as f64).clamp(4.0, 64.0);
    // Column labels are rotated 45°: they need about 0.72 of their width in height.
    let mb = 40.0 + text_width(&"m".repeat(longest_col), 12.0) * 0.72;
    let mt = 14.0;
    let gw = kc as f64 * cell;
    let gh = kr as f64 * cell;
    let w = ml + gw + 150.0;
    let h_total = mt + gh + mb;
    let mut out = String::with_capacity(32 * 1024);
    svg_open(
        &mut out,
        w,
        h_total,
        "Confusion matrix: true class (rows) by predicted class (columns)",
        "heat",
    );
    let row_sums: Vec<f64> = (0..kr)
        .map(|r| h.counts[r * kc..(r + 1) * kc].iter().sum())
        .collect();
    let total: f64 = row_sums.iter().sum();
    let tips = kr * kc <= 3600;
    let text_fits = cell >= 26.0;
    for r in 0..kr {
        for c in 0..kc {
            let v = h.counts[r * kc + c];
            let share = if row_sums[r] > 0.0 {
                v / row_sums[r]
            } else {
                0.0
            };
            let x = ml + c as f64 * cell;
            let y = mt + r as f64 * cell;
            let fill = if v > 0.0 {
                blues(0.08 + 0.92 * share)
            } else {
                "#ffffff".into()
            };
            if tips {
                let _ = write!(
                    out,
                    "<g><title>true {} → predicted {}: {} ({:.1}% of the row)</title>",
                    E(&h.rows[r]),
                    E(&h.cols[c]),
                    fmt_count(v),
                    100.0 * share
                );
            }
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cell:.1}\" height=\"{cell:.1}\" fill=\"{fill}\" stroke=\"#ddd\" stroke-width=\"{}\" />",
                if cell >= 8.0 { 0.5 } else { 0.0 }
            );
            if text_fits && v > 0.0 {
                let txt = fmt_count(v);
                let size = (cell * 0.34).min(13.0);
                if text_width(&txt, size) < cell - 4.0 {
                    let fg = if 0.08 + 0.92 * share > 0.55 {
                        "#fff"
                    } else {
                        "#111"
                    };
                    let _ = write!(
                        out,
                        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{fg}\" font-size=\"{size:.1}\">{}</text>",
                        x + cell / 2.0,
                        y + cell / 2.0 + size * 0.35,
                        txt
                    );
                }
            }
            if tips {
                out.push_str("</g>");
            }
        }
    }
    // Highlight the diagonal's outline when square.
    let _ = write!(
        out,
        "<rect x=\"{ml:.1}\" y=\"{mt:.1}\" width=\"{gw:.1}\" height=\"{gh:.1}\" fill=\"none\" stroke=\"#999\" />"
    );
    // Labels: at most one every 14 px.
    let every = |k: usize| ((14.0 / cell).ceil() as usize).max(1).min(k.max(1));
    let er = every(kr);
    for r in (0..kr).step_by(er) {
        let y = mt + (r as f64 + 0.5) * cell + 4.0;
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"end\" fill=\"#333\"><title>{}</title>{}</text>",
            ml - 6.0,
            E(&h.rows[r]),
            E(&truncate(&h.rows[r], 22))
        );
    }
    let ec = every(kc);
    for c in (0..kc).step_by(ec) {
        let x = ml + (c as f64 + 0.5) * cell;
        let y = mt + gh + 10.0;
        let _ = write!(
            out,
            "<text transform=\"translate({x:.1} {y:.1}) rotate(-45)\" text-anchor=\"end\" dominant-baseline=\"middle\" fill=\"#333\"><title>{}</title>{}</text>",
            E(&h.cols[c]),
            E(&truncate(&h.cols[c], 22))
        );
    }
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#222\" font-weight=\"600\">predicted class</text>",
        ml + gw / 2.0,
        h_total - 8.0
    );
    let _ = write!(
        out,
        "<text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\" fill=\"#222\" font-weight=\"600\">true class</text>",
        mt + gh / 2.0
    );
    // Colour key.
    let kx = ml + gw + 30.0;
    let kh = gh.clamp(80.0, 220.0);
    let _ = write!(
        out,
        "<defs><linearGradient id=\"heatkey\" x1=\"0\" x2=\"0\" y1=\"1\" y2=\"0\">"
    );
    for i in 0..=8 {
        let f = i as f64 / 8.0;
        let _ = write!(
            out,
            "<stop offset=\"{f:.3}\" stop-color=\"{}\" />",
            blues(0.08 + 0.92 * f)
        );
    }
    let _ = write!(
        out,
        "</linearGradient></defs><rect x=\"{kx:.1}\" y=\"{mt:.1}\" width=\"14\" height=\"{kh:.1}\" fill=\"url(#heatkey)\" stroke=\"#999\" />\
         <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#444\" font-size=\"11\">100%</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#444\" font-size=\"11\">0%</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#444\" font-size=\"11\">of the row</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#444\" font-size=\"11\">N = {}</text>",
        kx + 20.0,
        mt + 10.0,
        kx + 20.0,
        mt + kh,
        kx,
        mt + kh + 18.0,
        kx,
        mt + kh + 34.0,
        fmt_count(total)
    );
    out.push_str("</svg>");
    out
}

fn fmt_count(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 && v.abs() < 1e15 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.2}")
    }
}

// ---------------------------------------------------------------------------------------------
// Bars

pub struct Bar {
    pub label: String,
    pub value: Option<f64>,
    /// A ghost bar behind (e.g. the upper bound).
    pub bound: Option<f64>,
    /// Text in the value column (already formatted, not escaped).
    pub text: String,
    /// Extra tooltip text.
    pub tip: String,
}

/// Horizontal bars with labels on the left, values in a column on the right, and a value axis on
/// top labelled with the unit.
pub fn bars(
    items: &[Bar],
    axis_label: &str,
    bound_label: Option<&str>,
    fixed: Option<(f64, f64)>,
) -> String {
    if items.is_empty() {
        return String::new();
    }
    let longest = items
        .iter()
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(1)
        .min(26);
    let ml = 16.0 + text_width(&"m".repeat(longest), 12.0).max(40.0);
    let longest_text = items
        .iter()
        .map(|b| b.text.chars().count())
        .max()
        .unwrap_or(4);
    let mr = 18.0 + text_width(&"0".repeat(longest_text), 12.0).max(60.0);
    let row = 22.0;
    let (w, mt, mb) = (1180.0, 40.0, 12.0);
    let h = mt + items.len() as f64 * row + mb;
    let mut lo: f64 = 0.0;
    let mut hi: f64 = 0.0;
    for b in items {
        for v in [b.value, b.bound].into_iter().flatten() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if let Some((a, b)) = fixed {
        lo = lo.min(a);
        hi = hi.max(b);
    }
    if hi - lo < 1e-12 {
        hi = lo + 1.0;
    }
    let max_ticks = ((w - ml - mr) / 80.0).floor().max(2.0) as usize;
    let (ticks, step) = nice_ticks(lo, hi, max_ticks.min(8));
    let xs = Scale::new(ticks[0], *ticks.last().unwrap(), ml, w - mr);
    let mut out = String::with_capacity(8 * 1024);
    svg_open(&mut out, w, h, axis_label, "bars");
    for &t in &ticks {
        let x = xs.at(t);
        let stroke = if t == 0.0 { "#888" } else { "#e3e3e3" };
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{stroke}\" />\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#444\">{}</text>",
            mt - 4.0,
            h - mb,
            mt - 8.0,
            tick_label(t, step)
        );
    }
    let _ = write!(
        out,
        "<text x=\"{ml:.1}\" y=\"13\" fill=\"#222\" font-weight=\"600\">{}</text>",
        E(axis_label)
    );
    if let Some(bl) = bound_label {
        let lx = w - mr;
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"4\" width=\"14\" height=\"10\" fill=\"#0072B2\" fill-opacity=\"0.18\" stroke=\"#0072B2\" stroke-opacity=\"0.5\" stroke-dasharray=\"2 2\" />\
             <text x=\"{:.1}\" y=\"13\" text-anchor=\"end\" fill=\"#444\" font-size=\"11\">{}</text>",
            lx - 14.0,
            lx - 18.0,
            E(bl)
        );
    }
    let zero = xs.at(0.0_f64.clamp(xs.d0, xs.d1));
    for (i, b) in items.iter().enumerate() {
        let y = mt + i as f64 * row;
        let _ = write!(out, "<g><title>{}{}</title>", E(&b.label), E(&b.tip));
        if let Some(bd) = b.bound {
            let (a, c) = (zero.min(xs.at(bd)), zero.max(xs.at(bd)));
            let _ = write!(
                out,
                "<rect x=\"{a:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#0072B2\" fill-opacity=\"0.14\" stroke=\"#0072B2\" stroke-opacity=\"0.45\" stroke-dasharray=\"2 2\" />",
                y + 3.0,
                (c - a).max(0.5),
                row - 6.0
            );
        }
        if let Some(v) = b.value {
            let (a, c) = (zero.min(xs.at(v)), zero.max(xs.at(v)));
            let fill = if v < 0.0 { "#D55E00" } else { "#0072B2" };
            let _ = write!(
                out,
                "<rect x=\"{a:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{fill}\" />",
                y + 5.0,
                (c - a).max(0.8),
                row - 10.0
            );
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#222\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#222\" class=\"mono\">{}</text></g>",
            ml - 8.0,
            y + row / 2.0 + 4.0,
            E(&truncate(&b.label, 26)),
            w - 6.0,
            y + row / 2.0 + 4.0,
            E(&b.text)
        );
    }
    out.push_str("</svg>");
    out
}

// ---------------------------------------------------------------------------------------------
// R(G)

pub struct RgPoint {
    pub s: f64,
    pub g: f64,
    pub r: f64,
}

/// The R(G) curve: G (semantic information) on x, R (Shannon MI) on y, the R = G diagonal, and the
/// point at s = 1 marked.
pub fn rg_curve(points: &[RgPoint]) -> String {
    if points.is_empty() {
        return String::new();
    }
    let (w, h) = (640.0, 420.0);
    let (ml, mr, mt, mb) = (70.0, 20.0, 16.0, 52.0);
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in points {
        lo = lo.min(p.g).min(p.r);
        hi = hi.max(p.g).max(p.r);
    }
    lo = lo.min(0.0);
    let (gt, gstep) = nice_ticks(lo, hi, 6);
    let (rt, rstep) = nice_ticks(points.iter().map(|p| p.r).fold(0.0, f64::min), hi, 6);
    let xs = Scale::new(gt[0], *gt.last().unwrap(), ml, w - mr);
    let ys = Scale::new(rt[0], *rt.last().unwrap(), h - mb, mt);
    let mut out = String::with_capacity(8 * 1024);
    svg_open(&mut out, w, h, "R(G) curve in bits", "rg");
    y_axis(&mut out, &ys, &rt, rstep, ml, w - mr);
    for &t in &gt {
        let x = xs.at(t);
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{mt:.1}\" y2=\"{:.1}\" stroke=\"{}\" />\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#444\">{}</text>",
            h - mb,
            if t == 0.0 { "#888" } else { "#e3e3e3" },
            h - mb + 17.0,
            tick_label(t, gstep)
        );
    }
    // R = G.
    let d0 = xs.d0.max(ys.d0);
    let d1 = xs.d1.min(ys.d1);
    if d1 > d0 {
        let _ = write!(
            out,
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"5 4\" />\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#777\" font-size=\"11\" text-anchor=\"end\">R = G</text>",
            xs.at(d0),
            ys.at(d0),
            xs.at(d1),
            ys.at(d1),
            xs.at(d1) - 4.0,
            ys.at(d1) + 14.0
        );
    }
    let mut sorted: Vec<&RgPoint> = points.iter().collect();
    sorted.sort_by(|a, b| a.s.total_cmp(&b.s));
    let mut d = String::new();
    for (i, p) in sorted.iter().enumerate() {
        let _ = write!(
            d,
            "{}{:.1},{:.1}",
            if i == 0 { "M" } else { "L" },
            xs.at(p.g),
            ys.at(p.r)
        );
    }
    let _ = write!(
        out,
        "<path d=\"{d}\" fill=\"none\" stroke=\"#0072B2\" stroke-width=\"2\" />"
    );
    for p in &sorted {
        let _ = write!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"#0072B2\"><title>s = {}: G = {} bits, R = {} bits</title></circle>",
            xs.at(p.g),
            ys.at(p.r),
            num(p.s),
            num(p.g),
            num(p.r)
        );
    }
    if let Some(p) = sorted
        .iter()
        .min_by(|a, b| (a.s - 1.0).abs().total_cmp(&(b.s - 1.0).abs()))
    {
        if (p.s - 1.0).abs() < 1e-9 {
            let (x, y) = (xs.at(p.g), ys.at(p.r));
            let _ = write!(
                out,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"5.5\" fill=\"#E69F00\" stroke=\"#222\"><title>s = 1: G = {} bits, R = {} bits</title></circle>\
                 <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#222\" font-size=\"12\">s = 1</text>",
                num(p.g),
                num(p.r),
                x + 9.0,
                y + 16.0
            );
        }
    }
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#222\" font-weight=\"600\">G: semantic information (bits)</text>\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\" fill=\"#222\" font-weight=\"600\">R: Shannon information (bits)</text>",
        (ml + w - mr) / 2.0,
        h - 10.0,
        (mt + h - mb) / 2.0
    );
    out.push_str("</svg>");
    out
}

#[cfg(test)]
#[path = "tests_chart.rs"]
mod tests;
