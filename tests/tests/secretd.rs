//! secretd end to end: canary secrets pushed through every path never show up in plaintext
//! (files, logs, replies) yet resolve back exactly; `Resolve` from another uid is refused;
//! a bad key or vault stops the start without touching the vault; `kill -9` in the middle of
//! writes loses nothing; bad calls get typed errors.

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use base64::Engine as _;
use stakpak_proto::{Daemon, Detection, Error, RedactReply, SecretInfo, SecretsProxy, zbus};
use stakpak_testkit::{
    BusOptions, DaemonDirs, EmbeddedSuite, Output, PrivateBus, bin, daemon_command, files_below,
    random_string, wait_until,
};

// --- helpers ----------------------------------------------------------------------------

const ALNUM: &[u8] = b"abcdefghijkmnopqrstuvwyzABCDEFGHJKLMNPQRSTUVWYZ23456789";
const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWYZ234567";

fn random(alphabet: &[u8], n: usize) -> String {
    random_string(alphabet, n)
}

/// The canary and every encoding of it that must never appear: base64 (standard and
/// URL-safe, padded or not) and hex (both cases).
fn needles(canary: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let hex: String = canary.bytes().map(|b| format!("{b:02x}")).collect();
    vec![
        canary.to_owned(),
        STANDARD.encode(canary),
        STANDARD_NO_PAD.encode(canary),
        URL_SAFE.encode(canary),
        URL_SAFE_NO_PAD.encode(canary),
        hex.to_uppercase(),
        hex,
    ]
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

use stakpak_testkit::{connect, runtime};

/// A connection holding sandboxd's bus name, as sandboxd's own does: only such a caller may
/// `Resolve` (for tests of a secretd running alone on a private bus).
fn connect_as_sandboxd(rt: &tokio::runtime::Runtime, address: &str) -> zbus::Connection {
    let conn = connect(rt, address);
    rt.block_on(conn.request_name(Daemon::Sandbox.bus_name()))
        .unwrap();
    conn
}

/// Resolves `text` the only way a client of a whole suite can: sandboxd's `Create` writes
/// it, placeholders resolved, into a workspace file, which is read back and removed.
fn resolve_via_sandboxd(
    rt: &tokio::runtime::Runtime,
    conn: &zbus::Connection,
    suite: &EmbeddedSuite,
    text: &str,
) -> Result<String, Error> {
    let sandbox = rt.block_on(stakpak_proto::SandboxProxy::new(conn)).unwrap();
    rt.block_on(sandbox.create("resolve".into(), "resolved.txt".into(), text.into()))?;
    let file = suite
        .state_dir
        .join("state/sandboxd/workspaces/resolve/resolved.txt");
    let resolved = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    Ok(resolved)
}

fn proxy<'a>(rt: &tokio::runtime::Runtime, conn: &zbus::Connection) -> SecretsProxy<'a> {
    rt.block_on(SecretsProxy::new(conn)).unwrap()
}

/// `stakpak secret set NAME`, the value written to its stdin.
fn set_via_cli(suite: &EmbeddedSuite, args: &[&str], stdin: &str) -> Output {
    suite.stakpak_with_stdin(args, stdin)
}

/// The placeholder of the detection by `rule`.
fn placeholder_of(detections: &[Detection], rule: &str) -> String {
    detections
        .iter()
        .find(|d| d.rule_id == rule)
        .unwrap_or_else(|| panic!("no detection by {rule}: {detections:?}"))
        .placeholder
        .clone()
}

fn detection(rule: &str, placeholder: &str) -> Detection {
    Detection {
        rule_id: rule.into(),
        placeholder: placeholder.into(),
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Folders for secretd started on its own.
struct Dirs(DaemonDirs);

impl Dirs {
    fn new() -> Dirs {
        Dirs(DaemonDirs::new("stakpak-secretd-"))
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.path(rel)
    }

    fn config(&self, text: &str) {
        self.0.write_config(Daemon::Secrets, text);
    }
}

fn secretd(bus: &PrivateBus, dirs: &Dirs) -> Command {
    daemon_command(Daemon::Secrets, &bus.address, &dirs.0)
}

/// Starts secretd with stderr to `<root>/secretd.log` and waits for its bus name.
fn start_secretd(bus: &PrivateBus, dirs: &Dirs, rt: &tokio::runtime::Runtime) -> Child {
    let log = std::fs::File::create(dirs.path("secretd.log")).unwrap();
    let mut child = secretd(bus, dirs)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let conn = connect(rt, &bus.address);
    let dbus = rt.block_on(zbus::fdo::DBusProxy::new(&conn)).unwrap();
    let up = wait_until(Duration::from_secs(15), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "secretd exited with {status}: {}",
                std::fs::read_to_string(dirs.path("secretd.log")).unwrap_or_default()
            );
        }
        rt.block_on(dbus.name_has_owner(Daemon::Secrets.bus_name().try_into().unwrap()))
            .unwrap_or(false)
            .then_some(())
    });
    up.expect("secretd took its bus name");
    child
}

fn stop(mut child: Child) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

fn own_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

// --- the canary test --------------------------------------------------------------------

#[test]
fn canaries_never_leave_secretd_in_plaintext_and_resolve_exactly() {
    let suite = EmbeddedSuite::builder()
        .config_file("secretd.toml", "[log]\nlevel = \"debug\"\n")
        .start();
    let vault_canary = format!("canary-{}", random(ALNUM, 32));
    let prompt_canary = format!("ghp_{}", random(ALNUM, 36));
    let output_canary = format!("AKIA{}", random(BASE32, 16));
    let stream_canary = format!("ghp_{}", random(ALNUM, 36));
    let all_needles: Vec<String> = [
        &vault_canary,
        &prompt_canary,
        &output_canary,
        &stream_canary,
    ]
    .iter()
    .flat_map(|c| needles(c))
    .collect();
    // Every reply except Resolve's, to be checked at the end.
    let mut replies: Vec<String> = Vec::new();

    // A vault secret, through the CLI's stdin (one trailing newline is not part of it).
    let out = set_via_cli(
        &suite,
        &["secret", "set", "CANARY_DB"],
        &format!("{vault_canary}\n"),
    );
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "secret CANARY_DB stored\n", "")
    );
    let vault_ph = "{{secret:CANARY_DB}}";

    let rt = runtime();
    let conn = connect(&rt, &suite.bus_address());
    let secrets = proxy(&rt, &conn);

    // A user prompt: the detected token is remembered in the session, the vault value named.
    let prompt = format!("deploy with token {prompt_canary} and db password {vault_canary}");
    let reply = rt.block_on(secrets.register("s1".into(), prompt)).unwrap();
    let prompt_ph = placeholder_of(&reply.detections, "github-pat");
    assert_eq!(
        reply,
        RedactReply {
            redacted: format!("deploy with token {prompt_ph} and db password {vault_ph}"),
            detections: vec![
                detection("github-pat", &prompt_ph),
                detection("vault", vault_ph)
            ],
        }
    );
    replies.push(format!("{reply:?}"));

    // Command output: a new credential, and encoded forms of values already known.
    let output = format!(
        "aws_access_key_id = {output_canary}\nb64 {}\nhex {}\nurl {}\n",
        b64(&vault_canary),
        hex(&prompt_canary),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&prompt_canary),
    );
    let reply = rt.block_on(secrets.redact("s1".into(), output)).unwrap();
    let output_ph = placeholder_of(&reply.detections, "aws-access-key-id");
    assert_eq!(
        reply,
        RedactReply {
            redacted: format!(
                "aws_access_key_id = {output_ph}\nb64 {vault_ph}\nhex {prompt_ph}\nurl {prompt_ph}\n"
            ),
            detections: vec![
                detection("aws-access-key-id", &output_ph),
                detection("vault", vault_ph),
                detection("github-pat", &prompt_ph),
                detection("github-pat", &prompt_ph),
            ],
        }
    );
    replies.push(format!("{reply:?}"));

    // A value inside a longer base64 text, at each alignment; and with no session at all.
    for prefix in ["", "k", "k=", "key="] {
        let blob = b64(&format!("{prefix}{vault_canary};"));
        let reply = rt
            .block_on(secrets.redact(String::new(), format!("blob {blob}")))
            .unwrap();
        assert!(reply.redacted.contains(vault_ph), "{prefix:?}: {reply:?}");
        replies.push(format!("{reply:?}"));
    }

    // The streaming form, every value cut in two by a chunk boundary.
    let text = format!(
        "start {vault_canary} mid {prompt_canary} b64 {} GITHUB_TOKEN={stream_canary} end\n",
        b64(&vault_canary)
    );
    let mut cuts: Vec<usize> = [
        vault_canary.as_str(),
        prompt_canary.as_str(),
        &b64(&vault_canary),
        stream_canary.as_str(),
    ]
    .iter()
    .map(|v| text.find(v).unwrap() + v.len() / 2)
    .collect();
    cuts.push(text.len());
    let stream = rt.block_on(secrets.open_stream("s1".into())).unwrap();
    let mut streamed = Vec::new();
    let mut at = 0;
    for cut in cuts {
        let piece = rt
            .block_on(secrets.redact_chunk(stream.clone(), text.as_bytes()[at..cut].to_vec()))
            .unwrap();
        replies.push(String::from_utf8_lossy(&piece).into_owned());
        streamed.extend(piece);
        at = cut;
    }
    let rest = rt.block_on(secrets.close_stream(stream)).unwrap();
    replies.push(String::from_utf8_lossy(&rest).into_owned());
    streamed.extend(rest);
    let streamed = String::from_utf8(streamed).unwrap();
    let after = streamed.split("GITHUB_TOKEN=").nth(1).unwrap();
    let stream_ph = after[..after.find(']').unwrap() + 1].to_owned();
    assert_eq!(
        streamed,
        format!("start {vault_ph} mid {prompt_ph} b64 {vault_ph} GITHUB_TOKEN={stream_ph} end\n")
    );
    assert!(
        stream_ph.starts_with("[REDACTED_SECRET:github-pat:"),
        "{stream_ph}"
    );

    // The listing has names, never values.
    let list = rt.block_on(secrets.list()).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0],
        SecretInfo {
            name: "CANARY_DB".into(),
            created_unix: list[0].created_unix,
            updated_unix: list[0].created_unix,
            consumers: vec![],
        }
    );
    replies.push(format!("{list:?}"));
    let out = suite.stakpak(&["secret", "list", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    replies.push(format!("{out:?}"));

    // Only sandboxd (the owner of dev.stakpak.Sandbox1) may resolve: not this test, though
    // it runs as the same uid as the whole suite.
    let all = format!("{vault_ph} {prompt_ph} {output_ph} {stream_ph}");
    let refused = rt
        .block_on(secrets.resolve("s1".into(), all.clone(), false))
        .unwrap_err();
    assert!(
        matches!(&refused, Error::PermissionDenied(m) if m.contains("only sandboxd may call Resolve")),
        "{refused:?}"
    );

    // Through sandboxd, every placeholder reaches the command as the exact value, in its
    // environment (so not in the command line).
    let command = format!(
        "printf '%s\\n' {vault_ph} '{prompt_ph}' \"{output_ph}\" {stream_ph} > values.txt; \
         tr '\\0' ' ' < /proc/self/cmdline > cmdline.txt"
    );
    let sandbox = rt
        .block_on(stakpak_proto::SandboxProxy::new(&conn))
        .unwrap();
    let reply = rt
        .block_on(sandbox.exec(stakpak_proto::ExecRequest {
            session: "s1".into(),
            command,
            ..stakpak_proto::ExecRequest::default()
        }))
        .unwrap();
    assert_eq!(
        (reply.status.as_str(), reply.code),
        ("exited", 0),
        "{reply:?}"
    );
    let workspace = suite.state_dir.join("state/sandboxd/workspaces/s1");
    assert_eq!(
        std::fs::read_to_string(workspace.join("values.txt")).unwrap(),
        format!("{vault_canary}\n{prompt_canary}\n{output_canary}\n{stream_canary}\n")
    );
    let cmdline = std::fs::read_to_string(workspace.join("cmdline.txt")).unwrap();
    for canary in [
        &vault_canary,
        &prompt_canary,
        &output_canary,
        &stream_canary,
    ] {
        assert!(!cmdline.contains(canary.as_str()), "{cmdline}");
    }
    std::fs::remove_file(workspace.join("values.txt")).unwrap();

    // Nothing anywhere in the suite's folder: vault, session maps, every log, the audit db.
    drop(secrets);
    drop(conn);
    let down = suite.down();
    assert_eq!(down.code, Some(0), "{down:?}");
    let files = files_below(suite.dir.path());
    let root = &suite.state_dir;
    for expected in [
        root.join("state/secretd/vault.bin"),
        root.join("state/secretd/sessions/s1.map"),
        root.join("state/warden/audit.db"),
        root.join("logs/secretd.log"),
        root.join("logs/supervisor.log"),
        root.join("logs/warden.log"),
    ] {
        assert!(
            files.contains(&expected),
            "{} is missing",
            expected.display()
        );
    }
    let log = std::fs::read_to_string(root.join("logs/secretd.log")).unwrap();
    assert!(log.contains("event=\"set\""), "{log}");
    assert!(log.contains("event=\"resolve\""), "{log}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for needle in &all_needles {
            assert!(
                !contains(&bytes, needle),
                "{} holds a canary or an encoding of one",
                file.display()
            );
        }
    }
    for reply in &replies {
        for needle in &all_needles {
            assert!(
                !reply.contains(needle.as_str()),
                "a reply holds a canary: {reply}"
            );
        }
    }
}

// --- Resolve from another uid -----------------------------------------------------------

const HELPER_ENV: &str = "STAKPAK_TEST_SECRETD_CALLER_BUS";

/// Not a test on its own: the body of the second-uid caller, run by
/// `resolve_is_refused_to_any_other_uid` as a child process under `setpriv`.
#[test]
fn helper_calls_as_another_user() {
    let Some(address) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let rt = runtime();
    let conn = connect(&rt, address.to_str().unwrap());
    let secrets = proxy(&rt, &conn);
    let show = |r: Result<String, Error>| match r {
        Ok(v) => format!("ok {v}"),
        Err(e) => {
            let name = zbus::DBusError::name(&e).to_string();
            format!("{name}: {}", zbus::DBusError::description(&e).unwrap_or(""))
        }
    };
    let resolve = rt
        .block_on(secrets.resolve(String::new(), "{{secret:TOKEN}}".into(), false))
        .map(|r| r.text);
    let set = rt
        .block_on(secrets.set("TOKEN".into(), "overwritten".into(), vec![]))
        .map(|()| String::new());
    let redact = rt
        .block_on(secrets.redact(String::new(), "no secrets here".into()))
        .map(|r| r.redacted);
    // The harness prints `test … ` without a newline before the test's own output.
    println!();
    println!("uid {}", own_uid());
    println!("resolve {}", show(resolve));
    println!("set {}", show(set));
    println!("redact {}", show(redact));
}

#[test]
fn resolve_is_refused_to_any_other_uid() {
    assert_eq!(
        own_uid(),
        0,
        "this test needs root: it runs a second caller as `nobody` (the CI runs as root)"
    );
    let nobody = 65534;
    let bus = PrivateBus::start_with(BusOptions {
        allow_any_user: true,
    });
    let rt = runtime();
    let dirs = Dirs::new();
    dirs.config("[resolve]\nallowed_uids = [0]\n");
    let child = start_secretd(&bus, &dirs, &rt);
    let conn = connect(&rt, &bus.address);
    let secrets = proxy(&rt, &conn);
    let value = format!("tok-{}", random(ALNUM, 24));
    rt.block_on(secrets.set("TOKEN".into(), value.clone(), vec![]))
        .unwrap();

    let out: Output = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_calls_as_another_user",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, &bus.address)
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            ["uid ", "resolve ", "set ", "redact "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    let uid_line = format!("uid {nobody}");
    let resolve_line = "resolve dev.stakpak.Error.PermissionDenied: ";
    let set_line = format!("set dev.stakpak.Error.PermissionDenied: uid {nobody} may not call Set");
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0], uid_line);
    assert!(
        lines[1].starts_with(resolve_line) && lines[1].ends_with("only sandboxd may call Resolve"),
        "{lines:?}"
    );
    assert_eq!(lines[2], set_line);
    assert_eq!(lines[3], "redact ok no secrets here");

    // As root, but without the sandboxd name: refused. With it (as sandboxd would hold it):
    // resolved, and the refused Set changed nothing.
    let refused = rt
        .block_on(secrets.resolve(String::new(), "{{secret:TOKEN}}".into(), false))
        .unwrap_err();
    assert!(matches!(refused, Error::PermissionDenied(_)), "{refused:?}");
    rt.block_on(conn.request_name(Daemon::Sandbox.bus_name()))
        .unwrap();
    let resolved = rt
        .block_on(secrets.resolve(String::new(), "{{secret:TOKEN}}".into(), false))
        .unwrap();
    assert_eq!(resolved.text, value);
    drop(secrets);
    drop(conn);
    stop(child);
    let log = std::fs::read_to_string(dirs.path("secretd.log")).unwrap();
    assert!(
        log.contains(&format!("uid={nobody}")) && log.contains("resolve refused"),
        "{log}"
    );
}

// --- Reveal: a daemon's own secrets -----------------------------------------------------

#[test]
fn reveal_gives_a_daemon_only_the_secrets_set_for_it_and_they_never_resolve() {
    let bus = PrivateBus::start();
    let rt = runtime();
    let dirs = Dirs::new();
    dirs.config("");
    let child = start_secretd(&bus, &dirs, &rt);
    let manager = connect(&rt, &bus.address);
    let secrets = proxy(&rt, &manager);
    let bot = format!("xoxb-{}", random(ALNUM, 24));
    rt.block_on(secrets.set("slack.bot_token".into(), bot.clone(), vec!["schedd".into()]))
        .unwrap();
    rt.block_on(secrets.set("SHARED".into(), "shared-value-1234".into(), vec![]))
        .unwrap();
    let reveal = |conn: &zbus::Connection, name: &str, consumer: &str| {
        let p = proxy(&rt, conn);
        rt.block_on(p.reveal(name.into(), consumer.into()))
    };

    // Without schedd's bus name: refused, whatever the uid.
    let err = reveal(&manager, "slack.bot_token", "schedd").unwrap_err();
    assert!(
        matches!(&err, Error::PermissionDenied(m) if m.ends_with("only schedd may call Reveal for it")),
        "{err:?}"
    );
    // sandboxd has Resolve, not Reveal; secretd serves nobody its own way.
    let err = reveal(&manager, "slack.bot_token", "sandboxd").unwrap_err();
    assert_eq!(
        err,
        Error::InvalidArgument(
            "Reveal serves the daemons agent, warden, schedd; `sandboxd` is none of them".into()
        )
    );

    // As schedd (the connection owning its name): its own secret, and nothing else.
    let schedd = connect(&rt, &bus.address);
    rt.block_on(schedd.request_name(Daemon::Scheduler.bus_name()))
        .unwrap();
    assert_eq!(reveal(&schedd, "slack.bot_token", "schedd").unwrap(), bot);
    assert_eq!(
        reveal(&schedd, "SHARED", "schedd").unwrap_err(),
        Error::PermissionDenied(
            "secret SHARED is not set for consumer schedd; Reveal gives only those".into()
        )
    );
    assert_eq!(
        reveal(&schedd, "NOPE", "schedd").unwrap_err(),
        Error::InvalidArgument("no secret named NOPE".into())
    );
    let err = reveal(&schedd, "slack.bot_token", "agent").unwrap_err();
    assert!(matches!(err, Error::PermissionDenied(_)), "{err:?}");

    // A secret set for schedd alone never reaches a command, even from the sandboxd name
    // and the same uid (embedded, every daemon is one uid).
    let sandboxd = connect_as_sandboxd(&rt, &bus.address);
    let s = proxy(&rt, &sandboxd);
    let err = rt
        .block_on(s.resolve(
            String::new(),
            "echo {{secret:slack.bot_token}}".into(),
            true,
        ))
        .unwrap_err();
    assert_eq!(
        err,
        Error::PermissionDenied(format!(
            "secret slack.bot_token is limited to consumers that uid {} does not act as",
            own_uid()
        ))
    );
    drop((s, sandboxd, schedd, secrets, manager));
    stop(child);
    let log = std::fs::read_to_string(dirs.path("secretd.log")).unwrap();
    assert!(log.contains("reveal refused"), "{log}");
    assert!(log.contains("secret given to its consumer"), "{log}");
    assert!(!log.contains(&bot), "the value is never logged");
}

// --- a key or vault that cannot be used ---------------------------------------------------

#[test]
fn unusable_key_or_vault_stops_the_start_and_touches_nothing() {
    let bus = PrivateBus::start();
    let rt = runtime();
    let dirs = Dirs::new();
    let child = start_secretd(&bus, &dirs, &rt);
    let conn = connect(&rt, &bus.address);
    let secrets = proxy(&rt, &conn);
    let value = format!("keep-{}", random(ALNUM, 24));
    rt.block_on(secrets.set("KEEP".into(), value.clone(), vec![]))
        .unwrap();
    drop(secrets);
    drop(conn);
    stop(child);

    let vault = dirs.path("state/vault.bin");
    let key = dirs.path("state/vault.key");
    let good_vault = std::fs::read(&vault).unwrap();
    let good_key = std::fs::read(&key).unwrap();
    let write_key = |bytes: &[u8]| {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&key);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    };
    let mut tampered = good_vault.clone();
    let middle = tampered.len() - 20;
    tampered[middle] ^= 0x20;
    let other_key: Vec<u8> = random(ALNUM, 32).into_bytes();

    struct Case {
        what: &'static str,
        vault: Vec<u8>,
        key: Option<Vec<u8>>,
        message: String,
    }
    let cases = [
        Case {
            what: "wrong key",
            vault: good_vault.clone(),
            key: Some(other_key),
            message: format!(
                "vault {} was sealed with a different key (key file {})",
                vault.display(),
                key.display()
            ),
        },
        Case {
            what: "truncated vault",
            vault: good_vault[..good_vault.len() - 7].to_vec(),
            key: Some(good_key.clone()),
            message: format!("vault {} is truncated", vault.display()),
        },
        Case {
            what: "tampered vault",
            vault: tampered,
            key: Some(good_key.clone()),
            message: format!(
                "vault {} has been tampered with or damaged (authentication failed)",
                vault.display()
            ),
        },
        Case {
            what: "missing key",
            vault: good_vault.clone(),
            key: None,
            message: format!(
                "key file {} of vault {} is missing; restore it (a new key cannot read the vault)",
                key.display(),
                vault.display()
            ),
        },
    ];
    for case in cases {
        std::fs::write(&vault, &case.vault).unwrap();
        match &case.key {
            Some(bytes) => write_key(bytes),
            None => {
                let _ = std::fs::remove_file(&key);
            }
        }
        let out: Output = secretd(&bus, &dirs).output().unwrap().into();
        assert_eq!(out.code, Some(78), "{}: {out:?}", case.what);
        assert_eq!(
            out.stderr.lines().last(),
            Some(format!("stakpak-secretd: error: {}", case.message).as_str()),
            "{}: {out:?}",
            case.what
        );
        assert_eq!(std::fs::read(&vault).unwrap(), case.vault, "{}", case.what);
        assert_eq!(
            std::fs::read(&key).ok(),
            case.key,
            "{}: the key file changed",
            case.what
        );
        let leftovers: Vec<PathBuf> = files_below(&dirs.path("state"))
            .into_iter()
            .filter(|p| *p != vault && *p != key)
            .collect();
        assert_eq!(leftovers, Vec::<PathBuf>::new(), "{}", case.what);
    }

    // Put the right files back: the secret is still there.
    std::fs::write(&vault, &good_vault).unwrap();
    write_key(&good_key);
    let child = start_secretd(&bus, &dirs, &rt);
    let conn = connect_as_sandboxd(&rt, &bus.address);
    let secrets = proxy(&rt, &conn);
    let resolved = rt
        .block_on(secrets.resolve(String::new(), "{{secret:KEEP}}".into(), false))
        .unwrap();
    assert_eq!(resolved.text, value);
    drop(secrets);
    drop(conn);
    stop(child);
}

// --- kill -9 in the middle of writes ------------------------------------------------------

#[test]
fn kill_during_sets_leaves_the_vault_readable_with_the_old_or_new_value() {
    let suite = EmbeddedSuite::builder().start();
    let rt = runtime();
    let conn = connect(&rt, &suite.bus_address());
    let secrets = proxy(&rt, &conn);
    rt.block_on(secrets.set("STABLE".into(), "stable-value".into(), vec![]))
        .unwrap();

    // Three rounds: sets in a loop, `kill -9` while they run, then a look at the vault.
    for round in 0..3i64 {
        let pid = suite.pid_of("stakpak-secretd").unwrap();
        let acked = Arc::new(AtomicI64::new(-1));
        let writer = {
            let acked = acked.clone();
            let address = suite.bus_address();
            std::thread::spawn(move || {
                let rt = runtime();
                let conn = connect(&rt, &address);
                let secrets = rt.block_on(SecretsProxy::new(&conn)).unwrap();
                for i in 0..100_000i64 {
                    let value = format!("round-{round}-value-{i:06}");
                    if rt.block_on(secrets.set("K".into(), value, vec![])).is_err() {
                        break;
                    }
                    acked.store(i, Ordering::SeqCst);
                }
            })
        };
        wait_until(Duration::from_secs(30), || {
            (acked.load(Ordering::SeqCst) >= 20 + 7 * round).then_some(())
        })
        .expect("sets go through");
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        writer.join().unwrap();
        let last = acked.load(Ordering::SeqCst);

        // The supervisor restarts it; the vault opens and holds the last value or the next.
        let restarted = wait_until(Duration::from_secs(20), || {
            suite.pid_of("stakpak-secretd").filter(|p| *p != pid)
        });
        assert!(
            restarted.is_some(),
            "round {round}: secretd was not restarted"
        );
        let resolved = wait_until(Duration::from_secs(10), || {
            resolve_via_sandboxd(&rt, &conn, &suite, "{{secret:K}} {{secret:STABLE}}").ok()
        })
        .expect("the restarted secretd answers");
        let candidates = [
            format!("round-{round}-value-{last:06} stable-value"),
            format!("round-{round}-value-{:06} stable-value", last + 1),
        ];
        assert!(
            candidates.contains(&resolved),
            "round {round}, after ack {last}: {resolved}"
        );
        // No half-written file is left beside the vault.
        let secretd_state = suite.state_dir.join("state/secretd");
        assert_eq!(
            files_below(&secretd_state),
            vec![
                secretd_state.join("vault.bin"),
                secretd_state.join("vault.key")
            ],
            "round {round}"
        );
    }
}

// --- bad calls get typed errors -----------------------------------------------------------

#[test]
fn bad_calls_get_typed_errors_naming_what_is_wrong() {
    let bus = PrivateBus::start();
    let rt = runtime();
    let dirs = Dirs::new();
    dirs.config(
        "[resolve]\nconsumers = { schedd = [4242] }\n[streams]\nmax_per_caller = 2\nidle_timeout_secs = 1\n",
    );
    let child = start_secretd(&bus, &dirs, &rt);
    let conn = connect_as_sandboxd(&rt, &bus.address);
    let secrets = proxy(&rt, &conn);
    let uid = own_uid();
    let call = |f: &dyn Fn() -> Result<(), Error>| f().err();
    let set = |name: &str, value: &str, consumers: &[&str]| {
        rt.block_on(secrets.set(
            name.into(),
            value.into(),
            consumers.iter().map(|c| (*c).to_owned()).collect(),
        ))
    };
    let resolve = |session: &str, text: &str, shell: bool| {
        rt.block_on(secrets.resolve(session.into(), text.into(), shell))
    };
    set("SLACK", "xoxb-slack-bot-value", &["schedd"]).unwrap();
    set("DEPLOY", "deploy-key-value", &["sandboxd"]).unwrap();

    let cases: Vec<(Option<Error>, Error)> = vec![
        (
            call(&|| resolve("", "curl -H {{secret:NOPE}}", true).map(|_| ())),
            Error::InvalidArgument("unknown secret placeholder {{secret:NOPE}}".into()),
        ),
        (
            call(&|| resolve("s1", "echo [REDACTED_SECRET:github-pat:zzzzzz]", false).map(|_| ())),
            Error::InvalidArgument(
                "unknown secret placeholder [REDACTED_SECRET:github-pat:zzzzzz]".into(),
            ),
        ),
        (
            call(&|| resolve("", "cat <<'EOF'\n{{secret:DEPLOY}}\nEOF\n", true).map(|_| ())),
            Error::InvalidArgument(
                "secret placeholder {{secret:DEPLOY}} cannot be expanded inside a quoted here-document".into(),
            ),
        ),
        (
            call(&|| resolve("", "{{secret:SLACK}}", false).map(|_| ())),
            Error::PermissionDenied(format!(
                "secret SLACK is limited to consumers that uid {uid} does not act as"
            )),
        ),
        (
            call(&|| set("a b", "value", &[])),
            Error::InvalidArgument(
                "invalid secret name \"a b\": use [A-Za-z_][A-Za-z0-9_.-]{0,127}".into(),
            ),
        ),
        (
            call(&|| set("X", "", &[])),
            Error::InvalidArgument("secret X has an empty value".into()),
        ),
        (
            call(&|| set("X", "abc", &[])),
            Error::InvalidArgument(
                "secret X is 3 bytes; values shorter than 4 bytes cannot be redacted reliably and are refused".into(),
            ),
        ),
        (
            call(&|| set("X", "value", &["no way"])),
            Error::InvalidArgument(
                "invalid consumer name \"no way\" for secret X: use [A-Za-z0-9_.-]{1,64}".into(),
            ),
        ),
        (
            call(&|| rt.block_on(secrets.delete("NOPE".into()))),
            Error::InvalidArgument("no secret named NOPE".into()),
        ),
        (
            call(&|| rt.block_on(secrets.register(String::new(), "x".into())).map(|_| ())),
            Error::InvalidArgument("Register needs a session".into()),
        ),
        (
            call(&|| rt.block_on(secrets.redact("../x".into(), "x".into())).map(|_| ())),
            Error::InvalidArgument(
                "invalid session id \"../x\": use [A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}".into(),
            ),
        ),
    ];
    for (got, expected) in cases {
        assert_eq!(got, Some(expected));
    }
    // A secret for a consumer our uid acts as resolves.
    assert_eq!(
        resolve("", "{{secret:DEPLOY}}", false).unwrap().text,
        "deploy-key-value"
    );

    // Streams: bounded per caller, owned by their caller, closed after idle time.
    let first = rt.block_on(secrets.open_stream(String::new())).unwrap();
    let _second = rt.block_on(secrets.open_stream(String::new())).unwrap();
    assert_eq!(
        rt.block_on(secrets.open_stream(String::new())).unwrap_err(),
        Error::Unavailable("this caller has 2 streams open; close one first".into())
    );
    let other_conn = connect(&rt, &bus.address);
    let other = rt.block_on(SecretsProxy::new(&other_conn)).unwrap();
    assert_eq!(
        rt.block_on(other.redact_chunk(first.clone(), b"x".to_vec()))
            .unwrap_err(),
        Error::InvalidArgument(format!("no open stream {first} of this caller"))
    );
    // The other caller's own streams are not limited by ours; leaving the bus closes them.
    let theirs = rt.block_on(other.open_stream(String::new())).unwrap();
    let their_name = other_conn.unique_name().unwrap().to_string();
    drop(other);
    rt.block_on(other_conn.close()).unwrap();
    let left = format!("caller left the bus; its streams are closed caller={their_name} streams=1");
    wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(dirs.path("secretd.log"))
            .unwrap()
            .contains(&left)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no `{left}` for {theirs}"));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        rt.block_on(secrets.redact_chunk(first.clone(), b"x".to_vec()))
            .unwrap_err(),
        Error::InvalidArgument(format!("no open stream {first} of this caller"))
    );
    drop(secrets);
    drop(conn);
    stop(child);
}

// --- the command line -------------------------------------------------------------------

/// `stakpak` with a fresh state folder (so no suite is found), `stdin` on its standard input.
fn stakpak_offline(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(bin("stakpak"))
        .arg("--state-dir")
        .arg(dir.join("s"))
        .arg("--config-dir")
        .arg(dir.join("c"))
        .args(args)
        .env_remove("STAKPAK_BUS_ADDRESS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Commands that fail before reading stdin close it: a broken pipe is no error here.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap().into()
}

/// The `[REDACTED_SECRET:…]` placeholder right after `marker` in `text`.
fn placeholder_after(text: &str, marker: &str) -> String {
    let after = &text[text.find(marker).unwrap() + marker.len()..];
    after[..after.find(']').unwrap() + 1].to_owned()
}

#[test]
fn secret_scan_works_without_a_suite_and_the_rest_say_they_need_one() {
    let tmp = tempfile::tempdir().unwrap();
    let token = format!("ghp_{}", random(ALNUM, 36));
    let file = tmp.path().join("out.log");
    std::fs::write(
        &file,
        format!("export GITHUB_TOKEN={token}\nnothing here\n"),
    )
    .unwrap();

    let out = stakpak_offline(tmp.path(), &["secret", "scan", file.to_str().unwrap()], "");
    let ph = placeholder_after(&out.stdout, "GITHUB_TOKEN=");
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr),
        (
            Some(3),
            format!("export GITHUB_TOKEN={ph}\nnothing here\n").as_str(),
            format!("{}: 1 secret found\n      1  github-pat\n", file.display())
        )
    );

    // Privacy mode adds public addresses; JSON has the text, each detection and the counts.
    let out = stakpak_offline(
        tmp.path(),
        &["secret", "scan", "-", "--privacy", "--json"],
        "host 8.8.8.8 is up\n",
    );
    assert_eq!(out.code, Some(3), "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let ph = placeholder_after(report["redacted"].as_str().unwrap(), "host ");
    assert_eq!(
        report,
        serde_json::json!({
            "redacted": format!("host {ph} is up\n"),
            "detections": [{"rule_id": "public-ipv4", "placeholder": ph}],
            "summary": {"public-ipv4": 1},
        })
    );
    let out = stakpak_offline(tmp.path(), &["secret", "scan"], "host 8.8.8.8 is up\n");
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "host 8.8.8.8 is up\n", "stdin: no secrets found\n")
    );

    // The vault commands need a running suite, and say so.
    let no_suite = format!(
        "stakpak: error: no running stakpak suite found (looked in {} and for an installed stakpak.target); start one with `stakpak up`\n",
        tmp.path().join("s").display()
    );
    for args in [
        &["secret", "list"][..],
        &["secret", "rm", "X"][..],
        &["secret", "set", "X"][..],
    ] {
        let out = stakpak_offline(tmp.path(), args, "a-value\n");
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (Some(1), no_suite.as_str()),
            "{args:?}"
        );
    }
    // An empty value is refused before anything is asked.
    let out = stakpak_offline(tmp.path(), &["secret", "set", "X"], "\n");
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            Some(1),
            "stakpak: error: the value of X is empty; nothing was stored\n"
        )
    );
}

#[test]
fn secret_cli_manages_the_vault_of_a_running_suite() {
    let suite = EmbeddedSuite::builder().start();
    let file = suite.dir.path().join("key.pem");
    std::fs::write(&file, "file-value-1234\n").unwrap();
    let out = suite.stakpak(&[
        "secret",
        "set",
        "FROM_FILE",
        "--from-file",
        file.to_str().unwrap(),
        "--consumer",
        "schedd",
        "--consumer",
        "sandboxd",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "secret FROM_FILE stored\n")
    );
    let out = set_via_cli(
        &suite,
        &["secret", "set", "FROM_STDIN"],
        "stdin-value-5678\r\n",
    );
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "secret FROM_STDIN stored\n")
    );

    let list = |suite: &EmbeddedSuite| -> serde_json::Value {
        let out = suite.stakpak(&["secret", "list", "--json"]);
        assert_eq!(out.code, Some(0), "{out:?}");
        serde_json::from_str(&out.stdout).unwrap()
    };
    let listed = list(&suite);
    let time = |i: usize| listed[i]["created_unix"].clone();
    assert_eq!(
        listed,
        serde_json::json!([
            {"name": "FROM_FILE", "created_unix": time(0), "updated_unix": time(0), "consumers": ["sandboxd", "schedd"]},
            {"name": "FROM_STDIN", "created_unix": time(1), "updated_unix": time(1), "consumers": []},
        ])
    );

    // A file is taken as it is; stdin loses one line ending.
    let rt = runtime();
    let conn = connect(&rt, &suite.bus_address());
    let resolved = resolve_via_sandboxd(
        &rt,
        &conn,
        &suite,
        "{{secret:FROM_FILE}}|{{secret:FROM_STDIN}}",
    )
    .unwrap();
    assert_eq!(resolved, "file-value-1234\n|stdin-value-5678");

    let out = suite.stakpak(&["secret", "rm", "FROM_STDIN"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "secret FROM_STDIN deleted\n")
    );
    let out = suite.stakpak(&["secret", "rm", "FROM_STDIN"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (Some(1), "stakpak: error: no secret named FROM_STDIN\n")
    );
    assert_eq!(list(&suite).as_array().unwrap().len(), 1);
}
