//! The vault: secrets by name in one file, sealed with XChaCha20-Poly1305 under a 256-bit
//! key ([`sealed`] describes the bytes), rewritten whole and atomically on every change.
//!
//! One process owns a vault file at a time (`stakpak-secretd`); two writers would lose each
//! other's changes. Every mutating call saves before it returns and leaves the in-memory
//! vault unchanged when the save fails, so memory and disk never disagree.

mod key;
mod sealed;

use std::{
    collections::BTreeMap,
    fmt,
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use zeroize::Zeroizing;

pub use key::{CREDENTIAL_NAME, KEY_LEN, VaultKey};
pub use sealed::{FORMAT_VERSION, HEADER_LEN, MAX_FILE_LEN, SealKind, TAG_LEN, seal, unseal};

use crate::placeholder::{SecretString, is_valid_name};

/// A secret's value: zeroed on drop, `[REDACTED]` in `Debug`.
pub type SecretValue = SecretString;

/// Largest value the vault accepts (1 MiB).
pub const MAX_VALUE_LEN: usize = 1 << 20;
/// Most consumers one secret may name.
pub const MAX_CONSUMERS: usize = 64;

/// Everything that can go wrong with a vault or its key. No variant carries a value.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{path} is not a stakpak vault")]
    NotAVault { path: PathBuf },
    #[error("{path} has vault format version {found}; this build reads version {FORMAT_VERSION}")]
    UnsupportedVersion { path: PathBuf, found: u16 },
    #[error("{path} uses key derivation {kdf} and cipher {aead}, which this build does not know")]
    UnsupportedAlgorithm { path: PathBuf, kdf: u8, aead: u8 },
    #[error("vault {path} is truncated")]
    Truncated { path: PathBuf },
    #[error("vault {path} has been tampered with or damaged (authentication failed)")]
    Tampered { path: PathBuf },
    #[error("vault {path} was sealed with a different key")]
    WrongKey { path: PathBuf },
    #[error("vault {path} authenticated but its contents are malformed: {reason}")]
    Corrupt { path: PathBuf, reason: &'static str },
    #[error("vault {path} already exists")]
    AlreadyExists { path: PathBuf },
    #[error("{path} is larger than the {MAX_FILE_LEN}-byte limit for a vault")]
    TooLarge { path: PathBuf },
    #[error("cannot {op} {path}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "key file {path} has mode {mode:04o}; group and others must have no access (chmod 600)"
    )]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    #[error("key file {path} is not a regular file")]
    KeyFileNotRegular { path: PathBuf },
    #[error("key file {path} holds {len} bytes; a vault key is {KEY_LEN} bytes")]
    KeyFileLength { path: PathBuf, len: usize },
    #[error("a vault key is {KEY_LEN} bytes, not {len}")]
    KeyLength { len: usize },
    #[error("cannot read the system's random source")]
    Random(#[source] getrandom::Error),
    #[error("encryption failed")]
    Encrypt,
    #[error("invalid secret name {name:?}: use [A-Za-z_][A-Za-z0-9_.-]{{0,127}}")]
    InvalidName { name: String },
    #[error("invalid consumer name {consumer:?} for secret {name}: use [A-Za-z0-9_.-]{{1,64}}")]
    InvalidConsumer { name: String, consumer: String },
    #[error("secret {name} names more than {MAX_CONSUMERS} consumers")]
    TooManyConsumers { name: String },
    #[error("secret {name} has an empty value")]
    EmptyValue { name: String },
    #[error("secret {name} is {len} bytes; the limit is {MAX_VALUE_LEN}")]
    ValueTooLarge { name: String, len: usize },
    #[error("no secret named {name}")]
    NotFound { name: String },
    #[error("secret {name} may not be used by {consumer}")]
    NotAllowed { name: String, consumer: String },
}

pub(crate) fn io_error(path: &Path, op: &'static str, source: io::Error) -> VaultError {
    VaultError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// One secret without its value, for listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    /// Seconds since the Unix epoch.
    pub created_unix: u64,
    pub updated_unix: u64,
    /// Who may use it; empty means every consumer.
    pub consumers: Vec<String>,
}

/// Whether [`Vault::set`] made a new secret or replaced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    Created,
    Updated,
}

#[derive(Clone)]
struct Secret {
    value: SecretValue,
    created_unix: u64,
    updated_unix: u64,
    consumers: Vec<String>,
}

impl Secret {
    fn allows(&self, consumer: &str) -> bool {
        self.consumers.is_empty() || self.consumers.iter().any(|c| c == consumer)
    }
}

/// An open vault: its file, its key and its secrets, decrypted in memory.
pub struct Vault {
    path: PathBuf,
    key: VaultKey,
    secrets: BTreeMap<String, Secret>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Creates an empty vault at `path`; an existing file is an error, never overwritten.
    pub fn create(path: &Path, key: VaultKey) -> Result<Self, VaultError> {
        let vault = Vault {
            path: path.to_owned(),
            key,
            secrets: BTreeMap::new(),
        };
        let pending = vault.prepare_save()?;
        // Linking instead of renaming refuses to replace a file created meanwhile.
        let linked = fs::hard_link(&pending.temp, path);
        drop(pending);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(VaultError::AlreadyExists {
                    path: path.to_owned(),
                });
            }
            Err(e) => return Err(io_error(path, "create", e)),
        }
        sync_folder(path)?;
        Ok(vault)
    }

    /// Opens and decrypts the vault at `path`.
    pub fn open(path: &Path, key: VaultKey) -> Result<Self, VaultError> {
        remove_stale_temps(path);
        let file = File::open(path).map_err(|e| io_error(path, "open", e))?;
        let len = file
            .metadata()
            .map_err(|e| io_error(path, "inspect", e))?
            .len();
        if len > MAX_FILE_LEN {
            return Err(VaultError::TooLarge {
                path: path.to_owned(),
            });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(MAX_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(path, "read", e))?;
        let plaintext = unseal(&key, SealKind::Vault, &bytes, path)?;
        let secrets = decode(&plaintext).map_err(|reason| VaultError::Corrupt {
            path: path.to_owned(),
            reason,
        })?;
        Ok(Vault {
            path: path.to_owned(),
            key,
            secrets,
        })
    }

    /// Opens the vault, or creates an empty one if there is no file at `path`.
    pub fn open_or_create(path: &Path, key: VaultKey) -> Result<Self, VaultError> {
        match path.try_exists() {
            Ok(true) => Self::open(path, key),
            Ok(false) => match Self::create(path, key.clone()) {
                Err(VaultError::AlreadyExists { .. }) => Self::open(path, key),
                other => other,
            },
            Err(e) => Err(io_error(path, "inspect", e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Stores `value` under `name` for `consumers` (empty: everyone) and saves.
    pub fn set(
        &mut self,
        name: &str,
        value: SecretValue,
        consumers: &[&str],
    ) -> Result<SetOutcome, VaultError> {
        self.set_at(name, value, consumers, now_unix())
    }

    /// [`Vault::set`] with the time given, for tests and imports.
    pub fn set_at(
        &mut self,
        name: &str,
        value: SecretValue,
        consumers: &[&str],
        now_unix: u64,
    ) -> Result<SetOutcome, VaultError> {
        validate(name, &value, consumers)?;
        let mut consumers: Vec<String> = consumers.iter().map(|c| (*c).to_owned()).collect();
        consumers.sort();
        consumers.dedup();
        let (secret, outcome) = match self.secrets.get(name) {
            Some(old) => (
                Secret {
                    value,
                    created_unix: old.created_unix,
                    updated_unix: now_unix,
                    consumers,
                },
                SetOutcome::Updated,
            ),
            None => (
                Secret {
                    value,
                    created_unix: now_unix,
                    updated_unix: now_unix,
                    consumers,
                },
                SetOutcome::Created,
            ),
        };
        let previous = self.secrets.insert(name.to_owned(), secret);
        if let Err(e) = self.save() {
            match previous {
                Some(previous) => self.secrets.insert(name.to_owned(), previous),
                None => self.secrets.remove(name),
            };
            return Err(e);
        }
        Ok(outcome)
    }

    /// Removes a secret and saves.
    pub fn delete(&mut self, name: &str) -> Result<(), VaultError> {
        let Some(previous) = self.secrets.remove(name) else {
            return Err(VaultError::NotFound {
                name: name.to_owned(),
            });
        };
        if let Err(e) = self.save() {
            self.secrets.insert(name.to_owned(), previous);
            return Err(e);
        }
        Ok(())
    }

    /// A secret's value, whoever asks. Prefer [`Vault::get_for`] where a consumer is known.
    pub fn get(&self, name: &str) -> Option<&SecretValue> {
        self.secrets.get(name).map(|s| &s.value)
    }

    /// A secret's value if `consumer` may use it.
    pub fn get_for(&self, name: &str, consumer: &str) -> Result<&SecretValue, VaultError> {
        let secret = self.secrets.get(name).ok_or_else(|| VaultError::NotFound {
            name: name.to_owned(),
        })?;
        if !secret.allows(consumer) {
            return Err(VaultError::NotAllowed {
                name: name.to_owned(),
                consumer: consumer.to_owned(),
            });
        }
        Ok(&secret.value)
    }

    /// Every secret without its value, by name.
    pub fn list(&self) -> Vec<SecretInfo> {
        self.secrets
            .iter()
            .map(|(name, secret)| SecretInfo {
                name: name.clone(),
                created_unix: secret.created_unix,
                updated_unix: secret.updated_unix,
                consumers: secret.consumers.clone(),
            })
            .collect()
    }

    /// Every value with its name, to feed the redactor.
    pub fn values(&self) -> impl Iterator<Item = (&str, &SecretValue)> {
        self.secrets.iter().map(|(n, s)| (n.as_str(), &s.value))
    }

    /// Writes the vault to its file atomically. The mutating calls already do this.
    pub fn save(&self) -> Result<(), VaultError> {
        self.prepare_save()?.commit()
    }

    /// The first half of a save: the new file sealed, written and synced under a temporary
    /// name beside the vault. [`PendingSave::commit`] renames it into place; dropping it
    /// instead removes it. A crash before the commit leaves the old vault untouched.
    pub fn prepare_save(&self) -> Result<PendingSave, VaultError> {
        let plaintext = encode(&self.secrets);
        let bytes = seal(&self.key, SealKind::Vault, &plaintext)?;
        write_synced_temp(&self.path, &bytes)
    }
}

/// A sealed file written under a temporary name, waiting to be renamed over its target.
#[derive(Debug)]
pub struct PendingSave {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl PendingSave {
    /// The temporary file's path.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Renames the temporary file over the target and syncs the folder, so the rename
    /// itself survives a power cut.
    pub fn commit(mut self) -> Result<(), VaultError> {
        fs::rename(&self.temp, &self.target).map_err(|e| io_error(&self.target, "replace", e))?;
        self.committed = true;
        sync_folder(&self.target)
    }
}

impl Drop for PendingSave {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Seals `plaintext` and writes it to `path` atomically (temporary file, fsync, rename,
/// fsync of the folder). For session maps and anything else kept beside the vault.
pub fn write_sealed(
    path: &Path,
    key: &VaultKey,
    kind: SealKind,
    plaintext: &[u8],
) -> Result<(), VaultError> {
    let bytes = seal(key, kind, plaintext)?;
    write_synced_temp(path, &bytes)?.commit()
}

/// Reads and decrypts a file written by [`write_sealed`].
pub fn read_sealed(
    path: &Path,
    key: &VaultKey,
    kind: SealKind,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let file = File::open(path).map_err(|e| io_error(path, "open", e))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, "read", e))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(VaultError::TooLarge {
            path: path.to_owned(),
        });
    }
    unseal(key, kind, &bytes, path)
}

fn write_synced_temp(path: &Path, bytes: &[u8]) -> Result<PendingSave, VaultError> {
    let temp = temp_path(path)?;
    let pending = PendingSave {
        temp: temp.clone(),
        target: path.to_owned(),
        committed: false,
    };
    write_new_private(&temp, bytes, ["create", "write", "sync"])?;
    Ok(pending)
}

/// Creates `temp`, which must not exist yet, readable by its owner only (mode 0600), and
/// writes and syncs `bytes` into it; `ops` name the create, write and sync steps in errors.
pub(crate) fn write_new_private(
    temp: &Path,
    bytes: &[u8],
    [create, write, sync]: [&'static str; 3],
) -> Result<(), VaultError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .map_err(|e| io_error(temp, create, e))?;
    file.write_all(bytes)
        .map_err(|e| io_error(temp, write, e))?;
    file.sync_all().map_err(|e| io_error(temp, sync, e))
}

/// `.<name>.tmp.<pid>.<random>` beside `path`: same folder, so the rename stays on one
/// file system; hidden; unique even when one process saves twice at once.
pub(crate) fn temp_path(path: &Path) -> Result<PathBuf, VaultError> {
    let name = path
        .file_name()
        .ok_or_else(|| io_error(path, "name", io::ErrorKind::InvalidInput.into()))?;
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix).map_err(VaultError::Random)?;
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(
        ".tmp.{}.{:08x}",
        std::process::id(),
        u32::from_le_bytes(suffix)
    ));
    Ok(path.with_file_name(temp))
}

/// Removes temporary files a crashed save left beside `path`. Safe because one process owns
/// the vault; best effort, because a leftover wastes space but harms nothing.
fn remove_stale_temps(path: &Path) {
    let (Some(folder), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".tmp.");
    let prefix = prefix.as_encoded_bytes();
    let Ok(entries) = fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().as_encoded_bytes().starts_with(prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Syncs the folder holding `path`, which makes a rename or link in it durable.
pub(crate) fn sync_folder(path: &Path) -> Result<(), VaultError> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error(folder, "sync folder", e))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn is_valid_consumer(consumer: &str) -> bool {
    (1..=64).contains(&consumer.len())
        && consumer
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn validate(name: &str, value: &SecretValue, consumers: &[&str]) -> Result<(), VaultError> {
    if !is_valid_name(name) {
        return Err(VaultError::InvalidName {
            name: name.to_owned(),
        });
    }
    if value.is_empty() {
        return Err(VaultError::EmptyValue {
            name: name.to_owned(),
        });
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(VaultError::ValueTooLarge {
            name: name.to_owned(),
            len: value.len(),
        });
    }
    if consumers.len() > MAX_CONSUMERS {
        return Err(VaultError::TooManyConsumers {
            name: name.to_owned(),
        });
    }
    if let Some(bad) = consumers.iter().find(|c| !is_valid_consumer(c)) {
        return Err(VaultError::InvalidConsumer {
            name: name.to_owned(),
            consumer: (*bad).to_owned(),
        });
    }
    Ok(())
}

// The plaintext inside the seal, little-endian:
//   u32 count, then per secret: u16 name length, name, u32 value length, value,
//   u64 created, u64 updated, u16 consumer count, then per consumer u8 length and name.
// Written by hand rather than through serde so every copy of a value is one we zero.

fn encode(secrets: &BTreeMap<String, Secret>) -> Zeroizing<Vec<u8>> {
    let size = 4 + secrets
        .iter()
        .map(|(name, s)| {
            2 + name.len()
                + 4
                + s.value.len()
                + 16
                + 2
                + s.consumers.iter().map(|c| 1 + c.len()).sum::<usize>()
        })
        .sum::<usize>();
    // Sized up front: a growing Vec would leave unzeroed copies of values behind.
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    // Names, consumers and values are validated on the way in, so these lengths fit.
    out.extend_from_slice(&(secrets.len() as u32).to_le_bytes());
    for (name, secret) in secrets {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(secret.value.len() as u32).to_le_bytes());
        out.extend_from_slice(secret.value.expose().as_bytes());
        out.extend_from_slice(&secret.created_unix.to_le_bytes());
        out.extend_from_slice(&secret.updated_unix.to_le_bytes());
        out.extend_from_slice(&(secret.consumers.len() as u16).to_le_bytes());
        for consumer in &secret.consumers {
            out.push(consumer.len() as u8);
            out.extend_from_slice(consumer.as_bytes());
        }
    }
    out
}

fn decode(bytes: &[u8]) -> Result<BTreeMap<String, Secret>, &'static str> {
    let mut input = Reader { bytes, at: 0 };
    let count = input.u32()?;
    let mut secrets = BTreeMap::new();
    for _ in 0..count {
        let name_len = usize::from(input.u16()?);
        let name = input.str(name_len)?;
        if !is_valid_name(name) {
            return Err("invalid secret name");
        }
        let value_len = input.u32()? as usize;
        let value = SecretValue::from(input.str(value_len)?);
        let created_unix = input.u64()?;
        let updated_unix = input.u64()?;
        let consumer_count = usize::from(input.u16()?);
        let mut consumers = Vec::with_capacity(consumer_count.min(MAX_CONSUMERS));
        for _ in 0..consumer_count {
            let len = usize::from(input.u8()?);
            consumers.push(input.str(len)?.to_owned());
        }
        let secret = Secret {
            value,
            created_unix,
            updated_unix,
            consumers,
        };
        if secrets.insert(name.to_owned(), secret).is_some() {
            return Err("duplicate secret name");
        }
    }
    if input.at != bytes.len() {
        return Err("trailing bytes");
    }
    Ok(secrets)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.at.checked_add(n).ok_or("length overflow")?;
        let slice = self.bytes.get(self.at..end).ok_or("record cut short")?;
        self.at = end;
        Ok(slice)
    }

    fn str(&mut self, n: usize) -> Result<&'a str, &'static str> {
        std::str::from_utf8(self.take(n)?).map_err(|_| "text is not utf-8")
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        let mut secrets = BTreeMap::new();
        secrets.insert(
            "A".to_owned(),
            Secret {
                value: SecretValue::from("value one"),
                created_unix: 1,
                updated_unix: 2,
                consumers: vec!["sandboxd".to_owned(), "schedd".to_owned()],
            },
        );
        secrets.insert(
            "b.c-d".to_owned(),
            Secret {
                value: SecretValue::from("ünïcode ✓"),
                created_unix: 3,
                updated_unix: 4,
                consumers: vec![],
            },
        );
        let decoded = decode(&encode(&secrets)).unwrap();
        let summary = |m: &BTreeMap<String, Secret>| {
            m.iter()
                .map(|(n, s)| {
                    (
                        n.clone(),
                        s.value.expose().to_owned(),
                        s.created_unix,
                        s.updated_unix,
                        s.consumers.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(summary(&decoded), summary(&secrets));
    }

    #[test]
    fn malformed_plaintext_is_an_error() {
        let cases: [(&[u8], &str); 3] = [
            (b"", "record cut short"),
            (&[1, 0, 0, 0, 1, 0], "record cut short"),
            (&[0, 0, 0, 0, 9], "trailing bytes"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode(bytes).err(), Some(expected), "{bytes:?}");
        }
    }
}
