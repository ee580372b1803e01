//! The proxy end to end in one process: a local HTTPS origin with a CA of its own, the
//! proxy with its interception CA, and clients that speak CONNECT, TLS and HTTP/1.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/support/https_origin.rs"]
mod https_origin;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use stakpak_egress::{
    Authority, Decision, Event, HostRules, Judge, Judgement, Outcome, Proxy, RequestView, Settings,
    upstream_tls,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};

/// Denies DELETE below `/api/v1/namespaces/`, allows everything else.
struct TestJudge;

impl Judge for TestJudge {
    fn judge(&self, r: &RequestView<'_>) -> Judgement {
        let deny = r.method == "DELETE" && r.path.starts_with("/api/v1/namespaces/");
        Judgement {
            allow: !deny,
            decision: if deny {
                Decision::Deny
            } else {
                Decision::Allow
            },
            rule: if deny { "test.delete-namespace" } else { "" }.into(),
            reason: if deny {
                "no namespace deletes"
            } else {
                "no rule matched"
            }
            .into(),
            operation: format!("{} {}", r.method, r.path),
        }
    }
}

struct Setup {
    proxy: SocketAddr,
    origin: https_origin::Origin,
    warden_ca: String,
    events: mpsc::UnboundedReceiver<Event>,
    _dir: tempfile::TempDir,
}

async fn setup(deny: &[&str], inspect: &[&str], body_limit: usize) -> Setup {
    let origin = https_origin::start("origin", &["allowed.test", "tunnel.test"]);
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(Authority::load_or_create(&dir.path().join("ca")).unwrap());
    let map = HashMap::from([
        ("allowed.test".to_string(), origin.addr),
        ("tunnel.test".to_string(), origin.addr),
    ]);
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let hosts = HostRules::new(
        &["*:443".into(), "*:80".into()],
        &strings(deny),
        &strings(inspect),
        &map,
    )
    .unwrap();
    let settings = Settings {
        hosts,
        upstream_tls: Arc::new(upstream_tls(&[origin.ca_pem.as_bytes().to_vec()]).unwrap()),
        body_limit,
        detail: true,
        block_local: true,
        connect_timeout: Duration::from_secs(5),
    };
    let (_tx, rx) = watch::channel(Arc::new(settings));
    std::mem::forget(_tx);
    let (events_tx, events) = mpsc::unbounded_channel();
    let warden_ca = ca.cert_pem().to_string();
    let proxy = Proxy::new(rx, Arc::new(TestJudge), ca, events_tx);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(proxy.serve_tcp(listener));
    Setup {
        proxy: addr,
        origin,
        warden_ca,
        events,
        _dir: dir,
    }
}

/// Sends `CONNECT`; returns the status line and the stream after the response head.
async fn connect(proxy: SocketAddr, authority: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let b = s.read_u8().await.unwrap();
        head.push(b);
    }
    let head = String::from_utf8(head).unwrap();
    (head.lines().next().unwrap().to_string(), s)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A TLS client trusting `ca_pem` only, over a tunnel.
async fn tls_client(stream: TcpStream, host: &str, ca_pem: &str) -> Sender {
    https_origin::tls_client(stream, host, ca_pem).await
}

async fn call(
    sender: &mut Sender,
    method: &str,
    host: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("authorization", "Bearer {{secret:K8S_TOKEN}}")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn intercepted_requests_are_judged_forwarded_or_blocked() {
    let mut s = setup(&[], &["*.test"], 1024).await;
    let (status, stream) = connect(s.proxy, "allowed.test:443").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    // The client trusts only the warden's CA: interception is what it talks to.
    let mut c = tls_client(stream, "allowed.test", &s.warden_ca).await;

    let (status, body) = call(
        &mut c,
        "GET",
        "allowed.test",
        "/api/v1/namespaces/prod",
        vec![],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (200, "origin GET /api/v1/namespaces/prod x-token=-")
    );
    let e = next_event(&mut s.events).await;
    assert_eq!(
        (
            e.outcome,
            e.method.as_str(),
            e.host.as_str(),
            e.port,
            e.path.as_str(),
            e.status
        ),
        (
            Outcome::Inspected,
            "GET",
            "allowed.test",
            443,
            "/api/v1/namespaces/prod",
            200
        )
    );
    let detail = e.detail.unwrap();
    assert!(
        detail
            .request_headers
            .contains(&("authorization".into(), "[masked]".into()))
    );
    assert_eq!(
        detail.response_body,
        b"origin GET /api/v1/namespaces/prod x-token=-"
    );

    // Blocked on the same kept-alive connection: a 403 naming the rule, and the origin
    // never sees it.
    let hits = s.origin.hits.lock().unwrap().len();
    let (status, body) = call(
        &mut c,
        "DELETE",
        "allowed.test",
        "/api/v1/namespaces/prod",
        vec![],
    )
    .await;
    assert_eq!(status, 403);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "blocked_by": "stakpak-warden",
            "decision": "deny",
            "rule": "test.delete-namespace",
            "reason": "no namespace deletes",
            "operation": "DELETE /api/v1/namespaces/prod",
        })
    );
    assert_eq!(s.origin.hits.lock().unwrap().len(), hits);
    let e = next_event(&mut s.events).await;
    assert_eq!(
        (e.outcome, e.rule.as_str(), e.status),
        (Outcome::Blocked, "test.delete-namespace", 403)
    );

    // And the connection still serves the next request.
    let (status, body) = call(&mut c, "POST", "allowed.test", "/x?y=1", vec![7; 5000]).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "origin POST /x?y=1 x-token=-")
    );
    // The judged prefix and the rest both reached the origin.
    assert_eq!(
        s.origin.hits.lock().unwrap().last().unwrap(),
        "POST /x?y=1 5000"
    );
    let e = next_event(&mut s.events).await;
    assert_eq!(
        e.detail.unwrap().request_body.len(),
        stakpak_egress::DETAIL_BODY_MAX,
        "detail keeps a bounded prefix"
    );
}

#[tokio::test]
async fn hosts_not_inspected_are_tunnelled_with_their_own_certificate() {
    let s = setup(&[], &["allowed.test"], 1024).await;
    let (status, stream) = connect(s.proxy, "tunnel.test:443").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    // The origin's own CA, not the warden's: nothing was intercepted.
    let mut c = tls_client(stream, "tunnel.test", &s.origin.ca_pem).await;
    let (status, body) = call(
        &mut c,
        "DELETE",
        "tunnel.test",
        "/api/v1/namespaces/prod",
        vec![],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (200, "origin DELETE /api/v1/namespaces/prod x-token=-")
    );
}

#[tokio::test]
async fn host_rules_refuse_connections() {
    let mut s = setup(&["*.evil.test"], &["*"], 1024).await;
    let cases = [
        ("x.evil.test:443", "proxy.deny[*.evil.test]"),
        ("allowed.test:8443", "proxy.allow"),
        // Not in the map and resolving to loopback: refused, like a metadata address.
        ("localhost:443", "proxy.local-address"),
    ];
    for (authority, rule) in cases {
        let (status, _) = connect(s.proxy, authority).await;
        if rule == "proxy.local-address" {
            // Inspected hosts are connected at their first request; the refusal comes then.
            assert_eq!(status, "HTTP/1.1 200 OK");
            let (_, stream) = connect(s.proxy, authority).await;
            let mut c = tls_client(stream, "localhost", &s.warden_ca).await;
            let (code, body) = call(&mut c, "GET", "localhost", "/", vec![]).await;
            assert_eq!(code, 403, "{authority}");
            assert!(body.contains(rule), "{body}");
        } else {
            assert_eq!(status, "HTTP/1.1 403 Forbidden", "{authority}");
        }
        let e = next_event(&mut s.events).await;
        assert_eq!(
            (e.outcome, e.rule.as_str()),
            (Outcome::Blocked, rule),
            "{authority}"
        );
    }
}

#[tokio::test]
async fn absolute_form_http_requests_are_judged_too() {
    let s = setup(&[], &["*"], 1024).await;
    let mut stream = TcpStream::connect(s.proxy).await.unwrap();
    stream
        .write_all(b"DELETE http://kube.test/api/v1/namespaces/prod HTTP/1.1\r\nHost: kube.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 403 Forbidden"), "{out}");
    assert!(out.contains("\"rule\":\"test.delete-namespace\""), "{out}");

    let mut stream = TcpStream::connect(s.proxy).await.unwrap();
    stream
        .write_all(b"GET /not-a-proxy-request HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 400 Bad Request"), "{out}");
}
