//! `cargo bench --bench load -- URL PATH [options]`: a closed-loop load generator for a running
//! server on loopback. Each of `--clients` tasks sends its share of `--requests` back to back over
//! keep-alive connections; the run reports throughput, p50/p90/p99/max latency and the status
//! codes seen. Bounded in count; sends only to the URL given (use loopback).
//!
//! Options:
//! - `--post JSON` or `--post-file FILE` (with `--content-type`, default `application/json`):
//!   POST that body instead of GET.
//! - `--read PATH --read-clients R`: meanwhile, R more tasks GET `PATH` back to back until the
//!   main requests are done; their latencies are reported on a second line.
//! - `--rate R`: an offered load of R requests/s in all instead of back to back: each client sends
//!   on a fixed schedule and latency is counted from the scheduled time (a client that falls
//!   behind is charged for the wait, so queueing is not hidden).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[derive(Clone)]
struct Target {
    url: String,
    body: Option<bytes::Bytes>,
    content_type: String,
}

type Tally = (Vec<Duration>, BTreeMap<u16, usize>);

/// Send requests back to back: `count` of them, or until `stop` is set when `count` is None.
async fn client(
    http: reqwest::Client,
    t: Target,
    count: Option<usize>,
    stop: Arc<AtomicBool>,
    interval: Option<Duration>,
    offset: Duration,
) -> Tally {
    let mut lat = Vec::new();
    let mut codes = BTreeMap::<u16, usize>::new();
    let mut sent = 0;
    // Clients are staggered over one interval, so the offered load is spread evenly, not sent in
    // bursts of `clients` requests at once.
    let first = Instant::now() + offset;
    while count.map_or(!stop.load(Ordering::Relaxed), |n| sent < n) {
        let started = match interval {
            Some(every) => {
                let due = first + every * sent as u32;
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        let req = match &t.body {
            Some(b) => http
                .post(&t.url)
                .header("content-type", &t.content_type)
                .body(b.clone()),
            None => http.get(&t.url),
        };
        let code = match req.send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                let _ = r.bytes().await;
                s
            }
            Err(_) => 0,
        };
        lat.push(started.elapsed());
        *codes.entry(code).or_default() += 1;
        sent += 1;
    }
    (lat, codes)
}

fn report(label: &str, clients: usize, wall: f64, tallies: Vec<Tally>) {
    let mut all = Vec::new();
    let mut codes = BTreeMap::<u16, usize>::new();
    for (l, c) in tallies {
        all.extend(l);
        for (k, v) in c {
            *codes.entry(k).or_default() += v;
        }
    }
    all.sort();
    println!(
        "{label}: {} requests, {clients} clients, {:.0} req/s; latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}; status {codes:?}",
        all.len(),
        all.len() as f64 / wall,
        pct(&all, 0.5),
        pct(&all, 0.9),
        pct(&all, 0.99),
        pct(&all, 1.0)
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.len() < 2 {
        eprintln!("usage: load URL PATH [--post JSON | --post-file FILE] [--content-type T] [--clients 50] [--requests 2000] [--rate R] [--read PATH --read-clients 4]");
        return;
    }
    let (base, path) = (args[0].clone(), args[1].clone());
    let body = match (arg(&args, "--post"), arg(&args, "--post-file")) {
        (Some(b), _) => Some(bytes::Bytes::from(b)),
        (None, Some(f)) => Some(bytes::Bytes::from(
            std::fs::read(&f).unwrap_or_else(|e| panic!("read {f}: {e}")),
        )),
        (None, None) => None,
    };
    let content_type = arg(&args, "--content-type").unwrap_or_else(|| "application/json".into());
    let clients: usize = arg(&args, "--clients")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let requests: usize = arg(&args, "--requests")
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let read = arg(&args, "--read");
    // Each client's share of the offered rate.
    let interval = arg(&args, "--rate")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(clients as f64 / r));
    let read_clients: usize = arg(&args, "--read-clients")
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(clients + read_clients)
            .build()
            .expect("client");
        let main = Target {
            url: format!("{base}{path}"),
            body,
            content_type,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = read
            .iter()
            .flat_map(|p| {
                let t = Target {
                    url: format!("{base}{p}"),
                    body: None,
                    content_type: String::new(),
                };
                let (http, stop) = (http.clone(), stop.clone());
                (0..read_clients).map(move |_| {
                    tokio::spawn(client(
                        http.clone(),
                        t.clone(),
                        None,
                        stop.clone(),
                        None,
                        Duration::ZERO,
                    ))
                })
            })
            .collect();
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let n = requests / clients + usize::from(c < requests % clients);
                tokio::spawn(client(
                    http.clone(),
                    main.clone(),
                    Some(n),
                    stop.clone(),
                    interval,
                    interval.map_or(Duration::ZERO, |i| i * c as u32 / clients as u32),
                ))
            })
            .collect();
        let mut tallies = Vec::new();
        for t in tasks {
            tallies.push(t.await.expect("task"));
        }
        let wall = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let label = match interval {
            Some(i) => format!(
                "{path} (offered {:.0} req/s)",
                clients as f64 / i.as_secs_f64()
            ),
            None => path.clone(),
        };
        report(&label, clients, wall, tallies);
        if let Some(p) = &read {
            let mut tallies = Vec::new();
            for t in readers {
                tallies.push(t.await.expect("reader"));
            }
            report(
                &format!("{p} (during the run)"),
                read_clients,
                wall,
                tallies,
            );
        }
    });
}
