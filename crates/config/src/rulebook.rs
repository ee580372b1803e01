//! Rulebooks: Markdown SOPs with front matter between `---` lines.
//!
//! ```text
//! ---
//! uri: stakpak://rulebooks/disk-full
//! description: A filesystem is full or nearly full
//! tags: [disk, linux]
//! ---
//! # Disk full
//! …
//! ```
//!
//! The front matter is a small subset of YAML, read here rather than by a YAML library:
//! `key: value` lines (plain, `"double"` or `'single'` quoted, or a `>`/`|` block of
//! indented lines), and lists as `[a, b]` or as `- a` lines below the key. Keys are
//! `uri`, `description` and `tags`; anything else is an error naming the file and line.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};

use crate::ConfigError;

/// A rulebook larger than this is refused: it is meant for a model's context.
const MAX_SIZE: u64 = 256 * 1024;

/// One SOP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rulebook {
    /// `stakpak://rulebooks/disk-full`
    pub uri: String,
    pub description: String,
    pub tags: Vec<String>,
    /// The Markdown after the front matter.
    pub body: String,
    /// The file it was read from.
    pub path: PathBuf,
}

/// Every rulebook (`*.md`, searched recursively; `README.md` and hidden entries skipped) in
/// `dirs`, sorted by uri. A later folder's rulebook replaces an earlier one with the same
/// uri; one uri twice in the same folder is an error. A folder that does not exist is
/// skipped.
pub fn load_rulebooks(dirs: &[PathBuf]) -> Result<Vec<Rulebook>, ConfigError> {
    let mut all: BTreeMap<String, Rulebook> = BTreeMap::new();
    for dir in dirs {
        let mut files = Vec::new();
        match std::fs::metadata(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ConfigError::Read {
                    path: dir.clone(),
                    source,
                });
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(ConfigError::Rulebook {
                    path: dir.clone(),
                    message: "not a folder".to_owned(),
                });
            }
            Ok(_) => collect(dir, &mut files, 0)?,
        }
        files.sort();
        let mut here: BTreeMap<String, Rulebook> = BTreeMap::new();
        for file in files {
            let rulebook = read(&file)?;
            if let Some(first) = here.get(&rulebook.uri) {
                return Err(ConfigError::DuplicateRulebook {
                    uri: rulebook.uri,
                    first: first.path.clone(),
                    second: file,
                });
            }
            here.insert(rulebook.uri.clone(), rulebook);
        }
        all.extend(here);
    }
    Ok(all.into_values().collect())
}

/// Folders nested deeper than this are not searched (a symlink loop ends here).
const MAX_DEPTH: usize = 8;

fn collect(dir: &Path, files: &mut Vec<PathBuf>, depth: usize) -> Result<(), ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.eq_ignore_ascii_case("README.md") {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                collect(&path, files, depth + 1)?;
            }
        } else if meta.is_file() && name.ends_with(".md") {
            files.push(path);
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<Rulebook, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if meta.len() > MAX_SIZE {
        return Err(ConfigError::Rulebook {
            path: path.to_path_buf(),
            message: format!("larger than {MAX_SIZE} bytes"),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    parse_rulebook(&text, path)
}

/// Parses one rulebook; `path` is recorded and names the file in errors.
pub fn parse_rulebook(text: &str, path: &Path) -> Result<Rulebook, ConfigError> {
    let at = |line: usize, message: String| ConfigError::RulebookLine {
        path: path.to_path_buf(),
        line,
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    if lines.first().map(|l| l.trim_end()) != Some("---") {
        return Err(at(
            1,
            "no front matter: the file must start with a `---` line".to_owned(),
        ));
    }
    let end = lines
        .iter()
        .skip(1)
        .position(|l| l.trim_end() == "---")
        .map(|i| i + 1)
        .ok_or_else(|| at(1, "the front matter has no closing `---` line".to_owned()))?;

    let mut uri: Option<String> = None;
    let mut description: Option<String> = None;
    let mut tags: Option<Vec<String>> = None;
    // Index into `lines`; the line number shown is index + 1.
    let mut i = 1;
    while i < end {
        let line = lines[i];
        let number = i + 1;
        i += 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) || trimmed.starts_with('-') {
            return Err(at(
                number,
                "unexpected indented line or list item".to_owned(),
            ));
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(at(number, "expected `key: value`".to_owned()));
        };
        let key = key.trim();
        let value = value.trim();
        // Lines below the key: indented, or (for `- item` lists) blank.
        let mut block = Vec::new();
        while i < end {
            let next = lines[i];
            if next.trim().is_empty() || next.starts_with([' ', '\t']) {
                block.push((i + 1, next));
                i += 1;
            } else {
                break;
            }
        }
        while block.last().is_some_and(|(_, l)| l.trim().is_empty()) {
            block.pop();
        }
        let duplicate = || at(number, format!("`{key}` is given twice"));
        match key {
            "uri" | "description" => {
                let value = scalar(value, &block).map_err(|m| at(number, m))?;
                let slot = if key == "uri" {
                    &mut uri
                } else {
                    &mut description
                };
                if slot.replace(value).is_some() {
                    return Err(duplicate());
                }
            }
            "tags" => {
                let list = if value.is_empty() {
                    block
                        .iter()
                        .filter(|(_, l)| !l.trim().is_empty())
                        .map(|(n, l)| {
                            let item = l.trim();
                            item.strip_prefix('-')
                                .ok_or_else(|| at(*n, "expected a `- item` line".to_owned()))
                                .and_then(|rest| unquote(rest.trim()).map_err(|m| at(*n, m)))
                        })
                        .collect::<Result<Vec<_>, _>>()?
                } else if !block.is_empty() {
                    return Err(at(block[0].0, "unexpected indented line".to_owned()));
                } else {
                    flow_list(value).map_err(|m| at(number, m))?
                };
                if let Some(bad) = list
                    .iter()
                    .find(|t| t.is_empty() || t.contains(char::is_whitespace))
                {
                    return Err(at(number, format!("tag {bad:?} is empty or has spaces")));
                }
                if tags.replace(list).is_some() {
                    return Err(duplicate());
                }
            }
            other => {
                return Err(at(
                    number,
                    format!("unknown key `{other}` (expected uri, description, tags)"),
                ));
            }
        }
    }

    let missing = |key: &str| ConfigError::Rulebook {
        path: path.to_path_buf(),
        message: format!("the front matter has no `{key}`"),
    };
    let uri = uri
        .filter(|u| !u.is_empty())
        .ok_or_else(|| missing("uri"))?;
    if !uri.contains("://") || uri.contains(char::is_whitespace) {
        return Err(ConfigError::Rulebook {
            path: path.to_path_buf(),
            message: format!("uri {uri:?} is not a URI like stakpak://rulebooks/<name>"),
        });
    }
    let description = description
        .filter(|d| !d.is_empty())
        .ok_or_else(|| missing("description"))?;
    let body = lines[end + 1..].join("\n").trim().to_owned() + "\n";
    if body.trim().is_empty() {
        return Err(ConfigError::Rulebook {
            path: path.to_path_buf(),
            message: "nothing after the front matter".to_owned(),
        });
    }
    Ok(Rulebook {
        uri,
        description,
        tags: tags.unwrap_or_default(),
        body,
        path: path.to_path_buf(),
    })
}

/// A scalar value: `value` itself, or for `>`/`|` (with an optional `-`) the indented
/// `block` folded into one line or kept as lines.
fn scalar(value: &str, block: &[(usize, &str)]) -> Result<String, String> {
    let lines = || block.iter().map(|(_, l)| l.trim());
    match value {
        ">" | ">-" => Ok(lines()
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")),
        "|" | "|-" => Ok(lines().collect::<Vec<_>>().join("\n")),
        _ if !block.is_empty() => {
            Err("a value over several lines needs `>` or `|` after the colon".to_owned())
        }
        _ => unquote(value),
    }
}

/// A plain or quoted scalar; a plain one ends at ` #` (a comment).
fn unquote(value: &str) -> Result<String, String> {
    let mut chars = value.chars();
    match chars.next() {
        Some('"') => {
            let mut out = String::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated \"quoted\" value".to_owned()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some(c @ ('"' | '\\' | '/')) => out.push(c),
                        _ => return Err("unknown escape in a \"quoted\" value".to_owned()),
                    },
                    Some(c) => out.push(c),
                }
            }
            trailing(chars.as_str())?;
            Ok(out)
        }
        Some('\'') => {
            let mut out = String::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated 'quoted' value".to_owned()),
                    Some('\'') if chars.as_str().starts_with('\'') => {
                        chars.next();
                        out.push('\'');
                    }
                    Some('\'') => break,
                    Some(c) => out.push(c),
                }
            }
            trailing(chars.as_str())?;
            Ok(out)
        }
        _ => {
            let plain = match value.find(" #") {
                Some(at) => &value[..at],
                None => value,
            };
            Ok(plain.trim().to_owned())
        }
    }
}

fn trailing(rest: &str) -> Result<(), String> {
    let rest = rest.trim();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err("unexpected text after a quoted value".to_owned())
    }
}

/// `[a, "b", 'c']`; commas inside quotes stay.
fn flow_list(value: &str) -> Result<Vec<String>, String> {
    let inner = value
        .strip_prefix('[')
        .and_then(|v| {
            let v = match v.rfind(']') {
                Some(at) if trailing(&v[at + 1..]).is_ok() => &v[..at],
                _ => return None,
            };
            Some(v)
        })
        .ok_or("expected a list: `[a, b]`, or `- a` lines below the key")?;
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in inner.chars() {
        match (quote, c) {
            (None, ',') => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        current.push(c);
    }
    if quote.is_some() {
        return Err("unterminated quote in a list".to_owned());
    }
    items.push(current);
    if items.len() == 1 && items[0].trim().is_empty() {
        return Ok(Vec::new());
    }
    items.iter().map(|item| unquote(item.trim())).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn parse(text: &str) -> Result<Rulebook, String> {
        parse_rulebook(text, Path::new("/r/x.md")).map_err(|e| e.to_string())
    }

    #[test]
    fn front_matter_forms() {
        let flow = parse(
            "---\nuri: stakpak://rulebooks/disk-full\ndescription: \"A disk: full\" # why\ntags: [disk, 'linux', \"a,b\"]\n---\n\n# Disk\nbody\n",
        )
        .unwrap();
        assert_eq!(
            flow,
            Rulebook {
                uri: "stakpak://rulebooks/disk-full".into(),
                description: "A disk: full".into(),
                tags: vec!["disk".into(), "linux".into(), "a,b".into()],
                body: "# Disk\nbody\n".into(),
                path: PathBuf::from("/r/x.md"),
            }
        );
        let block = parse(
            "---\r\n# comment\r\nuri: stakpak://rulebooks/a\r\ndescription: >\r\n  one\r\n  two\r\ntags:\r\n  - x\r\n\r\n  - y\r\n---\r\nbody\r\n",
        )
        .unwrap();
        assert_eq!(
            (block.description.as_str(), block.tags, block.body.as_str()),
            ("one two", vec!["x".to_owned(), "y".to_owned()], "body\n")
        );
        let literal = parse("---\nuri: a://b\ndescription: |\n  one\n  two\n---\nb\n").unwrap();
        assert_eq!(
            (literal.description.as_str(), literal.tags),
            ("one\ntwo", vec![])
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        for (text, expected) in [
            (
                "# no front matter\n",
                "invalid rulebook /r/x.md: line 1: no front matter: the file must start with a `---` line",
            ),
            (
                "---\nuri: a://b\n",
                "invalid rulebook /r/x.md: line 1: the front matter has no closing `---` line",
            ),
            (
                "---\nuri: a://b\ndescription: d\nname: x\n---\nb\n",
                "invalid rulebook /r/x.md: line 4: unknown key `name` (expected uri, description, tags)",
            ),
            (
                "---\nuri: a://b\nuri: a://c\n---\nb\n",
                "invalid rulebook /r/x.md: line 3: `uri` is given twice",
            ),
            (
                "---\nuri: a://b\ndescription: d\ntags: [a, \"b]\n---\nb\n",
                "invalid rulebook /r/x.md: line 4: unterminated quote in a list",
            ),
            (
                "---\nuri: a://b\ndescription: d\ntags: a, b\n---\nb\n",
                "invalid rulebook /r/x.md: line 4: expected a list: `[a, b]`, or `- a` lines below the key",
            ),
            (
                "---\nuri: a://b\ndescription: d\ntags:\n  x\n---\nb\n",
                "invalid rulebook /r/x.md: line 5: expected a `- item` line",
            ),
            (
                "---\nuri: a://b\ndescription: d\ntags: [a b]\n---\nb\n",
                "invalid rulebook /r/x.md: line 4: tag \"a b\" is empty or has spaces",
            ),
            (
                "---\nuri: a://b\ndescription: one\n  two\n---\nb\n",
                "invalid rulebook /r/x.md: line 3: a value over several lines needs `>` or `|` after the colon",
            ),
            (
                "---\nuri: a://b\ndescription: \"d\n---\nb\n",
                "invalid rulebook /r/x.md: line 3: unterminated \"quoted\" value",
            ),
            (
                "---\ndescription: d\n---\nb\n",
                "invalid rulebook /r/x.md: the front matter has no `uri`",
            ),
            (
                "---\nuri: disk-full\ndescription: d\n---\nb\n",
                "invalid rulebook /r/x.md: uri \"disk-full\" is not a URI like stakpak://rulebooks/<name>",
            ),
            (
                "---\nuri: a://b\n---\nb\n",
                "invalid rulebook /r/x.md: the front matter has no `description`",
            ),
            (
                "---\nuri: a://b\ndescription: d\n---\n\n",
                "invalid rulebook /r/x.md: nothing after the front matter",
            ),
            (
                "---\nuri: a://b\ndescription: d\n  - x\n---\nb\n",
                "invalid rulebook /r/x.md: line 3: a value over several lines needs `>` or `|` after the colon",
            ),
        ] {
            assert_eq!(parse(text).unwrap_err(), expected, "{text:?}");
        }
    }
}
