//! The layering of the binaries, read from their source: imports flow one way (no two files
//! of a binary import each other, directly or through a cycle), and the wire's closed sets
//! are enums in the binaries' logic, never the literals they travel as.
//!
//! A file imports another when it names an item of the other's module: `use crate::a::B`,
//! `crate::a::b()`, `super::B`, `self::a::B`. A name the crate root re-exports
//! (`pub use a::B` in `lib.rs`) counts as an import of the file that defines it. Test code
//! (a file `tests.rs`, or the `#[cfg(test)]` module at the end of a file) is left out: tests
//! may reach anywhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

fn workspace() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// The `.rs` files of `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's code without comments and without its trailing `#[cfg(test)]` module; `None`
/// for a file that is all test code.
fn code_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name == "tests.rs" || name.ends_with("_tests.rs") {
        return None;
    }
    let text = fs::read_to_string(path).unwrap();
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        let without_comment = match line.find("//") {
            // `//` inside a string literal (a URL) is rare in these files; a quote before it
            // keeps the line whole.
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        code.push_str(without_comment);
        code.push('\n');
    }
    Some(code)
}

/// The module path of a file below `src` (`lib.rs` → `[]`, `tui/app.rs` → `["tui", "app"]`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        parts.pop();
    }
    parts
}

/// Expands `use` trees: `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        return vec![path.to_string()];
    };
    let prefix = &tree[..open];
    let Some(close) = tree.rfind('}').filter(|c| *c > open) else {
        return Vec::new();
    };
    let inner = &tree[open + 1..close];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| format!("{prefix}{p}"))
        .collect()
}

/// Every path a file's code names: its `use` items expanded, and inline `crate::`,
/// `super::` and `self::` paths.
fn paths_named(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let after = &rest[i + 4..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = after.find(';').unwrap_or(after.len());
        let tree: String = after[..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        out.extend(expand(&tree));
    }
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let len = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(code.len() - at);
            let path = code[at..at + len].trim_end_matches(':');
            // `crate::{…}` is a use tree, read above.
            if path.contains("::") {
                out.push(path.to_string());
            }
        }
    }
    out
}

/// Resolves a path named in module `from` to an absolute module path plus the item.
fn absolute(from: &[String], path: &str) -> Option<Vec<String>> {
    let mut segs = path.split("::").filter(|s| !s.is_empty());
    let first = segs.next()?;
    let mut abs: Vec<String> = match first {
        "crate" => Vec::new(),
        "self" => from.to_vec(),
        "super" => {
            let mut m = from.to_vec();
            m.pop();
            m
        }
        _ => return None,
    };
    for s in segs {
        if s == "super" {
            abs.pop();
        } else if s != "self" {
            abs.push(s.to_string());
        }
    }
    Some(abs)
}

struct Crate {
    /// Module path → file.
    files: BTreeMap<Vec<String>, PathBuf>,
    /// Module path → its code.
    code: BTreeMap<Vec<String>, String>,
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let mut all = Vec::new();
        rust_files(src, &mut all);
        let mut files = BTreeMap::new();
        let mut code = BTreeMap::new();
        for file in all {
            let module = module_of(src, &file);
            // A binary's main.rs beside lib.rs is its own crate root; it imports the library
            // by name, never through `crate::`.
            if file.file_name().is_some_and(|n| n == "main.rs") && src.join("lib.rs").exists() {
                continue;
            }
            if let Some(c) = code_of(&file) {
                code.insert(module.clone(), c);
            }
            files.insert(module, file);
        }
        Crate { files, code }
    }

    /// The module (file) that defines what `path` names: the longest prefix that is a file,
    /// following a `pub use` of that file when the rest names an item it re-exports.
    fn target(&self, path: &[String], depth: usize) -> Option<Vec<String>> {
        let mut module = path.to_vec();
        while !self.files.contains_key(&module) {
            module.pop()?;
        }
        let item = path.get(module.len());
        if let (Some(item), Some(code), true) = (item, self.code.get(&module), depth < 8) {
            for line in paths_named(code) {
                if line.rsplit("::").next() != Some(item.as_str()) {
                    continue;
                }
                let Some(abs) = absolute(&module, &line).or_else(|| {
                    // `pub use config::X` in a root: relative to the module itself.
                    let mut p = module.clone();
                    p.extend(line.split("::").map(str::to_string));
                    self.files.contains_key(&p[..p.len() - 1]).then_some(p)
                }) else {
                    continue;
                };
                if abs != *path && is_reexport(code, item) {
                    return self.target(&abs, depth + 1);
                }
            }
        }
        Some(module)
    }

    /// Edges between files: importer → imported.
    fn edges(&self) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (module, code) in &self.code {
            for path in paths_named(code) {
                let Some(abs) = absolute(module, &path) else {
                    continue;
                };
                let Some(target) = self.target(&abs, 0) else {
                    continue;
                };
                if target != *module {
                    if std::env::var_os("LAYERING_DEBUG").is_some() {
                        eprintln!("{module:?} -> {target:?} via {path}");
                    }
                    edges.entry(module.clone()).or_default().insert(target);
                }
            }
        }
        edges
    }
}

/// Whether `code` re-exports `item` with a `pub use`.
fn is_reexport(code: &str, item: &str) -> bool {
    code.split(';').any(|stmt| {
        let stmt = stmt.trim();
        (stmt.starts_with("pub use ") || stmt.starts_with("pub(crate) use "))
            && expand(stmt.split_once("use ").map_or("", |(_, t)| t))
                .iter()
                .any(|p| p.rsplit("::").next() == Some(item))
    })
}

/// The cycles among files (strongly connected components with more than one file).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    let nodes: BTreeSet<&Vec<String>> = edges
        .keys()
        .chain(edges.values().flat_map(|s| s.iter()))
        .collect();
    let reach = |from: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for next in edges.get(&n).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&Vec<String>, BTreeSet<Vec<String>>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) {
            continue;
        }
        let mut scc: Vec<Vec<String>> = nodes
            .iter()
            .filter(|m| reaches[*n].contains(**m) && reaches[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        if !scc.iter().any(|m| m == *n) {
            continue;
        }
        scc.sort();
        done.extend(scc.iter().cloned());
        if scc.len() > 1 {
            out.push(scc);
        }
    }
    out
}

fn binaries() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(workspace().join("bins"))
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn show(krate: &Crate, module: &[String]) -> String {
    krate.files[module]
        .strip_prefix(workspace())
        .unwrap_or(&krate.files[module])
        .display()
        .to_string()
}

#[test]
fn no_file_of_a_binary_imports_one_that_imports_it() {
    let mut found = Vec::new();
    for src in binaries() {
        let krate = Crate::read(&src);
        let edges = krate.edges();
        for cycle in cycles(&edges) {
            let names: Vec<String> = cycle.iter().map(|m| show(&krate, m)).collect();
            let mut why = Vec::new();
            for a in &cycle {
                for b in edges.get(a).into_iter().flatten() {
                    if cycle.contains(b) {
                        why.push(format!("{} -> {}", show(&krate, a), show(&krate, b)));
                    }
                }
            }
            found.push(format!(
                "{}\n    {}",
                names.join(" <-> "),
                why.join("\n    ")
            ));
        }
    }
    assert!(
        found.is_empty(),
        "import loops between files:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_sees_loops_through_uses_paths_and_reexports() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("tui")).unwrap();
    let files = [
        ("lib.rs", "mod a;\nmod b;\nmod tui;\npub use a::Thing;\n"),
        (
            "a.rs",
            "use crate::{b::{self, Other}, tui};\npub struct Thing;\n",
        ),
        (
            "b.rs",
            "pub struct Other;\nfn f() -> crate::Thing { todo() }\n",
        ),
        ("tui/mod.rs", "mod app;\nmod chat;\n"),
        ("tui/app.rs", "use super::chat::Chat;\n"),
        (
            "tui/chat.rs",
            "pub struct Chat;\n#[cfg(test)]\nmod tests {\n    use super::super::app;\n}\n",
        ),
    ];
    for (name, text) in files {
        fs::write(src.join(name), text).unwrap();
    }
    let krate = Crate::read(&src);
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(cycles(&krate.edges()), vec![vec![v(&["a"]), v(&["b"])]]);
    fs::write(src.join("tui/chat.rs"), "use crate::tui::app::X;\n").unwrap();
    let krate = Crate::read(&src);
    assert_eq!(
        cycles(&krate.edges()),
        vec![
            vec![v(&["a"]), v(&["b"])],
            vec![v(&["tui", "app"]), v(&["tui", "chat"])]
        ]
    );
}

/// The texts the wire's closed sets travel as; in a binary's logic they are enums.
const WIRE_LITERALS: &[&str] = &["\"allow\"", "\"deny\"", "\"ask\""];

#[test]
fn verdict_literals_appear_in_no_binary_logic() {
    let mut found = Vec::new();
    for src in binaries() {
        let krate = Crate::read(&src);
        for (module, code) in &krate.code {
            for (n, line) in code.lines().enumerate() {
                if WIRE_LITERALS.iter().any(|l| line.contains(l)) {
                    found.push(format!(
                        "{}:{}: {}",
                        show(&krate, module),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "verdict literals in binaries' logic:\n{}",
        found.join("\n")
    );
}
