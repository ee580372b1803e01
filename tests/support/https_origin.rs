//! A local HTTPS origin for the egress end-to-end test and the proxy bench: a CA of its own,
//! a leaf for the names it serves, and an answer naming what it got:
//! `<tag> <METHOD> <path> x-token=<X-Token header or ->`. Every request is recorded as
//! `<METHOD> <path> <body length>`.

// Each test or bench that includes this module (`#[path]`) uses a part of it.
#![allow(dead_code)]

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;

/// A running origin; it serves until the test process ends.
pub struct Origin {
    pub addr: SocketAddr,
    /// The origin's own CA, PEM: what a client (or the proxy) must trust to reach it.
    pub ca_pem: String,
    /// `METHOD path length` of every request, in order.
    pub hits: Arc<Mutex<Vec<String>>>,
}

/// Starts an origin on 127.0.0.1 for `names` (DNS names and IP addresses).
pub fn start(tag: &str, names: &[&str]) -> Origin {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{tag} test origin CA"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(Mutex::new(Vec::new()));
    let recorded = hits.clone();
    let tag = tag.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let recorded = recorded.clone();
                let tag = tag.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |req: Request<Incoming>| {
                        let recorded = recorded.clone();
                        let tag = tag.clone();
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().to_string();
                            let token = req
                                .headers()
                                .get("x-token")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string();
                            let len = match req.into_body().collect().await {
                                Ok(b) => b.to_bytes().len(),
                                Err(_) => 0,
                            };
                            recorded
                                .lock()
                                .unwrap()
                                .push(format!("{method} {path} {len}"));
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                                "{tag} {method} {path} x-token={token}"
                            )))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    Origin {
        addr,
        ca_pem: ca_cert.pem(),
        hits,
    }
}

/// An HTTP/1.1 client over TLS on `stream` (connected, or tunnelled by `CONNECT`) to
/// `host`, trusting only the certificates of `ca_pem`.
pub async fn tls_client<B>(
    stream: tokio::net::TcpStream,
    host: &str,
    ca_pem: &str,
) -> hyper::client::conn::http1::SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(host.to_string()).unwrap(), stream)
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}
