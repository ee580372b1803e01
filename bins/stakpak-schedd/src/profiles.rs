//! The agent profiles `config.toml` defines, so a schedule or channel naming a profile that
//! does not exist is refused when it is added rather than failing at its first run.

use std::{collections::BTreeSet, path::Path};

use stakpak_config::AgentConfig;

/// The profile every agent has: it falls back to `all` when `config.toml` does not define it.
pub const DEFAULT_PROFILE: &str = "default";

/// Profiles of `<config>/config.toml`.
#[derive(Debug, Clone)]
pub struct Profiles {
    path: String,
    /// `None`: the file could not be read or parsed; nothing is refused for it (the agent
    /// reports the file's problem when a session starts).
    names: Option<BTreeSet<String>>,
}

impl Profiles {
    /// Reads `config_dir/config.toml` (a missing file defines no profile but `default`).
    pub fn load(config_dir: &Path) -> Profiles {
        let path = config_dir.join("config.toml");
        let names = match AgentConfig::load(&path) {
            Ok(config) => Some(config.profile_names().into_iter().collect()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the agent's profiles; profiles are not checked");
                None
            }
        };
        Profiles {
            path: path.display().to_string(),
            names,
        }
    }

    /// `Ok` when `profile` is `default` or defined.
    pub fn check(&self, profile: &str) -> Result<(), String> {
        let Some(names) = &self.names else {
            return Ok(());
        };
        if profile == DEFAULT_PROFILE || names.contains(profile) {
            return Ok(());
        }
        let defined: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| *n != "all")
            .collect();
        Err(format!(
            "unknown profile `{profile}`: {} defines {}",
            self.path,
            if defined.is_empty() {
                "none (only `default`)".to_string()
            } else {
                defined.join(", ")
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn default_and_defined_profiles_pass_others_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "[profiles.all]\nmodel = \"openai/gpt-4o\"\n[profiles.ops]\n[profiles.readonly]\n",
        )
        .unwrap();
        let p = Profiles::load(dir.path());
        assert!(p.check("default").is_ok());
        assert!(p.check("ops").is_ok());
        let err = p.check("prod").unwrap_err();
        assert!(
            err.starts_with("unknown profile `prod`: ") && err.ends_with(" defines ops, readonly"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_defines_only_default_and_a_broken_one_checks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = Profiles::load(dir.path());
        assert!(p.check("default").is_ok());
        assert!(
            p.check("ops")
                .unwrap_err()
                .contains("none (only `default`)")
        );
        std::fs::write(dir.path().join("config.toml"), "[profiles.x\n").unwrap();
        assert!(Profiles::load(dir.path()).check("ops").is_ok());
    }
}
