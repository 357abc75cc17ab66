//! Per-sample categorical columns (segments: region, device, tier) and sample ids.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::errors::Errors;

/// The value every segment value beyond the cap is grouped under.
pub const OTHER: &str = "__other__";
/// Most segment keys one batch may carry.
pub const MAX_KEYS: usize = 8;
/// Default cap on distinct values per key (by count; the rest become [`OTHER`]).
pub const DEFAULT_MAX_VALUES: u32 = 50;
/// Largest cap a request may ask for.
pub const MAX_VALUES_LIMIT: u32 = 10_000;
/// Longest sample id, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest segment value, in characters.
pub const MAX_VALUE_CHARS: usize = 64;

/// A sample id: 1 to 128 characters, no control characters (what `char::is_control` names).
pub const ID_PATTERN: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,128}$";
/// A segment key: a letter, then letters, digits or `_` (at most 32).
pub const KEY_PATTERN: &str = "^[A-Za-z][A-Za-z0-9_]{0,31}$";
/// A segment value: 1 to 64 characters, none of `{ } = , "` or control characters.
pub const VALUE_PATTERN: &str = "^[^{}=,\"\\x00-\\x1f\\x7f-\\x9f]{1,64}$";

/// One categorical per-sample column after the cap: its values (most frequent first, ties by
/// name; [`OTHER`] last when the cap grouped some) and each sample's index into them.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentColumn {
    pub key: String,
    pub values: Vec<String>,
    pub codes: Vec<u32>,
}

impl SegmentColumn {
    /// How many samples carry each value.
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0usize; self.values.len()];
        for &v in &self.codes {
            c[v as usize] += 1;
        }
        c
    }

    /// The sample indices of each value, in sample order.
    pub fn rows_by_value(&self) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = self.counts().into_iter().map(Vec::with_capacity).collect();
        for (i, &v) in self.codes.iter().enumerate() {
            out[v as usize].push(i);
        }
        out
    }
}

pub fn valid_key(k: &str) -> bool {
    let mut c = k.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic())
        && k.len() <= 32
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

pub fn valid_value(v: &str) -> bool {
    !v.is_empty()
        && v.chars().count() <= MAX_VALUE_CHARS
        && !v
            .chars()
            .any(|c| matches!(c, '{' | '}' | '=' | ',' | '"') || c.is_control())
}

/// Validate the request's `segments` (key → one value per sample) and apply the cap.
pub fn validate_segments(
    e: &mut Errors,
    segments: BTreeMap<String, Vec<String>>,
    n: usize,
    max_values: u32,
) -> Vec<SegmentColumn> {
    if segments.len() > MAX_KEYS {
        e.push(
            "/segments",
            format!(
                "has {} keys; at most {MAX_KEYS} are allowed",
                segments.len()
            ),
        );
        return vec![];
    }
    let mut out = Vec::with_capacity(segments.len());
    for (key, values) in segments {
        if !valid_key(&key) {
            e.push(
                format!("/segments/{key}"),
                "a segment key is a letter followed by letters, digits or _ (at most 32)",
            );
            continue;
        }
        if values.len() != n {
            e.push(
                format!("/segments/{key}"),
                format!("has {} entries but the batch has {n} samples", values.len()),
            );
            continue;
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (i, v) in values.iter().enumerate() {
            if v == OTHER {
                e.push(
                    format!("/segments/{key}/{i}"),
                    format!("{OTHER} is reserved for the values beyond the cap"),
                );
            } else if !valid_value(v) {
                e.push(
                    format!("/segments/{key}/{i}"),
                    "a segment value has 1 to 64 characters, none of { } = , \" or control characters",
                );
            } else {
                *counts.entry(v.as_str()).or_default() += 1;
            }
            if e.full() {
                return out;
            }
        }
        let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let cap = max_values as usize;
        let grouped = ranked.len() > cap;
        let kept = ranked.len().min(cap);
        let mut names: Vec<String> = ranked[..kept].iter().map(|(v, _)| v.to_string()).collect();
        let index: HashMap<&str, u32> = ranked[..kept]
            .iter()
            .enumerate()
            .map(|(i, (v, _))| (*v, i as u32))
            .collect();
        let other = kept as u32;
        let codes = values
            .iter()
            .map(|v| index.get(v.as_str()).copied().unwrap_or(other))
            .collect();
        if grouped {
            names.push(OTHER.to_string());
        }
        out.push(SegmentColumn {
            key,
            values: names,
            codes,
        });
    }
    out
}

/// Validate sample ids: one per sample, unique, 1 to 128 characters without control characters.
pub fn validate_ids(e: &mut Errors, ids: &[String], n: usize) {
    if ids.len() != n {
        e.push(
            "/ids",
            format!("has {} entries but the batch has {n} samples", ids.len()),
        );
        return;
    }
    let mut seen = HashSet::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        if !valid_id(id) {
            e.push(
                format!("/ids/{i}"),
                "a sample id has 1 to 128 characters and no control characters",
            );
        } else if !seen.insert(id.as_str()) {
            e.push(format!("/ids/{i}"), format!("duplicate sample id {id:?}"));
        }
        if e.full() {
            return;
        }
    }
}

pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_ID_CHARS && !id.chars().any(char::is_control)
}

/// The stored stand-in for a multiclass label not known yet (multilabel rows use NaN).
pub const UNLABELLED: u32 = u32::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(segments: BTreeMap<String, Vec<String>>, n: usize, cap: u32) -> Vec<String> {
        let mut e = Errors::default();
        validate_segments(&mut e, segments, n, cap);
        e.0.into_iter()
            .map(|f| format!("{} {}", f.pointer.unwrap_or_default(), f.message))
            .collect()
    }

    #[test]
    fn the_cap_keeps_the_most_frequent_values_and_groups_the_rest() {
        let v: Vec<String> = ["a", "b", "b", "c", "c", "c", "d"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut e = Errors::default();
        let cols = validate_segments(&mut e, BTreeMap::from([("k".into(), v)]), 7, 2);
        assert!(e.is_empty());
        let c = &cols[0];
        assert_eq!(c.values, ["c", "b", OTHER]);
        assert_eq!(c.codes, [2, 1, 1, 0, 0, 0, 2]);
        assert_eq!(c.counts(), [3, 2, 2]);
        assert_eq!(c.rows_by_value()[2], [0, 6]);
        // Under the cap nothing is grouped; ties are ordered by name.
        let mut e = Errors::default();
        let v: Vec<String> = ["y", "x"].iter().map(|s| s.to_string()).collect();
        let cols = validate_segments(&mut e, BTreeMap::from([("k".into(), v)]), 2, 50);
        assert_eq!(cols[0].values, ["x", "y"]);
        assert_eq!(cols[0].codes, [1, 0]);
    }

    #[test]
    fn bad_keys_values_and_lengths_are_named() {
        let one = |k: &str, v: &[&str]| {
            BTreeMap::from([(k.to_string(), v.iter().map(|s| s.to_string()).collect())])
        };
        assert_eq!(
            errors_of(one("1bad", &["a", "b"]), 2, 50),
            ["/segments/1bad a segment key is a letter followed by letters, digits or _ (at most 32)"]
        );
        assert_eq!(
            errors_of(one("k", &["a"]), 2, 50),
            ["/segments/k has 1 entries but the batch has 2 samples"]
        );
        let e = errors_of(one("k", &["a=b", OTHER]), 2, 50);
        assert!(e[0].starts_with("/segments/k/0 "), "{e:?}");
        assert!(
            e[1].starts_with("/segments/k/1 __other__ is reserved"),
            "{e:?}"
        );
        let many: BTreeMap<String, Vec<String>> = (0..9)
            .map(|i| (format!("k{i}"), vec!["a".to_string(); 2]))
            .collect();
        assert_eq!(
            errors_of(many, 2, 50),
            ["/segments has 9 keys; at most 8 are allowed"]
        );
    }

    #[test]
    fn duplicate_and_empty_ids_are_named() {
        let ids: Vec<String> = ["a", "b", "a", ""].iter().map(|s| s.to_string()).collect();
        let mut e = Errors::default();
        validate_ids(&mut e, &ids, 4);
        let got: Vec<_> = e.0.iter().map(|f| f.pointer.clone().unwrap()).collect();
        assert_eq!(got, ["/ids/2", "/ids/3"]);
    }
}

#[cfg(test)]
mod pattern_tests {
    use super::*;

    /// The documented patterns accept exactly what validation accepts: control characters are
    /// U+0000–U+001F and U+007F–U+009F (`char::is_control`) in both.
    #[test]
    fn the_documented_patterns_match_validation() {
        let value = regex::Regex::new(VALUE_PATTERN).unwrap();
        let id = regex::Regex::new(ID_PATTERN).unwrap();
        for c in (0u32..0x250).filter_map(char::from_u32) {
            let s = format!("a{c}b");
            assert_eq!(value.is_match(&s), valid_value(&s), "value {c:?}");
            assert_eq!(id.is_match(&s), valid_id(&s), "id {c:?}");
        }
        assert!(!valid_value(&"x".repeat(65)) && !value.is_match(&"x".repeat(65)));
        assert!(!valid_id(&"é".repeat(129)) && !id.is_match(&"é".repeat(129)));
        assert!(valid_id(&"é".repeat(128)) && id.is_match(&"é".repeat(128)));
    }
}
