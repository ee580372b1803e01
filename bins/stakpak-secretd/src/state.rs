//! The secret state and the one thread that owns it: the open vault and its key, the session
//! maps, the redactors built from both, and the open redaction streams.
//!
//! D-Bus handlers send a [`Command`] and wait for its answer; every change happens here, in
//! order. A thread rather than a task: saving the vault waits for the disk and redacting a
//! large text takes CPU, and neither may stall the daemon's bus connection.
//!
//! Exact values are replaced first: a vault secret by `{{secret:NAME}}` (so it resolves only
//! under that secret's consumer scope), a value remembered in the session by its
//! `[REDACTED_SECRET:…]` placeholder. The rule-based detector then runs over what is left, and
//! each new value it finds is remembered in the session, which is saved before the reply.

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use stakpak_proto::Error as WireError;
use stakpak_secrets::{
    detect::{DetectError, DetectOptions, Detector},
    placeholder::{
        PlaceholderError, Reference, ReferenceKind, SecretString, SessionMap, SessionMapError,
        ShellCommand, for_shell, references, substitute, vault_placeholder,
    },
    redact::{DEFAULT_MIN_VALUE_LEN, RedactError, Redactor, RedactorBuilder},
    vault::{SecretInfo, SetOutcome, Vault, VaultError, VaultKey},
};
use tokio::sync::{oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::{
    config::{KeySource, SecretdConfig, Settings},
    sessions::{SessionError, Sessions},
    streams::{Stream, Streams},
};

/// The daemons `Reveal` serves; a secret set for them alone does not resolve in commands.
pub const REVEAL_CONSUMERS: [&str; 3] = ["agent", "warden", "schedd"];

/// Largest text `Redact`, `Register` and `Resolve` take.
pub const MAX_TEXT: usize = 16 << 20;
/// Largest chunk `RedactChunk` takes.
pub const MAX_CHUNK: usize = 4 << 20;
/// Rule id reported for a vault secret found in a text.
pub const VAULT_RULE: &str = "vault";
/// How often idle streams are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Who made a call: the bus peer and, where the call needs it, its uid from the bus daemon.
#[derive(Debug, Clone)]
pub struct Who {
    pub bus_name: String,
    pub uid: Option<u32>,
}

/// Why a text is redacted; `Register` keeps what it finds in a session that must exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Redact,
    Register,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Redact => "redact",
            Purpose::Register => "register",
        }
    }
}

/// A redacted text and what was replaced in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub text: String,
    pub replaced: Vec<Replaced>,
}

/// One replacement: which rule (`vault` for a vault secret) and the placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    pub rule_id: String,
    pub placeholder: String,
}

/// What `Resolve` gives back. Both forms hold values; neither prints them in `Debug`.
#[derive(Debug)]
pub enum Resolution {
    /// The text with every placeholder replaced by its value.
    Text(SecretString),
    /// A shell command whose values travel in the environment.
    Shell(ShellCommand),
}

type Reply<T> = oneshot::Sender<Result<T, CoreError>>;

/// Everything the handlers can ask of the secret state.
pub enum Command {
    Set {
        who: Who,
        name: String,
        value: SecretString,
        consumers: Vec<String>,
        reply: Reply<SetOutcome>,
    },
    Delete {
        who: Who,
        name: String,
        reply: Reply<()>,
    },
    List {
        reply: Reply<Vec<SecretInfo>>,
    },
    Redact {
        who: Who,
        purpose: Purpose,
        session: Option<String>,
        text: String,
        reply: Reply<Redaction>,
    },
    OpenStream {
        who: Who,
        session: Option<String>,
        reply: Reply<String>,
    },
    Chunk {
        who: Who,
        stream: String,
        chunk: Vec<u8>,
        reply: Reply<Vec<u8>>,
    },
    CloseStream {
        who: Who,
        stream: String,
        reply: Reply<Vec<u8>>,
    },
    Resolve {
        who: Who,
        session: Option<String>,
        text: String,
        shell: bool,
        reply: Reply<Resolution>,
    },
    Remember {
        who: Who,
        session: String,
        rule: String,
        value: SecretString,
        reply: Reply<String>,
    },
    /// A secret limited to `consumer`, for that daemon's own use; the handler has checked
    /// that the caller owns the daemon's bus name.
    Reveal {
        who: Who,
        name: String,
        consumer: String,
        reply: Reply<SecretString>,
    },
    /// A bus peer disconnected: its streams go.
    CallerGone {
        bus_name: String,
    },
}

/// Why a command failed. Messages name secrets, sessions, placeholders and files, never a
/// value.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(
        "secret {name} is {len} bytes; values shorter than {min} bytes cannot be redacted reliably and are refused"
    )]
    ValueTooShort {
        name: String,
        len: usize,
        min: usize,
    },
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Placeholder(#[from] PlaceholderError),
    #[error("uid {uid} may not call {method}")]
    NotAllowed { uid: u32, method: &'static str },
    #[error("cannot learn the caller's uid from the bus; {method} is refused")]
    NoUid { method: &'static str },
    #[error("secret {name} is limited to consumers that uid {uid} does not act as")]
    OutOfScope { name: String, uid: u32 },
    #[error("secret {name} is not set for consumer {consumer}; Reveal gives only those")]
    NotForConsumer { name: String, consumer: String },
    #[error("{what} is {len} bytes; the limit is {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("Register needs a session")]
    NoSession,
    #[error("rule {rule:?} must be 1 to 40 of a-z 0-9 -")]
    BadRule { rule: String },
    #[error("a value of {len} bytes is too short to redact reliably (at least {min})")]
    TooShortToRemember { len: usize, min: usize },
    #[error("no open stream {stream} of this caller")]
    UnknownStream { stream: String },
    #[error("this caller has {max} streams open; close one first")]
    TooManyStreams { max: usize },
    #[error("cannot build the redactor")]
    Redactor(#[source] RedactError),
    #[error("cannot start a scratch session map")]
    Scratch(#[source] SessionMapError),
    #[error("the detection rules do not load")]
    Rules(#[source] DetectError),
    #[error("the secrets thread has stopped")]
    Stopped,
}

impl CoreError {
    /// The D-Bus error this becomes: its name says what kind of failure it is, its message
    /// is the error with its causes.
    pub fn into_wire(self) -> WireError {
        let message = chain(&self);
        match self {
            CoreError::Vault(
                VaultError::InvalidName { .. }
                | VaultError::InvalidConsumer { .. }
                | VaultError::TooManyConsumers { .. }
                | VaultError::EmptyValue { .. }
                | VaultError::ValueTooLarge { .. }
                | VaultError::NotFound { .. },
            )
            | CoreError::ValueTooShort { .. }
            | CoreError::Placeholder(_)
            | CoreError::Session(SessionError::InvalidId { .. })
            | CoreError::TooLarge { .. }
            | CoreError::NoSession
            | CoreError::BadRule { .. }
            | CoreError::TooShortToRemember { .. }
            | CoreError::UnknownStream { .. } => WireError::InvalidArgument(message),
            CoreError::Vault(VaultError::NotAllowed { .. })
            | CoreError::NotAllowed { .. }
            | CoreError::NoUid { .. }
            | CoreError::OutOfScope { .. }
            | CoreError::NotForConsumer { .. } => WireError::PermissionDenied(message),
            CoreError::TooManyStreams { .. } | CoreError::Stopped => {
                WireError::Unavailable(message)
            }
            CoreError::Vault(_)
            | CoreError::Session(_)
            | CoreError::Redactor(_)
            | CoreError::Scratch(_)
            | CoreError::Rules(_) => WireError::Internal(message),
        }
    }
}

/// An error and its sources on one line: `cannot replace /x: Permission denied`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        // `#[error(transparent)]` repeats its source's message.
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// Sends commands to the secrets thread.
#[derive(Debug, Clone)]
pub struct CoreHandle {
    tx: mpsc::Sender<Command>,
}

impl CoreHandle {
    /// Sends the command `make` builds and waits for its answer.
    pub async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, CoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| CoreError::Stopped)?;
        rx.await.map_err(|_| CoreError::Stopped)?
    }

    /// Sends a command that has no answer.
    pub fn tell(&self, command: Command) {
        let _ = self.tx.send(command);
    }
}

/// The secret state; lives on its own thread once [`Core::spawn`] ran.
pub struct Core {
    vault: Vault,
    key: VaultKey,
    /// Where the key came from at start, to tell a reload that changes it.
    key_source: Option<KeySource>,
    /// Bumped on every vault change; redactors remember the generation they were built for.
    generation: u64,
    /// Consumers of each secret (empty: everyone).
    scopes: HashMap<String, Vec<String>>,
    /// The vault-only redactor, for text that belongs to no session.
    base: Option<(u64, Redactor)>,
    sessions: Sessions,
    streams: Streams,
    config: watch::Receiver<Arc<SecretdConfig>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("vault", &self.vault)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Core {
    pub fn new(
        vault: Vault,
        key: VaultKey,
        sessions: Sessions,
        mut config: watch::Receiver<Arc<SecretdConfig>>,
    ) -> Core {
        let key_source = config.borrow_and_update().settings.key.clone();
        let mut core = Core {
            vault,
            key,
            key_source,
            generation: 0,
            scopes: HashMap::new(),
            base: None,
            sessions,
            streams: Streams::default(),
            config,
        };
        core.vault_changed();
        core
    }

    /// Starts the secrets thread. If it ever panics the process exits with status 70, so
    /// the service manager restarts a daemon that can no longer answer.
    pub fn spawn(self) -> std::io::Result<CoreHandle> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("secrets".into())
            .spawn(move || {
                let mut core = self;
                if std::panic::catch_unwind(AssertUnwindSafe(|| core.run(&rx))).is_err() {
                    error!("the secrets thread panicked; exiting");
                    std::process::exit(70);
                }
            })?;
        Ok(CoreHandle { tx })
    }

    fn run(&mut self, rx: &mpsc::Receiver<Command>) {
        let mut last_sweep = Instant::now();
        loop {
            match rx.recv_timeout(SWEEP_EVERY) {
                Ok(command) => self.handle(command),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if self.config.has_changed().unwrap_or(false) {
                let settings = self.config.borrow_and_update().settings.clone();
                if settings.vault_path != self.vault.path() || settings.key != self.key_source {
                    warn!(
                        "[vault] changes take effect at the next start; the open vault stays in use"
                    );
                }
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                let idle = self.config.borrow().settings.stream_idle;
                for (id, stream) in self.streams.idle(idle) {
                    info!(
                        stream = %id,
                        caller = %stream.owner,
                        idle_secs = idle.as_secs(),
                        "idle stream closed"
                    );
                }
            }
        }
    }

    pub fn handle(&mut self, command: Command) {
        let config = self.config.borrow().clone();
        let settings = &config.settings;
        match command {
            Command::Set {
                who,
                name,
                value,
                consumers,
                reply,
            } => {
                let _ = reply.send(self.set(settings, &who, &name, value, &consumers));
            }
            Command::Delete { who, name, reply } => {
                let _ = reply.send(self.delete(settings, &who, &name));
            }
            Command::List { reply } => {
                let _ = reply.send(Ok(self.vault.list()));
            }
            Command::Redact {
                who,
                purpose,
                session,
                text,
                reply,
            } => {
                let _ = reply.send(self.redact(settings, &who, purpose, session, &text));
            }
            Command::Remember {
                who,
                session,
                rule,
                value,
                reply,
            } => {
                let _ = reply.send(self.remember(&who, &session, &rule, &value));
            }
            Command::Reveal {
                who,
                name,
                consumer,
                reply,
            } => {
                let _ = reply.send(self.reveal(settings, &who, &name, &consumer));
            }
            Command::OpenStream {
                who,
                session,
                reply,
            } => {
                let _ = reply.send(self.open_stream(settings, &who, session));
            }
            Command::Chunk {
                who,
                stream,
                chunk,
                reply,
            } => {
                let _ = reply.send(self.chunk(&who, &stream, &chunk));
            }
            Command::CloseStream { who, stream, reply } => {
                let _ = reply.send(self.close_stream(&who, &stream));
            }
            Command::Resolve {
                who,
                session,
                text,
                shell,
                reply,
            } => {
                let result = self.resolve(settings, &who, session.as_deref(), &text, shell);
                if let Err(e) = &result {
                    warn!(
                        event = "resolve",
                        caller = %who.bus_name,
                        uid = who.uid,
                        session = session.as_deref().unwrap_or(""),
                        error = %chain(e),
                        "resolve refused"
                    );
                }
                let _ = reply.send(result);
            }
            Command::CallerGone { bus_name } => {
                let closed = self.streams.drop_owner(&bus_name);
                if closed > 0 {
                    info!(caller = %bus_name, streams = closed, "caller left the bus; its streams are closed");
                }
            }
        }
    }

    fn vault_changed(&mut self) {
        self.generation += 1;
        self.scopes = self
            .vault
            .list()
            .into_iter()
            .map(|info| (info.name, info.consumers))
            .collect();
        self.base = None;
    }

    fn check_manage(settings: &Settings, who: &Who, method: &'static str) -> Result<(), CoreError> {
        let uid = who.uid.ok_or(CoreError::NoUid { method })?;
        if settings.manage_uids.contains(&uid) {
            Ok(())
        } else {
            Err(CoreError::NotAllowed { uid, method })
        }
    }

    fn set(
        &mut self,
        settings: &Settings,
        who: &Who,
        name: &str,
        value: SecretString,
        consumers: &[String],
    ) -> Result<SetOutcome, CoreError> {
        Self::check_manage(settings, who, "Set")?;
        if !value.is_empty() && value.len() < DEFAULT_MIN_VALUE_LEN {
            return Err(CoreError::ValueTooShort {
                name: name.to_owned(),
                len: value.len(),
                min: DEFAULT_MIN_VALUE_LEN,
            });
        }
        let consumer_refs: Vec<&str> = consumers.iter().map(String::as_str).collect();
        let outcome = self.vault.set(name, value, &consumer_refs)?;
        self.vault_changed();
        info!(
            event = "set",
            caller = %who.bus_name,
            uid = who.uid,
            name,
            consumers = %consumers.join(","),
            created = outcome == SetOutcome::Created,
            "secret stored"
        );
        for consumer in consumers {
            if settings.consumers.uids(consumer).is_empty() {
                warn!(
                    name,
                    consumer = %consumer,
                    "no uid acts as this consumer; the secret does not resolve for it"
                );
            }
        }
        Ok(outcome)
    }

    fn delete(&mut self, settings: &Settings, who: &Who, name: &str) -> Result<(), CoreError> {
        Self::check_manage(settings, who, "Delete")?;
        self.vault.delete(name)?;
        self.vault_changed();
        info!(
            event = "delete",
            caller = %who.bus_name,
            uid = who.uid,
            name,
            "secret deleted"
        );
        Ok(())
    }

    fn detector(settings: &Settings) -> Result<Detector, CoreError> {
        // The rules are compiled once per process and checked at start; this only copies.
        Detector::new(DetectOptions {
            privacy: settings.privacy,
        })
        .map_err(CoreError::Rules)
    }

    /// The redactor for text outside any session: vault values only.
    fn base_redactor(&mut self) -> Result<Redactor, CoreError> {
        if let Some((generation, redactor)) = &self.base
            && *generation == self.generation
        {
            return Ok(redactor.clone());
        }
        let redactor = build_redactor(&self.vault, None).map_err(CoreError::Redactor)?;
        self.base = Some((self.generation, redactor.clone()));
        Ok(redactor)
    }

    /// The redactor for a session: vault values and the session's values.
    fn session_redactor(&mut self, session: &str) -> Result<Redactor, CoreError> {
        let generation = self.generation;
        let entry = self.sessions.get(session, &self.key)?;
        if let Some((built_for, redactor)) = &entry.redactor
            && *built_for == generation
        {
            return Ok(redactor.clone());
        }
        let redactor =
            build_redactor(&self.vault, Some(&mut entry.map)).map_err(CoreError::Redactor)?;
        entry.redactor = Some((generation, redactor.clone()));
        Ok(redactor)
    }

    fn redact(
        &mut self,
        settings: &Settings,
        who: &Who,
        purpose: Purpose,
        session: Option<String>,
        text: &str,
    ) -> Result<Redaction, CoreError> {
        if text.len() > MAX_TEXT {
            return Err(CoreError::TooLarge {
                what: "the text",
                len: text.len(),
                max: MAX_TEXT,
            });
        }
        if purpose == Purpose::Register && session.is_none() {
            return Err(CoreError::NoSession);
        }
        let detector = Self::detector(settings)?;
        let (output, remembered) = match &session {
            Some(id) => {
                let redactor = self.session_redactor(id)?;
                let entry = self.sessions.get(id, &self.key)?;
                let before = entry.map.len();
                let output = redact_once(&redactor, detector, text.as_bytes(), &mut entry.map);
                let remembered = entry.map.len() - before;
                if remembered > 0 {
                    self.sessions.save(id, &self.key)?;
                }
                (output, remembered)
            }
            None => {
                let redactor = self.base_redactor()?;
                let mut scratch = SessionMap::new().map_err(CoreError::Scratch)?;
                (
                    redact_once(&redactor, detector, text.as_bytes(), &mut scratch),
                    0,
                )
            }
        };
        let output = match String::from_utf8(output) {
            Ok(s) => s,
            // Replacements are ASCII and matches fall on character boundaries, so this does
            // not happen; if it did, no byte of a value could survive the lossy conversion
            // that a placeholder had not already replaced.
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        let replaced = replacements(text, &output);
        debug!(
            event = purpose.as_str(),
            caller = %who.bus_name,
            session = session.as_deref().unwrap_or(""),
            bytes = text.len(),
            replaced = replaced.len(),
            remembered,
            "text redacted"
        );
        Ok(Redaction {
            text: output,
            replaced,
        })
    }

    fn remember(
        &mut self,
        who: &Who,
        session: &str,
        rule: &str,
        value: &SecretString,
    ) -> Result<String, CoreError> {
        if rule.is_empty()
            || rule.len() > 40
            || !rule
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(CoreError::BadRule {
                rule: rule.to_string(),
            });
        }
        let len = value.expose().len();
        if len < DEFAULT_MIN_VALUE_LEN {
            return Err(CoreError::TooShortToRemember {
                len,
                min: DEFAULT_MIN_VALUE_LEN,
            });
        }
        let entry = self.sessions.get(session, &self.key)?;
        let placeholder = entry.map.placeholder_for(rule, value.expose());
        // The cached redactor does not know the new value.
        entry.redactor = None;
        self.sessions.save(session, &self.key)?;
        info!(
            event = "remember",
            caller = %who.bus_name,
            session,
            rule,
            "value remembered in the session"
        );
        Ok(placeholder)
    }

    fn open_stream(
        &mut self,
        settings: &Settings,
        who: &Who,
        session: Option<String>,
    ) -> Result<String, CoreError> {
        let max = settings.max_streams_per_caller;
        if self.streams.count_of(&who.bus_name) >= max {
            return Err(CoreError::TooManyStreams { max });
        }
        let detector = Self::detector(settings)?;
        let (redactor, scratch) = match &session {
            Some(id) => (self.session_redactor(id)?, None),
            None => (
                self.base_redactor()?,
                Some(SessionMap::new().map_err(CoreError::Scratch)?),
            ),
        };
        let stream = Stream::new(
            who.bus_name.clone(),
            session,
            scratch,
            redactor.detecting_stream(detector),
        );
        let id = self.streams.insert(stream);
        debug!(stream = %id, caller = %who.bus_name, "stream opened");
        Ok(id)
    }

    fn chunk(&mut self, who: &Who, id: &str, chunk: &[u8]) -> Result<Vec<u8>, CoreError> {
        if chunk.len() > MAX_CHUNK {
            return Err(CoreError::TooLarge {
                what: "the chunk",
                len: chunk.len(),
                max: MAX_CHUNK,
            });
        }
        let stream =
            self.streams
                .get_mut(id, &who.bus_name)
                .ok_or_else(|| CoreError::UnknownStream {
                    stream: id.to_owned(),
                })?;
        let mut out = Vec::with_capacity(chunk.len());
        match stream.session.clone() {
            Some(session) => {
                let entry = self.sessions.get(&session, &self.key)?;
                let before = entry.map.len();
                stream.push(chunk, &mut entry.map, &mut out);
                if entry.map.len() > before {
                    self.sessions.save(&session, &self.key)?;
                }
            }
            None => stream.push_scratch(chunk, &mut out),
        }
        Ok(out)
    }

    fn close_stream(&mut self, who: &Who, id: &str) -> Result<Vec<u8>, CoreError> {
        let stream =
            self.streams
                .remove(id, &who.bus_name)
                .ok_or_else(|| CoreError::UnknownStream {
                    stream: id.to_owned(),
                })?;
        let mut out = Vec::new();
        match stream.session.clone() {
            Some(session) => {
                let entry = self.sessions.get(&session, &self.key)?;
                let before = entry.map.len();
                stream.finish(&mut entry.map, &mut out);
                if entry.map.len() > before {
                    self.sessions.save(&session, &self.key)?;
                }
            }
            None => stream.finish_scratch(&mut out),
        }
        debug!(stream = %id, caller = %who.bus_name, "stream closed");
        Ok(out)
    }

    /// A secret set for `consumer` (named in its consumers, not "every consumer"), to a
    /// caller whose uid acts as `consumer`.
    fn reveal(
        &self,
        settings: &Settings,
        who: &Who,
        name: &str,
        consumer: &str,
    ) -> Result<SecretString, CoreError> {
        let uid = who.uid.ok_or(CoreError::NoUid { method: "Reveal" })?;
        if !settings.consumers.allows(consumer, uid) {
            return Err(CoreError::NotAllowed {
                uid,
                method: "Reveal",
            });
        }
        let value = self.vault.get(name).ok_or_else(|| VaultError::NotFound {
            name: name.to_owned(),
        })?;
        let named = self
            .scopes
            .get(name)
            .is_some_and(|consumers| consumers.iter().any(|c| c == consumer));
        if !named {
            return Err(CoreError::NotForConsumer {
                name: name.to_owned(),
                consumer: consumer.to_owned(),
            });
        }
        info!(
            event = "reveal",
            caller = %who.bus_name,
            uid,
            name,
            consumer,
            "secret given to its consumer"
        );
        Ok(value.clone())
    }

    fn resolve(
        &mut self,
        settings: &Settings,
        who: &Who,
        session: Option<&str>,
        text: &str,
        shell: bool,
    ) -> Result<Resolution, CoreError> {
        let uid = who.uid.ok_or(CoreError::NoUid { method: "Resolve" })?;
        if !settings.resolve_uids.contains(&uid) {
            return Err(CoreError::NotAllowed {
                uid,
                method: "Resolve",
            });
        }
        if text.len() > MAX_TEXT {
            return Err(CoreError::TooLarge {
                what: "the text",
                len: text.len(),
                max: MAX_TEXT,
            });
        }
        let map = match session {
            Some(id) => Some(&self.sessions.get(id, &self.key)?.map),
            None => None,
        };
        let vault = &self.vault;
        let scopes = &self.scopes;
        let mut names: Vec<String> = Vec::new();
        let mut session_values = 0usize;
        let mut out_of_scope: Option<String> = None;
        let mut lookup = |reference: &Reference| -> Option<SecretString> {
            match reference.kind {
                ReferenceKind::Vault => {
                    let consumers = scopes.get(&reference.name)?;
                    // A secret set for daemons that `Reveal` serves (schedd's channel
                    // tokens) never reaches a command, whatever uid sandboxd runs as.
                    let in_scope = consumers.is_empty()
                        || consumers.iter().any(|c| {
                            !REVEAL_CONSUMERS.contains(&c.as_str())
                                && settings.consumers.allows(c, uid)
                        });
                    if !in_scope {
                        out_of_scope = Some(reference.name.clone());
                        return None;
                    }
                    let value = vault.get(&reference.name)?.clone();
                    names.push(reference.name.clone());
                    Some(value)
                }
                ReferenceKind::Redacted => {
                    let value = map?.resolve(&reference.name)?.clone();
                    session_values += 1;
                    Some(value)
                }
            }
        };
        let result = if shell {
            for_shell(text, &mut lookup).map(Resolution::Shell)
        } else {
            substitute(text, &mut lookup).map(Resolution::Text)
        };
        let resolution = result.map_err(|e| match (e, out_of_scope.take()) {
            (PlaceholderError::Unknown { placeholder }, Some(name))
                if placeholder == vault_placeholder(&name) =>
            {
                CoreError::OutOfScope { name, uid }
            }
            (e, _) => CoreError::Placeholder(e),
        })?;
        names.sort();
        names.dedup();
        info!(
            event = "resolve",
            caller = %who.bus_name,
            uid,
            session = session.unwrap_or(""),
            names = %names.join(","),
            session_values,
            shell,
            "placeholders resolved"
        );
        Ok(resolution)
    }
}

/// An exact-value redactor for every vault secret (as `{{secret:NAME}}`) and, given a
/// session map, every value in it (as its placeholder). A vault secret wins over an equal
/// session value.
fn build_redactor(vault: &Vault, map: Option<&mut SessionMap>) -> Result<Redactor, RedactError> {
    let mut builder = RedactorBuilder::new();
    for (name, value) in vault.values() {
        match builder.add(value.expose().as_bytes(), &vault_placeholder(name)) {
            Ok(_) => {}
            Err(RedactError::ValueTooShort { len, min }) => {
                warn!(name, len, min, "secret is too short to be redacted exactly");
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(map) = map {
        let values: Vec<(String, SecretString)> = map
            .values()
            .map(|(rule, value)| (rule.to_owned(), value.clone()))
            .collect();
        for (rule, value) in &values {
            let placeholder = map.placeholder_for(rule, value.expose());
            match builder.add(value.expose().as_bytes(), &placeholder) {
                Ok(_) | Err(RedactError::ValueTooShort { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    builder.build()
}

fn redact_once(
    redactor: &Redactor,
    detector: Detector,
    input: &[u8],
    map: &mut SessionMap,
) -> Vec<u8> {
    let mut stream = redactor.detecting_stream(detector);
    let mut out = Vec::with_capacity(input.len());
    stream.push(input, map, &mut out);
    stream.finish(map, &mut out);
    out
}

/// The placeholders `output` has that `input` did not: what the redaction replaced.
fn replacements(input: &str, output: &str) -> Vec<Replaced> {
    let mut already: HashMap<String, usize> = HashMap::new();
    for reference in references(input) {
        *already.entry(reference.placeholder()).or_default() += 1;
    }
    references(output)
        .into_iter()
        .filter_map(|reference| {
            let placeholder = reference.placeholder();
            if let Some(n) = already.get_mut(&placeholder)
                && *n > 0
            {
                *n -= 1;
                return None;
            }
            let rule_id = match reference.kind {
                ReferenceKind::Vault => VAULT_RULE.to_owned(),
                ReferenceKind::Redacted => rule_of(&placeholder),
            };
            Some(Replaced {
                rule_id,
                placeholder,
            })
        })
        .collect()
}

/// `github-pat` from `[REDACTED_SECRET:github-pat:a1b2c3]`.
fn rule_of(placeholder: &str) -> String {
    placeholder
        .strip_prefix("[REDACTED_SECRET:")
        .and_then(|rest| rest.rsplit_once(':'))
        .map(|(rule, _)| rule.to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_are_the_new_placeholders_in_order() {
        let input = "keep {{secret:OLD}} and ghp_x and AKIA";
        let output = "keep {{secret:OLD}} and [REDACTED_SECRET:github-pat:a1b2c3] and {{secret:OLD}} and {{secret:NEW}}";
        let expected = vec![
            Replaced {
                rule_id: "github-pat".into(),
                placeholder: "[REDACTED_SECRET:github-pat:a1b2c3]".into(),
            },
            Replaced {
                rule_id: "vault".into(),
                placeholder: "{{secret:OLD}}".into(),
            },
            Replaced {
                rule_id: "vault".into(),
                placeholder: "{{secret:NEW}}".into(),
            },
        ];
        assert_eq!(replacements(input, output), expected);
    }

    #[test]
    fn errors_chain_their_causes_once() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = CoreError::Vault(VaultError::Io {
            path: "/v".into(),
            op: "replace",
            source: io,
        });
        assert_eq!(chain(&e), "cannot replace /v: denied");
        assert_eq!(
            e.into_wire(),
            WireError::Internal("cannot replace /v: denied".into())
        );
    }
}
