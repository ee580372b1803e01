//! The system's trusted CA certificates, found one way for every TLS client of the suite
//! (the model clients, the warden's upstream connections) and for the bundle sandboxd hands
//! to commands.
//!
//! Where they come from is rustls-native-certs': the file and folders `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` name when set, else the distribution's bundle and certificate folder as
//! openssl-probe finds them (`/etc/ssl/certs/ca-certificates.crt` and `/etc/ssl/certs` on
//! Debian, `/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem` on Fedora, …).

use base64::Engine as _;
pub use rustls_pki_types::CertificateDer;

/// The system's trusted CA certificates, read now (so a change on disk is seen by the next
/// caller). A file or folder that cannot be read adds nothing; each caller decides whether
/// an empty set is an error.
pub fn system_roots() -> Vec<CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}

/// `certs` as PEM text, one `CERTIFICATE` block each, for the programs that read a bundle
/// file (OpenSSL, curl, Python, Node, git).
pub fn pem(certs: &[CertificateDer<'_>]) -> String {
    let mut out = String::new();
    for cert in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        // 64 columns, as RFC 7468 asks; base64 is ASCII, so any byte offset is a boundary.
        let mut rest = b64.as_str();
        while !rest.is_empty() {
            let (line, tail) = rest.split_at(rest.len().min(64));
            out.push_str(line);
            out.push('\n');
            rest = tail;
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rustls_pki_types::pem::PemObject;

    use super::*;

    #[test]
    fn pem_text_reads_back_to_the_same_certificates() {
        let certs = vec![
            CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x05]),
            CertificateDer::from((0..=255u8).cycle().take(700).collect::<Vec<_>>()),
        ];
        let text = pem(&certs);
        assert!(text.lines().all(|l| l.len() <= 64), "{text}");
        let back: Vec<_> = CertificateDer::pem_slice_iter(text.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, certs);
        assert_eq!(pem(&[]), "");
    }

    #[test]
    fn the_system_roots_round_trip_through_pem() {
        // Whatever this machine trusts (possibly nothing in a bare container) survives the
        // bundle format unchanged.
        let roots = system_roots();
        let text = pem(&roots);
        let back: Vec<_> = CertificateDer::pem_slice_iter(text.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, roots);
    }
}
