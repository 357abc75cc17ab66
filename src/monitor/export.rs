//! The information export: which stored results `/metrics` shows as series. A gate policy's
//! metrics for the model's newest version and every aliased version; a monitor's metrics for the
//! version its target names. The registry and its text rendering are `crate::metrics`'s; this
//! module decides what to read and turns the rows into series.

use std::collections::BTreeMap;

use serde::Deserialize;
use uuid::Uuid;

use super::spec::MonitorSpec;
use crate::domain::metric::MetricRef;
use crate::metrics::{InformationSeries, InformationSnapshot};
use crate::store::{LatestResult, WatchedModel};

/// One (model, version, metric) whose latest result is exported.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wanted {
    pub model: String,
    pub version: String,
    /// As written in rules: `estimator` or `estimator.statistic`.
    pub metric: String,
    pub version_id: Uuid,
    pub estimator: String,
    pub statistic: Option<String>,
}

#[derive(Deserialize)]
struct StoredPolicy {
    name: String,
    rules: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct StoredAlias {
    alias: String,
    id: Uuid,
    name: String,
}

#[derive(Deserialize)]
struct StoredVersion {
    id: Uuid,
    name: String,
}

/// The metrics named by rules, resolved as gates resolve them (unknown names are skipped, and so
/// are segment metrics `estimator{key=value}`: their series are not exported, which keeps the
/// label cardinality bounded by the estimators).
fn rule_metrics<'a>(rules: impl IntoIterator<Item = &'a serde_json::Value>) -> Vec<MetricRef> {
    rules
        .into_iter()
        .filter_map(|r| r.get("metric")?.as_str())
        .filter_map(|m| MetricRef::parse(m).ok())
        .filter(|m| m.segment.is_none())
        .collect()
}

/// Which (model, version, metric) to export, sorted and without repeats. A gate policy's metrics
/// are exported for the model's newest version (the next candidate) and every version an alias
/// names (the baselines gates compare with); a monitor's metrics (its rules, or its gate policy's)
/// for the version its target names now.
pub fn plan(models: &[WatchedModel]) -> Vec<Wanted> {
    let mut out = std::collections::BTreeSet::new();
    for m in models {
        let policies: Vec<StoredPolicy> =
            serde_json::from_value(m.policies.clone()).unwrap_or_default();
        let aliases: Vec<StoredAlias> =
            serde_json::from_value(m.aliases.clone()).unwrap_or_default();
        let named: Vec<StoredVersion> = serde_json::from_value(m.named.clone()).unwrap_or_default();
        let newest = m.newest_id.zip(m.newest_name.clone());
        let mut add = |(id, name): (Uuid, &str), metrics: &[MetricRef]| {
            for metric in metrics {
                out.insert(Wanted {
                    model: m.model.clone(),
                    version: name.to_string(),
                    metric: metric.to_string(),
                    version_id: id,
                    estimator: metric.estimator.clone(),
                    statistic: metric.statistic.clone(),
                });
            }
        };
        let policy_metrics: BTreeMap<&str, Vec<MetricRef>> = policies
            .iter()
            .map(|p| (p.name.as_str(), rule_metrics(&p.rules)))
            .collect();
        let all: Vec<MetricRef> = policy_metrics.values().flatten().cloned().collect();
        if !all.is_empty() {
            let watched = newest
                .iter()
                .map(|(id, n)| (*id, n.as_str()))
                .chain(aliases.iter().map(|a| (a.id, a.name.as_str())));
            for v in watched {
                add(v, &all);
            }
        }
        let specs = m.monitors.as_array().map(Vec::as_slice).unwrap_or_default();
        for spec in specs {
            let Ok(spec) = serde_json::from_value::<MonitorSpec>(spec.clone()) else {
                continue;
            };
            let metrics = match (&spec.rules, &spec.gate) {
                (Some(rules), _) => rules
                    .iter()
                    .filter_map(|r| MetricRef::parse(&r.metric).ok())
                    .filter(|m| m.segment.is_none())
                    .collect(),
                (None, Some(gate)) => policy_metrics
                    .get(gate.as_str())
                    .cloned()
                    .unwrap_or_default(),
                (None, None) => Vec::new(),
            };
            let t = &spec.target;
            let version = if let Some(alias) = &t.alias {
                aliases
                    .iter()
                    .find(|a| &a.alias == alias)
                    .map(|a| (a.id, a.name.as_str()))
            } else if let Some(v) = &t.version {
                named
                    .iter()
                    .find(|x| &x.name == v)
                    .map(|x| (x.id, x.name.as_str()))
            } else {
                newest.as_ref().map(|(id, n)| (*id, n.as_str()))
            };
            if let Some(v) = version {
                add(v, &metrics);
            }
        }
    }
    out.into_iter().collect()
}

/// The exported series: each wanted metric that has a result, in `wanted`'s order, then the
/// aliases of the exported versions; at most `limit` in all (the rest are counted as dropped).
pub fn build(
    models: &[WatchedModel],
    wanted: &[Wanted],
    results: &[LatestResult],
    limit: usize,
) -> InformationSnapshot {
    let by_key: std::collections::HashMap<(Uuid, &str), &LatestResult> = results
        .iter()
        .map(|r| ((r.version_id, r.estimator.as_str()), r))
        .collect();
    let bits = 1.0 / std::f64::consts::LN_2;
    let mut snap = InformationSnapshot {
        limit,
        ..Default::default()
    };
    let mut exported = std::collections::BTreeSet::new();
    for w in wanted {
        let Some(r) = by_key.get(&(w.version_id, w.estimator.as_str())) else {
            continue;
        };
        let (value, ci_low, ci_high, unit) = match &w.statistic {
            None => (
                r.value * bits,
                r.ci_low.map(|x| x * bits),
                r.ci_high.map(|x| x * bits),
                "bits",
            ),
            Some(stat) => {
                let Some(v) = r.details.get(stat).and_then(|v| v.as_f64()) else {
                    continue;
                };
                if crate::domain::estimators::is_information(stat) {
                    (v * bits, None, None, "bits")
                } else {
                    (v, None, None, "ratio")
                }
            }
        };
        if snap.series.len() >= limit {
            snap.dropped += 1;
            continue;
        }
        exported.insert((w.model.as_str(), w.version.as_str()));
        snap.series.push(InformationSeries {
            model: w.model.clone(),
            version: w.version.clone(),
            metric: w.metric.clone(),
            unit,
            value,
            ci_low,
            ci_high,
            at: r.computed_at.timestamp_millis() as f64 / 1000.0,
        });
    }
    for m in models {
        let aliases: Vec<StoredAlias> =
            serde_json::from_value(m.aliases.clone()).unwrap_or_default();
        let mut aliases: Vec<_> = aliases
            .into_iter()
            .filter(|a| exported.contains(&(m.model.as_str(), a.name.as_str())))
            .collect();
        aliases.sort_by(|a, b| a.alias.cmp(&b.alias));
        for a in aliases {
            if snap.series.len() + snap.aliases.len() >= limit {
                snap.dropped += 1;
                continue;
            }
            snap.aliases.push((m.model.clone(), a.alias, a.name));
        }
    }
    snap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(model: &str) -> WatchedModel {
        let (v1, v2, v3) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        WatchedModel {
            model: model.into(),
            policies: serde_json::json!([
                {"name": "release", "rules": [
                    {"metric": "shannon_mi", "op": "gte", "threshold": 0.1},
                    {"metric": "nonsense", "op": "gte", "threshold": 0.1}]},
                {"name": "deep", "rules": [{"metric": "ksg", "op": "gte", "threshold": 0.1}]}
            ]),
            monitors: serde_json::json!([
                {"target": {"version": "v1"}, "gate": "deep"},
                {"target": {"alias": "production"},
                 "rules": [{"metric": "semantic_mi.efficiency", "op": "gte", "threshold": 0.1}]},
                {"target": {"alias": "nowhere"},
                 "rules": [{"metric": "ce_bound", "op": "gte", "threshold": 0.1}]}
            ]),
            newest_id: Some(v3),
            newest_name: Some("v3".into()),
            aliases: serde_json::json!([{"alias": "production", "id": v2, "name": "v2"}]),
            named: serde_json::json!([{"id": v1, "name": "v1"}]),
        }
    }

    fn result(
        version: u128,
        estimator: &str,
        nats: f64,
        details: serde_json::Value,
    ) -> LatestResult {
        LatestResult {
            version_id: Uuid::from_u128(version),
            estimator: estimator.into(),
            value: nats,
            ci_low: Some(nats - 0.1),
            ci_high: Some(nats + 0.1),
            details,
            computed_at: chrono::DateTime::from_timestamp_millis(1_767_225_600_250).unwrap(),
        }
    }

    #[test]
    fn policies_and_monitors_decide_which_versions_and_metrics_are_exported() {
        let wanted: Vec<(String, String)> = plan(&[watched("m")])
            .into_iter()
            .map(|w| (w.version, w.metric))
            .collect();
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            wanted,
            pairs(&[
                // The policies' metrics for the aliased and the newest version.
                ("v1", "ksg"), // the monitor naming v1, through its gate policy
                ("v2", "ksg"),
                ("v2", "semantic_mi.efficiency"), // the monitor following production
                ("v2", "shannon_mi"),
                ("v3", "ksg"),
                ("v3", "shannon_mi"),
            ])
        );
    }

    #[test]
    fn information_renders_in_bits_capped_and_escaped() {
        let m = watched("a\"b\\c");
        let wanted = plan(std::slice::from_ref(&m));
        let results = [
            result(
                2,
                "shannon_mi",
                std::f64::consts::LN_2,
                serde_json::json!({}),
            ),
            result(3, "shannon_mi", f64::NEG_INFINITY, serde_json::json!({})),
            result(
                2,
                "semantic_mi",
                0.5,
                serde_json::json!({"efficiency": 0.75}),
            ),
        ];
        let snap = build(std::slice::from_ref(&m), &wanted, &results, 1000);
        assert_eq!(snap.series.len(), 3);
        assert_eq!(snap.dropped, 0);
        let text = crate::metrics::render(None, Some(&snap));
        let l = "model=\"a\\\"b\\\\c\",version=\"v2\"";
        assert!(
            text.contains(&format!(
                "infoaudit_information_value{{{l},metric=\"shannon_mi\",unit=\"bits\"}} 1.0\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "infoaudit_information_value{{{l},metric=\"semantic_mi.efficiency\",unit=\"ratio\"}} 0.75\n"
        )));
        assert!(text.contains(&format!(
            "infoaudit_information_result_timestamp_seconds{{{l},metric=\"shannon_mi\",unit=\"bits\"}} 1767225600.25\n"
        )));
        assert!(text.contains(
            "infoaudit_information_value{model=\"a\\\"b\\\\c\",version=\"v3\",metric=\"shannon_mi\",unit=\"bits\"} -Inf\n"
        ));
        // A statistic has no interval.
        assert!(!text.contains("infoaudit_information_ci_low{model=\"a\\\"b\\\\c\",version=\"v2\",metric=\"semantic_mi.efficiency\""));
        assert!(text.contains(
            "infoaudit_model_alias_info{model=\"a\\\"b\\\\c\",alias=\"production\",version=\"v2\"} 1\n"
        ));
        assert!(text.contains("\ninfoaudit_information_export_up 1\n"));
        assert!(text.contains("\ninfoaudit_information_series 3\n"));
        // No queue snapshot: its gauges are left out.
        assert!(!text.contains("infoaudit_jobs{") && !text.contains("TYPE infoaudit_jobs gauge"));

        let capped = build(std::slice::from_ref(&m), &wanted, &results, 1);
        assert_eq!(capped.series.len(), 1);
        assert_eq!(capped.aliases.len(), 0);
        assert_eq!(capped.dropped, 3, "two values and the alias marker");
        let text = crate::metrics::render(None, Some(&capped));
        assert!(text.contains("\ninfoaudit_information_series_dropped 3\n"));

        let down = crate::metrics::render(None, None);
        assert!(down.contains("\ninfoaudit_information_export_up 0\n"));
        assert!(!down.contains("infoaudit_information_value"));
    }
}
