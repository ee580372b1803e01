//! `stakpak-secretd`: the only holder of secret values: vault, placeholder resolution,
//! redaction.
//!
//! At start it loads the vault key and opens the vault (creating both on an embedded first
//! start); a key or vault it cannot use stops it with status 78 and a message naming the file,
//! and nothing is written. It then serves `dev.stakpak.Secrets1`: the D-Bus handlers
//! (`dbus.rs`) hand every call to the thread that owns the secret state (`core.rs`).

mod config;
mod dbus;
mod sessions;
mod state;
mod streams;

use std::path::Path;

use stakpak_daemon::{Confinement, Paths, ServeContext, ServeError, Service, StateError};
use stakpak_proto::{Daemon, SecretsInterface};
use stakpak_secrets::{
    detect::{DetectOptions, Detector},
    vault::{Vault, VaultError, VaultKey},
};
use tracing::{info, warn};

pub use config::{KeySource, SecretdConfig, Settings};

use crate::{config::KeySource as Key, state::chain};

/// The daemon as the shared runtime sees it.
#[derive(Debug)]
pub struct SecretsDaemon;

impl Service for SecretsDaemon {
    const DAEMON: Daemon = Daemon::Secrets;
    type Config = SecretdConfig;

    /// Besides the usual folders: the vault's folder (write) and the key's (read, or write
    /// where the key is created) when they lie outside the state folder.
    fn confinement(paths: &Paths, config: &SecretdConfig) -> Confinement {
        let mut confinement =
            Confinement::for_daemon(&paths.config_dir, &paths.state_dir, &paths.runtime_dir);
        let outside = |p: &Path| {
            p.parent()
                .filter(|dir| !dir.starts_with(&paths.state_dir))
                .map(Path::to_path_buf)
        };
        let settings = &config.settings;
        if let Some(dir) = outside(&settings.vault_path) {
            confinement.write.push(dir);
        }
        if let Some(key) = &settings.key
            && let Some(dir) = outside(&key.path)
        {
            if key.create {
                confinement.write.push(dir);
            } else {
                confinement.read.push(dir);
            }
        }
        confinement
    }

    async fn serve(
        ctx: ServeContext<SecretdConfig>,
        builder: stakpak_proto::zbus::connection::Builder<'static>,
    ) -> Result<stakpak_proto::zbus::connection::Builder<'static>, ServeError> {
        let settings = ctx.config.borrow().settings.clone();
        // Compiles the detection rules once, now, so a broken rule set stops the start.
        Detector::new(DetectOptions::default())?;
        let (key, vault) = open_vault(&settings)?;
        info!(
            vault = %vault.path().display(),
            secrets = vault.len(),
            "vault open"
        );
        if settings.resolve_uids.is_empty() {
            warn!(
                "no uid may call Resolve: placeholders will not resolve (see [resolve] allowed_uids)"
            );
        }
        let sessions = sessions::Sessions::new(ctx.paths.state_dir.join("sessions"));
        let core = state::Core::new(vault, key, sessions, ctx.config.clone()).spawn()?;
        Ok(builder.serve_at(
            Self::DAEMON.object_path(),
            SecretsInterface(dbus::Handler::new(ctx.control, core)),
        ))
    }
}

/// Loads the key and opens the vault, creating them only where that loses nothing: a key
/// only when neither it nor the vault exists (embedded), a vault only when none exists.
fn open_vault(settings: &Settings) -> Result<(VaultKey, Vault), StateError> {
    let path = &settings.vault_path;
    let Some(source) = &settings.key else {
        return Err(StateError(format!(
            "no key for vault {}: CREDENTIALS_DIRECTORY is not set (give the unit \
             LoadCredentialEncrypted=vault.key) and [vault] key_file is not configured",
            path.display()
        )));
    };
    let vault_exists = path
        .try_exists()
        .map_err(|e| StateError(format!("cannot inspect vault {}: {e}", path.display())))?;
    let key = load_key(source, path, vault_exists)?;
    let opened = if vault_exists {
        Vault::open(path, key.clone())
    } else {
        Vault::open_or_create(path, key.clone())
    };
    let vault = opened.map_err(|e| match e {
        VaultError::WrongKey { .. } => StateError(format!(
            "{} (key file {})",
            chain(&e),
            source.path.display()
        )),
        e => StateError(chain(&e)),
    })?;
    Ok((key, vault))
}

fn load_key(source: &Key, vault: &Path, vault_exists: bool) -> Result<VaultKey, StateError> {
    let missing = |e: &VaultError| matches!(e, VaultError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
    if source.create && !vault_exists {
        let (key, created) =
            VaultKey::load_or_create(&source.path).map_err(|e| StateError(chain(&e)))?;
        if created {
            info!(key_file = %source.path.display(), "created a new vault key");
        }
        return Ok(key);
    }
    VaultKey::load(&source.path).map_err(|e| {
        if missing(&e) && vault_exists {
            StateError(format!(
                "key file {} of vault {} is missing; restore it (a new key cannot read the vault)",
                source.path.display(),
                vault.display()
            ))
        } else {
            StateError(chain(&e))
        }
    })
}

/// Runs the daemon; the binary's `main` is only this.
pub fn main() -> std::process::ExitCode {
    stakpak_daemon::main::<SecretsDaemon>()
}
