//! HTML building blocks: escaping, the page frame, number and time formatting, badges.
//!
//! Every piece of text that did not come from this file goes through [`esc`] (or the [`E`]
//! wrapper in `format!`), attributes included.

use std::fmt::{self, Write};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

/// Escape text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    push_esc(&mut out, s);
    out
}

fn push_esc(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `format!("{}", E(s))` writes `s` escaped.
pub struct E<'a>(pub &'a str);

impl fmt::Display for E<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut start = 0;
        for (i, c) in self.0.char_indices() {
            let rep = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&self.0[start..i])?;
            f.write_str(rep)?;
            start = i + c.len_utf8();
        }
        f.write_str(&self.0[start..])
    }
}

/// Shorten `s` to at most `max` characters (with an ellipsis); not escaped.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

const STYLE: &str = include_str!("style.css");

/// Where a page sits in the navigation.
pub struct Crumb {
    pub label: String,
    pub href: Option<String>,
}

pub fn crumb(label: impl Into<String>, href: Option<String>) -> Crumb {
    Crumb {
        label: label.into(),
        href,
    }
}

/// The whole document around a page body (`body` is already HTML).
pub fn page(title: &str, crumbs: &[Crumb], refresh: Option<u32>, body: &str) -> String {
    let mut s = String::with_capacity(body.len() + STYLE.len() + 1024);
    s.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    s.push_str("<link rel=\"icon\" href=\"data:,\">");
    if let Some(r) = refresh {
        let _ = write!(s, "<meta http-equiv=\"refresh\" content=\"{r}\">");
    }
    let _ = write!(s, "<title>{} · infoaudit</title>", E(title));
    s.push_str("<style>");
    s.push_str(STYLE);
    s.push_str("</style></head><body>");
    s.push_str(
        "<header class=\"top\"><a class=\"brand\" href=\"/\">infoaudit</a><nav class=\"crumbs\">",
    );
    for (i, c) in crumbs.iter().enumerate() {
        if i > 0 {
            s.push_str("<span class=\"sep\">/</span>");
        }
        match &c.href {
            Some(h) => {
                let _ = write!(s, "<a href=\"{}\">{}</a>", E(h), E(&c.label));
            }
            None => {
                let _ = write!(s, "<span>{}</span>", E(&c.label));
            }
        }
    }
    s.push_str("</nav><nav class=\"links\"><a href=\"/\">Models</a><a href=\"/incidents\">Incidents</a><a href=\"/docs\">API docs</a><a href=\"/openapi.json\">OpenAPI</a></nav></header><main>");
    s.push_str(body);
    s.push_str("</main><footer>Information values are in bits (stored in nats, divided by ln 2). \
        Intervals are the estimators' stored intervals (usually 95%). \
        Times are UTC. <a href=\"/docs\">API docs</a> · <a href=\"/openapi.json\">openapi.json</a></footer></body></html>\n");
    s
}

/// An HTML response with a strict content security policy (no scripts at all).
pub fn respond(status: StatusCode, html: String) -> Response {
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

// ---------------------------------------------------------------------------------------------
// Numbers

/// A number for display: 4 decimals below 100, fewer above, never "-0.0000".
/// A share as a percentage with three significant digits at most, trailing zeros dropped:
/// 1/3 → "33.3%", 0.02 → "2%", 0.0005 → "0.05%", 0.95 → "95%".
pub fn pct(x: f64) -> String {
    let p = x * 100.0;
    if !p.is_finite() {
        return format!("{}%", num(p));
    }
    if p == 0.0 {
        return "0%".into();
    }
    let decimals = (2 - p.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{p:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{}%", s.replace('-', "−"))
}

pub fn num(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            "∞".into()
        } else {
            "−∞".into()
        };
    }
    let a = x.abs();
    let s = if a >= 1e6 {
        format!("{x:.3e}")
    } else if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.2}")
    } else if a > 0.0 && a < 1e-4 {
        format!("{x:.2e}")
    } else {
        format!("{x:.4}")
    };
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s.replacen('-', "−", 1)
    }
}

pub fn opt_num(x: Option<f64>) -> String {
    x.map(num).unwrap_or_else(|| "—".into())
}

/// `0.8113 bits` (or the special value in words).
pub fn bits(x: Option<f64>, special: Option<&str>) -> String {
    match (x, special) {
        (Some(v), _) => format!("{} bits", num(v)),
        (None, Some("-Infinity")) => "−∞ bits".into(),
        (None, Some("Infinity")) => "∞ bits".into(),
        (None, Some(s)) => s.to_string(),
        (None, None) => "—".into(),
    }
}

/// The interval as `[lo, hi]`, or empty.
pub fn interval(lo: Option<f64>, hi: Option<f64>) -> String {
    match (lo, hi) {
        (Some(l), Some(h)) => format!("[{}, {}]", num(l), num(h)),
        // one-sided: a lower confidence bound (variational bounds)
        (Some(l), None) => format!("[{}, ∞)", num(l)),
        _ => String::new(),
    }
}

/// An integer with thin-space thousands separators.
pub fn int(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    if n < 0 {
        format!("−{out}")
    } else {
        out
    }
}

pub fn bytes(n: i64) -> String {
    let n = n as f64;
    if n < 1024.0 {
        format!("{n} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else if n < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / 1048576.0)
    } else {
        format!("{:.2} GiB", n / 1073741824.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Time

/// A time in UTC to the minute, with the full time in the tooltip.
pub fn time(t: &DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\" title=\"{}\">{}</time>",
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        t.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
        t.format("%Y-%m-%d %H:%M")
    )
}

/// A duration for humans: `850 ms`, `12.3 s`, `4 min 5 s`, `2 h 10 min`.
pub fn duration(d: chrono::TimeDelta) -> String {
    let ms = d.num_milliseconds().max(0);
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

pub fn opt_time(t: Option<&DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_else(|| "—".into())
}

// ---------------------------------------------------------------------------------------------
// Badges

/// A gate verdict as a coloured badge (the word is always shown; colour is only a second cue).
pub fn verdict(v: &str) -> String {
    let class = match v {
        "pass" | "warn" | "fail" | "inconclusive" | "pending" => v,
        _ => "other",
    };
    format!("<span class=\"badge v-{class}\">{}</span>", E(v))
}

/// A job state as a coloured badge.
pub fn job_state(s: &str) -> String {
    let class = match s {
        "succeeded" => "pass",
        "failed" => "fail",
        "running" => "running",
        "queued" => "pending",
        "cancelled" => "other",
        _ => "other",
    };
    format!("<span class=\"badge v-{class}\">{}</span>", E(s))
}

pub fn alias_badge(a: &str) -> String {
    format!("<span class=\"badge alias\">{}</span>", E(a))
}

/// Parameters as `key=value` pairs (values as compact JSON), escaped.
pub fn params(v: &serde_json::Value) -> String {
    match v.as_object() {
        Some(o) if !o.is_empty() => o
            .iter()
            .map(|(k, x)| {
                let x = match x {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("<span class=\"kv\">{}={}</span>", E(k), E(&x))
            })
            .collect::<Vec<_>>()
            .join(" "),
        Some(_) => "<span class=\"muted\">defaults</span>".into(),
        None => json_inline(v),
    }
}

/// Compact one-line JSON, escaped.
pub fn json_inline(v: &serde_json::Value) -> String {
    esc(&v.to_string())
}

/// Pretty JSON in a `<pre>`, escaped.
pub fn json_block(v: &serde_json::Value) -> String {
    format!(
        "<pre class=\"json\">{}</pre>",
        E(&serde_json::to_string_pretty(v).unwrap_or_default())
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn shares_have_three_significant_digits_at_most() {
        for (x, want) in [
            (1.0 / 3.0, "33.3%"),
            (0.02, "2%"),
            (0.0005, "0.05%"),
            (0.95, "95%"),
            (0.999, "99.9%"),
            (1.0, "100%"),
            (0.0, "0%"),
            (-0.025, "−2.5%"),
            (0.123456, "12.3%"),
        ] {
            assert_eq!(super::pct(x), want, "{x}");
        }
    }

    use super::*;

    #[test]
    fn escapes_everything_that_matters() {
        let s = "<script>alert(\"x\" & 'y')</script>";
        let want = "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;";
        assert_eq!(esc(s), want);
        assert_eq!(format!("{}", E(s)), want);
        assert_eq!(format!("{}", E("plain ünïcode")), "plain ünïcode");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(1.0), "1.0000");
        assert_eq!(num(-0.00001), "−1.00e-5");
        assert_eq!(num(-0.0), "0.0000");
        assert_eq!(num(-0.3), "−0.3000");
        assert_eq!(num(1234.4), "1234");
        assert_eq!(num(f64::NEG_INFINITY), "−∞");
        assert_eq!(int(1234567), "1\u{202f}234\u{202f}567");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
