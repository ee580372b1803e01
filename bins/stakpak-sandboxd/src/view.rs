//! `View` without the bus: numbered line ranges, directory trees and grep over a file or a
//! tree, read through descriptors opened below the workspace and never through a symlink.
//!
//! Nothing here redacts; `files.rs` sends every text through secretd before it leaves.
//! What is redacted decides what is shown: a file up to [`WHOLE_FILE_MAX`] is redacted as a
//! whole *before* its lines are selected or grepped, so a multi-line value (a PEM key) is
//! replaced even when the range or the match covers only some of its lines. Line numbers
//! are then those of the redacted text; they differ from the file's only after a multi-line
//! value, which the redactor turns into one placeholder.

use std::{
    io::{BufRead, BufReader, Read},
    os::fd::OwnedFd,
};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

/// Files up to this size are read and redacted whole (secretd accepts 16 MiB at most).
pub(crate) const WHOLE_FILE_MAX: u64 = 8 << 20;
/// Bytes looked at for a NUL to call a file binary.
const SNIFF: usize = 8192;
/// Characters of a matching line shown by grep.
pub(crate) const LINE_TEXT_MAX: usize = 400;
/// Longest line kept from a file too large to be redacted whole.
const LONG_LINE_MAX: usize = 1 << 20;
/// Deepest a grep goes when the request gives no depth.
pub(crate) const GREP_DEPTH_MAX: u32 = 64;
/// Folders listed but never entered by the tree and grep.
const NOT_ENTERED: [&[u8]; 1] = [b".git"];

/// Binary: a NUL in the first bytes, or not UTF-8.
pub(crate) fn is_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(SNIFF)].contains(&0) || std::str::from_utf8(bytes).is_err()
}

/// A line range `View` cannot show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RangeError {
    #[error("end_line {end} is before start_line {start}")]
    Backwards { start: u32, end: u32 },
    #[error("start_line {start} is past the end ({total} lines)")]
    PastTheEnd { start: u32, total: u64 },
}

/// The inclusive, 1-based range `View` shows of a text of `total` lines (0: from the start,
/// to the end).
pub(crate) fn line_range(start: u32, end: u32, total: u64) -> Result<(u64, u64), RangeError> {
    let first = u64::from(start.max(1));
    let last = if end == 0 {
        total
    } else {
        u64::from(end).min(total)
    };
    if end != 0 && end < start {
        return Err(RangeError::Backwards { start, end });
    }
    if first > total.max(1) {
        return Err(RangeError::PastTheEnd { start, total });
    }
    Ok((first, last))
}

/// Text cut to a cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    pub content: String,
    pub truncated: bool,
}

/// Numbers lines like `cat -n` (the first is `first`) and keeps whole lines up to
/// `max_bytes`; a first line longer than the cap is cut at a character boundary.
pub(crate) fn number_lines<'a>(
    lines: impl Iterator<Item = &'a str>,
    first: u64,
    max_bytes: usize,
) -> Page {
    let mut content = String::new();
    for (n, line) in (first..).zip(lines) {
        let numbered = format!("{n:>6}\t{line}\n");
        if content.len() + numbered.len() > max_bytes {
            if content.is_empty() {
                content.push_str(cut(&numbered, max_bytes));
            }
            return Page {
                content,
                truncated: true,
            };
        }
        content.push_str(&numbered);
    }
    Page {
        content,
        truncated: false,
    }
}

/// Whole lines of `text` up to `max_bytes`.
pub(crate) fn cap_lines(text: &str, max_bytes: usize) -> Page {
    if text.len() <= max_bytes {
        return Page {
            content: text.to_string(),
            truncated: false,
        };
    }
    let head = cut(text, max_bytes);
    let content = match head.rfind('\n') {
        Some(i) => &head[..=i],
        None => head,
    };
    Page {
        content: content.to_string(),
        truncated: true,
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Reads at most `limit` bytes of a file.
pub(crate) fn read_up_to(file: &OwnedFd, limit: u64) -> std::io::Result<Vec<u8>> {
    // Descriptors from `try_clone` share the offset: always start from the beginning.
    rustix::fs::seek(file, rustix::fs::SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    std::fs::File::from(file.try_clone()?)
        .take(limit)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The lines `first..=last` of a file too large to be redacted whole (read as a stream,
/// whole lines, until `max_bytes` of them), and how many lines the file has.
pub(crate) fn stream_range(
    file: &OwnedFd,
    first: u32,
    last: u32,
    max_bytes: usize,
) -> std::io::Result<(String, u64, bool)> {
    let first = u64::from(first.max(1));
    let last = if last == 0 { u64::MAX } else { u64::from(last) };
    rustix::fs::seek(file, rustix::fs::SeekFrom::Start(0))?;
    let mut reader = BufReader::new(std::fs::File::from(file.try_clone()?));
    let mut text = String::new();
    let mut truncated = false;
    let mut total = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        total += 1;
        if total < first || total > last || truncated {
            continue;
        }
        if text.len() + line.len() > max_bytes {
            truncated = true;
            continue;
        }
        text.push_str(&String::from_utf8_lossy(&line));
    }
    Ok((text, total, truncated))
}

/// A directory tree as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tree {
    pub content: String,
    pub entries: u64,
    pub truncated: bool,
}

/// Lists `dir` (shown as `label`) to `depth` levels: sorted by name, folders marked `/`,
/// symlinks `@` (never followed), two spaces of indent a level; `.git` is listed but not
/// entered. Stops after `max_entries`.
pub(crate) fn tree(
    dir: &OwnedFd,
    label: &str,
    depth: u32,
    max_entries: u64,
) -> std::io::Result<Tree> {
    let mut out = Tree {
        content: format!("{label}/\n"),
        entries: 0,
        truncated: false,
    };
    walk_tree(dir, 1, depth, max_entries, &mut out)?;
    Ok(out)
}

fn walk_tree(
    dir: &OwnedFd,
    level: u32,
    depth: u32,
    max: u64,
    out: &mut Tree,
) -> std::io::Result<()> {
    for (name, kind) in entries(dir)? {
        if out.entries >= max {
            out.truncated = true;
            return Ok(());
        }
        out.entries += 1;
        let suffix = match kind {
            FileType::Directory => "/",
            FileType::Symlink => "@",
            _ => "",
        };
        out.content.push_str(&"  ".repeat(level as usize));
        out.content.push_str(&String::from_utf8_lossy(&name));
        out.content.push_str(suffix);
        out.content.push('\n');
        if kind != FileType::Directory || NOT_ENTERED.contains(&name.as_slice()) {
            continue;
        }
        let Ok(sub) = open_dir(dir, &name) else {
            continue;
        };
        if level < depth {
            walk_tree(&sub, level + 1, depth, max, out)?;
        } else if !entries(&sub)?.is_empty() {
            out.truncated = true;
        }
    }
    Ok(())
}

/// The entries of a folder, sorted by name, with their types (never following a symlink).
fn entries(dir: &OwnedFd) -> std::io::Result<Vec<(Vec<u8>, FileType)>> {
    let mut list = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let kind = match entry.file_type() {
            FileType::Unknown => {
                rustix::fs::statat(dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                    .map(|st| FileType::from_raw_mode(st.st_mode))
                    .unwrap_or(FileType::Unknown)
            }
            kind => kind,
        };
        list.push((name.to_vec(), kind));
    }
    list.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(list)
}

fn open_dir(dir: &OwnedFd, name: &[u8]) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn open_file(dir: &OwnedFd, name: &[u8]) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// A file grep found a raw match in, to be redacted and grepped again.
#[derive(Debug)]
pub(crate) enum Candidate {
    /// A file small enough to be redacted whole.
    Whole { path: String, text: String },
    /// The matching lines (number, text) of a larger file.
    Lines {
        path: String,
        lines: Vec<(u64, String)>,
    },
}

/// Finds files below `root` (a folder shown as `root_path`, or one file) whose raw bytes
/// match; at most `max` of them (each holds at least one match). Binary files, symlinks and
/// `.git` are skipped. Returns the candidates and whether the walk stopped early.
pub(crate) fn grep_candidates(
    root: &OwnedFd,
    root_is_dir: bool,
    root_path: &str,
    re: &regex::bytes::Regex,
    depth: u32,
    max: usize,
) -> std::io::Result<(Vec<Candidate>, bool)> {
    let mut found = Vec::new();
    let mut stopped = false;
    if root_is_dir {
        grep_walk(root, root_path, re, 1, depth, max, &mut found, &mut stopped)?;
    } else if let Some(c) = grep_file(root, root_path, re, max)? {
        found.push(c);
    }
    Ok((found, stopped))
}

#[allow(clippy::too_many_arguments)]
fn grep_walk(
    dir: &OwnedFd,
    dir_path: &str,
    re: &regex::bytes::Regex,
    level: u32,
    depth: u32,
    max: usize,
    found: &mut Vec<Candidate>,
    stopped: &mut bool,
) -> std::io::Result<()> {
    for (name, kind) in entries(dir)? {
        if found.len() >= max {
            *stopped = true;
            return Ok(());
        }
        let lossy = String::from_utf8_lossy(&name);
        let path = if dir_path.is_empty() {
            lossy.into_owned()
        } else {
            format!("{dir_path}/{lossy}")
        };
        match kind {
            FileType::Directory if level < depth && !NOT_ENTERED.contains(&name.as_slice()) => {
                if let Ok(sub) = open_dir(dir, &name) {
                    grep_walk(&sub, &path, re, level + 1, depth, max, found, stopped)?;
                }
            }
            FileType::RegularFile => {
                let Ok(file) = open_file(dir, &name) else {
                    continue;
                };
                if let Some(c) = grep_file(&file, &path, re, max)? {
                    found.push(c);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn grep_file(
    file: &OwnedFd,
    path: &str,
    re: &regex::bytes::Regex,
    max: usize,
) -> std::io::Result<Option<Candidate>> {
    let st = rustix::fs::fstat(file)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(None);
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size <= WHOLE_FILE_MAX {
        let bytes = read_up_to(file, WHOLE_FILE_MAX)?;
        if bytes[..bytes.len().min(SNIFF)].contains(&0) || !re.is_match(&bytes) {
            return Ok(None);
        }
        return Ok(Some(Candidate::Whole {
            path: path.to_string(),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }));
    }
    let mut reader = BufReader::new(std::fs::File::from(file.try_clone()?));
    let mut line = Vec::new();
    let mut lines = Vec::new();
    let mut n = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        n += 1;
        if n == 1 && line.contains(&0) {
            return Ok(None);
        }
        if line.len() <= LONG_LINE_MAX && re.is_match(&line) {
            let text = String::from_utf8_lossy(&line);
            lines.push((n, text.trim_end_matches(['\n', '\r']).to_string()));
            if lines.len() >= max {
                break;
            }
        }
    }
    Ok((!lines.is_empty()).then(|| Candidate::Lines {
        path: path.to_string(),
        lines,
    }))
}

/// `path:line: text` for each line of an already redacted text that matches, until `out`
/// holds `max`; true when a match was left out for the cap. Line 0 means unknown.
pub(crate) fn grep_lines<'a>(
    path: &str,
    lines: impl Iterator<Item = (u64, &'a str)>,
    re: &regex::Regex,
    max: usize,
    out: &mut Vec<String>,
) -> bool {
    for (n, line) in lines {
        if re.is_match(line) {
            if out.len() >= max {
                return true;
            }
            out.push(grep_line(path, n, line));
        }
    }
    false
}

fn grep_line(path: &str, n: u64, line: &str) -> String {
    let shown = cut(line, LINE_TEXT_MAX);
    let more = if shown.len() < line.len() { "…" } else { "" };
    format!("{path}:{n}: {shown}{more}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ranges() {
        for (start, end, total, expected) in [
            (0, 0, 10, Ok((1, 10))),
            (3, 5, 10, Ok((3, 5))),
            (3, 50, 10, Ok((3, 10))),
            (10, 10, 10, Ok((10, 10))),
            (0, 0, 0, Ok((1, 0))),
            (
                11,
                0,
                10,
                Err("start_line 11 is past the end (10 lines)".to_string()),
            ),
            (
                5,
                4,
                10,
                Err("end_line 4 is before start_line 5".to_string()),
            ),
        ] {
            assert_eq!(
                line_range(start, end, total).map_err(|e| e.to_string()),
                expected,
                "{start} {end} {total}"
            );
        }
    }

    #[test]
    fn numbering_and_caps() {
        let page = number_lines(["a", "bb", "ccc"].into_iter(), 7, 1000);
        assert_eq!(
            page,
            Page {
                content: "     7\ta\n     8\tbb\n     9\tccc\n".into(),
                truncated: false
            }
        );
        let page = number_lines(["a", "bb"].into_iter(), 1, 12);
        assert_eq!(page.content, "     1\ta\n");
        assert!(page.truncated);
        let page = number_lines(["ééééé"].into_iter(), 1, 10);
        assert_eq!(page.content, "     1\té");
        assert_eq!(
            cap_lines("one\ntwo\nthree\n", 9),
            Page {
                content: "one\ntwo\n".into(),
                truncated: true
            }
        );
        assert!(is_binary(b"a\0b"));
        assert!(is_binary(b"\xff\xfe"));
        assert!(!is_binary("héllo\n".as_bytes()));
    }

    #[test]
    fn streamed_ranges_start_at_the_first_line() {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, b"one\ntwo\nthree\nfour\n").unwrap();
        let fd: OwnedFd = f.into();
        assert_eq!(read_up_to(&fd, 3).unwrap(), b"one");
        let (text, total, cut) = stream_range(&fd, 2, 3, 100).unwrap();
        assert_eq!((text.as_str(), total, cut), ("two\nthree\n", 4, false));
        let (text, total, cut) = stream_range(&fd, 0, 0, 9).unwrap();
        assert_eq!((text.as_str(), total, cut), ("one\ntwo\n", 4, true));
    }

    #[test]
    fn tree_and_grep_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c/d")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/HEAD"), "needle\n").unwrap();
        std::fs::write(root.join("a.txt"), "one\nneedle two\n").unwrap();
        std::fs::write(root.join("b/c/x.rs"), "needle\n").unwrap();
        std::fs::write(root.join("b/c/d/deep"), "needle\n").unwrap();
        std::fs::write(root.join("bin"), b"needle\0").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let fd: OwnedFd = std::fs::File::open(root).unwrap().into();

        let t = tree(&fd, ".", 2, 100).unwrap();
        assert_eq!(
            t.content,
            "./\n  .git/\n  a.txt\n  b/\n    c/\n  bin\n  link@\n"
        );
        assert_eq!((t.entries, t.truncated), (6, true));
        let t = tree(&fd, ".", 9, 3).unwrap();
        assert_eq!(t.content, "./\n  .git/\n  a.txt\n  b/\n");
        assert!(t.truncated);

        let re = regex::bytes::Regex::new("needle").unwrap();
        let (found, stopped) = grep_candidates(&fd, true, "", &re, 64, 10).unwrap();
        assert!(!stopped);
        let paths: Vec<_> = found
            .iter()
            .map(|c| match c {
                Candidate::Whole { path, .. } | Candidate::Lines { path, .. } => path.as_str(),
            })
            .collect();
        assert_eq!(paths, ["a.txt", "b/c/d/deep", "b/c/x.rs"]);
        let mut out = Vec::new();
        let text = "one\nneedle two\n";
        let str_re = regex::Regex::new("needle").unwrap();
        assert!(!grep_lines(
            "a.txt",
            (1..).zip(text.lines()),
            &str_re,
            10,
            &mut out
        ));
        assert_eq!(out, ["a.txt:2: needle two"]);
        assert!(grep_lines(
            "a.txt",
            (1..).zip(text.lines()),
            &str_re,
            1,
            &mut out
        ));
        assert_eq!(out.len(), 1);
        let re = regex::bytes::Regex::new("needle").unwrap();
        let (found, stopped) = grep_candidates(&fd, true, "", &re, 64, 1).unwrap();
        assert_eq!((found.len(), stopped), (1, true));
    }
}
