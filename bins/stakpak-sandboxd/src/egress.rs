//! Network `proxied` for sandboxd: where the warden's egress proxy listens, the CA bundle
//! commands trust, and the variables that point them at both.
//!
//! The bundle (`<state>/egress/ca-bundle.pem`, folder 0711, file 0644) is the system's roots
//! followed by the warden's interception CA, so a command verifies both intercepted hosts
//! (leaves of the warden's CA) and tunnelled ones (their own certificates). It is written
//! again whenever the warden's CA differs from the one last written, and the sandbox may
//! read it even though sandboxd's state is hidden from commands (`ProxyRelay::ca_bundle`).

use std::{
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::peers::{PeerError, Peers};

/// Rule id of a refusal because the egress proxy is not there.
pub const RULE_PROXY_UNAVAILABLE: &str = "sandboxd.proxy-unavailable";

/// Variables naming the CA bundle: OpenSSL and curl, Python requests, Node, git, the AWS
/// CLI and SDKs, pip.
pub const CA_VARS: [&str; 7] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "AWS_CA_BUNDLE",
    "PIP_CERT",
];

/// Variables naming the proxy, in both spellings programs read.
pub const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// Where containers of the Docker backend see the bundle's folder (mounted read-only).
pub const CONTAINER_DIR: &str = "/etc/stakpak/egress";
/// The bundle's file name, in its folder on the host and in containers.
pub const BUNDLE: &str = "ca-bundle.pem";

/// What a proxied run needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Egress {
    /// The proxy's unix socket.
    pub socket: PathBuf,
    /// The proxy's TCP listener (`[proxy] listen`), empty when none.
    pub tcp: String,
    /// The CA bundle commands trust.
    pub bundle: PathBuf,
}

/// The bundle's folder in sandboxd's state (mounted into Docker containers).
pub(crate) fn bundle_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("egress")
}

/// Why a proxied run cannot have its proxy; the refusal's reason.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EgressError {
    #[error(transparent)]
    Warden(#[from] PeerError),
    #[error(
        "network proxied needs the warden's egress proxy, which is off ([proxy] enabled = false in warden.toml)"
    )]
    Off,
    #[error("cannot write {}: {source}", path.display())]
    Bundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Keeps the bundle in step with the warden's CA.
#[derive(Debug, Default)]
pub(crate) struct Trust {
    /// The CA last written into the bundle.
    written: Mutex<Option<String>>,
}

impl Trust {
    /// Asks the warden where its proxy is, and (re)writes the bundle when its CA changed.
    pub(crate) async fn egress(
        &self,
        peers: &Peers,
        state_dir: &Path,
    ) -> Result<Egress, EgressError> {
        let info = peers.proxy_info().await?;
        if !info.enabled || info.socket.is_empty() {
            return Err(EgressError::Off);
        }
        let bundle = bundle_dir(state_dir).join(BUNDLE);
        let stale = match self.written.lock() {
            Ok(w) => w.as_deref() != Some(info.ca_pem.as_str()) || !bundle.exists(),
            Err(_) => true,
        };
        if stale {
            write_bundle(&bundle, &info.ca_pem).map_err(|source| EgressError::Bundle {
                path: bundle.clone(),
                source,
            })?;
            if let Ok(mut w) = self.written.lock() {
                *w = Some(info.ca_pem);
            }
        }
        Ok(Egress {
            socket: PathBuf::from(info.socket),
            tcp: info.tcp,
            bundle,
        })
    }
}

/// The variables of a proxied run: the proxy on the sandbox's loopback, the bundle.
pub(crate) fn env(port: u16, bundle: &Path) -> Vec<(String, String)> {
    let proxy = format!("http://127.0.0.1:{port}");
    let bundle = bundle.display().to_string();
    PROXY_VARS
        .iter()
        .map(|v| (v.to_string(), proxy.clone()))
        .chain(CA_VARS.iter().map(|v| (v.to_string(), bundle.clone())))
        .collect()
}

/// The variables of a Docker run: the bundle as the container sees it, and the proxy when
/// the container shares the host's network and the warden listens on TCP (otherwise the
/// container cannot reach it; its network stays `docker.network`).
pub(crate) fn container_env(egress: &Egress, host_network: bool) -> Vec<(String, String)> {
    let bundle = format!("{CONTAINER_DIR}/{BUNDLE}");
    let mut env: Vec<(String, String)> = CA_VARS
        .iter()
        .map(|v| (v.to_string(), bundle.clone()))
        .collect();
    if host_network && !egress.tcp.is_empty() {
        let proxy = format!("http://{}", egress.tcp);
        env.extend(PROXY_VARS.iter().map(|v| (v.to_string(), proxy.clone())));
    }
    env
}

/// The system roots then `ca_pem`, written to a temporary file renamed into place.
fn write_bundle(path: &Path, ca_pem: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("the bundle has no folder"))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    // The roots every TLS client of the suite trusts; none found leaves the warden's CA
    // alone in the bundle, as a system without a bundle always did.
    let mut text = stakpak_util::roots::pem(&stakpak_util::roots::system_roots());
    text.push_str("# stakpak warden egress CA\n");
    text.push_str(ca_pem);
    let tmp = dir.join(".ca-bundle.pem.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_bundle_ends_with_the_warden_ca_and_everyone_may_read_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("egress").join("ca-bundle.pem");
        let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        write_bundle(&path, ca).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(&format!("# stakpak warden egress CA\n{ca}")));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o644);
        assert_eq!(mode(path.parent().unwrap()), 0o711);
    }

    #[test]
    fn containers_get_the_bundle_and_the_proxy_only_on_the_host_network() {
        let egress = Egress {
            socket: "/run/w/proxy.sock".into(),
            tcp: "127.0.0.1:3128".into(),
            bundle: "/var/lib/s/egress/ca-bundle.pem".into(),
        };
        let bridge = container_env(&egress, false);
        assert_eq!(bridge.len(), CA_VARS.len());
        assert!(bridge.contains(&(
            "SSL_CERT_FILE".into(),
            "/etc/stakpak/egress/ca-bundle.pem".into()
        )));
        let host = container_env(&egress, true);
        assert!(host.contains(&("HTTPS_PROXY".into(), "http://127.0.0.1:3128".into())));
        let no_tcp = Egress {
            tcp: String::new(),
            ..egress
        };
        assert_eq!(container_env(&no_tcp, true).len(), CA_VARS.len());
    }

    #[test]
    fn variables_name_the_proxy_and_the_bundle() {
        let env = env(3128, Path::new("/b.pem"));
        assert_eq!(env.len(), PROXY_VARS.len() + CA_VARS.len());
        assert!(env.contains(&("HTTPS_PROXY".into(), "http://127.0.0.1:3128".into())));
        assert!(env.contains(&("NODE_EXTRA_CA_CERTS".into(), "/b.pem".into())));
    }
}
