//! `cargo bench --bench load -- URL PATH [--post JSON] [--clients 50] [--requests 2000]`:
//! a closed-loop load generator for a running server on loopback. Each of `clients` tasks sends
//! its share of `requests` back to back over keep-alive connections; the run reports throughput,
//! p50/p90/p99/max latency and the status codes seen. Bounded in count; sends only to the URL given
//! (use loopback).

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

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.len() < 2 {
        eprintln!("usage: load URL PATH [--post JSON] [--clients 50] [--requests 2000]");
        return;
    }
    let (base, path) = (args[0].clone(), args[1].clone());
    let body = arg(&args, "--post");
    let clients: usize = arg(&args, "--clients")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let requests: usize = arg(&args, "--requests")
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().expect("client");
        let url = format!("{base}{path}");
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (http, url, body) = (http.clone(), url.clone(), body.clone());
            let n = requests / clients + usize::from(c < requests % clients);
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(n);
                let mut codes = std::collections::BTreeMap::<u16, usize>::new();
                for _ in 0..n {
                    let t = Instant::now();
                    let req = match &body {
                        Some(b) => http.post(&url).header("content-type", "application/json").body(b.clone()),
                        None => http.get(&url),
                    };
                    let code = match req.send().await {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let _ = r.bytes().await;
                            s
                        }
                        Err(_) => 0,
                    };
                    lat.push(t.elapsed());
                    *codes.entry(code).or_default() += 1;
                }
                (lat, codes)
            }));
        }
        let mut all = Vec::new();
        let mut codes = std::collections::BTreeMap::<u16, usize>::new();
        for t in tasks {
            let (l, c) = t.await.expect("task");
            all.extend(l);
            for (k, v) in c {
                *codes.entry(k).or_default() += v;
            }
        }
        let wall = started.elapsed().as_secs_f64();
        all.sort();
        println!(
            "{path}: {} requests, {clients} clients, {:.0} req/s; latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}; status {codes:?}",
            all.len(),
            all.len() as f64 / wall,
            pct(&all, 0.5),
            pct(&all, 0.9),
            pct(&all, 0.99),
            pct(&all, 1.0)
        );
    });
}
