//! File tools (`View`, `Create`, `StrReplace`, `Remove`) and the per-session changesets
//! (`Changes`, `Revert`).
//!
//! Paths are relative to the session's workspace `<state>/workspaces/<session>` (an absolute
//! path must lie inside it) and may not hold `..`. Every file is reached through a
//! descriptor of the workspace with `openat2(RESOLVE_BENEATH)`: the kernel resolves the
//! path and refuses it as a whole when a symlink (or anything else) would lead outside, so
//! there is no window between a check and the use. The last component of a change is then
//! handled with `*at` calls on its parent's descriptor, never following a symlink.
//!
//! Each change asks the warden first (`write` for create, str_replace and revert, `delete`
//! for remove; the subject is the absolute host path through the real parent folder, so a
//! symlinked folder cannot hide where a write lands). Writes go to a temporary file in the
//! same folder, fsynced, then renamed over the target, keeping the previous permission bits
//! (without setuid/setgid). The previous bytes, or the removed file or tree, go to
//! `<state>/backups/<session>/<change-id>` (folders 0700) and the change is recorded in
//! `changes.rs`. Changes and reverts are serialized, so no two read-modify-writes interleave.
//!
//! `{{secret:NAME}}` and `[REDACTED_SECRET:…]` placeholders in `Create` content and in
//! `StrReplace`'s `old` and `new` are resolved through secretd (`Resolve` with
//! `shell=false`) just before writing, as stakpak restores placeholders in tool arguments
//! before execution: the agent writes a configuration with `{{secret:DB_PASSWORD}}` and the
//! file holds the value; `View` shows the placeholder again because everything it returns
//! passes secretd's redactor (and nothing is returned when redaction fails). Resolving `old`
//! lets the agent edit a line it only ever saw redacted. The resolved text is written to the
//! target file only; the database holds its SHA-256 and a summary computed from the text as
//! sent.

use std::{
    ffi::{OsStr, OsString},
    io::Write,
    os::{
        fd::{AsFd, AsRawFd, OwnedFd},
        unix::fs::{DirBuilderExt, PermissionsExt},
    },
    path::{Component, Path, PathBuf},
    sync::{Arc, Mutex},
};

use rustix::{
    fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags},
    io::Errno,
};
use sha2::{Digest, Sha256};
use stakpak_proto::CheckKind;
use stakpak_util::now_ms;
use tokio::sync::watch;
use tracing::info;

use crate::{
    changes::{Change, ChangeDb, Kind},
    config::SandboxdConfig,
    error::Error,
    exec::valid_session,
    peers::{Bus, PeerError, Peers},
    view::{self, Candidate},
};

/// `View`: a file (line range, size cap), a directory tree (depth) or a grep over a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ViewAsk {
    pub session: String,
    /// Relative to the workspace (an absolute path must lie inside it); empty: the workspace.
    pub path: String,
    /// 1-based; 0: from the start.
    pub start_line: u32,
    /// Inclusive; 0: to the end.
    pub end_line: u32,
    /// 0: the configured cap.
    pub max_bytes: u64,
    /// 0: the default.
    pub depth: u32,
    /// A regular expression; empty: no grep.
    pub grep: String,
}

/// What `View` showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    File,
    Dir,
    Grep,
}

/// What `View` found, redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Viewed {
    pub shown: Shown,
    pub content: String,
    /// Whether the size cap or depth cut anything.
    pub truncated: bool,
    /// Lines of the file or matches of the grep; entries of the tree.
    pub total: u64,
}

/// Largest file `StrReplace` reads (and `Create` overwrites with a backup).
const EDIT_MAX: u64 = 64 << 20;
/// Permission bits of a file `Create` makes.
const NEW_FILE_MODE: u32 = 0o644;
/// Permission bits of the folders `Create` makes.
const NEW_DIR_MODE: u32 = 0o755;
/// Default depth of a directory tree.
const TREE_DEPTH: u32 = 3;
/// Deepest tree a request may ask for.
const TREE_DEPTH_MAX: u32 = 32;
/// Extra bytes read past the cap of a large file, so a value that straddles the cap is
/// still redacted whole before the text is cut.
const REDACT_MARGIN: usize = 64 * 1024;
/// Compiled size limit of a grep pattern.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The file tools of every session.
#[derive(Debug)]
pub(crate) struct Files {
    core: Arc<Core>,
    config: watch::Receiver<Arc<SandboxdConfig>>,
    /// Held by every change and revert: a file is read, changed and recorded by one at a time.
    writes: tokio::sync::Mutex<()>,
}

impl Files {
    pub(crate) fn new(state_dir: PathBuf, config: watch::Receiver<Arc<SandboxdConfig>>) -> Self {
        Files {
            core: Arc::new(Core::new(state_dir)),
            config,
            writes: tokio::sync::Mutex::new(()),
        }
    }

    fn config(&self) -> Arc<SandboxdConfig> {
        Arc::clone(&self.config.borrow())
    }

    pub(crate) async fn view(&self, request: ViewAsk, bus: &Bus) -> Result<Viewed, Error> {
        check_session(&request.session)?;
        let config = self.config();
        let cap = config.files.view_max_bytes;
        let max_bytes = usize::try_from(match request.max_bytes {
            0 => cap,
            n => n.min(cap),
        })
        .unwrap_or(usize::MAX);
        let peers = bus.peers(&config.exec);
        let redact = |text: String| {
            let session = request.session.clone();
            let peers = &peers;
            async move {
                if text.is_empty() {
                    return Ok(text);
                }
                peers.redact(&session, text).await.map_err(Error::from)
            }
        };
        let grep = if request.grep.is_empty() {
            None
        } else {
            Some(compile(&request.grep)?)
        };
        let core = Arc::clone(&self.core);
        let (session, path) = (request.session.clone(), request.path.clone());
        let opened = blocking(move || core.open_for_view(&session, &path)).await?;

        if let Some((re, bytes_re)) = grep {
            let depth = match request.depth {
                0 => view::GREP_DEPTH_MAX,
                d => d.min(view::GREP_DEPTH_MAX),
            };
            let max = usize::try_from(config.files.grep_max_matches).unwrap_or(usize::MAX);
            let root_path = if opened.rel == "." {
                String::new()
            } else {
                opened.rel.clone()
            };
            let fd = opened.fd;
            let is_dir = opened.is_dir;
            let (candidates, mut truncated) = blocking(move || {
                view::grep_candidates(&fd, is_dir, &root_path, &bytes_re, depth, max)
                    .map_err(|e| Error::Internal(format!("grep: {e}")))
            })
            .await?;
            let mut out = Vec::new();
            for candidate in candidates {
                match candidate {
                    Candidate::Whole { path, text } => {
                        let redacted = redact(text).await?;
                        truncated |= view::grep_lines(
                            &path,
                            (1..).zip(redacted.lines()),
                            &re,
                            max,
                            &mut out,
                        );
                    }
                    Candidate::Lines { path, lines } => {
                        let joined = lines
                            .iter()
                            .map(|(_, t)| t.as_str())
                            .collect::<Vec<_>>()
                            .join("\n");
                        let redacted = redact(joined).await?;
                        let got: Vec<&str> = redacted.split('\n').collect();
                        let numbers: Vec<u64> = if got.len() == lines.len() {
                            lines.iter().map(|(n, _)| *n).collect()
                        } else {
                            // A value spanning lines became one placeholder: numbers unknown.
                            vec![0; got.len()]
                        };
                        truncated |= view::grep_lines(
                            &path,
                            numbers.into_iter().zip(got),
                            &re,
                            max,
                            &mut out,
                        );
                    }
                }
            }
            let total = out.len() as u64;
            let mut text = out.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            let page = view::cap_lines(&text, max_bytes);
            return Ok(Viewed {
                shown: Shown::Grep,
                content: page.content,
                truncated: truncated || page.truncated,
                total,
            });
        }

        if opened.is_dir {
            let depth = match request.depth {
                0 => TREE_DEPTH,
                d => d.min(TREE_DEPTH_MAX),
            };
            let label = opened.rel.clone();
            let max = config.files.tree_max_entries;
            let fd = opened.fd;
            let tree = blocking(move || {
                view::tree(&fd, &label, depth, max)
                    .map_err(|e| Error::Internal(format!("tree: {e}")))
            })
            .await?;
            let redacted = redact(tree.content).await?;
            let page = view::cap_lines(&redacted, max_bytes);
            return Ok(Viewed {
                shown: Shown::Dir,
                content: page.content,
                truncated: tree.truncated || page.truncated,
                total: tree.entries,
            });
        }

        let shown = opened.rel.clone();
        let fd = opened.fd;
        let (start, end) = (request.start_line, request.end_line);
        let whole = opened.size <= view::WHOLE_FILE_MAX;
        let read = blocking(move || {
            let err = |e: std::io::Error| Error::Internal(format!("cannot read {shown:?}: {e}"));
            if whole {
                view::read_up_to(&fd, view::WHOLE_FILE_MAX)
                    .map(Read::Whole)
                    .map_err(err)
            } else {
                let sniff = view::read_up_to(&fd, 8192).map_err(err)?;
                if sniff.contains(&0) {
                    return Ok(Read::Whole(sniff));
                }
                view::stream_range(&fd, start, end, max_bytes + REDACT_MARGIN)
                    .map(|(text, total, cut)| Read::Range { text, total, cut })
                    .map_err(err)
            }
        })
        .await?;
        let binary = |len: u64| Viewed {
            shown: Shown::File,
            content: format!("{}: binary file of {len} bytes, not shown\n", opened.rel),
            truncated: false,
            total: 0,
        };
        match read {
            Read::Whole(bytes) => {
                if view::is_binary(&bytes) {
                    return Ok(binary(opened.size));
                }
                let text = String::from_utf8(bytes)
                    .map_err(|_| Error::Internal("file changed while read".into()))?;
                let redacted = redact(text).await?;
                let total = redacted.lines().count() as u64;
                let (first, last) = view::line_range(start, end, total)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                let count = usize::try_from((last + 1).saturating_sub(first)).unwrap_or(usize::MAX);
                let skip = usize::try_from(first - 1).unwrap_or(usize::MAX);
                let page =
                    view::number_lines(redacted.lines().skip(skip).take(count), first, max_bytes);
                Ok(Viewed {
                    shown: Shown::File,
                    content: page.content,
                    truncated: page.truncated,
                    total,
                })
            }
            Read::Range { text, total, cut } => {
                let (first, _) = view::line_range(start, end, total)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
                let redacted = redact(text).await?;
                let page = view::number_lines(redacted.lines(), first, max_bytes);
                Ok(Viewed {
                    shown: Shown::File,
                    content: page.content,
                    truncated: page.truncated || cut,
                    total,
                })
            }
        }
    }

    pub(crate) async fn create(
        &self,
        session: String,
        path: String,
        content: String,
        bus: &Bus,
    ) -> Result<Change, Error> {
        check_session(&session)?;
        let peers = bus.peers(&self.config().exec);
        let judged = self
            .judge(&peers, CheckKind::Write, &session, &path)
            .await?;
        let summary_of = (content.len(), content.lines().count());
        let resolved = resolve(&peers, &session, content).await?;
        let _guard = self.writes.lock().await;
        let core = Arc::clone(&self.core);
        let (s, p) = (session.clone(), path.clone());
        let change =
            blocking(move || core.create(&s, &p, resolved.as_bytes(), &judged, summary_of)).await?;
        log_change(&change, bus);
        Ok(change)
    }

    pub(crate) async fn str_replace(
        &self,
        session: String,
        path: String,
        old: String,
        new: String,
        replace_all: bool,
        bus: &Bus,
    ) -> Result<Change, Error> {
        check_session(&session)?;
        if old.is_empty() {
            return Err(Error::InvalidArgument(
                "old is empty: give the exact text to replace".into(),
            ));
        }
        let peers = bus.peers(&self.config().exec);
        let judged = self
            .judge(&peers, CheckKind::Write, &session, &path)
            .await?;
        let lines = (old.lines().count().max(1), new.lines().count());
        let old = resolve(&peers, &session, old).await?;
        let new = resolve(&peers, &session, new).await?;
        let _guard = self.writes.lock().await;
        let core = Arc::clone(&self.core);
        let (s, p) = (session.clone(), path.clone());
        let change = blocking(move || {
            core.str_replace(
                &s,
                &p,
                old.as_bytes(),
                new.as_bytes(),
                replace_all,
                &judged,
                lines,
            )
        })
        .await?;
        log_change(&change, bus);
        Ok(change)
    }

    pub(crate) async fn remove(
        &self,
        session: String,
        path: String,
        bus: &Bus,
    ) -> Result<Change, Error> {
        check_session(&session)?;
        let peers = bus.peers(&self.config().exec);
        let judged = self
            .judge(&peers, CheckKind::Delete, &session, &path)
            .await?;
        let _guard = self.writes.lock().await;
        let core = Arc::clone(&self.core);
        let (s, p) = (session.clone(), path.clone());
        let change = blocking(move || core.remove(&s, &p, &judged)).await?;
        log_change(&change, bus);
        Ok(change)
    }

    pub(crate) async fn changes(&self, session: String) -> Result<Vec<Change>, Error> {
        if !session.is_empty() {
            check_session(&session)?;
        }
        let core = Arc::clone(&self.core);
        let list = blocking(move || {
            core.db(|db| db.list((!session.is_empty()).then_some(session.as_str())))
        })
        .await?;
        Ok(list)
    }

    pub(crate) async fn revert(&self, change_id: String, bus: &Bus) -> Result<Change, Error> {
        if !valid_change_id(&change_id) {
            return Err(Error::InvalidArgument(format!(
                "{change_id:?} is not a change id (c- and 12 hex digits)"
            )));
        }
        let core = Arc::clone(&self.core);
        let id = change_id.clone();
        let change = blocking(move || core.db(|db| db.get(&id))).await?;
        let change =
            change.ok_or_else(|| Error::InvalidArgument(format!("no change {change_id}")))?;
        if change.reverted_ms != 0 {
            return Err(already_reverted(&change));
        }
        let peers = bus.peers(&self.config().exec);
        let judged = self
            .judge(&peers, CheckKind::Write, &change.session, &change.path)
            .await?;
        let _guard = self.writes.lock().await;
        let core = Arc::clone(&self.core);
        let reverted = blocking(move || core.revert(&change_id, &judged)).await?;
        info!(
            session = %reverted.session,
            caller = %bus.caller(),
            change = %reverted.id,
            kind = reverted.kind.as_str(),
            path = %reverted.path,
            "file change reverted"
        );
        Ok(reverted)
    }

    /// Locates the target (without creating anything) and asks the warden about it; returns
    /// the host path it judged.
    async fn judge(
        &self,
        peers: &Peers,
        kind: CheckKind,
        session: &str,
        path: &str,
    ) -> Result<String, Error> {
        let core = Arc::clone(&self.core);
        let (s, p) = (session.to_string(), path.to_string());
        let host = blocking(move || core.probe(&s, &p)).await?;
        match peers.check(kind, &host, session).await {
            Ok(_) => Ok(host),
            Err(refusal) => Err(Error::Refused {
                action: if kind == CheckKind::Delete {
                    "delete"
                } else {
                    "write"
                },
                host,
                decision: refusal.decision,
                rule: refusal.rule,
                reason: refusal.reason,
            }),
        }
    }
}

/// What `View` read of a file.
enum Read {
    Whole(Vec<u8>),
    Range { text: String, total: u64, cut: bool },
}

fn log_change(change: &Change, bus: &Bus) {
    info!(
        session = %change.session,
        caller = %bus.caller(),
        change = %change.id,
        kind = change.kind.as_str(),
        path = %change.path,
        summary = %change.summary,
        "file change"
    );
}

fn check_session(session: &str) -> Result<(), Error> {
    if valid_session(session) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "session must be 1 to 64 of A-Z a-z 0-9 _ -".into(),
        ))
    }
}

fn valid_change_id(id: &str) -> bool {
    id.len() == 14
        && id.starts_with("c-")
        && id[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn already_reverted(change: &Change) -> Error {
    Error::InvalidArgument(format!(
        "change {} was already reverted (at {} ms)",
        change.id, change.reverted_ms
    ))
}

fn compile(pattern: &str) -> Result<(regex::Regex, regex::bytes::Regex), Error> {
    let bad = |e: regex::Error| {
        Error::InvalidArgument(format!(
            "grep pattern is not a valid regular expression: {e}"
        ))
    };
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(bad)?;
    let bytes = regex::bytes::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(bad)?;
    Ok((re, bytes))
}

/// Runs file-system work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("file tool thread failed: {e}")))?
}

/// Resolves the placeholders of `text` through secretd (plain text, not a shell command).
async fn resolve(peers: &Peers, session: &str, text: String) -> Result<String, Error> {
    peers
        .resolve_text(session, text)
        .await
        .map_err(|e| match e {
            PeerError::Unresolvable(_) => Error::Peer(e),
            e => Error::NotWritten(e),
        })
}

/// The workspace-relative form of a requested path: no `..`, no NUL, inside `workspace`
/// when absolute. Empty (or `.`) is the workspace itself.
pub(crate) fn relative(workspace: &Path, path: &str) -> Result<PathBuf, Error> {
    let invalid = |why: &str| Error::InvalidArgument(format!("path {path:?} {why}"));
    if path.contains('\0') {
        return Err(invalid("holds a NUL byte"));
    }
    let p = Path::new(path);
    let rest = if p.is_absolute() {
        p.strip_prefix(workspace)
            .map_err(|_| invalid(&format!("is outside the workspace {}", workspace.display())))?
    } else {
        p
    };
    let mut rel = PathBuf::new();
    for c in rest.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(invalid("contains `..`; give a path inside the workspace"));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid("is outside the workspace"));
            }
        }
    }
    Ok(rel)
}

/// Replaces `old` by `new` in `text`: exactly one match, or every match with `all`.
/// `Err(matches)` when that count is not acceptable (none, or several without `all`).
pub(crate) fn replace(
    text: &[u8],
    old: &[u8],
    new: &[u8],
    all: bool,
) -> Result<(Vec<u8>, usize), usize> {
    let at = find_all(text, old);
    if at.is_empty() || (at.len() > 1 && !all) {
        return Err(at.len());
    }
    let mut out = Vec::with_capacity(text.len() + at.len() * new.len());
    let mut from = 0;
    for &i in &at {
        out.extend_from_slice(&text[from..i]);
        out.extend_from_slice(new);
        from = i + old.len();
    }
    out.extend_from_slice(&text[from..]);
    Ok((out, at.len()))
}

/// Starts of the non-overlapping occurrences of `needle` (not empty) in `haystack`.
fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return Vec::new();
    }
    if let (Ok(h), Ok(n)) = (std::str::from_utf8(haystack), std::str::from_utf8(needle)) {
        // Two-way search: linear whatever the input.
        return h.match_indices(n).map(|(i, _)| i).collect();
    }
    let mut at = Vec::new();
    let mut i = 0;
    while i + needle.len() <= haystack.len() {
        if haystack[i..].starts_with(needle) {
            at.push(i);
            i += needle.len();
        } else {
            i += 1;
        }
    }
    at
}

/// A file or folder `View` opened below the workspace.
struct Opened {
    fd: OwnedFd,
    is_dir: bool,
    size: u64,
    /// Workspace-relative, as shown.
    rel: String,
}

/// Where a change lands.
struct Located {
    /// Workspace-relative, as shown and recorded.
    rel: String,
    /// The folder that holds it; `None` when a folder on the way does not exist yet.
    parent: Option<OwnedFd>,
    name: OsString,
    /// Absolute host path through the real parent folder: what the warden judges.
    host: String,
}

/// A regular file as it was before a change.
struct Previous {
    bytes: Vec<u8>,
    mode: u32,
}

/// The blocking side: workspaces, backups and the database.
#[derive(Debug)]
struct Core {
    state_dir: PathBuf,
    db: Mutex<Option<ChangeDb>>,
}

impl Core {
    fn new(state_dir: PathBuf) -> Core {
        Core {
            state_dir,
            db: Mutex::new(None),
        }
    }

    fn workspace(&self, session: &str) -> PathBuf {
        self.state_dir.join("workspaces").join(session)
    }

    /// Runs `f` on the database, opening it on first use.
    fn db<T>(
        &self,
        f: impl FnOnce(&ChangeDb) -> Result<T, crate::changes::DbError>,
    ) -> Result<T, Error> {
        let mut guard = self
            .db
            .lock()
            .map_err(|_| Error::Internal("the changes database lock is poisoned".into()))?;
        if guard.is_none() {
            let db = ChangeDb::open(&self.state_dir.join("changes.db"))?;
            *guard = Some(db);
        }
        let db = guard
            .as_ref()
            .ok_or_else(|| Error::Internal("changes database not open".into()))?;
        Ok(f(db)?)
    }

    /// Opens the workspace (created when missing) and its real path.
    fn open_workspace(&self, session: &str) -> Result<(OwnedFd, PathBuf, PathBuf), Error> {
        let ws = self.workspace(session);
        std::fs::create_dir_all(&ws)
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", ws.display())))?;
        let fd = rustix::fs::open(
            &ws,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::Internal(format!("cannot open {}: {e}", ws.display())))?;
        let real = fd_path(&fd)
            .map_err(|e| Error::Internal(format!("cannot resolve {}: {e}", ws.display())))?;
        Ok((fd, ws, real))
    }

    fn open_for_view(&self, session: &str, path: &str) -> Result<Opened, Error> {
        let (ws, ws_path, _) = self.open_workspace(session)?;
        let rel = relative(&ws_path, path)?;
        let shown = shown(&rel, path)?;
        let fd = open_beneath(&ws, &rel, OFlags::RDONLY | OFlags::NONBLOCK)
            .map_err(|e| path_error(&shown, e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| path_error(&shown, e))?;
        let is_dir = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => true,
            FileType::RegularFile => false,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "path {shown:?} is not a regular file or a folder"
                )));
            }
        };
        Ok(Opened {
            fd,
            is_dir,
            size: u64::try_from(st.st_size).unwrap_or(0),
            rel: shown,
        })
    }

    /// The host path a change of `path` would touch, creating nothing but the workspace.
    fn probe(&self, session: &str, path: &str) -> Result<String, Error> {
        Ok(self.locate(session, path, false)?.host)
    }

    /// Finds the parent folder of `path` below the workspace, creating missing folders when
    /// `create`.
    fn locate(&self, session: &str, path: &str, create: bool) -> Result<Located, Error> {
        let (ws, ws_path, ws_real) = self.open_workspace(session)?;
        let rel = relative(&ws_path, path)?;
        let shown = shown(&rel, path)?;
        let Some(name) = rel.file_name().map(OsStr::to_os_string) else {
            return Err(Error::InvalidArgument(format!(
                "path {path:?} is the workspace itself; name a file or folder inside it"
            )));
        };
        let mut parent = ws.try_clone().map_err(|e| Error::Internal(e.to_string()))?;
        let mut missing = PathBuf::new();
        let mut prefix = PathBuf::new();
        for comp in rel.parent().into_iter().flat_map(Path::components) {
            if !missing.as_os_str().is_empty() {
                missing.push(comp);
                continue;
            }
            prefix.push(comp);
            match open_beneath(&ws, &prefix, OFlags::RDONLY | OFlags::DIRECTORY) {
                Ok(fd) => parent = fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(
                        &parent,
                        comp.as_os_str(),
                        Mode::from_raw_mode(NEW_DIR_MODE),
                    ) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(path_error(&shown, e)),
                    }
                    let child = open_beneath(&ws, &prefix, OFlags::RDONLY | OFlags::DIRECTORY)
                        .map_err(|e| path_error(&shown, e))?;
                    give_to_owner_of(&parent, &child);
                    parent = child;
                }
                Err(Errno::NOENT) => missing.push(comp),
                Err(e) => return Err(path_error(&shown, e)),
            }
        }
        let real = fd_path(&parent)
            .map_err(|e| Error::Internal(format!("cannot resolve {shown:?}: {e}")))?;
        if !real.starts_with(&ws_real) {
            return Err(Error::InvalidArgument(format!(
                "path {shown:?} leads outside the workspace"
            )));
        }
        let host = real.join(&missing).join(&name);
        let host = host
            .to_str()
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "path {shown:?} resolves to a name that is not UTF-8"
                ))
            })?
            .to_string();
        Ok(Located {
            rel: shown,
            parent: missing.as_os_str().is_empty().then_some(parent),
            name,
            host,
        })
    }

    /// Locates `path` for a change the warden judged at `judged`, creating missing folders
    /// when `create`; refuses when the path now lands somewhere else.
    fn locate_judged(
        &self,
        session: &str,
        path: &str,
        judged: &str,
        create: bool,
    ) -> Result<Located, Error> {
        let loc = self.locate(session, path, create)?;
        if loc.host != judged {
            return Err(Error::InvalidArgument(format!(
                "path {:?} changed while the warden judged it; try again",
                loc.rel
            )));
        }
        Ok(loc)
    }

    /// `<state>/backups/<session>`, 0700 like its parent, and its path.
    fn backups(&self, session: &str) -> Result<(OwnedFd, PathBuf), Error> {
        let root = self.state_dir.join("backups");
        let dir = root.join(session);
        let fail =
            |e: std::io::Error| Error::Internal(format!("backups folder {}: {e}", dir.display()));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(fail)?;
        for d in [&root, &dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
        }
        let fd = rustix::fs::open(
            &dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(e.into()))?;
        Ok((fd, dir))
    }

    /// The regular file at `loc` (`None` when nothing is there); anything else is refused.
    fn previous(&self, loc: &Located) -> Result<Option<Previous>, Error> {
        let Some(parent) = &loc.parent else {
            return Ok(None);
        };
        let st = match rustix::fs::statat(parent, &loc.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(path_error(&loc.rel, e)),
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Symlink => {
                return Err(Error::InvalidArgument(format!(
                    "path {:?} is a symbolic link; give the path of the file it points to",
                    loc.rel
                )));
            }
            FileType::Directory => {
                return Err(Error::InvalidArgument(format!(
                    "path {:?} is a folder",
                    loc.rel
                )));
            }
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "path {:?} is not a regular file",
                    loc.rel
                )));
            }
        }
        let fd = rustix::fs::openat(
            parent,
            &loc.name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| path_error(&loc.rel, e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| path_error(&loc.rel, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(Error::InvalidArgument(format!(
                "path {:?} is not a regular file",
                loc.rel
            )));
        }
        let size = u64::try_from(st.st_size).unwrap_or(u64::MAX);
        if size > EDIT_MAX {
            return Err(Error::InvalidArgument(format!(
                "path {:?} is {size} bytes; the file tools change files up to {EDIT_MAX} bytes",
                loc.rel
            )));
        }
        let bytes = view::read_up_to(&fd, EDIT_MAX + 1)
            .map_err(|e| Error::Internal(format!("cannot read {:?}: {e}", loc.rel)))?;
        Ok(Some(Previous {
            bytes,
            mode: st.st_mode & 0o777,
        }))
    }

    /// Keeps the previous bytes of a file as `<backups>/<session>/<id>`.
    fn back_up(&self, session: &str, id: &str, bytes: &[u8]) -> Result<String, Error> {
        let (dir, path) = self.backups(session)?;
        let fail =
            |e: std::io::Error| Error::Internal(format!("cannot write the backup {id}: {e}"));
        let fd = rustix::fs::openat(
            &dir,
            id,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| fail(e.into()))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        rustix::fs::fsync(&dir).map_err(|e| fail(e.into()))?;
        Ok(path.join(id).display().to_string())
    }

    fn forget_backup(&self, session: &str, id: &str) {
        let _ = std::fs::remove_file(self.state_dir.join("backups").join(session).join(id));
    }

    fn create(
        &self,
        session: &str,
        path: &str,
        content: &[u8],
        judged: &str,
        (bytes, lines): (usize, usize),
    ) -> Result<Change, Error> {
        let loc = self.locate_judged(session, path, judged, true)?;
        let parent = loc
            .parent
            .as_ref()
            .ok_or_else(|| Error::Internal(format!("no folder for {:?}", loc.rel)))?;
        let previous = self.previous(&loc)?;
        let id = new_id()?;
        let backup = match &previous {
            Some(p) => Some(self.back_up(session, &id, &p.bytes)?),
            None => None,
        };
        let mode = previous.as_ref().map_or(NEW_FILE_MODE, |p| p.mode);
        if let Err(e) = write_atomic(parent, &loc.name, content, mode) {
            self.forget_backup(session, &id);
            return Err(Error::Internal(format!("cannot write {:?}: {e}", loc.rel)));
        }
        let change = Change {
            id,
            session: session.into(),
            kind: Kind::Create,
            path: loc.rel.clone(),
            existed: previous.is_some(),
            prev_mode: previous.as_ref().map(|p| p.mode),
            backup,
            new_sha256: Some(sha256(content)),
            created_ms: now_ms(),
            reverted_ms: 0,
            revert_backup: None,
            summary: format!(
                "{} {bytes} bytes, {lines} lines",
                if previous.is_some() {
                    "overwrote with"
                } else {
                    "created with"
                }
            ),
        };
        self.record(&change, || match &previous {
            Some(p) => write_atomic(parent, &loc.name, &p.bytes, p.mode),
            None => Ok(rustix::fs::unlinkat(parent, &loc.name, AtFlags::empty())?),
        })?;
        Ok(change)
    }

    #[allow(clippy::too_many_arguments)]
    fn str_replace(
        &self,
        session: &str,
        path: &str,
        old: &[u8],
        new: &[u8],
        all: bool,
        judged: &str,
        (old_lines, new_lines): (usize, usize),
    ) -> Result<Change, Error> {
        let loc = self.locate_judged(session, path, judged, false)?;
        let previous = self
            .previous(&loc)?
            .ok_or_else(|| Error::InvalidArgument(format!("path {:?} does not exist", loc.rel)))?;
        let parent = loc
            .parent
            .as_ref()
            .ok_or_else(|| Error::Internal(format!("no folder for {:?}", loc.rel)))?;
        let (bytes, count) = replace(&previous.bytes, old, new, all).map_err(|n| {
            Error::InvalidArgument(match n {
                0 => format!(
                    "old text not found in {:?} (0 matches); the file is unchanged",
                    loc.rel
                ),
                n => format!(
                    "old text matches {n} times in {:?}; give more context to make it unique, \
                     or set replace_all; the file is unchanged",
                    loc.rel
                ),
            })
        })?;
        let id = new_id()?;
        let backup = self.back_up(session, &id, &previous.bytes)?;
        if let Err(e) = write_atomic(parent, &loc.name, &bytes, previous.mode) {
            self.forget_backup(session, &id);
            return Err(Error::Internal(format!("cannot write {:?}: {e}", loc.rel)));
        }
        let change = Change {
            id,
            session: session.into(),
            kind: Kind::Edit,
            path: loc.rel.clone(),
            existed: true,
            prev_mode: Some(previous.mode),
            backup: Some(backup),
            new_sha256: Some(sha256(&bytes)),
            created_ms: now_ms(),
            reverted_ms: 0,
            revert_backup: None,
            summary: format!(
                "replaced {count} match{}, +{} -{} lines",
                if count == 1 { "" } else { "es" },
                count * new_lines,
                count * old_lines
            ),
        };
        self.record(&change, || {
            write_atomic(parent, &loc.name, &previous.bytes, previous.mode)
        })?;
        Ok(change)
    }

    fn remove(&self, session: &str, path: &str, judged: &str) -> Result<Change, Error> {
        let loc = self.locate_judged(session, path, judged, false)?;
        let not_there = || Error::InvalidArgument(format!("path {:?} does not exist", loc.rel));
        let parent = loc.parent.as_ref().ok_or_else(not_there)?;
        let st = match rustix::fs::statat(parent, &loc.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Err(not_there()),
            Err(e) => return Err(path_error(&loc.rel, e)),
        };
        let what = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => "folder".to_string(),
            FileType::Symlink => "symbolic link".to_string(),
            FileType::RegularFile => format!("file of {} bytes", st.st_size),
            _ => "special file".to_string(),
        };
        let id = new_id()?;
        let (dir, dir_path) = self.backups(session)?;
        rustix::fs::renameat_with(parent, &loc.name, &dir, id.as_str(), RenameFlags::NOREPLACE)
            .map_err(|e| match e {
                Errno::XDEV => Error::Internal(format!(
                    "cannot move {:?} to the backups: they are on another file system",
                    loc.rel
                )),
                e => Error::Internal(format!("cannot move {:?} to the backups: {e}", loc.rel)),
            })?;
        let _ = rustix::fs::fsync(parent);
        let _ = rustix::fs::fsync(&dir);
        let change = Change {
            id: id.clone(),
            session: session.into(),
            kind: Kind::Remove,
            path: loc.rel.clone(),
            existed: true,
            prev_mode: Some(st.st_mode & 0o7777),
            backup: Some(dir_path.join(&id).display().to_string()),
            new_sha256: None,
            created_ms: now_ms(),
            reverted_ms: 0,
            revert_backup: None,
            summary: format!("removed {what}, kept as backup {id}"),
        };
        self.record(&change, || {
            Ok(rustix::fs::renameat_with(
                &dir,
                id.as_str(),
                parent,
                &loc.name,
                RenameFlags::NOREPLACE,
            )?)
        })?;
        Ok(change)
    }

    /// Records a change; when that fails, undoes it with `undo` and says so.
    fn record(
        &self,
        change: &Change,
        undo: impl FnOnce() -> std::io::Result<()>,
    ) -> Result<(), Error> {
        match self.db(|db| db.insert(change)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let undone = match undo() {
                    Ok(()) => "the change was undone".to_string(),
                    Err(u) => format!("undoing it failed too ({u}); the backup is {}", change.id),
                };
                Err(Error::Internal(format!(
                    "cannot record the change of {:?}: {e}; {undone}",
                    change.path
                )))
            }
        }
    }

    fn revert(&self, id: &str, judged: &str) -> Result<Change, Error> {
        let change = self
            .db(|db| db.get(id))?
            .ok_or_else(|| Error::InvalidArgument(format!("no change {id}")))?;
        if change.reverted_ms != 0 {
            return Err(already_reverted(&change));
        }
        let session = change.session.as_str();
        let mut revert_backup = None;
        match change.kind {
            Kind::Create | Kind::Edit => {
                let loc = self.locate_judged(session, &change.path, judged, false)?;
                let current = self.previous(&loc)?.ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "path {:?} no longer exists; change {id} cannot be reverted",
                        change.path
                    ))
                })?;
                if change.new_sha256.as_deref() != Some(sha256(&current.bytes).as_str()) {
                    return Err(Error::InvalidArgument(format!(
                        "path {:?} changed since change {id}; revert the later changes first",
                        change.path
                    )));
                }
                let parent = loc
                    .parent
                    .as_ref()
                    .ok_or_else(|| Error::Internal(format!("no folder for {:?}", change.path)))?;
                if change.existed {
                    let (dir, _) = self.backups(session)?;
                    let fd = rustix::fs::openat(
                        &dir,
                        id,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| Error::Internal(format!("backup of {id} is missing: {e}")))?;
                    let bytes = view::read_up_to(&fd, EDIT_MAX + 1).map_err(|e| {
                        Error::Internal(format!("cannot read the backup of {id}: {e}"))
                    })?;
                    let mode = change.prev_mode.unwrap_or(NEW_FILE_MODE);
                    write_atomic(parent, &loc.name, &bytes, mode).map_err(|e| {
                        Error::Internal(format!("cannot restore {:?}: {e}", change.path))
                    })?;
                } else {
                    let (dir, dir_path) = self.backups(session)?;
                    let name = format!("{id}.reverted");
                    rustix::fs::renameat_with(
                        parent,
                        &loc.name,
                        &dir,
                        name.as_str(),
                        RenameFlags::NOREPLACE,
                    )
                    .map_err(|e| {
                        Error::Internal(format!(
                            "cannot move {:?} to the backups: {e}",
                            change.path
                        ))
                    })?;
                    let _ = rustix::fs::fsync(parent);
                    let _ = rustix::fs::fsync(&dir);
                    revert_backup = Some(dir_path.join(name).display().to_string());
                }
            }
            Kind::Remove => {
                let loc = self.locate_judged(session, &change.path, judged, true)?;
                let parent = loc
                    .parent
                    .as_ref()
                    .ok_or_else(|| Error::Internal(format!("no folder for {:?}", change.path)))?;
                let (dir, _) = self.backups(session)?;
                rustix::fs::renameat_with(&dir, id, parent, &loc.name, RenameFlags::NOREPLACE)
                    .map_err(|e| match e {
                        Errno::EXIST | Errno::NOTEMPTY => Error::InvalidArgument(format!(
                            "path {:?} exists again; move it away before reverting {id}",
                            change.path
                        )),
                        e => Error::Internal(format!("cannot restore {:?}: {e}", change.path)),
                    })?;
                let _ = rustix::fs::fsync(parent);
                let _ = rustix::fs::fsync(&dir);
            }
        }
        let when = now_ms();
        if !self.db(|db| db.mark_reverted(id, when, revert_backup.as_deref()))? {
            return Err(Error::Internal(format!(
                "change {id} was reverted twice at once"
            )));
        }
        Ok(Change {
            reverted_ms: when,
            revert_backup,
            ..change
        })
    }
}

/// The workspace-relative path as shown to the caller (`.` for the workspace).
fn shown(rel: &Path, requested: &str) -> Result<String, Error> {
    if rel.as_os_str().is_empty() {
        return Ok(".".into());
    }
    rel.to_str()
        .map(str::to_string)
        .ok_or_else(|| Error::InvalidArgument(format!("path {requested:?} is not UTF-8")))
}

/// Opens `rel` below the workspace: the kernel refuses (`EXDEV`) any resolution, through
/// `..` or a symlink, that would leave it.
fn open_beneath(ws: &OwnedFd, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            ws,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        ) {
            // A rename elsewhere raced the lookup; the kernel asks to try again.
            Err(Errno::AGAIN) if tries < 8 => tries += 1,
            result => return result,
        }
    }
}

fn path_error(shown: &str, e: Errno) -> Error {
    match e {
        Errno::XDEV => Error::InvalidArgument(format!(
            "path {shown:?} leads outside the workspace (through a symbolic link)"
        )),
        Errno::LOOP => Error::InvalidArgument(format!("path {shown:?}: too many symbolic links")),
        Errno::NOENT => Error::InvalidArgument(format!("path {shown:?} does not exist")),
        Errno::NOTDIR => Error::InvalidArgument(format!(
            "path {shown:?}: a folder on the way is not a folder"
        )),
        Errno::ACCESS | Errno::PERM => Error::PathDenied {
            path: shown.to_string(),
            errno: e,
        },
        e => Error::Internal(format!("path {shown:?}: {e}")),
    }
}

/// The path the kernel has for an open descriptor.
fn fd_path(fd: &OwnedFd) -> std::io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Writes `bytes` to `name` in `parent` atomically: a temporary file in the same folder,
/// written, given `mode`, fsynced, renamed over `name`; then the folder is fsynced. On
/// failure the temporary file is removed and `name` is untouched.
pub(crate) fn write_atomic(
    parent: &impl AsFd,
    name: &OsStr,
    bytes: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let tmp = format!(".stakpak-write-{}.tmp", random_hex(6)?);
    let fd = rustix::fs::openat(
        parent,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes)?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & 0o777))?;
        give_to_owner_of(parent, &file);
        file.sync_all()?;
        rustix::fs::renameat(parent, tmp.as_str(), parent, name)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(parent, tmp.as_str(), AtFlags::empty());
        return result;
    }
    rustix::fs::fsync(parent)?;
    Ok(())
}

/// Hands a file or folder sandboxd just made to the owner of the folder it was made in, so
/// that what the file tools write belongs, like the workspace, to the user commands run as
/// (installed: `stakpak-run`). Nothing to do when that is sandboxd itself; a failure leaves
/// sandboxd the owner, which only costs commands access, never a secret.
fn give_to_owner_of(folder: &impl AsFd, made: &impl AsFd) {
    let Ok(st) = rustix::fs::fstat(folder) else {
        return;
    };
    if st.st_uid == rustix::process::geteuid().as_raw() {
        return;
    }
    let _ = rustix::fs::fchown(
        made,
        Some(rustix::process::Uid::from_raw(st.st_uid)),
        Some(rustix::process::Gid::from_raw(st.st_gid)),
    );
}

fn random_hex(n: usize) -> std::io::Result<String> {
    stakpak_util::random::hex(n).map_err(std::io::Error::other)
}

/// `c-` and 12 hex digits.
fn new_id() -> Result<String, Error> {
    stakpak_util::random::id("c")
        .map_err(|e| Error::Internal(format!("cannot make a change id: {e}")))
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::{MetadataExt, symlink};

    use super::*;

    #[test]
    fn paths() {
        let ws = Path::new("/s/workspaces/a");
        for (path, expected) in [
            ("", Some("")),
            (".", Some("")),
            ("x/y.txt", Some("x/y.txt")),
            ("./x//y", Some("x/y")),
            ("/s/workspaces/a/x", Some("x")),
            ("/s/workspaces/a", Some("")),
            ("../b/x", None),
            ("x/../../y", None),
            ("x/../y", None),
            ("/etc/passwd", None),
            ("/s/workspaces/ab/x", None),
            ("/s/workspaces/a/../b", None),
            ("x\0y", None),
        ] {
            let got = relative(ws, path);
            match expected {
                Some(rel) => assert_eq!(got.unwrap(), PathBuf::from(rel), "{path:?}"),
                None => match got {
                    Err(Error::InvalidArgument(m)) => {
                        assert!(m.contains(&format!("{path:?}")), "{m}")
                    }
                    other => panic!("{path:?}: {other:?}"),
                },
            }
        }
    }

    #[test]
    fn replacing() {
        let t = b"a foo b foo c";
        assert_eq!(replace(t, b"foo", b"X", false), Err(2));
        assert_eq!(replace(t, b"bar", b"X", false), Err(0));
        assert_eq!(
            replace(t, b"foo", b"X", true),
            Ok((b"a X b X c".to_vec(), 2))
        );
        assert_eq!(
            replace(t, b"b foo", b"", false),
            Ok((b"a foo  c".to_vec(), 1))
        );
        assert_eq!(replace(b"aaaa", b"aa", b"b", true), Ok((b"bb".to_vec(), 2)));
        // Not UTF-8: the byte search.
        assert_eq!(
            replace(b"\xff x \xff", b"x", b"y", false),
            Ok((b"\xff y \xff".to_vec(), 1))
        );
        assert_eq!(replace(b"\xffxx", b"x", b"y", false), Err(2));
    }

    #[test]
    fn atomic_write_keeps_mode_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let fd: OwnedFd = std::fs::File::open(dir.path()).unwrap().into();
        let target = dir.path().join("f");
        std::fs::write(&target, "old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o751)).unwrap();
        write_atomic(&fd, OsStr::new("f"), b"new", 0o751).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o751);
        // Renaming over a folder fails: the folder stays, no temporary file is left.
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/x"), "x").unwrap();
        assert!(write_atomic(&fd, OsStr::new("d"), b"new", 0o644).is_err());
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["d", "f"]);
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        core: Core,
        ws: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let core = Core::new(dir.path().to_path_buf());
        let ws = core.workspace("s");
        std::fs::create_dir_all(&ws).unwrap();
        Fixture {
            ws: std::fs::canonicalize(&ws).unwrap(),
            core,
            _dir: dir,
        }
    }

    impl Fixture {
        fn host(&self, rel: &str) -> String {
            self.core.probe("s", rel).unwrap()
        }
        fn create(&self, rel: &str, text: &str) -> Change {
            self.core
                .create("s", rel, text.as_bytes(), &self.host(rel), (text.len(), 1))
                .unwrap()
        }
        fn revert(&self, change: &Change) -> Result<Change, Error> {
            self.core.revert(&change.id, &self.host(&change.path))
        }
    }

    #[test]
    fn symlinks_that_leave_are_refused_and_hosts_are_real() {
        let f = fixture();
        let outside = f._dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, f.ws.join("out")).unwrap();
        symlink("../..", f.ws.join("up")).unwrap();
        std::fs::create_dir(f.ws.join("real")).unwrap();
        symlink("real", f.ws.join("inside")).unwrap();
        for rel in ["out/x", "up/x", "out/a/b"] {
            match f.core.probe("s", rel) {
                Err(Error::InvalidArgument(m)) => {
                    assert!(m.contains("leads outside the workspace"), "{rel}: {m}")
                }
                other => panic!("{rel}: {other:?}"),
            }
        }
        // A symlink that stays inside is followed, and the warden sees the real folder.
        assert_eq!(
            f.host("inside/x"),
            f.ws.join("real/x").display().to_string()
        );
        assert_eq!(
            f.host("new/a/b"),
            f.ws.join("new/a/b").display().to_string()
        );
        assert!(!f.ws.join("new").exists(), "probing created folders");
        // Writing through a final symlink is refused.
        symlink("real/t", f.ws.join("link")).unwrap();
        let err = f
            .core
            .create("s", "link", b"x", &f.host("link"), (1, 1))
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("symbolic link")),
            "{err:?}"
        );
        assert!(!outside.join("x").exists());
    }

    #[test]
    fn create_then_revert_removes_the_file_into_the_backups() {
        let f = fixture();
        let c = f.create("a/b/new.txt", "hello");
        assert_eq!(
            (c.kind, c.existed, c.path.as_str()),
            (Kind::Create, false, "a/b/new.txt")
        );
        let file = f.ws.join("a/b/new.txt");
        assert_eq!(std::fs::read(&file).unwrap(), b"hello");
        assert_eq!(
            std::fs::metadata(&file).unwrap().mode() & 0o777,
            NEW_FILE_MODE
        );
        let r = f.revert(&c).unwrap();
        assert!(r.reverted_ms > 0);
        assert!(!file.exists());
        let kept = PathBuf::from(r.revert_backup.unwrap());
        assert_eq!(std::fs::read(kept).unwrap(), b"hello");
        let backups = f._dir.path().join("backups");
        assert_eq!(std::fs::metadata(&backups).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            std::fs::metadata(backups.join("s")).unwrap().mode() & 0o777,
            0o700
        );
        // Twice: refused.
        assert!(
            matches!(f.revert(&c), Err(Error::InvalidArgument(m)) if m.contains("already reverted"))
        );
    }

    #[test]
    fn edit_and_overwrite_revert_to_the_exact_bytes_and_mode() {
        let f = fixture();
        let file = f.ws.join("conf");
        std::fs::write(&file, b"port = 1\nname = x\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let edit = f
            .core
            .str_replace(
                "s",
                "conf",
                b"port = 1",
                b"port = 2",
                false,
                &f.host("conf"),
                (1, 1),
            )
            .unwrap();
        assert_eq!(edit.summary, "replaced 1 match, +1 -1 lines");
        assert_eq!(std::fs::read(&file).unwrap(), b"port = 2\nname = x\n");
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o640);

        // Zero or two matches: refused, file untouched.
        for (old, n) in [(&b"nope"[..], "0 matches"), (&b" = "[..], "2 times")] {
            let e = f
                .core
                .str_replace("s", "conf", old, b"y", false, &f.host("conf"), (1, 1))
                .unwrap_err();
            assert!(
                matches!(&e, Error::InvalidArgument(m) if m.contains(n)),
                "{e:?}"
            );
            assert_eq!(std::fs::read(&file).unwrap(), b"port = 2\nname = x\n");
        }

        let over = f.create("conf", "replaced\n");
        assert!(over.existed);
        assert_eq!(over.prev_mode, Some(0o640));
        // The older edit cannot be reverted while the overwrite stands.
        assert!(
            matches!(f.revert(&edit), Err(Error::InvalidArgument(m)) if m.contains("changed since"))
        );
        f.revert(&over).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"port = 2\nname = x\n");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        f.revert(&edit).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"port = 1\nname = x\n");
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o640);

        let list = f.core.db(|db| db.list(Some("s"))).unwrap();
        assert_eq!(
            list.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            [over.id.as_str(), edit.id.as_str()]
        );
        assert!(list.iter().all(|c| c.reverted_ms > 0));
    }

    #[test]
    fn remove_moves_a_tree_away_and_revert_brings_it_back() {
        let f = fixture();
        std::fs::create_dir_all(f.ws.join("d/e")).unwrap();
        std::fs::write(f.ws.join("d/e/x"), b"x").unwrap();
        std::fs::set_permissions(f.ws.join("d"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let c = f.core.remove("s", "d", &f.host("d")).unwrap();
        assert_eq!(c.kind, Kind::Remove);
        assert!(!f.ws.join("d").exists());
        let backup = PathBuf::from(c.backup.clone().unwrap());
        assert_eq!(std::fs::read(backup.join("e/x")).unwrap(), b"x");

        // Something new in its place: refused until moved away.
        std::fs::create_dir(f.ws.join("d")).unwrap();
        std::fs::write(f.ws.join("d/y"), b"y").unwrap();
        assert!(
            matches!(f.revert(&c), Err(Error::InvalidArgument(m)) if m.contains("exists again"))
        );
        std::fs::remove_dir_all(f.ws.join("d")).unwrap();
        f.revert(&c).unwrap();
        assert_eq!(std::fs::read(f.ws.join("d/e/x")).unwrap(), b"x");
        assert_eq!(
            std::fs::metadata(f.ws.join("d")).unwrap().mode() & 0o777,
            0o750
        );

        let e = f
            .core
            .remove("s", "nothing", &f.host("nothing"))
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains("does not exist")),
            "{e:?}"
        );
        assert!(f.core.probe("s", "").is_err(), "the workspace itself");
    }

    #[test]
    fn a_path_that_moves_after_the_verdict_is_refused() {
        let f = fixture();
        let judged = f.host("a/x");
        std::fs::create_dir(f.ws.join("b")).unwrap();
        symlink("b", f.ws.join("a")).unwrap();
        let e = f
            .core
            .create("s", "a/x", b"x", &judged, (1, 1))
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains("changed while")),
            "{e:?}"
        );
        assert!(!f.ws.join("b/x").exists());
    }

    #[test]
    fn change_ids() {
        let id = new_id().unwrap();
        assert!(valid_change_id(&id), "{id}");
        for bad in [
            "",
            "c-",
            "c-12345678901g",
            "x-123456789012",
            "c-1234567890123",
            "c-ABCDEF123456",
        ] {
            assert!(!valid_change_id(bad), "{bad}");
        }
    }
}
