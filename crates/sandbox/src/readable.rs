//! "Everything below these roots except below these hidden paths", in the only terms
//! Landlock has: a list of paths each granted with its whole subtree.
//!
//! Landlock rules only add access, so a hidden path inside a readable root is carved out by
//! granting, instead of the root, every entry of each directory on the way down to the
//! hidden path except the one that leads to it. Entries that are symbolic links are left
//! out: Landlock judges the path a link resolves to, so a link into a readable place still
//! works and one into a hidden place stays closed. What is created later directly in a
//! directory that was expanded (say a new file in `/tmp` when the suite lives below `/tmp`)
//! is not readable by a run that started before; the next run sees it.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// The paths to grant so that everything below `roots` is covered except what lies below a
/// `hidden` path. Paths are made absolute and resolved first; missing ones are skipped.
pub fn expand(roots: &[PathBuf], hidden: &[PathBuf]) -> Vec<PathBuf> {
    let hidden: Vec<PathBuf> = hidden
        .iter()
        .filter_map(|h| fs::canonicalize(h).ok())
        .collect();
    let mut out = Vec::new();
    for root in roots {
        if let Ok(root) = fs::canonicalize(root) {
            walk(&root, &hidden, &mut out);
        }
    }
    out
}

fn walk(path: &Path, hidden: &[PathBuf], out: &mut Vec<PathBuf>) {
    if hidden.iter().any(|h| path.starts_with(h)) {
        return;
    }
    if !hidden.iter().any(|h| h.starts_with(path)) {
        out.push(path.to_path_buf());
        return;
    }
    // A hidden path lies below: grant the entries one by one.
    let Ok(entries) = fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() {
            continue;
        }
        walk(&entry.path(), hidden, out);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hidden_paths_are_carved_out_of_their_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        for d in ["a/b/secret", "a/b/open", "a/c", "d"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("a/b/file"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("a/b/secret"), root.join("a/b/link")).unwrap();

        let mut got = expand(std::slice::from_ref(&root), &[root.join("a/b/secret")]);
        got.sort();
        let want: Vec<PathBuf> = ["a/b/file", "a/b/open", "a/c", "d"]
            .iter()
            .map(|p| root.join(p))
            .collect();
        assert_eq!(got, want);

        // Nothing hidden below: the root whole. A hidden root: nothing.
        assert_eq!(
            expand(&[root.join("d")], &[root.join("a")]),
            [root.join("d")]
        );
        assert!(expand(&[root.join("a/b")], &[root.join("a")]).is_empty());
        // Missing paths are skipped, hidden or not.
        assert_eq!(
            expand(&[root.join("d"), root.join("nope")], &[root.join("gone")]),
            [root.join("d")]
        );
    }
}
