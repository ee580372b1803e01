//! `config.toml`: `[settings]` and `[profiles.NAME]`, read strictly and resolved into the
//! [`Profile`] one agent run uses.
//!
//! Resolution: profile `all` supplies defaults for every other profile, field by field
//! (a list given by a profile replaces `all`'s; `[rulebooks]` merges per list); providers
//! merge by key (a profile's `[providers.X]` replaces `all`'s `X` as a whole). Without
//! `--profile` the profile is `default`, or `all` alone when there is no `default`.

use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    io,
    path::{Path, PathBuf},
};

use toml::Value;

use crate::{
    ConfigError, credentials, glob,
    rulebook::Rulebook,
    walk::{self, Issue, Node},
};

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";
/// The profile whose fields are every other profile's defaults.
pub const ALL_PROFILE: &str = "all";
pub const DEFAULT_MAX_TURNS: u32 = 50;
const MAX_MAX_TURNS: u32 = 10_000;
/// Tools approved without asking when a profile sets no `auto_approve`: those that only
/// read (stakpak/agent's default).
pub const DEFAULT_AUTO_APPROVE: &[&str] = &[
    "view",
    "get_all_tasks",
    "get_task_details",
    "wait_for_tasks",
    "generate_password",
];
const RUN_COMMAND: &str = "run_command";

/// A commented sample configuration, what `stakpak config sample` prints.
pub const SAMPLE: &str = include_str!("sample.toml");

/// The wire protocol a provider speaks (`type = "custom"` speaks OpenAI's), as the LLM
/// clients name it. Defined here rather than in stakpak-llm so that reading the
/// configuration never links the HTTP client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// `POST {base_url}/chat/completions`: OpenAI, Ollama, vLLM, LM Studio, OpenRouter.
    OpenAi,
    /// `POST {base_url}/messages`: the Anthropic Messages API.
    Anthropic,
}

impl ProviderKind {
    /// The provider's public endpoint.
    pub fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "https://api.openai.com/v1",
            ProviderKind::Anthropic => "https://api.anthropic.com/v1",
        }
    }

    /// The path below the base URL that one chat turn is posted to.
    pub fn endpoint(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "/chat/completions",
            ProviderKind::Anthropic => "/messages",
        }
    }
}

/// The `type` of a provider entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProviderType {
    OpenAi,
    Anthropic,
    Custom,
}

impl ProviderType {
    fn parse(s: &str) -> Option<ProviderType> {
        match s {
            "openai" => Some(ProviderType::OpenAi),
            "anthropic" => Some(ProviderType::Anthropic),
            "custom" => Some(ProviderType::Custom),
            _ => None,
        }
    }

    fn kind(self) -> ProviderKind {
        match self {
            ProviderType::OpenAi | ProviderType::Custom => ProviderKind::OpenAi,
            ProviderType::Anthropic => ProviderKind::Anthropic,
        }
    }

    fn default_endpoint(self) -> Option<&'static str> {
        match self {
            ProviderType::OpenAi | ProviderType::Anthropic => Some(self.kind().default_base_url()),
            ProviderType::Custom => None,
        }
    }

    fn default_key_env(self) -> Option<&'static str> {
        match self {
            ProviderType::OpenAi => Some("OPENAI_API_KEY"),
            ProviderType::Anthropic => Some("ANTHROPIC_API_KEY"),
            ProviderType::Custom => None,
        }
    }
}

/// `[profiles.X.providers.KEY]` as written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawProvider {
    ty: ProviderType,
    api_endpoint: Option<String>,
    api_key_env: Option<String>,
}

/// `[profiles.X.rulebooks]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RawRulebooks {
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    include_tags: Option<Vec<String>>,
    exclude_tags: Option<Vec<String>>,
}

/// `[profiles.X]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RawProfile {
    model: Option<String>,
    provider: Option<String>,
    providers: BTreeMap<String, RawProvider>,
    allowed_tools: Option<Vec<String>>,
    auto_approve: Option<Vec<String>>,
    system_prompt: Option<String>,
    max_turns: Option<u32>,
    rulebooks: RawRulebooks,
}

/// A parsed, validated `config.toml`. Holds no secret: keys are looked up when a profile
/// is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    origin: PathBuf,
    rulebook_dirs: Option<Vec<PathBuf>>,
    profiles: BTreeMap<String, RawProfile>,
}

/// Where a provider's API key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The environment variable [`ProviderSettings::api_key_env`].
    Environment,
    /// That variable's line in this credential file.
    CredentialFile(PathBuf),
}

/// The provider a profile talks to. `Debug` shows whether a key is set, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    pub kind: ProviderKind,
    /// `type = "custom"`: an OpenAI-compatible endpoint (Ollama, vLLM, …).
    pub custom: bool,
    /// The API base, without a trailing `/` (`https://api.anthropic.com/v1`).
    pub base_url: String,
    pub api_key: Option<String>,
    /// The variable the key is looked up under; `None` for a custom provider called
    /// without a key.
    pub api_key_env: Option<String>,
    /// Where [`Self::api_key`] came from, when it is set.
    pub key_source: Option<KeySource>,
}

impl fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("kind", &self.kind)
            .field("custom", &self.custom)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("api_key_env", &self.api_key_env)
            .field("key_source", &self.key_source)
            .finish()
    }
}

/// Which rulebooks a profile gets: `include` globs over URIs (empty: every rulebook), then
/// `exclude`, then `include_tags` (any of; empty: no condition), then `exclude_tags`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulebookFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub include_tags: Vec<String>,
    pub exclude_tags: Vec<String>,
}

impl RulebookFilter {
    /// The rulebooks of `all` this filter lets through, in their order.
    pub fn select<'a>(&self, all: &'a [Rulebook]) -> Vec<&'a Rulebook> {
        all.iter().filter(|r| self.admits(r)).collect()
    }

    fn admits(&self, rulebook: &Rulebook) -> bool {
        let uri = rulebook.uri.as_str();
        let has_tag = |tags: &[String]| tags.iter().any(|t| rulebook.tags.contains(t));
        (self.include.is_empty() || self.include.iter().any(|g| glob::matches(g, uri)))
            && !self.exclude.iter().any(|g| glob::matches(g, uri))
            && (self.include_tags.is_empty() || has_tag(&self.include_tags))
            && !has_tag(&self.exclude_tags)
    }
}

/// One resolved profile: everything an agent run needs from `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    /// The key of the provider entry (`anthropic` in `model = "anthropic/claude-…"`).
    pub provider_key: String,
    /// The model as the provider names it, without the provider key.
    pub model: String,
    pub provider: ProviderSettings,
    /// `None`: every tool.
    pub allowed_tools: Option<Vec<String>>,
    pub auto_approve: Vec<String>,
    pub system_prompt: Option<String>,
    pub max_turns: u32,
    pub rulebooks: RulebookFilter,
}

impl Profile {
    pub fn tool_allowed(&self, tool: &str) -> bool {
        self.allowed_tools
            .as_ref()
            .is_none_or(|tools| tools.iter().any(|t| t == tool))
    }

    /// `tool` with, for run_command, the command's program and first subcommand: true when
    /// auto_approve lists the tool, `run_command::<program>` or
    /// `run_command::<program>::<subcommand>`. Never for a tool the profile does not allow.
    ///
    /// The program is compared exactly as given (`/tmp/x/git` is not `git`); for a command
    /// line of several invocations the caller asks once per invocation and approves only
    /// when every answer is yes. The warden still judges every command afterwards.
    pub fn auto_approves(
        &self,
        tool: &str,
        program: Option<&str>,
        subcommand: Option<&str>,
    ) -> bool {
        if !self.tool_allowed(tool) {
            return false;
        }
        self.auto_approve.iter().any(|entry| {
            if entry == tool {
                return true;
            }
            let (Some(rest), Some(program)) = (
                entry
                    .strip_prefix(RUN_COMMAND)
                    .and_then(|r| r.strip_prefix("::")),
                program,
            ) else {
                return false;
            };
            if tool != RUN_COMMAND {
                return false;
            }
            match rest.split_once("::") {
                None => rest == program,
                Some((p, sub)) => p == program && subcommand == Some(sub),
            }
        })
    }

    /// What `stakpak config show` prints: the resolved profile as TOML-ish text, the key
    /// shown only as `set (from ANTHROPIC_API_KEY)` / `missing`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let p = &self.provider;
        let _ = writeln!(out, "profile = {}", quote(&self.name));
        let _ = writeln!(
            out,
            "model = {}",
            quote(&format!("{}/{}", self.provider_key, self.model))
        );
        let _ = writeln!(out, "max_turns = {}", self.max_turns);
        match &self.allowed_tools {
            Some(tools) => {
                let _ = writeln!(out, "allowed_tools = {}", list(tools));
            }
            None => out.push_str("# allowed_tools: not set, every tool is allowed\n"),
        }
        let _ = writeln!(out, "auto_approve = {}", list(&self.auto_approve));
        match &self.system_prompt {
            Some(prompt) => {
                let _ = writeln!(out, "system_prompt = {}", quote(prompt));
            }
            None => out.push_str("# system_prompt: not set\n"),
        }
        let _ = writeln!(out, "\n[provider]");
        let _ = writeln!(out, "name = {}", quote(&self.provider_key));
        let ty = if p.custom {
            "custom"
        } else {
            match p.kind {
                ProviderKind::OpenAi => "openai",
                ProviderKind::Anthropic => "anthropic",
            }
        };
        let _ = writeln!(out, "type = {}", quote(ty));
        let _ = writeln!(out, "api_endpoint = {}", quote(&p.base_url));
        let key = match (&p.api_key_env, &p.key_source) {
            (None, _) => "none (called without a key)".to_owned(),
            (Some(var), Some(KeySource::Environment)) if p.api_key.is_some() => {
                format!("set (from {var})")
            }
            (Some(var), Some(KeySource::CredentialFile(path))) if p.api_key.is_some() => {
                format!("set (from {var} in {})", path.display())
            }
            (Some(var), _) => {
                format!("missing (set {var} in the environment or in credentials.toml)")
            }
        };
        let _ = writeln!(out, "api_key = {}", quote(&key));
        let r = &self.rulebooks;
        let _ = writeln!(out, "\n[rulebooks]");
        if r.include.is_empty() {
            out.push_str("include = []  # every rulebook\n");
        } else {
            let _ = writeln!(out, "include = {}", list(&r.include));
        }
        let _ = writeln!(out, "exclude = {}", list(&r.exclude));
        let _ = writeln!(out, "include_tags = {}", list(&r.include_tags));
        let _ = writeln!(out, "exclude_tags = {}", list(&r.exclude_tags));
        out
    }
}

fn quote(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

impl AgentConfig {
    /// Parses and validates `text`; `origin` names the file in errors and anchors relative
    /// `rulebook_dirs`. Every profile must resolve (apart from API keys).
    pub fn parse(text: &str, origin: &Path) -> Result<AgentConfig, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let (line, column) = walk::position(text, e.span().map_or(0, |s| s.start));
            ConfigError::Syntax {
                path: origin.to_path_buf(),
                line,
                column,
                message: walk::syntax_message(&e),
            }
        })?;
        let invalid = |issue: Issue| ConfigError::Invalid {
            path: origin.to_path_buf(),
            key: issue.key,
            message: issue.message,
        };
        if let Some(key) = walk::find_secret("", &table) {
            return Err(invalid(Issue::new(key, walk::SECRET_HERE)));
        }
        let root = Node {
            path: String::new(),
            table: &table,
        };
        let config = read(&root, origin).map_err(invalid)?;
        for name in config.profiles.keys() {
            if name != ALL_PROFILE {
                config.settle(name)?;
            }
        }
        if !config.profiles.contains_key(DEFAULT_PROFILE)
            && config.profiles.contains_key(ALL_PROFILE)
        {
            config.settle(DEFAULT_PROFILE)?;
        }
        Ok(config)
    }

    /// Reads and parses `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        AgentConfig::parse(&text, path)
    }

    /// The file this configuration came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The profiles the file defines, sorted (`all` included when defined).
    pub fn profile_names(&self) -> Vec<String> {
        self.profiles.keys().cloned().collect()
    }

    /// Folders of rulebooks, in order (later ones override earlier ones by uri):
    /// `settings.rulebook_dirs`, relative ones below the configuration's folder; default
    /// `<config-dir>/rulebooks`.
    pub fn rulebook_dirs(&self) -> Vec<PathBuf> {
        match &self.rulebook_dirs {
            Some(dirs) => dirs.clone(),
            None => vec![self.base_dir().join("rulebooks")],
        }
    }

    fn base_dir(&self) -> PathBuf {
        base_dir(&self.origin)
    }

    /// Resolves profile `name` (`default` falls back to `all` alone when there is no
    /// `default`). The API key comes from the environment variable the provider names
    /// (`env`), else from that variable's line in the credential file `credentials`
    /// (checked to be private first); neither is an error only when the key is used.
    pub fn profile(
        &self,
        name: &str,
        env: &dyn Fn(&str) -> Option<String>,
        credentials: Option<&Path>,
    ) -> Result<Profile, ConfigError> {
        let mut profile = self.settle(name)?;
        let provider = &mut profile.provider;
        if let Some(var) = &provider.api_key_env {
            if let Some(key) = env(var).filter(|k| !k.is_empty()) {
                provider.api_key = Some(key);
                provider.key_source = Some(KeySource::Environment);
            } else if let Some(path) = credentials
                && let Some(key) = credentials::lookup(path, var)?
            {
                provider.api_key = Some(key);
                provider.key_source = Some(KeySource::CredentialFile(path.to_path_buf()));
            }
        }
        Ok(profile)
    }

    /// The profile without its key: merging, defaults and cross-field checks.
    fn settle(&self, name: &str) -> Result<Profile, ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: self.origin.clone(),
            key,
            message,
        };
        let all = self.profiles.get(ALL_PROFILE);
        // (the profile itself and its name, the defaults under it)
        let (own_name, own, base) = match self.profiles.get(name) {
            Some(own) if name == ALL_PROFILE => (name, own, None),
            Some(own) => (name, own, all),
            None => match all {
                Some(all) if name == DEFAULT_PROFILE => (ALL_PROFILE, all, None),
                _ => {
                    return Err(ConfigError::NoProfile {
                        path: self.origin.clone(),
                        name: name.to_owned(),
                        known: if self.profiles.is_empty() {
                            "it defines none: `stakpak config sample` prints an example".to_owned()
                        } else {
                            format!("profiles: {}", self.profile_names().join(", "))
                        },
                    });
                }
            },
        };
        let key = |owner: &str, field: &str| walk::join(&walk::join("profiles", owner), field);
        // Field by field: the profile's own value, else `all`'s, with the profile it came from.
        fn pick<'a, T>(
            own: (&'a str, &'a Option<T>),
            base: Option<&'a Option<T>>,
        ) -> Option<(&'a str, &'a T)> {
            own.1
                .as_ref()
                .map(|v| (own.0, v))
                .or_else(|| base.and_then(Option::as_ref).map(|v| (ALL_PROFILE, v)))
        }
        let mut providers: BTreeMap<&str, (&str, &RawProvider)> = BTreeMap::new();
        for (k, p) in base.iter().flat_map(|b| b.providers.iter()) {
            providers.insert(k, (ALL_PROFILE, p));
        }
        for (k, p) in &own.providers {
            providers.insert(k, (own_name, p));
        }
        let builtin = |k: &str| match k {
            "openai" => Some(ProviderType::OpenAi),
            "anthropic" => Some(ProviderType::Anthropic),
            _ => None,
        };
        let known = |k: &str| providers.contains_key(k) || builtin(k).is_some();
        let known_list = || {
            let mut names: Vec<&str> = providers.keys().copied().collect();
            for b in ["anthropic", "openai"] {
                if !names.contains(&b) {
                    names.push(b);
                }
            }
            names.sort_unstable();
            names.join(", ")
        };
        let default_provider = pick((own_name, &own.provider), base.map(|b| &b.provider));
        if let Some((owner, p)) = default_provider
            && !known(p)
        {
            return Err(invalid(
                key(owner, "provider"),
                format!("{} names no provider (known: {})", quote(p), known_list()),
            ));
        }
        let Some((model_owner, model)) = pick((own_name, &own.model), base.map(|b| &b.model))
        else {
            return Err(invalid(
                key(own_name, "model"),
                "missing: set model = \"<provider>/<model>\" here or in profiles.all".to_owned(),
            ));
        };
        let (provider_key, model_name) = match model.split_once('/') {
            Some((p, m)) if known(p) => (p, m),
            _ => match default_provider {
                Some((_, p)) => (p.as_str(), model.as_str()),
                None => {
                    return Err(invalid(
                        key(model_owner, "model"),
                        format!(
                            "{} names no provider: write \"<provider>/<model>\" with <provider> one of {}, or set provider",
                            quote(model),
                            known_list()
                        ),
                    ));
                }
            },
        };
        if model_name.is_empty() {
            return Err(invalid(
                key(model_owner, "model"),
                format!("{} has no model after the provider", quote(model)),
            ));
        }
        let implicit;
        let raw = match providers.get(provider_key) {
            Some((_, raw)) => *raw,
            None => {
                implicit = RawProvider {
                    ty: builtin(provider_key).unwrap_or(ProviderType::OpenAi),
                    api_endpoint: None,
                    api_key_env: None,
                };
                &implicit
            }
        };
        // A custom provider without api_endpoint is refused when read.
        let base_url = raw
            .api_endpoint
            .as_deref()
            .or(raw.ty.default_endpoint())
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned();
        let provider = ProviderSettings {
            kind: raw.ty.kind(),
            custom: raw.ty == ProviderType::Custom,
            base_url,
            api_key: None,
            api_key_env: raw
                .api_key_env
                .clone()
                .or_else(|| raw.ty.default_key_env().map(str::to_owned)),
            key_source: None,
        };
        let lists = |f: fn(&RawRulebooks) -> &Option<Vec<String>>| {
            pick((own_name, f(&own.rulebooks)), base.map(|b| f(&b.rulebooks)))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Ok(Profile {
            name: own_name.to_owned(),
            provider_key: provider_key.to_owned(),
            model: model_name.to_owned(),
            provider,
            allowed_tools: pick(
                (own_name, &own.allowed_tools),
                base.map(|b| &b.allowed_tools),
            )
            .map(|(_, v)| v.clone()),
            auto_approve: pick((own_name, &own.auto_approve), base.map(|b| &b.auto_approve))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| {
                    DEFAULT_AUTO_APPROVE
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect()
                }),
            system_prompt: pick(
                (own_name, &own.system_prompt),
                base.map(|b| &b.system_prompt),
            )
            .map(|(_, v)| v.clone()),
            max_turns: pick((own_name, &own.max_turns), base.map(|b| &b.max_turns))
                .map_or(DEFAULT_MAX_TURNS, |(_, v)| *v),
            rulebooks: RulebookFilter {
                include: lists(|r| &r.include),
                exclude: lists(|r| &r.exclude),
                include_tags: lists(|r| &r.include_tags),
                exclude_tags: lists(|r| &r.exclude_tags),
            },
        })
    }
}

fn base_dir(origin: &Path) -> PathBuf {
    origin.parent().map(Path::to_path_buf).unwrap_or_default()
}

// --- reading the document -------------------------------------------------------------

fn read(root: &Node<'_>, origin: &Path) -> Result<AgentConfig, Issue> {
    root.only(&["settings", "profiles"])?;
    let mut rulebook_dirs = None;
    if let Some(settings) = root.table("settings")? {
        settings.only(&["rulebook_dirs"])?;
        if let Some(dirs) = settings.strings("rulebook_dirs")? {
            let base = base_dir(origin);
            rulebook_dirs = Some(
                dirs.into_iter()
                    .map(|(path, dir)| {
                        if dir.is_empty() || dir.starts_with('~') {
                            Err(Issue::new(
                                path,
                                format!(
                                    "{} is not a folder: give an absolute path or one relative to this file's folder",
                                    quote(dir)
                                ),
                            ))
                        } else {
                            Ok(base.join(dir))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
    }
    let mut profiles = BTreeMap::new();
    if let Some(node) = root.table("profiles")? {
        for (name, profile) in node.entries()? {
            profiles.insert(name.to_owned(), read_profile(&profile)?);
        }
    }
    Ok(AgentConfig {
        origin: origin.to_path_buf(),
        rulebook_dirs,
        profiles,
    })
}

fn read_profile(node: &Node<'_>) -> Result<RawProfile, Issue> {
    node.only(&[
        "model",
        "provider",
        "providers",
        "allowed_tools",
        "auto_approve",
        "system_prompt",
        "max_turns",
        "rulebooks",
    ])?;
    let model = node.string("model")?;
    if let Some(m) = model
        && (m.is_empty() || m.chars().any(char::is_whitespace))
    {
        return Err(Issue::new(
            node.key("model"),
            format!("{} is not \"<provider>/<model>\"", quote(m)),
        ));
    }
    let provider = node.string("provider")?;
    if let Some(p) = provider
        && !is_provider_key(p)
    {
        return Err(Issue::new(
            node.key("provider"),
            format!("{} is not a provider key", quote(p)),
        ));
    }
    let mut providers = BTreeMap::new();
    if let Some(table) = node.table("providers")? {
        for (key, entry) in table.entries()? {
            if !is_provider_key(key) {
                return Err(Issue::new(
                    entry.path,
                    "a provider key is letters, digits, `-`, `_` and `.` (it prefixes model names)",
                ));
            }
            providers.insert(key.to_owned(), read_provider(&entry)?);
        }
    }
    let tool_list = |field: &str, valid: fn(&str) -> bool, what: &str| {
        node.strings(field)?
            .map(|items| {
                items
                    .into_iter()
                    .map(|(path, item)| {
                        if valid(item) {
                            Ok(item.to_owned())
                        } else {
                            Err(Issue::new(path, format!("{} is not {what}", quote(item))))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
    };
    let allowed_tools = tool_list("allowed_tools", is_tool_name, "a tool name")?;
    let auto_approve = tool_list(
        "auto_approve",
        is_approval,
        "a tool name or run_command::<program>[::<subcommand>] key",
    )?;
    let system_prompt = node.string("system_prompt")?.map(str::to_owned);
    let max_turns = match node.integer("max_turns")? {
        None => None,
        Some(n) => match u32::try_from(n) {
            Ok(n) if (1..=MAX_MAX_TURNS).contains(&n) => Some(n),
            _ => {
                return Err(Issue::new(
                    node.key("max_turns"),
                    format!("{n} is out of range (1 to {MAX_MAX_TURNS})"),
                ));
            }
        },
    };
    let mut rulebooks = RawRulebooks::default();
    if let Some(r) = node.table("rulebooks")? {
        r.only(&["include", "exclude", "include_tags", "exclude_tags"])?;
        let non_empty = |field: &str, what: &str| {
            r.strings(field)?
                .map(|items| {
                    items
                        .into_iter()
                        .map(|(path, item)| {
                            if item.trim().is_empty() {
                                Err(Issue::new(path, format!("an empty {what}")))
                            } else {
                                Ok(item.to_owned())
                            }
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
        };
        rulebooks = RawRulebooks {
            include: non_empty("include", "glob")?,
            exclude: non_empty("exclude", "glob")?,
            include_tags: non_empty("include_tags", "tag")?,
            exclude_tags: non_empty("exclude_tags", "tag")?,
        };
    }
    Ok(RawProfile {
        model: model.map(str::to_owned),
        provider: provider.map(str::to_owned),
        providers,
        allowed_tools,
        auto_approve,
        system_prompt,
        max_turns,
        rulebooks,
    })
}

fn read_provider(node: &Node<'_>) -> Result<RawProvider, Issue> {
    node.only(&["type", "api_endpoint", "api_key_env"])?;
    let ty = match node.string("type")? {
        None => {
            return Err(Issue::new(
                node.key("type"),
                "missing: openai, anthropic, or custom (an OpenAI-compatible endpoint)",
            ));
        }
        Some(t) => ProviderType::parse(t).ok_or_else(|| {
            Issue::new(
                node.key("type"),
                format!(
                    "{} is not supported (openai, anthropic, or custom for an OpenAI-compatible endpoint)",
                    quote(t)
                ),
            )
        })?,
    };
    let api_endpoint = node.string("api_endpoint")?;
    if let Some(url) = api_endpoint {
        // Not quoted: an endpoint could carry a password.
        check_endpoint(url).map_err(|m| Issue::new(node.key("api_endpoint"), m))?;
    } else if ty == ProviderType::Custom {
        return Err(Issue::new(
            node.key("api_endpoint"),
            "missing: a custom provider needs the URL of its OpenAI-compatible API (e.g. http://127.0.0.1:11434/v1)",
        ));
    }
    let api_key_env = node.string("api_key_env")?;
    if let Some(var) = api_key_env
        && !is_env_name(var)
    {
        // Not quoted: the usual mistake is the key itself.
        return Err(Issue::new(
            node.key("api_key_env"),
            "not an environment variable name (letters, digits and `_`): it names the \
             variable holding the key, the key itself goes in the environment or in \
             credentials.toml",
        ));
    }
    Ok(RawProvider {
        ty,
        api_endpoint: api_endpoint.map(str::to_owned),
        api_key_env: api_key_env.map(str::to_owned),
    })
}

fn check_endpoint(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("not an http:// or https:// URL")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "must not carry credentials: put the key in the environment or in credentials.toml"
                .to_owned(),
        );
    }
    if authority.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("not a valid URL".to_owned());
    }
    Ok(())
}

fn is_provider_key(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn is_env_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_tool_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A tool name, `run_command::<program>` or `run_command::<program>::<subcommand>`.
fn is_approval(s: &str) -> bool {
    let word = |w: &str| {
        !w.is_empty()
            && !w.contains("::")
            && !w.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    match s
        .strip_prefix(RUN_COMMAND)
        .and_then(|r| r.strip_prefix("::"))
    {
        Some(rest) => match rest.split_once("::") {
            None => word(rest),
            Some((program, sub)) => word(program) && word(sub),
        },
        None => is_tool_name(s),
    }
}
