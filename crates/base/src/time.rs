//! Wall-clock dates for file names and manifests (UTC), and instants given on the command
//! line (`--start-at`), without a date library.

use std::time::{SystemTime, UNIX_EPOCH};

/// (year, month, day, hour, minute, second) in UTC for Unix seconds `t`.
pub fn civil(t: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    // Howard Hinnant's days-to-civil
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (secs / 3600) as u32,
        (secs / 60 % 60) as u32,
        (secs % 60) as u32,
    )
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Now in nanoseconds since the Unix epoch (the wall clock: for stamping, never for
/// measuring an interval).
pub fn unix_now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// `20261128-002627`, as `vllm bench serve` stamps its results.
pub fn compact(t: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")
}

/// `2026-11-28T00:26:27Z`.
pub fn rfc3339(t: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of `civil`'s).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An instant as nanoseconds since the Unix epoch, from RFC 3339
/// (`2026-12-01T17:30:00Z`, `2026-12-01T18:30:00.250+01:00`) or Unix seconds
/// (`1796146200`, `1796146200.25`). Exact: the fraction is read as digits, not a float.
pub fn parse_instant(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
        return Ok(seconds(secs, s)? * 1_000_000_000 + fraction_ns(frac, s)?);
    }
    rfc3339_ns(t).filter(|&ns| ns >= 0).ok_or_else(|| {
        format!(
            "`{s}` is not an instant between 1970 and 2262: give RFC 3339 (`2026-12-01T17:30:00Z`, an offset instead of `Z` allowed) or Unix seconds (`1796146200.5`)"
        )
    })
}

fn seconds(digits: &str, whole: &str) -> Result<i64, String> {
    digits
        .parse::<i64>()
        .ok()
        .filter(|&v| v < 1 << 33)
        .ok_or_else(|| {
            format!(
                "`{whole}`: `{digits}` is not a number of seconds since 1970 (before the year 2242)"
            )
        })
}

/// Up to 9 digits of a second's fraction, in nanoseconds.
fn fraction_ns(digits: &str, whole: &str) -> Result<i64, String> {
    if digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{whole}`: a fraction of a second has at most 9 digits"
        ));
    }
    let padded = format!("{digits:0<9}");
    padded
        .parse::<i64>()
        .map_err(|_| format!("`{whole}`: bad fraction"))
}

fn rfc3339_ns(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r| num_at(t, r);
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&mo)
        || d == 0
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let mut rest = &t[19..];
    let mut frac_ns = 0;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        frac_ns = fraction_ns(&r[..n], t).ok().filter(|_| n > 0)?;
        rest = &r[n..];
    }
    let offset_s: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || rb[3] != b':' || !matches!(rb[0], b'+' | b'-') {
                return None;
            }
            let (oh, om) = (num_at(rest, 1..3)?, num_at(rest, 4..6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = i64::from(oh * 3600 + om * 60);
            if rb[0] == b'-' { -o } else { o }
        }
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec) - offset_s;
    // nanoseconds since the epoch hold 1677–2262 in an i64
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

fn num_at(t: &str, r: std::ops::Range<usize>) -> Option<u32> {
    let f = t.get(r)?;
    f.bytes()
        .all(|c| c.is_ascii_digit())
        .then(|| f.parse().ok())?
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `2026-12-01T17:30:00.250Z` for nanoseconds since the epoch (milliseconds shown).
pub fn rfc3339_ms(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let ms = ns.rem_euclid(1_000_000_000) / 1_000_000;
    let base = rfc3339(secs.max(0) as u64);
    format!("{}.{ms:03}Z", base.trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    #[test]
    fn instants() {
        let p = super::parse_instant;
        assert_eq!(p("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(p("2026-12-01T17:30:00Z"), Ok(1_796_146_200 * 1_000_000_000));
        assert_eq!(
            p("2026-12-01T18:30:00.25+01:00"),
            Ok(1_796_146_200_250_000_000)
        );
        assert_eq!(
            p("2026-12-01t16:00:00.000000001-01:30"),
            Ok(1_796_146_200_000_000_001)
        );
        assert_eq!(p("1796146200.25"), Ok(1_796_146_200_250_000_000));
        assert_eq!(p("1796146200"), Ok(1_796_146_200_000_000_000));
        for bad in [
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2300-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "",
            "now",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-12-01T17:30:00",
            "2026-12-01T17:30:00.Z",
            "2026-12-01T17:30:00+1:00",
            "1.2.3",
            "1796146200.1234567891",
            "2026-12-01T24:00:00Z",
            "１970-01-01T00:00:00Z",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
        assert_eq!(
            super::rfc3339_ms(1_796_146_200_250_000_000),
            "2026-12-01T17:30:00.250Z"
        );
    }

    proptest! {
        /// Every second's RFC 3339 text reads back as that second.
        #[test]
        fn rfc3339_round_trips(t in 0u64..8_000_000_000, frac in 0i64..1_000_000_000) {
            let text = super::rfc3339(t).replace('Z', &format!(".{frac:09}Z"));
            prop_assert_eq!(super::parse_instant(&text), Ok(t as i64 * 1_000_000_000 + frac));
        }

        /// Whatever the text, an answer or an error: never a panic.
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = super::parse_instant(&s);
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::compact(1_795_825_587), "20261128-002627");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
