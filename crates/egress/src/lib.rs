//! The warden's egress proxy: an HTTP/1.1 forward proxy (absolute-form requests and
//! `CONNECT`) that applies host rules to every connection and, for hosts marked for
//! inspection, terminates TLS with a leaf certificate of its own CA ([`ca`]) so every request
//! inside can be judged before it goes on.
//!
//! The crate knows nothing of D-Bus, policy packs or the audit trail: the warden hands it a
//! [`Judge`] (the policy in force) and reads the [`Event`]s it emits (blocked and inspected
//! requests) to log and record them.
//!
//! # A connection
//!
//! 1. `CONNECT host:port`: the host rules ([`hosts::HostRules`]: deny, then allow) decide;
//!    a refusal is a `403` naming the rule. An inspected target gets `200`, then a TLS
//!    handshake with the leaf for `host`, then HTTP/1.1 inside; any other target is
//!    connected first (so a failure is a `502`) and then tunnelled byte for byte.
//! 2. Each request inside (or an absolute-form `http://` request): the body is read up to
//!    [`Settings::body_limit`], the [`Judge`] sees method, host, port, path, headers and that
//!    body; anything but allow is a `403` whose JSON body names the rule. Otherwise it goes to
//!    the upstream over one kept-alive connection per client connection (TLS verified with
//!    the system roots plus [`Settings`]' extra roots), and the response streams back.
//!    `Upgrade` requests (WebSockets, `kubectl exec`) are judged, then bridged.
//! 3. The proxy resolves names itself (the client never does); the static map of
//!    [`hosts::HostRules`] comes first. A name that resolves to a loopback, link-local or
//!    unspecified address is refused unless it is in the map.
//!
//! Nothing in a request is rewritten but hop-by-hop headers: placeholders a command put into
//! a header reach the upstream as they are (resolution happens in sandboxd, never here).

pub mod ca;
pub mod hosts;
mod proxy;

pub use stakpak_proto::Decision;
use std::{sync::Arc, time::Duration};

pub use ca::{Authority, CaError};
pub use hosts::{HostPattern, HostRefusal, HostRules, PatternError};
pub use proxy::Proxy;

/// A request as the [`Judge`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// `https` (intercepted) or `http`.
    pub scheme: &'a str,
    /// Lower-case host, as the client named it.
    pub host: &'a str,
    pub port: u16,
    /// Path and query, as sent.
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
    /// The body, or its first [`Settings::body_limit`] bytes.
    pub body: &'a [u8],
}

/// What the [`Judge`] says of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// Whether the request may go on; anything else is answered `403`.
    pub allow: bool,
    pub decision: Decision,
    /// The deciding rule; empty when the default applied.
    pub rule: String,
    pub reason: String,
    /// The operation recognised (`k8s:delete:namespaces`, `aws:ec2:TerminateInstances`), or
    /// the method and path.
    pub operation: String,
}

/// Judges requests inside inspected connections.
pub trait Judge: Send + Sync + 'static {
    fn judge(&self, request: &RequestView<'_>) -> Judgement;
}

/// How the proxy behaves; replaced as a whole on reload.
#[derive(Debug, Clone)]
pub struct Settings {
    pub hosts: HostRules,
    /// How upstream TLS is verified.
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// Bytes of a request body read before judging; the rest streams on unjudged.
    pub body_limit: usize,
    /// Keep headers and body prefixes of recorded requests in their [`Event`]s.
    pub detail: bool,
    /// Refuse names that resolve to loopback, link-local or unspecified addresses.
    pub block_local: bool,
    pub connect_timeout: Duration,
}

/// Bytes of each body kept in a detailed [`Event`].
pub const DETAIL_BODY_MAX: usize = 4096;

/// Headers whose values never leave the proxy, even in detail mode.
pub const MASKED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-amz-security-token",
    "x-api-key",
    "x-auth-token",
    "private-token",
];

/// What happened to a request or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Refused by a host rule or the judge: answered `403`.
    Blocked,
    /// Judged, allowed and forwarded.
    Inspected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Blocked => "blocked",
            Outcome::Inspected => "inspected",
        }
    }
}

/// One blocked or inspected request, for the warden's log and audit trail.
#[derive(Debug, Clone)]
pub struct Event {
    pub outcome: Outcome,
    /// What the client connection said it belongs to (empty when it said nothing).
    pub session: String,
    pub method: String,
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Path and query; empty for `CONNECT`.
    pub path: String,
    pub operation: String,
    pub decision: Decision,
    pub rule: String,
    pub reason: String,
    /// The status sent to the client (`403` when blocked, the upstream's otherwise, `502`
    /// when the upstream could not be reached).
    pub status: u16,
    pub duration: Duration,
    /// In detail mode: headers (masked) and body prefixes.
    pub detail: Option<Detail>,
}

/// Headers and body prefixes of a request and its response; the bodies are raw here and
/// must be redacted before they are written anywhere.
#[derive(Debug, Clone, Default)]
pub struct Detail {
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
}

/// The client configuration for upstream TLS: the system's roots plus `extra` (PEM
/// certificates), HTTP/1.1 only.
pub fn upstream_tls(extra_pem: &[Vec<u8>]) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    // As before: a system certificate rustls cannot use is skipped, not fatal.
    roots.add_parsable_certificates(stakpak_util::roots::system_roots());
    for pem in extra_pem {
        let mut any = false;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("bad PEM certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("unusable certificate: {e}"))?;
            any = true;
        }
        if !any {
            return Err("no PEM certificate found".into());
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
