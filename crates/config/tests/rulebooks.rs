//! Rulebooks: the shipped ones are complete and well-formed; loading folders overrides by
//! uri, sorts, and refuses duplicates within one folder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use stakpak_config::{ConfigError, load_rulebooks};

/// The sections every shipped rulebook has, in this order (rulebooks/README.md).
const SECTIONS: &[&str] = &[
    "## When to use",
    "## Diagnose",
    "## Decide",
    "## Remediate",
    "## Verify",
    "## Report",
];

fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rulebooks")
}

#[test]
fn shipped_rulebooks_are_complete() {
    let dir = shipped_dir();
    let rulebooks = load_rulebooks(std::slice::from_ref(&dir)).unwrap();
    assert!(rulebooks.len() >= 8, "only {} rulebooks", rulebooks.len());

    // One file, one uri: nothing was overridden or skipped.
    let files = fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md") && n != "README.md")
        .count();
    let uris: BTreeSet<&str> = rulebooks.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!((uris.len(), rulebooks.len()), (files, files));

    for r in &rulebooks {
        let name = r.path.display();
        let stem = r.path.file_stem().unwrap().to_string_lossy();
        assert_eq!(r.uri, format!("stakpak://rulebooks/{stem}"), "{name}");
        assert!(!r.description.trim().is_empty(), "{name}: no description");
        assert!(!r.tags.is_empty(), "{name}: no tags");
        assert!(r.body.starts_with("# "), "{name}: no title");
        let headings: Vec<&str> = r
            .body
            .lines()
            .filter(|l| l.starts_with("## "))
            .map(str::trim_end)
            .collect();
        assert_eq!(headings, SECTIONS, "{name}: sections");
        // Every section says something.
        for (i, heading) in SECTIONS.iter().enumerate() {
            let start = r.body.find(heading).unwrap() + heading.len();
            let end = SECTIONS
                .get(i + 1)
                .map_or(r.body.len(), |next| r.body.find(next).unwrap());
            assert!(
                r.body[start..end].trim().len() > 80,
                "{name}: {heading} is nearly empty"
            );
        }
        // Destructive steps go through ask_user.
        assert!(
            r.body.contains("ask_user"),
            "{name}: never asks before acting"
        );
        // Cross-references name shipped rulebooks.
        for (at, _) in r.body.match_indices("stakpak://rulebooks/") {
            let referenced: String = r.body[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || ":/-_".contains(*c))
                .collect();
            assert!(
                uris.contains(referenced.as_str()),
                "{name}: refers to unknown {referenced}"
            );
        }
    }
}

fn write(dir: &Path, name: &str, uri: &str, description: &str) {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(
        path,
        format!("---\nuri: {uri}\ndescription: {description}\ntags: [t]\n---\n# T\nbody\n"),
    )
    .unwrap();
}

#[test]
fn later_folders_override_by_uri_and_the_result_is_sorted() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    write(&first, "b.md", "stakpak://rulebooks/b", "first b");
    write(&first, "a.md", "stakpak://rulebooks/a", "first a");
    write(&first, "README.md", "not://parsed", "skipped");
    fs::write(first.join("notes.txt"), "not a rulebook").unwrap();
    write(&second, "nested/a.md", "stakpak://rulebooks/a", "second a");
    write(&second, ".hidden.md", "stakpak://rulebooks/h", "hidden");
    let missing = tmp.path().join("missing");

    let loaded = load_rulebooks(&[first.clone(), missing, second.clone()]).unwrap();
    let seen: Vec<(&str, &str, PathBuf)> = loaded
        .iter()
        .map(|r| (r.uri.as_str(), r.description.as_str(), r.path.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                "stakpak://rulebooks/a",
                "second a",
                second.join("nested/a.md")
            ),
            ("stakpak://rulebooks/b", "first b", first.join("b.md")),
        ]
    );
}

#[test]
fn one_uri_twice_in_a_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "a.md", "stakpak://rulebooks/a", "one");
    write(tmp.path(), "z.md", "stakpak://rulebooks/a", "two");
    let err = load_rulebooks(&[tmp.path().to_path_buf()]).unwrap_err();
    assert!(matches!(err, ConfigError::DuplicateRulebook { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "rulebook uri \"stakpak://rulebooks/a\" is defined twice in one folder: {} and {}",
            tmp.path().join("a.md").display(),
            tmp.path().join("z.md").display()
        )
    );
    // A broken rulebook names its file and line.
    fs::write(
        tmp.path().join("z.md"),
        "---\nuri: stakpak://x\nname: y\n---\nb\n",
    )
    .unwrap();
    assert_eq!(
        load_rulebooks(&[tmp.path().to_path_buf()])
            .unwrap_err()
            .to_string(),
        format!(
            "invalid rulebook {}: line 3: unknown key `name` (expected uri, description, tags)",
            tmp.path().join("z.md").display()
        )
    );
}
