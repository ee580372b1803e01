//! Open redaction streams: one per output channel of a command sandboxd runs, owned by the
//! bus peer that opened it, closed by that peer, when it leaves the bus, or after idle time.
//!
//! A stream keeps the redactor of the moment it was opened: a secret stored while it is open
//! is caught by the rules (if they know its kind) but not as an exact value.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use stakpak_secrets::{detect::Detector, placeholder::SessionMap, redact::DetectingStream};

/// One open stream.
pub struct Stream {
    /// Unique bus name of the peer that opened it; nobody else may use it.
    pub owner: String,
    /// Session whose map names detected values; `None`: a scratch map of its own.
    pub session: Option<String>,
    scratch: Option<SessionMap>,
    inner: DetectingStream<Detector>,
    last_used: Instant,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("owner", &self.owner)
            .field("session", &self.session)
            .field("held", &self.inner.held())
            .finish_non_exhaustive()
    }
}

impl Stream {
    pub fn new(
        owner: String,
        session: Option<String>,
        scratch: Option<SessionMap>,
        inner: DetectingStream<Detector>,
    ) -> Stream {
        Stream {
            owner,
            session,
            scratch,
            inner,
            last_used: Instant::now(),
        }
    }

    /// Redacts a chunk, naming detected values in the session's `map`.
    pub fn push(&mut self, chunk: &[u8], map: &mut SessionMap, out: &mut Vec<u8>) {
        self.last_used = Instant::now();
        self.inner.push(chunk, map, out);
    }

    /// Redacts a chunk of a stream without a session.
    pub fn push_scratch(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.last_used = Instant::now();
        if let Some(map) = &mut self.scratch {
            self.inner.push(chunk, map, out);
        }
    }

    pub fn finish(self, map: &mut SessionMap, out: &mut Vec<u8>) {
        self.inner.finish(map, out);
    }

    pub fn finish_scratch(mut self, out: &mut Vec<u8>) {
        if let Some(mut map) = self.scratch.take() {
            self.inner.finish(&mut map, out);
        }
    }
}

/// Every open stream by id.
#[derive(Debug, Default)]
pub struct Streams {
    next: u64,
    open: HashMap<String, Stream>,
}

impl Streams {
    /// Adds a stream and returns its id.
    pub fn insert(&mut self, stream: Stream) -> String {
        self.next += 1;
        let id = format!("stream-{}", self.next);
        self.open.insert(id.clone(), stream);
        id
    }

    /// The stream `id` if `owner` opened it.
    pub fn get_mut(&mut self, id: &str, owner: &str) -> Option<&mut Stream> {
        self.open.get_mut(id).filter(|s| s.owner == owner)
    }

    /// Takes out the stream `id` if `owner` opened it.
    pub fn remove(&mut self, id: &str, owner: &str) -> Option<Stream> {
        if self.open.get(id)?.owner != owner {
            return None;
        }
        self.open.remove(id)
    }

    /// How many streams `owner` has open.
    pub fn count_of(&self, owner: &str) -> usize {
        self.open.values().filter(|s| s.owner == owner).count()
    }

    /// Closes every stream of `owner`; returns how many there were.
    pub fn drop_owner(&mut self, owner: &str) -> usize {
        let before = self.open.len();
        self.open.retain(|_, s| s.owner != owner);
        before - self.open.len()
    }

    /// Takes out the streams unused for longer than `idle`.
    pub fn idle(&mut self, idle: Duration) -> Vec<(String, Stream)> {
        let now = Instant::now();
        let stale: Vec<String> = self
            .open
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_used) > idle)
            .map(|(id, _)| id.clone())
            .collect();
        stale
            .into_iter()
            .filter_map(|id| self.open.remove(&id).map(|s| (id, s)))
            .collect()
    }
}
