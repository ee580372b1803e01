//! How long one verdict takes with the shipped packs, over the command corpora.
//!
//! `cargo bench -p stakpak-policy --bench verdicts` prints criterion's timings for a few
//! typical commands and for the whole corpus, and a throughput line: verdicts per second on
//! one core over every corpus command.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    hint::black_box,
    path::{Path, PathBuf},
    time::Instant,
};

use criterion::{Criterion, criterion_group, criterion_main};
use stakpak_policy::{Action, Policy, Settings, load};

fn policy() -> Policy {
    load::load(true, &[], Settings::default()).unwrap()
}

/// Every `command = "…"` of the corpora, read with a plain TOML parse.
fn corpus_commands() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = vec![root.join("tests/corpus"), root.join("tests/corpora/dcg")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") {
                files.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        for case in table
            .get("case")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(cmd) = case.get("command").and_then(|c| c.as_str()) {
                out.push(cmd.to_string());
            }
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let policy = policy();
    let typical = [
        ("ls", "ls -la /var/log"),
        ("git-status", "git status --short"),
        ("kubectl-get", "kubectl get pods -A -o wide"),
        ("rm-rf-root", "rm -rf /"),
        (
            "pipeline",
            "cat /var/log/syslog | grep -i error | tail -n 50",
        ),
        (
            "sudo-sh-c",
            "sudo sh -c 'systemctl restart nginx && journalctl -u nginx -n 20'",
        ),
        (
            "curl-pipe-sh",
            "curl -fsSL https://get.example.com | sudo bash",
        ),
        (
            "kubectl-delete-ns",
            "kubectl --context prod -n default delete namespace payments",
        ),
    ];
    for (name, cmd) in typical {
        let action = Action::Command(cmd.to_string());
        c.bench_function(&format!("verdict/{name}"), |b| {
            b.iter(|| policy.check(black_box(&action)))
        });
    }
    let commands: Vec<Action> = corpus_commands().into_iter().map(Action::Command).collect();
    assert!(!commands.is_empty());
    c.bench_function("verdict/corpus-average", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % commands.len();
            policy.check(black_box(&commands[i]))
        })
    });

    // Throughput on one core: every corpus command, many times over.
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        for a in &commands {
            black_box(policy.check(black_box(a)));
        }
    }
    let n = rounds * commands.len();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "throughput: {n} verdicts over {} corpus commands in {secs:.3} s = {:.0} verdicts/s on one core (target: 50000)",
        commands.len(),
        n as f64 / secs
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
