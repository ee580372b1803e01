//! `stakpak logs`: the suite's log lines, from the journal when installed and from the
//! embedded suite's files (`<state-dir>/logs/<name>.log`) otherwise.
//!
//! Embedded, the last lines of each file are merged by their leading timestamp (the daemons
//! and the supervisor write `2026-11-27T03:27:02.867520Z  INFO …`; a line without one, such
//! as a panic's continuation, stays with the line before it), and `-f` polls the files for
//! growth until interrupted.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom, Write},
    os::unix::fs::MetadataExt,
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, bail};
use serde::Serialize;
use stakpak_proto::Daemon;

use crate::{
    locate::{self, Target},
    suite::Layout,
    table,
};

/// How often `-f` looks for new lines.
const POLL: Duration = Duration::from_millis(200);
/// Bytes read backwards at a time when looking for the last lines of a file.
const CHUNK: u64 = 64 * 1024;

/// What can be asked for with `-c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Daemon(Daemon),
    /// `stakpak up`'s supervisor (installed: systemd's view of `stakpak.target`).
    Supervisor,
    /// The embedded suite's private `dbus-daemon` (installed: the system bus).
    Bus,
}

/// Every component, in the order `-c` lists them.
pub const COMPONENTS: [Component; 7] = [
    Component::Daemon(Daemon::Agent),
    Component::Daemon(Daemon::Warden),
    Component::Daemon(Daemon::Secrets),
    Component::Daemon(Daemon::Sandbox),
    Component::Daemon(Daemon::Scheduler),
    Component::Supervisor,
    Component::Bus,
];

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Component::Daemon(d) => d.short_name(),
            Component::Supervisor => "supervisor",
            Component::Bus => "bus",
        }
    }

    /// The embedded suite's log file of this component, without `.log`.
    fn file_stem(self) -> &'static str {
        match self {
            Component::Bus => "dbus-daemon",
            other => other.name(),
        }
    }

    /// The systemd unit whose journal holds this component's lines.
    fn unit(self) -> String {
        match self {
            Component::Daemon(d) => format!("{}.service", d.binary()),
            Component::Supervisor => "stakpak.target".to_string(),
            Component::Bus => "dbus.service".to_string(),
        }
    }

    /// Reads `-c`: a short name (`warden`) or a daemon's binary name (`stakpak-warden`).
    pub fn parse(name: &str) -> anyhow::Result<Component> {
        if let Some(c) = COMPONENTS.iter().find(|c| c.name() == name) {
            return Ok(*c);
        }
        if let Some(d) = Daemon::from_name(name) {
            return Ok(Component::Daemon(d));
        }
        let valid: Vec<&str> = COMPONENTS.iter().map(|c| c.name()).collect();
        bail!(
            "unknown component `{name}`: valid components are {}",
            valid.join(", ")
        )
    }
}

/// The components shown without `-c`: the daemons and the supervisor.
fn default_components() -> Vec<Component> {
    COMPONENTS
        .iter()
        .copied()
        .filter(|c| *c != Component::Bus)
        .collect()
}

/// What `stakpak logs` was asked.
#[derive(Debug, Clone)]
pub struct LogsArgs {
    pub follow: bool,
    pub lines: usize,
    pub component: Option<String>,
    pub json: bool,
}

/// `stakpak logs`.
pub fn run(args: &LogsArgs, layout: &Layout) -> anyhow::Result<ExitCode> {
    let components = match &args.component {
        Some(name) => vec![Component::parse(name)?],
        None => default_components(),
    };
    match locate::locate(None, layout) {
        Ok(Target::System) => journal(args, &components),
        Ok(_) => files(args, &components, layout),
        // No suite runs: the files of the last embedded one, if there was one.
        Err(_) if layout.logs_dir().is_dir() => files(args, &components, layout),
        Err(_) => bail!(
            "no logs: no embedded suite ever ran in {} and no installed suite was found; start one with `stakpak up`",
            layout.root.display()
        ),
    }
}

/// The `journalctl` arguments for the installed suite.
pub fn journalctl_args(
    components: &[Component],
    lines: usize,
    follow: bool,
    json: bool,
) -> Vec<String> {
    let mut args = Vec::new();
    for c in components {
        args.push("-u".to_string());
        args.push(c.unit());
    }
    args.push("-n".to_string());
    args.push(lines.to_string());
    args.push("-o".to_string());
    args.push(if json { "json" } else { "short-iso" }.to_string());
    args.push("--no-pager".to_string());
    if follow {
        args.push("-f".to_string());
    }
    args
}

fn journal(args: &LogsArgs, components: &[Component]) -> anyhow::Result<ExitCode> {
    let status = std::process::Command::new("journalctl")
        .args(journalctl_args(
            components,
            args.lines,
            args.follow,
            args.json,
        ))
        .status()
        .context("cannot run journalctl")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        // Ended by a signal (Ctrl-C during -f): not an error.
        None => ExitCode::SUCCESS,
    })
}

/// One line of a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub component: &'static str,
    /// The line's leading timestamp, or the one of the line it belongs to.
    pub timestamp: String,
    pub text: String,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    component: &'a str,
    timestamp: &'a str,
    line: &'a str,
}

/// The leading RFC 3339 timestamp of a line (`2026-11-27T03:27:02.867520Z`), if it has one.
pub fn timestamp_of(line: &str) -> Option<&str> {
    let token = line.split_whitespace().next()?;
    let b = token.as_bytes();
    let shaped = b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
            .iter()
            .all(|&i| b[i].is_ascii_digit());
    shaped.then_some(token)
}

/// Gives every line of one file a timestamp: its own, else the one before it, else (at the
/// start of a tail) the first one after it.
pub fn stamp(component: &'static str, texts: Vec<String>) -> Vec<Line> {
    let first = texts
        .iter()
        .find_map(|t| timestamp_of(t))
        .unwrap_or("")
        .to_string();
    let mut last = first;
    texts
        .into_iter()
        .map(|text| {
            if let Some(ts) = timestamp_of(&text) {
                last = ts.to_string();
            }
            Line {
                component,
                timestamp: last.clone(),
                text,
            }
        })
        .collect()
}

/// Merges per-file runs of lines by timestamp, keeping each file's own order.
pub fn merge(runs: Vec<Vec<Line>>) -> Vec<Line> {
    let total = runs.iter().map(Vec::len).sum();
    let mut iters: Vec<_> = runs.into_iter().map(|r| r.into_iter().peekable()).collect();
    let mut out = Vec::with_capacity(total);
    loop {
        let next = iters
            .iter_mut()
            .enumerate()
            .filter_map(|(i, it)| it.peek().map(|l| (i, l.timestamp.clone())))
            .min_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)))
            .map(|(i, _)| i);
        match next.and_then(|i| iters[i].next()) {
            Some(line) => out.push(line),
            None => return out,
        }
    }
}

/// The last `n` lines of `file` and the offset just after the last complete one.
pub fn tail(file: &mut File, n: usize) -> io::Result<(Vec<String>, u64)> {
    let len = file.metadata()?.len();
    // Only complete lines count: a line still being written is left for -f.
    let mut buf: Vec<u8> = Vec::new();
    let mut start = len;
    while start > 0 {
        let newlines = buf.iter().filter(|&&b| b == b'\n').count();
        // One more newline than lines wanted: the one ending the line before them.
        if newlines > n {
            break;
        }
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; usize::try_from(start - from).unwrap_or(0)];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = from;
    }
    let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let end = start + complete as u64;
    let text = String::from_utf8_lossy(&buf[..complete]);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // The first line may be cut off by the chunk boundary: drop it unless it starts the file.
    if start > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    Ok((lines.split_off(skip), end))
}

/// One followed file.
#[derive(Debug)]
struct Followed {
    component: &'static str,
    path: PathBuf,
    offset: u64,
    inode: Option<(u64, u64)>,
    partial: Vec<u8>,
}

impl Followed {
    /// New complete lines since the last look; starts over when the file was replaced or
    /// truncated.
    fn poll(&mut self) -> io::Result<Vec<String>> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let inode = Some((meta.dev(), meta.ino()));
        if inode != self.inode || meta.len() < self.offset {
            self.inode = inode;
            self.offset = 0;
            self.partial.clear();
        }
        if meta.len() == self.offset {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut fresh = Vec::new();
        file.take(meta.len() - self.offset)
            .read_to_end(&mut fresh)?;
        self.offset += fresh.len() as u64;
        self.partial.extend_from_slice(&fresh);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        Ok(String::from_utf8_lossy(&complete)
            .lines()
            .map(str::to_string)
            .collect())
    }
}

/// Formats one line for the terminal (`width`: the component column, 0 for none) or JSON.
pub fn format_line(line: &Line, width: usize, json: bool) -> String {
    if json {
        let j = JsonLine {
            component: line.component,
            timestamp: &line.timestamp,
            line: &line.text,
        };
        return serde_json::to_string(&j).unwrap_or_default();
    }
    if width == 0 {
        line.text.clone()
    } else {
        format!("{}  {}", table::pad(line.component, width), line.text)
    }
}

fn files(args: &LogsArgs, components: &[Component], layout: &Layout) -> anyhow::Result<ExitCode> {
    let width = if components.len() > 1 {
        components
            .iter()
            .map(|c| table::width(c.name()))
            .max()
            .unwrap_or(0)
    } else {
        0
    };
    let mut followed = Vec::new();
    let mut runs = Vec::new();
    for c in components {
        let path = layout.log_file(c.file_stem());
        let (texts, offset, inode) = match File::open(&path) {
            Ok(mut f) => {
                let meta = f.metadata()?;
                let (texts, offset) = tail(&mut f, args.lines)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                (texts, offset, Some((meta.dev(), meta.ino())))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), 0, None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        runs.push(stamp(c.name(), texts));
        followed.push(Followed {
            component: c.name(),
            path,
            offset,
            inode,
            partial: Vec::new(),
        });
    }
    let mut merged = merge(runs);
    // Like journalctl -n: the last N lines overall.
    let skip = merged.len().saturating_sub(args.lines);
    merged.drain(..skip);
    if !print(&merged, width, args.json)? || !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    // -f: until Ctrl-C (which ends the process) or a closed stdout.
    loop {
        std::thread::sleep(POLL);
        let mut runs = Vec::new();
        for f in &mut followed {
            let texts = f
                .poll()
                .with_context(|| format!("cannot read {}", f.path.display()))?;
            runs.push(stamp(f.component, texts));
        }
        if !print(&merge(runs), width, args.json)? {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Prints lines; false when stdout is gone (`stakpak logs | head`).
fn print(lines: &[Line], width: usize, json: bool) -> anyhow::Result<bool> {
    if lines.is_empty() {
        return Ok(true);
    }
    let mut out = io::stdout().lock();
    let written = lines
        .iter()
        .try_for_each(|l| writeln!(out, "{}", format_line(l, width, json)))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(component: &'static str, timestamp: &str, text: &str) -> Line {
        Line {
            component,
            timestamp: timestamp.into(),
            text: text.into(),
        }
    }

    #[test]
    fn components_by_name() {
        assert_eq!(
            Component::parse("warden").unwrap(),
            Component::Daemon(Daemon::Warden)
        );
        assert_eq!(
            Component::parse("stakpak-sandboxd").unwrap(),
            Component::Daemon(Daemon::Sandbox)
        );
        assert_eq!(
            Component::parse("supervisor").unwrap(),
            Component::Supervisor
        );
        assert_eq!(
            Component::parse("wardn").unwrap_err().to_string(),
            "unknown component `wardn`: valid components are agent, warden, secretd, sandboxd, schedd, supervisor, bus"
        );
    }

    #[test]
    fn journalctl_gets_units_lines_and_format() {
        assert_eq!(
            journalctl_args(&[Component::Daemon(Daemon::Warden)], 5, true, false),
            [
                "-u",
                "stakpak-warden.service",
                "-n",
                "5",
                "-o",
                "short-iso",
                "--no-pager",
                "-f"
            ]
        );
        let all = journalctl_args(&default_components(), 50, false, true);
        assert_eq!(
            all,
            [
                "-u",
                "stakpak-agent.service",
                "-u",
                "stakpak-warden.service",
                "-u",
                "stakpak-secretd.service",
                "-u",
                "stakpak-sandboxd.service",
                "-u",
                "stakpak-schedd.service",
                "-u",
                "stakpak.target",
                "-n",
                "50",
                "-o",
                "json",
                "--no-pager"
            ]
        );
    }

    #[test]
    fn timestamps_are_recognised() {
        let cases = [
            (
                "2026-11-27T03:27:02.867520Z  INFO serving",
                Some("2026-11-27T03:27:02.867520Z"),
            ),
            ("2026-11-27T03:27:02Z WARN x", Some("2026-11-27T03:27:02Z")),
            ("   at src/main.rs:3", None),
            ("dbus-daemon[18981]: [session uid=0]", None),
            ("2026-11-27 03:27:02 x", None),
            ("", None),
        ];
        for (text, ts) in cases {
            assert_eq!(timestamp_of(text), ts, "{text}");
        }
    }

    #[test]
    fn lines_without_a_timestamp_stay_with_their_neighbours() {
        let texts = [
            "continued",
            "2026-01-01T00:00:01.000000Z a",
            "  detail",
            "2026-01-01T00:00:03.000000Z b",
        ]
        .map(String::from)
        .to_vec();
        let stamped = stamp("agent", texts);
        let stamps: Vec<&str> = stamped.iter().map(|l| l.timestamp.as_str()).collect();
        assert_eq!(
            stamps,
            [
                "2026-01-01T00:00:01.000000Z",
                "2026-01-01T00:00:01.000000Z",
                "2026-01-01T00:00:01.000000Z",
                "2026-01-01T00:00:03.000000Z"
            ]
        );
    }

    #[test]
    fn merging_interleaves_by_time_and_keeps_file_order() {
        let a = vec![
            line("warden", "t1", "w1"),
            line("warden", "t3", "w3"),
            line("warden", "t3", "w3b"),
        ];
        let b = vec![
            line("agent", "t2", "a2"),
            line("agent", "t3", "a3"),
            line("agent", "t4", "a4"),
        ];
        let texts: Vec<String> = merge(vec![a, b]).into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["w1", "a2", "w3", "w3b", "a3", "a4"]);
    }

    #[test]
    fn tail_reads_the_last_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("line {i}\n"));
        }
        text.push_str("half a li");
        std::fs::write(&path, &text).unwrap();
        let mut f = File::open(&path).unwrap();
        let (lines, end) = tail(&mut f, 3).unwrap();
        assert_eq!(lines, ["line 19997", "line 19998", "line 19999"]);
        assert_eq!(end, (text.len() - "half a li".len()) as u64);
        let (all, _) = tail(&mut f, 100_000).unwrap();
        assert_eq!(all.len(), 20_000);
        assert_eq!(all[0], "line 0");
        let (none, _) = tail(&mut f, 0).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn following_picks_up_growth_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut f = Followed {
            component: "warden",
            path: path.clone(),
            offset: 4,
            inode: None,
            partial: Vec::new(),
        };
        // First look: the inode is learnt, and with it the file is read from the start.
        assert_eq!(f.poll().unwrap(), ["old"]);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"new 1\nnew").unwrap();
        assert_eq!(f.poll().unwrap(), ["new 1"]);
        file.write_all(b" 2\n").unwrap();
        assert_eq!(f.poll().unwrap(), ["new 2"]);
        assert!(f.poll().unwrap().is_empty());
        std::fs::write(&path, "again\n").unwrap();
        assert_eq!(f.poll().unwrap(), ["again"]);
    }

    #[test]
    fn lines_print_with_a_component_column_or_as_json() {
        let l = line(
            "warden",
            "2026-01-01T00:00:01Z",
            "2026-01-01T00:00:01Z INFO up",
        );
        assert_eq!(format_line(&l, 0, false), "2026-01-01T00:00:01Z INFO up");
        assert_eq!(
            format_line(&l, 10, false),
            "warden      2026-01-01T00:00:01Z INFO up"
        );
        assert_eq!(
            format_line(&l, 0, true),
            r#"{"component":"warden","timestamp":"2026-01-01T00:00:01Z","line":"2026-01-01T00:00:01Z INFO up"}"#
        );
    }
}
