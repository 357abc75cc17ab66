//! Observing a metric of a version from its stored results (pure): the latest result, or the
//! pooled value over every batch from summed sufficient statistics.

use serde::Serialize;
use utoipa::ToSchema;

use super::rules::Observed;
use crate::domain::metric::MetricRef;
use crate::estimate::Diagnostics;

/// One stored result of a version (values in nats).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub estimator_version: String,
    pub params: serde_json::Value,
    pub value: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub ci_level: Option<f64>,
    pub n: u64,
    pub details: serde_json::Value,
    pub sufficient: Option<serde_json::Value>,
    pub diagnostics: Option<Diagnostics>,
}

/// How an observation was obtained.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Source {
    /// `latest` (the most recent batch's result) or `pooled` (exact value over every batch from
    /// summed sufficient statistics; its interval combines the per-batch intervals by inverse
    /// variance, a normal approximation).
    pub kind: String,
    /// Results that entered the value.
    pub batches: usize,
}

/// The metric of a version from its results (oldest first), in units of `factor` per nat.
/// Only results with the parameters and estimator version of the most recent one are used.
pub fn observe(points: &[Point], metric: &MetricRef, factor: f64) -> Option<(Observed, Source)> {
    let latest = points.last()?;
    let same: Vec<&Point> = points
        .iter()
        .filter(|p| p.params == latest.params && p.estimator_version == latest.estimator_version)
        .collect();
    if let Some(stat) = &metric.statistic {
        let v = latest.details.get(stat)?.as_f64()?;
        let f = if crate::domain::estimators::is_information(stat) {
            factor
        } else {
            1.0
        };
        return Some((
            Observed {
                value: v * f,
                ci_low: None,
                ci_high: None,
                level: None,
                n: latest.n,
                diagnostics: latest.diagnostics.clone(),
            },
            Source {
                kind: "latest".into(),
                batches: 1,
            },
        ));
    }
    let single = |p: &Point| Observed {
        value: p.value * factor,
        ci_low: p.ci_low.map(|x| x * factor),
        ci_high: p.ci_high.map(|x| x * factor),
        level: p.ci_level,
        n: p.n,
        diagnostics: p.diagnostics.clone(),
    };
    if same.len() > 1 {
        let stats: Option<Vec<serde_json::Value>> =
            same.iter().map(|p| p.sufficient.clone()).collect();
        let level = latest.ci_level.unwrap_or(0.95);
        if let Some(pooled) =
            stats.and_then(|s| crate::estimate::pool(&metric.estimator, &s, level))
        {
            // The estimator's own pooled interval where it has one (that of the concatenated
            // batches), else the inverse-variance combination of the batches' intervals.
            let ci = pooled.interval.or_else(|| {
                let intervals: Option<Vec<(f64, f64)>> =
                    same.iter().map(|p| Some((p.ci_low?, p.ci_high?))).collect();
                intervals.and_then(|iv| crate::stats::pooled_interval(pooled.value, &iv, level))
            });
            return Some((
                Observed {
                    value: pooled.value * factor,
                    ci_low: ci.map(|c| c.0 * factor),
                    ci_high: ci.map(|c| c.1 * factor),
                    level: Some(level),
                    n: same.iter().map(|p| p.n).sum(),
                    // The pooled statistics' own checks where the estimator makes them, else the
                    // worst of the batches'.
                    diagnostics: pooled.diagnostics.clone().or_else(|| {
                        let all: Vec<&Diagnostics> =
                            same.iter().filter_map(|p| p.diagnostics.as_ref()).collect();
                        (!all.is_empty()).then(|| Diagnostics::worst_of(all))
                    }),
                },
                Source {
                    kind: "pooled".into(),
                    batches: same.len(),
                },
            ));
        }
    }
    Some((
        single(latest),
        Source {
            kind: "latest".into(),
            batches: 1,
        },
    ))
}

#[cfg(test)]
mod observe_tests {
    use super::*;
    use serde_json::json;

    fn table_point(t: [[f64; 2]; 2]) -> Point {
        use crate::estimate::{shannon, ClassInput, Control};
        let (mut labels, mut preds) = (vec![], vec![]);
        for (i, row) in t.iter().enumerate() {
            for (j, &c) in row.iter().enumerate() {
                for _ in 0..c as usize {
                    labels.push(i as u32);
                    preds.push(j as u32);
                }
            }
        }
        let input = ClassInput {
            labels: &labels,
            predictions: &preds,
            k: 2,
            probabilities: None,
            weights: None,
            truth_matrix: None,
        };
        let out =
            shannon::shannon_mi(&input, &shannon::Params::default(), &Control::none()).unwrap();
        Point {
            estimator_version: shannon::VERSION.into(),
            params: json!({"p": 1}),
            value: out.value,
            ci_low: out.interval.as_ref().map(|i| i.low),
            ci_high: out.interval.as_ref().map(|i| i.high),
            ci_level: Some(0.95),
            n: out.n as u64,
            details: out.details,
            sufficient: out.sufficient,
            diagnostics: Some(out.diagnostics),
        }
    }

    #[test]
    fn several_batches_pool_exactly_and_statistics_read_details() {
        let a = table_point([[30.0, 10.0], [10.0, 30.0]]);
        let b = table_point([[40.0, 0.0], [0.0, 40.0]]);
        let whole = table_point([[70.0, 10.0], [10.0, 70.0]]);
        let m = MetricRef::parse("shannon_mi").unwrap();
        let (o, src) = observe(&[a.clone(), b.clone()], &m, 1.0).unwrap();
        assert_eq!(src.kind, "pooled");
        assert!(
            (o.value - whole.value).abs() < 1e-12,
            "pooled = the MI of the summed table"
        );
        assert_eq!(o.n, 160);
        // The pooled interval is the concatenation's own (jackknife of the summed table).
        assert!((o.ci_low.unwrap() - whole.ci_low.unwrap()).abs() < 1e-12);
        assert!((o.ci_high.unwrap() - whole.ci_high.unwrap()).abs() < 1e-12);
        assert!(o.ci_low.unwrap() < o.value && o.value < o.ci_high.unwrap());
        let (o1, src1) = observe(std::slice::from_ref(&a), &m, 2.0).unwrap();
        assert_eq!(src1.kind, "latest");
        assert!((o1.value - 2.0 * a.value).abs() < 1e-15);
        let nmi = MetricRef::parse("shannon_mi.nmi").unwrap();
        let (o2, _) = observe(&[a.clone(), b.clone()], &nmi, 2.0).unwrap();
        assert_eq!(
            o2.value,
            b.details["nmi"].as_f64().unwrap(),
            "ratios are unit-free, from the latest"
        );
        // A different parameter set is a different metric series: only the latest's are pooled.
        let mut c = a.clone();
        c.params = json!({"p": 2});
        let (o3, src3) = observe(&[a.clone(), b.clone(), c.clone()], &m, 1.0).unwrap();
        assert_eq!(src3.kind, "latest");
        assert_eq!(o3.value, c.value);
        // So is another estimator version (its statistics are not comparable).
        let mut d = b.clone();
        d.estimator_version = "1.0.0".into();
        let (o4, src4) = observe(&[a, b, d.clone()], &m, 1.0).unwrap();
        assert_eq!(src4.kind, "latest");
        assert_eq!(o4.value, d.value);
        assert!(MetricRef::parse("nope").is_err());
        assert!(observe(&[], &m, 1.0).is_none());
    }

    #[test]
    fn segment_metrics_parse_and_print_back() {
        let m = MetricRef::parse("semantic_mi{region=eu}").unwrap();
        assert_eq!(m.estimator, "semantic_mi");
        assert_eq!(m.statistic, None);
        assert_eq!(m.segment, Some(("region".into(), "eu".into())));
        assert_eq!(m.to_string(), "semantic_mi{region=eu}");
        assert_eq!(m.series(), "semantic_mi{region=eu}");
        let s = MetricRef::parse("shannon_mi.nmi{device=ios 17.1}").unwrap();
        assert_eq!(s.statistic.as_deref(), Some("nmi"));
        assert_eq!(s.segment, Some(("device".into(), "ios 17.1".into())));
        assert_eq!(s.to_string(), "shannon_mi.nmi{device=ios 17.1}");
        assert_eq!(s.series(), "shannon_mi{device=ios 17.1}");
        assert!(MetricRef::parse("semantic_mi{region=__other__}").is_ok());
        for bad in [
            "semantic_mi{region=eu",
            "semantic_mi{region}",
            "semantic_mi{=eu}",
            "semantic_mi{1x=eu}",
            "semantic_mi{region=}",
            "semantic_mi{region=eu}x",
            "semantic_mi{region=a=b}",
            "semantic_mi}",
            "nope{region=eu}",
        ] {
            assert!(MetricRef::parse(bad).is_err(), "{bad}");
        }
    }
}
