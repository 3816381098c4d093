//! Business hours and holidays: is a workflow open at a given instant?
//!
//! Everything here is evaluated on the **local wall clock** of the workflow's IANA time zone, the
//! way an administrator reads the `[[hours]]` and `[[holiday_set]]` tables. That one rule settles
//! every daylight-saving question:
//!
//! - On a spring-forward day the local times inside the gap (e.g. 02:00–02:59 in New York) never
//!   happen. A range `01:30-03:30` is open from 01:30 to 01:59:59 local (standard time) and from
//!   03:00 to 03:29:59 local (summer time): one real hour instead of two. A bound that falls inside
//!   the gap (`02:30`) behaves as if it were the first instant after the gap (03:00).
//! - On a fall-back day the repeated local hour happens twice. A range `00:30-02:30` is open during
//!   both passes of 01:00–01:59 local: three real hours instead of two. A range that ends inside
//!   the repeated hour (`00:30-01:30`) therefore opens again at the second 01:00 for half an hour.
//! - Holidays compare naive local date-times the same way (`start` inclusive, `end` exclusive).
//!
//! Ranges never cross midnight (`docs/behaviour.md`, Workflows). `00:00` opens at midnight; a close of `23:59` means "until
//! the end of the day" (the `HH:MM` format cannot say `24:00`, and an administrator who writes
//! `00:00-23:59` means all day), so such a range is open through 23:59:59.999.
//!
//! A holiday wins over business hours (`docs/behaviour.md`, Workflows): a call at 10:00 on Christmas Day gets the holiday
//! action even though 10:00 on a Friday is office time, and a call on a holiday that falls in
//! closed hours is still reported as a holiday.

use chrono::{DateTime, Datelike, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;

use crate::config::model::{HolidaySet, Hours, TimeRange};

/// Whether a workflow takes calls now, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenState {
    /// Inside business hours (or no hours set) and not a holiday.
    Open,
    /// Outside every range of today's business hours.
    OutOfHours,
    /// Covered by a holiday of one of the workflow's holiday sets; carries the holiday's name
    /// (the first match in set order, then holiday order).
    Holiday(String),
}

/// Decides whether a workflow is open at `at`.
///
/// `hours` of `None` means open all the time. `holidays` are the workflow's holiday sets, all in
/// the workflow's zone `tz`. A holiday wins over after-hours.
///
/// Examples: `table_of_ordinary_cases` in the tests below (office hours, lunch break, a holiday
/// inside and outside the hours, local bounds).
pub(crate) fn is_open(
    hours: Option<&Hours>,
    holidays: &[&HolidaySet],
    tz: Tz,
    at: DateTime<Utc>,
) -> OpenState {
    let local = at.with_timezone(&tz).naive_local();
    for set in holidays {
        if let Some(h) = set
            .holidays
            .iter()
            .find(|h| h.start <= local && local < h.end)
        {
            return OpenState::Holiday(h.name.clone());
        }
    }
    let Some(hours) = hours else {
        return OpenState::Open;
    };
    let day = local.weekday().num_days_from_monday() as usize;
    let time = local.time();
    if hours.days[day].iter().any(|r| covers(r, time)) {
        OpenState::Open
    } else {
        OpenState::OutOfHours
    }
}

/// `open` inclusive, `close` exclusive, except that a close of 23:59 runs to the end of the day.
fn covers(range: &TimeRange, time: NaiveTime) -> bool {
    let ends_at_midnight = range.close.hour() == 23 && range.close.minute() == 59;
    range.open <= time && (time < range.close || ends_at_midnight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Holiday;
    use chrono::{Duration, NaiveDateTime, TimeZone};
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Paris;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn range(open: (u32, u32), close: (u32, u32)) -> TimeRange {
        TimeRange {
            open: t(open.0, open.1),
            close: t(close.0, close.1),
        }
    }

    /// The same ranges every day of the week.
    fn every_day(ranges: &[TimeRange]) -> Hours {
        Hours {
            name: "test".into(),
            days: std::array::from_fn(|_| ranges.to_vec()),
        }
    }

    fn naive(s: &str) -> NaiveDateTime {
        s.parse().unwrap()
    }

    fn holidays(list: &[(&str, &str, &str)]) -> HolidaySet {
        HolidaySet {
            name: "set".into(),
            holidays: list
                .iter()
                .map(|(name, start, end)| Holiday {
                    name: (*name).into(),
                    start: naive(start),
                    end: naive(end),
                })
                .collect(),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        Utc.from_utc_datetime(&naive(s))
    }

    /// Office hours Monday to Friday, 09:00-12:00 and 13:00-17:30; weekend closed.
    fn office() -> Hours {
        let weekday = vec![range((9, 0), (12, 0)), range((13, 0), (17, 30))];
        Hours {
            name: "Office".into(),
            days: [
                weekday.clone(),
                weekday.clone(),
                weekday.clone(),
                weekday.clone(),
                weekday,
                vec![],
                vec![],
            ],
        }
    }

    #[test]
    fn table_of_ordinary_cases() {
        let office = office();
        let xmas = holidays(&[("Christmas", "2026-12-25T00:00:00", "2026-12-26T00:00:00")]);
        // Paris is UTC+1 in winter, UTC+2 in summer.
        type Case<'a> = (
            &'a str,
            Option<&'a Hours>,
            &'a [&'a HolidaySet],
            &'a str,
            OpenState,
        );
        let cases: &[Case<'_>] = &[
            (
                "no hours: always open",
                None,
                &[],
                "2026-12-27T03:00:00",
                OpenState::Open,
            ),
            (
                "opening minute",
                Some(&office),
                &[],
                "2026-12-22T08:00:00",
                OpenState::Open,
            ),
            (
                "a second before opening",
                Some(&office),
                &[],
                "2026-12-22T07:59:59",
                OpenState::OutOfHours,
            ),
            (
                "lunch break (close exclusive)",
                Some(&office),
                &[],
                "2026-12-22T11:00:00",
                OpenState::OutOfHours,
            ),
            (
                "afternoon",
                Some(&office),
                &[],
                "2026-12-22T12:00:00",
                OpenState::Open,
            ),
            (
                "last second",
                Some(&office),
                &[],
                "2026-12-22T16:29:59",
                OpenState::Open,
            ),
            (
                "closing time",
                Some(&office),
                &[],
                "2026-12-22T16:30:00",
                OpenState::OutOfHours,
            ),
            (
                "saturday is a closed day",
                Some(&office),
                &[],
                "2026-12-26T10:00:00",
                OpenState::OutOfHours,
            ),
            (
                "sunday is a closed day",
                Some(&office),
                &[],
                "2026-12-27T10:00:00",
                OpenState::OutOfHours,
            ),
            (
                "holiday inside office hours wins",
                Some(&office),
                &[&xmas],
                "2026-12-25T09:00:00",
                OpenState::Holiday("Christmas".into()),
            ),
            (
                "holiday outside office hours is still a holiday",
                Some(&office),
                &[&xmas],
                "2026-12-25T22:00:00",
                OpenState::Holiday("Christmas".into()),
            ),
            (
                "holiday without hours",
                None,
                &[&xmas],
                "2026-12-25T22:00:00",
                OpenState::Holiday("Christmas".into()),
            ),
            (
                "holiday start is local, inclusive",
                None,
                &[&xmas],
                "2026-12-24T23:00:00",
                OpenState::Holiday("Christmas".into()),
            ),
            (
                "before the holiday (UTC says 25th, Paris says 24th)",
                None,
                &[&xmas],
                "2026-12-24T22:59:59",
                OpenState::Open,
            ),
            (
                "holiday end is exclusive",
                None,
                &[&xmas],
                "2026-12-25T23:00:00",
                OpenState::Open,
            ),
        ];
        for (name, hours, sets, at, expected) in cases {
            assert_eq!(&is_open(*hours, sets, Paris, utc(at)), expected, "{name}");
        }
    }

    #[test]
    fn first_matching_holiday_in_set_order_names_the_state() {
        let a = holidays(&[("Winter break", "2026-12-20T00:00:00", "2027-01-04T00:00:00")]);
        let b = holidays(&[("Christmas", "2026-12-25T00:00:00", "2026-12-26T00:00:00")]);
        let at = utc("2026-12-25T12:00:00");
        assert_eq!(
            is_open(None, &[&a, &b], Paris, at),
            OpenState::Holiday("Winter break".into())
        );
        assert_eq!(
            is_open(None, &[&b, &a], Paris, at),
            OpenState::Holiday("Christmas".into())
        );
    }

    #[test]
    fn ranges_touching_midnight() {
        let hours = every_day(&[range((0, 0), (1, 0)), range((22, 0), (23, 59))]);
        let cases = [
            ("2026-06-10T00:00:00", OpenState::Open),
            ("2026-06-10T00:59:59", OpenState::Open),
            ("2026-06-10T01:00:00", OpenState::OutOfHours),
            ("2026-06-10T21:59:59", OpenState::OutOfHours),
            ("2026-06-10T22:00:00", OpenState::Open),
            // 23:59 as a close runs to the end of the day.
            ("2026-06-10T23:59:00", OpenState::Open),
            ("2026-06-10T23:59:59", OpenState::Open),
        ];
        for (at, expected) in cases {
            // UTC zone: local = UTC.
            assert_eq!(
                is_open(Some(&hours), &[], Tz::UTC, utc(at)),
                expected,
                "{at}"
            );
        }
        let all_day = every_day(&[range((0, 0), (23, 59))]);
        let start = utc("2026-06-10T00:00:00");
        for minute in 0..(3 * 24 * 60) {
            let at = start + Duration::minutes(minute) + Duration::seconds(59);
            assert_eq!(is_open(Some(&all_day), &[], Tz::UTC, at), OpenState::Open);
        }
    }

    /// Every minute of the UTC day around a DST change: open exactly when the local wall time is
    /// inside the range, and the total open time is what the module docs promise.
    fn open_minutes(
        hours: &Hours,
        tz: Tz,
        from: DateTime<Utc>,
        minutes: i64,
    ) -> Vec<DateTime<Utc>> {
        (0..minutes)
            .map(|m| from + Duration::minutes(m))
            .filter(|at| is_open(Some(hours), &[], tz, *at) == OpenState::Open)
            .collect()
    }

    #[test]
    fn spring_forward_range_across_the_gap() {
        // New York, Sunday 8 March 2026: 02:00 EST -> 03:00 EDT (07:00 UTC).
        let hours = every_day(&[range((1, 30), (3, 30))]);
        let open = open_minutes(&hours, New_York, utc("2026-03-08T04:00:00"), 6 * 60);
        // 01:30-01:59 EST = 06:30-06:59 UTC; 03:00-03:29 EDT = 07:00-07:29 UTC.
        assert_eq!(open.len(), 60, "one real hour");
        assert_eq!(open.first(), Some(&utc("2026-03-08T06:30:00")));
        assert_eq!(open.last(), Some(&utc("2026-03-08T07:29:00")));
        for at in &open {
            let local = at.with_timezone(&New_York).time();
            assert!(local >= t(1, 30) && local < t(3, 30), "{at} -> {local}");
        }
    }

    #[test]
    fn spring_forward_bound_inside_the_gap_acts_at_the_end_of_the_gap() {
        // 02:30 does not exist on that day; the range opens with the first instant after it.
        let hours = every_day(&[range((2, 30), (4, 0))]);
        let open = open_minutes(&hours, New_York, utc("2026-03-08T04:00:00"), 6 * 60);
        assert_eq!(open.first(), Some(&utc("2026-03-08T07:00:00")), "03:00 EDT");
        assert_eq!(open.len(), 60);
        // And a range closing inside the gap closes at the jump.
        let hours = every_day(&[range((1, 0), (2, 30))]);
        let open = open_minutes(&hours, New_York, utc("2026-03-08T04:00:00"), 6 * 60);
        assert_eq!(open.first(), Some(&utc("2026-03-08T06:00:00")));
        assert_eq!(open.last(), Some(&utc("2026-03-08T06:59:00")));
        assert_eq!(open.len(), 60);
    }

    #[test]
    fn fall_back_range_across_the_repeated_hour() {
        // New York, Sunday 1 November 2026: 02:00 EDT -> 01:00 EST (06:00 UTC).
        let hours = every_day(&[range((0, 30), (2, 30))]);
        let open = open_minutes(&hours, New_York, utc("2026-11-01T03:00:00"), 6 * 60);
        // 00:30 EDT = 04:30 UTC ... 02:29 EST = 07:29 UTC, without a break.
        assert_eq!(open.len(), 180, "three real hours");
        assert_eq!(open.first(), Some(&utc("2026-11-01T04:30:00")));
        assert_eq!(open.last(), Some(&utc("2026-11-01T07:29:00")));
    }

    #[test]
    fn fall_back_range_ending_inside_the_repeated_hour_opens_twice() {
        let hours = every_day(&[range((0, 30), (1, 30))]);
        let open = open_minutes(&hours, New_York, utc("2026-11-01T03:00:00"), 6 * 60);
        // First pass: 00:30-01:29 EDT = 04:30-05:29 UTC. Second pass: 01:00-01:29 EST = 06:00-06:29.
        assert_eq!(open.len(), 90);
        assert!(open.contains(&utc("2026-11-01T05:29:00")));
        assert!(!open.contains(&utc("2026-11-01T05:30:00")));
        assert!(!open.contains(&utc("2026-11-01T05:59:00")));
        assert!(open.contains(&utc("2026-11-01T06:00:00")));
        assert!(open.contains(&utc("2026-11-01T06:29:00")));
        assert!(!open.contains(&utc("2026-11-01T06:30:00")));
    }

    #[test]
    fn weekday_is_the_local_one() {
        // Monday only, 00:00-02:00. In New York (EDT, UTC-4), Sunday 23:30 local is Monday
        // 03:30 UTC, which must be closed (it is Sunday locally); Monday 00:30 local is 04:30 UTC.
        let mut hours = every_day(&[]);
        hours.days[0] = vec![range((0, 0), (2, 0))];
        assert_eq!(
            is_open(Some(&hours), &[], New_York, utc("2026-06-15T03:30:00")),
            OpenState::OutOfHours
        );
        assert_eq!(
            is_open(Some(&hours), &[], New_York, utc("2026-06-15T04:30:00")),
            OpenState::Open
        );
        // And Monday 01:30 UTC is Sunday 21:30 in New York: closed, though Monday in UTC.
        assert_eq!(
            is_open(Some(&hours), &[], New_York, utc("2026-06-15T01:30:00")),
            OpenState::OutOfHours
        );
        assert_eq!(
            is_open(Some(&hours), &[], Tz::UTC, utc("2026-06-15T01:30:00")),
            OpenState::Open
        );
    }

    #[test]
    fn holiday_across_a_dst_change_uses_local_bounds() {
        // A holiday on the fall-back night ending at 01:30 local: the second pass through 01:00
        // local (EST) is inside it again, because local wall time is what the set means.
        let set = holidays(&[("Night", "2026-11-01T00:00:00", "2026-11-01T01:30:00")]);
        let on = |s| is_open(None, &[&set], New_York, utc(s));
        assert_eq!(
            on("2026-11-01T04:00:00"),
            OpenState::Holiday("Night".into())
        ); // 00:00 EDT
        assert_eq!(
            on("2026-11-01T05:29:00"),
            OpenState::Holiday("Night".into())
        ); // 01:29 EDT
        assert_eq!(on("2026-11-01T05:30:00"), OpenState::Open); // 01:30 EDT
        assert_eq!(
            on("2026-11-01T06:00:00"),
            OpenState::Holiday("Night".into())
        ); // 01:00 EST
        assert_eq!(on("2026-11-01T06:30:00"), OpenState::Open); // 01:30 EST
    }
}
