//! Where a command's output goes: every chunk through secretd's streaming redactor, then to
//! the capped copy for the reply, the caller's descriptors (`ExecStream`) and, past the cap or
//! for a background task, a log file in the workspace.
//!
//! Redaction is per stream (stdout and stderr each have their own secretd stream, opened at
//! the first chunk, so a command without output costs no call). When secretd fails once,
//! nothing more leaves: the capped copy is emptied, forwarding and logging stop, and
//! [`Output::finish`] reports the failure.

use std::{
    io::Write,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use stakpak_sandbox::Stream;
use tokio::io::AsyncWriteExt;

use crate::{error::Error, peers::Peers};

/// Where the whole output is kept on disk.
#[derive(Debug)]
pub(crate) struct LogFile {
    /// Workspace-relative, as shown to callers.
    pub rel: String,
    path: PathBuf,
    file: Option<std::fs::File>,
    written: u64,
}

impl LogFile {
    /// A log at `workspace/rel`; the file is created on the first write.
    pub(crate) fn new(workspace: &Path, rel: String) -> Self {
        LogFile {
            path: workspace.join(&rel),
            rel,
            file: None,
            written: 0,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let err = |e: std::io::Error| {
            Error::Internal(format!(
                "cannot write the output log {}: {e}",
                self.path.display()
            ))
        };
        if self.file.is_none() {
            if let Some(parent) = self.path.parent() {
                std::fs::create_dir_all(parent).map_err(err)?;
            }
            self.file = Some(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(err)?,
            );
        }
        if let Some(file) = self.file.as_mut() {
            file.write_all(bytes).map_err(err)?;
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Creates the (possibly empty) file now.
    pub(crate) fn touch(&mut self) -> Result<(), Error> {
        self.write(&[])
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// How the redacted output is kept.
#[derive(Debug)]
pub(crate) enum Keep {
    /// `Exec`: the first `cap` bytes of each stream for the reply; the whole output goes to
    /// the log only once it passes the cap.
    Capped { cap: usize, log: LogFile },
    /// A background task: everything to the log.
    Log(LogFile),
}

/// One command's output on its way out.
#[derive(Debug)]
pub(crate) struct Output {
    session: String,
    peers: Peers,
    streams: [Option<String>; 2],
    kept: [Vec<u8>; 2],
    /// The interleaved output up to the point the cap was passed (then it went to the log).
    interleaved: Vec<u8>,
    overflowed: bool,
    keep: Keep,
    forward: Option<[tokio::fs::File; 2]>,
    failure: Option<Error>,
}

fn index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl Output {
    pub(crate) fn new(
        session: &str,
        peers: Peers,
        keep: Keep,
        forward: Option<(OwnedFd, OwnedFd)>,
    ) -> Self {
        Output {
            session: session.to_string(),
            peers,
            streams: [None, None],
            kept: [Vec::new(), Vec::new()],
            interleaved: Vec::new(),
            overflowed: false,
            keep,
            forward: forward.map(|(out, err)| {
                [
                    tokio::fs::File::from_std(std::fs::File::from(out)),
                    tokio::fs::File::from_std(std::fs::File::from(err)),
                ]
            }),
            failure: None,
        }
    }

    /// Redacts and passes on one chunk of raw output.
    pub(crate) async fn chunk(&mut self, stream: Stream, raw: Vec<u8>) {
        if self.failure.is_some() {
            return;
        }
        match self.redact_chunk(stream, raw).await {
            Ok(redacted) => self.deliver(stream, &redacted).await,
            Err(e) => self.fail(e),
        }
    }

    async fn redact_chunk(&mut self, stream: Stream, raw: Vec<u8>) -> Result<Vec<u8>, Error> {
        let i = index(stream);
        let id = self.streams[i].clone();
        let (id, redacted) = self.peers.redact_chunk(id, &self.session, raw).await?;
        self.streams[i] = Some(id);
        Ok(redacted)
    }

    fn fail(&mut self, e: Error) {
        self.kept = [Vec::new(), Vec::new()];
        self.interleaved = Vec::new();
        self.forward = None;
        self.failure = Some(e);
    }

    async fn deliver(&mut self, stream: Stream, redacted: &[u8]) {
        if redacted.is_empty() {
            return;
        }
        let i = index(stream);
        if let Some(forward) = self.forward.as_mut() {
            let ok =
                forward[i].write_all(redacted).await.is_ok() && forward[i].flush().await.is_ok();
            if !ok {
                // The caller stopped reading; the command goes on, its output is still kept.
                self.forward = None;
            }
        }
        let logged = match &mut self.keep {
            Keep::Log(log) => log.write(redacted),
            Keep::Capped { cap, log } => {
                let cap = *cap;
                let room = cap.saturating_sub(self.kept[i].len());
                self.kept[i].extend_from_slice(&redacted[..room.min(redacted.len())]);
                if self.overflowed {
                    log.write(redacted)
                } else if room < redacted.len() {
                    self.overflowed = true;
                    let before = std::mem::take(&mut self.interleaved);
                    log.write(&before).and_then(|()| log.write(redacted))
                } else {
                    self.interleaved.extend_from_slice(redacted);
                    Ok(())
                }
            }
        };
        if let Err(e) = logged {
            self.fail(e);
        }
    }

    /// Closes the redaction streams (delivering what they held back) and returns the kept
    /// stdout and stderr, whether the cap was passed, and the log's workspace-relative path
    /// when it was written; or the redaction failure.
    pub(crate) async fn finish(mut self) -> Result<Finished, Error> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            if self.failure.is_some() {
                break;
            }
            let Some(id) = self.streams[index(stream)].take() else {
                continue;
            };
            match self.peers.close_stream(id).await.map_err(Error::from) {
                Ok(tail) => self.deliver(stream, &tail).await,
                Err(e) => self.fail(e),
            }
        }
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        let [stdout, stderr] = self.kept;
        let log = match &self.keep {
            Keep::Log(log) => Some(log.rel.clone()),
            Keep::Capped { log, .. } if self.overflowed => Some(log.rel.clone()),
            Keep::Capped { .. } => None,
        };
        Ok(Finished {
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            truncated: self.overflowed,
            log,
        })
    }
}

/// What [`Output::finish`] leaves.
#[derive(Debug)]
pub(crate) struct Finished {
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub log: Option<String>,
}
