//! Downsampled history read from the rollup cells must equal the same buckets computed from the
//! raw result rows: for any bucket count, range cut and version filter, and after a delete.

use axum::http::StatusCode;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};

use crate::support::{app, classifier_batch, TestApp};

struct Point {
    t: DateTime<Utc>,
    version: &'static str,
    value: f64,
}

async fn batch(app: &TestApp, version: &str) -> String {
    let mut b = classifier_batch(50, 3, 0.8, 1);
    b["estimators"] = json!(["shannon_mi"]);
    let (s, v) = app.upload("r", version, &b).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    v["batch"]["id"].as_str().unwrap().to_string()
}

async fn insert(app: &TestApp, batch: &str, points: &[&Point]) {
    let times: Vec<DateTime<Utc>> = points.iter().map(|p| p.t).collect();
    let values: Vec<f64> = points.iter().map(|p| p.value).collect();
    let n = points.len() as i32;
    sqlx::query(
        "WITH p AS (SELECT * FROM unnest($2::timestamptz[], $3::float8[]) WITH ORDINALITY AS p(t, v, i)),
              j AS (INSERT INTO jobs (id, batch_id, estimator, estimator_version, params, params_hash, state)
                    SELECT gen_random_uuid(), $1::uuid, 'shannon_mi', 'r', '{}', $5 || i, 'succeeded' FROM p
                    RETURNING id, params_hash)
         INSERT INTO results (id, job_id, batch_id, model_id, version_id, estimator, estimator_version, params, value, n, details, computed_at)
         SELECT gen_random_uuid(), j.id, b.id, b.model_id, b.version_id, 'shannon_mi', 'r', '{}', p.v, 50, '{}', p.t
         FROM p JOIN j ON j.params_hash = $5 || p.i, batches b WHERE b.id = $1::uuid AND $4 > 0",
    )
    .bind(batch)
    .bind(&times)
    .bind(&values)
    .bind(n)
    .bind(format!("p{}-", uuid::Uuid::new_v4().simple()))
    .execute(&app.pool)
    .await
    .unwrap();
}

fn ts(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// Query and compare every bucket with the raw points inside it.
async fn check(app: &TestApp, points: &[Point], query: &str, version: Option<&str>, buckets: u32) {
    let (s, h) = app
        .get(&format!(
            "/v1/models/r/history?metric=shannon_mi&unit=nats&buckets={buckets}{query}"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{h}");
    let got = h["buckets"].as_array().unwrap();
    assert!(
        got.len() <= buckets as usize,
        "{query}: {} buckets",
        got.len()
    );
    let mut covered = 0;
    for b in got {
        let (start, end) = (ts(&b["t_start"]), ts(&b["t_end"]));
        let inside: Vec<&Point> = points
            .iter()
            .filter(|p| version.is_none_or(|v| p.version == v) && p.t >= start && p.t < end)
            .collect();
        let finite: Vec<f64> = inside
            .iter()
            .map(|p| p.value)
            .filter(|v| v.is_finite())
            .collect();
        assert_eq!(b["count"], inside.len(), "{query} {b}");
        covered += inside.len();
        if finite.is_empty() {
            assert!(b["mean"].is_null(), "{b}");
            continue;
        }
        let min = finite.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = finite.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mean = finite.iter().sum::<f64>() / finite.len() as f64;
        assert_eq!(b["min"].as_f64().unwrap(), min, "{query} {b}");
        assert_eq!(b["max"].as_f64().unwrap(), max, "{query} {b}");
        approx::assert_abs_diff_eq!(b["mean"].as_f64().unwrap(), mean, epsilon = 1e-12);
    }
    // Every point in the range is in exactly one bucket.
    let parse = |key: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .map(|v| DateTime::parse_from_rfc3339(v).unwrap().with_timezone(&Utc))
    };
    let (from, to) = (parse("from"), parse("to"));
    let expected = points
        .iter()
        .filter(|p| version.is_none_or(|v| p.version == v))
        .filter(|p| from.is_none_or(|f| p.t >= f) && to.is_none_or(|t| p.t < t))
        .count();
    assert_eq!(covered, expected, "{query}");
}

#[tokio::test]
async fn rollup_buckets_equal_the_raw_rows() {
    let app = app().await;
    let b1 = batch(&app, "v1").await;
    let b2 = batch(&app, "v2").await;
    // 600 points over about three days at irregular times (to the microsecond), two versions,
    // some -Infinity values.
    let base = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let mut g = infoaudit::estimate::rng::SplitMix64::new(11);
    let mut t = base;
    let points: Vec<Point> = (0..600)
        .map(|i| {
            t += Duration::microseconds((g.uniform() * 860e6) as i64 + 1);
            Point {
                t,
                version: if g.uniform() < 0.6 { "v1" } else { "v2" },
                value: if i % 97 == 5 {
                    f64::NEG_INFINITY
                } else {
                    g.uniform()
                },
            }
        })
        .collect();
    let of = |v: &str| points.iter().filter(|p| p.version == v).collect::<Vec<_>>();
    insert(&app, &b1, &of("v1")).await;
    insert(&app, &b2, &of("v2")).await;

    let cut_from = "2026-03-01T05:17:23.5Z";
    let cut_to = "2026-03-03T19:02:11Z";
    for buckets in [1, 3, 10, 48, 100, 500, 2000, 10_000] {
        check(&app, &points, "", None, buckets).await;
        check(&app, &points, "&version=v2", Some("v2"), buckets).await;
        check(
            &app,
            &points,
            &format!("&from={cut_from}&to={cut_to}"),
            None,
            buckets,
        )
        .await;
        check(
            &app,
            &points,
            &format!("&version=v1&from={cut_from}"),
            Some("v1"),
            buckets,
        )
        .await;
    }
    // A new result changes the answer of a query asked before (no stale cached answer).
    let late = Point {
        t: points.last().unwrap().t - Duration::hours(20),
        version: "v1",
        value: 7.5,
    };
    insert(&app, &b1, &[&late]).await;
    let mut points = points;
    points.push(late);
    for buckets in [1, 10, 500] {
        check(&app, &points, "", None, buckets).await;
    }
    points.pop();
    sqlx::query("DELETE FROM results WHERE value = 7.5")
        .execute(&app.pool)
        .await
        .unwrap();

    // The cells hold every result once per cell size.
    for unit in [60, 3600, 86400] {
        let cells: i64 =
            sqlx::query_scalar("SELECT sum(n)::int8 FROM result_rollups WHERE unit_s = $1")
                .bind(unit)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        assert_eq!(cells, 600, "unit {unit}");
    }
    // And the answer is read from them: with every cell's maximum set to 1000 (and the cached
    // answers invalidated), a whole-range bucket reports 1000, which no raw row holds.
    for sql in [
        "CREATE TABLE rollups_saved AS SELECT * FROM result_rollups",
        "UPDATE result_rollups SET max = 1000 WHERE max IS NOT NULL",
        "UPDATE models SET results_generation = results_generation + 1",
    ] {
        sqlx::query(sql).execute(&app.pool).await.unwrap();
    }
    let (_, h) = app
        .get("/v1/models/r/history?metric=shannon_mi&unit=nats&buckets=1")
        .await;
    assert_eq!(h["buckets"][0]["max"].as_f64(), Some(1000.0), "{h}");
    for sql in [
        "DELETE FROM result_rollups",
        "INSERT INTO result_rollups SELECT * FROM rollups_saved",
        "DROP TABLE rollups_saved",
        "UPDATE models SET results_generation = results_generation + 1",
    ] {
        sqlx::query(sql).execute(&app.pool).await.unwrap();
    }
    check(&app, &points, "", None, 1).await;

    // Deleting a batch takes its results out of the cells.
    let (s, _) = app
        .send("DELETE", &format!("/v1/batches/{b2}"), None, None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let left: Vec<Point> = points.into_iter().filter(|p| p.version == "v1").collect();
    for buckets in [1, 10, 500] {
        check(&app, &left, "", None, buckets).await;
        check(
            &app,
            &left,
            &format!("&from={cut_from}&to={cut_to}"),
            None,
            buckets,
        )
        .await;
    }
    let cells: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(n), 0)::int8 FROM result_rollups WHERE unit_s = 86400",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(cells, left.len() as i64);
}

/// One chart point computed from the points themselves.
#[derive(Debug, Default)]
struct Expected {
    t: Vec<f64>,
    finite: Vec<f64>,
    lo: Vec<f64>,
    hi: Vec<f64>,
    stat: Vec<f64>,
    neg_inf: i64,
}

#[tokio::test]
async fn chart_points_from_cells_equal_the_raw_rows() {
    use infoaudit::domain::metric::MetricRef;
    use infoaudit::web::data::{cell_plan, history_with};
    use std::collections::BTreeMap;

    let app = app().await;
    let batches = [batch(&app, "v1").await, batch(&app, "v2").await];
    // 3000 results over about 25 days at irregular times (to the microsecond), two versions,
    // some -Infinity values and some infinite or missing interval ends.
    let base = Utc.with_ymd_and_hms(2026, 5, 1, 3, 0, 0).unwrap();
    let mut g = infoaudit::estimate::rng::SplitMix64::new(29);
    let mut t = base;
    struct Row {
        t: DateTime<Utc>,
        version: usize,
        value: f64,
        lo: Option<f64>,
        hi: f64,
    }
    let mut rows: Vec<Row> = (0..3000)
        .map(|i| {
            t += Duration::microseconds((g.uniform() * 1.4e9) as i64 + 1);
            let value = if i % 97 == 5 {
                f64::NEG_INFINITY
            } else {
                g.uniform()
            };
            Row {
                t,
                version: usize::from(g.uniform() < 0.4),
                value,
                lo: match i % 13 {
                    0 => None,
                    1 => Some(f64::NEG_INFINITY),
                    _ => Some(value - 0.1),
                },
                hi: if i % 17 == 0 {
                    f64::INFINITY
                } else {
                    value + 0.1
                },
            }
        })
        .collect();
    async fn store(app: &TestApp, batch: &str, rows: &[&Row]) {
        let t: Vec<DateTime<Utc>> = rows.iter().map(|r| r.t).collect();
        let v: Vec<f64> = rows.iter().map(|r| r.value).collect();
        let lo: Vec<Option<f64>> = rows.iter().map(|r| r.lo).collect();
        let hi: Vec<f64> = rows.iter().map(|r| r.hi).collect();
        sqlx::query(
            "WITH p AS (SELECT * FROM unnest($2::timestamptz[], $3::float8[], $4::float8[], $5::float8[])
                        WITH ORDINALITY AS p(t, v, lo, hi, i)),
                  j AS (INSERT INTO jobs (id, batch_id, estimator, estimator_version, params, params_hash, state)
                        SELECT gen_random_uuid(), $1::uuid, 'shannon_mi', 'c', '{}', $6 || i, 'succeeded' FROM p
                        RETURNING id, params_hash)
             INSERT INTO results (id, job_id, batch_id, model_id, version_id, estimator, estimator_version,
                                  params, value, ci_low, ci_high, n, details, computed_at)
             SELECT gen_random_uuid(), j.id, b.id, b.model_id, b.version_id, 'shannon_mi', 'c', '{}',
                    p.v, p.lo, p.hi, 50,
                    CASE WHEN p.v > '-Infinity' THEN jsonb_build_object('nmi', p.v / 2) ELSE '{}' END, p.t
             FROM p JOIN j ON j.params_hash = $6 || p.i, batches b WHERE b.id = $1::uuid",
        )
        .bind(batch)
        .bind(&t)
        .bind(&v)
        .bind(&lo)
        .bind(&hi)
        .bind(format!("c{}-", uuid::Uuid::new_v4().simple()))
        .execute(&app.pool)
        .await
        .unwrap();
    }
    // The batches' own results (from the upload) are replaced by these rows.
    sqlx::query("DELETE FROM results")
        .execute(&app.pool)
        .await
        .unwrap();
    for (v, b) in batches.iter().enumerate() {
        // Two statements per version: the second adds to cells the first created.
        let mine: Vec<&Row> = rows.iter().filter(|r| r.version == v).collect();
        let (a, z) = mine.split_at(mine.len() / 2);
        let odd: Vec<&Row> = a.iter().chain(z).copied().step_by(2).collect();
        let even: Vec<&Row> = a.iter().chain(z).copied().skip(1).step_by(2).collect();
        store(&app, b, &odd).await;
        store(&app, b, &even).await;
    }
    let model_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM models WHERE name = 'r'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let version_ids: Vec<uuid::Uuid> = {
        let mut out = vec![];
        for name in ["v1", "v2"] {
            out.push(
                sqlx::query_scalar("SELECT id FROM model_versions WHERE name = $1")
                    .bind(name)
                    .fetch_one(&app.pool)
                    .await
                    .unwrap(),
            );
        }
        out
    };

    async fn compare(app: &TestApp, model_id: uuid::Uuid, versions: &[uuid::Uuid], rows: &[Row]) {
        let secs = |t: &DateTime<Utc>| t.timestamp_micros() as f64 / 1e6;
        let lo = rows
            .iter()
            .map(|r| secs(&r.t))
            .fold(f64::INFINITY, f64::min);
        let hi = rows
            .iter()
            .map(|r| secs(&r.t))
            .fold(f64::NEG_INFINITY, f64::max);
        let mut c = app.pool.acquire().await.unwrap();
        for buckets in [240, 50, 7, 1] {
            let plan = cell_plan(lo, hi, buckets);
            let mut want: BTreeMap<(i64, usize), Expected> = BTreeMap::new();
            for r in rows {
                let k = ((secs(&r.t) - plan.start) / plan.width).floor() as i64;
                let e = want.entry((k, r.version)).or_default();
                e.t.push(secs(&r.t));
                if r.value.is_finite() {
                    e.finite.push(r.value);
                    e.stat.push(r.value / 2.0);
                } else {
                    e.neg_inf += 1;
                }
                e.lo.extend(r.lo.filter(|x| x.is_finite()));
                e.hi.extend(Some(r.hi).filter(|x| x.is_finite()));
            }
            let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
            let min = |v: &[f64]| v.iter().cloned().reduce(f64::min);
            let max = |v: &[f64]| v.iter().cloned().reduce(f64::max);
            let close = |a: Option<f64>, b: Option<f64>, tol: f64| match (a, b) {
                (Some(a), Some(b)) => (a - b).abs() <= tol * b.abs().max(1.0),
                (a, b) => a == b,
            };
            // The value: every group exact against the rows.
            let value = MetricRef::parse("shannon_mi").unwrap();
            let got = history_with(&mut c, model_id, &value, buckets, 0)
                .await
                .unwrap();
            assert_eq!(got.len(), want.len(), "buckets {buckets}");
            for gp in &got {
                let v = versions.iter().position(|x| *x == gp.version_id).unwrap();
                let k = ((gp.t_first - plan.start) / plan.width).floor() as i64;
                let e = &want[&(k, v)];
                let ctx = format!("buckets {buckets}, group ({k}, v{}): {gp:?}", v + 1);
                assert_eq!(gp.count, e.t.len() as i64, "{ctx}");
                assert_eq!(gp.neg_inf, e.neg_inf, "{ctx}");
                assert!(close(Some(gp.t_first), min(&e.t), 1e-15), "{ctx}");
                assert!(close(Some(gp.t_last), max(&e.t), 1e-15), "{ctx}");
                assert!((gp.t_mean - mean(&e.t).unwrap()).abs() < 1e-5, "{ctx}");
                assert_eq!(gp.min, min(&e.finite), "{ctx}");
                assert_eq!(gp.max, max(&e.finite), "{ctx}");
                assert!(close(gp.mean, mean(&e.finite), 1e-12), "{ctx}");
                assert!(close(gp.ci_low, mean(&e.lo), 1e-12), "{ctx}");
                assert!(close(gp.ci_high, mean(&e.hi), 1e-12), "{ctx}");
            }
            // A statistic: the same groups, and values read from results inside each group.
            let nmi = MetricRef::parse("shannon_mi.nmi").unwrap();
            let got = history_with(&mut c, model_id, &nmi, buckets, 0)
                .await
                .unwrap();
            assert_eq!(got.len(), want.len(), "nmi, buckets {buckets}");
            for gp in &got {
                let v = versions.iter().position(|x| *x == gp.version_id).unwrap();
                let k = ((gp.t_first - plan.start) / plan.width).floor() as i64;
                let e = &want[&(k, v)];
                assert_eq!(gp.count, e.t.len() as i64);
                match (gp.min, gp.max, gp.mean) {
                    (Some(lo), Some(hi), Some(m)) => {
                        assert!(e.stat.contains(&lo) && e.stat.contains(&hi), "{gp:?}");
                        assert!(lo <= m && m <= hi, "{gp:?}");
                    }
                    _ => assert!(gp.min.is_none() && gp.max.is_none(), "{gp:?}"),
                }
            }
        }
    }
    compare(&app, model_id, &version_ids, &rows).await;

    // Deleting results recomputes the cells they were in.
    sqlx::query("DELETE FROM results WHERE version_id = $1 AND value < 0.3")
        .bind(version_ids[0])
        .execute(&app.pool)
        .await
        .unwrap();
    rows.retain(|r| !(r.version == 0 && r.value < 0.3));
    compare(&app, model_id, &version_ids, &rows).await;
}
