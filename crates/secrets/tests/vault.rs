//! The vault file: round trips, wrong keys, tampering, truncation, key files, plaintext
//! never on disk, and crashes during a save (simulated, and real with SIGKILL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    fs,
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use stakpak_secrets::{
    redact::encoded_forms,
    vault::{SecretInfo, SecretValue, SetOutcome, Vault, VaultError, VaultKey},
};

const KEY: [u8; 32] = *b"0123456789abcdef0123456789abcdef";
const OTHER_KEY: [u8; 32] = *b"fedcba9876543210fedcba9876543210";
const CANARY: &str = "canary-7f3a9c0e-do-not-leak";

fn key() -> VaultKey {
    VaultKey::from_bytes(&KEY).unwrap()
}

fn new_vault(dir: &Path) -> (PathBuf, Vault) {
    let path = dir.join("vault");
    let mut vault = Vault::create(&path, key()).unwrap();
    vault
        .set_at("AWS_KEY", SecretValue::from("AKIAEXAMPLE0001"), &[], 100)
        .unwrap();
    vault
        .set_at(
            "slack.bot-token",
            SecretValue::from("xoxb-1-2-three"),
            &["schedd"],
            200,
        )
        .unwrap();
    (path, vault)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut vault) = new_vault(dir.path());
    assert_eq!(
        vault
            .set_at(
                "AWS_KEY",
                SecretValue::from("AKIAEXAMPLE0002"),
                &["sandboxd", "schedd", "sandboxd"],
                300
            )
            .unwrap(),
        SetOutcome::Updated
    );
    drop(vault);
    let vault = Vault::open(&path, key()).unwrap();
    assert_eq!(
        vault.list(),
        vec![
            SecretInfo {
                name: "AWS_KEY".to_owned(),
                created_unix: 100,
                updated_unix: 300,
                consumers: vec!["sandboxd".to_owned(), "schedd".to_owned()],
            },
            SecretInfo {
                name: "slack.bot-token".to_owned(),
                created_unix: 200,
                updated_unix: 200,
                consumers: vec!["schedd".to_owned()],
            },
        ]
    );
    assert_eq!(
        vault.get("AWS_KEY").map(|v| v.expose()),
        Some("AKIAEXAMPLE0002")
    );
    assert_eq!(
        vault.get("slack.bot-token").map(|v| v.expose()),
        Some("xoxb-1-2-three")
    );
    assert_eq!(vault.get("missing").map(|v| v.expose()), None);
}

#[test]
fn delete_and_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut vault) = new_vault(dir.path());
    assert_eq!(
        vault
            .get_for("slack.bot-token", "schedd")
            .map(|v| v.expose())
            .ok(),
        Some("xoxb-1-2-three")
    );
    let denied = vault.get_for("slack.bot-token", "sandboxd").unwrap_err();
    assert!(matches!(denied, VaultError::NotAllowed { .. }));
    assert_eq!(
        denied.to_string(),
        "secret slack.bot-token may not be used by sandboxd"
    );
    assert_eq!(
        vault.get_for("AWS_KEY", "anyone").map(|v| v.expose()).ok(),
        Some("AKIAEXAMPLE0001")
    );
    vault.delete("AWS_KEY").unwrap();
    let missing = vault.delete("AWS_KEY").unwrap_err();
    assert_eq!(missing.to_string(), "no secret named AWS_KEY");
    let reopened = Vault::open(&path, key()).unwrap();
    let names: Vec<String> = reopened.list().into_iter().map(|i| i.name).collect();
    assert_eq!(names, vec!["slack.bot-token".to_owned()]);
}

#[test]
fn invalid_input_is_refused_without_echoing_values() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut vault) = new_vault(dir.path());
    let cases: Vec<(&str, &str, Vec<&str>, String)> = vec![
        (
            "1bad",
            CANARY,
            vec![],
            "invalid secret name \"1bad\": use [A-Za-z_][A-Za-z0-9_.-]{0,127}".to_owned(),
        ),
        (
            "EMPTY",
            "",
            vec![],
            "secret EMPTY has an empty value".to_owned(),
        ),
        (
            "OK",
            CANARY,
            vec!["bad consumer"],
            "invalid consumer name \"bad consumer\" for secret OK: use [A-Za-z0-9_.-]{1,64}"
                .to_owned(),
        ),
    ];
    for (name, value, consumers, expected) in cases {
        let err = vault
            .set(name, SecretValue::from(value), &consumers)
            .unwrap_err();
        assert_eq!(err.to_string(), expected);
        assert!(!format!("{err:?}").contains(CANARY));
    }
    assert_eq!(vault.len(), 2);
}

#[test]
fn create_refuses_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = new_vault(dir.path());
    let err = Vault::create(&path, key()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("vault {} already exists", path.display())
    );
    // The existing vault is untouched.
    assert_eq!(Vault::open(&path, key()).unwrap().len(), 2);
    let reopened = Vault::open_or_create(&path, key()).unwrap();
    assert_eq!(reopened.len(), 2);
    let fresh = Vault::open_or_create(&dir.path().join("other"), key()).unwrap();
    assert_eq!(fresh.len(), 0);
}

#[test]
fn wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = new_vault(dir.path());
    let err = Vault::open(&path, VaultKey::from_bytes(&OTHER_KEY).unwrap()).unwrap_err();
    assert!(matches!(err, VaultError::WrongKey { .. }));
    assert_eq!(
        err.to_string(),
        format!("vault {} was sealed with a different key", path.display())
    );
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    NotAVault,
    UnsupportedVersion(u16),
    Truncated,
    Tampered,
    WrongKey,
}

fn kind(err: &VaultError) -> Kind {
    match err {
        VaultError::NotAVault { .. } => Kind::NotAVault,
        VaultError::UnsupportedVersion { found, .. } => Kind::UnsupportedVersion(*found),
        VaultError::Truncated { .. } => Kind::Truncated,
        VaultError::Tampered { .. } => Kind::Tampered,
        VaultError::WrongKey { .. } => Kind::WrongKey,
        other => panic!("unexpected error {other}"),
    }
}

/// The error of opening the vault at `path` once `bytes` replaced the file.
fn open_written(path: &Path, bytes: &[u8]) -> VaultError {
    fs::write(path, bytes).unwrap();
    Vault::open(path, key()).unwrap_err()
}

#[test]
fn a_changed_byte_anywhere_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = new_vault(dir.path());
    let good = fs::read(&path).unwrap();
    let len = good.len();
    let cases: Vec<(&str, usize, Kind)> = vec![
        ("magic", 0, Kind::NotAVault),
        ("magic, last byte", 7, Kind::NotAVault),
        ("version, low byte", 8, Kind::UnsupportedVersion(0)),
        ("version, high byte", 9, Kind::UnsupportedVersion(257)),
        ("kdf", 10, Kind::Tampered),
        ("aead", 11, Kind::Tampered),
        ("flags", 13, Kind::Tampered),
        ("length", 16, Kind::Tampered),
        ("nonce", 24, Kind::Tampered),
        ("nonce, last byte", 47, Kind::Tampered),
        ("key check", 48, Kind::Tampered),
        ("header crc", 64, Kind::Tampered),
        ("ciphertext, first byte", 68, Kind::Tampered),
        (
            "ciphertext, middle",
            68 + (len - 68 - 16) / 2,
            Kind::Tampered,
        ),
        ("tag, first byte", len - 16, Kind::Tampered),
        ("tag, last byte", len - 1, Kind::Tampered),
    ];
    for (what, offset, expected) in cases {
        let mut bytes = good.clone();
        bytes[offset] ^= 0x01;
        let err = open_written(&path, &bytes);
        assert_eq!(kind(&err), expected, "{what} at {offset}");
    }

    // An attacker who also fixes the header CRC is caught by the AEAD (nonce, length), the
    // key check, or the length. A length pointing past the end of the file cannot be told
    // from a real truncation, and says so.
    let declared = u64::from_le_bytes(good[16..24].try_into().unwrap());
    let fixed_crc: Vec<(&str, usize, [u8; 8], Kind)> = vec![
        ("nonce", 30, [1, 0, 0, 0, 0, 0, 0, 0], Kind::Tampered),
        ("key check", 50, [1, 0, 0, 0, 0, 0, 0, 0], Kind::WrongKey),
        (
            "length, shorter",
            16,
            (declared ^ (declared - 1)).to_le_bytes(),
            Kind::Tampered,
        ),
        (
            "length, longer",
            16,
            (declared ^ (declared + 1)).to_le_bytes(),
            Kind::Truncated,
        ),
    ];
    for (what, offset, flips, expected) in fixed_crc {
        let mut bytes = good.clone();
        for (i, flip) in flips.iter().enumerate() {
            bytes[offset + i] ^= flip;
        }
        let crc = crc32(&bytes[..64]);
        bytes[64..68].copy_from_slice(&crc.to_le_bytes());
        let err = open_written(&path, &bytes);
        assert_eq!(kind(&err), expected, "{what} with a fixed crc");
    }

    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(
        kind(&open_written(&path, &longer)),
        Kind::Tampered,
        "appended byte"
    );

    fs::write(&path, &good).unwrap();
    assert_eq!(Vault::open(&path, key()).unwrap().len(), 2);
}

#[test]
fn a_truncated_file_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = new_vault(dir.path());
    let good = fs::read(&path).unwrap();
    let len = good.len();
    for cut in [0, 3, 8, 9, 10, 40, 67, 68, 69, len - 17, len - 16, len - 1] {
        let err = open_written(&path, &good[..cut]);
        assert_eq!(kind(&err), Kind::Truncated, "cut to {cut} of {len}");
        assert_eq!(
            err.to_string(),
            format!("vault {} is truncated", path.display())
        );
    }
}

#[test]
fn an_unknown_version_and_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = new_vault(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    let err = open_written(&path, &bytes);
    assert_eq!(
        err.to_string(),
        format!(
            "{} has vault format version 2; this build reads version 1",
            path.display()
        )
    );
    for other in [
        &b"{\"secrets\": {}}"[..],
        b"STAKSES1 a session map, not a vault",
        b"\x00",
    ] {
        let err = open_written(&path, other);
        assert_eq!(
            err.to_string(),
            format!("{} is not a stakpak vault", path.display())
        );
    }
}

#[test]
fn key_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.key");
    let (first, created) = VaultKey::load_or_create(&path).unwrap();
    assert!(created);
    let metadata = fs::metadata(&path).unwrap();
    assert_eq!(
        (metadata.permissions().mode() & 0o777, metadata.len()),
        (0o600, 32)
    );
    let (second, created) = VaultKey::load_or_create(&path).unwrap();
    assert!(!created);
    // The same key: a vault sealed with the first opens with the second.
    let vault_path = dir.path().join("vault");
    Vault::create(&vault_path, first).unwrap();
    Vault::open(&vault_path, second).unwrap();
    // Nothing but the key is left in the folder.
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["vault".to_owned(), "vault.key".to_owned()]);

    // A systemd credential is 0400; that is fine.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    VaultKey::load(&path).unwrap();
    for mode in [0o640, 0o604, 0o660, 0o644] {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let err = VaultKey::load(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "key file {} has mode {mode:04o}; group and others must have no access (chmod 600)",
                path.display()
            )
        );
        // load_or_create never replaces a key it refuses.
        assert!(matches!(
            VaultKey::load_or_create(&path).unwrap_err(),
            VaultError::KeyFilePermissions { .. }
        ));
    }

    let short = dir.path().join("short.key");
    fs::write(&short, [7u8; 31]).unwrap();
    fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        VaultKey::load(&short).unwrap_err().to_string(),
        format!(
            "key file {} holds 31 bytes; a vault key is 32 bytes",
            short.display()
        )
    );
    let folder = dir.path().join("folder.key");
    fs::create_dir(&folder).unwrap();
    fs::set_permissions(&folder, fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(
        VaultKey::load(&folder).unwrap_err().to_string(),
        format!("key file {} is not a regular file", folder.display())
    );
    assert_eq!(
        VaultKey::from_bytes(&[0; 16]).unwrap_err().to_string(),
        "a vault key is 32 bytes, not 16"
    );
    assert_eq!(format!("{:?}", key()), "VaultKey([REDACTED])");
}

#[test]
fn no_plaintext_canary_on_disk_or_in_debug() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut vault) = new_vault(dir.path());
    vault
        .set("CANARY", SecretValue::from(CANARY), &["sandboxd"])
        .unwrap();
    vault
        .set(
            "CANARY_TWICE",
            SecretValue::from(format!("{CANARY}{CANARY}")),
            &[],
        )
        .unwrap();
    vault.delete("AWS_KEY").unwrap();
    let forms = encoded_forms(CANARY.as_bytes());
    for entry in fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let bytes = fs::read(entry.path()).unwrap();
        for form in &forms {
            assert!(
                !contains(&bytes, &form.bytes),
                "{:?} of the canary in {}",
                form.form,
                entry.path().display()
            );
        }
    }
    let debug = format!(
        "{vault:?} {:?} {:?} {:?}",
        vault.get("CANARY"),
        vault.list(),
        Vault::open(&path, VaultKey::from_bytes(&OTHER_KEY).unwrap()).unwrap_err()
    );
    assert!(!debug.contains(CANARY), "{debug}");
    assert_eq!(format!("{:?}", vault.get("CANARY")), "Some([REDACTED])");
}

fn temp_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".vault.tmp."))
        .collect();
    names.sort();
    names
}

/// A crash after the temporary file is written and synced but before the rename: the old
/// vault is what opens, and the leftover goes at the next open.
#[test]
fn a_crash_before_the_rename_keeps_the_old_vault() {
    let dir = tempfile::tempdir().unwrap();
    let (path, vault) = new_vault(dir.path());
    let before = fs::read(&path).unwrap();

    // The new state, sealed and synced under its temporary name, never renamed.
    let other = dir.path().join("other");
    let mut newer = Vault::create(&other, key()).unwrap();
    newer
        .set("AWS_KEY", SecretValue::from("new-value-0001"), &[])
        .unwrap();
    let pending = newer.prepare_save().unwrap();
    let written = fs::read(pending.temp_path()).unwrap();
    // What `commit` would have renamed over `vault`; `forget` is the crash.
    std::mem::forget(pending);
    fs::write(dir.path().join(".vault.tmp.99999.0000abcd"), &written).unwrap();
    // And one that a crash cut in the middle of writing.
    fs::write(dir.path().join(".vault.tmp.99999.0000dcba"), &written[..40]).unwrap();
    let pending = vault.prepare_save().unwrap();
    std::mem::forget(pending);
    assert_eq!(temp_files(dir.path()).len(), 3);
    assert_eq!(fs::read(&path).unwrap(), before);

    let reopened = Vault::open(&path, key()).unwrap();
    assert_eq!(
        reopened.get("AWS_KEY").map(|v| v.expose()),
        Some("AKIAEXAMPLE0001")
    );
    assert_eq!(temp_files(dir.path()), Vec::<String>::new());
    let _ = fs::remove_file(other);
}

#[test]
fn a_failed_save_leaves_memory_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("sub");
    fs::create_dir(&folder).unwrap();
    let (_, mut vault) = new_vault(&folder);
    fs::remove_dir_all(&folder).unwrap();
    let err = vault
        .set("AWS_KEY", SecretValue::from("changed"), &[])
        .unwrap_err();
    assert!(matches!(err, VaultError::Io { op: "create", .. }), "{err}");
    assert!(
        vault
            .set("NEW", SecretValue::from("new-value"), &[])
            .is_err()
    );
    assert!(vault.delete("slack.bot-token").is_err());
    assert_eq!(
        vault.get("AWS_KEY").map(|v| v.expose()),
        Some("AKIAEXAMPLE0001")
    );
    let names: Vec<String> = vault.list().into_iter().map(|i| i.name).collect();
    assert_eq!(
        names,
        vec!["AWS_KEY".to_owned(), "slack.bot-token".to_owned()]
    );
}

const HELPER_ENV: &str = "STAKPAK_TEST_VAULT_SAVE_LOOP";
const HELPER_START_ENV: &str = "STAKPAK_TEST_VAULT_SAVE_FROM";

/// Not a test by itself: with `STAKPAK_TEST_VAULT_SAVE_LOOP` set, the child that
/// `sigkill_during_saves_keeps_the_old_or_the_new_value` starts. It saves a counter in a
/// loop, printing `saved <n>` after each save returned, until it is killed.
#[test]
fn save_loop_helper() {
    let Ok(path) = std::env::var(HELPER_ENV) else {
        return;
    };
    let start: u64 = std::env::var(HELPER_START_ENV).unwrap().parse().unwrap();
    let mut vault = Vault::open(Path::new(&path), key()).unwrap();
    println!("ready");
    for n in start.. {
        vault
            .set("COUNTER", SecretValue::from(format!("value-{n}")), &[])
            .unwrap();
        println!("saved {n}");
    }
}

/// Issue 4, "must be true" 3: a kill -9 in the middle of a save leaves the vault readable
/// with the old or the new value, and the other secrets intact.
#[test]
fn sigkill_during_saves_keeps_the_old_or_the_new_value() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut vault) = new_vault(dir.path());
    vault
        .set("COUNTER", SecretValue::from("value-0"), &[])
        .unwrap();
    drop(vault);
    let exe = std::env::current_exe().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut current = 0u64;
    let mut advanced = 0;
    for iteration in 0..30 {
        assert!(Instant::now() < deadline, "took too long");
        let mut child = Command::new(&exe)
            .args([
                "save_loop_helper",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, &path)
            .env(HELPER_START_ENV, (current + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Lines arrive through a thread so a helper that never says `ready` fails the test
        // instead of hanging it.
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (lines_tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            match lines.recv_timeout(Duration::from_secs(30)) {
                // libtest may print `test save_loop_helper ... ` on the same line first.
                Ok(line) if line.trim_end().ends_with("ready") => break,
                Ok(_) => {}
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("helper did not start: {e}");
                }
            }
        }
        let pause = getrandom::u64().unwrap() % 25_000;
        std::thread::sleep(Duration::from_micros(pause));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let last_saved = lines
            .try_iter()
            .filter_map(|l| l.strip_prefix("saved ").and_then(|n| n.parse::<u64>().ok()))
            .max()
            .unwrap_or(current);

        let vault = Vault::open(&path, key()).unwrap();
        let value = vault.get("COUNTER").unwrap().expose().to_owned();
        let on_disk: u64 = value.strip_prefix("value-").unwrap().parse().unwrap();
        assert!(
            on_disk == last_saved || on_disk == last_saved + 1,
            "iteration {iteration}: {value} on disk, last save reported {last_saved}"
        );
        assert_eq!(
            vault.get("AWS_KEY").map(|v| v.expose()),
            Some("AKIAEXAMPLE0001")
        );
        assert_eq!(vault.len(), 3);
        if on_disk > current {
            advanced += 1;
        }
        current = on_disk;
    }
    // Most kills land after some saves; if none did, the test proved nothing.
    assert!(advanced >= 10, "only {advanced} of 30 runs saved anything");
    assert_eq!(temp_files(dir.path()), Vec::<String>::new());
}
