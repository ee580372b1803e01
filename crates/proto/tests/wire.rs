//! The interfaces over a real zbus peer-to-peer connection on a socketpair: what a client
//! sends and receives is exactly what the interface declares, errors keep their names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::net::UnixStream;

use stakpak_proto::zbus::Type;
use stakpak_proto::{
    Backend, Caller, CheckKind, CheckMatch, CheckReply, CheckRequest, DaemonControl, DaemonState,
    DaemonStatus, Decision, Detection, Error, ExecRequest, LandlockStatus, MessageInfo,
    NetworkMode, Opt, ProxyInfo, RedactReply, RequestLogEntry, RequestLogQuery, RequestOutcome,
    ResolveReply, ResolveRequest, SecretInfo, SecretsHandler, SecretsInterface, SecretsProxy,
    SetRequest, ToolCallInfo, WardenHandler, WardenInterface, WardenProxy, zbus,
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
        state: DaemonState::Running,
        landlock: LandlockStatus::Enforced,
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
        if request.kind != CheckKind::Command {
            return Err(Error::InvalidArgument(format!(
                "kind `{}` is not judged here",
                request.kind
            )));
        }
        Ok(CheckReply {
            decision: Decision::Deny,
            rule: "test.rule".into(),
            reason: "a test".into(),
            action: request.subject,
            matches: vec![CheckMatch {
                rule: "test.rule".into(),
                pack: "test".into(),
                decision: Decision::Deny,
                reason: "a test".into(),
                action: "rm -r /".into(),
            }],
        })
    }

    async fn proxy_info(&self) -> Result<ProxyInfo, Error> {
        Ok(ProxyInfo {
            enabled: true,
            socket: "/run/stakpak/warden/proxy.sock".into(),
            tcp: String::new(),
            ca_pem: "-----BEGIN CERTIFICATE-----\n".into(),
        })
    }

    async fn request_log(&self, query: RequestLogQuery) -> Result<Vec<RequestLogEntry>, Error> {
        Ok(vec![RequestLogEntry {
            seq: u64::from(query.limit),
            outcome: if query.blocked_only {
                RequestOutcome::Blocked
            } else {
                RequestOutcome::Inspected
            },
            decision: Decision::Deny.into(),
            port: 6443,
            status: 403,
            detail: if query.detailed { "{}" } else { "" }.into(),
            ..RequestLogEntry::default()
        }])
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
            kind: CheckKind::Command,
            subject: "rm -rf /".into(),
            session: "s1".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply.action, "rm -rf /");
    assert_eq!(reply.matches.len(), 1);
    assert_eq!(reply.decision, Decision::Deny);
    let err = warden
        .check(CheckRequest {
            kind: CheckKind::Write,
            subject: "x".into(),
            session: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::InvalidArgument("kind `write` is not judged here".into())
    );
    // A kind that is none of the enum's names never reaches the handler; the caller is told
    // which value was wrong and what is accepted.
    let reply = client
        .call_method(
            None::<&str>,
            "/dev/stakpak/Warden1",
            Some("dev.stakpak.Warden1"),
            "Check",
            &(("chmod", "x", ""),),
        )
        .await
        .unwrap_err();
    match reply {
        zbus::Error::FDO(e) => assert_eq!(
            *e,
            zbus::fdo::Error::InvalidArgs(
                "unknown check kind `chmod` (expected one of: command, write, delete, request)"
                    .into()
            )
        ),
        other => panic!("expected InvalidArgs, got {other:?}"),
    }
}

#[test]
fn enums_travel_as_the_names_they_always_had() {
    let ctxt = zbus::wire::serialized::Context::new(zbus::wire::LE, 0);
    let req = ExecRequest {
        network: NetworkMode::Proxied.into(),
        ..ExecRequest::default()
    };
    let bytes = zbus::wire::to_bytes(ctxt, &req).unwrap();
    let (back, _): (ExecRequest, _) = bytes.deserialize().unwrap();
    assert_eq!(back, req);
    // The empty string is "none" / "the default".
    let bytes = zbus::wire::to_bytes(ctxt, &("", "docker")).unwrap();
    let (pair, _): ((Opt<NetworkMode>, Opt<Backend>), _) = bytes.deserialize().unwrap();
    assert_eq!(pair, (Opt::NONE, Backend::Docker.into()));
    let json: serde_json::Value = serde_json::to_value(ToolCallInfo::default()).unwrap();
    assert_eq!(json["decision"], "");
    assert_eq!(json["state"], "waiting-approval");
    assert_eq!(<Opt<Decision>>::SIGNATURE.to_string(), "s");
    assert_eq!(ToolCallInfo::SIGNATURE.to_string(), "(ssussssssssb)");
    assert_eq!(MessageInfo::SIGNATURE.to_string(), "(ssasx)");
}

/// Answers every `Secrets1` call with something built from its arguments.
struct EchoSecrets;

impl DaemonControl for EchoSecrets {
    async fn status(&self) -> Result<DaemonStatus, Error> {
        Ok(sample())
    }

    async fn reload(&self) -> Result<(), Error> {
        Ok(())
    }
}

impl SecretsHandler for EchoSecrets {
    async fn set(&self, request: SetRequest, _caller: Caller) -> Result<(), Error> {
        if request.value.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "secret {} has an empty value",
                request.name
            )));
        }
        Ok(())
    }

    async fn delete(&self, _name: String, _caller: Caller) -> Result<(), Error> {
        Ok(())
    }

    async fn list(&self, _caller: Caller) -> Result<Vec<SecretInfo>, Error> {
        Ok(vec![SecretInfo {
            name: "A".into(),
            created_unix: 1,
            updated_unix: 2,
            consumers: vec!["schedd".into()],
        }])
    }

    async fn redact(
        &self,
        session: String,
        text: String,
        _caller: Caller,
    ) -> Result<RedactReply, Error> {
        Ok(RedactReply {
            redacted: format!("{session}:{text}"),
            detections: vec![Detection {
                rule_id: "vault".into(),
                placeholder: "{{secret:A}}".into(),
            }],
        })
    }

    async fn register(
        &self,
        session: String,
        text: String,
        caller: Caller,
    ) -> Result<RedactReply, Error> {
        self.redact(session, text, caller).await
    }

    async fn open_stream(&self, session: String, _caller: Caller) -> Result<String, Error> {
        Ok(format!("stream-of-{session}"))
    }

    async fn redact_chunk(
        &self,
        _stream: String,
        chunk: Vec<u8>,
        _caller: Caller,
    ) -> Result<Vec<u8>, Error> {
        Ok(chunk.into_iter().rev().collect())
    }

    async fn close_stream(&self, _stream: String, _caller: Caller) -> Result<Vec<u8>, Error> {
        Ok(b"tail".to_vec())
    }

    async fn resolve(
        &self,
        request: ResolveRequest,
        caller: Caller,
    ) -> Result<ResolveReply, Error> {
        Ok(ResolveReply {
            text: format!(
                "{}|{}|{}|caller=`{}`",
                request.session, request.text, request.shell, caller.name
            ),
            env: [("STAKPAK_SECRET_0".to_string(), "v".to_string())].into(),
        })
    }

    async fn remember(
        &self,
        session: String,
        rule: String,
        value: String,
        _caller: Caller,
    ) -> Result<String, Error> {
        Ok(format!("[REDACTED_SECRET:{rule}:{session}{}]", value.len()))
    }

    async fn reveal(
        &self,
        name: String,
        consumer: String,
        _caller: Caller,
    ) -> Result<String, Error> {
        Err(Error::PermissionDenied(format!(
            "secret {name} is not set for consumer {consumer}"
        )))
    }
}

async fn secrets_pair() -> (zbus::Connection, zbus::Connection) {
    let (a, b) = UnixStream::pair().unwrap();
    let server = zbus::connection::Builder::unix_stream(a)
        .server(zbus::Guid::generate())
        .p2p()
        .serve_at(
            stakpak_proto::Daemon::Secrets.object_path(),
            SecretsInterface(EchoSecrets),
        )
        .build();
    let client = zbus::connection::Builder::unix_stream(b).p2p().build();
    let (server, client) = tokio::join!(server, client);
    (server.unwrap(), client.unwrap())
}

/// The signatures the interface documents, checked with raw calls: a wrong input signature
/// would be refused, and the reply's signature is compared whole.
#[tokio::test(flavor = "current_thread")]
async fn secrets_methods_have_the_documented_signatures() {
    let (_server, client) = secrets_pair().await;
    async fn reply_signature<B>(client: &zbus::Connection, method: &str, body: &B) -> String
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let reply = client
            .call_method(
                None::<&str>,
                "/dev/stakpak/Secrets1",
                Some("dev.stakpak.Secrets1"),
                method,
                body,
            )
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        reply.body().signature().to_string()
    }
    let got = vec![
        (
            "Set",
            reply_signature(&client, "Set", &("A", "v", vec!["schedd"])).await,
        ),
        ("Delete", reply_signature(&client, "Delete", &("A",)).await),
        ("List", reply_signature(&client, "List", &()).await),
        (
            "Redact",
            reply_signature(&client, "Redact", &("s", "t")).await,
        ),
        (
            "Register",
            reply_signature(&client, "Register", &("s", "t")).await,
        ),
        (
            "OpenStream",
            reply_signature(&client, "OpenStream", &("s",)).await,
        ),
        (
            "RedactChunk",
            reply_signature(&client, "RedactChunk", &("stream-1", b"ab".to_vec())).await,
        ),
        (
            "CloseStream",
            reply_signature(&client, "CloseStream", &("stream-1",)).await,
        ),
        (
            "Resolve",
            reply_signature(&client, "Resolve", &("s", "t", true)).await,
        ),
    ];
    let expected: Vec<(&str, String)> = [
        ("Set", ""),
        ("Delete", ""),
        ("List", "a(sttas)"),
        ("Redact", "(sa(ss))"),
        ("Register", "(sa(ss))"),
        ("OpenStream", "s"),
        ("RedactChunk", "ay"),
        ("CloseStream", "ay"),
        ("Resolve", "(sa{ss})"),
    ]
    .into_iter()
    .map(|(m, s)| (m, s.to_string()))
    .collect();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "current_thread")]
async fn secrets_calls_round_trip_whole() {
    let (_server, client) = secrets_pair().await;
    let secrets = SecretsProxy::new(&client).await.unwrap();
    assert_eq!(
        secrets
            .set("A".into(), String::new(), vec![])
            .await
            .unwrap_err(),
        Error::InvalidArgument("secret A has an empty value".into())
    );
    assert_eq!(
        secrets.list().await.unwrap(),
        vec![SecretInfo {
            name: "A".into(),
            created_unix: 1,
            updated_unix: 2,
            consumers: vec!["schedd".into()],
        }]
    );
    assert_eq!(
        secrets.register("s1".into(), "hi".into()).await.unwrap(),
        RedactReply {
            redacted: "s1:hi".into(),
            detections: vec![Detection {
                rule_id: "vault".into(),
                placeholder: "{{secret:A}}".into(),
            }],
        }
    );
    assert_eq!(
        secrets
            .redact_chunk("x".into(), b"abc".to_vec())
            .await
            .unwrap(),
        b"cba".to_vec()
    );
    // Peer to peer there is no bus daemon to stamp a sender: the caller's name is empty.
    assert_eq!(
        secrets
            .resolve("s1".into(), "cmd".into(), true)
            .await
            .unwrap(),
        ResolveReply {
            text: "s1|cmd|true|caller=``".into(),
            env: [("STAKPAK_SECRET_0".to_string(), "v".to_string())].into(),
        }
    );
    assert_eq!(
        secrets
            .remember("s1".into(), "generated-password".into(), "abcdef".into())
            .await
            .unwrap(),
        "[REDACTED_SECRET:generated-password:s16]"
    );
    assert_eq!(
        secrets
            .reveal("slack.bot_token".into(), "schedd".into())
            .await
            .unwrap_err(),
        Error::PermissionDenied("secret slack.bot_token is not set for consumer schedd".into())
    );
}

#[test]
fn types_holding_values_do_not_debug_print_them() {
    let set = SetRequest {
        name: "DB".into(),
        value: "hunter2-value".into(),
        consumers: vec!["schedd".into()],
    };
    assert_eq!(
        format!("{set:?}"),
        r#"SetRequest { name: "DB", value_len: 13, consumers: ["schedd"] }"#
    );
    let reply = ResolveReply {
        text: "psql hunter2-value".into(),
        env: [("STAKPAK_SECRET_0".to_string(), "hunter2-value".to_string())].into(),
    };
    assert_eq!(
        format!("{reply:?}"),
        r#"ResolveReply { text_len: 18, env: ["STAKPAK_SECRET_0"] }"#
    );
}

#[tokio::test]
async fn proxy_info_and_request_log_round_trip() {
    let (_server, client) = pair(false).await;
    let warden = proxy(&client).await;
    assert_eq!(
        warden.proxy_info().await.unwrap(),
        ProxyInfo {
            enabled: true,
            socket: "/run/stakpak/warden/proxy.sock".into(),
            tcp: String::new(),
            ca_pem: "-----BEGIN CERTIFICATE-----\n".into(),
        }
    );
    let query = RequestLogQuery {
        blocked_only: true,
        detailed: true,
        limit: 7,
    };
    assert_eq!(
        warden.request_log(query).await.unwrap(),
        vec![RequestLogEntry {
            seq: 7,
            outcome: RequestOutcome::Blocked,
            decision: Decision::Deny.into(),
            port: 6443,
            status: 403,
            detail: "{}".into(),
            ..RequestLogEntry::default()
        }]
    );
}
