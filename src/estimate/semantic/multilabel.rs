//! Multi-label `semantic_mi` (spec §2.13 Mode C): per label, the label's scores as its truth
//! function, aggregated by label frequency.

use super::*;

/// Multi-label SeMI (spec §2.13 Mode C). Per label j, with P(x_k) = w_k/W,
/// n_j = Σ w_k Y[k,j], T̂(θ_j) = Σ_k P(x_k) S[k,j]:
/// I_j = Σ_k (w_k Y[k,j]/n_j) ln(S[k,j]/T̂(θ_j)), bound_j = KL(P̂(x|y_j) ‖ P̂(x)) (= ln(N/n_j) for
/// hard labels). `value` = Σ_j (n_j/Σn) I_j, the label-frequency-weighted aggregate of spec §2.13
/// (a design choice, not Lu's formula); `upper_bound` the same weighting of bound_j. Labels with
/// n_j = 0 are reported with null and carry no weight. Interval: basic bootstrap over samples
/// (random blocks when N > bootstrap_blocks), resampled jointly across labels.
pub fn semantic_mi_multilabel(
    input: &MultilabelInput<'_>,
    params: &Params,
    ctl: &Control<'_>,
) -> Result<Output, EstimateError> {
    params.validate().map_err(EstimateError::Invalid)?;
    let (n, l, w) = check_multilabel(input, false)?;
    ctl.tick(0.0)?;
    let mut rng = SplitMix64::new(params.seed);
    let (block, m) = if params.bootstrap > 0 {
        random_blocks(n, params.bootstrap_blocks, &mut rng)
    } else {
        (vec![0; n], 1)
    };
    // Block layout: [W | n_j (l) | A_j = Σ wY ln S (l) | Q_j = Σ w S (l) | C_j = Σ wY ln Y (l)].
    let width = 1 + 4 * l;
    let mut stats = vec![0.0; m * width];
    let mut tot = vec![0.0; width];
    let mut colmax = vec![0.0f64; l];
    let mut falsified = vec![0usize; l];
    let mut used: Vec<(usize, usize, f64)> = Vec::new(); // (sample, label, ln S) where Y > 0
    for s in 0..n {
        if s % 65_536 == 0 && s > 0 {
            ctl.tick(0.0)?;
        }
        let ws = w.as_ref().map_or(1.0, |w| w[s]);
        let b = block[s] as usize * width;
        let mut add = |idx: usize, v: f64| {
            stats[b + idx] += v;
            tot[idx] += v;
        };
        add(0, ws);
        for j in 0..l {
            let y = input.labels[[s, j]];
            let sc = input.scores[[s, j]];
            colmax[j] = colmax[j].max(sc);
            add(1 + 2 * l + j, ws * sc);
            if y > 0.0 && ws > 0.0 {
                add(1 + j, ws * y);
                add(1 + 3 * l + j, ws * y * y.ln());
                if sc > 0.0 {
                    add(1 + l + j, ws * y * sc.ln());
                } else {
                    falsified[j] += 1;
                }
                used.push((s, j, sc.ln()));
            }
        }
    }
    let agg = |acc: &[f64], fals: &[usize]| -> (f64, f64, Vec<Option<f64>>) {
        let wt = acc[0];
        let n_sum: f64 = acc[1..1 + l].iter().sum();
        let mut value = 0.0;
        let mut bound = 0.0;
        let mut per = vec![None; l];
        for j in 0..l {
            let nj = acc[1 + j];
            if nj <= 0.0 {
                continue;
            }
            let tj = acc[1 + 2 * l + j] / wt;
            let ij = if fals[j] > 0 {
                f64::NEG_INFINITY
            } else {
                acc[1 + l + j] / nj - tj.ln()
            };
            let bj = acc[1 + 3 * l + j] / nj + (wt / nj).ln();
            per[j] = Some(ij);
            value += nj / n_sum * ij;
            bound += nj / n_sum * bj;
        }
        (value, bound, per)
    };
    let n_sum: f64 = tot[1..1 + l].iter().sum();
    if n_sum <= 0.0 {
        return Err(EstimateError::invalid(
            "no sample carries any label, so the multi-label semantic information is undefined",
        ));
    }
    let (value, bound, per) = agg(&tot, &falsified);
    let wt = tot[0];
    let mut neg_w = 0.0;
    let mut items = Vec::with_capacity(used.len());
    for (idx, &(s, j, ls)) in used.iter().enumerate() {
        let v = ls - (tot[1 + 2 * l + j] / wt).ln();
        let ws = w.as_ref().map_or(1.0, |w| w[s]);
        if v < 0.0 {
            neg_w += ws * input.labels[[s, j]];
        }
        items.push((v, idx));
    }
    let worst_list: Vec<Value> = worst(items, params.worst_samples)
        .into_iter()
        .map(|(v, idx)| {
            let (s, j, _) = used[idx];
            json!({"index": s, "label": j, "value": num(v), "falsified": v == f64::NEG_INFINITY,
                   "score": input.scores[[s, j]]})
        })
        .collect();
    let mut sem_h_agg = 0.0;
    let mut fuzzy_agg = 0.0;
    let mut ent_ok = true;
    let per_label: Vec<Value> = (0..l)
        .map(|j| {
            let nj = tot[1 + j];
            let tj = tot[1 + 2 * l + j] / wt;
            let mut d = json!({
                "label": j,
                "n": num(nj),
                "p_label": num(nj / wt),
                "logical_prob": num(tj),
                "falsified_samples": falsified[j],
            });
            match per[j] {
                Some(ij) => {
                    let bj = tot[1 + 3 * l + j] / nj + (wt / nj).ln();
                    d["semantic_kl"] = num(ij);
                    d["upper_bound"] = num(bj);
                    d["efficiency"] = if bj > 0.0 && ij.is_finite() {
                        num(ij / bj)
                    } else {
                        Value::Null
                    };
                    if colmax[j] > 0.0 && ij.is_finite() {
                        let sh = -(tj / colmax[j]).ln();
                        let fz = -(tot[1 + l + j] / nj - colmax[j].ln());
                        d["semantic_entropy"] = num(sh);
                        d["fuzzy_entropy"] = num(fz);
                        sem_h_agg += nj / n_sum * sh;
                        fuzzy_agg += nj / n_sum * fz;
                    } else {
                        ent_ok = false;
                        d["semantic_entropy"] = Value::Null;
                        d["fuzzy_entropy"] = Value::Null;
                    }
                }
                None => {
                    d["semantic_kl"] = Value::Null;
                    d["semantic_kl_reason"] = json!("label never present in the batch");
                }
            }
            d
        })
        .collect();
    let total_fals: usize = falsified.iter().sum();
    let (eff, eff_reason) = ratio_or_null(
        value,
        bound,
        "the upper bound is 0 (every sample carries every present label)",
    );
    let mut details = json!({
        "mode": "multilabel",
        "aggregate": "label_frequency_weighted",
        "aggregate_note": "value = sum_j (n_j / sum n) I(X; theta_j), with scores as truth functions (spec 2.13)",
        "upper_bound": num(bound),
        "upper_bound_kind": "sum_j (n_j / sum n) KL(P(x|y_j) || P(x)), the LBI-matched value (ln(N/n_j) per hard label)",
        "efficiency": eff,
        "per_label": per_label,
        "sum_per_label": num(per.iter().flatten().sum::<f64>()),
        "semantic_entropy": if ent_ok { num(sem_h_agg) } else { Value::Null },
        "fuzzy_entropy": if ent_ok { num(fuzzy_agg) } else { Value::Null },
        "entropy_normalisation": "scores divided by their maximum over the batch (per label); aggregates weighted like value",
        "negative_fraction": num(neg_w / n_sum),
        "worst_samples": worst_list,
        "falsified_samples": total_fals,
        "lbi_truth_matrix": Value::Null,
        "lbi_truth_matrix_reason": "in multi-label mode each sample is its own instance",
        "bootstrap_blocks_used": m,
        "weighted": w.is_some(),
    });
    if let Some(r) = eff_reason {
        details["efficiency_reason"] = json!(r);
    }
    if total_fals > 0 {
        details["neg_inf_reason"] = json!(format!(
            "{total_fals} (sample, label) pair(s) carry the label but score 0, so their semantic information is -inf"
        ));
    }
    let interval = if params.bootstrap > 0 && value.is_finite() {
        let zero = vec![0usize; l];
        let reps = block_bootstrap(&stats, width, params.bootstrap, &mut rng, ctl, |acc| {
            agg(acc, &zero).0
        })?;
        basic_interval(value, &reps, params.confidence, METHOD_BLOCKS)
    } else {
        None
    };
    let sufficient = json!({
        "kind": "multilabel",
        "w_total": wt,
        "n": tot[1..1 + l].to_vec(),
        "logs_sum": tot[1 + l..1 + 2 * l].to_vec(),
        "score_sum": tot[1 + 2 * l..1 + 3 * l].to_vec(),
        "ylogy_sum": tot[1 + 3 * l..1 + 4 * l].to_vec(),
        "falsified": falsified,
    });
    let mut diagnostics = Diagnostics::default();
    bootstrap_checks(&mut diagnostics, value, interval.as_ref(), &tot[1..1 + l]);
    if total_fals > 0 {
        diagnostics.add(
            Reliability::Caution,
            "minus_infinity",
            format!(
            "{total_fals} (sample, label) pair(s) carry the label but score 0: the value is -inf"
        ),
        );
    }
    Ok(Output {
        value,
        interval,
        n,
        details,
        sufficient: Some(sufficient),
        diagnostics,
    })
}
