//! Exact-value redaction throughput: 1,000 random secrets (16–64 bytes) with all their
//! encoded forms, over log-like text pushed in 64 KiB chunks, against `grep -F -f` over the
//! same file and the same patterns as a baseline.
//!
//! `cargo bench -p stakpak-secrets --bench redact` prints
//! `throughput: redactor X GiB/s, grep -F Y GiB/s, ratio Z` before criterion's own numbers.

use std::{hint::black_box, path::Path, process::Command, time::Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stakpak_secrets::redact::{Redactor, RedactorBuilder, encoded_forms};

const SECRETS: usize = 1000;
const DATA_LEN: usize = 64 << 20;
const CHUNK: usize = 64 << 10;
/// Passes over the data for the printed figure (after one warm-up): 8 × 64 MiB = 512 MiB.
const PASSES: usize = 8;

#[path = "../tests/support/rng.rs"]
mod rng;

use rng::XorShift as Rng;

/// Tokens look like real credentials: letters, digits and the few symbols tokens use.
fn secrets(rng: &mut Rng) -> Vec<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/=.";
    (0..SECRETS)
        .map(|_| {
            let len = 16 + rng.below(49);
            (0..len)
                .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                .collect()
        })
        .collect()
}

/// Service-log lines: timestamps, levels, paths, ids, hex digests, durations; a secret in
/// some encoding about every 4,000 lines.
fn log_text(rng: &mut Rng, secrets: &[Vec<u8>]) -> Vec<u8> {
    const LEVELS: [&str; 4] = ["INFO", "DEBUG", "WARN", "ERROR"];
    const MESSAGES: [&str; 8] = [
        "request completed",
        "connection established to upstream",
        "cache miss for key",
        "retrying after timeout",
        "user authenticated via oidc",
        "scheduled job finished",
        "failed to parse header, ignoring",
        "pool size adjusted",
    ];
    const PATHS: [&str; 5] = [
        "/api/v1/users",
        "/healthz",
        "/api/v2/orders/search",
        "/static/app.js",
        "/metrics",
    ];
    let mut out = Vec::with_capacity(DATA_LEN + 4096);
    let mut line = 0u64;
    while out.len() < DATA_LEN {
        line += 1;
        let level = LEVELS[rng.below(LEVELS.len())];
        let message = MESSAGES[rng.below(MESSAGES.len())];
        let path = PATHS[rng.below(PATHS.len())];
        let text = format!(
            "2025-03-{:02}T{:02}:{:02}:{:02}.{:03}Z {level:5} svc=api-{} req={:016x} method=GET path={path} status={} dur_ms={} trace={:032x} msg=\"{message}\"",
            1 + line % 28,
            line / 3600 % 24,
            line / 60 % 60,
            line % 60,
            rng.below(1000),
            rng.below(8),
            rng.next(),
            [200, 200, 200, 204, 301, 404, 500][rng.below(7)],
            rng.below(5000),
            (u128::from(rng.next()) << 64) | u128::from(rng.next()),
        );
        out.extend_from_slice(text.as_bytes());
        if rng.below(4000) == 0 {
            let forms = encoded_forms(&secrets[rng.below(secrets.len())]);
            out.extend_from_slice(b" token=");
            out.extend_from_slice(&forms[rng.below(forms.len())].bytes);
        }
        out.push(b'\n');
    }
    out
}

fn redact_all(redactor: &Redactor, data: &[u8], out: &mut Vec<u8>) -> usize {
    let mut stream = redactor.stream();
    let mut total = 0;
    for chunk in data.chunks(CHUNK) {
        out.clear();
        stream.push_into(chunk, out);
        total += out.len();
    }
    out.clear();
    stream.finish_into(out);
    total + out.len()
}

fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

fn gib_per_s(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / seconds / f64::from(1u32 << 30)
}

fn grep_baseline(dir: &Path, patterns: &[Vec<u8>], data: &[u8]) -> Option<f64> {
    let values = dir.join("values.txt");
    let file = dir.join("data.txt");
    let mut list = Vec::new();
    for pattern in patterns {
        list.extend_from_slice(pattern);
        list.push(b'\n');
    }
    std::fs::write(&values, list).ok()?;
    std::fs::write(&file, data).ok()?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let status = Command::new("/usr/bin/grep")
            .arg("-F")
            .arg("-c")
            .arg("-f")
            .arg(&values)
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .status()
            .ok()?;
        // 0: some line matched, 1: none did; both are a finished search.
        if status.code()? > 1 {
            return None;
        }
        times.push(start.elapsed().as_secs_f64());
    }
    Some(median(times))
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(0x00c0_ffee_1234_5678);
    let secrets = secrets(&mut rng);
    let mut builder = RedactorBuilder::new();
    for (i, secret) in secrets.iter().enumerate() {
        if builder
            .add(secret, &format!("[REDACTED_SECRET:vault:{i:06}]"))
            .is_err()
        {
            return;
        }
    }
    let build_start = Instant::now();
    let Ok(redactor) = builder.build() else {
        return;
    };
    let build_time = build_start.elapsed();
    let data = log_text(&mut rng, &secrets);
    let mut out = Vec::with_capacity(CHUNK * 2);

    // Only under `cargo bench` (which passes `--bench`): `cargo test --benches` runs each
    // benchmark once as a smoke test and should not spend a minute here.
    if std::env::args().any(|a| a == "--bench") {
        black_box(redact_all(&redactor, &data, &mut out));
        let mut times = Vec::new();
        for _ in 0..PASSES {
            let start = Instant::now();
            black_box(redact_all(&redactor, &data, &mut out));
            times.push(start.elapsed().as_secs_f64());
        }
        let ours = gib_per_s(data.len(), median(times));
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for secret in &secrets {
            patterns.extend(encoded_forms(secret).into_iter().map(|e| e.bytes.to_vec()));
        }
        let grep = tempfile::tempdir()
            .ok()
            .and_then(|dir| grep_baseline(dir.path(), &patterns, &data))
            .map(|seconds| gib_per_s(data.len(), seconds));
        println!(
            "redactor: {} secrets, {} patterns, longest {} bytes, built in {:.0?}",
            secrets.len(),
            redactor.pattern_count(),
            redactor.max_pattern_len(),
            build_time
        );
        match grep {
            Some(grep) => println!(
                "throughput: redactor {ours:.2} GiB/s, grep -F {grep:.2} GiB/s, ratio {:.2}",
                ours / grep
            ),
            None => println!("throughput: redactor {ours:.2} GiB/s, grep -F unavailable"),
        }
    }

    let mut group = c.benchmark_group("redact");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    group.bench_function("1000 secrets, all forms, 64 KiB chunks", |b| {
        b.iter(|| black_box(redact_all(&redactor, &data, &mut out)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
