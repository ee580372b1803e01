//! The egress proxy's cost (scripts/bench-proxy.sh): small HTTPS requests to a local origin,
//! direct, through the warden's proxy (with interception, request rules and the audit trail,
//! as a real suite runs it) and through `mitmdump`, in one run on one machine.
//!
//! For each: the latency of one request on a kept-alive connection (median, p99, over
//! `BENCH_REQUESTS` sequential requests), the throughput of `BENCH_CONNS` kept-alive
//! connections for `BENCH_SECS` seconds, and the median time to a first answer on a new
//! connection (`CONNECT`, both TLS handshakes, the request). Targets (issue 10): added median
//! latency under 2 ms, at least 5x mitmdump's throughput.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/https_origin.rs"]
mod https_origin;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use stakpak_proto::WardenProxy;
use stakpak_testkit::EmbeddedSuite;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One way to reach the origin.
#[derive(Clone)]
struct Route {
    name: &'static str,
    /// The proxy's address; `None`: straight to the origin.
    proxy: Option<SocketAddr>,
    /// The CA the client trusts (the origin's, or the intercepting proxy's).
    ca_pem: String,
    origin: SocketAddr,
}

async fn open(route: &Route) -> SendRequest<Empty<Bytes>> {
    let authority = format!("localhost:{}", route.origin.port());
    let mut tcp = TcpStream::connect(route.proxy.unwrap_or(route.origin))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    if route.proxy.is_some() {
        tcp.write_all(
            format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        let head = String::from_utf8_lossy(&head);
        assert!(
            head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
            "{}: {head}",
            route.name
        );
    }
    https_origin::tls_client(tcp, "localhost", &route.ca_pem).await
}

async fn get(sender: &mut SendRequest<Empty<Bytes>>, route: &Route) {
    let req = hyper::Request::get("/bench")
        .header("host", format!("localhost:{}", route.origin.port()))
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "{}", route.name);
    resp.into_body().collect().await.unwrap();
}

struct Figures {
    median_ms: f64,
    p99_ms: f64,
    rps: f64,
    new_conn_ms: f64,
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn measure(rt: &tokio::runtime::Runtime, route: &Route) -> Figures {
    let requests = env_or("BENCH_REQUESTS", 2000) as usize;
    let conns = env_or("BENCH_CONNS", 16) as usize;
    let secs = env_or("BENCH_SECS", 5);
    let new_conns = env_or("BENCH_NEW_CONNS", 200) as usize;
    rt.block_on(async {
        // Latency: sequential requests on one kept-alive connection, after a warm-up.
        let mut sender = open(route).await;
        for _ in 0..50 {
            get(&mut sender, route).await;
        }
        let mut times = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            get(&mut sender, route).await;
            times.push(t.elapsed());
        }
        times.sort();

        // Throughput: `conns` kept-alive connections as fast as they go.
        let deadline = Instant::now() + Duration::from_secs(secs);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let route = route.clone();
            tasks.push(tokio::spawn(async move {
                let mut sender = open(&route).await;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    get(&mut sender, &route).await;
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        let rps = total as f64 / started.elapsed().as_secs_f64();

        // New connections: CONNECT, both handshakes, one request.
        let mut setup = Vec::with_capacity(new_conns);
        for _ in 0..new_conns {
            let t = Instant::now();
            let mut sender = open(route).await;
            get(&mut sender, route).await;
            setup.push(t.elapsed());
        }
        setup.sort();
        Figures {
            median_ms: quantile(&times, 0.5),
            p99_ms: quantile(&times, 0.99),
            rps,
            new_conn_ms: quantile(&setup, 0.5),
        }
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `mitmdump` on a free port, trusting the origin's CA upstream; stopped on drop.
struct Mitm {
    child: Child,
    addr: SocketAddr,
    ca_pem: String,
}

impl Drop for Mitm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mitmdump(confdir: &Path, origin_ca: &Path) -> Option<Mitm> {
    let port = free_port();
    let child = Command::new("mitmdump")
        .args([
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            &port.to_string(),
        ])
        .args(["--set", &format!("confdir={}", confdir.display())])
        .args([
            "--set",
            &format!("ssl_verify_upstream_trusted_ca={}", origin_ca.display()),
        ])
        .args(["--set", "flow_detail=0", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ca = confdir.join("mitmproxy-ca-cert.pem");
    let mut mitm = Mitm {
        child,
        addr,
        ca_pem: String::new(),
    };
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        if let (Ok(pem), Ok(_)) = (
            std::fs::read_to_string(&ca),
            std::net::TcpStream::connect(addr),
        ) {
            mitm.ca_pem = pem;
            return Some(mitm);
        }
        if let Ok(Some(_)) = mitm.child.try_wait() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn main() {
    let origin = https_origin::start("bench", &["localhost"]);
    let work = tempfile::tempdir().unwrap();
    let origin_ca: PathBuf = work.path().join("origin-ca.pem");
    std::fs::write(&origin_ca, &origin.ca_pem).unwrap();

    // The warden as a suite runs it, with a TCP listener for this client.
    let port = origin.addr.port();
    let warden_toml = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nallow = [\"*\"]\n\
         hosts = {{ \"localhost:{port}\" = \"{}\" }}\nupstream_ca = [\"origin-ca.pem\"]\n",
        origin.addr
    );
    let suite = EmbeddedSuite::builder()
        .config_file("origin-ca.pem", &origin.ca_pem)
        .config_file("warden.toml", &warden_toml)
        .start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let info = rt.block_on(async {
        let conn = stakpak_proto::zbus::connection::Builder::address(suite.bus_address().as_str())
            .build()
            .await
            .unwrap();
        WardenProxy::new(&conn)
            .await
            .unwrap()
            .proxy_info()
            .await
            .unwrap()
    });

    let mut routes = vec![
        Route {
            name: "direct",
            proxy: None,
            ca_pem: origin.ca_pem.clone(),
            origin: origin.addr,
        },
        Route {
            name: "warden",
            proxy: Some(info.tcp.parse().unwrap()),
            ca_pem: info.ca_pem.clone(),
            origin: origin.addr,
        },
    ];
    let mitm = mitmdump(&work.path().join("mitmproxy"), &origin_ca);
    match &mitm {
        Some(m) => routes.push(Route {
            name: "mitmdump",
            proxy: Some(m.addr),
            ca_pem: m.ca_pem.clone(),
            origin: origin.addr,
        }),
        None => eprintln!("mitmdump did not start (pip install mitmproxy); its row is left out"),
    }

    println!(
        "small HTTPS GETs to a local origin; {} sequential requests for latency, {} connections for {} s for throughput",
        env_or("BENCH_REQUESTS", 2000),
        env_or("BENCH_CONNS", 16),
        env_or("BENCH_SECS", 5)
    );
    println!(
        "{:<10} {:>10} {:>10} {:>12} {:>16}",
        "route", "median ms", "p99 ms", "requests/s", "new conn ms"
    );
    let mut results = Vec::new();
    for route in &routes {
        let f = measure(&rt, route);
        println!(
            "{:<10} {:>10.3} {:>10.3} {:>12.0} {:>16.3}",
            route.name, f.median_ms, f.p99_ms, f.rps, f.new_conn_ms
        );
        results.push((route.name, f));
    }
    let get = |name: &str| results.iter().find(|(n, _)| *n == name).map(|(_, f)| f);
    if let (Some(direct), Some(warden)) = (get("direct"), get("warden")) {
        println!(
            "warden: added median latency {:.3} ms (target < 2 ms)",
            warden.median_ms - direct.median_ms
        );
        if let Some(mitm) = get("mitmdump") {
            println!(
                "mitmdump: added median latency {:.3} ms",
                mitm.median_ms - direct.median_ms
            );
            println!(
                "warden throughput is {:.1}x mitmdump's (target >= 5x)",
                warden.rps / mitm.rps
            );
        }
    }
    println!(
        "the origin answered {} requests",
        origin.hits.lock().unwrap().len()
    );
    drop(mitm);
    drop(suite);
}
