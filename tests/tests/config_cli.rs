//! `stakpak config show|sample` as a user runs them, without a suite: the resolved profile
//! with the key shown only as set or missing, the sample as a working config, and bad
//! configurations refused with the file and key named.

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use stakpak_testkit::{Output, bin};

/// Runs the CLI with `<dir>/c` as configuration folder and only the given environment.
fn stakpak(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("stakpak"));
    cmd.env_clear()
        .arg("--state-dir")
        .arg(dir.join("s"))
        .arg("--config-dir")
        .arg(dir.join("c"))
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap().into()
}

fn config_dir(dir: &Path) -> PathBuf {
    let c = dir.join("c");
    fs::create_dir_all(&c).unwrap();
    c
}

const CANARY: &str = "sk-ant-api03-canary0123456789abcdefghijklmnopqrstuvwxyz";

#[test]
fn the_sample_is_a_working_config() {
    let tmp = tempfile::tempdir().unwrap();
    let out = stakpak(tmp.path(), &["config", "sample"], &[]);
    assert_eq!((out.code, out.stderr.as_str()), (Some(0), ""), "{out:?}");
    assert!(out.stdout.starts_with("# stakpak agent configuration"));
    fs::write(config_dir(tmp.path()).join("config.toml"), &out.stdout).unwrap();

    for (profile, model) in [
        (None, "anthropic/claude-sonnet-4-5"),
        (Some("local"), "ollama/qwen3:32b"),
        (Some("readonly"), "openai/gpt-5"),
    ] {
        let mut args = vec!["config", "show"];
        args.extend(profile.iter().flat_map(|p| ["--profile", *p]));
        let out = stakpak(tmp.path(), &args, &[]);
        assert_eq!((out.code, out.stderr.as_str()), (Some(0), ""), "{out:?}");
        assert!(
            out.stdout.contains(&format!("\nmodel = \"{model}\"\n")),
            "{}",
            out.stdout
        );
    }
}

#[test]
fn show_prints_the_resolved_profile_and_never_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let c = config_dir(tmp.path());
    let config = c.join("config.toml");
    fs::write(
        &config,
        r#"
[profiles.all]
model = "anthropic/claude-sonnet-4-5"
auto_approve = ["view", "run_command::df"]

[profiles.ops]
max_turns = 20
[profiles.ops.rulebooks]
include_tags = ["disk"]
"#,
    )
    .unwrap();
    let rulebooks = c.join("rulebooks");
    fs::create_dir_all(&rulebooks).unwrap();
    for (name, tags) in [("disk-full", "[disk, linux]"), ("tls", "[tls]")] {
        fs::write(
            rulebooks.join(format!("{name}.md")),
            format!(
                "---\nuri: stakpak://rulebooks/{name}\ndescription: d\ntags: {tags}\n---\n# T\nbody\n"
            ),
        )
        .unwrap();
    }
    let expected = |key: &str| {
        format!(
            r#"# {config}
profile = "ops"
model = "anthropic/claude-sonnet-4-5"
max_turns = 20
# allowed_tools: not set, every tool is allowed
auto_approve = ["view", "run_command::df"]
# system_prompt: not set

[provider]
name = "anthropic"
type = "anthropic"
api_endpoint = "https://api.anthropic.com/v1"
api_key = "{key}"

[rulebooks]
include = []  # every rulebook
exclude = []
include_tags = ["disk"]
exclude_tags = []

# rulebook folders:
#   {rulebooks}
# rulebooks selected: 1 of 2
#   stakpak://rulebooks/disk-full
"#,
            config = config.display(),
            rulebooks = rulebooks.display(),
        )
    };

    // From the environment, the profile from STAKPAK_PROFILE.
    let out = stakpak(
        tmp.path(),
        &["config", "show"],
        &[("ANTHROPIC_API_KEY", CANARY), ("STAKPAK_PROFILE", "ops")],
    );
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            Some(0),
            expected("set (from ANTHROPIC_API_KEY)").as_str(),
            ""
        )
    );

    // Missing.
    let out = stakpak(tmp.path(), &["config", "show", "--profile", "ops"], &[]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            Some(0),
            expected("missing (set ANTHROPIC_API_KEY in the environment or in credentials.toml)")
                .as_str(),
            ""
        )
    );

    // From the credential file, private as it must be.
    let credentials = c.join("credentials.toml");
    fs::write(&credentials, format!("ANTHROPIC_API_KEY = \"{CANARY}\"\n")).unwrap();
    fs::set_permissions(&credentials, fs::Permissions::from_mode(0o600)).unwrap();
    let out = stakpak(tmp.path(), &["config", "show", "--profile", "ops"], &[]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (
            Some(0),
            expected(&format!(
                "set (from ANTHROPIC_API_KEY in {})",
                credentials.display()
            ))
            .as_str(),
            ""
        )
    );

    // Readable by others: refused, naming the file and its mode.
    fs::set_permissions(&credentials, fs::Permissions::from_mode(0o644)).unwrap();
    let out = stakpak(tmp.path(), &["config", "show", "--profile", "ops"], &[]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr),
        (
            Some(1),
            "",
            format!(
                "stakpak: error: credential file {}: mode 0644 lets group or others read it; make it private with chmod 600\n",
                credentials.display()
            )
        )
    );
}

#[test]
fn bad_configs_are_refused_naming_the_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config_dir(tmp.path()).join("config.toml");
    let error = |text: &str, args: &[&str]| {
        fs::write(&config, text).unwrap();
        let mut all = vec!["config", "show"];
        all.extend_from_slice(args);
        let out = stakpak(tmp.path(), &all, &[]);
        assert_eq!((out.code, out.stdout.as_str()), (Some(1), ""), "{out:?}");
        out.stderr
    };
    let invalid = |key: &str, message: &str| {
        format!(
            "stakpak: error: invalid configuration in {}: {key}: {message}\n",
            config.display()
        )
    };

    assert_eq!(
        error(
            "[profiles.prod]\nmodel = \"openai/gpt-5\"\nauto_approve = [\"view\", \"run_command::kubectl::get\", \"run_command::\"]\n",
            &["--profile", "prod"],
        ),
        invalid(
            "profiles.prod.auto_approve[2]",
            "\"run_command::\" is not a tool name or run_command::<program>[::<subcommand>] key"
        )
    );

    // A key in config.toml: refused, and never repeated back.
    let stderr = error(
        &format!(
            "[profiles.default]\nmodel = \"anthropic/claude-sonnet-4-5\"\n[profiles.default.providers.anthropic]\ntype = \"anthropic\"\napi_key = \"{CANARY}\"\n"
        ),
        &[],
    );
    assert_eq!(
        stderr,
        invalid(
            "profiles.default.providers.anthropic.api_key",
            "secrets never go in config.toml, which is often readable by everyone: export the variable named by the provider's api_key_env, or put `NAME = \"…\"` in credentials.toml (mode 0600) next to config.toml"
        )
    );

    assert_eq!(
        error(
            "[profiles.default]\nmodel = \"anthropic/claude-sonnet-4-5\"\n",
            &["--profile", "prod"]
        ),
        format!(
            "stakpak: error: no profile \"prod\" in {}; profiles: default\n",
            config.display()
        )
    );

    // No config.toml at all.
    fs::remove_file(&config).unwrap();
    let out = stakpak(tmp.path(), &["config", "show"], &[]);
    assert_eq!(
        (out.code, out.stderr),
        (
            Some(1),
            format!(
                "stakpak: error: no profile \"default\" in {}; it defines none: `stakpak config sample` prints an example\n",
                config.display()
            )
        )
    );
}
