//! Placeholders: finding them, plain substitution, shell rewriting (checked by running the
//! rewritten command in bash), the session map and its sealed storage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{collections::BTreeMap, process::Command};

use stakpak_secrets::{
    placeholder::{
        PlaceholderError, Reference, ReferenceKind, SecretString, SessionMap, ShellCommand,
        for_shell, references, substitute,
    },
    vault::{SealKind, VaultError, VaultKey, read_sealed, write_sealed},
};

fn vault_ref(name: &str, start: usize, end: usize) -> Reference {
    Reference {
        kind: ReferenceKind::Vault,
        name: name.to_owned(),
        range: start..end,
    }
}

fn redacted_ref(text: &str, start: usize) -> Reference {
    Reference {
        kind: ReferenceKind::Redacted,
        name: text.to_owned(),
        range: start..start + text.len(),
    }
}

#[test]
fn references_in_text() {
    let long = "N".repeat(128);
    let too_long = "N".repeat(129);
    let cases: Vec<(String, Vec<Reference>)> = vec![
        ("no placeholders".to_owned(), vec![]),
        ("{{secret:A}}".to_owned(), vec![vault_ref("A", 0, 12)]),
        (
            "x {{secret:db.pass-1_x}} y {{secret:_B}}".to_owned(),
            vec![vault_ref("db.pass-1_x", 2, 24), vault_ref("_B", 27, 40)],
        ),
        (
            "{{{secret:A}}}".to_owned(),
            vec![vault_ref("A", 1, 13)],
        ),
        (format!("{{{{secret:{long}}}}}"), vec![vault_ref(&long, 0, 139)]),
        (format!("{{{{secret:{too_long}}}}}"), vec![]),
        ("{{secret:1A}} {{secret:}} {{secret:A B}} {{secret:A}".to_owned(), vec![]),
        ("{{ secret:A }} {{SECRET:A}}".to_owned(), vec![]),
        (
            "key [REDACTED_SECRET:aws-access-key:a1b2c3] and [REDACTED_SECRET:vault:zzzzzz]".to_owned(),
            vec![
                redacted_ref("[REDACTED_SECRET:aws-access-key:a1b2c3]", 4),
                redacted_ref("[REDACTED_SECRET:vault:zzzzzz]", 48),
            ],
        ),
        (
            "[REDACTED_SECRET:x:ABCDEF] [REDACTED_SECRET:x:abcde] [REDACTED_SECRET::abcdef] [REDACTED_SECRET:x:abcdefg]".to_owned(),
            vec![],
        ),
        (
            "ünïcode {{secret:A}}".to_owned(),
            vec![vault_ref("A", 10, 22)],
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(references(&text), expected, "{text}");
    }
}

fn resolver(reference: &Reference) -> Option<SecretString> {
    let value = match (reference.kind, reference.name.as_str()) {
        (ReferenceKind::Vault, "TOKEN") => "tok-123",
        (ReferenceKind::Vault, "PW") => "p a$$ 'w\"d*",
        (ReferenceKind::Redacted, "[REDACTED_SECRET:aws:abc123]") => "AKIAEXAMPLE",
        _ => return None,
    };
    Some(SecretString::from(value))
}

#[test]
fn plain_substitution() {
    let cases = [
        ("Bearer {{secret:TOKEN}}", "Bearer tok-123"),
        ("{{secret:TOKEN}}{{secret:TOKEN}}", "tok-123tok-123"),
        ("id=[REDACTED_SECRET:aws:abc123];", "id=AKIAEXAMPLE;"),
        ("nothing here", "nothing here"),
    ];
    for (text, expected) in cases {
        assert_eq!(
            substitute(text, resolver).unwrap().expose(),
            expected,
            "{text}"
        );
    }
}

#[test]
fn unknown_placeholders_are_named_in_the_error() {
    let cases = [
        (
            "a {{secret:TOKEN}} b {{secret:NOPE}}",
            "unknown secret placeholder {{secret:NOPE}}",
        ),
        (
            "[REDACTED_SECRET:aws:zzzzzz]",
            "unknown secret placeholder [REDACTED_SECRET:aws:zzzzzz]",
        ),
    ];
    for (text, message) in cases {
        let err = substitute(text, resolver).unwrap_err();
        assert_eq!(err.to_string(), message);
        let err = for_shell(text, resolver).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
    assert_eq!(
        for_shell("echo {{secret:NOPE}}", resolver).unwrap_err(),
        PlaceholderError::Unknown {
            placeholder: "{{secret:NOPE}}".to_owned()
        }
    );
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), SecretString::from(*v)))
        .collect()
}

/// `command → (rewritten command, environment)`.
type ShellCase<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

#[test]
fn shell_rewriting() {
    let cases: Vec<ShellCase<'_>> = vec![
        (
            "curl -H \"Authorization: Bearer {{secret:TOKEN}}\" https://api",
            "curl -H \"Authorization: Bearer ${STAKPAK_SECRET_0}\" https://api",
            vec![("STAKPAK_SECRET_0", "tok-123")],
        ),
        (
            "psql postgres://u:{{secret:PW}}@db/x",
            "psql postgres://u:\"${STAKPAK_SECRET_0}\"@db/x",
            vec![("STAKPAK_SECRET_0", "p a$$ 'w\"d*")],
        ),
        (
            "echo '{{secret:TOKEN}}' 'a{{secret:PW}}b'",
            "echo ''\"${STAKPAK_SECRET_0}\"'' 'a'\"${STAKPAK_SECRET_1}\"'b'",
            vec![
                ("STAKPAK_SECRET_0", "tok-123"),
                ("STAKPAK_SECRET_1", "p a$$ 'w\"d*"),
            ],
        ),
        (
            "echo $'x\\'{{secret:TOKEN}}y'",
            "echo $'x\\''\"${STAKPAK_SECRET_0}\"$'y'",
            vec![("STAKPAK_SECRET_0", "tok-123")],
        ),
        (
            "a {{secret:TOKEN}} {{secret:PW}} {{secret:TOKEN}}",
            "a \"${STAKPAK_SECRET_0}\" \"${STAKPAK_SECRET_1}\" \"${STAKPAK_SECRET_0}\"",
            vec![
                ("STAKPAK_SECRET_0", "tok-123"),
                ("STAKPAK_SECRET_1", "p a$$ 'w\"d*"),
            ],
        ),
        (
            "aws --key [REDACTED_SECRET:aws:abc123]",
            "aws --key \"${STAKPAK_SECRET_0}\"",
            vec![("STAKPAK_SECRET_0", "AKIAEXAMPLE")],
        ),
        (
            "echo \"$(printf '%s' '{{secret:TOKEN}}')\" `echo {{secret:TOKEN}}`",
            "echo \"$(printf '%s' ''\"${STAKPAK_SECRET_0}\"'')\" `echo \"${STAKPAK_SECRET_0}\"`",
            vec![("STAKPAK_SECRET_0", "tok-123")],
        ),
        (
            "cat <<EOF\nkey={{secret:TOKEN}}\nEOF\necho {{secret:PW}}",
            "cat <<EOF\nkey=${STAKPAK_SECRET_0}\nEOF\necho \"${STAKPAK_SECRET_1}\"",
            vec![
                ("STAKPAK_SECRET_0", "tok-123"),
                ("STAKPAK_SECRET_1", "p a$$ 'w\"d*"),
            ],
        ),
        (
            "echo hi # not {{secret:NOPE}} resolved, don't\necho {{secret:TOKEN}}",
            "echo hi # not {{secret:NOPE}} resolved, don't\necho \"${STAKPAK_SECRET_0}\"",
            vec![("STAKPAK_SECRET_0", "tok-123")],
        ),
        (
            "echo \\{{secret:TOKEN}}",
            "echo \"${STAKPAK_SECRET_0}\"",
            vec![("STAKPAK_SECRET_0", "tok-123")],
        ),
        ("echo plain", "echo plain", vec![]),
    ];
    for (command, expected, expected_env) in cases {
        assert_eq!(
            for_shell(command, resolver).unwrap(),
            ShellCommand {
                command: expected.to_owned(),
                env: env(&expected_env),
            },
            "{command}"
        );
    }
}

#[test]
fn a_quoted_here_document_cannot_take_a_secret() {
    let err = for_shell("cat <<'EOF'\n{{secret:TOKEN}}\nEOF", resolver).unwrap_err();
    assert_eq!(
        err,
        PlaceholderError::NotExpandable {
            placeholder: "{{secret:TOKEN}}".to_owned(),
            context: "a quoted here-document",
        }
    );
    assert_eq!(
        err.to_string(),
        "secret placeholder {{secret:TOKEN}} cannot be expanded inside a quoted here-document"
    );
}

/// What the rewritten command prints in a real bash equals what the plain substitution
/// means, and the value is never in the command line.
#[test]
fn rewritten_commands_run_in_bash_with_the_exact_value() {
    let value = "sp ace 'single' \"double\" $HOME `tick` \\ * ? [a] ~ ; | & \t tab ✓";
    let resolve = |_: &Reference| Some(SecretString::from(value));
    let cases = [
        ("printf '%s' {{secret:V}}", value.to_owned()),
        ("printf '%s' x{{secret:V}}y", format!("x{value}y")),
        ("printf '%s' \"<{{secret:V}}>\"", format!("<{value}>")),
        ("printf '%s' '<{{secret:V}}>'", format!("<{value}>")),
        ("printf '%s' $'<\\t{{secret:V}}>'", format!("<\t{value}>")),
        (
            "printf '%s' \"$(printf '%s' '{{secret:V}}')\"",
            value.to_owned(),
        ),
        ("cat <<EOF\n{{secret:V}}\nEOF", format!("{value}\n")),
        ("cat <<-EOF\n\t{{secret:V}}\n\tEOF", format!("{value}\n")),
        ("x={{secret:V}}; printf '%s' \"$x\"", value.to_owned()),
        (
            "printf '%s|' {{secret:V}} {{secret:V}}",
            format!("{value}|{value}|"),
        ),
    ];
    for (command, expected) in cases {
        let rewritten = for_shell(command, resolve).unwrap();
        assert!(
            !rewritten.command.contains("sp ace"),
            "{}",
            rewritten.command
        );
        let output = Command::new("bash")
            .arg("-c")
            .arg(&rewritten.command)
            .env_clear()
            .env("HOME", "/nonexistent")
            .envs(rewritten.env.iter().map(|(k, v)| (k, v.expose())))
            .output()
            .unwrap();
        assert_eq!(
            (
                String::from_utf8_lossy(&output.stdout).into_owned(),
                output.status.success()
            ),
            (expected, true),
            "{command} → {}",
            rewritten.command
        );
    }
}

#[test]
fn a_nul_in_a_value_cannot_go_into_the_environment() {
    let resolve = |_: &Reference| Some(SecretString::from("a\0b"));
    assert_eq!(
        for_shell("echo {{secret:X}}", resolve).unwrap_err(),
        PlaceholderError::NulInValue {
            placeholder: "{{secret:X}}".to_owned()
        }
    );
}

#[test]
fn session_map_gives_one_placeholder_per_value() {
    let mut map = SessionMap::with_seed(3);
    let a = map.placeholder_for("aws-access-key", "AKIAONE");
    let b = map.placeholder_for("github-token", "ghp_two");
    let again = map.placeholder_for("another-rule", "AKIAONE");
    let odd = map.placeholder_for("bad rule:id]", "third");
    assert_eq!(again, a);
    assert_ne!(a, b);
    let found: Vec<Reference> = references(&format!("{a} {b} {odd}"));
    assert_eq!(found.len(), 3);
    assert!(a.starts_with("[REDACTED_SECRET:aws-access-key:"), "{a}");
    assert!(odd.starts_with("[REDACTED_SECRET:bad-rule-id-:"), "{odd}");
    let resolved: Vec<Option<&str>> = [&a, &b, &odd]
        .iter()
        .map(|p| map.resolve(p).map(|v| v.expose()))
        .collect();
    assert_eq!(
        resolved,
        vec![Some("AKIAONE"), Some("ghp_two"), Some("third")]
    );
    // The code alone is not enough: the rule id must match too.
    let code = &a[a.len() - 7..a.len() - 1];
    assert_eq!(
        map.resolve(&format!("[REDACTED_SECRET:other:{code}]")),
        None
    );
    assert_eq!(map.resolve(&format!("{a} ")), None);
    assert_eq!(map.len(), 3);
    assert_eq!(format!("{map:?}"), "SessionMap { entries: 3, .. }");
}

#[test]
fn session_map_codes_never_collide() {
    let mut map = SessionMap::with_seed(11);
    let mut seen = std::collections::HashSet::new();
    for i in 0..20_000 {
        let placeholder = map.placeholder_for("r", &format!("value-{i}"));
        assert!(seen.insert(placeholder));
    }
}

#[test]
fn session_map_round_trips_through_bytes_and_a_sealed_file() {
    let mut map = SessionMap::new().unwrap();
    let placeholders: Vec<String> = (0..50)
        .map(|i| map.placeholder_for(&format!("rule-{}", i % 3), &format!("value-{i}-ü")))
        .collect();
    let restored = SessionMap::from_bytes(&map.to_bytes()).unwrap();
    let pairs = |m: &SessionMap| -> Vec<(String, String)> {
        m.values()
            .map(|(r, v)| (r.to_owned(), v.expose().to_owned()))
            .collect()
    };
    assert_eq!(pairs(&restored), pairs(&map));
    for (i, placeholder) in placeholders.iter().enumerate() {
        let expected = format!("value-{i}-ü");
        assert_eq!(
            restored.resolve(placeholder).map(|v| v.expose()),
            Some(expected.as_str())
        );
    }
    // New values after a restore still get fresh codes, and old ones keep theirs.
    let mut restored = restored;
    assert_eq!(restored.placeholder_for("x", "value-0-ü"), placeholders[0]);
    assert!(!placeholders.contains(&restored.placeholder_for("x", "brand new")));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.map");
    let key = VaultKey::from_bytes(&[9; 32]).unwrap();
    write_sealed(&path, &key, SealKind::SessionMap, &map.to_bytes()).unwrap();
    let on_disk = std::fs::read(&path).unwrap();
    assert!(!on_disk.windows(9).any(|w| w == b"value-17-"));
    let bytes = read_sealed(&path, &key, SealKind::SessionMap).unwrap();
    assert_eq!(pairs(&SessionMap::from_bytes(&bytes).unwrap()), pairs(&map));
    // A session map is not a vault, and the other way round.
    assert!(matches!(
        read_sealed(&path, &key, SealKind::Vault).unwrap_err(),
        VaultError::NotAVault { .. }
    ));
}

#[test]
fn malformed_session_map_bytes() {
    let mut map = SessionMap::with_seed(1);
    map.placeholder_for("r", "value");
    let good = map.to_bytes().to_vec();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "session map is malformed: too short"),
        (
            b"STKSMAP2........".to_vec(),
            "session map is malformed: wrong magic",
        ),
        (
            good[..good.len() - 1].to_vec(),
            "session map is malformed: entry cut short",
        ),
        (
            [&good[..], b"x"].concat(),
            "session map is malformed: trailing bytes",
        ),
    ];
    for (bytes, message) in cases {
        assert_eq!(
            SessionMap::from_bytes(&bytes).unwrap_err().to_string(),
            message
        );
    }
}

#[test]
fn secret_strings_do_not_debug_print() {
    let secret = SecretString::from("hunter2");
    let command = for_shell("echo {{secret:X}}", |_: &Reference| Some(secret.clone())).unwrap();
    assert_eq!(format!("{secret:?}"), "[REDACTED]");
    assert_eq!(
        format!("{command:?}"),
        "ShellCommand { command: \"echo \\\"${STAKPAK_SECRET_0}\\\"\", env: {\"STAKPAK_SECRET_0\": [REDACTED]} }"
    );
}

/// Random commands built from the lexer's special pieces (quotes, escapes, substitutions,
/// here-documents, multi-byte characters) never panic, and need at most one variable per
/// distinct placeholder.
#[test]
fn random_commands_do_not_panic() {
    const PIECES: [&str; 24] = [
        "{{secret:A}}",
        "[REDACTED_SECRET:r:abc123]",
        "'",
        "\"",
        "\\",
        "$'",
        "$(",
        ")",
        "(",
        "`",
        "<<",
        "<<-",
        "<<<",
        "EOF",
        "'EOF'",
        "\n",
        "#",
        " ",
        "\t",
        "é",
        "✓",
        "x",
        "$",
        "}}",
    ];
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let resolve = |_: &Reference| Some(SecretString::from("v"));
    for _ in 0..20_000 {
        let len = next() % 24;
        let command: String = (0..len).map(|_| PIECES[(next() % 24) as usize]).collect();
        match for_shell(&command, resolve) {
            Ok(rewritten) => {
                let text = substitute(&command, resolve).unwrap();
                assert!(rewritten.env.len() <= 2, "{command:?}");
                assert!(text.expose().len() <= command.len(), "{command:?}");
            }
            Err(PlaceholderError::NotExpandable { .. }) => {}
            Err(e) => panic!("{command:?}: {e}"),
        }
    }
}
