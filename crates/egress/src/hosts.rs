//! Host rules: which `host:port` targets a connection may reach, which of them are
//! intercepted, and the static name map that replaces DNS for some names.
//!
//! A pattern is `HOST` or `HOST:PORT`; `HOST` is a name or address (exact, case-insensitive),
//! `*.domain` (any name below `domain`, not `domain` itself) or `*` (every host); `PORT` is a
//! number or `*`. Without a port the pattern matches every port.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

/// A host pattern that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host pattern `{pattern}`: {problem}")]
pub struct PatternError {
    pub pattern: String,
    pub problem: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPart {
    Any,
    Exact(String),
    /// `*.suffix`: stored as `.suffix`.
    Below(String),
}

/// One `HOST[:PORT]` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: HostPart,
    port: Option<u16>,
    text: String,
}

impl HostPattern {
    /// Parses a pattern (see the module documentation).
    pub fn parse(text: &str) -> Result<HostPattern, PatternError> {
        let err = |problem| PatternError {
            pattern: text.to_string(),
            problem,
        };
        let t = text.trim();
        if t.is_empty() {
            return Err(err("empty"));
        }
        // `[v6]:port`, `[v6]`, `host:port`, `host`, or a bare IPv6 address.
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(|| err("unclosed `[`"))?;
            match after {
                "" => (h, None),
                p => (
                    h,
                    Some(p.strip_prefix(':').ok_or_else(|| err("junk after `]`"))?),
                ),
            }
        } else if t.matches(':').count() > 1 {
            (t, None)
        } else {
            match t.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (t, None),
            }
        };
        let port = match port {
            None | Some("*") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| err("port must be 1 to 65535 or *"))?,
            ),
        };
        let host = host.to_ascii_lowercase();
        let part = if host == "*" {
            HostPart::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(err("a wildcard is `*` or `*.domain`"));
            }
            HostPart::Below(format!(".{suffix}"))
        } else if host.contains('*') {
            return Err(err("a wildcard is `*` or `*.domain`"));
        } else if host.is_empty() {
            return Err(err("empty host"));
        } else {
            HostPart::Exact(host)
        };
        Ok(HostPattern {
            host: part,
            port,
            text: t.to_string(),
        })
    }

    /// Whether `host` (lower-case) and `port` match.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.host {
            HostPart::Any => true,
            HostPart::Exact(h) => h == host,
            HostPart::Below(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Why a connection was refused by the host rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRefusal {
    /// A `deny` pattern matched.
    Denied(String),
    /// No `allow` pattern matched.
    NotAllowed,
    /// The name resolved to a loopback, link-local or unspecified address (cloud metadata
    /// services live there) and the host is not in the static map.
    Local(IpAddr),
}

impl HostRefusal {
    /// The rule id recorded and returned in the 403.
    pub fn rule(&self) -> String {
        match self {
            HostRefusal::Denied(p) => format!("proxy.deny[{p}]"),
            HostRefusal::NotAllowed => "proxy.allow".into(),
            HostRefusal::Local(_) => "proxy.local-address".into(),
        }
    }

    /// A sentence for the 403 body and the audit trail.
    pub fn reason(&self) -> String {
        match self {
            HostRefusal::Denied(p) => format!("the host matches the deny pattern `{p}`"),
            HostRefusal::NotAllowed => "the host and port match no allow pattern".into(),
            HostRefusal::Local(ip) => {
                format!("the host resolves to {ip}, a loopback, link-local or unspecified address")
            }
        }
    }
}

/// The host rules of the proxy.
#[derive(Debug, Clone, Default)]
pub struct HostRules {
    pub allow: Vec<HostPattern>,
    pub deny: Vec<HostPattern>,
    pub inspect: Vec<HostPattern>,
    /// Static name map: `host:port` or `host` (lower-case) to the address to connect to.
    pub map: HashMap<String, SocketAddr>,
}

impl HostRules {
    /// Parses lists of patterns; the map's keys are `host` or `host:port`.
    pub fn new(
        allow: &[String],
        deny: &[String],
        inspect: &[String],
        map: &HashMap<String, SocketAddr>,
    ) -> Result<HostRules, PatternError> {
        let list = |v: &[String]| -> Result<Vec<HostPattern>, PatternError> {
            v.iter().map(|p| HostPattern::parse(p)).collect()
        };
        Ok(HostRules {
            allow: list(allow)?,
            deny: list(deny)?,
            inspect: list(inspect)?,
            map: map
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), *v))
                .collect(),
        })
    }

    /// Deny first, then allow.
    pub fn check(&self, host: &str, port: u16) -> Result<(), HostRefusal> {
        if let Some(p) = self.deny.iter().find(|p| p.matches(host, port)) {
            return Err(HostRefusal::Denied(p.as_str().to_string()));
        }
        if self.allow.iter().any(|p| p.matches(host, port)) {
            Ok(())
        } else {
            Err(HostRefusal::NotAllowed)
        }
    }

    /// Whether connections to this target are intercepted.
    pub fn inspects(&self, host: &str, port: u16) -> bool {
        self.inspect.iter().any(|p| p.matches(host, port))
    }

    /// The static address for a target, when the map has one.
    pub fn mapped(&self, host: &str, port: u16) -> Option<SocketAddr> {
        self.map
            .get(&format!("{host}:{port}"))
            .or_else(|| self.map.get(host))
            .copied()
    }
}

/// Loopback, link-local (169.254/16 holds cloud metadata services; fe80::/10) and
/// unspecified addresses: reachable only through the static map.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local(IpAddr::V4(v4));
            }
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Splits `host:port` (the CONNECT authority, or a Host header with a default port);
/// returns the lower-case host without IPv6 brackets.
pub fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, default_port),
        }
    };
    if host.is_empty()
        || port == 0
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn patterns_match_hosts_and_ports() {
        let cases: &[(&str, &str, u16, bool)] = &[
            ("*", "example.com", 443, true),
            ("*:443", "example.com", 443, true),
            ("*:443", "example.com", 80, false),
            ("example.com", "example.com", 8443, true),
            ("Example.COM:443", "example.com", 443, true),
            ("example.com", "www.example.com", 443, false),
            ("*.example.com", "www.example.com", 443, true),
            ("*.example.com", "a.b.example.com", 443, true),
            ("*.example.com", "example.com", 443, false),
            ("*.example.com", "badexample.com", 443, false),
            ("*.example.com:*", "x.example.com", 1, true),
            ("10.0.0.1:6443", "10.0.0.1", 6443, true),
            ("[::1]:443", "::1", 443, true),
            ("::1", "::1", 8080, true),
        ];
        for (pattern, host, port, expected) in cases {
            let p = HostPattern::parse(pattern).unwrap();
            assert_eq!(
                p.matches(host, *port),
                *expected,
                "{pattern} vs {host}:{port}"
            );
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "",
            "a*.com",
            "*.",
            "host:0",
            "host:x",
            "host:70000",
            "[::1",
            "*.*.com",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deny_wins_over_allow_and_the_map_is_by_port_then_host() {
        let map = HashMap::from([
            (
                "allowed.test".to_string(),
                "127.0.0.1:8443".parse().unwrap(),
            ),
            (
                "Kube.test:6443".to_string(),
                "127.0.0.1:9443".parse().unwrap(),
            ),
        ]);
        let rules = HostRules::new(
            &["*:443".into(), "kube.test:6443".into()],
            &["*.evil.test".into()],
            &["*.test".into()],
            &map,
        )
        .unwrap();
        assert_eq!(rules.check("allowed.test", 443), Ok(()));
        assert_eq!(
            rules.check("allowed.test", 80),
            Err(HostRefusal::NotAllowed)
        );
        assert_eq!(
            rules.check("x.evil.test", 443),
            Err(HostRefusal::Denied("*.evil.test".into()))
        );
        assert!(rules.inspects("allowed.test", 443));
        assert!(!rules.inspects("example.com", 443));
        assert_eq!(
            rules.mapped("allowed.test", 443),
            Some("127.0.0.1:8443".parse().unwrap())
        );
        assert_eq!(
            rules.mapped("kube.test", 6443),
            Some("127.0.0.1:9443".parse().unwrap())
        );
        assert_eq!(rules.mapped("kube.test", 443), None);
    }

    #[test]
    fn local_addresses() {
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_local(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "192.168.1.1", "8.8.8.8", "2001:db8::1"] {
            assert!(!is_local(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn authorities_split() {
        assert_eq!(
            split_authority("Example.com:443", 80),
            Some(("example.com".into(), 443))
        );
        assert_eq!(
            split_authority("example.com", 80),
            Some(("example.com".into(), 80))
        );
        assert_eq!(
            split_authority("[::1]:8443", 80),
            Some(("::1".into(), 8443))
        );
        assert_eq!(split_authority("a b:443", 80), None);
        assert_eq!(split_authority("host:0", 80), None);
        assert_eq!(split_authority(":443", 80), None);
    }
}
