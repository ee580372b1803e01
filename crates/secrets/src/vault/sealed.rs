//! The sealed-file format shared by the vault and session maps: a versioned header, then
//! one XChaCha20-Poly1305 ciphertext whose associated data is the whole header.
//!
//! ```text
//! offset size
//!   0     8   magic: "STAKVLT1" (vault) or "STAKSES1" (session map)
//!   8     2   format version, u16 LE (1)
//!  10     1   KDF: 0 = none, the key is the 256-bit key itself
//!  11     1   AEAD: 1 = XChaCha20-Poly1305
//!  12     4   flags, u32 LE, 0
//!  16     8   ciphertext length including the 16-byte tag, u64 LE
//!  24    24   nonce, fresh from the system's random source at every write
//!  48    16   key check: the Poly1305 tag of an empty message under the key, nonce 0
//!  64     4   CRC-32 of bytes 0..64
//!  68     n   ciphertext ‖ tag, associated data = bytes 0..68
//! ```
//!
//! The AEAD alone decides whether a file is authentic; the length, key check and CRC only
//! make the error precise: a short file is `Truncated`, a header with a bad CRC or a file
//! that fails authentication under the right key is `Tampered`, and a key check that does
//! not match is `WrongKey`. The version is read before the CRC, because a later version
//! may lay the header out differently.

use std::path::Path;

use chacha20poly1305::{
    AeadInOut, KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Tag, array::Array},
};
use zeroize::Zeroizing;

use super::{VaultError, VaultKey};

/// What a sealed file holds; each kind has its own magic, so one is never read as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealKind {
    Vault,
    SessionMap,
}

impl SealKind {
    pub const fn magic(self) -> &'static [u8; 8] {
        match self {
            SealKind::Vault => b"STAKVLT1",
            SealKind::SessionMap => b"STAKSES1",
        }
    }
}

/// The only format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 68;
/// Poly1305 tag length in bytes.
pub const TAG_LEN: usize = 16;

const KDF_NONE: u8 = 0;
const AEAD_XCHACHA20_POLY1305: u8 = 1;
const KEY_CHECK_AAD: &[u8] = b"stakpak vault key check v1";
/// Files larger than this are refused before they are read into memory.
pub const MAX_FILE_LEN: u64 = 256 << 20;

/// Encrypts `plaintext` into a complete sealed file.
pub fn seal(key: &VaultKey, kind: SealKind, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).map_err(VaultError::Random)?;
    let cipher = cipher(key);
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(kind.magic());
    header[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[10] = KDF_NONE;
    header[11] = AEAD_XCHACHA20_POLY1305;
    let sealed_len = (plaintext.len() + TAG_LEN) as u64;
    header[16..24].copy_from_slice(&sealed_len.to_le_bytes());
    header[24..48].copy_from_slice(&nonce);
    header[48..64].copy_from_slice(&key_check(&cipher)?);
    let crc = crc32(&header[..64]);
    header[64..68].copy_from_slice(&crc.to_le_bytes());

    // The plaintext is copied into the output and encrypted there, so the only plaintext
    // copy this function makes is overwritten by ciphertext before it returns.
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&header);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_inout_detached(
            &XNonce::from(nonce),
            &header,
            (&mut out[HEADER_LEN..]).into(),
        )
        .map_err(|_| VaultError::Encrypt)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Checks and decrypts a sealed file's bytes; `path` names it in errors.
pub fn unseal(
    key: &VaultKey,
    kind: SealKind,
    bytes: &[u8],
    path: &Path,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let path = || path.to_owned();
    let magic = kind.magic();
    if bytes.len() < magic.len() {
        return Err(if magic.starts_with(bytes) {
            VaultError::Truncated { path: path() }
        } else {
            VaultError::NotAVault { path: path() }
        });
    }
    if &bytes[..8] != magic {
        return Err(VaultError::NotAVault { path: path() });
    }
    let Some(version) = bytes.get(8..10) else {
        return Err(VaultError::Truncated { path: path() });
    };
    let version = u16::from_le_bytes([version[0], version[1]]);
    if version != FORMAT_VERSION {
        return Err(VaultError::UnsupportedVersion {
            path: path(),
            found: version,
        });
    }
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err(VaultError::Truncated { path: path() });
    };
    let crc = u32::from_le_bytes([header[64], header[65], header[66], header[67]]);
    if crc32(&header[..64]) != crc {
        return Err(VaultError::Tampered { path: path() });
    }
    if header[10] != KDF_NONE || header[11] != AEAD_XCHACHA20_POLY1305 || header[12..16] != [0; 4] {
        return Err(VaultError::UnsupportedAlgorithm {
            path: path(),
            kdf: header[10],
            aead: header[11],
        });
    }
    let mut sealed_len = [0u8; 8];
    sealed_len.copy_from_slice(&header[16..24]);
    let sealed_len = u64::from_le_bytes(sealed_len);
    let body = &bytes[HEADER_LEN..];
    if (body.len() as u64) < sealed_len {
        return Err(VaultError::Truncated { path: path() });
    }
    if body.len() as u64 > sealed_len || sealed_len < TAG_LEN as u64 {
        return Err(VaultError::Tampered { path: path() });
    }
    let cipher = cipher(key);
    if header[48..64] != key_check(&cipher)?[..] {
        return Err(VaultError::WrongKey { path: path() });
    }
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&header[24..48]);
    let (ciphertext, tag) = body.split_at(body.len() - TAG_LEN);
    let tag = Tag::<XChaCha20Poly1305>::try_from(tag)
        .map_err(|_| VaultError::Tampered { path: path() })?;
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    cipher
        .decrypt_inout_detached(
            &XNonce::from(nonce),
            header,
            (&mut plaintext[..]).into(),
            &tag,
        )
        .map_err(|_| VaultError::Tampered { path: path() })?;
    Ok(plaintext)
}

fn cipher(key: &VaultKey) -> XChaCha20Poly1305 {
    // Borrowed, not copied: no unzeroed copy of the key is left on the stack.
    XChaCha20Poly1305::new(Array::cast_from_core(key.bytes()))
}

/// A fingerprint of the key that tells a wrong key from a damaged file. It is a MAC under the
/// key, so it says nothing about the key; its nonce (all zeros) is never drawn for data in
/// practice (2^-192), and it authenticates the same empty message every time.
fn key_check(cipher: &XChaCha20Poly1305) -> Result<[u8; TAG_LEN], VaultError> {
    let tag = cipher
        .encrypt_inout_detached(&XNonce::default(), KEY_CHECK_AAD, (&mut [][..]).into())
        .map_err(|_| VaultError::Encrypt)?;
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&tag);
    Ok(out)
}

/// CRC-32 (IEEE), bitwise: it runs over 64 header bytes, so a table is not worth it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }
}
