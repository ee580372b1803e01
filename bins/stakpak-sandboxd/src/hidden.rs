//! What a sandboxed command may not read: the suite's own folders.
//!
//! Commands read the system freely (Landlock grants reading everywhere else), but not the
//! daemons' states (secretd's vault and, embedded, its key; the audit trails; the
//! changesets and their backups), their runtime folders and bus socket, or the
//! configuration folder. The workspace and private tmp of a run lie inside sandboxd's state
//! and stay usable: they are granted on their own.
//!
//! - Embedded (`<root>/state/<daemon>`, `<root>/run/<daemon>`): the whole suite root.
//! - Installed: every `stakpak-*` folder beside sandboxd's state and runtime folders
//!   (`/var/lib/stakpak-*`, `/run/stakpak-*` or `/run/stakpak`), and `/run/credentials`.
//! - Both: the configuration folder and `exec.hide`.

use std::path::{Path, PathBuf};

use stakpak_daemon::{Mode, Paths};

/// The folders below which sandboxed commands read nothing.
pub(crate) fn hidden_paths(paths: &Paths, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut hidden = vec![paths.config_dir.clone()];
    match paths.mode {
        Mode::Embedded => {
            for dir in [&paths.state_dir, &paths.runtime_dir] {
                match suite_root(dir) {
                    Some(root) => hidden.push(root),
                    None => hidden.push(dir.clone()),
                }
            }
        }
        Mode::Installed => {
            for dir in [&paths.state_dir, &paths.runtime_dir] {
                hidden.push(dir.clone());
                hidden.extend(stakpak_siblings(dir));
            }
            hidden.push("/run/credentials".into());
        }
    }
    hidden.extend(extra.iter().cloned());
    hidden.sort();
    hidden.dedup();
    hidden
}

/// `<root>` of `<root>/{state,run}/<daemon>`.
fn suite_root(dir: &Path) -> Option<PathBuf> {
    let parent = dir.parent()?;
    let name = parent.file_name()?.to_str()?;
    matches!(name, "state" | "run")
        .then(|| parent.parent().map(Path::to_path_buf))
        .flatten()
}

/// `stakpak*` entries beside `dir` (`/var/lib/stakpak-secretd` beside
/// `/var/lib/stakpak-sandboxd`), and the parent itself when it is a `stakpak` folder
/// (`/run/stakpak` holding `/run/stakpak/sandboxd`).
fn stakpak_siblings(dir: &Path) -> Vec<PathBuf> {
    let Some(parent) = dir.parent() else {
        return Vec::new();
    };
    if parent
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("stakpak"))
    {
        return vec![parent.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("stakpak"))
        })
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn embedded_hides_the_suite_root_and_the_config() {
        let paths = Paths {
            mode: Mode::Embedded,
            config_dir: "/home/u/.config/stakpak".into(),
            config_file: "/home/u/.config/stakpak/sandboxd.toml".into(),
            state_dir: "/run/user/1000/stakpak/state/sandboxd".into(),
            runtime_dir: "/run/user/1000/stakpak/run/sandboxd".into(),
        };
        assert_eq!(
            hidden_paths(&paths, &["/srv/secret".into()]),
            [
                PathBuf::from("/home/u/.config/stakpak"),
                "/run/user/1000/stakpak".into(),
                "/srv/secret".into(),
            ]
        );
    }

    #[test]
    fn installed_hides_every_stakpak_folder_beside_its_own() {
        let root = tempfile::tempdir().unwrap();
        let lib = root.path().join("var/lib");
        for d in [
            "stakpak-sandboxd",
            "stakpak-secretd",
            "stakpak-warden",
            "dpkg",
        ] {
            std::fs::create_dir_all(lib.join(d)).unwrap();
        }
        let paths = Paths {
            mode: Mode::Installed,
            config_dir: "/etc/stakpak".into(),
            config_file: "/etc/stakpak/sandboxd.toml".into(),
            state_dir: lib.join("stakpak-sandboxd"),
            runtime_dir: "/run/stakpak/sandboxd".into(),
        };
        let hidden = hidden_paths(&paths, &[]);
        for want in [
            PathBuf::from("/etc/stakpak"),
            lib.join("stakpak-sandboxd"),
            lib.join("stakpak-secretd"),
            lib.join("stakpak-warden"),
            "/run/stakpak".into(),
            "/run/credentials".into(),
        ] {
            assert!(hidden.contains(&want), "{want:?} not in {hidden:?}");
        }
        assert!(!hidden.contains(&lib.join("dpkg")));
    }
}
