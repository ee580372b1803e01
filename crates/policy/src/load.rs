//! Reading packs: the ones built into the binary and `*.toml` files in folders. This is the
//! one part of the crate that touches files; the daemon and the CLI share it so both judge
//! with exactly the same policy.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Decision, Pack, Policy, PolicyError, Settings, parse_pack};

include!(concat!(env!("OUT_DIR"), "/builtin_packs.rs"));

/// The `[policy]` section of `warden.toml`, also read by `stakpak policy`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Use the packs built into the binary (the files in the source tree's `policies/`).
    #[serde(default = "yes")]
    pub builtin: bool,
    /// Folders of extra packs; a file named like a built-in pack replaces it. Relative
    /// folders are taken from the configuration folder. Default: `policies.d`.
    #[serde(default = "default_dirs")]
    pub dirs: Vec<PathBuf>,
    /// Decision when no rule matches.
    #[serde(default = "allow")]
    pub default: Decision,
    /// Decision for commands that cannot be parsed (never allow).
    #[serde(default = "ask")]
    pub unparsable: Decision,
}

fn yes() -> bool {
    true
}
fn default_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from("policies.d")]
}
fn allow() -> Decision {
    Decision::Allow
}
fn ask() -> Decision {
    Decision::Ask
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            builtin: true,
            dirs: default_dirs(),
            default: Decision::Allow,
            unparsable: Decision::Ask,
        }
    }
}

impl PolicyConfig {
    /// Checks values that deserialising cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.unparsable == Decision::Allow {
            return Err("policy.unparsable: a command that cannot be parsed is never allowed; use ask or deny".into());
        }
        Ok(())
    }

    pub fn settings(&self) -> Settings {
        Settings {
            default_decision: self.default,
            unparsable_decision: self.unparsable,
        }
    }

    /// Loads the policy: built-in packs, then every folder in order; every example runs.
    pub fn load(&self, config_dir: &Path) -> Result<Policy, PolicyError> {
        load(
            self.builtin,
            &self.resolved_dirs(config_dir),
            self.settings(),
        )
    }

    /// Like [`PolicyConfig::load`] without re-running the built-in packs' examples (the test
    /// suite runs them on every build); for one-shot commands that must answer fast.
    pub fn load_fast(&self, config_dir: &Path) -> Result<Policy, PolicyError> {
        load_with(
            self.builtin,
            &self.resolved_dirs(config_dir),
            self.settings(),
            true,
        )
    }

    fn resolved_dirs(&self, config_dir: &Path) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|d| {
                if d.is_absolute() {
                    d.clone()
                } else {
                    config_dir.join(d)
                }
            })
            .collect()
    }
}

/// Loads the built-in packs (when `builtin`) and every `*.toml` in `dirs`, in order; a file
/// in a later place replaces an earlier pack of the same file name. Missing folders are
/// skipped; no pack at all is an error.
pub fn load(builtin: bool, dirs: &[PathBuf], settings: Settings) -> Result<Policy, PolicyError> {
    load_with(builtin, dirs, settings, false)
}

fn load_with(
    builtin: bool,
    dirs: &[PathBuf],
    settings: Settings,
    trust_builtin: bool,
) -> Result<Policy, PolicyError> {
    let mut packs: Vec<(String, Pack)> = Vec::new();
    if builtin {
        for (name, text) in BUILTIN_PACKS {
            let source = format!("builtin:{name}");
            let pack = if trust_builtin {
                crate::pack::parse_pack_trusted(&source, text)?
            } else {
                parse_pack(&source, text)?
            };
            packs.push((name.to_string(), pack));
        }
    }
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(PolicyError::Read {
                    path: dir.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        let mut here: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        here.sort();
        for path in here {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let pack = read_pack(&path)?;
            packs.retain(|(n, _)| *n != name);
            packs.push((name, pack));
        }
    }
    if packs.is_empty() {
        let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(PolicyError::Empty(if shown.is_empty() {
            "(no folders; built-in packs disabled)".into()
        } else {
            shown.join(", ")
        }));
    }
    let packs = packs.into_iter().map(|(_, p)| p).collect();
    Policy::new_trusting(packs, settings, |p| {
        trust_builtin && p.source.starts_with("builtin:")
    })
}

/// Reads every `*.toml` in `dirs` only (no built-in packs).
pub fn load_dirs(dirs: &[PathBuf], settings: Settings) -> Result<Policy, PolicyError> {
    load(false, dirs, settings)
}

/// Reads and compiles one pack file.
pub fn read_pack(path: &Path) -> Result<Pack, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(parse_pack(&path.display().to_string(), &text)?)
}
