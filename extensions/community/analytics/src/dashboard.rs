//! The dashboard at `/dashboard`: a static page (served to anyone: it holds no data) whose
//! small script fetches `/api/report` with the admin dashboard's login token; the report —
//! summary cards, a time-series chart as inline SVG, top lists — is HTML rendered here. Every
//! value is escaped; the page's policy (the SDK's `Response::html` default) allows scripts and
//! styles from files of this origin only.

use std::fmt::Write as _;

use crate::stats::{Entry, Point, Summary};

/// The static page.
pub const PAGE: &str = include_str!("../assets/dashboard.html");
/// Its script.
pub const SCRIPT: &str = include_str!("../assets/dashboard.js");
/// Its style sheet.
pub const STYLE: &str = include_str!("../assets/dashboard.css");

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
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
    out
}

/// Everything the report shows.
#[derive(Debug)]
pub struct Report {
    /// The range, as shown: `from – to`.
    pub range: String,
    /// Totals.
    pub summary: Summary,
    /// Visitors in the last 5 minutes.
    pub realtime: i64,
    /// The time series.
    pub series: Vec<Point>,
    /// Top lists: title and rows.
    pub lists: Vec<(&'static str, Vec<Entry>)>,
}

fn duration(secs: f64) -> String {
    let secs = secs.round() as i64;
    if secs >= 60 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// The report as an HTML fragment.
pub fn render(r: &Report) -> String {
    let s = &r.summary;
    let mut html = String::new();
    let _ = write!(
        html,
        "<p class=\"legend\">{}</p><section class=\"cards\">",
        escape(&r.range)
    );
    for (label, value, id) in [
        ("Visitors", s.visitors.to_string(), "visitors"),
        ("Page views", s.pageviews.to_string(), "pageviews"),
        ("Sessions", s.sessions.to_string(), "sessions"),
        (
            "Bounce rate",
            format!("{:.0}%", s.bounce_rate * 100.0),
            "bounce",
        ),
        ("Visit duration", duration(s.avg_duration_secs), "duration"),
        (
            "Pages / session",
            format!("{:.1}", s.pages_per_session),
            "pps",
        ),
        ("Custom events", s.events.to_string(), "events"),
        ("Visitors now (5 min)", r.realtime.to_string(), "realtime"),
    ] {
        let _ = write!(
            html,
            "<div class=\"card\" id=\"card-{id}\"><b>{}</b><span>{label}</span></div>",
            escape(&value)
        );
    }
    html.push_str("</section><section class=\"chart\">");
    html.push_str(&chart(&r.series));
    html.push_str("</section><section class=\"lists\">");
    for (title, rows) in &r.lists {
        // Top lists are ordered by visitors; custom events by their count.
        html.push_str(&list(title, rows, *title != EVENTS));
    }
    html.push_str("</section>");
    html
}

/// Page views as bars and visitors as a line, with the largest value and a few dates.
pub fn chart(points: &[Point]) -> String {
    const W: f64 = 900.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 40.0;
    const BOTTOM: f64 = 24.0;
    let max = points
        .iter()
        .map(|p| p.pageviews.max(p.visitors))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = points.len().max(1) as f64;
    let step = (W - LEFT) / n;
    let y = |v: i64| (H - BOTTOM) - (v as f64 / max) * (H - BOTTOM - 10.0);
    let mut svg = format!(
        "<svg id=\"timeseries\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-label=\"Page views and visitors over time\" xmlns=\"http://www.w3.org/2000/svg\">\
         <line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{W}\" y2=\"{b}\" stroke=\"#c8ccd4\"/>\
         <text x=\"{t}\" y=\"14\" font-size=\"11\" text-anchor=\"end\" fill=\"#5b6475\">{max}</text>\
         <text x=\"{t}\" y=\"{b}\" font-size=\"11\" text-anchor=\"end\" fill=\"#5b6475\">0</text>",
        b = H - BOTTOM,
        t = LEFT - 4.0,
        max = max as i64,
    );
    let mut line = String::new();
    let label_every = (points.len() / 8).max(1);
    for (i, p) in points.iter().enumerate() {
        let x = LEFT + i as f64 * step;
        let top = y(p.pageviews);
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
             fill=\"#9db6f5\"><title>{}: {} page views, {} visitors</title></rect>",
            x + step * 0.1,
            (step * 0.8).max(0.5),
            (H - BOTTOM) - top,
            escape(&p.time),
            p.pageviews,
            p.visitors
        );
        let _ = write!(
            line,
            "{}{:.1},{:.1}",
            if i == 0 { "" } else { " " },
            x + step / 2.0,
            y(p.visitors)
        );
        if i % label_every == 0 {
            let label = if points.len() > 48 || p.time.ends_with("T00:00:00Z") {
                p.time.get(5..10).unwrap_or_default()
            } else {
                p.time.get(11..16).unwrap_or_default()
            };
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" \
                 fill=\"#5b6475\">{}</text>",
                x + step / 2.0,
                H - 6.0,
                escape(label)
            );
        }
    }
    let _ = write!(
        svg,
        "<polyline points=\"{line}\" fill=\"none\" stroke=\"#1f4fd1\" stroke-width=\"2\"/>\
         <text x=\"{W}\" y=\"14\" font-size=\"11\" text-anchor=\"end\" fill=\"#1f4fd1\">\
         — visitors ▮ page views</text></svg>"
    );
    svg
}

/// The title of the custom events' list.
pub const EVENTS: &str = "Custom events";

/// A top list: each row's value, a bar and its number of visitors (or of events).
fn list(title: &str, rows: &[Entry], visitors: bool) -> String {
    let number = |e: &Entry| if visitors { e.visitors } else { e.count };
    let mut html = format!("<div class=\"list\"><h2>{}</h2>", escape(title));
    if rows.is_empty() {
        html.push_str("<p class=\"empty\">Nothing in this range.</p></div>");
        return html;
    }
    let _ = write!(
        html,
        "<p class=\"legend\">{}</p>",
        if visitors { "visitors" } else { "events" }
    );
    let max = rows.iter().map(number).max().unwrap_or(1).max(1) as f64;
    html.push_str("<table>");
    for row in rows {
        let value = if row.value.is_empty() {
            "(none)".to_owned()
        } else {
            row.value.clone()
        };
        let _ = write!(
            html,
            "<tr><td class=\"v\">{}<svg class=\"barsvg\" viewBox=\"0 0 100 4\" \
             preserveAspectRatio=\"none\" width=\"100%\" height=\"4\"><rect width=\"{:.1}\" \
             height=\"4\" fill=\"#4c7cf0\"/></svg></td><td class=\"n\">{}</td></tr>",
            escape(&value),
            number(row) as f64 / max * 100.0,
            number(row)
        );
    }
    html.push_str("</table></div>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_the_chart_has_a_bar_per_point() {
        let points: Vec<Point> = (0..3)
            .map(|i| Point {
                time: format!("2026-03-0{}T00:00:00Z", i + 1),
                visitors: i,
                pageviews: i * 2,
            })
            .collect();
        let svg = chart(&points);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 3);
        assert!(svg.contains("<polyline"));
        let html = list(
            "Top pages",
            &[Entry {
                value: "/<script>alert(1)</script>".into(),
                visitors: 1,
                count: 1,
            }],
            true,
        );
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
        assert_eq!(duration(75.4), "1m 15s");
    }
}
