//! The interception CA: made once and kept in the warden's state (`ca-key.pem` mode 0600 in
//! a folder of mode 0700, `ca.pem` beside it), and the leaf certificates it issues per host,
//! cached with their TLS server configuration.
//!
//! The CA is an ECDSA P-256 key with `CA:true, pathlen:0`, valid [`CA_DAYS`] days; leaves
//! carry the host as their only subject alternative name (a DNS name, or an IP address),
//! are valid from an hour ago for [`LEAF_DAYS`] days (never past the CA), and are issued
//! again once less than a day is left. All leaves share one key, made at start.

use std::{
    collections::HashMap,
    fs,
    io::{self, Write},
    net::IpAddr,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Days the CA is valid.
pub const CA_DAYS: i64 = 3650;
/// Days a leaf certificate is valid.
pub const LEAF_DAYS: i64 = 7;
/// Hosts whose leaves are kept; past this the cache starts over.
const CACHE_MAX: usize = 4096;

/// The CA's private key file, in the CA folder.
pub const KEY_FILE: &str = "ca-key.pem";
/// The CA certificate file (public), in the CA folder.
pub const CERT_FILE: &str = "ca.pem";

/// The CA cannot be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: {problem}")]
    Insecure { path: PathBuf, problem: String },
    #[error("{path} does not hold a usable {what}: {source}")]
    Parse {
        path: PathBuf,
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("cannot issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{path} holds a key but no certificate (or the reverse); remove both to make a new CA")]
    HalfMade { path: PathBuf },
}

struct Leaf {
    config: Arc<ServerConfig>,
    renew_after: SystemTime,
}

/// The loaded CA and its leaf cache.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    ca_not_after: SystemTime,
    leaf_key: KeyPair,
    leaf_key_der: Vec<u8>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    leaves: Mutex<HashMap<String, Leaf>>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

fn to_offset(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

impl Authority {
    /// Loads the CA from `dir`, or makes it there when neither file exists. The folder is
    /// made (or tightened) to mode 0700; a key file readable by anyone else is refused.
    pub fn load_or_create(dir: &Path) -> Result<Authority, CaError> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        fs::create_dir_all(dir).map_err(|source| CaError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
            CaError::Create {
                path: dir.to_path_buf(),
                source,
            }
        })?;
        match (key_path.exists(), cert_path.exists()) {
            (false, false) => Self::create(&key_path, &cert_path)?,
            (true, true) => {}
            _ => {
                return Err(CaError::HalfMade {
                    path: dir.to_path_buf(),
                });
            }
        }
        Self::load(&key_path, &cert_path)
    }

    fn create(key_path: &Path, cert_path: &Path) -> Result<(), CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "stakpak");
        dn.push(
            DnType::CommonName,
            format!("stakpak warden egress CA {}", hex_id()),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = to_offset(now - Duration::from_secs(3600));
        params.not_after = to_offset(now + days(CA_DAYS));
        let cert = params.self_signed(&key)?;
        // The key first, created 0600 and never wider; the certificate last, so a crash in
        // between leaves a half-made CA that is reported, not silently replaced.
        write_new(key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_new(cert_path, cert.pem().as_bytes(), 0o644)?;
        Ok(())
    }

    fn load(key_path: &Path, cert_path: &Path) -> Result<Authority, CaError> {
        let meta = fs::metadata(key_path).map_err(|source| CaError::Read {
            path: key_path.to_path_buf(),
            source,
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(CaError::Insecure {
                path: key_path.to_path_buf(),
                problem: format!(
                    "mode {:o} lets others read the CA key; it must be 0600",
                    meta.permissions().mode() & 0o777
                ),
            });
        }
        let read = |p: &Path| {
            fs::read_to_string(p).map_err(|source| CaError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        let key = KeyPair::from_pem(&read(key_path)?).map_err(|source| CaError::Parse {
            path: key_path.to_path_buf(),
            what: "private key",
            source,
        })?;
        let cert_pem = read(cert_path)?;
        let ca_not_after = not_after(&cert_pem).ok_or_else(|| CaError::Parse {
            path: cert_path.to_path_buf(),
            what: "certificate",
            source: rcgen::Error::CouldNotParseCertificate,
        })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|source| CaError::Parse {
            path: cert_path.to_path_buf(),
            what: "certificate",
            source,
        })?;
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let leaf_key_der = leaf_key.serialize_der();
        Ok(Authority {
            issuer,
            cert_pem,
            ca_not_after,
            leaf_key,
            leaf_key_der,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate, PEM: what sandboxes trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The TLS server configuration presenting a leaf for `host`, from the cache or newly
    /// issued.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let now = SystemTime::now();
        if let Ok(leaves) = self.leaves.lock()
            && let Some(leaf) = leaves.get(host)
            && leaf.renew_after > now
        {
            return Ok(leaf.config.clone());
        }
        let (der, not_after) = self.issue(host, now)?;
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![der],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key_der.clone())),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        if let Ok(mut leaves) = self.leaves.lock() {
            if leaves.len() >= CACHE_MAX {
                leaves.clear();
            }
            leaves.insert(
                host.to_string(),
                Leaf {
                    config: config.clone(),
                    renew_after: not_after - days(1),
                },
            );
        }
        Ok(config)
    }

    /// Issues a leaf for `host`; returns it and its end of validity.
    pub fn issue(
        &self,
        host: &str,
        now: SystemTime,
    ) -> Result<(CertificateDer<'static>, SystemTime), CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into()?),
        }];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let not_after = (now + days(LEAF_DAYS)).min(self.ca_not_after);
        params.not_before = to_offset(now - Duration::from_secs(3600));
        params.not_after = to_offset(not_after);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&random_serial()));
        let cert = params.signed_by(&self.leaf_key, &self.issuer)?;
        Ok((cert.der().clone(), not_after))
    }
}

fn days(n: i64) -> Duration {
    Duration::from_secs(n.unsigned_abs() * 86_400)
}

/// The end of validity of a PEM certificate.
fn not_after(pem: &str) -> Option<SystemTime> {
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c: CertificateDer<'static>| c)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let ts = cert.validity().not_after.timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(ts).ok()?))
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    let err = |source| CaError::Create {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // A failed read leaves zeros; serials and ids then still differ by time below.
    let _ = fs::File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, &mut b));
    b
}

fn random_serial() -> [u8; 16] {
    let mut s = random_bytes::<16>();
    // A positive INTEGER, never zero.
    s[0] = (s[0] & 0x7f) | 0x01;
    s
}

fn hex_id() -> String {
    random_bytes::<4>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn the_ca_is_made_once_with_a_private_key_and_loaded_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("egress");
        let first = Authority::load_or_create(&dir).unwrap();
        let key_mode = fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let again = Authority::load_or_create(&dir).unwrap();
        assert_eq!(first.cert_pem(), again.cert_pem());

        // A key others can read is refused.
        fs::set_permissions(dir.join(KEY_FILE), fs::Permissions::from_mode(0o644)).unwrap();
        let e = Authority::load_or_create(&dir).unwrap_err().to_string();
        assert!(e.contains("mode 644 lets others read the CA key"), "{e}");

        // Half a CA is reported, never replaced.
        fs::remove_file(dir.join(KEY_FILE)).unwrap();
        let e = Authority::load_or_create(&dir).unwrap_err().to_string();
        assert!(e.contains("holds a key but no certificate"), "{e}");
    }

    #[test]
    fn leaves_name_the_host_chain_to_the_ca_and_expire_in_days() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Authority::load_or_create(tmp.path()).unwrap();
        let ca_der: CertificateDer<'static> =
            rustls_pki_types::pem::PemObject::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
        let (_, ca_cert) = parse_x509_certificate(&ca_der).unwrap();
        assert!(ca_cert.is_ca());
        let ca_days = (ca_cert.validity().not_after.timestamp()
            - ca_cert.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(ca_days, CA_DAYS);

        let now = SystemTime::now();
        for (host, san) in [
            ("api.example.com", GeneralName::DNSName("api.example.com")),
            ("10.1.2.3", GeneralName::IPAddress(&[10, 1, 2, 3])),
        ] {
            let (der, _) = ca.issue(host, now).unwrap();
            let (_, leaf) = parse_x509_certificate(&der).unwrap();
            assert!(!leaf.is_ca());
            assert_eq!(leaf.issuer(), ca_cert.subject());
            leaf.verify_signature(Some(ca_cert.public_key())).unwrap();
            let sans = leaf.subject_alternative_name().unwrap().unwrap();
            assert_eq!(sans.value.general_names, vec![san]);
            let v = leaf.validity();
            let now_s = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            assert_eq!(v.not_before.timestamp(), now_s - 3600);
            assert_eq!(v.not_after.timestamp(), now_s + LEAF_DAYS * 86_400);
            let eku = leaf.extended_key_usage().unwrap().unwrap();
            assert!(eku.value.server_auth);
        }
    }

    #[test]
    fn server_configs_are_cached_per_host() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Authority::load_or_create(tmp.path()).unwrap();
        let a = ca.server_config("a.test").unwrap();
        let a2 = ca.server_config("a.test").unwrap();
        let b = ca.server_config("b.test").unwrap();
        assert!(Arc::ptr_eq(&a, &a2));
        assert!(!Arc::ptr_eq(&a, &b));
    }
}
