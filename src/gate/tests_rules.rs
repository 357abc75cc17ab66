use super::rules::*;
use crate::estimate::{Diagnostics, Reliability};
use serde_json::json;

fn rule(json: serde_json::Value) -> Rule {
    let r: Rule = serde_json::from_value(json).unwrap();
    r.validate().unwrap();
    r
}
fn val(v: f64) -> Input {
    Input::Value(Observed {
        value: v,
        ci_low: None,
        ci_high: None,
        level: None,
        n: 1000,
        diagnostics: None,
    })
}
fn ci(v: f64, lo: f64, hi: f64) -> Input {
    Input::Value(Observed {
        value: v,
        ci_low: Some(lo),
        ci_high: Some(hi),
        level: Some(0.95),
        n: 1000,
        diagnostics: None,
    })
}
fn judged(v: f64, r: Reliability) -> Input {
    let mut d = Diagnostics::default();
    d.add(r, "check", format!("{r:?} finding"));
    Input::Value(Observed {
        value: v,
        ci_low: None,
        ci_high: None,
        level: None,
        n: 1000,
        diagnostics: Some(d),
    })
}

/// Baseline rules judge the difference: a version against itself (paired, Δ = 0 with a
/// zero-width interval) passes whatever the width of its own interval — version 1 called
/// this "inconclusive: interval [1.0300, 1.0822] straddles the bound 1.0369". Independent
/// sides combine their intervals; `ci_low` takes Δ's lower end.
#[test]
fn baseline_rules_judge_the_difference() {
    use serde_json::json;
    let r = rule(
        json!({"metric": "semantic_mi", "op": "gte", "baseline": "production", "max_regression": {"relative": 0.02}}),
    );
    let me = ci(1.0561, 1.0300, 1.0822);
    let self_delta = Delta {
        value: 0.0,
        relative: Some(0.0),
        ci_low: Some(0.0),
        ci_high: Some(0.0),
        method: DeltaMethod::Paired,
    };
    let o = evaluate(&r, &me, Some(("v1", &me)), Some(&self_delta));
    assert_eq!(o.verdict, Verdict::Pass, "{}", o.message);
    assert_eq!(o.delta.as_ref().unwrap().method, DeltaMethod::Paired);
    assert!((o.threshold.unwrap() - 1.0561 * 0.98).abs() < 1e-12);
    // The same two sides taken as independent: Δ = 0 ± 1.96·√2·0.01332 straddles −0.0211.
    let o = evaluate(&r, &me, Some(("v1", &me)), None);
    assert_eq!(o.verdict, Verdict::Inconclusive, "{}", o.message);
    let d = o.delta.unwrap();
    assert_eq!(d.method, DeltaMethod::Independent);
    let half = 1.959964 * (2.0f64).sqrt() * (1.0822 - 1.0300) / (2.0 * 1.959964);
    assert!((d.ci_high.unwrap() - half).abs() < 1e-6, "{d:?}");
    // A paired regression of 0.03 ± 0.005 fails a 2 % allowance (−0.0211); with a 5 %
    // allowance (−0.0528) it passes; `ci_low` compares Δ's lower end.
    let worse = ci(1.0261, 1.0000, 1.0522);
    let paired = Delta {
        value: -0.03,
        relative: Some(-0.03 / 1.0561),
        ci_low: Some(-0.035),
        ci_high: Some(-0.025),
        method: DeltaMethod::Paired,
    };
    let o = evaluate(&r, &worse, Some(("v1", &me)), Some(&paired));
    assert_eq!(o.verdict, Verdict::Fail, "{}", o.message);
    let loose = rule(
        json!({"metric": "semantic_mi", "op": "gte", "baseline": "production", "max_regression": {"relative": 0.05}}),
    );
    assert_eq!(
        evaluate(&loose, &worse, Some(("v1", &me)), Some(&paired)).verdict,
        Verdict::Pass
    );
    let tight_low = rule(
        json!({"metric": "semantic_mi", "op": "gte", "baseline": "p", "max_regression": {"absolute": 0.032}, "use": "ci_low"}),
    );
    assert_eq!(
        evaluate(&tight_low, &worse, Some(("v1", &me)), Some(&paired)).verdict,
        Verdict::Fail
    );
    let straddle = rule(
        json!({"metric": "semantic_mi", "op": "gte", "baseline": "p", "max_regression": {"absolute": 0.032}}),
    );
    assert_eq!(
        evaluate(&straddle, &worse, Some(("v1", &me)), Some(&paired)).verdict,
        Verdict::Inconclusive
    );
    // A threshold and a baseline together: both parts must hold; a definite miss decides,
    // an undecided part (the candidate's interval straddling the threshold) is inconclusive.
    let both = |t: f64| {
        rule(
            json!({"metric": "semantic_mi", "op": "gte", "threshold": t, "baseline": "p", "max_regression": {"relative": 0.05}}),
        )
    };
    let o = evaluate(&both(1.06), &worse, Some(("v1", &me)), Some(&paired));
    assert_eq!(o.verdict, Verdict::Fail, "{}", o.message);
    let o = evaluate(&both(1.04), &worse, Some(("v1", &me)), Some(&paired));
    assert_eq!(o.verdict, Verdict::Inconclusive, "{}", o.message);
    let o = evaluate(&both(0.9), &worse, Some(("v1", &me)), Some(&paired));
    assert_eq!(o.verdict, Verdict::Pass, "{}", o.message);
}

/// An unreliable metric (candidate or baseline) makes its rule inconclusive with the reasons;
/// caution changes nothing but is reported.
#[test]
fn unreliable_metrics_are_inconclusive() {
    use serde_json::json;
    let r = rule(json!({"metric": "shannon_mi", "op": "gte", "threshold": 0.5}));
    let o = evaluate(&r, &judged(0.9, Reliability::Unreliable), None, None);
    assert_eq!(o.verdict, Verdict::Inconclusive);
    assert!(
        o.message.contains("unreliable") && o.message.contains("Unreliable finding"),
        "{}",
        o.message
    );
    let o = evaluate(&r, &judged(0.9, Reliability::Caution), None, None);
    assert_eq!(o.verdict, Verdict::Pass);
    assert_eq!(o.diagnostics.unwrap().reliability, Reliability::Caution);
    let o = evaluate(&r, &judged(0.1, Reliability::Caution), None, None);
    assert_eq!(o.verdict, Verdict::Fail);
    let b = rule(
        json!({"metric": "shannon_mi", "op": "gte", "baseline": "production", "max_regression": {"absolute": 0.1}}),
    );
    let base = judged(0.8, Reliability::Unreliable);
    let o = evaluate(&b, &val(0.9), Some(("v1", &base)), None);
    assert_eq!(o.verdict, Verdict::Inconclusive);
    assert!(
        o.message.contains("baseline: Unreliable finding"),
        "{}",
        o.message
    );
}

/// The table of rule semantics: (case, rule, candidate, baseline, expected verdict, expected bound).
#[test]
fn rule_semantics_table() {
    use serde_json::json;
    use Verdict::*;
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        serde_json::Value,
        Input,
        Option<Input>,
        Verdict,
        Option<f64>,
    )> = vec![
        (
            "equal at inclusive threshold passes",
            json!({"metric": "m", "op": "gte", "threshold": 0.5}),
            val(0.5),
            None,
            Pass,
            Some(0.5),
        ),
        (
            "equal at strict threshold fails",
            json!({"metric": "m", "op": "gt", "threshold": 0.5}),
            val(0.5),
            None,
            Fail,
            Some(0.5),
        ),
        (
            "lte equal passes",
            json!({"metric": "m", "op": "lte", "threshold": 0.5}),
            val(0.5),
            None,
            Pass,
            Some(0.5),
        ),
        (
            "lt equal fails",
            json!({"metric": "m", "op": "lt", "threshold": 0.5}),
            val(0.5),
            None,
            Fail,
            Some(0.5),
        ),
        (
            "below threshold fails",
            json!({"metric": "m", "op": "gte", "threshold": 0.5}),
            val(0.49),
            None,
            Fail,
            Some(0.5),
        ),
        // 2 % relative regression from a positive baseline 1.0: bound 0.98.
        (
            "relative regression allowed",
            json!({"metric": "m", "op": "gte", "baseline": "production", "max_regression": {"relative": 0.02}}),
            val(0.981),
            Some(val(1.0)),
            Pass,
            Some(0.98),
        ),
        (
            "relative regression exceeded",
            json!({"metric": "m", "op": "gte", "baseline": "production", "max_regression": {"relative": 0.02}}),
            val(0.979),
            Some(val(1.0)),
            Fail,
            Some(0.98),
        ),
        // Negative baseline −1.0 (e.g. a raw Miller–Madow estimate): 2 % of |b| = 0.02 → bound −1.02,
        // not −0.98 (MLflow's signed-baseline bug would tighten instead of loosen).
        (
            "negative baseline uses |b|",
            json!({"metric": "m", "op": "gte", "baseline": "production", "max_regression": {"relative": 0.02}}),
            val(-1.01),
            Some(val(-1.0)),
            Pass,
            Some(-1.02),
        ),
        (
            "zero baseline, relative only: inconclusive",
            json!({"metric": "m", "op": "gte", "baseline": "production", "max_regression": {"relative": 0.02}}),
            val(0.1),
            Some(val(0.0)),
            Inconclusive,
            None,
        ),
        (
            "zero baseline uses the absolute form",
            json!({"metric": "m", "op": "gte", "baseline": "production", "max_regression": {"relative": 0.02, "absolute": 0.05}}),
            val(-0.04),
            Some(val(0.0)),
            Pass,
            Some(-0.05),
        ),
        (
            "both limits: the tighter holds",
            json!({"metric": "m", "op": "gte", "baseline": "p", "max_regression": {"relative": 0.1, "absolute": 0.05}}),
            val(0.94),
            Some(val(1.0)),
            Fail,
            Some(0.95),
        ),
        (
            "improvement required and met",
            json!({"metric": "m", "op": "gte", "baseline": "p", "min_improvement": {"absolute": 0.1}}),
            val(1.1),
            Some(val(1.0)),
            Pass,
            Some(1.1),
        ),
        (
            "improvement required, not met",
            json!({"metric": "m", "op": "gte", "baseline": "p", "min_improvement": {"absolute": 0.1, "relative": 0.2}}),
            val(1.15),
            Some(val(1.0)),
            Fail,
            Some(1.2),
        ),
        (
            "lower is better: regression upwards",
            json!({"metric": "m", "op": "lte", "baseline": "p", "max_regression": {"absolute": 0.1}}),
            val(1.05),
            Some(val(1.0)),
            Pass,
            Some(1.1),
        ),
        (
            "threshold and baseline: both must hold",
            json!({"metric": "m", "op": "gte", "threshold": 0.9, "baseline": "p", "max_regression": {"absolute": 0.5}}),
            val(0.8),
            Some(val(1.0)),
            Fail,
            Some(0.9),
        ),
        (
            "missing baseline version",
            json!({"metric": "m", "op": "gte", "baseline": "production", "max_regression": {"relative": 0.02}}),
            val(1.0),
            None,
            Inconclusive,
            None,
        ),
        (
            "baseline lacks the metric",
            json!({"metric": "m", "op": "gte", "baseline": "p", "max_regression": {"relative": 0.02}}),
            val(1.0),
            Some(Input::Missing),
            Inconclusive,
            None,
        ),
        (
            "missing metric",
            json!({"metric": "m", "op": "gte", "threshold": 0.5}),
            Input::Missing,
            None,
            Inconclusive,
            None,
        ),
        (
            "pending metric",
            json!({"metric": "m", "op": "gte", "threshold": 0.5}),
            Input::Pending,
            None,
            Pending,
            None,
        ),
        (
            "interval straddles: inconclusive",
            json!({"metric": "m", "op": "gte", "threshold": 0.5}),
            ci(0.52, 0.45, 0.6),
            None,
            Inconclusive,
            Some(0.5),
        ),
        (
            "interval clear of the bound: pass",
            json!({"metric": "m", "op": "gte", "threshold": 0.5}),
            ci(0.6, 0.55, 0.65),
            None,
            Pass,
            Some(0.5),
        ),
        (
            "ci_low straddling: conservative fail",
            json!({"metric": "m", "op": "gte", "threshold": 0.5, "use": "ci_low"}),
            ci(0.52, 0.45, 0.6),
            None,
            Fail,
            Some(0.5),
        ),
        (
            "ci_high straddling: lenient pass",
            json!({"metric": "m", "op": "gte", "threshold": 0.5, "use": "ci_high"}),
            ci(0.48, 0.45, 0.6),
            None,
            Pass,
            Some(0.5),
        ),
        (
            "ci_low without interval: inconclusive",
            json!({"metric": "m", "op": "gte", "threshold": 0.5, "use": "ci_low"}),
            val(0.9),
            None,
            Inconclusive,
            Some(0.5),
        ),
        (
            "min_samples not reached",
            json!({"metric": "m", "op": "gte", "threshold": 0.5, "min_samples": 5000}),
            val(0.9),
            None,
            Inconclusive,
            None,
        ),
        (
            "warning rule failing warns",
            json!({"metric": "m", "op": "gte", "threshold": 0.5, "severity": "warning"}),
            val(0.1),
            None,
            Warn,
            Some(0.5),
        ),
        (
            "−∞ value fails a lower bound",
            json!({"metric": "m", "op": "gte", "threshold": 0.0}),
            val(f64::NEG_INFINITY),
            None,
            Fail,
            Some(0.0),
        ),
    ];
    for (what, r, cand, base, expected, bound) in cases {
        let r = rule(r);
        let o = evaluate(&r, &cand, base.as_ref().map(|b| ("v0", b)), None);
        assert_eq!(o.verdict, expected, "{what}: {}", o.message);
        match (o.threshold, bound) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-12, "{what}: bound {a} vs {b}"),
            (a, b) => assert_eq!(a, b, "{what}"),
        }
        assert!(!o.message.is_empty(), "{what}");
    }
}

#[test]
fn decision_combines_rules_by_severity() {
    use Verdict::*;
    let o = |v: Verdict, s: Severity| RuleOutcome {
        metric: "m".into(),
        verdict: v,
        severity: s,
        value: None,
        ci_low: None,
        ci_high: None,
        n: None,
        threshold: None,
        baseline_version: None,
        baseline_value: None,
        delta: None,
        message: String::new(),
        diagnostics: None,
    };
    use Severity::*;
    assert_eq!(decide(&[o(Pass, Critical), o(Pass, Warning)]), Pass);
    assert_eq!(decide(&[o(Pass, Critical), o(Warn, Warning)]), Warn);
    assert_eq!(decide(&[o(Pass, Critical), o(Inconclusive, Warning)]), Warn);
    assert_eq!(
        decide(&[o(Inconclusive, Critical), o(Warn, Warning)]),
        Inconclusive
    );
    assert_eq!(
        decide(&[o(Pending, Critical), o(Inconclusive, Critical)]),
        Pending
    );
    assert_eq!(decide(&[o(Fail, Critical), o(Pending, Critical)]), Fail);
    assert_eq!(decide(&[]), Pass);
}

#[test]
fn inconsistent_rules_are_refused() {
    use serde_json::json;
    for r in [
        json!({"metric": "m", "op": "gte"}),
        json!({"metric": "m", "op": "gte", "max_regression": {"relative": 0.1}}),
        json!({"metric": "m", "op": "gte", "baseline": "p"}),
        json!({"metric": "m", "op": "gte", "baseline": "p", "max_regression": {}}),
        json!({"metric": "m", "op": "gte", "baseline": "p", "max_regression": {"relative": -0.1}}),
        json!({"metric": "", "op": "gte", "threshold": 1}),
    ] {
        let r: Rule = serde_json::from_value(r.clone()).unwrap();
        assert!(r.validate().is_err(), "{r:?}");
    }
    assert!(
        serde_json::from_value::<Rule>(json!({"metric": "m", "op": "ge", "threshold": 1})).is_err()
    );
    assert!(serde_json::from_value::<Rule>(
        json!({"metric": "m", "op": "gte", "threshold": 1, "colour": 1})
    )
    .is_err());
}

/// min_samples: integral numbers within the stated range (0 to i64::MAX), written as integers
/// or as `300.0`; anything else is refused, so what is stored always fits the document.
#[test]
fn min_samples_is_an_integer_within_the_stated_range() {
    let rule = |v: serde_json::Value| {
        serde_json::from_value::<Rule>(
            json!({"metric": "shannon_mi", "op": "gte", "threshold": 0.1, "min_samples": v}),
        )
    };
    assert_eq!(rule(json!(300)).unwrap().min_samples, Some(300));
    assert_eq!(rule(json!(300.0)).unwrap().min_samples, Some(300));
    assert_eq!(rule(json!(null)).unwrap().min_samples, None);
    assert_eq!(
        rule(json!(i64::MAX)).unwrap().min_samples,
        Some(i64::MAX as u64)
    );
    for bad in [
        json!(i64::MAX as u64 + 1),
        json!(-1),
        json!(1.5),
        json!(1e19),
    ] {
        let e = rule(bad.clone()).unwrap_err().to_string();
        assert!(e.contains("min_samples"), "{bad}: {e}");
    }
    let absent = serde_json::from_value::<Rule>(
        json!({"metric": "shannon_mi", "op": "gte", "threshold": 0.1}),
    );
    assert_eq!(absent.unwrap().min_samples, None);
}
