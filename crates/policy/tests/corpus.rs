//! The policy packs in `policies/` against two corpora:
//! - our own (`tests/corpus/*.toml`): every case's verdict and deciding rule must be exact;
//! - destructive_command_guard's (`tests/corpora/dcg/`, MIT), counted as its SOURCE.md says:
//!   a `deny` case is caught when we answer deny or ask; an `allow` case is a false positive
//!   when we answer deny (ask is reported apart).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use stakpak_policy::{
    Action, Decision, Policy, Settings,
    corpus::{self, Case},
    load::load_dirs,
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn policy() -> Policy {
    load_dirs(&[workspace().join("policies")], Settings::default())
        .unwrap_or_else(|e| panic!("the shipped policy does not load: {e}"))
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(toml_files(&p));
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn cases(dir: &Path) -> Vec<(PathBuf, Case)> {
    toml_files(dir)
        .into_iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            corpus::parse(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .into_iter()
                .filter(|c| c.command.is_some())
                .map(move |c| (p.clone(), c))
        })
        .collect()
}

#[test]
fn own_corpus_matches_exactly() {
    let policy = policy();
    let all = cases(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus"));
    assert!(
        all.len() >= 300,
        "the corpus has {} cases; it must have at least 300",
        all.len()
    );
    let mut failures = Vec::new();
    for (file, case) in &all {
        let expected: Decision = case.expected.parse().unwrap();
        let v = policy.check(&Action::Command(case.command.clone().unwrap_or_default()));
        let rule_ok = match &case.rule {
            Some(r) => v.rule.as_deref() == Some(r.as_str()),
            None => v.rule.is_none(),
        };
        if v.decision != expected || !rule_ok {
            failures.push(format!(
                "{}: {:?}: expected {} by {}, got {} by {} ({})",
                file.file_name().unwrap().to_string_lossy(),
                case.command.as_deref().unwrap_or_default(),
                expected,
                case.rule.as_deref().unwrap_or("no rule"),
                v.decision,
                v.rule.as_deref().unwrap_or("no rule"),
                v.action
            ));
        }
    }
    println!(
        "own corpus: {} cases, {} failures",
        all.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn destructive_command_guard_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpora/dcg");
    let all = cases(&dir);
    assert!(!all.is_empty(), "no cases found in {}", dir.display());
    let policy = policy();
    let (mut deny_total, mut deny_caught) = (0usize, 0usize);
    let (mut allow_total, mut allow_denied, mut allow_asked) = (0usize, 0usize, 0usize);
    let mut missed = Vec::new();
    let mut false_positives = Vec::new();
    for (file, case) in &all {
        let v = policy.check(&Action::Command(case.command.clone().unwrap_or_default()));
        let name = file
            .strip_prefix(&dir)
            .unwrap_or(file)
            .display()
            .to_string();
        match case.expected.as_str() {
            "deny" => {
                deny_total += 1;
                if v.decision != Decision::Allow {
                    deny_caught += 1;
                } else {
                    missed.push(format!(
                        "{name}: {:?} ({:?})",
                        case.command.as_deref().unwrap_or_default(),
                        case.rule_id
                    ));
                }
            }
            "allow" => {
                allow_total += 1;
                match v.decision {
                    Decision::Deny => {
                        allow_denied += 1;
                        false_positives.push(format!(
                            "{name}: {:?} denied by {:?}",
                            case.command.as_deref().unwrap_or_default(),
                            v.rule
                        ));
                    }
                    Decision::Ask => allow_asked += 1,
                    Decision::Allow => {}
                }
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
    let caught = deny_caught as f64 * 100.0 / deny_total as f64;
    let fp = allow_denied as f64 * 100.0 / allow_total as f64;
    println!(
        "destructive_command_guard corpus: deny cases caught {deny_caught}/{deny_total} ({caught:.1}%); \
         allow cases denied {allow_denied}/{allow_total} ({fp:.1}%), asked {allow_asked}/{allow_total}"
    );
    for m in &missed {
        println!("  missed: {m}");
    }
    for f in &false_positives {
        println!("  false positive: {f}");
    }
    assert!(caught >= 98.0, "only {caught:.1}% of deny cases caught");
    assert!(fp <= 2.0, "{fp:.1}% of allow cases denied");
}
