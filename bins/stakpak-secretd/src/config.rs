//! `secretd.toml`, and the settings it comes to once defaults that depend on the mode
//! (installed or embedded), the environment and `/etc/passwd` are filled in.
//!
//! ```toml
//! privacy = false              # also redact public IP addresses and AWS account ids
//! [vault]
//! path = "vault.bin"           # relative to the state folder
//! key_file = "vault.key"       # embedded default; installed: $CREDENTIALS_DIRECTORY/vault.key
//! [resolve]
//! allowed_uids = [998]         # who may call Resolve (default: sandboxd's uid)
//! consumers = { schedd = [997] }  # consumer name → uids, for per-secret scopes
//! [manage]
//! allowed_uids = [0]           # who may call Set and Delete
//! [streams]
//! max_per_caller = 16
//! idle_timeout_secs = 600
//! ```

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use stakpak_daemon::{DaemonConfig, LogConfig, Mode, Paths};
use stakpak_secrets::vault::CREDENTIAL_NAME;

/// System user whose uid may resolve when installed.
const SANDBOXD_USER: &str = "stakpak-sandboxd";
/// Installed, consumer `X` is the system user `stakpak-X`.
const CONSUMER_USER_PREFIX: &str = "stakpak-";
/// Embedded, these consumer names stand for the daemons, which all run as our own uid.
const DAEMON_CONSUMERS: [&str; 5] = ["agent", "warden", "secretd", "sandboxd", "schedd"];
const PASSWD: &str = "/etc/passwd";

/// `secretd.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretdConfig {
    #[serde(default)]
    pub log: LogConfig,
    /// Privacy mode: also redact public IP addresses and AWS account ids.
    #[serde(default)]
    pub privacy: bool,
    #[serde(default)]
    pub vault: VaultConfig,
    #[serde(default)]
    pub resolve: ResolveConfig,
    #[serde(default)]
    pub manage: ManageConfig,
    #[serde(default)]
    pub streams: StreamsConfig,
    /// What the sections above come to, filled in by `prepare`.
    #[serde(skip)]
    pub settings: Settings,
}

/// `[vault]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// The vault file; relative paths are below the state folder. Default `vault.bin`.
    pub path: Option<PathBuf>,
    /// The 32-byte key. Default: embedded `<state>/vault.key` (created on first start),
    /// installed `$CREDENTIALS_DIRECTORY/vault.key` (never created).
    pub key_file: Option<PathBuf>,
}

/// `[resolve]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveConfig {
    /// Uids that may call `Resolve`. Default: embedded our own uid; installed the uid of the
    /// system user `stakpak-sandboxd` (none when it does not exist: nobody may resolve).
    pub allowed_uids: Option<Vec<u32>>,
    /// Consumer name → the uids that act as it, for secrets limited to named consumers.
    /// Names not listed: embedded, the daemons' short names are our own uid; installed,
    /// consumer `X` is the system user `stakpak-X`.
    #[serde(default)]
    pub consumers: BTreeMap<String, Vec<u32>>,
}

/// `[manage]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManageConfig {
    /// Uids that may call `Set` and `Delete`. Default: embedded our own uid; installed root.
    pub allowed_uids: Option<Vec<u32>>,
}

/// `[streams]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamsConfig {
    /// Open redaction streams one bus peer may have at once.
    #[serde(default = "StreamsConfig::default_max")]
    pub max_per_caller: usize,
    /// A stream unused for this long is closed and what it held back is dropped.
    #[serde(default = "StreamsConfig::default_idle")]
    pub idle_timeout_secs: u64,
}

impl StreamsConfig {
    fn default_max() -> usize {
        16
    }

    fn default_idle() -> u64 {
        600
    }
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            max_per_caller: Self::default_max(),
            idle_timeout_secs: Self::default_idle(),
        }
    }
}

/// Where the key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySource {
    pub path: PathBuf,
    /// Create the file with a fresh key when neither it nor the vault exists (embedded only).
    pub create: bool,
}

/// The configuration with every default filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub vault_path: PathBuf,
    pub key: Option<KeySource>,
    pub resolve_uids: BTreeSet<u32>,
    pub manage_uids: BTreeSet<u32>,
    pub consumers: Consumers,
    pub privacy: bool,
    pub max_streams_per_caller: usize,
    pub stream_idle: Duration,
}

/// Which uids act as which consumer name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consumers {
    configured: BTreeMap<String, BTreeSet<u32>>,
    fallback: ConsumerFallback,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum ConsumerFallback {
    /// Nothing beyond the configured names.
    #[default]
    None,
    /// Embedded: the daemons' short names are this uid.
    Daemons(u32),
    /// Installed: `stakpak-<name>` users from `/etc/passwd`, read at load.
    SystemUsers(BTreeMap<String, u32>),
}

impl Consumers {
    /// The uids acting as `consumer`; empty when nobody does.
    pub fn uids(&self, consumer: &str) -> BTreeSet<u32> {
        if let Some(uids) = self.configured.get(consumer) {
            return uids.clone();
        }
        match &self.fallback {
            ConsumerFallback::None => BTreeSet::new(),
            ConsumerFallback::Daemons(uid) => {
                if DAEMON_CONSUMERS.contains(&consumer) {
                    BTreeSet::from([*uid])
                } else {
                    BTreeSet::new()
                }
            }
            ConsumerFallback::SystemUsers(users) => users
                .get(&format!("{CONSUMER_USER_PREFIX}{consumer}"))
                .map(|uid| BTreeSet::from([*uid]))
                .unwrap_or_default(),
        }
    }

    /// True when `uid` acts as `consumer`.
    pub fn allows(&self, consumer: &str, uid: u32) -> bool {
        self.uids(consumer).contains(&uid)
    }
}

impl DaemonConfig for SecretdConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }

    fn prepare(&mut self, paths: &Paths) -> Result<(), String> {
        let env = Environment {
            own_uid: rustix::process::getuid().as_raw(),
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            passwd: std::fs::read_to_string(PASSWD).unwrap_or_default(),
        };
        self.settings = self.settle(paths, &env)?;
        Ok(())
    }
}

/// What the defaults depend on besides the file, passed in so tests can vary it.
#[derive(Debug, Clone)]
pub struct Environment {
    pub own_uid: u32,
    pub credentials_dir: Option<PathBuf>,
    /// The text of `/etc/passwd`.
    pub passwd: String,
}

impl SecretdConfig {
    /// Fills in the defaults for `paths.mode` and checks the values.
    pub fn settle(&self, paths: &Paths, env: &Environment) -> Result<Settings, String> {
        let below_state = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                paths.state_dir.join(p)
            }
        };
        let vault_path = below_state(self.vault.path.as_deref().unwrap_or(Path::new("vault.bin")));
        if vault_path.file_name().is_none() {
            return Err(format!(
                "vault.path: {} does not name a file",
                vault_path.display()
            ));
        }
        let users = system_users(&env.passwd);
        let installed = paths.mode == Mode::Installed;
        let key = match (&self.vault.key_file, installed) {
            (Some(file), _) => Some(KeySource {
                path: below_state(file),
                create: !installed,
            }),
            (None, false) => Some(KeySource {
                path: paths.state_dir.join(CREDENTIAL_NAME),
                create: true,
            }),
            (None, true) => env.credentials_dir.as_ref().map(|dir| KeySource {
                path: dir.join(CREDENTIAL_NAME),
                create: false,
            }),
        };
        let resolve_uids = match &self.resolve.allowed_uids {
            Some(uids) => uids.iter().copied().collect(),
            None if installed => users.get(SANDBOXD_USER).copied().into_iter().collect(),
            None => BTreeSet::from([env.own_uid]),
        };
        let manage_uids = match &self.manage.allowed_uids {
            Some(uids) => uids.iter().copied().collect(),
            None if installed => BTreeSet::from([0]),
            None => BTreeSet::from([env.own_uid]),
        };
        for name in self.resolve.consumers.keys() {
            if !is_consumer_name(name) {
                return Err(format!(
                    "resolve.consumers: invalid consumer name `{name}`: use [A-Za-z0-9_.-]{{1,64}}"
                ));
            }
        }
        let consumers = Consumers {
            configured: self
                .resolve
                .consumers
                .iter()
                .map(|(name, uids)| (name.clone(), uids.iter().copied().collect()))
                .collect(),
            fallback: if installed {
                ConsumerFallback::SystemUsers(
                    users
                        .into_iter()
                        .filter(|(name, _)| name.starts_with(CONSUMER_USER_PREFIX))
                        .collect(),
                )
            } else {
                ConsumerFallback::Daemons(env.own_uid)
            },
        };
        if self.streams.max_per_caller == 0 {
            return Err("streams.max_per_caller must be at least 1".into());
        }
        if self.streams.idle_timeout_secs == 0 {
            return Err("streams.idle_timeout_secs must be at least 1".into());
        }
        Ok(Settings {
            vault_path,
            key,
            resolve_uids,
            manage_uids,
            consumers,
            privacy: self.privacy,
            max_streams_per_caller: self.streams.max_per_caller,
            stream_idle: Duration::from_secs(self.streams.idle_timeout_secs),
        })
    }
}

fn is_consumer_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// User name → uid from the text of `/etc/passwd`; malformed lines are skipped.
pub fn system_users(passwd: &str) -> BTreeMap<String, u32> {
    passwd
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            (!name.is_empty()).then(|| (name.to_owned(), uid))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # a comment\n\
        stakpak-sandboxd:x:991:991::/var/lib/stakpak-sandboxd:/usr/sbin/nologin\n\
        stakpak-schedd:x:992:992::/:/usr/sbin/nologin\n\
        broken-line\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";

    fn paths(mode: Mode) -> Paths {
        Paths {
            mode,
            config_dir: "/etc/stakpak".into(),
            config_file: "/etc/stakpak/secretd.toml".into(),
            state_dir: "/var/lib/stakpak-secretd".into(),
            runtime_dir: "/run/stakpak/secretd".into(),
        }
    }

    fn env(credentials: Option<&str>) -> Environment {
        Environment {
            own_uid: 1000,
            credentials_dir: credentials.map(PathBuf::from),
            passwd: PASSWD_TEXT.into(),
        }
    }

    fn settle(text: &str, mode: Mode, credentials: Option<&str>) -> Result<Settings, String> {
        let config: SecretdConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.settle(&paths(mode), &env(credentials))
    }

    #[test]
    fn passwd_is_read_by_name() {
        let users = system_users(PASSWD_TEXT);
        let expected: BTreeMap<String, u32> = [
            ("nobody", 65534),
            ("root", 0),
            ("stakpak-sandboxd", 991),
            ("stakpak-schedd", 992),
        ]
        .into_iter()
        .map(|(n, u)| (n.to_owned(), u))
        .collect();
        assert_eq!(users, expected);
    }

    #[test]
    fn installed_defaults_use_the_credential_and_the_sandboxd_user() {
        let s = settle(
            "",
            Mode::Installed,
            Some("/run/credentials/stakpak-secretd.service"),
        )
        .unwrap();
        assert_eq!(
            s.vault_path,
            PathBuf::from("/var/lib/stakpak-secretd/vault.bin")
        );
        assert_eq!(
            s.key,
            Some(KeySource {
                path: "/run/credentials/stakpak-secretd.service/vault.key".into(),
                create: false,
            })
        );
        assert_eq!(s.resolve_uids, BTreeSet::from([991]));
        assert_eq!(s.manage_uids, BTreeSet::from([0]));
        assert_eq!(s.consumers.uids("schedd"), BTreeSet::from([992]));
        assert_eq!(s.consumers.uids("agent"), BTreeSet::new());
        assert!(!s.privacy);
    }

    #[test]
    fn installed_without_a_credential_has_no_key() {
        let s = settle("", Mode::Installed, None).unwrap();
        assert_eq!(s.key, None);
    }

    #[test]
    fn installed_without_a_sandboxd_user_lets_nobody_resolve() {
        let config = SecretdConfig::default();
        let env = Environment {
            passwd: "root:x:0:0::/root:/bin/sh\n".into(),
            ..env(None)
        };
        let s = config.settle(&paths(Mode::Installed), &env).unwrap();
        assert_eq!(s.resolve_uids, BTreeSet::new());
    }

    #[test]
    fn embedded_defaults_are_our_own_uid_and_a_created_key() {
        let s = settle("", Mode::Embedded, Some("/ignored")).unwrap();
        assert_eq!(
            s.key,
            Some(KeySource {
                path: "/var/lib/stakpak-secretd/vault.key".into(),
                create: true,
            })
        );
        assert_eq!(s.resolve_uids, BTreeSet::from([1000]));
        assert_eq!(s.manage_uids, BTreeSet::from([1000]));
        assert_eq!(s.consumers.uids("schedd"), BTreeSet::from([1000]));
        assert_eq!(s.consumers.uids("ci-bot"), BTreeSet::new());
    }

    #[test]
    fn explicit_values_win() {
        let text = r#"
privacy = true
[vault]
path = "/srv/vault.bin"
key_file = "keys/k"
[resolve]
allowed_uids = [0, 5]
consumers = { schedd = [7], ci-bot = [8, 9] }
[manage]
allowed_uids = [42]
[streams]
max_per_caller = 3
idle_timeout_secs = 2
"#;
        let s = settle(text, Mode::Installed, Some("/run/credentials/x")).unwrap();
        let expected = Settings {
            vault_path: "/srv/vault.bin".into(),
            key: Some(KeySource {
                path: "/var/lib/stakpak-secretd/keys/k".into(),
                create: false,
            }),
            resolve_uids: BTreeSet::from([0, 5]),
            manage_uids: BTreeSet::from([42]),
            consumers: s.consumers.clone(),
            privacy: true,
            max_streams_per_caller: 3,
            stream_idle: Duration::from_secs(2),
        };
        assert_eq!(s, expected);
        assert_eq!(s.consumers.uids("schedd"), BTreeSet::from([7]));
        assert_eq!(s.consumers.uids("ci-bot"), BTreeSet::from([8, 9]));
        assert!(s.consumers.allows("ci-bot", 9));
        assert!(!s.consumers.allows("ci-bot", 992));
    }

    #[test]
    fn bad_values_are_refused() {
        let cases = [
            (
                "[resolve]\nconsumers = { \"a b\" = [1] }\n",
                "resolve.consumers: invalid consumer name `a b`: use [A-Za-z0-9_.-]{1,64}",
            ),
            (
                "[streams]\nmax_per_caller = 0\n",
                "streams.max_per_caller must be at least 1",
            ),
            (
                "[streams]\nidle_timeout_secs = 0\n",
                "streams.idle_timeout_secs must be at least 1",
            ),
            (
                "[vault]\npath = \"/\"\n",
                "vault.path: / does not name a file",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                settle(text, Mode::Embedded, None),
                Err(expected.to_owned()),
                "{text}"
            );
        }
    }
}
