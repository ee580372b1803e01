//! The vault key: 32 bytes, from a key file we create (embedded suite) or from bytes the
//! caller read (installed: the systemd credential `$CREDENTIALS_DIRECTORY/vault.key`).

use std::{
    fmt,
    fs::{self, File},
    io::{self, Read},
    os::unix::fs::PermissionsExt,
    path::Path,
};

use zeroize::Zeroizing;

use super::{VaultError, io_error, sync_folder, temp_path, write_new_private};

/// Length of a vault key in bytes (256 bits).
pub const KEY_LEN: usize = 32;

/// Name of the systemd credential that holds the key when installed.
pub const CREDENTIAL_NAME: &str = "vault.key";

/// A 256-bit vault key, zeroed on drop, `[REDACTED]` in `Debug`.
#[derive(Clone)]
pub struct VaultKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultKey([REDACTED])")
    }
}

impl VaultKey {
    /// A key from exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        let mut key = Zeroizing::new([0; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return Err(VaultError::KeyLength { len: bytes.len() });
        }
        key.copy_from_slice(bytes);
        Ok(VaultKey(key))
    }

    /// A fresh key from the system's random source.
    pub fn generate() -> Result<Self, VaultError> {
        let mut key = Zeroizing::new([0; KEY_LEN]);
        getrandom::fill(&mut key[..]).map_err(VaultError::Random)?;
        Ok(VaultKey(key))
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Reads a key file, refusing one that is not a regular file, that group or others may
    /// read or write, or that does not hold exactly 32 bytes.
    pub fn load(path: &Path) -> Result<Self, VaultError> {
        let mut file = File::open(path).map_err(|e| io_error(path, "open key file", e))?;
        // The checks use the opened file's metadata, so they judge the file we read.
        let metadata = file
            .metadata()
            .map_err(|e| io_error(path, "inspect key file", e))?;
        if !metadata.is_file() {
            return Err(VaultError::KeyFileNotRegular {
                path: path.to_owned(),
            });
        }
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(VaultError::KeyFilePermissions {
                path: path.to_owned(),
                mode,
            });
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
        // One byte more than a key, to tell a long file from a key without reading it all.
        (&mut file)
            .take(KEY_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(path, "read key file", e))?;
        if bytes.len() != KEY_LEN {
            return Err(VaultError::KeyFileLength {
                path: path.to_owned(),
                len: if bytes.len() > KEY_LEN {
                    metadata.len() as usize
                } else {
                    bytes.len()
                },
            });
        }
        Self::from_bytes(&bytes)
    }

    /// Loads the key file, or creates it with a fresh key (mode 0600) when it does not exist.
    /// Returns the key and whether it was created.
    ///
    /// Creation writes a temporary file, syncs it and links it into place, which fails if
    /// the name exists: a crash leaves no key file or a whole one, and two starts racing
    /// agree on one key.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), VaultError> {
        match Self::load(path) {
            Ok(key) => return Ok((key, false)),
            Err(VaultError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let key = Self::generate()?;
        let temp = temp_path(path)?;
        let result = (|| {
            write_new_private(
                &temp,
                key.bytes(),
                ["create key file", "write key file", "sync key file"],
            )?;
            fs::hard_link(&temp, path).map_err(|e| io_error(path, "link key file", e))
        })();
        let _ = fs::remove_file(&temp);
        match result {
            Ok(()) => {
                sync_folder(path)?;
                Ok((key, true))
            }
            // Someone else created it between our look and our link: theirs wins.
            Err(VaultError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                Ok((Self::load(path)?, false))
            }
            Err(e) => Err(e),
        }
    }
}
