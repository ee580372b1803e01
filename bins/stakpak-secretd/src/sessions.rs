//! Session maps: the values detected in one agent session and their placeholders, each kept
//! sealed with the vault key in `<state>/sessions/<session>.map`, loaded on first use and
//! held in memory for the sessions used most recently.
//!
//! A map that cannot be read (damaged, sealed with another key) is an error for every call
//! that needs it and is never overwritten, so nothing in it is lost to a bad start.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use stakpak_secrets::{
    placeholder::{SessionMap, SessionMapError},
    redact::Redactor,
    vault::{SealKind, VaultError, VaultKey, read_sealed, write_sealed},
};

/// Sessions kept in memory at once; older ones are dropped (they are on disk).
const MAX_LOADED: usize = 256;
/// Longest session id.
pub const MAX_SESSION_LEN: usize = 128;

/// Why a session map could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("invalid session id {session:?}: use [A-Za-z0-9_-][A-Za-z0-9_.-]{{0,127}}")]
    InvalidId { session: String },
    #[error("session map {path} cannot be read")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: VaultError,
    },
    #[error("session map {path} is malformed")]
    Malformed {
        path: PathBuf,
        #[source]
        source: SessionMapError,
    },
    #[error("cannot start a session map")]
    New(#[source] SessionMapError),
    #[error("cannot save session map {path}")]
    Save {
        path: PathBuf,
        #[source]
        source: VaultError,
    },
    #[error("cannot create the session folder {path}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// True when `session` may name a session (it becomes a file name).
pub fn is_valid_id(session: &str) -> bool {
    let bytes = session.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_SESSION_LEN
        && bytes[0] != b'.'
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// One loaded session.
pub struct Session {
    pub map: SessionMap,
    /// The exact-value redactor for this session and the vault generation it was built for;
    /// `None` after the map changed.
    pub redactor: Option<(u64, Redactor)>,
    last_used: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("values", &self.map.len())
            .finish_non_exhaustive()
    }
}

/// The session maps of this daemon.
#[derive(Debug)]
pub struct Sessions {
    dir: PathBuf,
    loaded: HashMap<String, Session>,
    clock: u64,
}

impl Sessions {
    pub fn new(dir: PathBuf) -> Self {
        Sessions {
            dir,
            loaded: HashMap::new(),
            clock: 0,
        }
    }

    fn path(&self, session: &str) -> PathBuf {
        self.dir.join(format!("{session}.map"))
    }

    /// The session, loaded from disk (or started empty) if it is not in memory.
    pub fn get(&mut self, session: &str, key: &VaultKey) -> Result<&mut Session, SessionError> {
        if !is_valid_id(session) {
            return Err(SessionError::InvalidId {
                session: session.to_owned(),
            });
        }
        self.clock += 1;
        if !self.loaded.contains_key(session) {
            let map = load(&self.path(session), key)?;
            self.evict();
            self.loaded.insert(
                session.to_owned(),
                Session {
                    map,
                    redactor: None,
                    last_used: 0,
                },
            );
        }
        let clock = self.clock;
        let entry = self
            .loaded
            .get_mut(session)
            .ok_or_else(|| SessionError::InvalidId {
                session: session.to_owned(),
            })?;
        entry.last_used = clock;
        Ok(entry)
    }

    /// Writes a loaded session's map to disk and drops its redactor, which no longer knows
    /// every value.
    pub fn save(&mut self, session: &str, key: &VaultKey) -> Result<(), SessionError> {
        let path = self.path(session);
        let Some(entry) = self.loaded.get_mut(session) else {
            return Ok(());
        };
        entry.redactor = None;
        ensure_folder(&self.dir)?;
        write_sealed(&path, key, SealKind::SessionMap, &entry.map.to_bytes())
            .map_err(|source| SessionError::Save { path, source })
    }

    /// Drops the least recently used session when the cache is full.
    fn evict(&mut self) {
        if self.loaded.len() < MAX_LOADED {
            return;
        }
        if let Some(oldest) = self
            .loaded
            .iter()
            .min_by_key(|(_, s)| s.last_used)
            .map(|(id, _)| id.clone())
        {
            self.loaded.remove(&oldest);
        }
    }
}

fn load(path: &Path, key: &VaultKey) -> Result<SessionMap, SessionError> {
    match read_sealed(path, key, SealKind::SessionMap) {
        Ok(bytes) => SessionMap::from_bytes(&bytes).map_err(|source| SessionError::Malformed {
            path: path.to_owned(),
            source,
        }),
        Err(VaultError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            SessionMap::new().map_err(SessionError::New)
        }
        Err(source) => Err(SessionError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

fn ensure_folder(dir: &Path) -> Result<(), SessionError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| SessionError::Folder {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_file_names() {
        let cases = [
            ("s1", true),
            ("2024-01-01T10.run_7", true),
            ("", false),
            (".hidden", false),
            ("..", false),
            ("a/b", false),
            ("a b", false),
        ];
        for (id, valid) in cases {
            assert_eq!(is_valid_id(id), valid, "{id:?}");
        }
        assert!(is_valid_id(&"x".repeat(128)));
        assert!(!is_valid_id(&"x".repeat(129)));
    }

    #[test]
    fn maps_survive_a_reload_and_a_damaged_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let key = VaultKey::generate().unwrap();
        let mut sessions = Sessions::new(dir.path().join("sessions"));
        let placeholder = sessions
            .get("s1", &key)
            .unwrap()
            .map
            .placeholder_for("github-pat", "ghp_value_one");
        sessions.save("s1", &key).unwrap();

        let mut fresh = Sessions::new(dir.path().join("sessions"));
        let map = &fresh.get("s1", &key).unwrap().map;
        assert_eq!(
            map.resolve(&placeholder).map(|v| v.expose().to_owned()),
            Some("ghp_value_one".to_owned())
        );

        let file = dir.path().join("sessions/s1.map");
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        let mut damaged = Sessions::new(dir.path().join("sessions"));
        let err = damaged.get("s1", &key).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("session map {} cannot be read", file.display())
        );
        assert_eq!(std::fs::read(&file).unwrap(), bytes);
    }
}
