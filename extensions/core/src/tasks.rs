//! Background work an extension hands to the host ([`Tasks`], `ctx.tasks`): long-running
//! tasks, periodic ones and cron-style schedules. The host owns them: each is named, runs
//! inside the extension's tracing span, has its panics caught, counted and fed to the
//! extension's circuit breaker and health like a handler's, and is cancelled when the
//! extension stops — disabled by an administrator or automatically, or at shutdown — after
//! `stop()` had its chance to end it cleanly. Register them in `start()`: enabling the
//! extension again runs `start()` again, which registers them again.
//!
//! ```no_run
//! # use solobase_sdk::prelude::*;
//! # use std::time::Duration;
//! # async fn sketch(ctx: &InitContext<()>) -> Result<()> {
//! ctx.tasks.spawn("feed", || async { /* runs until stopped; restarted after a panic */ });
//! ctx.tasks.every("sweep", Duration::from_secs(60), || async { /* every minute */ });
//! ctx.tasks.cron("purge", "30 3 * * *", || async { /* at 03:30 UTC */ })?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::error::{ExtensionError, Result};

/// One run of a task's work.
pub type TaskFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Makes one run of a task's work (called again for each run and after a panic).
pub type TaskWork = Box<dyn Fn() -> TaskFuture + Send + Sync + 'static>;

/// When a task runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Schedule {
    /// Once, until its work returns; started again after a panic (with a growing delay).
    Continuous,
    /// Every period, the first run one period after it is registered.
    Every(Duration),
    /// At the times a cron expression names (UTC).
    Cron(Cron),
}

/// What runs tasks: the host (or the testing kit). Not for extensions to implement.
#[doc(hidden)]
pub trait TaskRunner: Send + Sync {
    fn run(&self, name: &str, schedule: Schedule, work: TaskWork);
}

/// The extension's background tasks, run and owned by the host.
#[derive(Clone)]
pub struct Tasks(Arc<dyn TaskRunner>);

impl fmt::Debug for Tasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tasks")
    }
}

impl Tasks {
    #[doc(hidden)]
    pub fn new(runner: Arc<dyn TaskRunner>) -> Self {
        Self(runner)
    }

    /// Runs `work` until it returns or the extension stops; a panic is caught, counted, and
    /// `work` started again after a delay (1 s, doubling to 1 min).
    pub fn spawn<F, Fut>(&self, name: &str, work: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.0.run(
            name,
            Schedule::Continuous,
            Box::new(move || Box::pin(work())),
        );
    }

    /// Runs `work` every `period` while the extension runs (a run that takes longer delays
    /// the next one; runs never overlap).
    pub fn every<F, Fut>(&self, name: &str, period: Duration, work: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.0.run(
            name,
            Schedule::Every(period.max(Duration::from_millis(1))),
            Box::new(move || Box::pin(work())),
        );
    }

    /// Runs `work` at the times of the cron expression `expr` (five fields, UTC: minute,
    /// hour, day of month, month, day of week; `*`, lists, ranges and `/steps`).
    pub fn cron<F, Fut>(&self, name: &str, expr: &str, work: F) -> Result<()>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let cron = Cron::parse(expr).map_err(ExtensionError::Config)?;
        self.0.run(
            name,
            Schedule::Cron(cron),
            Box::new(move || Box::pin(work())),
        );
        Ok(())
    }
}

/// A parsed cron expression: `minute hour day-of-month month day-of-week`, each a `*`, a
/// number, a range `a-b`, a list `a,b,c`, any of them with a step `/n`. Day of week 0 or 7
/// is Sunday. As in cron, when both days are restricted either may match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

impl Cron {
    /// Parses an expression, or says what is wrong with it.
    pub fn parse(expr: &str) -> std::result::Result<Self, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "cron expression {expr:?}: five fields are needed (minute hour day month \
                 weekday), e.g. \"30 3 * * *\""
            ));
        };
        let field = |text: &str, what: &str, min: u32, max: u32| {
            bits(text, min, max).map_err(|e| format!("cron expression {expr:?}: {what}: {e}"))
        };
        let mut weekdays = field(weekday, "day of week", 0, 7)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        Ok(Self {
            minutes: field(minute, "minute", 0, 59)?,
            hours: field(hour, "hour", 0, 23)? as u32,
            days: field(day, "day of month", 1, 31)? as u32,
            months: field(month, "month", 1, 12)? as u16,
            weekdays: (weekdays & 0x7f) as u8,
            days_restricted: day != "*",
            weekdays_restricted: weekday != "*",
        })
    }

    fn day_matches(&self, t: OffsetDateTime) -> bool {
        let day = self.days & (1 << t.day()) != 0;
        let weekday = self.weekdays & (1 << t.weekday().number_days_from_sunday()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            (true, false) => day,
            (false, true) => weekday,
            (false, false) => true,
        }
    }

    /// The first time strictly after `after` that the expression names (to the minute), or
    /// `None` when there is none in the next four years (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = after.to_offset(time::UtcOffset::UTC);
        let mut t =
            after.replace_second(0).ok()?.replace_nanosecond(0).ok()? + time::Duration::MINUTE;
        let limit = after + time::Duration::days(4 * 366);
        while t <= limit {
            if self.months & (1 << u8::from(t.month())) == 0 {
                // The first minute of the next month.
                let (year, month) = match t.month() {
                    time::Month::December => (t.year() + 1, time::Month::January),
                    m => (t.year(), m.next()),
                };
                t = time::Date::from_calendar_date(year, month, 1)
                    .ok()?
                    .midnight()
                    .assume_utc();
                continue;
            }
            if !self.day_matches(t) {
                t = (t.date().next_day()?).midnight().assume_utc();
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t.replace_minute(0).ok()? + time::Duration::HOUR;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t += time::Duration::MINUTE;
                continue;
            }
            return Some(t);
        }
        None
    }
}

/// The set of values `text` names within `min..=max`, as bits.
fn bits(text: &str, min: u32, max: u32) -> std::result::Result<u64, String> {
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{part:?}: the step must be a positive number"))?;
                (range, step)
            }
            None => (part, 1),
        };
        let number = |s: &str| -> std::result::Result<u32, String> {
            let n: u32 = s
                .parse()
                .map_err(|_| format!("{s:?} is not a number or *"))?;
            if n < min || n > max {
                return Err(format!("{n} is outside {min}-{max}"));
            }
            Ok(n)
        };
        let (from, to) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (number(a)?, number(b)?);
            if a > b {
                return Err(format!("{range:?}: the range goes backwards"));
            }
            (a, b)
        } else {
            let n = number(range)?;
            (n, if step > 1 { max } else { n })
        };
        let mut v = from;
        while v <= to {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(expr: &str, after: OffsetDateTime) -> OffsetDateTime {
        Cron::parse(expr).unwrap().next_after(after).unwrap()
    }

    #[test]
    fn cron_names_the_next_matching_minute() {
        let t = datetime!(2026-12-04 03:31:10 UTC);
        assert_eq!(next("* * * * *", t), datetime!(2026-12-04 03:32 UTC));
        assert_eq!(next("30 3 * * *", t), datetime!(2026-12-05 03:30 UTC));
        assert_eq!(next("*/15 * * * *", t), datetime!(2026-12-04 03:45 UTC));
        assert_eq!(next("0 0 1 1 *", t), datetime!(2027-01-01 00:00 UTC));
        // 2026-12-04 is a Friday; Sunday is 0 or 7.
        assert_eq!(next("0 12 * * 0", t), datetime!(2026-12-06 12:00 UTC));
        assert_eq!(next("0 12 * * 7", t), datetime!(2026-12-06 12:00 UTC));
        assert_eq!(next("0 9 * * 1-5", t), datetime!(2026-12-04 09:00 UTC));
        assert_eq!(next("0 9 * * 1-4", t), datetime!(2026-12-07 09:00 UTC));
        // Both days restricted: either matches.
        assert_eq!(next("0 0 25 * 6", t), datetime!(2026-12-05 00:00 UTC));
        assert_eq!(next("0 0 29 2 *", t), datetime!(2028-02-29 00:00 UTC));
        assert!(Cron::parse("0 0 30 2 *").unwrap().next_after(t).is_none());
    }

    #[test]
    fn bad_cron_expressions_say_what_is_wrong() {
        for (expr, wanted) in [
            ("* * * *", "five fields"),
            ("60 * * * *", "60 is outside 0-59"),
            ("* 24 * * *", "hour"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
            ("x * * * *", "not a number"),
            ("* * 0 * *", "day of month"),
        ] {
            let e = Cron::parse(expr).unwrap_err();
            assert!(e.contains(wanted), "{expr}: {e}");
        }
    }
}
