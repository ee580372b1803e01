//! The credential file: `credentials.toml` beside `config.toml`, `NAME = "value"` lines
//! keyed by the environment variable the value stands in for (`ANTHROPIC_API_KEY = "…"`).
//!
//! Like ssh with a private key, it is refused unless it is a regular file owned by the
//! caller or root that neither group nor others can read; refused means an error, never a
//! silent fallback, so a leaked key is noticed. No message quotes the file's text.

use std::{
    fs::File,
    io::{self, Read},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
};

use toml::Value;

use crate::{ConfigError, walk};

/// A credential file larger than this is not one.
const MAX_SIZE: u64 = 64 * 1024;

/// The value of `var` in the credential file at `path`; `None` when the file does not
/// exist or has no such line.
pub(crate) fn lookup(path: &Path, var: &str) -> Result<Option<String>, ConfigError> {
    let problem = |problem: String| ConfigError::Credentials {
        path: path.to_path_buf(),
        problem,
    };
    // Checked before opening so a FIFO cannot block the open, and again on the open file.
    match std::fs::metadata(path) {
        Ok(meta) => check(&meta).map_err(problem)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let read_error = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    check(&meta).map_err(problem)?;
    if meta.len() > MAX_SIZE {
        return Err(problem(format!("larger than {MAX_SIZE} bytes")));
    }
    let mut text = String::new();
    file.take(MAX_SIZE)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let (line, column) = walk::position(&text, e.span().map_or(0, |s| s.start));
        problem(format!(
            "line {line}, column {column}: {}",
            walk::syntax_message(&e)
        ))
    })?;
    if let Some((key, _)) = table.iter().find(|(_, v)| !matches!(v, Value::String(_))) {
        return Err(problem(format!(
            "{}: expected a string",
            walk::join("", key)
        )));
    }
    Ok(match table.get(var) {
        Some(Value::String(value)) if !value.is_empty() => Some(value.clone()),
        _ => None,
    })
}

/// Refuses what is not a private regular file of ours (or root's).
fn check(meta: &std::fs::Metadata) -> Result<(), String> {
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:04o} lets group or others read it; make it private with chmod 600"
        ));
    }
    let me = rustix::process::getuid().as_raw();
    let owner = meta.uid();
    if owner != me && owner != 0 {
        return Err(format!(
            "owned by uid {owner}, not by this user (uid {me}) or root"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::{fs, os::unix::fs::PermissionsExt};

    use super::*;

    fn write(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join("credentials.toml");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn reads_a_private_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "ANTHROPIC_API_KEY = \"sk-ant-x\"\n", 0o600);
        assert_eq!(
            lookup(&path, "ANTHROPIC_API_KEY").unwrap().as_deref(),
            Some("sk-ant-x")
        );
        assert_eq!(lookup(&path, "OPENAI_API_KEY").unwrap(), None);
        assert_eq!(
            lookup(&tmp.path().join("absent"), "OPENAI_API_KEY").unwrap(),
            None
        );
    }

    #[test]
    fn refuses_readable_files_and_folders_without_quoting_them() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "ANTHROPIC_API_KEY = \"sk-ant-secret\"\n", 0o640);
        let e = lookup(&path, "ANTHROPIC_API_KEY").unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "credential file {}: mode 0640 lets group or others read it; make it private with chmod 600",
                path.display()
            )
        );
        assert_eq!(
            lookup(tmp.path(), "X").unwrap_err().to_string(),
            format!(
                "credential file {}: not a regular file",
                tmp.path().display()
            )
        );
        let path = write(tmp.path(), "ANTHROPIC_API_KEY = sk-ant-secret\n", 0o600);
        let e = lookup(&path, "ANTHROPIC_API_KEY").unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "credential file {}: line 1, column 21: ",
                path.display()
            )),
            "{e}"
        );
        assert!(!e.contains("sk-ant-secret"), "{e}");
        let path = write(tmp.path(), "ANTHROPIC_API_KEY = 12345\n", 0o600);
        assert_eq!(
            lookup(&path, "ANTHROPIC_API_KEY").unwrap_err().to_string(),
            format!(
                "credential file {}: ANTHROPIC_API_KEY: expected a string",
                path.display()
            )
        );
    }
}
