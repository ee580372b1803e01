//! What a session's loop needs from `config.toml` and the rulebooks, read at every start so
//! a change applies to the next session: the profile (with its provider's key), the model,
//! a client for it, and the system prompt.

use std::{path::Path, path::PathBuf, time::Duration};

use stakpak_config::{AgentConfig, ConfigError, Profile};
use stakpak_llm::{Client, ProviderConfig};

use crate::{config::LlmConfig, error::RunError};

const DEFAULT_SYSTEM_PROMPT: &str = "You are stakpak, a DevOps agent that lives on this Linux server and keeps its applications running. \
You act only through your tools: every command runs in a sandbox after a policy check, and credentials appear to you only as placeholders such as {{secret:NAME}} or [REDACTED_SECRET:rule:code] \
(use them as they are in commands and files; they are filled in inside the sandbox). Diagnose with read-only commands first, change as little as needed, \
verify the result, and ask the user before anything destructive or irreversible. When a call is refused, read the reason and take another way. \
Finish with a short report of what you found and did.";

/// Profile `name` of `<config_dir>/config.toml`. The API key comes from the environment or
/// the credential file: systemd's `llm-credentials.toml` when the unit passes one, else
/// `credentials.toml` beside the configuration.
pub fn load(config_dir: &Path, name: &str) -> Result<Profile, ConfigError> {
    let config = AgentConfig::load(&config_dir.join("config.toml"))?;
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|d| PathBuf::from(d).join("llm-credentials.toml"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| config_dir.join("credentials.toml"));
    let credentials = credentials.exists().then_some(credentials);
    config.profile(
        name,
        &|name| std::env::var(name).ok(),
        credentials.as_deref(),
    )
}

/// The model to ask: the profile's, or `requested` (`<provider-key>/<model>`, which must
/// name the profile's provider).
pub fn model(profile: &Profile, requested: Option<&str>) -> Result<String, RunError> {
    let Some(requested) = requested else {
        return Ok(profile.model.clone());
    };
    match requested.split_once('/') {
        Some((key, model)) if key == profile.provider_key => Ok(model.to_string()),
        _ => Err(RunError::Model {
            given: requested.to_string(),
            provider: profile.provider_key.clone(),
            profile: profile.name.clone(),
        }),
    }
}

/// A client for the profile's provider, with the daemon's timeouts and retries.
pub fn client(profile: &Profile, llm: &LlmConfig) -> Result<Client, RunError> {
    let mut provider = ProviderConfig::new(
        profile.provider.kind,
        profile.provider.base_url.clone(),
        profile.provider.api_key.clone(),
    );
    provider.timeout = Duration::from_secs(llm.timeout_secs);
    provider.idle_timeout = Duration::from_secs(llm.idle_timeout_secs);
    provider.max_retries = llm.max_retries;
    Client::new(provider).map_err(RunError::Client)
}

/// The profile's system prompt (or the default one) with the rulebooks it selects.
pub fn system_prompt(profile: &Profile, rulebook_dirs: &[PathBuf]) -> Result<String, ConfigError> {
    let mut system = profile
        .system_prompt
        .clone()
        .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_string());
    let all = stakpak_config::load_rulebooks(rulebook_dirs)?;
    let selected = profile.rulebooks.select(&all);
    if !selected.is_empty() {
        system.push_str("\n\n# Rulebooks (standard operating procedures)\n");
        for rb in selected {
            system.push_str(&format!(
                "\n## {} — {}\n\n{}\n",
                rb.uri,
                rb.description,
                rb.body.trim()
            ));
        }
    }
    Ok(system)
}
