//! The stats queries: totals (with sessions), time series, breakdowns, custom events and the
//! visitors of the last minutes — each over a date range, narrowed by filters.
//!
//! Sessions are computed at query time with window functions: a visitor's events in time
//! order start a new session after 30 minutes without one. That keeps ingestion a plain
//! append (no per-visitor state to share between instances or to lose on restart), and a
//! session is exact whatever order batches arrive in. As visitor ids change every day, a
//! session also ends at midnight UTC.

use serde::Serialize;
use solobase_sdk::tokio_postgres::types::ToSql;
use solobase_sdk::{Database, ExtensionError, Result};
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, Time};

/// A column a filter or breakdown may name, with its query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// `page` — the path (a trailing `*` matches a prefix).
    Page,
    /// `referrer` — the referring host.
    Referrer,
    /// `utm_source`.
    UtmSource,
    /// `utm_medium`.
    UtmMedium,
    /// `utm_campaign`.
    UtmCampaign,
    /// `browser`.
    Browser,
    /// `os`.
    Os,
    /// `device`.
    Device,
    /// `site` — the host of the tracked site.
    Site,
    /// `event` — the event name (`pageview` for page views).
    Event,
}

impl Column {
    const ALL: [Column; 10] = [
        Self::Page,
        Self::Referrer,
        Self::UtmSource,
        Self::UtmMedium,
        Self::UtmCampaign,
        Self::Browser,
        Self::Os,
        Self::Device,
        Self::Site,
        Self::Event,
    ];

    /// Its query parameter name.
    pub fn param(self) -> &'static str {
        match self {
            Self::Page => "page",
            Self::Referrer => "referrer",
            Self::UtmSource => "utm_source",
            Self::UtmMedium => "utm_medium",
            Self::UtmCampaign => "utm_campaign",
            Self::Browser => "browser",
            Self::Os => "os",
            Self::Device => "device",
            Self::Site => "site",
            Self::Event => "event",
        }
    }

    /// Its SQL column (fixed text: safe to put in a statement).
    fn sql(self) -> &'static str {
        match self {
            Self::Page => "path",
            Self::Event => "name",
            other => other.param(),
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.param() == name)
    }
}

/// Time-series buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// One point per hour.
    Hour,
    /// One point per day.
    Day,
}

/// A validated stats request: its range, filters and options.
#[derive(Debug, Clone)]
pub struct Params {
    /// Start of the range (inclusive).
    pub from: OffsetDateTime,
    /// End of the range (exclusive).
    pub to: OffsetDateTime,
    /// `column = value` filters.
    pub filters: Vec<(Column, String)>,
    /// `prop=key:value`: events whose property `key` is `value`.
    pub prop: Option<(String, String)>,
    /// Time-series buckets.
    pub interval: Interval,
    /// The breakdown's dimension.
    pub by: Column,
    /// The custom-event property to break down by.
    pub property: Option<String>,
    /// Most rows of a top list.
    pub limit: i64,
}

const COMMON: [&str; 13] = [
    "from",
    "to",
    "page",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "browser",
    "os",
    "device",
    "site",
    "event",
    "prop",
];

fn bad(message: String) -> ExtensionError {
    ExtensionError::InvalidRequest(message)
}

/// Parses a time: `YYYY-MM-DD` (midnight UTC; for `to`, the end of that day) or RFC 3339.
fn parse_time(name: &str, value: &str, end_of_day: bool) -> Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(value, &Rfc3339) {
        return Ok(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = Date::parse(value, &format).map_err(|_| {
        bad(format!(
            "{name}={value:?} is not a date: use YYYY-MM-DD or an RFC 3339 time such as \
             2026-01-31T12:00:00Z"
        ))
    })?;
    let start = PrimitiveDateTime::new(day, Time::MIDNIGHT).assume_utc();
    Ok(if end_of_day {
        start + Duration::days(1)
    } else {
        start
    })
}

impl Params {
    /// Parses a query string, accepting the common parameters and `extra`; anything else,
    /// or a bad value, is a clear `InvalidRequest`.
    pub fn parse(query: &str, extra: &[&str], now: OffsetDateTime) -> Result<Self> {
        let mut p = Params {
            from: now - Duration::days(7),
            to: now,
            filters: Vec::new(),
            prop: None,
            interval: Interval::Day,
            by: Column::Page,
            property: None,
            limit: 10,
        };
        let mut from = None;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let (key, value) = (key.as_ref(), value.as_ref());
            if !COMMON.contains(&key) && !extra.contains(&key) {
                let mut allowed: Vec<&str> = COMMON.to_vec();
                allowed.extend(extra);
                return Err(bad(format!(
                    "unknown parameter {key:?}: use {}",
                    allowed.join(", ")
                )));
            }
            if value.is_empty() {
                continue;
            }
            if value.len() > 500 {
                return Err(bad(format!("{key} is longer than 500 characters")));
            }
            match key {
                "from" => from = Some(parse_time(key, value, false)?),
                "to" => p.to = parse_time(key, value, true)?,
                "prop" => {
                    let (k, v) = value
                        .split_once(':')
                        .filter(|(k, _)| !k.is_empty())
                        .ok_or_else(|| {
                            bad(format!(
                                "prop={value:?}: use prop=<key>:<value>, e.g. prop=plan:pro"
                            ))
                        })?;
                    p.prop = Some((k.to_owned(), v.to_owned()));
                }
                "interval" => {
                    p.interval = match value {
                        "hour" => Interval::Hour,
                        "day" => Interval::Day,
                        _ => return Err(bad(format!("interval={value:?}: use hour or day"))),
                    }
                }
                "by" => {
                    p.by = Column::parse(value)
                        .filter(|c| *c != Column::Event)
                        .ok_or_else(|| {
                            bad(format!(
                                "by={value:?}: use one of page, referrer, utm_source, utm_medium, \
                             utm_campaign, browser, os, device, site"
                            ))
                        })?
                }
                "property" => p.property = Some(value.to_owned()),
                "limit" => {
                    p.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| {
                            bad(format!("limit={value:?}: use a number from 1 to 1000"))
                        })?
                }
                column => {
                    if let Some(c) = Column::parse(column) {
                        p.filters.push((c, value.to_owned()));
                    }
                }
            }
        }
        p.from = from.unwrap_or(p.to - Duration::days(7));
        if p.from >= p.to {
            return Err(bad("from must be before to".into()));
        }
        if p.to - p.from > Duration::days(3660) {
            return Err(bad("the range is longer than 10 years: narrow it".into()));
        }
        if p.interval == Interval::Hour && p.to - p.from > Duration::days(31) {
            return Err(bad(
                "interval=hour covers at most 31 days: narrow the range or use interval=day".into(),
            ));
        }
        Ok(p)
    }

    /// `WHERE …` for the range and filters, and its parameters.
    fn filter(&self) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
        let mut sql = String::from("occurred_at >= $1 AND occurred_at < $2");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> =
            vec![Box::new(self.from), Box::new(self.to)];
        for (column, value) in &self.filters {
            let n = args.len() + 1;
            match value.strip_suffix('*').filter(|_| *column == Column::Page) {
                Some(prefix) => {
                    let escaped = prefix
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_");
                    sql.push_str(&format!(" AND path LIKE ${n}"));
                    args.push(Box::new(format!("{escaped}%")));
                }
                None => {
                    sql.push_str(&format!(" AND {} = ${n}", column.sql()));
                    args.push(Box::new(value.clone()));
                }
            }
        }
        if let Some((key, value)) = &self.prop {
            let n = args.len() + 1;
            sql.push_str(&format!(" AND props ->> ${n} = ${}", n + 1));
            args.push(Box::new(key.clone()));
            args.push(Box::new(value.clone()));
        }
        (sql, args)
    }

    fn has_event_filter(&self) -> bool {
        self.filters.iter().any(|(c, _)| *c == Column::Event)
    }
}

fn refs(args: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// Totals over the range.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Distinct visitors (a visitor is counted once per day: ids change daily).
    pub visitors: i64,
    /// Page views.
    pub pageviews: i64,
    /// Custom events.
    pub events: i64,
    /// Sessions: a visitor's events with no gap over 30 minutes.
    pub sessions: i64,
    /// Sessions with exactly one page view.
    pub bounces: i64,
    /// `bounces / sessions`, 0 when there are none.
    pub bounce_rate: f64,
    /// Mean seconds from a session's first event to its last.
    pub avg_duration_secs: f64,
    /// `pageviews / sessions`.
    pub pages_per_session: f64,
}

/// Totals, sessions included.
pub async fn summary(db: &Database, p: &Params) -> Result<Summary> {
    let (filter, args) = p.filter();
    let sql = format!(
        "WITH e AS (SELECT visitor, occurred_at, name = 'pageview' AS pv FROM events \
                    WHERE {filter}), \
              m AS (SELECT visitor, occurred_at, pv, \
                    CASE WHEN occurred_at - lag(occurred_at) OVER w <= interval '30 minutes' \
                         THEN 0 ELSE 1 END AS starts \
                    FROM e WINDOW w AS (PARTITION BY visitor ORDER BY occurred_at)), \
              n AS (SELECT visitor, occurred_at, pv, \
                    sum(starts) OVER (PARTITION BY visitor ORDER BY occurred_at \
                                      ROWS UNBOUNDED PRECEDING) AS session FROM m), \
              s AS (SELECT count(*) FILTER (WHERE pv) AS views, \
                    extract(epoch FROM max(occurred_at) - min(occurred_at))::float8 AS secs \
                    FROM n GROUP BY visitor, session) \
         SELECT (SELECT count(DISTINCT visitor) FROM e), \
                (SELECT count(*) FROM e WHERE pv), (SELECT count(*) FROM e WHERE NOT pv), \
                count(*), count(*) FILTER (WHERE views = 1), coalesce(avg(secs), 0)::float8 \
         FROM s"
    );
    let client = db.client().await?;
    let row = client.query_one(sql.as_str(), &refs(&args)).await?;
    let (visitors, pageviews, events, sessions, bounces): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let ratio = |a: i64, b: i64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(Summary {
        visitors,
        pageviews,
        events,
        sessions,
        bounces,
        bounce_rate: ratio(bounces, sessions),
        avg_duration_secs: row.get(5),
        pages_per_session: ratio(pageviews, sessions),
    })
}

/// One point of a time series.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    /// The bucket's start (RFC 3339, UTC).
    pub time: String,
    /// Distinct visitors in the bucket.
    pub visitors: i64,
    /// Page views in the bucket.
    pub pageviews: i64,
}

/// Visitors and page views per hour or day, every bucket of the range present.
pub async fn timeseries(db: &Database, p: &Params) -> Result<Vec<Point>> {
    let (filter, args) = p.filter();
    let unit = match p.interval {
        Interval::Hour => "hour",
        Interval::Day => "day",
    };
    let sql = format!(
        "SELECT date_trunc('{unit}', occurred_at AT TIME ZONE 'UTC') AS bucket, \
                count(DISTINCT visitor), count(*) FILTER (WHERE name = 'pageview') \
         FROM events WHERE {filter} GROUP BY 1 ORDER BY 1"
    );
    let client = db.client().await?;
    let rows = client.query(sql.as_str(), &refs(&args)).await?;
    let found: std::collections::HashMap<PrimitiveDateTime, (i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let step = match p.interval {
        Interval::Hour => Duration::hours(1),
        Interval::Day => Duration::days(1),
    };
    let from = p.from.to_offset(time::UtcOffset::UTC);
    let mut t = PrimitiveDateTime::new(from.date(), Time::MIDNIGHT);
    if p.interval == Interval::Hour {
        t = t.replace_hour(from.hour()).unwrap_or(t);
    }
    let end = p.to.to_offset(time::UtcOffset::UTC);
    let end = PrimitiveDateTime::new(end.date(), end.time());
    let mut points = Vec::new();
    while t < end {
        let (visitors, pageviews) = found.get(&t).copied().unwrap_or_default();
        points.push(Point {
            time: t.assume_utc().format(&Rfc3339).unwrap_or_default(),
            visitors,
            pageviews,
        });
        t += step;
    }
    Ok(points)
}

/// One row of a top list.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    /// The value: a path, a referring host (`""` for direct visits), a browser …
    pub value: String,
    /// Distinct visitors.
    pub visitors: i64,
    /// Page views (for custom events: the events).
    pub count: i64,
}

/// The top values of `p.by` among page views.
pub async fn breakdown(db: &Database, p: &Params) -> Result<Vec<Entry>> {
    let (filter, mut args) = p.filter();
    let column = p.by.sql();
    let not_null = match p.by {
        Column::UtmSource | Column::UtmMedium | Column::UtmCampaign => {
            format!(" AND {column} IS NOT NULL")
        }
        _ => String::new(),
    };
    let views = if p.has_event_filter() {
        ""
    } else {
        " AND name = 'pageview'"
    };
    let n = args.len() + 1;
    args.push(Box::new(p.limit));
    let sql = format!(
        "SELECT {column}, count(DISTINCT visitor), count(*) FROM events \
         WHERE {filter}{views}{not_null} GROUP BY 1 ORDER BY 2 DESC, 3 DESC, 1 LIMIT ${n}"
    );
    entries(db, &sql, &args).await
}

/// Custom events by name, or — with `property` — one property's values.
pub async fn events(db: &Database, p: &Params) -> Result<Vec<Entry>> {
    let (filter, mut args) = p.filter();
    let sql = match &p.property {
        None => {
            let n = args.len() + 1;
            args.push(Box::new(p.limit));
            format!(
                "SELECT name, count(DISTINCT visitor), count(*) FROM events \
                 WHERE {filter} AND name <> 'pageview' GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT ${n}"
            )
        }
        Some(key) => {
            let n = args.len() + 1;
            args.push(Box::new(key.clone()));
            args.push(Box::new(p.limit));
            format!(
                "SELECT props ->> ${n}, count(DISTINCT visitor), count(*) FROM events \
                 WHERE {filter} AND name <> 'pageview' AND props ? ${n} \
                 GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT ${}",
                n + 1
            )
        }
    };
    entries(db, &sql, &args).await
}

async fn entries(
    db: &Database,
    sql: &str,
    args: &[Box<dyn ToSql + Sync + Send>],
) -> Result<Vec<Entry>> {
    let client = db.client().await?;
    let rows = client.query(sql, &refs(args)).await?;
    Ok(rows
        .iter()
        .map(|r| Entry {
            value: r.get::<_, Option<String>>(0).unwrap_or_default(),
            visitors: r.get(1),
            count: r.get(2),
        })
        .collect())
}

/// Distinct visitors with an event in the last 5 minutes (of those written so far).
pub async fn realtime(db: &Database, site: Option<&str>) -> Result<i64> {
    let client = db.client().await?;
    let row = client
        .query_one(
            "SELECT count(DISTINCT visitor) FROM events \
             WHERE occurred_at > now() - interval '5 minutes' AND ($1::text IS NULL OR site = $1)",
            &[&site],
        )
        .await?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-03-10 12:00 UTC)
    }

    #[test]
    fn params_are_validated_with_clear_errors() {
        let p = Params::parse("", &[], now()).unwrap();
        assert_eq!(p.to - p.from, Duration::days(7));
        let p = Params::parse(
            "from=2026-03-01&to=2026-03-02&page=/blog/*&browser=Firefox&prop=plan:pro",
            &[],
            now(),
        )
        .unwrap();
        assert_eq!(p.from, time::macros::datetime!(2026-03-01 0:00 UTC));
        assert_eq!(p.to, time::macros::datetime!(2026-03-03 0:00 UTC));
        assert_eq!(p.filters.len(), 2);
        assert_eq!(p.prop, Some(("plan".into(), "pro".into())));
        let (sql, args) = p.filter();
        assert!(
            sql.contains("path LIKE $3") && sql.contains("browser = $4"),
            "{sql}"
        );
        assert!(sql.contains("props ->> $5 = $6"), "{sql}");
        assert_eq!(args.len(), 6);

        let err = |q: &str, extra: &[&str]| match Params::parse(q, extra, now()) {
            Err(ExtensionError::InvalidRequest(m)) => m,
            other => panic!("{q}: {other:?}"),
        };
        assert!(err("colour=red", &[]).contains("unknown parameter \"colour\""));
        assert!(err("interval=hour", &[]).contains("unknown parameter"));
        assert!(err("from=yesterday", &[]).contains("YYYY-MM-DD"));
        assert!(err("from=2026-03-05&to=2026-03-01", &[]).contains("before"));
        assert!(err("interval=week", &["interval"]).contains("hour or day"));
        assert!(err("interval=hour&from=2026-01-01", &["interval"]).contains("31 days"));
        assert!(err("by=colour", &["by"]).contains("use one of"));
        assert!(err("limit=0", &["limit"]).contains("1 to 1000"));
        assert!(err("prop=plan", &[]).contains("prop=<key>:<value>"));
        assert!(err("from=1900-01-01", &[]).contains("10 years"));
    }
}
