//! Metric addresses: `estimator[.statistic][{key=value}]`, the grammar history, gates, monitors
//! and the information export share.

/// A metric address: `estimator` or `estimator.statistic`, optionally restricted to one value of
/// a segment key: `estimator[.statistic]{key=value}` (e.g. `semantic_mi{region=eu}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetricRef {
    pub estimator: String,
    pub statistic: Option<String>,
    /// `(key, value)` of a segment.
    pub segment: Option<(String, String)>,
}

/// The grammar of a metric, for error messages and the OpenAPI document.
pub const METRIC_SYNTAX: &str =
    "estimator[.statistic][{key=value}], e.g. semantic_mi, shannon_mi.nmi, semantic_mi{region=eu}";

impl MetricRef {
    pub fn parse(s: &str) -> Result<MetricRef, String> {
        let (base, segment) = match s.find('{') {
            None if s.contains('}') => {
                return Err(format!(
                    "metric {s:?} has a '}}' without '{{'; the syntax is {METRIC_SYNTAX}"
                ))
            }
            None => (s, None),
            Some(open) => {
                let Some(inner) = s[open + 1..].strip_suffix('}') else {
                    return Err(format!(
                        "metric {s:?}: a segment is written {{key=value}} at the end; the syntax is {METRIC_SYNTAX}"
                    ));
                };
                let Some((k, v)) = inner.split_once('=') else {
                    return Err(format!(
                        "metric {s:?}: the segment {{{inner}}} needs key=value; the syntax is {METRIC_SYNTAX}"
                    ));
                };
                if !super::segments::valid_key(k) {
                    return Err(format!(
                        "metric {s:?}: segment key {k:?} is not a letter followed by letters, digits or _ (at most 32)"
                    ));
                }
                if !super::segments::valid_value(v) && v != super::segments::OTHER {
                    return Err(format!(
                        "metric {s:?}: segment value {v:?} is not 1 to 64 characters without {{ }} = , \" or control characters"
                    ));
                }
                (&s[..open], Some((k.to_string(), v.to_string())))
            }
        };
        let (e, stat) = match base.split_once('.') {
            Some((e, st)) => (e, Some(st.to_string())),
            None => (base, None),
        };
        if super::estimators::Kind::parse(e).is_none() {
            return Err(format!("unknown estimator {e:?} in metric {s:?}"));
        }
        if stat.as_deref() == Some("") {
            return Err(format!("metric {s:?} has an empty statistic name"));
        }
        Ok(MetricRef {
            estimator: e.to_string(),
            statistic: stat,
            segment,
        })
    }

    /// The estimator's whole-batch metric (no statistic, no segment).
    pub fn of(estimator: &str) -> MetricRef {
        MetricRef {
            estimator: estimator.to_string(),
            statistic: None,
            segment: None,
        }
    }

    /// The series the metric reads: `estimator` or `estimator{key=value}`.
    pub fn series(&self) -> String {
        match &self.segment {
            Some((k, v)) => format!("{}{{{k}={v}}}", self.estimator),
            None => self.estimator.clone(),
        }
    }
}

impl std::fmt::Display for MetricRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.estimator)?;
        if let Some(s) = &self.statistic {
            write!(f, ".{s}")?;
        }
        if let Some((k, v)) = &self.segment {
            write!(f, "{{{k}={v}}}")?;
        }
        Ok(())
    }
}
