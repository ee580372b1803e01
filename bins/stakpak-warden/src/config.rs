//! `warden.toml`: the policy packs to load, the audit trail and the egress proxy's `[proxy]`
//! section, checked whole by `prepare` at start and on every reload.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::Deserialize;
use stakpak_daemon::{DaemonConfig, LogConfig, Paths};
use stakpak_egress::{HostRules, Settings};
use stakpak_policy::{Policy, load::PolicyConfig};

/// `warden.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WardenConfig {
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// The policy this configuration names, loaded by `prepare`.
    #[serde(skip)]
    pub loaded: Option<Arc<Policy>>,
    /// The proxy's settings from `[proxy]`, built by `prepare`.
    #[serde(skip)]
    pub proxy_settings: Option<Arc<stakpak_egress::Settings>>,
}

/// The `[audit]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Record every verdict that is not `allow` in `<state>/audit.db`.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { enabled: true }
    }
}

impl DaemonConfig for WardenConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }

    fn prepare(&mut self, paths: &Paths) -> Result<(), String> {
        self.policy.validate()?;
        let policy = self
            .policy
            .load_fast(&paths.config_dir)
            .map_err(|e| format!("policy: {e}"))?;
        self.loaded = Some(Arc::new(policy));
        self.proxy_settings = Some(Arc::new(self.proxy.settings(&paths.config_dir)?));
        Ok(())
    }
}

/// The `[proxy]` section of `warden.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Run the proxy (the unix socket `<runtime>/proxy.sock`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Also listen on this TCP address (`127.0.0.1:3128`); read at start only.
    #[serde(default)]
    pub listen: Option<String>,
    /// Host patterns a connection may reach (`HOST[:PORT]`, `*.domain`, `*`).
    #[serde(default = "default_allow")]
    pub allow: Vec<String>,
    /// Host patterns refused whatever `allow` says.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Host patterns whose TLS is intercepted and whose requests are judged.
    #[serde(default = "default_inspect")]
    pub inspect: Vec<String>,
    /// Static names: `"host"` or `"host:port"` to `"address:port"`; used before DNS.
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
    /// Extra PEM files of CAs trusted for upstream TLS, relative to the configuration folder.
    #[serde(default)]
    pub upstream_ca: Vec<PathBuf>,
    /// Record headers (credentials masked) and body prefixes (redacted by secretd).
    #[serde(default)]
    pub detail: bool,
    /// Bytes of a request body read before judging.
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
    /// Refuse names resolving to loopback, link-local or unspecified addresses.
    #[serde(default = "yes")]
    pub block_local: bool,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
}

fn default_allow() -> Vec<String> {
    vec!["*:443".into(), "*:80".into()]
}
fn default_inspect() -> Vec<String> {
    vec!["*".into()]
}
fn default_body_limit() -> usize {
    1024 * 1024
}
fn default_connect_timeout() -> u64 {
    10_000
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            enabled: true,
            listen: None,
            allow: default_allow(),
            deny: Vec::new(),
            inspect: default_inspect(),
            hosts: BTreeMap::new(),
            upstream_ca: Vec::new(),
            detail: false,
            body_limit: default_body_limit(),
            block_local: true,
            connect_timeout_ms: default_connect_timeout(),
        }
    }
}

impl ProxyConfig {
    /// The proxy's settings, or a message naming the bad value.
    pub fn settings(&self, config_dir: &Path) -> Result<Settings, String> {
        let mut map = std::collections::HashMap::new();
        for (name, addr) in &self.hosts {
            let addr: SocketAddr = addr
                .parse()
                .map_err(|_| format!("proxy.hosts.\"{name}\": `{addr}` is not an address:port"))?;
            map.insert(name.clone(), addr);
        }
        let hosts = HostRules::new(&self.allow, &self.deny, &self.inspect, &map)
            .map_err(|e| format!("proxy: {e}"))?;
        if let Some(listen) = &self.listen {
            listen
                .parse::<SocketAddr>()
                .map_err(|_| format!("proxy.listen: `{listen}` is not an address:port"))?;
        }
        let mut extra = Vec::new();
        for file in &self.upstream_ca {
            let path = config_dir.join(file);
            let pem = std::fs::read(&path)
                .map_err(|e| format!("proxy.upstream_ca: cannot read {}: {e}", path.display()))?;
            extra.push(pem);
        }
        let tls =
            stakpak_egress::upstream_tls(&extra).map_err(|e| format!("proxy.upstream_ca: {e}"))?;
        if self.body_limit == 0 {
            return Err("proxy.body_limit must be above 0".into());
        }
        Ok(Settings {
            hosts,
            upstream_tls: Arc::new(tls),
            body_limit: self.body_limit,
            detail: self.detail,
            block_local: self.block_local,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms.max(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn settings(toml_text: &str, dir: &Path) -> Result<Settings, String> {
        let config: WardenConfig = toml::from_str(toml_text).unwrap();
        config.proxy.settings(dir)
    }

    #[test]
    fn proxy_settings_are_checked_whole() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings("", dir.path()).unwrap();
        assert!(s.hosts.check("example.com", 443).is_ok());
        assert!(s.hosts.check("example.com", 22).is_err());
        assert!(s.hosts.inspects("example.com", 443));
        assert_eq!(
            (s.body_limit, s.detail, s.block_local),
            (1024 * 1024, false, true)
        );
        let bad = [
            (
                "[proxy]\nhosts = { \"a.test\" = \"nowhere\" }",
                "proxy.hosts.\"a.test\": `nowhere` is not an address:port",
            ),
            (
                "[proxy]\nlisten = \"localhost\"",
                "proxy.listen: `localhost` is not an address:port",
            ),
            ("[proxy]\nallow = [\"*.\"]", "host pattern `*.`"),
            (
                "[proxy]\nupstream_ca = [\"missing.pem\"]",
                "proxy.upstream_ca: cannot read",
            ),
            (
                "[proxy]\nbody_limit = 0",
                "proxy.body_limit must be above 0",
            ),
        ];
        for (text, expected) in bad {
            let err = settings(text, dir.path()).unwrap_err();
            assert!(err.contains(expected), "{err}\nexpected: {expected}");
        }
        std::fs::write(dir.path().join("junk.pem"), "not a certificate").unwrap();
        let err = settings("[proxy]\nupstream_ca = [\"junk.pem\"]", dir.path()).unwrap_err();
        assert_eq!(err, "proxy.upstream_ca: no PEM certificate found");
    }
}
