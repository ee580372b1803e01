//! The proxy server: accepting connections, `CONNECT`, interception, judging, forwarding.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{body::Incoming, client::conn::http1::SendRequest, service::service_fn};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite},
    net::{TcpListener, TcpStream, UnixListener},
    sync::{Mutex, mpsc::UnboundedSender, watch},
};
use tracing::{debug, warn};

use crate::{
    Authority, DETAIL_BODY_MAX, Decision, Detail, Event, HostRefusal, Judge, Judgement,
    MASKED_HEADERS, Outcome, RequestView, Settings,
    hosts::{is_local, split_authority},
};

type Body = BoxBody<Bytes, hyper::Error>;

/// The preamble a connection on the unix socket starts with: `stakpak-session <id>\n`.
pub const SESSION_PREAMBLE: &str = "stakpak-session ";
const PREAMBLE_MAX: usize = 96;

/// The proxy; cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

struct Inner {
    settings: watch::Receiver<Arc<Settings>>,
    judge: Arc<dyn Judge>,
    ca: Arc<Authority>,
    events: UnboundedSender<Event>,
}

/// Where requests of one client connection go.
#[derive(Debug, Clone)]
struct Target {
    scheme: &'static str,
    host: String,
    port: u16,
}

/// Why the upstream could not be had.
enum UpstreamError {
    Refused(HostRefusal),
    Failed(String),
}

impl Proxy {
    pub fn new(
        settings: watch::Receiver<Arc<Settings>>,
        judge: Arc<dyn Judge>,
        ca: Arc<Authority>,
        events: UnboundedSender<Event>,
    ) -> Proxy {
        Proxy {
            inner: Arc::new(Inner {
                settings,
                judge,
                ca,
                events,
            }),
        }
    }

    fn settings(&self) -> Arc<Settings> {
        self.inner.settings.borrow().clone()
    }

    /// Serves clients on a TCP listener until the task is dropped.
    pub async fn serve_tcp(self, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let proxy = self.clone();
                    tokio::spawn(
                        async move { proxy.serve_connection(stream, String::new()).await },
                    );
                }
                Err(e) => {
                    warn!(error = %e, "cannot accept a proxy connection");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Serves clients on a unix listener; every connection starts with the
    /// `stakpak-session <id>\n` preamble naming the session it belongs to.
    pub async fn serve_unix(self, listener: UnixListener) {
        loop {
            match listener.accept().await {
                Ok((mut stream, _)) => {
                    let proxy = self.clone();
                    tokio::spawn(async move {
                        match read_preamble(&mut stream).await {
                            Some(session) => proxy.serve_connection(stream, session).await,
                            None => debug!("proxy connection without a session preamble"),
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "cannot accept a proxy connection");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Serves one client connection (plain HTTP/1.1 towards the proxy).
    pub async fn serve_connection<IO>(self, io: IO, session: String)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let session: Arc<str> = session.into();
        let service = service_fn(move |req| {
            let proxy = self.clone();
            let session = session.clone();
            async move { Ok::<_, Infallible>(proxy.front(req, session).await) }
        });
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await
        {
            debug!(error = %e, "proxy connection ended with an error");
        }
    }

    /// A request to the proxy itself: `CONNECT` or an absolute-form `http://` request.
    async fn front(&self, req: Request<Incoming>, session: Arc<str>) -> Response<Body> {
        let started = Instant::now();
        if req.method() == Method::CONNECT {
            return self.connect(req, session, started).await;
        }
        let uri = req.uri().clone();
        let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return plain(
                StatusCode::BAD_REQUEST,
                "this is a forward proxy: send CONNECT host:port or an absolute http:// URL\n",
            );
        };
        let Some((host, port)) = split_authority(authority.as_str(), 80) else {
            return plain(StatusCode::BAD_REQUEST, "bad host in the request URL\n");
        };
        let path = uri_path(&uri);
        let method = req.method().as_str().to_string();
        let (target, _) = match self.admit("http", host, port, &method, &path, &session, started) {
            Ok(v) => v,
            Err(response) => return response,
        };
        // Plain HTTP: one upstream connection per request.
        let slot = Mutex::new(None);
        self.forward(req, &target, &slot, &session, started).await
    }

    async fn connect(
        &self,
        req: Request<Incoming>,
        session: Arc<str>,
        started: Instant,
    ) -> Response<Body> {
        let Some((host, port)) = req
            .uri()
            .authority()
            .and_then(|a| split_authority(a.as_str(), 443))
        else {
            return plain(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n");
        };
        let (target, settings) =
            match self.admit("https", host, port, "CONNECT", "", &session, started) {
                Ok(v) => v,
                Err(response) => return response,
            };
        if settings.hosts.inspects(&target.host, target.port) {
            let tls = match self.inner.ca.server_config(&target.host) {
                Ok(c) => c,
                Err(e) => {
                    warn!(host = %target.host, error = %e, "cannot issue a leaf certificate");
                    return plain(StatusCode::BAD_GATEWAY, "cannot intercept this host\n");
                }
            };
            let proxy = self.clone();
            tokio::spawn(async move {
                let upgraded = match hyper::upgrade::on(req).await {
                    Ok(u) => u,
                    Err(e) => return debug!(error = %e, "CONNECT upgrade failed"),
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                let stream = match acceptor.accept(TokioIo::new(upgraded)).await {
                    Ok(s) => s,
                    Err(e) => {
                        return debug!(host = %target.host, error = %e, "client TLS handshake failed");
                    }
                };
                proxy.serve_inner(stream, target, session).await;
            });
            return empty(StatusCode::OK);
        }
        // Not inspected: connect first, so a failure is answered, then tunnel.
        let upstream = match self.tcp(&settings, &target).await {
            Ok(s) => s,
            Err(UpstreamError::Refused(refusal)) => {
                return self.refuse(&target, "CONNECT", "", refusal, &session, started);
            }
            Err(UpstreamError::Failed(e)) => {
                debug!(host = %target.host, error = %e, "upstream unreachable");
                return plain(StatusCode::BAD_GATEWAY, &format!("{e}\n"));
            }
        };
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    let mut client = TokioIo::new(upgraded);
                    let mut upstream = upstream;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(e) => debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        empty(StatusCode::OK)
    }

    /// The host rules for a new target: the target and the settings in force, or the 403.
    #[allow(clippy::too_many_arguments, clippy::result_large_err)]
    fn admit(
        &self,
        scheme: &'static str,
        host: String,
        port: u16,
        method: &str,
        path: &str,
        session: &str,
        started: Instant,
    ) -> Result<(Target, Arc<Settings>), Response<Body>> {
        let target = Target { scheme, host, port };
        let settings = self.settings();
        match settings.hosts.check(&target.host, target.port) {
            Ok(()) => Ok((target, settings)),
            Err(refusal) => Err(self.refuse(&target, method, path, refusal, session, started)),
        }
    }

    /// HTTP/1.1 inside an intercepted TLS connection.
    async fn serve_inner<IO>(&self, io: IO, target: Target, session: Arc<str>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let slot = Arc::new(Mutex::new(None::<SendRequest<Body>>));
        let proxy = self.clone();
        let target = Arc::new(target);
        let service = service_fn(move |req| {
            let proxy = proxy.clone();
            let target = target.clone();
            let slot = slot.clone();
            let session = session.clone();
            async move {
                Ok::<_, Infallible>(
                    proxy
                        .forward(req, &target, &slot, &session, Instant::now())
                        .await,
                )
            }
        });
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await
        {
            debug!(error = %e, "intercepted connection ended with an error");
        }
    }

    /// Judges one request and, when allowed, sends it upstream.
    async fn forward(
        &self,
        req: Request<Incoming>,
        target: &Target,
        slot: &Mutex<Option<SendRequest<Body>>>,
        session: &str,
        started: Instant,
    ) -> Response<Body> {
        let settings = self.settings();
        let (mut parts, body) = req.into_parts();
        let (prefix, rest) = match read_prefix(body, settings.body_limit).await {
            Ok(v) => v,
            Err(e) => {
                debug!(error = %e, "cannot read the request body");
                return plain(StatusCode::BAD_REQUEST, "cannot read the request body\n");
            }
        };
        let path = uri_path(&parts.uri);
        let view = RequestView {
            method: parts.method.as_str(),
            scheme: target.scheme,
            host: &target.host,
            port: target.port,
            path: &path,
            headers: &parts.headers,
            body: &prefix,
        };
        let judgement = self.inner.judge.judge(&view);
        let mut detail = settings.detail.then(|| Detail {
            request_headers: masked(&parts.headers),
            request_body: prefix[..prefix.len().min(DETAIL_BODY_MAX)].to_vec(),
            ..Detail::default()
        });
        let mut event = Event {
            outcome: Outcome::Blocked,
            session: session.to_string(),
            method: parts.method.as_str().to_string(),
            scheme: target.scheme.to_string(),
            host: target.host.clone(),
            port: target.port,
            path: path.clone(),
            operation: judgement.operation.clone(),
            decision: judgement.decision,
            rule: judgement.rule.clone(),
            reason: judgement.reason.clone(),
            status: 403,
            duration: Duration::ZERO,
            detail: None,
        };
        if !judgement.allow {
            event.duration = started.elapsed();
            event.detail = detail;
            let _ = self.inner.events.send(event);
            return blocked(&judgement);
        }
        event.outcome = Outcome::Inspected;

        let upgrade = parts.headers.contains_key(header::UPGRADE);
        let client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
        strip_hop_by_hop(&mut parts.headers, upgrade);
        parts.uri = match path.parse() {
            Ok(u) => u,
            Err(_) => return plain(StatusCode::BAD_REQUEST, "bad request path\n"),
        };
        if !parts.headers.contains_key(header::HOST)
            && let Ok(v) = HeaderValue::from_str(&authority(target))
        {
            parts.headers.insert(header::HOST, v);
        }
        let body: Body = match rest {
            None => Full::new(Bytes::from(prefix))
                .map_err(|n| match n {})
                .boxed(),
            Some(rest) => Prefixed {
                prefix: Some(Bytes::from(prefix)),
                rest,
            }
            .boxed(),
        };
        let upstream_req = Request::from_parts(parts, body);

        let result = self
            .send(&settings, target, slot, upstream_req, upgrade)
            .await;
        let mut response = match result {
            Ok(r) => r,
            Err(UpstreamError::Refused(refusal)) => {
                event.outcome = Outcome::Blocked;
                event.decision = Decision::Deny;
                event.rule = refusal.rule();
                event.reason = refusal.reason();
                event.duration = started.elapsed();
                event.detail = detail;
                let _ = self.inner.events.send(event.clone());
                return blocked(&Judgement {
                    allow: false,
                    decision: event.decision,
                    rule: event.rule,
                    reason: event.reason,
                    operation: event.operation,
                });
            }
            Err(UpstreamError::Failed(e)) => {
                event.status = 502;
                event.duration = started.elapsed();
                event.detail = detail;
                let _ = self.inner.events.send(event);
                return plain(StatusCode::BAD_GATEWAY, &format!("{e}\n"));
            }
        };
        event.status = response.status().as_u16();
        event.duration = started.elapsed();

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let (Some(client), Ok(server)) =
                (client_upgrade, hyper::upgrade::on(&mut response).await)
            {
                tokio::spawn(async move {
                    if let Ok(client) = client.await {
                        let mut a = TokioIo::new(client);
                        let mut b = TokioIo::new(server);
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                });
            }
            event.detail = detail;
            let _ = self.inner.events.send(event);
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, empty_body());
        }

        strip_hop_by_hop(response.headers_mut(), false);
        let (parts, body) = response.into_parts();
        match detail.as_mut() {
            Some(d) => {
                d.response_headers = masked(&parts.headers);
                event.detail = detail;
                let events = self.inner.events.clone();
                let tee = Tee {
                    inner: body,
                    captured: Vec::new(),
                    done: Some(Box::new(move |captured: Vec<u8>| {
                        if let Some(d) = event.detail.as_mut() {
                            d.response_body = captured;
                        }
                        let _ = events.send(event);
                    })),
                };
                Response::from_parts(parts, tee.boxed())
            }
            None => {
                let _ = self.inner.events.send(event);
                Response::from_parts(parts, body.boxed())
            }
        }
    }

    /// Sends a request over the connection's upstream, connecting (again) when needed.
    async fn send(
        &self,
        settings: &Settings,
        target: &Target,
        slot: &Mutex<Option<SendRequest<Body>>>,
        req: Request<Body>,
        upgrade: bool,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut guard = slot.lock().await;
        let reusable = guard.as_mut().is_some_and(|s| !s.is_closed());
        if !reusable {
            *guard = Some(self.handshake(settings, target).await?);
        }
        let Some(sender) = guard.as_mut() else {
            return Err(UpstreamError::Failed("no upstream connection".into()));
        };
        if sender.ready().await.is_err() {
            *guard = Some(self.handshake(settings, target).await?);
        }
        let Some(sender) = guard.as_mut() else {
            return Err(UpstreamError::Failed("no upstream connection".into()));
        };
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| UpstreamError::Failed(format!("upstream {}: {e}", authority(target))));
        if upgrade {
            // An upgraded connection is no longer HTTP.
            *guard = None;
        }
        response
    }

    async fn handshake(
        &self,
        settings: &Settings,
        target: &Target,
    ) -> Result<SendRequest<Body>, UpstreamError> {
        let tcp = self.tcp(settings, target).await?;
        let fail =
            |e: String| UpstreamError::Failed(format!("upstream {}: {e}", authority(target)));
        let builder = hyper::client::conn::http1::Builder::new();
        if target.scheme == "https" {
            let name =
                ServerName::try_from(target.host.clone()).map_err(|e| fail(e.to_string()))?;
            let tls = tokio::time::timeout(
                settings.connect_timeout,
                tokio_rustls::TlsConnector::from(settings.upstream_tls.clone()).connect(name, tcp),
            )
            .await
            .map_err(|_| fail("TLS handshake timed out".into()))?
            .map_err(|e| fail(e.to_string()))?;
            http1_over(builder, tls).await.map_err(fail)
        } else {
            http1_over(builder, tcp).await.map_err(fail)
        }
    }

    /// Resolves (static map first) and connects.
    async fn tcp(&self, settings: &Settings, target: &Target) -> Result<TcpStream, UpstreamError> {
        let addr: SocketAddr = match settings.hosts.mapped(&target.host, target.port) {
            Some(a) => a,
            None => {
                let resolved = tokio::time::timeout(
                    settings.connect_timeout,
                    tokio::net::lookup_host((target.host.as_str(), target.port)),
                )
                .await
                .map_err(|_| UpstreamError::Failed(format!("resolving {} timed out", target.host)))?
                .map_err(|e| UpstreamError::Failed(format!("cannot resolve {}: {e}", target.host)))?
                .next()
                .ok_or_else(|| {
                    UpstreamError::Failed(format!("{} resolves to no address", target.host))
                })?;
                if settings.block_local && is_local(resolved.ip()) {
                    return Err(UpstreamError::Refused(HostRefusal::Local(resolved.ip())));
                }
                resolved
            }
        };
        let stream = tokio::time::timeout(settings.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                UpstreamError::Failed(format!("connecting to {} timed out", authority(target)))
            })?
            .map_err(|e| {
                UpstreamError::Failed(format!("cannot connect to {}: {e}", authority(target)))
            })?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    fn refuse(
        &self,
        target: &Target,
        method: &str,
        path: &str,
        refusal: HostRefusal,
        session: &str,
        started: Instant,
    ) -> Response<Body> {
        let judgement = Judgement {
            allow: false,
            decision: Decision::Deny,
            rule: refusal.rule(),
            reason: refusal.reason(),
            operation: format!("connect {}", authority(target)),
        };
        let _ = self.inner.events.send(Event {
            outcome: Outcome::Blocked,
            session: session.to_string(),
            method: method.to_string(),
            scheme: target.scheme.to_string(),
            host: target.host.clone(),
            port: target.port,
            path: path.to_string(),
            operation: judgement.operation.clone(),
            decision: judgement.decision,
            rule: judgement.rule.clone(),
            reason: judgement.reason.clone(),
            status: 403,
            duration: started.elapsed(),
            detail: None,
        });
        blocked(&judgement)
    }
}

fn authority(target: &Target) -> String {
    if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    }
}

fn uri_path(uri: &http::Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string())
}

async fn read_preamble<R: AsyncRead + Unpin>(r: &mut R) -> Option<String> {
    let mut line = Vec::with_capacity(PREAMBLE_MAX);
    loop {
        let b = r.read_u8().await.ok()?;
        if b == b'\n' {
            break;
        }
        if line.len() >= PREAMBLE_MAX {
            return None;
        }
        line.push(b);
    }
    let text = String::from_utf8(line).ok()?;
    let session = text.strip_prefix(SESSION_PREAMBLE)?;
    session
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        .then(|| session.to_string())
}

/// Reads data frames until `limit` bytes or the end; returns what was read and, when the
/// body goes on, the rest of it.
async fn read_prefix(
    mut body: Incoming,
    limit: usize,
) -> Result<(Vec<u8>, Option<Incoming>), hyper::Error> {
    let mut buf = Vec::new();
    if body.is_end_stream() {
        return Ok((buf, None));
    }
    while buf.len() < limit {
        match body.frame().await {
            None => return Ok((buf, None)),
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
    Ok((buf, Some(body)))
}

/// Headers that concern one hop only; `Upgrade` and `Connection` stay for an upgrade.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !(s.is_empty() || (upgrade && s == "upgrade")))
        .collect();
    for name in listed {
        headers.remove(name.as_str());
    }
    for name in [
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
    ] {
        headers.remove(name);
    }
    if !upgrade {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

fn masked(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let value = if MASKED_HEADERS.contains(&k.as_str()) {
                "[masked]".to_string()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (k.as_str().to_string(), value)
        })
        .collect()
}

fn empty_body() -> Body {
    Full::new(Bytes::new()).map_err(|n| match n {}).boxed()
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty_body());
    *r.status_mut() = status;
    r
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(text.to_string()))
            .map_err(|n| match n {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The `403` of a blocked request: JSON naming the rule.
fn blocked(j: &Judgement) -> Response<Body> {
    let body = serde_json::json!({
        "blocked_by": "stakpak-warden",
        "decision": j.decision.as_str(),
        "rule": j.rule,
        "reason": j.reason,
        "operation": j.operation,
    });
    let mut text = body.to_string();
    text.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(text)).map_err(|n| match n {}).boxed());
    *r.status_mut() = StatusCode::FORBIDDEN;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&j.rule) {
        r.headers_mut().insert("x-stakpak-rule", v);
    }
    r
}

/// A body whose first bytes were already read for judging.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: Incoming,
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(p) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }
}

type Done = Box<dyn FnOnce(Vec<u8>) + Send + Sync>;

/// A response body that keeps a copy of its first [`DETAIL_BODY_MAX`] bytes and hands it
/// over when it ends or is dropped.
struct Tee {
    inner: Incoming,
    captured: Vec<u8>,
    done: Option<Done>,
}

impl Tee {
    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            done(std::mem::take(&mut self.captured));
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.finish();
    }
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let room = DETAIL_BODY_MAX.saturating_sub(self.captured.len());
                    let take = room.min(data.len());
                    self.captured.extend_from_slice(&data[..take]);
                }
            }
            Poll::Ready(None) => self.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// An HTTP/1.1 client connection over `io`, driven by a task of its own (upgrades kept).
async fn http1_over<I>(
    builder: hyper::client::conn::http1::Builder,
    io: I,
) -> Result<SendRequest<Body>, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = builder
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}
