//! config.toml: the sample, merging with `all`, the default profile, keys from the
//! environment and the credential file, approvals, and every refusal naming its key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use stakpak_config::{
    AgentConfig, ConfigError, KeySource, Profile, ProviderKind, ProviderSettings, Rulebook,
    RulebookFilter, SAMPLE,
};

const ORIGIN: &str = "/etc/stakpak/config.toml";

fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
    AgentConfig::parse(text, Path::new(ORIGIN))
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn default_auto_approve() -> Vec<String> {
    strings(stakpak_config::DEFAULT_AUTO_APPROVE)
}

#[test]
fn the_sample_parses_and_resolves() {
    let config = parse(SAMPLE).unwrap();
    assert_eq!(
        config.profile_names(),
        strings(&["all", "default", "local", "readonly"])
    );
    assert_eq!(
        config.rulebook_dirs(),
        vec![PathBuf::from("/etc/stakpak/rulebooks")]
    );
    let env = |var: &str| (var == "ANTHROPIC_API_KEY").then(|| "sk-ant-test".to_owned());
    let default = config.profile("default", &env, None).unwrap();
    assert_eq!(
        (
            default.provider_key.as_str(),
            default.model.as_str(),
            &default.provider,
            default.max_turns
        ),
        (
            "anthropic",
            "claude-sonnet-4-5",
            &ProviderSettings {
                kind: ProviderKind::Anthropic,
                custom: false,
                base_url: "https://api.anthropic.com/v1".into(),
                api_key: Some("sk-ant-test".into()),
                api_key_env: Some("ANTHROPIC_API_KEY".into()),
                key_source: Some(KeySource::Environment),
            },
            50
        )
    );
    assert!(default.auto_approves("run_command", Some("kubectl"), Some("get")));
    assert!(!default.auto_approves("run_command", Some("kubectl"), Some("delete")));

    let local = config.profile("local", &env, None).unwrap();
    assert_eq!(
        (local.model.as_str(), &local.provider, local.max_turns),
        (
            "qwen3:32b",
            &ProviderSettings {
                kind: ProviderKind::OpenAi,
                custom: true,
                base_url: "http://127.0.0.1:11434/v1".into(),
                api_key: None,
                api_key_env: None,
                key_source: None,
            },
            30
        )
    );
    let readonly = config.profile("readonly", &env, None).unwrap();
    assert_eq!(
        readonly.rulebooks,
        RulebookFilter {
            include: strings(&["stakpak://rulebooks/**"]),
            exclude: strings(&["stakpak://rulebooks/rollback-*"]),
            include_tags: strings(&["kubernetes"]),
            exclude_tags: vec![],
        }
    );
}

#[test]
fn all_gives_defaults_field_by_field_and_providers_merge_by_key() {
    let config = parse(
        r#"
[settings]
rulebook_dirs = ["/usr/share/stakpak/rulebooks", "rulebooks.d"]

[profiles.all]
model = "anthropic/claude-sonnet-4-5"
max_turns = 20
allowed_tools = ["view", "run_command"]
system_prompt = "be careful"
[profiles.all.providers.anthropic]
type = "anthropic"
api_key_env = "TEAM_ANTHROPIC_KEY"
[profiles.all.providers.gw]
type = "custom"
api_endpoint = "https://llm.internal/v1/"
[profiles.all.rulebooks]
include = ["stakpak://rulebooks/*"]
exclude_tags = ["kubernetes"]

[profiles.prod]
model = "gw/llama-70b"
auto_approve = ["view", "run_command::git::status"]
[profiles.prod.providers.gw]
type = "openai"
api_endpoint = "https://gw.internal/v1"
[profiles.prod.rulebooks]
exclude_tags = []
include_tags = ["disk"]

[profiles.default]
max_turns = 5
"#,
    )
    .unwrap();
    assert_eq!(
        config.rulebook_dirs(),
        vec![
            PathBuf::from("/usr/share/stakpak/rulebooks"),
            PathBuf::from("/etc/stakpak/rulebooks.d")
        ]
    );
    let env = |var: &str| (var == "OPENAI_API_KEY").then(|| "sk-proj-x".to_owned());
    let prod = config.profile("prod", &env, None).unwrap();
    assert_eq!(
        prod,
        Profile {
            name: "prod".into(),
            provider_key: "gw".into(),
            model: "llama-70b".into(),
            provider: ProviderSettings {
                kind: ProviderKind::OpenAi,
                custom: false,
                base_url: "https://gw.internal/v1".into(),
                api_key: Some("sk-proj-x".into()),
                api_key_env: Some("OPENAI_API_KEY".into()),
                key_source: Some(KeySource::Environment),
            },
            allowed_tools: Some(strings(&["view", "run_command"])),
            auto_approve: strings(&["view", "run_command::git::status"]),
            system_prompt: Some("be careful".into()),
            max_turns: 20,
            rulebooks: RulebookFilter {
                include: strings(&["stakpak://rulebooks/*"]),
                exclude: vec![],
                include_tags: strings(&["disk"]),
                exclude_tags: vec![],
            },
        }
    );
    let default = config.profile("default", &no_env, None).unwrap();
    assert_eq!(
        (
            default.name.as_str(),
            default.provider_key.as_str(),
            default.provider.base_url.as_str(),
            default.provider.api_key_env.as_deref(),
            default.provider.api_key.as_deref(),
            default.max_turns,
            default.auto_approve.clone(),
            default.rulebooks.exclude_tags.clone(),
        ),
        (
            "default",
            "anthropic",
            "https://api.anthropic.com/v1",
            Some("TEAM_ANTHROPIC_KEY"),
            None,
            5,
            default_auto_approve(),
            strings(&["kubernetes"]),
        )
    );
}

#[test]
fn without_a_default_profile_all_alone_is_the_default() {
    let config =
        parse("[profiles.all]\nmodel = \"openai/gpt-5\"\n[profiles.ops]\nmax_turns = 9\n").unwrap();
    let p = config.profile("default", &no_env, None).unwrap();
    assert_eq!(
        (p.name.as_str(), p.model.as_str(), p.max_turns),
        ("all", "gpt-5", 50)
    );
    let p = config.profile("ops", &no_env, None).unwrap();
    assert_eq!((p.name.as_str(), p.max_turns), ("ops", 9));

    // The built-in provider keys need no table; `provider` names the default one.
    let config = parse("[profiles.default]\nprovider = \"openai\"\nmodel = \"gpt-5\"\n").unwrap();
    let p = config.profile("default", &no_env, None).unwrap();
    assert_eq!(
        (
            p.provider_key.as_str(),
            p.model.as_str(),
            p.provider.base_url.as_str()
        ),
        ("openai", "gpt-5", "https://api.openai.com/v1")
    );
    // A profile or provider whose name looks like a credential's is no credential.
    let config = parse(
        "[profiles.deploy_key]\nmodel = \"my_token/m\"\n[profiles.deploy_key.providers.my_token]\ntype = \"openai\"\n",
    )
    .unwrap();
    let p = config.profile("deploy_key", &no_env, None).unwrap();
    assert_eq!(
        (p.provider_key.as_str(), p.model.as_str()),
        ("my_token", "m")
    );
    // A model with a slash whose prefix is no provider goes to the default provider whole.
    let config = parse(
        "[profiles.default]\nprovider = \"vllm\"\nmodel = \"meta-llama/Llama-3.3-70B\"\n[profiles.default.providers.vllm]\ntype = \"custom\"\napi_endpoint = \"http://10.0.0.5:8000/v1\"\n",
    )
    .unwrap();
    let p = config.profile("default", &no_env, None).unwrap();
    assert_eq!(
        (p.provider_key.as_str(), p.model.as_str()),
        ("vllm", "meta-llama/Llama-3.3-70B")
    );
}

#[test]
fn a_missing_file_is_an_empty_config_and_profiles_must_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.toml");
    let config = AgentConfig::load(&path).unwrap();
    assert_eq!(config.profile_names(), Vec::<String>::new());
    assert_eq!(
        config
            .profile("default", &no_env, None)
            .unwrap_err()
            .to_string(),
        format!(
            "no profile \"default\" in {}; it defines none: `stakpak config sample` prints an example",
            path.display()
        )
    );
    let config = parse(SAMPLE).unwrap();
    assert_eq!(
        config
            .profile("prod", &no_env, None)
            .unwrap_err()
            .to_string(),
        "no profile \"prod\" in /etc/stakpak/config.toml; profiles: all, default, local, readonly"
    );
}

#[test]
fn refusals_name_the_file_and_key() {
    let bad =
        |key: &str, message: &str| format!("invalid configuration in {ORIGIN}: {key}: {message}");
    let secret = "secrets never go in config.toml, which is often readable by everyone: export the variable named by the provider's api_key_env, or put `NAME = \"…\"` in credentials.toml (mode 0600) next to config.toml";
    for (text, expected) in [
        (
            "[profiles.prod]\nmodel = \"openai/gpt-5\"\nauto_approve = [\"view\", \"run_command::git\", \"run_command::\"]\n",
            bad(
                "profiles.prod.auto_approve[2]",
                "\"run_command::\" is not a tool name or run_command::<program>[::<subcommand>] key",
            ),
        ),
        (
            "[profiles.prod]\nmodel = \"openai/gpt-5\"\nauto_approve = [\"run_command::git::status::x\"]\n",
            bad(
                "profiles.prod.auto_approve[0]",
                "\"run_command::git::status::x\" is not a tool name or run_command::<program>[::<subcommand>] key",
            ),
        ),
        (
            "[profiles.prod]\nmodel = \"openai/gpt-5\"\nallowed_tools = [\"view\", \"run command\"]\n",
            bad(
                "profiles.prod.allowed_tools[1]",
                "\"run command\" is not a tool name",
            ),
        ),
        (
            "[profiles.prod]\nmodel = \"openai/gpt-5\"\nallowed_tools = \"view\"\n",
            bad(
                "profiles.prod.allowed_tools",
                "expected an array of strings, found a string",
            ),
        ),
        (
            "[profiles.prod]\nmodel = \"openai/gpt-5\"\nmax_turn = 3\n",
            bad(
                "profiles.prod.max_turn",
                "unknown key (expected one of: model, provider, providers, allowed_tools, auto_approve, system_prompt, max_turns, rulebooks)",
            ),
        ),
        (
            "[profiles.prod]\nmodel = \"openai/gpt-5\"\nmax_turns = 0\n",
            bad("profiles.prod.max_turns", "0 is out of range (1 to 10000)"),
        ),
        (
            "[profiles.prod]\nmodel = \"openai/gpt-5\"\nmax_turns = \"50\"\n",
            bad(
                "profiles.prod.max_turns",
                "expected an integer, found a string",
            ),
        ),
        (
            "[profiles.prod.providers.openai]\ntype = \"openai\"\napi_key = \"sk-proj-abc\"\n",
            bad("profiles.prod.providers.openai.api_key", secret),
        ),
        (
            "[profiles.all]\ntoken = \"t\"\nmodel = 3\n",
            bad("profiles.all.token", secret),
        ),
        (
            "[settings]\nrulebook_dirs = []\n[channels.slack]\nbot_token = \"xoxb-1\"\n",
            bad("channels.slack.bot_token", secret),
        ),
        (
            "[settings]\neditor = \"vim\"\n",
            bad(
                "settings.editor",
                "unknown key (expected one of: rulebook_dirs)",
            ),
        ),
        (
            "[profile.default]\nmodel = \"openai/gpt-5\"\n",
            bad(
                "profile",
                "unknown key (expected one of: settings, profiles)",
            ),
        ),
        (
            "[settings]\nrulebook_dirs = [\"~/rulebooks\"]\n",
            bad(
                "settings.rulebook_dirs[0]",
                "\"~/rulebooks\" is not a folder: give an absolute path or one relative to this file's folder",
            ),
        ),
        (
            "[profiles.p]\nmodel = \"x/y\"\n[profiles.p.providers.x]\ntype = \"gemini\"\n",
            bad(
                "profiles.p.providers.x.type",
                "\"gemini\" is not supported (openai, anthropic, or custom for an OpenAI-compatible endpoint)",
            ),
        ),
        (
            "[profiles.p]\nmodel = \"x/y\"\n[profiles.p.providers.x]\napi_endpoint = \"http://h/v1\"\n",
            bad(
                "profiles.p.providers.x.type",
                "missing: openai, anthropic, or custom (an OpenAI-compatible endpoint)",
            ),
        ),
        (
            "[profiles.p]\nmodel = \"x/y\"\n[profiles.p.providers.x]\ntype = \"custom\"\n",
            bad(
                "profiles.p.providers.x.api_endpoint",
                "missing: a custom provider needs the URL of its OpenAI-compatible API (e.g. http://127.0.0.1:11434/v1)",
            ),
        ),
        (
            "[profiles.p]\nmodel = \"x/y\"\n[profiles.p.providers.x]\ntype = \"custom\"\napi_endpoint = \"https://u:hunter2@h/v1\"\n",
            bad(
                "profiles.p.providers.x.api_endpoint",
                "must not carry credentials: put the key in the environment or in credentials.toml",
            ),
        ),
        (
            "[profiles.p]\nmodel = \"x/y\"\n[profiles.p.providers.x]\ntype = \"custom\"\napi_endpoint = \"ftp://h\"\n",
            bad(
                "profiles.p.providers.x.api_endpoint",
                "not an http:// or https:// URL",
            ),
        ),
        (
            "[profiles.p]\nmodel = \"anthropic/c\"\n[profiles.p.providers.anthropic]\ntype = \"anthropic\"\napi_key_env = \"sk-ant-api03-abc\"\n",
            bad(
                "profiles.p.providers.anthropic.api_key_env",
                "not an environment variable name (letters, digits and `_`): it names the variable holding the key, the key itself goes in the environment or in credentials.toml",
            ),
        ),
        (
            "[profiles.p]\nmax_turns = 3\n",
            bad(
                "profiles.p.model",
                "missing: set model = \"<provider>/<model>\" here or in profiles.all",
            ),
        ),
        (
            "[profiles.all]\nmodel = \"gpt-5\"\n[profiles.p]\n",
            bad(
                "profiles.all.model",
                "\"gpt-5\" names no provider: write \"<provider>/<model>\" with <provider> one of anthropic, openai, or set provider",
            ),
        ),
        (
            "[profiles.p]\nmodel = \"anthropic/\"\n",
            bad(
                "profiles.p.model",
                "\"anthropic/\" has no model after the provider",
            ),
        ),
        (
            "[profiles.p]\nmodel = \"gpt-5\"\nprovider = \"azure\"\n",
            bad(
                "profiles.p.provider",
                "\"azure\" names no provider (known: anthropic, openai)",
            ),
        ),
        (
            "[profiles.\"eu west\"]\nmodel = \"openai/gpt 5\"\n",
            bad(
                "profiles.\"eu west\".model",
                "\"openai/gpt 5\" is not \"<provider>/<model>\"",
            ),
        ),
        (
            "[profiles.p]\nmodel = \"openai/gpt-5\"\n[profiles.p.rulebooks]\ninclude = [\"\"]\n",
            bad("profiles.p.rulebooks.include[0]", "an empty glob"),
        ),
        (
            "profiles = 3\n",
            bad("profiles", "expected a table, found an integer"),
        ),
        (
            "[profiles]\nprod = \"x\"\n",
            bad("profiles.prod", "expected a table, found a string"),
        ),
        (
            "[profiles.p]\nmodel = openai/gpt-5\n",
            format!(
                "invalid configuration in {ORIGIN}: line 2, column 9: string values must be quoted, expected literal string"
            ),
        ),
    ] {
        let got = parse(text).map(|_| ()).unwrap_err().to_string();
        assert_eq!(got, expected, "{text}");
    }
}

#[test]
fn a_syntax_error_never_quotes_the_line() {
    let e = parse("[profiles.p.providers.openai]\napi_key = sk-proj-verysecret\n")
        .unwrap_err()
        .to_string();
    assert!(!e.contains("verysecret"), "{e}");
    assert!(
        e.starts_with(&format!("invalid configuration in {ORIGIN}: line 2")),
        "{e}"
    );
}

fn credentials(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let path = dir.join("credentials.toml");
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn keys_come_from_the_environment_then_the_credential_file() {
    let tmp = tempfile::tempdir().unwrap();
    let config = parse("[profiles.default]\nmodel = \"anthropic/claude-sonnet-4-5\"\n").unwrap();
    let file = credentials(
        tmp.path(),
        "# keys\nANTHROPIC_API_KEY = \"sk-ant-from-file\"\n",
        0o600,
    );

    let p = config.profile("default", &no_env, Some(&file)).unwrap();
    assert_eq!(
        (p.provider.api_key.as_deref(), &p.provider.key_source),
        (
            Some("sk-ant-from-file"),
            &Some(KeySource::CredentialFile(file.clone()))
        )
    );
    let env = |var: &str| (var == "ANTHROPIC_API_KEY").then(|| "sk-ant-from-env".to_owned());
    let p = config.profile("default", &env, Some(&file)).unwrap();
    assert_eq!(
        (p.provider.api_key.as_deref(), &p.provider.key_source),
        (Some("sk-ant-from-env"), &Some(KeySource::Environment))
    );
    // An empty variable is no key.
    let empty = |_: &str| Some(String::new());
    let p = config.profile("default", &empty, None).unwrap();
    assert_eq!((p.provider.api_key, p.provider.key_source), (None, None));

    // Debug never shows the key.
    let p = config.profile("default", &no_env, Some(&file)).unwrap();
    assert!(!format!("{p:?}").contains("sk-ant-from-file"));

    // A credential file others can read is refused, not skipped.
    let file = credentials(
        tmp.path(),
        "ANTHROPIC_API_KEY = \"sk-ant-from-file\"\n",
        0o644,
    );
    assert_eq!(
        config
            .profile("default", &no_env, Some(&file))
            .unwrap_err()
            .to_string(),
        format!(
            "credential file {}: mode 0644 lets group or others read it; make it private with chmod 600",
            file.display()
        )
    );
}

#[test]
fn describe_shows_where_the_key_is_never_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = parse(
        "[profiles.default]\nmodel = \"anthropic/claude-sonnet-4-5\"\nallowed_tools = [\"view\", \"run_command\"]\nsystem_prompt = \"Say \\\"why\\\".\"\n[profiles.default.rulebooks]\ninclude_tags = [\"disk\"]\n",
    )
    .unwrap();
    let env = |var: &str| (var == "ANTHROPIC_API_KEY").then(|| "sk-ant-secret".to_owned());
    let expected_rest = r#"
[rulebooks]
include = []  # every rulebook
exclude = []
include_tags = ["disk"]
exclude_tags = []
"#;
    let head = r#"profile = "default"
model = "anthropic/claude-sonnet-4-5"
max_turns = 50
allowed_tools = ["view", "run_command"]
auto_approve = ["view", "get_all_tasks", "get_task_details", "wait_for_tasks", "generate_password"]
system_prompt = 'Say "why".'

[provider]
name = "anthropic"
type = "anthropic"
api_endpoint = "https://api.anthropic.com/v1"
"#;
    let text = config.profile("default", &env, None).unwrap().describe();
    assert_eq!(
        text,
        format!("{head}api_key = \"set (from ANTHROPIC_API_KEY)\"\n{expected_rest}")
    );
    let file = credentials(tmp.path(), "ANTHROPIC_API_KEY = \"sk-ant-secret\"\n", 0o600);
    let text = config
        .profile("default", &no_env, Some(&file))
        .unwrap()
        .describe();
    assert_eq!(
        text,
        format!(
            "{head}api_key = \"set (from ANTHROPIC_API_KEY in {})\"\n{expected_rest}",
            file.display()
        )
    );
    let text = config.profile("default", &no_env, None).unwrap().describe();
    assert_eq!(
        text,
        format!(
            "{head}api_key = \"missing (set ANTHROPIC_API_KEY in the environment or in credentials.toml)\"\n{expected_rest}"
        )
    );
}

#[test]
fn tools_and_approvals() {
    let config = parse(
        r#"
[profiles.all]
model = "openai/gpt-5"
auto_approve = ["view", "run_command::git::status", "run_command::df", "create"]
[profiles.narrow]
allowed_tools = ["view", "run_command"]
"#,
    )
    .unwrap();
    let all = config.profile("all", &no_env, None).unwrap();
    let narrow = config.profile("narrow", &no_env, None).unwrap();
    for (profile, tool, program, sub, allowed, approved) in [
        (&all, "view", None, None, true, true),
        (&all, "create", None, None, true, true),
        (&all, "remove", None, None, true, false),
        (&all, "run_command", Some("git"), Some("status"), true, true),
        (&all, "run_command", Some("git"), Some("push"), true, false),
        (&all, "run_command", Some("git"), None, true, false),
        (&all, "run_command", Some("df"), Some("-h"), true, true),
        (&all, "run_command", Some("/tmp/x/df"), None, true, false),
        (&all, "run_command", None, None, true, false),
        (&all, "run_command_task", Some("df"), None, true, false),
        (&narrow, "view", None, None, true, true),
        (&narrow, "create", None, None, false, false),
        (&narrow, "run_command", Some("df"), None, true, true),
    ] {
        assert_eq!(
            (
                profile.tool_allowed(tool),
                profile.auto_approves(tool, program, sub)
            ),
            (allowed, approved),
            "{} {tool} {program:?} {sub:?}",
            profile.name
        );
    }
}

fn rulebook(uri: &str, tags: &[&str]) -> Rulebook {
    Rulebook {
        uri: uri.into(),
        description: "d".into(),
        tags: strings(tags),
        body: "b\n".into(),
        path: PathBuf::from("/r.md"),
    }
}

#[test]
fn rulebook_filters() {
    let all = [
        rulebook("stakpak://rulebooks/disk-full", &["disk", "linux"]),
        rulebook("stakpak://rulebooks/k8s/crashloop", &["kubernetes"]),
        rulebook(
            "stakpak://rulebooks/postgres-connections",
            &["postgres", "database"],
        ),
        rulebook("stakpak://team/rollback", &["deploy", "kubernetes"]),
    ];
    let uris = |filter: RulebookFilter| -> Vec<&str> {
        filter.select(&all).iter().map(|r| r.uri.as_str()).collect()
    };
    let filter =
        |include: &[&str], exclude: &[&str], include_tags: &[&str], exclude_tags: &[&str]| {
            RulebookFilter {
                include: strings(include),
                exclude: strings(exclude),
                include_tags: strings(include_tags),
                exclude_tags: strings(exclude_tags),
            }
        };
    assert_eq!(uris(RulebookFilter::default()).len(), 4);
    assert_eq!(
        uris(filter(&["stakpak://rulebooks/*"], &[], &[], &[])),
        [
            "stakpak://rulebooks/disk-full",
            "stakpak://rulebooks/postgres-connections"
        ]
    );
    assert_eq!(
        uris(filter(
            &["stakpak://rulebooks/**"],
            &["**/crash*"],
            &[],
            &[]
        )),
        [
            "stakpak://rulebooks/disk-full",
            "stakpak://rulebooks/postgres-connections"
        ]
    );
    assert_eq!(
        uris(filter(&[], &[], &["kubernetes", "disk"], &["deploy"])),
        [
            "stakpak://rulebooks/disk-full",
            "stakpak://rulebooks/k8s/crashloop"
        ]
    );
    assert_eq!(
        uris(filter(&["stakpak://team/*"], &[], &["database"], &[])),
        Vec::<&str>::new()
    );
}
