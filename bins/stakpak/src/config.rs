//! `stakpak config show|sample`: a profile of the agent's `config.toml` as it resolves, and
//! a commented sample. Runs in this process; no suite needed.
//!
//! `show` reads `<config-dir>/config.toml`, the credential file
//! `<config-dir>/credentials.toml` (only when a key is not in the environment) and the
//! rulebook folders; it prints where the API key comes from, never the key.

use std::{fmt::Write as _, path::Path, process::ExitCode};

use stakpak_config::{AgentConfig, DEFAULT_PROFILE, SAMPLE, load_rulebooks};

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print a profile as it resolves: model, provider, tools, approvals and rulebooks; the
    /// API key only as set (and from where) or missing.
    Show {
        /// The profile (default: `default`, or `all` when there is no `default`).
        #[arg(long, env = "STAKPAK_PROFILE", value_name = "NAME")]
        profile: Option<String>,
    },
    /// Print a commented sample config.toml.
    Sample,
}

pub fn run(command: ConfigCommand, config_dir: &Path) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Sample => print!("{SAMPLE}"),
        ConfigCommand::Show { profile } => {
            let name = profile.as_deref().unwrap_or(DEFAULT_PROFILE);
            print!(
                "{}",
                show(config_dir, name, &|var| std::env::var(var).ok())?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The text of `config show` for profile `name`.
pub fn show(
    config_dir: &Path,
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let path = config_dir.join("config.toml");
    let config = AgentConfig::load(&path)?;
    let profile = config.profile(name, env, Some(&config_dir.join("credentials.toml")))?;
    let dirs = config.rulebook_dirs();
    let rulebooks = load_rulebooks(&dirs)?;
    let selected = profile.rulebooks.select(&rulebooks);

    let mut out = format!("# {}\n", path.display());
    out.push_str(&profile.describe());
    out.push_str("\n# rulebook folders:\n");
    for dir in &dirs {
        let missing = if dir.is_dir() { "" } else { " (missing)" };
        let _ = writeln!(out, "#   {}{missing}", dir.display());
    }
    let _ = writeln!(
        out,
        "# rulebooks selected: {} of {}",
        selected.len(),
        rulebooks.len()
    );
    for rulebook in selected {
        let _ = writeln!(out, "#   {}", rulebook.uri);
    }
    Ok(out)
}
