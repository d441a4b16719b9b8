//! Reading the `kube::core::Duration` fields of our objects without trusting what is stored.
//!
//! kube-core's parser multiplies each term of a Go duration into a `std::time::Duration`, and
//! that panics when a term passes `u64::MAX` seconds (`"20000000000000000000s"`) or is negative
//! inside the string (`"1s-5s"`). Decoding happens in the watch, so one such value in one object
//! would panic the watch, and the process with it, at every restart. The CRD bounds
//! `spec.pollInterval`, but objects stored before that rule, and every status field (anyone
//! with status rights can write them), are read as they are.
//!
//! So these fields are read leniently: a value that is not a duration this operator can hold
//! reads as absent, as if never written. (An error would not do either: a list fails whole on
//! one undecodable object, so one garbage status would stop the watch of every task in scope.)

use kube::core::Duration;
use serde::{Deserialize, Deserializer};

/// The longest duration read: a thousand years, far below where kube-core's arithmetic
/// overflows (`u64::MAX` seconds).
const MAX_SECONDS: f64 = 1000.0 * 365.25 * 86_400.0;

/// `deserialize_with` for an `Option<Duration>` field (with `#[serde(default)]`): anything but
/// a duration string this operator can hold reads as `None`.
pub(crate) fn lenient<'de, D>(deserializer: D) -> Result<Option<Duration>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<Raw>::deserialize(deserializer)? {
        Some(Raw::Text(text)) => parse(&text).ok(),
        Some(Raw::Other(_)) | None => None,
    })
}

/// Parses a Go duration (`1h30m`, `-5s`) like kube-core does, but refuses what would make
/// kube-core panic: a negative term after the first, or a total past a thousand years.
pub fn parse(text: &str) -> Result<Duration, String> {
    // The same tokens as kube-core (Go's time.ParseDuration), summed in floating point first.
    let mut rest = text.trim_start_matches('+').trim_start_matches('-');
    let mut total = 0.0f64;
    while !rest.is_empty() && rest != "0" {
        let unit_start = rest
            .find(|c: char| c.is_alphabetic())
            .ok_or_else(|| format!("{text:?} has no unit"))?;
        let (value, after) = rest.split_at(unit_start);
        let value: f64 = value
            .parse()
            .map_err(|_| format!("{value:?} in {text:?} is not a number"))?;
        let unit_end = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "\u{00b5}s" | "\u{03bc}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("{unit:?} in {text:?} is not a unit")),
        };
        // Also refuses NaN (kube-core panics on both).
        if value.is_nan() || value < 0.0 {
            return Err(format!("{text:?} has a negative term"));
        }
        total += value * seconds;
        rest = next;
    }
    if total.is_nan() || total > MAX_SECONDS {
        return Err(format!("{text:?} is longer than a thousand years"));
    }
    text.parse().map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_kube_core_parses_them() {
        for text in [
            "0", "0s", "1s", "-5s", "+5s", "1h30m", "1.5h", "300ms", "2us", "1µs", "1s+5s",
        ] {
            assert_eq!(
                parse(text).unwrap(),
                text.parse::<Duration>().unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn what_would_panic_kube_core_is_refused() {
        for text in [
            "20000000000000000000s",
            "9000000000000000h",
            "1s-5s",
            "5124095576030431h5124095576030431h",
            "8770000h",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
        for text in ["s", "5", "5x", "1e5s", "soon"] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
