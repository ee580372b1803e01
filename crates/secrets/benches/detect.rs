//! Throughput of rule-based detection.
//!
//! `cargo bench -p stakpak-secrets --bench detect` times [`Detector::detect`] with criterion
//! on ~8 MiB of synthetic log-like text (journald, nginx, kubectl, JSON application logs,
//! with about one secret in 500 lines), on ~2 MiB of configuration-like text dense with
//! keywords (env files, YAML, JSON), and on the logs in privacy mode, then prints one
//! `throughput: … MiB/s` line per input from a plain timed loop. As a baseline it times
//! `grep -c -i -F -f <every rule keyword>` over the same log file: the pre-filter alone,
//! done by a mature tool.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    hint::black_box,
    io::Write as _,
    process::Command,
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stakpak_secrets::detect::{DetectOptions, Detector};

#[path = "../tests/support/rng.rs"]
mod rng;

// xorshift64*, so every run measures the same text.
use rng::XorShiftStar as Rng;

impl Rng {
    fn from(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[self.below(alphabet.len())] as char)
            .collect()
    }
    fn alnum(&mut self, n: usize) -> String {
        self.from(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            n,
        )
    }
    fn hex(&mut self, n: usize) -> String {
        self.from(b"0123456789abcdef", n)
    }
}

fn log_line(r: &mut Rng, out: &mut String) {
    let line = match r.below(10) {
        0..=2 => format!(
            "May {:02} 12:{:02}:{:02} node-{} kubelet[{}]: I0503 12:00:00.{:06} {} reconciler_common.go:{}] \"operationExecutor.MountVolume started for volume \\\"kube-api-access-{}\\\"\" pod=\"default/web-{}\"",
            r.below(28) + 1,
            r.below(60),
            r.below(60),
            r.below(9),
            r.below(90000) + 1000,
            r.below(1_000_000),
            r.below(9000) + 1000,
            r.below(900) + 100,
            r.hex(5),
            r.hex(6)
        ),
        3..=5 => format!(
            "10.0.{}.{} - - [03/May/2025:12:{:02}:{:02} +0000] \"{} /api/v1/items/{}?page={} HTTP/1.1\" {} {} \"https://shop.corp.local/cart\" \"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\"",
            r.below(255),
            r.below(255),
            r.below(60),
            r.below(60),
            ["GET", "POST", "PUT"][r.below(3)],
            r.below(100_000),
            r.below(20),
            [200, 201, 304, 404, 500][r.below(5)],
            r.below(50_000)
        ),
        6 => format!(
            "web-{}-{}   1/1     Running   {}          {}d{}h   10.244.{}.{}   node-{}   <none>           <none>",
            r.hex(10),
            r.hex(5),
            r.below(4),
            r.below(30),
            r.below(24),
            r.below(255),
            r.below(255),
            r.below(9)
        ),
        7 => format!(
            "{{\"level\":\"info\",\"ts\":\"2025-05-03T12:00:{:02}.{:03}Z\",\"caller\":\"server/handler.go:{}\",\"msg\":\"request finished\",\"method\":\"GET\",\"path\":\"/v1/orders/{}\",\"status\":200,\"duration_ms\":{},\"request_id\":\"{}\"}}",
            r.below(60),
            r.below(1000),
            r.below(900),
            r.below(1_000_000),
            r.below(300),
            r.hex(32)
        ),
        8 => format!(
            "May 03 12:00:{:02} host systemd[1]: Started session-{}.scope - Session {} of User ops.",
            r.below(60),
            r.below(9000),
            r.below(9000)
        ),
        _ => format!(
            "2025-05-03 12:00:{:02},{:03} INFO  [main] o.s.b.w.embedded.tomcat.TomcatWebServer : Tomcat started on port(s): 8080 (http) with context path '' after {} ms",
            r.below(60),
            r.below(1000),
            r.below(9000)
        ),
    };
    out.push_str(&line);
    out.push('\n');
}

fn secret_line(r: &mut Rng, out: &mut String) {
    let line = match r.below(6) {
        0 => format!("export GITHUB_TOKEN=ghp_{}", r.alnum(36)),
        1 => format!(
            "aws_access_key_id = AKIA{}",
            r.from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
        ),
        2 => format!(
            "DATABASE_URL=postgres://app:{}@db.internal:5432/app",
            r.alnum(18)
        ),
        3 => format!(
            "curl -H \"Authorization: Bearer {}\" https://api.internal/v1",
            r.alnum(40)
        ),
        4 => format!("  password: \"{}\"", r.alnum(20)),
        _ => format!("STRIPE_SECRET_KEY=sk_live_{}", r.alnum(32)),
    };
    out.push_str(&line);
    out.push('\n');
}

/// Log-like text of about `size` bytes, one secret in about 500 lines.
fn logs(size: usize) -> String {
    let mut r = Rng(0x0b5e_55ed_1065_0001);
    let mut out = String::with_capacity(size + 512);
    while out.len() < size {
        if r.below(500) == 0 {
            secret_line(&mut r, &mut out);
        } else {
            log_line(&mut r, &mut out);
        }
    }
    out
}

/// Configuration-like text: every line has a key, many of them keywords.
fn configs(size: usize) -> String {
    let mut r = Rng(0xc0_f1_65);
    let mut out = String::with_capacity(size + 512);
    while out.len() < size {
        let line = match r.below(8) {
            0 => format!("DB_PASSWORD={}", r.alnum(16)),
            1 => "api_key: ${API_KEY}".to_string(),
            2 => format!("  token_type: Bearer\n  expires_in: {}", r.below(9000)),
            3 => format!("  \"secret_name\": \"prod-{}\",", r.hex(6)),
            4 => format!("SERVICE_URL=https://svc-{}.corp.local:8443/v1", r.hex(4)),
            5 => format!("LOG_LEVEL=info\nREPLICAS={}", r.below(9)),
            6 => format!(
                "  image: registry.corp.local/app:{}.{}.{}",
                r.below(9),
                r.below(20),
                r.below(50)
            ),
            _ => format!(
                "auth_url = \"https://login.corp.local/realms/{}\"",
                r.hex(6)
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// MiB/s of `detector` over `text`, from a plain loop of at least two seconds.
fn measure(detector: &Detector, text: &str) -> (f64, usize) {
    let found = detector.detect(text).len();
    let start = Instant::now();
    let mut runs = 0u32;
    while start.elapsed() < Duration::from_secs(2) {
        black_box(detector.detect(black_box(text)));
        runs += 1;
    }
    let secs = start.elapsed().as_secs_f64() / f64::from(runs);
    (text.len() as f64 / (1 << 20) as f64 / secs, found)
}

/// MiB/s of `grep -c -i -F -f keywords` over `text`, if grep is there.
fn grep_baseline(detector: &Detector, text: &str) -> Option<f64> {
    let dir = std::env::temp_dir().join(format!("stakpak-detect-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let (data, keys) = (dir.join("logs.txt"), dir.join("keywords.txt"));
    std::fs::write(&data, text).ok()?;
    let mut f = std::fs::File::create(&keys).ok()?;
    for rule in detector.rules().iter().filter(|r| !r.privacy()) {
        for k in rule.keywords() {
            writeln!(f, "{k}").ok()?;
        }
    }
    drop(f);
    let run = || {
        Command::new("grep")
            .arg("-c")
            .arg("-i")
            .arg("-F")
            .arg("-f")
            .arg(&keys)
            .arg(&data)
            .output()
            .ok()
    };
    run()?;
    let start = Instant::now();
    let mut runs = 0u32;
    while start.elapsed() < Duration::from_secs(2) {
        run()?;
        runs += 1;
    }
    let secs = start.elapsed().as_secs_f64() / f64::from(runs);
    let _ = std::fs::remove_dir_all(&dir);
    Some(text.len() as f64 / (1 << 20) as f64 / secs)
}

fn bench(c: &mut Criterion) {
    let start = Instant::now();
    let detector = Detector::new(DetectOptions::default()).unwrap();
    println!(
        "rules: {} compiled, examples checked, in {:.0} ms (once per process)",
        detector.rules().len(),
        start.elapsed().as_secs_f64() * 1000.0
    );
    let private = Detector::new(DetectOptions { privacy: true }).unwrap();
    let log = logs(8 << 20);
    let config = configs(2 << 20);

    let mut group = c.benchmark_group("detect");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(log.len() as u64));
    group.bench_function("logs-8MiB", |b| b.iter(|| detector.detect(black_box(&log))));
    group.bench_function("logs-8MiB-privacy", |b| {
        b.iter(|| private.detect(black_box(&log)))
    });
    group.throughput(Throughput::Bytes(config.len() as u64));
    group.bench_function("configs-2MiB", |b| {
        b.iter(|| detector.detect(black_box(&config)))
    });
    group.finish();

    let mib = |t: &str| t.len() as f64 / (1 << 20) as f64;
    let (logs_rate, logs_found) = measure(&detector, &log);
    println!(
        "throughput: {logs_rate:.0} MiB/s rule-based detection on {:.1} MiB of log-like text ({logs_found} detections)",
        mib(&log)
    );
    let (config_rate, config_found) = measure(&detector, &config);
    println!(
        "throughput: {config_rate:.0} MiB/s on {:.1} MiB of keyword-dense configuration text ({config_found} detections)",
        mib(&config)
    );
    let (private_rate, private_found) = measure(&private, &log);
    println!(
        "throughput: {private_rate:.0} MiB/s in privacy mode on the log-like text ({private_found} detections)"
    );
    match grep_baseline(&detector, &log) {
        Some(grep) => println!(
            "baseline: grep -c -i -F -f <{} keywords> {grep:.0} MiB/s on the same log text; detection runs at {:.2}x of it",
            detector
                .rules()
                .iter()
                .map(|r| r.keywords().len())
                .sum::<usize>(),
            logs_rate / grep
        ),
        None => println!("baseline: grep not available"),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
