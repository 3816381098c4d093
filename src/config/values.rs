//! Parsers for the string-typed values of the configuration: durations, times of day, local
//! dates, SIP URIs and listener addresses. Pure functions; each error message says what the
//! accepted form looks like.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{NaiveDateTime, NaiveTime};

use super::model::{Listen, Transport};

/// Parses a duration written as a whole number and a unit: `500ms`, `20s`, `5m`, `1h`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let hint = "write a whole number and a unit: \"500ms\", \"20s\", \"5m\" or \"1h\"";
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(format!("\"{text}\" is not a duration; {hint}"));
    }
    let value: u64 = number
        .parse()
        .map_err(|_| format!("\"{text}\" is too large a duration"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(format!("\"{text}\" has no unit; {hint}")),
        _ => return Err(format!("\"{text}\" has an unknown unit \"{unit}\"; {hint}")),
    };
    value
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("\"{text}\" is too large a duration"))
}

/// Writes a duration the way a config file would: `10s`, `500ms`, `1m30s` never appears; whole
/// seconds print as seconds, anything finer as milliseconds.
pub(crate) fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Parses a time of day `HH:MM` (24-hour clock, two digits each).
pub(crate) fn parse_time_of_day(text: &str) -> Result<NaiveTime, String> {
    let bytes = text.as_bytes();
    let well_formed = bytes.len() == 5
        && bytes[2] == b':'
        && [0, 1, 3, 4].iter().all(|&i| bytes[i].is_ascii_digit());
    if !well_formed {
        return Err(format!(
            "\"{text}\" is not a time of day; write HH:MM on a 24-hour clock, e.g. \"09:00\""
        ));
    }
    let hour = u32::from(bytes[0] - b'0') * 10 + u32::from(bytes[1] - b'0');
    let minute = u32::from(bytes[3] - b'0') * 10 + u32::from(bytes[4] - b'0');
    NaiveTime::from_hms_opt(hour, minute, 0)
        .ok_or_else(|| format!("\"{text}\" is not a time of day; hours go 00-23, minutes 00-59"))
}

/// The close time written `24:00`: the very end of the day (close is exclusive, so a range
/// `18:00-24:00` is open until midnight).
pub(crate) fn end_of_day() -> NaiveTime {
    NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999).unwrap_or(NaiveTime::MIN)
}

/// Parses a business-hours range `HH:MM-HH:MM`; the close time may be `24:00`.
pub(crate) fn parse_time_range(text: &str) -> Result<(NaiveTime, NaiveTime), String> {
    let Some((open, close)) = text.split_once('-') else {
        return Err(format!(
            "\"{text}\" is not a range; write \"HH:MM-HH:MM\", e.g. \"09:00-17:30\""
        ));
    };
    let open = parse_time_of_day(open.trim())?;
    let close = match close.trim() {
        "24:00" => end_of_day(),
        other => parse_time_of_day(other)?,
    };
    Ok((open, close))
}

/// Parses a local date and time `YYYY-MM-DDTHH:MM`.
pub(crate) fn parse_local_datetime(text: &str) -> Result<NaiveDateTime, String> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").map_err(|_| {
        format!("\"{text}\" is not a valid date and time; write \"YYYY-MM-DDTHH:MM\", e.g. \"2026-12-25T00:00\"")
    })
}

/// Parses a SIP listener: `udp:IP:PORT`, `tcp:IP:PORT` or `tls:IP:PORT` (IPv6 as
/// `udp:[::1]:5060`).
pub(crate) fn parse_listen(text: &str) -> Result<Listen, String> {
    let hint = "write \"udp:IP:PORT\", \"tcp:IP:PORT\" or \"tls:IP:PORT\", e.g. \"udp:0.0.0.0:5060\" or \"tls:[::1]:5061\"";
    let Some((transport, addr)) = text.split_once(':') else {
        return Err(format!("\"{text}\" is not a listener; {hint}"));
    };
    let transport = match transport.to_ascii_lowercase().as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        other => {
            return Err(format!("\"{text}\": unknown transport \"{other}\"; {hint}"));
        }
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("\"{text}\": \"{addr}\" is not an IP address and port; {hint}"))?;
    Ok(Listen { transport, addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "s",
            "20",
            "20 s",
            "-5s",
            "1.5s",
            "5d",
            "5S",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_duration("20").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("5d")
                .unwrap_err()
                .contains("unknown unit \"d\"")
        );
        assert!(parse_duration("18446744073709551615h").is_err());
    }

    #[test]
    fn durations_print_back_in_config_form() {
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn times_of_day_are_hh_mm() {
        assert_eq!(
            parse_time_of_day("09:05"),
            Ok(NaiveTime::from_hms_opt(9, 5, 0).unwrap())
        );
        assert_eq!(
            parse_time_of_day("23:59"),
            Ok(NaiveTime::from_hms_opt(23, 59, 0).unwrap())
        );
        for bad in ["9:00", "24:00", "12:60", "12-00", "ab:cd", "12:000", ""] {
            assert!(parse_time_of_day(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn ranges_allow_24_00_as_close_only() {
        let (open, close) = parse_time_range("18:00-24:00").unwrap();
        assert_eq!(open, NaiveTime::from_hms_opt(18, 0, 0).unwrap());
        assert_eq!(close, end_of_day());
        assert!(parse_time_range("24:00-24:00").is_err());
        assert!(parse_time_range("09:00").is_err());
        assert_eq!(
            parse_time_range("09:00-17:30").unwrap().1,
            NaiveTime::from_hms_opt(17, 30, 0).unwrap()
        );
    }

    #[test]
    fn local_datetimes() {
        let t = parse_local_datetime("2026-12-25T00:00").unwrap();
        assert_eq!(t.to_string(), "2026-12-25 00:00:00");
        for bad in [
            "2026-02-30T00:00",
            "2026-12-25",
            "2026-12-25 00:00",
            "2026-12-25T25:00",
        ] {
            assert!(
                parse_local_datetime(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn listeners() {
        let l = parse_listen("udp:127.0.0.1:5060").unwrap();
        assert_eq!(l.transport, Transport::Udp);
        assert_eq!(l.addr, "127.0.0.1:5060".parse().unwrap());
        let l = parse_listen("tcp:[::1]:5061").unwrap();
        assert_eq!(l.transport, Transport::Tcp);
        assert_eq!(l.addr, "[::1]:5061".parse().unwrap());
        let l = parse_listen("TLS:127.0.0.1:5061").unwrap();
        assert_eq!(l.transport, Transport::Tls);
        for bad in [
            "127.0.0.1:5060",
            "sctp:127.0.0.1:5061",
            "udp:127.0.0.1",
            "udp:::1:5060",
            "udp",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
