//! Status conditions: set one by type, keeping `lastTransitionTime` while its status does not change.

use dr_syncer_api::common::{Condition, Time};

/// `status` value of a condition that holds.
pub const TRUE: &str = "True";
/// `status` value of a condition that does not hold.
pub const FALSE: &str = "False";
/// `status` value of a condition that is not known yet.
pub const UNKNOWN: &str = "Unknown";

/// A condition to set, without its timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired<'a> {
    /// Condition type, for example `Ready`.
    pub type_: &'a str,
    /// `True`, `False` or `Unknown`.
    pub status: &'a str,
    /// Short CamelCase reason.
    pub reason: &'a str,
    /// Human-readable detail.
    pub message: String,
}

/// Sets `desired` in `conditions` (replacing the condition of the same type). `lastTransitionTime` changes only
/// when the status does; `observedGeneration` is always updated.
pub fn set(conditions: &mut Vec<Condition>, desired: Desired<'_>, generation: Option<i64>, now: &Time) {
    let message = truncate(&desired.message, 1024);
    match conditions.iter_mut().find(|c| c.type_ == desired.type_) {
        Some(c) => {
            if c.status != desired.status {
                c.last_transition_time = now.clone();
            }
            c.status = desired.status.to_string();
            c.reason = desired.reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: desired.type_.to_string(),
            status: desired.status.to_string(),
            reason: desired.reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// The condition of `type_`, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == TRUE)
}

/// `text` cut to at most `max` bytes on a character boundary, with an ellipsis when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The current time as a Kubernetes timestamp (whole seconds, as the API server stores it).
pub fn now() -> Time {
    let ts = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(ts.as_second()).unwrap_or(ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(second).unwrap())
    }

    fn ready(status: &'static str, reason: &'static str) -> Desired<'static> {
        Desired { type_: "Ready", status, reason, message: "m".into() }
    }

    #[test]
    fn set_keeps_transition_time_when_status_unchanged() {
        let mut list = Vec::new();
        set(&mut list, ready(TRUE, "A"), Some(1), &at(10));
        set(&mut list, ready(TRUE, "B"), Some(2), &at(20));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].last_transition_time, at(10));
        assert_eq!((list[0].reason.as_str(), list[0].observed_generation), ("B", Some(2)));
        set(&mut list, ready(FALSE, "C"), Some(2), &at(30));
        assert_eq!(list[0].last_transition_time, at(30));
        assert!(!is_true(&list, "Ready"));
    }

    #[test]
    fn truncate_cuts_on_char_boundary_when_too_long() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate(&"é".repeat(10), 8);
        assert!(cut.len() <= 8 && cut.ends_with("..."), "{cut}");
    }
}
