//! The suite's packages (`packaging/`): `packaging/build.sh` makes the .deb and the .rpm from
//! one release build, and the two must agree, as issue 7 asks: the same files with the same
//! modes and owners, the same conffiles, the same scriptlets taking dpkg's and rpm's arguments
//! to the same actions; the .deb depends on dbus and systemd; the binaries inside are the
//! release build's, without debug info.
//!
//! What the tools do differently, and so is left out of the comparison:
//! - folders: `dpkg-deb -c` lists every parent folder of a file, the .rpm owns none (they
//!   belong to the distribution's `filesystem` package), so only files are compared;
//! - `/usr/share/doc/stakpak/copyright`: cargo-deb writes it from the license file, as
//!   Debian policy wants; the .rpm has the license as `/usr/share/doc/stakpak/LICENSE`,
//!   which the .deb has too;
//! - timestamps, and rpm's `%doc` flag, which dpkg has no word for.
//!
//! The test runs `packaging/build.sh` once: `cargo build --release` is quick when
//! `target/release` is fresh, so the packages are always made from the current sources.
//! It needs `dpkg-deb`, `rpm`, `readelf` and `sha256sum` (`.ci/run` installs `rpm`), and
//! installs cargo-deb and cargo-generate-rpm through build.sh when they are missing.

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The six binaries, all in `/usr/bin`.
const BINARIES: [&str; 6] = [
    "stakpak",
    "stakpak-agent",
    "stakpak-warden",
    "stakpak-secretd",
    "stakpak-sandboxd",
    "stakpak-schedd",
];

/// The default configuration, conffiles in both formats.
const CONFFILES: [&str; 6] = [
    "/etc/stakpak/config.toml",
    "/etc/stakpak/agent.toml",
    "/etc/stakpak/warden.toml",
    "/etc/stakpak/secretd.toml",
    "/etc/stakpak/sandboxd.toml",
    "/etc/stakpak/schedd.toml",
];

/// dpkg's maintainer scripts and the rpm scriptlets (`rpm --scripts` names) made from the
/// same file of `packaging/scriptlets/`.
const SCRIPTLETS: [(&str, &str); 3] = [
    ("postinst", "postinstall"),
    ("prerm", "preuninstall"),
    ("postrm", "postuninstall"),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

#[derive(Debug)]
struct Packages {
    deb: PathBuf,
    rpm: PathBuf,
    /// `<target>/release`, whose binaries went into both.
    release: PathBuf,
}

/// Builds both packages once per test run.
fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Packages> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        for tool in ["dpkg-deb", "rpm", "readelf", "sha256sum"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()
                    .unwrap()
                    .status
                    .success(),
                "{tool} is missing: apt-get install dpkg rpm binutils coreutils"
            );
        }
        let script = workspace().join("packaging/build.sh");
        let out = Command::new("bash").arg(&script).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} failed ({}):\n{stdout}\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let paths: Vec<&str> = stdout.lines().collect();
        let [deb, rpm] = paths[..] else {
            panic!("build.sh should print two paths, not {stdout:?}");
        };
        let (deb, rpm) = (PathBuf::from(deb), PathBuf::from(rpm));
        assert!(deb.extension().is_some_and(|e| e == "deb"), "{deb:?}");
        assert!(rpm.extension().is_some_and(|e| e == "rpm"), "{rpm:?}");
        // <target>/debian/<name>.deb
        let release = deb.parent().unwrap().parent().unwrap().join("release");
        Packages { deb, rpm, release }
    })
}

/// Runs a command that must succeed and returns its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn rpm_query(rpm: &Path, args: &[&str]) -> String {
    run(Command::new("rpm").arg("-qp").args(args).arg(rpm))
}

/// `path → "<mode> <owner>:<group>"` of the regular files of the .deb.
fn deb_files(deb: &Path) -> BTreeMap<String, String> {
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    let mut files = BTreeMap::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [mode, owner, _size, _date, _time, path] = fields[..] else {
            panic!("unexpected dpkg-deb -c line {line:?}");
        };
        if mode.starts_with('d') {
            continue;
        }
        let owner = match owner {
            "0/0" | "root/root" => "root:root",
            other => panic!("{path} is owned by {other}, not root"),
        };
        let path = path.strip_prefix('.').unwrap().to_owned();
        files.insert(path, format!("{mode} {owner}"));
    }
    files
}

/// The same for the .rpm.
fn rpm_files(rpm: &Path) -> BTreeMap<String, String> {
    let listing = rpm_query(
        rpm,
        &[
            "--qf",
            "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]",
        ],
    );
    let mut files = BTreeMap::new();
    for line in listing.lines() {
        let [mode, owner, path] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("unexpected rpm listing line {line:?}");
        };
        if mode.starts_with('d') {
            continue;
        }
        files.insert(path.to_owned(), format!("{mode} {owner}"));
    }
    files
}

/// Names of the files in `dir` of the source tree that end in `suffix`.
fn source_files(dir: &str, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(workspace().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// Every file both packages must hold, with its mode, from the source tree.
fn expected_files() -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut add = |path: String, mode: &str| {
        files.insert(path, format!("{mode} root:root"));
    };
    for bin in BINARIES {
        add(format!("/usr/bin/{bin}"), "-rwxr-xr-x");
    }
    for conf in CONFFILES {
        add(conf.to_owned(), "-rw-r--r--");
    }
    for unit in [
        "stakpak.target",
        "stakpak-agent.service",
        "stakpak-warden.service",
        "stakpak-secretd.service",
        "stakpak-sandboxd.service",
        "stakpak-schedd.service",
    ] {
        add(format!("/usr/lib/systemd/system/{unit}"), "-rw-r--r--");
    }
    for name in source_files("units/dbus-1/system.d", ".conf") {
        add(format!("/usr/share/dbus-1/system.d/{name}"), "-rw-r--r--");
    }
    for name in source_files("units/dbus-1/system-services", ".service") {
        add(
            format!("/usr/share/dbus-1/system-services/{name}"),
            "-rw-r--r--",
        );
    }
    for path in [
        "/usr/lib/sysusers.d/stakpak.conf",
        "/usr/lib/tmpfiles.d/stakpak.conf",
        "/usr/share/stakpak/systemd/stakpak-secretd.service.d/credential-encrypted.conf",
        "/usr/share/doc/stakpak/README.md",
        "/usr/share/doc/stakpak/README.packaging.md",
        "/usr/share/doc/stakpak/LICENSE",
    ] {
        add(path.to_owned(), "-rw-r--r--");
    }
    for name in source_files("rulebooks", ".md") {
        add(format!("/usr/share/stakpak/rulebooks/{name}"), "-rw-r--r--");
    }
    for name in source_files("policies", ".toml") {
        add(format!("/usr/share/stakpak/policies/{name}"), "-rw-r--r--");
    }
    files
}

#[test]
fn both_packages_hold_the_same_files() {
    let p = packages();
    let mut deb = deb_files(&p.deb);
    // cargo-deb's own addition (see the module documentation).
    assert_eq!(
        deb.remove("/usr/share/doc/stakpak/copyright").as_deref(),
        Some("-rw-r--r-- root:root")
    );
    let expected = expected_files();
    assert_eq!(deb, expected, ".deb");
    assert_eq!(rpm_files(&p.rpm), expected, ".rpm");
}

#[test]
fn the_configuration_is_conffiles_in_both() {
    let p = packages();
    let expected: BTreeSet<String> = CONFFILES.iter().map(|s| s.to_string()).collect();

    let deb = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&p.deb)
        .arg("conffiles"));
    let deb: BTreeSet<String> = deb.lines().map(str::to_owned).collect();
    assert_eq!(deb, expected, ".deb conffiles");

    // `c`: %config, `n`: noreplace (an edited file stays; the new one lands as .rpmnew),
    // which is what dpkg does with a conffile unless asked.
    let flags = rpm_query(&p.rpm, &["--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]"]);
    let rpm: BTreeSet<String> = flags
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(f, _)| f.contains('c'))
        .map(|(f, path)| {
            assert_eq!(f, "cn", "{path} should be %config(noreplace)");
            path.to_owned()
        })
        .collect();
    assert_eq!(rpm, expected, ".rpm %config files");
}

/// The scriptlets of the .rpm, by `rpm --scripts` name, with their interpreter.
fn rpm_scriptlets(rpm: &Path) -> BTreeMap<String, (String, String)> {
    let text = rpm_query(rpm, &["--scripts"]);
    let mut scripts: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.split_inclusive('\n') {
        // `postinstall scriptlet:` for rpm's default interpreter (/bin/sh), else
        // `postinstall scriptlet (using /usr/bin/bash):`.
        let header = line.trim_end().strip_suffix(':').and_then(|l| {
            let (name, rest) = l.split_once(" scriptlet")?;
            let interpreter = match rest {
                "" => "/bin/sh",
                _ => rest.strip_prefix(" (using ")?.strip_suffix(')')?,
            };
            Some((name, interpreter))
        });
        match header {
            Some((name, interpreter)) if !name.contains(' ') && !name.starts_with('#') => {
                scripts.insert(name.to_owned(), (interpreter.to_owned(), String::new()));
                current = Some(name.to_owned());
            }
            _ => {
                let name = current.as_ref().expect("text before the first scriptlet");
                scripts.get_mut(name).unwrap().1.push_str(line);
            }
        }
    }
    scripts
}

#[test]
fn both_packages_run_the_same_scriptlets() {
    let p = packages();
    let tmp = tempfile::tempdir().unwrap();
    let control = tmp.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&p.deb).arg(&control));
    let mut deb_scripts: Vec<String> = fs::read_dir(&control)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !matches!(n.as_str(), "control" | "conffiles" | "md5sums"))
        .collect();
    deb_scripts.sort();
    assert_eq!(deb_scripts, ["postinst", "postrm", "prerm"]);

    let rpm = rpm_scriptlets(&p.rpm);
    let names: Vec<&str> = rpm.keys().map(String::as_str).collect();
    assert_eq!(names, ["postinstall", "postuninstall", "preuninstall"]);

    for (deb_name, rpm_name) in SCRIPTLETS {
        let source =
            fs::read_to_string(workspace().join("packaging/scriptlets").join(deb_name)).unwrap();
        let deb = fs::read_to_string(control.join(deb_name)).unwrap();
        assert_eq!(deb, source, "the .deb's {deb_name}");
        let (interpreter, body) = &rpm[rpm_name];
        assert_eq!(interpreter, "/bin/sh", "{rpm_name}");
        // rpm prints a scriptlet with one newline after it.
        assert_eq!(body.trim_end(), source.trim_end(), "the .rpm's {rpm_name}");
    }

    // Same text; the same actions for the same events, named by each tool its own way.
    let action = |script: &str, args: &[&str]| {
        let out = run(Command::new("sh")
            .arg(control.join(script))
            .args(args)
            .env("STAKPAK_SCRIPTLET_DRY_RUN", "1"));
        out.trim().to_owned()
    };
    let events: [(&str, &[&str], &[&str], &str); 6] = [
        // event, dpkg's arguments, rpm's, the action
        ("postinst", &["configure"], &["1"], "install"),
        ("postinst", &["configure", "0.0.9-1"], &["2"], "upgrade"),
        ("prerm", &["remove"], &["0"], "remove"),
        ("prerm", &["upgrade", "0.2.0-1"], &["1"], "none"),
        ("postrm", &["remove"], &["0"], "forget"),
        ("postrm", &["upgrade", "0.2.0-1"], &["1"], "forget"),
    ];
    let got: Vec<(&str, String, String)> = events
        .iter()
        .map(|(script, deb, rpm, _)| (*script, action(script, deb), action(script, rpm)))
        .collect();
    let want: Vec<(&str, String, String)> = events
        .iter()
        .map(|(script, _, _, a)| (*script, a.to_string(), a.to_string()))
        .collect();
    assert_eq!(got, want);
    // dpkg's purge, which rpm has not (packaging/README.md).
    assert_eq!(action("postrm", &["purge"]), "purge");
}

#[test]
fn the_deb_depends_on_dbus_and_systemd() {
    let p = packages();
    let field = |name: &str| {
        run(Command::new("dpkg-deb").arg("-f").arg(&p.deb).arg(name))
            .trim()
            .to_owned()
    };
    assert_eq!(field("Package"), "stakpak");
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    assert_eq!(field("Section"), "admin");
    let depends: BTreeSet<String> = field("Depends")
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(
        depends,
        ["dbus", "libc6", "systemd"].map(String::from).into()
    );

    let requires = rpm_query(&p.rpm, &["--requires"]);
    let requires: BTreeSet<&str> = requires
        .lines()
        .map(|r| r.split_whitespace().next().unwrap())
        .collect();
    for name in ["dbus", "systemd", "/bin/sh"] {
        assert!(requires.contains(name), "the .rpm requires {requires:?}");
    }
    assert_eq!(
        rpm_query(&p.rpm, &["--qf", "%{NAME} %{VERSION}"]),
        format!("stakpak {}", env!("CARGO_PKG_VERSION"))
    );
}

fn sha256(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap().to_owned()
}

#[test]
fn the_binaries_are_the_release_build_without_debug_info() {
    let p = packages();
    let tmp = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&p.deb)
        .arg(tmp.path()));
    assert_eq!(
        rpm_query(&p.rpm, &["--qf", "%{FILEDIGESTALGO}"]),
        "8",
        "the .rpm's file digests should be SHA-256"
    );
    let digests = rpm_query(&p.rpm, &["--qf", "[%{FILEDIGESTS} %{FILENAMES}\n]"]);
    let rpm: BTreeMap<&str, &str> = digests
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(d, path)| (path, d))
        .collect();

    for bin in BINARIES {
        let release = p.release.join(bin);
        let packaged = tmp.path().join("usr/bin").join(bin);
        let want = sha256(&release);
        assert_eq!(
            sha256(&packaged),
            want,
            "the .deb's {bin} is not {release:?}"
        );
        assert_eq!(
            rpm[format!("/usr/bin/{bin}").as_str()],
            want,
            "the .rpm's {bin} is not {release:?}"
        );

        let sections = run(Command::new("readelf")
            .args(["-S", "--wide"])
            .arg(&packaged));
        let debug: Vec<&str> = sections
            .split_whitespace()
            .filter(|w| w.starts_with(".debug_") || w.starts_with(".zdebug_"))
            .collect();
        assert!(debug.is_empty(), "{bin} holds debug info: {debug:?}");
    }
}

#[test]
fn the_configuration_is_the_documented_one() {
    let p = packages();
    let tmp = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&p.deb)
        .arg(tmp.path()));
    let etc = tmp.path().join("etc/stakpak");

    // config.toml is `stakpak config sample` with the shipped rulebooks first.
    let sample = include_str!("../../crates/config/src/sample.toml");
    let expected = sample.replace(
        "rulebook_dirs = [\"rulebooks\"]\n",
        "# Installed: the shipped rulebooks, then /etc/stakpak/rulebooks, whose files replace\n\
         # shipped ones with the same uri.\n\
         rulebook_dirs = [\"/usr/share/stakpak/rulebooks\", \"rulebooks\"]\n",
    );
    assert_ne!(expected, sample);
    let config = fs::read_to_string(etc.join("config.toml")).unwrap();
    assert_eq!(config, expected);
    let out = Command::new(p.release.join("stakpak"))
        .env_clear()
        .arg("--config-dir")
        .arg(&etc)
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .args(["config", "show"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stakpak config show: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The daemons' files document their keys and set none: the defaults apply until the
    // administrator uncomments a line.
    for daemon in ["agent", "warden", "secretd", "sandboxd", "schedd"] {
        let text = fs::read_to_string(etc.join(format!("{daemon}.toml"))).unwrap();
        let set: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(set, Vec::<&str>::new(), "{daemon}.toml");
        assert!(
            text.contains("# [log]\n# level = \"info\""),
            "{daemon}.toml"
        );
    }
}
