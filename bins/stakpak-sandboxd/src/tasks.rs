//! Background tasks (`run_command_task`): started through the same path as `Exec` (warden,
//! secretd, sandbox, redaction, audit), their redacted output appended to
//! `<workspace>/.stakpak/tasks/<id>.log` as it comes, so `TaskDetails` can show the tail and
//! `View` the whole.
//!
//! A task is cancelled through an eventfd the sandbox polls beside the command's pipes; the
//! sandbox then kills the command's process group and cgroup, so no descendant survives. The
//! registry lives in memory: finished tasks are forgotten oldest first past
//! `exec.tasks_kept`, and a restart of sandboxd forgets all of them (their logs stay).

use std::{
    collections::BTreeMap,
    io::{Read, Seek, SeekFrom},
    os::fd::OwnedFd,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use rustix::event::{EventfdFlags, eventfd};
use stakpak_proto::{Decision, ExecStatus};
use tokio::sync::watch;
use tracing::warn;

use crate::{
    error::Error,
    exec::{Executor, Prep, Request, now_ms},
    output::{Keep, LogFile, Output},
    peers::Bus,
};

/// Folder of the workspace holding the task logs.
pub(crate) const TASK_DIR: &str = ".stakpak/tasks";
/// Tail returned by `TaskDetails` when the caller gives 0, and the most it may ask for.
const DEFAULT_TAIL: u64 = 4096;
const MAX_TAIL: u64 = 1 << 20;
/// How long `CancelTask` waits for the task to be gone before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// A background task as the registry knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Task {
    pub id: String,
    pub session: String,
    /// The command as sent: placeholders, never values.
    pub command: String,
    pub state: ExecStatus,
    /// Exit code or signal number once ended.
    pub code: i32,
    /// Unix milliseconds.
    pub started_ms: i64,
    /// Unix milliseconds; 0 while running.
    pub ended_ms: i64,
    pub decision: Option<Decision>,
    pub rule: String,
    pub reason: String,
    /// Redacted output bytes so far.
    pub output_bytes: u64,
}

/// A task with the tail of its redacted output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskDetail {
    pub task: Task,
    pub tail: String,
    /// Workspace-relative path of the whole redacted output.
    pub output_path: String,
}

/// The task registry.
#[derive(Debug, Clone)]
pub(crate) struct Tasks {
    executor: Executor,
    registry: Arc<Mutex<BTreeMap<String, Entry>>>,
}

#[derive(Debug)]
struct Entry {
    info: Task,
    cancel: Option<Arc<OwnedFd>>,
    done: watch::Receiver<bool>,
    log: PathBuf,
    log_rel: String,
}

impl Entry {
    /// The info with the output size read from the log now.
    fn info(&self) -> Task {
        let mut info = self.info.clone();
        info.output_bytes = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        info
    }
}

fn unknown(id: &str) -> Error {
    Error::InvalidArgument(format!("no task {id:?} (see ListTasks)"))
}

impl Tasks {
    pub(crate) fn new(executor: Executor) -> Self {
        Tasks {
            executor,
            registry: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a task and returns at once; a refusal is recorded as a task that ended
    /// `denied`, with the rule and reason.
    pub(crate) async fn start(&self, request: Request, bus: &Bus) -> Result<Task, Error> {
        let started_ms = now_ms();
        let prepared = self.executor.prepare(&request, bus, true).await?;
        let (done_tx, done) = watch::channel(false);
        let base = Task {
            session: request.session.clone(),
            command: request.command.clone(),
            started_ms,
            ..Task::default()
        };
        let prepared = match prepared {
            Prep::Refused(reply) => {
                let info = Task {
                    id: reply.exec_id.clone(),
                    state: ExecStatus::Denied,
                    ended_ms: now_ms(),
                    decision: reply.decision,
                    rule: reply.rule,
                    reason: reply.reason,
                    ..base
                };
                let _ = done_tx.send(true);
                self.insert(Entry {
                    info: info.clone(),
                    cancel: None,
                    done,
                    log: PathBuf::new(),
                    log_rel: String::new(),
                });
                return Ok(info);
            }
            Prep::Ready(p) => p,
        };
        let id = prepared.exec_id.clone();
        let config = self.executor.config();
        let workspace = self.executor.workspace(&prepared.session);
        let log_rel = format!("{TASK_DIR}/{id}.log");
        let mut log = LogFile::new(&workspace, log_rel.clone());
        log.touch()?;
        let log_path = log.path().to_path_buf();
        let cancel = Arc::new(
            eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
                .map_err(|e| Error::Internal(format!("cannot create the task's eventfd: {e}")))?,
        );
        let info = Task {
            id: id.clone(),
            state: ExecStatus::Running,
            decision: Some(prepared.verdict.decision),
            rule: prepared.verdict.rule.clone(),
            reason: prepared.verdict.reason.clone(),
            ..base
        };
        self.insert(Entry {
            info: info.clone(),
            cancel: Some(Arc::clone(&cancel)),
            done,
            log: log_path,
            log_rel,
        });
        let output = Output::new(
            &prepared.session,
            prepared.peers.clone(),
            Keep::Log(log),
            None,
        );
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.executor.run(*prepared, Some(cancel), output).await;
            {
                let mut registry = this.lock();
                if let Some(entry) = registry.get_mut(&id) {
                    entry.info.ended_ms = now_ms();
                    entry.cancel = None;
                    match result {
                        Ok(reply) => {
                            entry.info.state = reply.status;
                            entry.info.code = reply.code;
                            if reply.reason.starts_with("output withheld") {
                                entry.info.reason = reply.reason;
                            }
                        }
                        Err(e) => {
                            warn!(task = %id, error = %e, "background task failed");
                            entry.info.state = ExecStatus::Failed;
                            entry.info.reason = e.to_string();
                        }
                    }
                }
            }
            let _ = done_tx.send(true);
            this.forget_old(config.exec.tasks_kept);
        });
        Ok(info)
    }

    fn insert(&self, entry: Entry) {
        self.lock().insert(entry.info.id.clone(), entry);
    }

    /// Forgets the oldest finished tasks past `keep`.
    fn forget_old(&self, keep: usize) {
        let mut registry = self.lock();
        let mut finished: Vec<(i64, String)> = registry
            .values()
            .filter(|e| e.info.ended_ms != 0)
            .map(|e| (e.info.ended_ms, e.info.id.clone()))
            .collect();
        if finished.len() <= keep {
            return;
        }
        finished.sort();
        let excess = finished.len() - keep;
        for (_, id) in finished.into_iter().take(excess) {
            registry.remove(&id);
        }
    }

    /// Tasks of `session` (all when empty), oldest first.
    pub(crate) fn list(&self, session: &str) -> Vec<Task> {
        let mut tasks: Vec<Task> = self
            .lock()
            .values()
            .filter(|e| session.is_empty() || e.info.session == session)
            .map(Entry::info)
            .collect();
        tasks.sort_by(|a, b| (a.started_ms, &a.id).cmp(&(b.started_ms, &b.id)));
        tasks
    }

    /// One task with the tail of its log.
    pub(crate) fn details(&self, id: &str, tail_bytes: u64) -> Result<TaskDetail, Error> {
        let (info, log, log_rel) = {
            let registry = self.lock();
            let entry = registry.get(id).ok_or_else(|| unknown(id))?;
            (entry.info(), entry.log.clone(), entry.log_rel.clone())
        };
        let want = match tail_bytes {
            0 => DEFAULT_TAIL,
            n => n.min(MAX_TAIL),
        };
        let tail = if log_rel.is_empty() {
            String::new()
        } else {
            read_tail(&log, want)
                .map_err(|e| Error::Internal(format!("cannot read {}: {e}", log.display())))?
        };
        Ok(TaskDetail {
            task: info,
            tail,
            output_path: log_rel,
        })
    }

    /// Waits for every task of `ids` to end, at most `timeout_ms` (0: do not wait).
    pub(crate) async fn wait(&self, ids: &[String], timeout_ms: u64) -> Result<Vec<Task>, Error> {
        if ids.is_empty() {
            return Err(Error::InvalidArgument("no task ids given".into()));
        }
        let receivers = {
            let registry = self.lock();
            ids.iter()
                .map(|id| {
                    registry
                        .get(id)
                        .map(|e| e.done.clone())
                        .ok_or_else(|| unknown(id))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let all = async {
            for mut rx in receivers {
                let _ = rx.wait_for(|done| *done).await;
            }
        };
        // Not having ended in time is an answer, not an error: the states say `running`.
        let _ = tokio::time::timeout(Duration::from_millis(timeout_ms), all).await;
        let registry = self.lock();
        ids.iter()
            .map(|id| registry.get(id).map(Entry::info).ok_or_else(|| unknown(id)))
            .collect()
    }

    /// Cancels a running task (a finished one is returned as it is) and waits briefly for it
    /// to be gone.
    pub(crate) async fn cancel(&self, id: &str) -> Result<Task, Error> {
        let (cancel, mut done) = {
            let registry = self.lock();
            let entry = registry.get(id).ok_or_else(|| unknown(id))?;
            (entry.cancel.clone(), entry.done.clone())
        };
        if let Some(fd) = cancel {
            rustix::io::write(&*fd, &1u64.to_ne_bytes())
                .map_err(|e| Error::Internal(format!("cannot signal the task: {e}")))?;
            let _ = tokio::time::timeout(CANCEL_WAIT, done.wait_for(|d| *d)).await;
        }
        let registry = self.lock();
        registry.get(id).map(Entry::info).ok_or_else(|| unknown(id))
    }
}

/// The last `want` bytes of a file, cut to whole UTF-8 characters.
fn read_tail(path: &std::path::Path, want: u64) -> Result<String, std::io::Error> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let from = len.saturating_sub(want);
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.take(want).read_to_end(&mut bytes)?;
    // Skip continuation bytes of a character cut by the start of the window.
    let skip = if from > 0 {
        bytes
            .iter()
            .take(3)
            .take_while(|b| (**b & 0xC0) == 0x80)
            .count()
    } else {
        0
    };
    Ok(String::from_utf8_lossy(&bytes[skip..]).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tail_is_cut_to_whole_characters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "abc\u{e9}\u{e9}xyz").unwrap();
        assert_eq!(read_tail(&path, 3).unwrap(), "xyz");
        // 4 bytes back lands inside the second é (2 bytes): that half is skipped.
        assert_eq!(read_tail(&path, 4).unwrap(), "xyz");
        assert_eq!(read_tail(&path, 5).unwrap(), "\u{e9}xyz");
        assert_eq!(read_tail(&path, 1000).unwrap(), "abc\u{e9}\u{e9}xyz");
    }
}
