//! Checks written in code, for what a regular expression cannot decide: the claims inside a
//! JWT, what base64 decodes to, and whether an IP address is public.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    ops::Range,
    str::FromStr,
};

use base64::{
    Engine,
    engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_NO_PAD_INDIFFERENT},
};

/// A check named by a rule's `check = "…"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// The JWT's payload carries Kubernetes claims.
    KubernetesJwt,
    /// The base64 decodes to a PEM private key header.
    Base64PrivateKey,
    /// The base64 decodes to printable `user:password`.
    DockerAuth,
    /// The text between PEM armour lines is base64 (with optional headers), not prose.
    PemBody,
    /// A public IPv4 address standing on its own (not part of a version number or OID).
    PublicIpv4,
    /// A public IPv6 address standing on its own.
    PublicIpv6,
}

impl Check {
    pub(super) fn parse(name: &str) -> Option<Check> {
        Some(match name {
            "kubernetes-jwt" => Check::KubernetesJwt,
            "base64-private-key" => Check::Base64PrivateKey,
            "docker-auth" => Check::DockerAuth,
            "pem-body" => Check::PemBody,
            "public-ipv4" => Check::PublicIpv4,
            "public-ipv6" => Check::PublicIpv6,
            _ => return None,
        })
    }

    /// Whether the value at `span` of `hay` is what the rule is after.
    pub(super) fn accepts(self, hay: &[u8], span: Range<usize>) -> bool {
        let value = &hay[span.clone()];
        match self {
            Check::KubernetesJwt => kubernetes_jwt(value),
            Check::Base64PrivateKey => base64_private_key(value),
            Check::DockerAuth => docker_auth(value),
            Check::PemBody => pem_body(value),
            Check::PublicIpv4 => standalone_ipv4(hay, span) && parse(value).is_some_and(public_v4),
            Check::PublicIpv6 => standalone_ipv6(hay, span) && parse(value).is_some_and(public_v6),
        }
    }
}

fn parse<T: FromStr>(value: &[u8]) -> Option<T> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn kubernetes_jwt(value: &[u8]) -> bool {
    let Some(payload) = value.split(|&b| b == b'.').nth(1) else {
        return false;
    };
    URL_SAFE_NO_PAD_INDIFFERENT
        .decode(payload)
        .is_ok_and(|claims| {
            memchr::memmem::find(&claims, b"kubernetes.io").is_some()
                || memchr::memmem::find(&claims, b"kubernetes/serviceaccount").is_some()
        })
}

fn base64_private_key(value: &[u8]) -> bool {
    // "-----BEGIN ENCRYPTED PRIVATE KEY-----" is 37 bytes: 60 decoded bytes hold any header.
    let head = &value[..value.len().min(80) / 4 * 4];
    STANDARD_PAD_INDIFFERENT
        .decode(head)
        .is_ok_and(|pem| memchr::memmem::find(&pem, b"PRIVATE KEY").is_some())
}

fn docker_auth(value: &[u8]) -> bool {
    STANDARD_PAD_INDIFFERENT.decode(value).is_ok_and(|auth| {
        auth.len() >= 3
            && auth.contains(&b':')
            && auth.iter().all(|&b| b.is_ascii_graphic() || b == b' ')
    })
}

fn pem_body(value: &[u8]) -> bool {
    // Headers ("Proc-Type: 4,ENCRYPTED", "Comment: …") are lines with a colon; the rest,
    // without blanks and `\n` escapes of JSON strings, must be (nearly all) base64.
    let mut base64 = 0usize;
    let mut other = 0usize;
    for line in value.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.contains(&b':') && !line.windows(2).any(|w| w == b"\\n") {
            continue;
        }
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            if b == b'\\' && matches!(line.get(i + 1), Some(b'n' | b'r' | b't')) {
                i += 2;
                continue;
            }
            if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=') {
                base64 += 1;
            } else if !b.is_ascii_whitespace() && b != b'"' {
                other += 1;
            }
            i += 1;
        }
    }
    base64 >= 64 && other * 20 <= base64
}

/// Not glued to a longer dotted or dashed token: `1.2.3.4.5`, `v1.2.3.4` (the regex's `\b`
/// already refuses letters and digits around it).
fn standalone_ipv4(hay: &[u8], span: Range<usize>) -> bool {
    let before = span.start.checked_sub(1).map(|i| hay[i]);
    let after = hay.get(span.end).copied();
    let after2 = hay.get(span.end + 1).copied();
    let glued_before = matches!(before, Some(b'.' | b'-' | b'_'));
    let glued_after = matches!(after, Some(b'-' | b'_'))
        || (after == Some(b'.') && after2.is_some_and(|b| b.is_ascii_alphanumeric()));
    !(glued_before || glued_after)
}

fn standalone_ipv6(hay: &[u8], span: Range<usize>) -> bool {
    let after = hay.get(span.end).copied();
    !after.is_some_and(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'_')
}

/// Public unless private, loopback, link-local, CGNAT (100.64/10), documentation,
/// benchmarking (198.18/15), multicast, reserved (240/4), broadcast, or "this network" (0/8).
fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 192 && b == 0 && c == 0))
}

/// Public: global unicast (2000::/3) outside documentation (2001:db8::/32); an IPv4-mapped
/// address is judged as the IPv4 address. Everything else — ::1, fe80::/10, fc00::/7,
/// multicast, and the `a::b` shapes that code is full of — is not.
fn public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(v4);
    }
    let s = ip.segments();
    (s[0] & 0xe000) == 0x2000 && !(s[0] == 0x2001 && s[1] == 0x0db8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_ranges() {
        let cases = [
            ("8.8.8.8", true),
            ("52.94.236.248", true),
            ("100.63.255.255", true),
            ("100.64.0.1", false),
            ("100.127.255.255", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("172.32.0.1", true),
            ("192.168.0.1", false),
            ("127.0.0.1", false),
            ("169.254.169.254", false),
            ("0.1.2.3", false),
            ("224.0.0.1", false),
            ("240.0.0.1", false),
            ("255.255.255.255", false),
            ("192.0.2.1", false),
            ("198.51.100.1", false),
            ("203.0.113.1", false),
            ("198.18.0.1", false),
            ("192.0.0.8", false),
        ];
        for (ip, want) in cases {
            assert_eq!(public_v4(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges() {
        let cases = [
            ("2a00:1450:4001:82b::200e", true),
            ("2606:4700:4700::1111", true),
            ("2001:db8::1", false),
            ("::1", false),
            ("::", false),
            ("fe80::1", false),
            ("fd00::1", false),
            ("ff02::1", false),
            ("::ffff:8.8.8.8", true),
            ("::ffff:10.0.0.1", false),
            ("a::b", false),
        ];
        for (ip, want) in cases {
            assert_eq!(public_v6(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn decoded_checks() {
        let cases = [
            (Check::DockerAuth, "dXNlcjpwYXNzd29yZA==", true), // user:password
            (Check::DockerAuth, "bm9jb2xvbg==", false),        // nocolon
            (Check::DockerAuth, "not base64!", false),
            (
                Check::Base64PrivateKey,
                "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0t",
                true,
            ),
            (
                Check::Base64PrivateKey,
                "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t",
                false,
            ),
        ];
        for (check, value, want) in cases {
            assert_eq!(
                check.accepts(value.as_bytes(), 0..value.len()),
                want,
                "{value}"
            );
        }
    }
}
