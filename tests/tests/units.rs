#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The files of `units/` as systemd and D-Bus read them: every unit verifies, each service's
//! `systemd-analyze security` exposure stays within its bound (issue 7), the D-Bus policy and
//! activation files load into a real `dbus-daemon`, and the sysusers.d and tmpfiles.d lines
//! apply to an empty root.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use stakpak_proto::Daemon;

/// The highest exposure each service may have (issue 7, "Must be true" 1).
const EXPOSURE_BOUNDS: [(&str, f64); 5] = [
    ("stakpak-warden.service", 2.0),
    ("stakpak-secretd.service", 2.0),
    ("stakpak-agent.service", 3.0),
    ("stakpak-schedd.service", 3.0),
    ("stakpak-sandboxd.service", 5.0),
];

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../units")
}

fn services() -> Vec<String> {
    Daemon::ALL
        .iter()
        .map(|d| format!("{}.service", d.binary()))
        .collect()
}

fn tempdir() -> tempfile::TempDir {
    // Below the target folder, so the daemons' binaries can be hard-linked into the root.
    tempfile::Builder::new()
        .prefix("units-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_symlink() {
            let _ = std::os::unix::fs::symlink(fs::read_link(entry.path()).unwrap(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn link_or_copy(from: &Path, to: &Path) {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).unwrap();
    }
}

/// A file system root where the units resolve: the host's own units (for `sysinit.target`
/// and friends), ours in /usr/lib/systemd/system, the built daemons in /usr/bin, and
/// /bin/kill for `ExecReload=`. With `encrypted`, the secretd drop-in is installed in /etc
/// as the packaging does when it seals the key.
fn unit_root(encrypted: bool) -> tempfile::TempDir {
    let root = tempdir();
    let r = root.path();
    let system = r.join("usr/lib/systemd/system");
    copy_dir(Path::new("/usr/lib/systemd/system"), &system);
    for unit in services()
        .iter()
        .map(String::as_str)
        .chain(["stakpak.target"])
    {
        fs::copy(units_dir().join(unit), system.join(unit)).unwrap();
    }
    if encrypted {
        copy_dir(
            &units_dir().join("stakpak-secretd.service.d"),
            &r.join("etc/systemd/system/stakpak-secretd.service.d"),
        );
    }
    fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
    link_or_copy(Path::new("/usr/bin/kill"), &r.join("usr/bin/kill"));
    for d in Daemon::ALL {
        link_or_copy(
            &stakpak_testkit::bin(d.binary()),
            &r.join("usr/bin").join(d.binary()),
        );
    }
    root
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_unit_verifies_without_a_warning() {
    for encrypted in [false, true] {
        let root = unit_root(encrypted);
        let mut cmd = Command::new("systemd-analyze");
        cmd.arg("verify")
            .arg(format!("--root={}", root.path().display()))
            .arg("stakpak.target")
            .args(services());
        let (ok, stdout, stderr) = run(&mut cmd);
        // verify exits 0 on unknown keys and bad values: every line it prints is a finding.
        assert!(
            ok && stdout.trim().is_empty() && stderr.trim().is_empty(),
            "systemd-analyze verify (encrypted drop-in: {encrypted}):\n{stdout}{stderr}"
        );
    }
}

/// `→ Overall exposure level for stakpak-warden.service: 0.4 SAFE 😀` → 0.4.
fn exposure(output: &str) -> Option<f64> {
    let line = output
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn exposure_stays_within_bounds() {
    for encrypted in [false, true] {
        let root = unit_root(encrypted);
        let mut measured = BTreeMap::new();
        for (unit, _) in EXPOSURE_BOUNDS {
            let (_, stdout, stderr) = run(Command::new("systemd-analyze")
                .arg("security")
                .arg("--offline=true")
                .arg("--no-pager")
                .arg(format!("--root={}", root.path().display()))
                .arg(unit));
            let level = exposure(&stdout)
                .unwrap_or_else(|| panic!("no exposure level for {unit}:\n{stdout}{stderr}"));
            measured.insert(unit, level);
        }
        eprintln!("exposure (encrypted drop-in: {encrypted}): {measured:?}");
        let over: Vec<String> = EXPOSURE_BOUNDS
            .iter()
            .filter(|(unit, bound)| measured[unit] > *bound)
            .map(|(unit, bound)| format!("{unit}: {} > {bound}", measured[unit]))
            .collect();
        assert!(over.is_empty(), "exposure above bound: {over:?}");
    }
}

#[test]
fn exposure_line_parses() {
    assert_eq!(
        exposure("x\n→ Overall exposure level for stakpak-warden.service: 0.4 SAFE 😀\n"),
        Some(0.4)
    );
    assert_eq!(exposure("nothing"), None);
}

fn policy_files() -> Vec<(Daemon, PathBuf)> {
    Daemon::ALL
        .iter()
        .map(|&d| {
            (
                d,
                units_dir().join(format!("dbus-1/system.d/{}.conf", d.bus_name())),
            )
        })
        .collect()
}

/// The `<policy …>` blocks of a busconfig: (attributes, body).
fn policies(text: &str) -> Vec<(String, String)> {
    text.split("<policy ")
        .skip(1)
        .map(|block| {
            let (attrs, rest) = block.split_once('>').unwrap();
            let (body, _) = rest.split_once("</policy>").unwrap();
            (attrs.trim().to_owned(), body.to_owned())
        })
        .collect()
}

#[test]
fn dbus_policies_own_and_call_only_what_they_should() {
    for (daemon, path) in policy_files() {
        let text = fs::read_to_string(&path).unwrap();
        let name = daemon.bus_name();
        let blocks = policies(&text);
        // Only the daemon's own user may own the name.
        let owners: Vec<&str> = blocks
            .iter()
            .filter(|(_, body)| body.contains("allow own="))
            .map(|(attrs, _)| attrs.as_str())
            .collect();
        assert_eq!(
            owners,
            [format!("user=\"{}\"", daemon.binary())],
            "{}",
            path.display()
        );
        assert!(text.contains(&format!("<allow own=\"{name}\"/>")));
        for (attrs, body) in &blocks {
            assert!(!attrs.contains("context="), "{}: {attrs}", path.display());
            assert!(
                !body.contains("<deny") && !body.contains("=\"*\""),
                "{}: wildcards or denies in {attrs}",
                path.display()
            );
            for line in body.lines().filter(|l| l.contains("send_destination")) {
                assert!(
                    line.contains(&format!("send_destination=\"{name}\""))
                        && line.contains("send_interface="),
                    "{}: {line}",
                    path.display()
                );
            }
        }
    }
    // Resolve: sandboxd's user, and nobody else.
    let secrets = fs::read_to_string(&policy_files()[0].1).unwrap();
    let resolvers: Vec<String> = policies(&secrets)
        .into_iter()
        .filter(|(_, body)| body.contains("send_member=\"Resolve\""))
        .map(|(attrs, _)| attrs)
        .collect();
    assert_eq!(resolvers, ["user=\"stakpak-sandboxd\""]);
}

#[tokio::test]
async fn dbus_daemon_loads_the_policies_and_activation_files() {
    let dir = tempdir();
    let socket = dir.path().join("bus");
    let includes: String = policy_files()
        .iter()
        .map(|(_, p)| format!("  <include>{}</include>\n", p.display()))
        .collect();
    let config = format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{services}</servicedir>
  <!-- The system bus's default context (system.conf): calls denied unless allowed. -->
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
  </policy>
{includes}</busconfig>
"#,
        socket = socket.display(),
        services = units_dir().join("dbus-1/system-services").display(),
    );
    let config_file = dir.path().join("bus.conf");
    fs::write(&config_file, config).unwrap();
    let mut bus = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config_file.display()))
        .arg("--nofork")
        .arg("--print-address")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dbus-daemon");
    // The address is printed once the configuration (every included file) was accepted.
    let mut address = String::new();
    BufReader::new(bus.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    if address.trim().is_empty() {
        let out = bus.wait_with_output().unwrap();
        panic!(
            "dbus-daemon refused the configuration:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let conn = zbus::connection::Builder::address(address.trim())
        .build()
        .await
        .unwrap();
    let dbus = zbus::fdo::DBusProxy::new(&conn).await.unwrap();
    let mut activatable: Vec<String> = dbus
        .list_activatable_names()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.to_string())
        .filter(|n| n.starts_with("dev.stakpak."))
        .collect();
    activatable.sort();
    let mut expected: Vec<String> = Daemon::ALL
        .iter()
        .map(|d| d.bus_name().to_owned())
        .collect();
    expected.sort();
    assert_eq!(activatable, expected);
    drop(conn);
    let _ = bus.kill();
    let _ = bus.wait();

    // Each activation file starts the unit of the daemon that owns the name.
    for d in Daemon::ALL {
        let path = units_dir().join(format!("dbus-1/system-services/{}.service", d.bus_name()));
        let text = fs::read_to_string(&path).unwrap();
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(
            keys,
            [
                "[D-BUS Service]".to_owned(),
                format!("Name={}", d.bus_name()),
                "Exec=/bin/false".to_owned(),
                format!("User={}", d.binary()),
                format!("SystemdService={}.service", d.binary()),
            ],
            "{}",
            path.display()
        );
    }
}

#[test]
fn sysusers_and_tmpfiles_apply_to_an_empty_root() {
    let root = tempdir();
    let r = root.path();
    fs::create_dir_all(r.join("etc")).unwrap();
    fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(r.join("etc/group"), "root:x:0:\n").unwrap();
    let (ok, stdout, stderr) = run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", r.display()))
        .arg(units_dir().join("sysusers.d/stakpak.conf")));
    assert!(ok, "systemd-sysusers:\n{stdout}{stderr}");
    let passwd = fs::read_to_string(r.join("etc/passwd")).unwrap();
    let mut users: Vec<(String, String)> = passwd
        .lines()
        .filter(|l| l.starts_with("stakpak"))
        .map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0].to_owned(), f[6].to_owned())
        })
        .collect();
    users.sort();
    let mut expected: Vec<(String, String)> = Daemon::ALL
        .iter()
        .map(|d| d.binary())
        .chain(["stakpak-run"])
        .map(|u| (u.to_owned(), "/usr/sbin/nologin".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(users, expected);
    let group = fs::read_to_string(r.join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l.starts_with("stakpak:")), "{group}");

    if !rustix::process::geteuid().is_root() {
        eprintln!("not root: tmpfiles.d is not applied (its lines chown)");
        return;
    }
    let (ok, stdout, stderr) = run(Command::new("systemd-tmpfiles")
        .arg("--create")
        .arg(format!("--root={}", r.display()))
        .arg(units_dir().join("tmpfiles.d/stakpak.conf")));
    assert!(
        ok && stderr.trim().is_empty(),
        "systemd-tmpfiles:\n{stdout}{stderr}"
    );
    let uid_of = |name: &str| -> u32 {
        passwd
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f[0] == name).then(|| f[2].parse().unwrap())
            })
            .unwrap()
    };
    let sandboxd = uid_of("stakpak-sandboxd");
    let made: Vec<(&str, u32, u32)> = [
        "etc/stakpak",
        "etc/stakpak/policies.d",
        "etc/stakpak/rulebooks",
        "etc/stakpak/credentials",
        "var/lib/stakpak-sandboxd",
        "var/lib/stakpak-sandboxd/workspaces",
        "var/lib/stakpak-sandboxd/tmp",
    ]
    .into_iter()
    .map(|p| {
        let meta = fs::metadata(r.join(p)).unwrap();
        (p, meta.permissions().mode() & 0o7777, meta.uid())
    })
    .collect();
    assert_eq!(
        made,
        [
            ("etc/stakpak", 0o755, 0),
            ("etc/stakpak/policies.d", 0o755, 0),
            ("etc/stakpak/rulebooks", 0o755, 0),
            ("etc/stakpak/credentials", 0o700, 0),
            ("var/lib/stakpak-sandboxd", 0o711, sandboxd),
            ("var/lib/stakpak-sandboxd/workspaces", 0o711, sandboxd),
            ("var/lib/stakpak-sandboxd/tmp", 0o711, sandboxd),
        ]
    );
}
