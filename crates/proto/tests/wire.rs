//! The interfaces over a real zbus peer-to-peer connection on a socketpair: what a client
//! sends and receives is exactly what the interface declares, errors keep their names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::net::UnixStream;

use stakpak_proto::{
    CheckMatch, CheckReply, CheckRequest, DaemonControl, DaemonStatus, Error, WardenHandler,
    WardenInterface, WardenProxy, zbus,
};

struct Fixed {
    reload_fails: bool,
}

fn sample() -> DaemonStatus {
    DaemonStatus {
        daemon: "stakpak-warden".into(),
        version: "1.2.3".into(),
        pid: 4242,
        uptime_ms: 987_654_321_000,
        state: "running".into(),
        landlock: "enforced".into(),
        landlock_abi: 7,
        config_file: "/etc/stakpak/warden.toml".into(),
    }
}

impl DaemonControl for Fixed {
    async fn status(&self) -> Result<DaemonStatus, Error> {
        Ok(sample())
    }

    async fn reload(&self) -> Result<(), Error> {
        if self.reload_fails {
            Err(Error::InvalidConfig(
                "invalid configuration in /etc/stakpak/warden.toml: unknown field `x`".into(),
            ))
        } else {
            Ok(())
        }
    }
}

impl WardenHandler for Fixed {
    async fn check(&self, request: CheckRequest, _caller: String) -> Result<CheckReply, Error> {
        if request.kind != "command" {
            return Err(Error::InvalidArgument(format!(
                "unknown kind `{}`",
                request.kind
            )));
        }
        Ok(CheckReply {
            decision: "deny".into(),
            rule: "test.rule".into(),
            reason: "a test".into(),
            action: request.subject,
            matches: vec![CheckMatch {
                rule: "test.rule".into(),
                pack: "test".into(),
                decision: "deny".into(),
                reason: "a test".into(),
                action: "rm -r /".into(),
            }],
        })
    }
}

async fn pair(reload_fails: bool) -> (zbus::Connection, zbus::Connection) {
    let (a, b) = UnixStream::pair().unwrap();
    let guid = zbus::Guid::generate();
    let server = zbus::connection::Builder::unix_stream(a)
        .server(guid)
        .p2p()
        .serve_at(
            stakpak_proto::Daemon::Warden.object_path(),
            WardenInterface(Fixed { reload_fails }),
        )
        .build();
    let client = zbus::connection::Builder::unix_stream(b).p2p().build();
    let (server, client) = tokio::join!(server, client);
    (server.unwrap(), client.unwrap())
}

async fn proxy(conn: &zbus::Connection) -> WardenProxy<'static> {
    WardenProxy::new(conn).await.unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn status_round_trips_whole() {
    let (_server, client) = pair(false).await;
    let warden = proxy(&client).await;
    assert_eq!(warden.status().await.unwrap(), sample());
    warden.reload().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn errors_cross_the_wire_with_their_own_name() {
    let (_server, client) = pair(true).await;
    let warden = proxy(&client).await;
    assert_eq!(
        warden.reload().await.unwrap_err(),
        Error::InvalidConfig(
            "invalid configuration in /etc/stakpak/warden.toml: unknown field `x`".into()
        )
    );
    // A raw call sees the D-Bus error name itself.
    let reply = client
        .call_method(
            None::<&str>,
            "/dev/stakpak/Warden1",
            Some("dev.stakpak.Warden1"),
            "Reload",
            &(),
        )
        .await
        .unwrap_err();
    match reply {
        zbus::Error::MethodError(name, msg, _) => {
            assert_eq!(name.as_str(), "dev.stakpak.Error.InvalidConfig");
            assert_eq!(
                msg.as_deref(),
                Some("invalid configuration in /etc/stakpak/warden.toml: unknown field `x`")
            );
        }
        other => panic!("expected a method error, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn check_round_trips_whole() {
    let (_server, client) = pair(false).await;
    let warden = proxy(&client).await;
    let reply = warden
        .check(CheckRequest {
            kind: "command".into(),
            subject: "rm -rf /".into(),
            session: "s1".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply.action, "rm -rf /");
    assert_eq!(reply.matches.len(), 1);
    let err = warden
        .check(CheckRequest {
            kind: "chmod".into(),
            subject: "x".into(),
            session: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err, Error::InvalidArgument("unknown kind `chmod`".into()));
}
