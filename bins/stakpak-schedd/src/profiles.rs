//! The agent profiles `config.toml` defines, so a schedule or channel naming a profile that
//! does not exist is refused when it is added rather than failing at its first run.

use std::{collections::BTreeSet, path::Path};

use stakpak_config::AgentConfig;

/// The profile every agent has: it falls back to `all` when `config.toml` does not define it.
pub const DEFAULT_PROFILE: &str = "default";

/// A profile `config.toml` does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile `{profile}`: {path} defines {}", defined_text(.defined))]
pub struct UnknownProfile {
    pub profile: String,
    /// The `config.toml` that was read.
    pub path: String,
    /// The profiles it defines, apart from `all`.
    pub defined: Vec<String>,
}

fn defined_text(defined: &[String]) -> String {
    if defined.is_empty() {
        "none (only `default`)".to_string()
    } else {
        defined.join(", ")
    }
}

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
    pub fn check(&self, profile: &str) -> Result<(), UnknownProfile> {
        let Some(names) = &self.names else {
            return Ok(());
        };
        if profile == DEFAULT_PROFILE || names.contains(profile) {
            return Ok(());
        }
        Err(UnknownProfile {
            profile: profile.to_string(),
            path: self.path.clone(),
            defined: names.iter().filter(|n| *n != "all").cloned().collect(),
        })
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
        let err = p.check("prod").unwrap_err().to_string();
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
                .to_string()
                .contains("none (only `default`)")
        );
        std::fs::write(dir.path().join("config.toml"), "[profiles.x\n").unwrap();
        assert!(Profiles::load(dir.path()).check("ops").is_ok());
    }
}
