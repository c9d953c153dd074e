//! Value formats shared by the CRD schemas and the controller: cron schedules, durations and resource quantities.
//!
//! Each format has a schema pattern (enforced by the API server, so a bad value is rejected at `kubectl apply`) and,
//! for cron and durations, a parser the controller uses. Both accept the same language; tests check they agree.

use std::sync::LazyLock;
use std::time::Duration;

/// Cron macros accepted in place of the five fields.
pub const CRON_MACROS: [&str; 7] = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// A case-insensitive regex for `name` that needs no flags (`jan` → `[Jj][Aa][Nn]`), so the pattern is valid in
/// both Go's regexp (the API server) and ECMA-262 (client-side tooling).
fn any_case(name: &str) -> String {
    name.chars().map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())).collect()
}

fn cron_field(value: &str) -> String {
    let item = format!("(\\*|({value})(-({value}))?)(/[1-9][0-9]?)?");
    format!("{item}(,{item})*")
}

/// Schema pattern for a five-field cron schedule (minute hour day-of-month month day-of-week) or a macro such as
/// `@hourly`. Each field takes `*`, a value, a range `a-b`, a list `a,b`, and steps (`*/15`, `1-30/5`, `5/10`);
/// months and weekdays also take three-letter names in any case (`JAN`, `mon`), and day-of-week 7 is Sunday.
pub fn cron_pattern() -> String {
    let names = |list: &[&str]| list.iter().map(|n| any_case(n)).collect::<Vec<_>>().join("|");
    let minute = "[0-5]?[0-9]";
    let hour = "[01]?[0-9]|2[0-3]";
    let dom = "0?[1-9]|[12][0-9]|3[01]";
    let month = format!("0?[1-9]|1[0-2]|{}", names(&MONTHS));
    let dow = format!("[0-7]|{}", names(&WEEKDAYS));
    let macros = CRON_MACROS.iter().map(|m| &m[1..]).collect::<Vec<_>>().join("|");
    let fields = [minute.to_string(), hour.to_string(), dom.to_string(), month, dow]
        .iter()
        .map(|v| format!("({})", cron_field(v)))
        .collect::<Vec<_>>()
        .join("[ \\t]+");
    format!("^(@({macros})|{fields})$")
}

/// Schema pattern for a duration: one or more `<integer><unit>` parts with units `h`, `m`, `s` or `ms`, for
/// example `90s`, `5m`, `1h30m`. The Go operator's `1h`-style values are all accepted.
pub const DURATION_PATTERN: &str = "^([0-9]+(h|m|s|ms))+$";

/// Schema pattern for a Kubernetes resource quantity such as `100m`, `128Mi` or `1.5`.
pub const QUANTITY_PATTERN: &str =
    r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)))?$";

/// Schema pattern for a Kubernetes object name or namespace (an RFC 1123 label).
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Schema pattern for a Kubernetes object name that may contain dots (an RFC 1123 subdomain).
pub const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Schema pattern for a Secret data key.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// Why a value could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    /// The duration does not match [`DURATION_PATTERN`].
    #[error("invalid duration {value:?}: use parts like 90s, 5m or 1h30m")]
    Duration {
        /// The rejected text.
        value: String,
    },
    /// The cron schedule is not a valid five-field schedule or macro.
    #[error("invalid cron schedule {value:?}: {reason}")]
    Cron {
        /// The rejected text.
        value: String,
        /// What the cron parser objected to.
        reason: String,
    },
}

impl ValueError {
    /// A short CamelCase reason for conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            ValueError::Duration { .. } => "InvalidDuration",
            ValueError::Cron { .. } => "InvalidSchedule",
        }
    }
}

/// Parses a duration in the [`DURATION_PATTERN`] format.
pub fn parse_duration(value: &str) -> Result<Duration, ValueError> {
    let err = || ValueError::Duration { value: value.to_string() };
    if !DURATION_REGEX.as_ref().is_some_and(|re| re.is_match(value)) {
        return Err(err());
    }
    humantime::parse_duration(value).map_err(|_| err())
}

/// Formats a duration the way [`parse_duration`] reads it back (`1h30m`, `45s`, `250ms`; zero is `0s`).
pub fn format_duration(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".to_string();
    }
    let (h, rem) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, ms) = (rem / 1000, rem % 1000);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// Parses a cron schedule accepted by [`cron_pattern`] into a schedule that can compute fire times.
///
/// Day-of-month and day-of-week combine the classic way: when both are restricted, a day matching either fires.
pub fn parse_cron(value: &str) -> Result<croner::Cron, ValueError> {
    if !CRON_REGEX.as_ref().is_some_and(|re| re.is_match(value)) {
        return Err(ValueError::Cron {
            value: value.to_string(),
            reason: "expected five fields (minute hour day-of-month month day-of-week) or a macro like @hourly"
                .to_string(),
        });
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .dom_and_dow(false)
        .sloppy_ranges(true)
        .build()
        // `@midnight` is Vixie cron's synonym of `@daily`; the parser only knows the latter.
        .parse(if value == "@midnight" { "@daily" } else { value })
        .map_err(|e| ValueError::Cron { value: value.to_string(), reason: e.to_string() })
}

/// [`DURATION_PATTERN`], compiled once (durations are parsed on every reconcile).
static DURATION_REGEX: LazyLock<Option<regex::Regex>> = LazyLock::new(|| regex::Regex::new(DURATION_PATTERN).ok());
/// [`cron_pattern`], compiled once (schedules are parsed on every reconcile).
static CRON_REGEX: LazyLock<Option<regex::Regex>> = LazyLock::new(|| regex::Regex::new(&cron_pattern()).ok());

#[cfg(test)]
fn regex_matches(pattern: &str, value: &str) -> bool {
    regex::Regex::new(pattern).map(|re| re.is_match(value)).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_CRON: &[&str] = &[
        "*/5 * * * *",
        "0 2 * * *",
        "0,30 * * * *",
        "0 9-17 * * 1-5",
        "15 */2 1,15 * *",
        "0 0 1 jan,Jul *",
        "0 0 * * MON-FRI",
        "0 0 * * sun",
        "0 0 * * 7",
        "1-59/2 * * * *",
        "5/10 * * * *",
        "0 0 31 DEC *",
        "@hourly",
        "@daily",
        "@midnight",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
        "0\t3 * * *",
    ];
    const BAD_CRON: &[&str] = &[
        "",
        "* * * *",
        "* * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "*/0 * * * *",
        "@reboot",
        "@every 5m",
        "0 0 * FOO *",
        " 0 0 * * *",
        "0 0 * * * ",
        "a b c d e",
        "1,,2 * * * *",
    ];

    #[test]
    fn cron_pattern_accepts_full_syntax_when_valid() {
        for s in GOOD_CRON {
            assert!(regex_matches(&cron_pattern(), s), "pattern rejected {s:?}");
            assert!(parse_cron(s).is_ok(), "parser rejected {s:?}: {:?}", parse_cron(s).err());
        }
    }

    #[test]
    fn cron_pattern_rejects_schedule_when_malformed() {
        for s in BAD_CRON {
            assert!(!regex_matches(&cron_pattern(), s), "pattern accepted {s:?}");
            assert!(parse_cron(s).is_err(), "parser accepted {s:?}");
        }
    }

    #[test]
    fn parse_cron_rejects_reversed_range_when_pattern_passes() {
        // The schema cannot see range order; the parser catches it and the controller reports it.
        for s in ["0 0 * * 5-1", "5-1 * * * *"] {
            assert!(regex_matches(&cron_pattern(), s), "{s}");
            assert_eq!(parse_cron(s).map(|_| ()).unwrap_err().reason(), "InvalidSchedule", "{s}");
        }
    }

    #[test]
    fn parse_cron_fires_on_either_day_when_both_day_fields_set() {
        let cron = parse_cron("0 0 13 * 5").unwrap();
        // 2026-11-01 is a Sunday; the next match is Friday 2026-11-06 (weekday), before the 13th.
        let start: jiff::Timestamp = "2026-11-01T12:00:00Z".parse().unwrap();
        let zoned = start.to_zoned(jiff::tz::TimeZone::UTC);
        let next = cron.find_next_occurrence(&zoned, false).unwrap();
        assert_eq!(next.day(), 6);
    }

    #[test]
    fn parse_duration_accepts_compound_forms() {
        let cases = [("5s", 5), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2h0m10s", 7210), ("90s", 90), ("0s", 0)];
        for (text, secs) in cases {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn parse_duration_rejects_value_when_malformed() {
        for text in ["", "5", "1.5h", "-5m", "5 m", "1d", "h", "5min", "1h 30m"] {
            let err = parse_duration(text).unwrap_err();
            assert_eq!(err.reason(), "InvalidDuration", "{text}");
        }
    }

    #[test]
    fn format_duration_round_trips_when_parsed_back() {
        for secs in [0u64, 1, 59, 60, 61, 3599, 3600, 5400, 86_400 + 7] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{secs}");
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
    }

    #[test]
    fn quantity_pattern_matches_kubernetes_quantities() {
        for q in ["100m", "128Mi", "1", "1.5", "2Gi", "500k", "1e3", ".5", "+1"] {
            assert!(regex_matches(QUANTITY_PATTERN, q), "{q}");
        }
        for q in ["", "1.5.5", "Mi", "12MB", "1 Gi", "-"] {
            assert!(!regex_matches(QUANTITY_PATTERN, q), "{q}");
        }
    }
}
