//! The D-Bus side of the daemon: turns `dev.stakpak.Secrets1` calls into [`Command`]s for the
//! secrets thread and its answers back into wire types.
//!
//! The caller's uid comes from the bus daemon (`GetConnectionUnixUser` on the sender's unique
//! name, which the bus daemon learnt from the kernel when the peer connected), never from
//! anything the caller sends. When it cannot be learnt, calls that need it are refused.

use std::sync::Arc;

use futures_util::StreamExt;
use stakpak_daemon::ControlHandle;
use stakpak_proto::{
    Caller, Daemon, Detection, Error, RedactReply, ResolveReply, ResolveRequest, SecretInfo,
    SecretsHandler, SetRequest, zbus,
};
use stakpak_secrets::placeholder::SecretString;
use tokio::sync::OnceCell;
use tracing::warn;

use crate::state::{
    Command, CoreError, CoreHandle, Purpose, REVEAL_CONSUMERS, Redaction, Resolution, Who,
};

/// Behind `dev.stakpak.Secrets1`.
#[derive(Debug)]
pub(crate) struct Handler {
    control: ControlHandle,
    core: CoreHandle,
    /// Set once the watch for peers leaving the bus runs (started with the first stream).
    watching: Arc<OnceCell<()>>,
}

impl Handler {
    pub(crate) fn new(control: ControlHandle, core: CoreHandle) -> Self {
        Handler {
            control,
            core,
            watching: Arc::new(OnceCell::new()),
        }
    }

    /// The caller, with its uid when `with_uid`.
    async fn who(&self, caller: &Caller, with_uid: bool) -> Who {
        let uid = if with_uid { uid_of(caller).await } else { None };
        Who {
            bus_name: caller.name.clone(),
            uid,
        }
    }

    /// `Redact` and `Register`: the same core command, for two purposes.
    async fn redact_for(
        &self,
        purpose: Purpose,
        session: String,
        text: String,
        caller: &Caller,
    ) -> Result<RedactReply, Error> {
        let who = self.who(caller, false).await;
        self.core
            .ask(|reply| Command::Redact {
                who,
                purpose,
                session: session_of(session),
                text,
                reply,
            })
            .await
            .map(redact_reply)
            .map_err(CoreError::into_wire)
    }

    /// Starts following `NameOwnerChanged`, so streams close when their owner disconnects.
    async fn watch_departures(&self, connection: &zbus::Connection) {
        self.watching
            .get_or_init(|| async {
                if let Err(e) = follow_departures(connection.clone(), self.core.clone()).await {
                    warn!(error = %e, "cannot follow peers leaving the bus; idle streams still close on their own");
                }
            })
            .await;
    }
}

/// Whether `caller` is the connection that owns `daemon`'s bus name right now. A sandboxed
/// command runs as the same uid as the daemons in embedded mode (and may reach the bus when
/// its network is `host`); only the name, which the bus gives to one connection and which
/// the daemon holds for its whole life, tells a daemon from a command.
async fn owns_name(caller: &Caller, daemon: Daemon) -> bool {
    let Ok(dbus) = zbus::fdo::DBusProxy::new(&caller.connection).await else {
        return false;
    };
    let Ok(name) = zbus::names::BusName::try_from(daemon.bus_name()) else {
        return false;
    };
    match dbus.get_name_owner(name).await {
        Ok(owner) => owner.as_str() == caller.name,
        Err(_) => false,
    }
}

async fn uid_of(caller: &Caller) -> Option<u32> {
    stakpak_daemon::caller_uid(caller).await
}

async fn follow_departures(connection: zbus::Connection, core: CoreHandle) -> zbus::Result<()> {
    let bus = zbus::fdo::DBusProxy::new(&connection).await?;
    let mut changes = bus.receive_name_owner_changed().await?;
    tokio::spawn(async move {
        while let Some(signal) = changes.next().await {
            let Ok(args) = signal.args() else {
                continue;
            };
            if args.new_owner().is_none() && args.name().starts_with(':') {
                core.tell(Command::CallerGone {
                    bus_name: args.name().to_string(),
                });
            }
        }
    });
    Ok(())
}

/// The empty session is "no session".
fn session_of(session: String) -> Option<String> {
    (!session.is_empty()).then_some(session)
}

fn redact_reply(redaction: Redaction) -> RedactReply {
    RedactReply {
        redacted: redaction.text,
        detections: redaction
            .replaced
            .into_iter()
            .map(|r| Detection {
                rule_id: r.rule_id,
                placeholder: r.placeholder,
            })
            .collect(),
    }
}

fn resolve_reply(resolution: Resolution) -> ResolveReply {
    match resolution {
        Resolution::Text(text) => ResolveReply {
            text: text.expose().to_owned(),
            env: Default::default(),
        },
        Resolution::Shell(command) => ResolveReply {
            env: command
                .env
                .iter()
                .map(|(name, value)| (name.clone(), value.expose().to_owned()))
                .collect(),
            text: command.command,
        },
    }
}

stakpak_daemon::control_through!(Handler, control);

impl SecretsHandler for Handler {
    async fn set(&self, request: SetRequest, caller: Caller) -> Result<(), Error> {
        let who = self.who(&caller, true).await;
        let SetRequest {
            name,
            value,
            consumers,
        } = request;
        // Moved, not copied: the only copy of the value left is the one that is zeroed.
        let value = SecretString::new(value);
        self.core
            .ask(|reply| Command::Set {
                who,
                name,
                value,
                consumers,
                reply,
            })
            .await
            .map(|_| ())
            .map_err(CoreError::into_wire)
    }

    async fn delete(&self, name: String, caller: Caller) -> Result<(), Error> {
        let who = self.who(&caller, true).await;
        self.core
            .ask(|reply| Command::Delete { who, name, reply })
            .await
            .map_err(CoreError::into_wire)
    }

    async fn list(&self, _caller: Caller) -> Result<Vec<SecretInfo>, Error> {
        let secrets = self
            .core
            .ask(|reply| Command::List { reply })
            .await
            .map_err(CoreError::into_wire)?;
        Ok(secrets
            .into_iter()
            .map(|s| SecretInfo {
                name: s.name,
                created_unix: s.created_unix,
                updated_unix: s.updated_unix,
                consumers: s.consumers,
            })
            .collect())
    }

    async fn redact(
        &self,
        session: String,
        text: String,
        caller: Caller,
    ) -> Result<RedactReply, Error> {
        self.redact_for(Purpose::Redact, session, text, &caller)
            .await
    }

    async fn register(
        &self,
        session: String,
        text: String,
        caller: Caller,
    ) -> Result<RedactReply, Error> {
        self.redact_for(Purpose::Register, session, text, &caller)
            .await
    }

    async fn remember(
        &self,
        session: String,
        rule: String,
        value: String,
        caller: Caller,
    ) -> Result<String, Error> {
        let who = self.who(&caller, false).await;
        let value = SecretString::new(value);
        self.core
            .ask(|reply| Command::Remember {
                who,
                session,
                rule,
                value,
                reply,
            })
            .await
            .map_err(CoreError::into_wire)
    }

    async fn open_stream(&self, session: String, caller: Caller) -> Result<String, Error> {
        if caller.name.is_empty() {
            return Err(Error::PermissionDenied(
                "streams need a caller with a bus name".into(),
            ));
        }
        self.watch_departures(&caller.connection).await;
        let who = self.who(&caller, false).await;
        self.core
            .ask(|reply| Command::OpenStream {
                who,
                session: session_of(session),
                reply,
            })
            .await
            .map_err(CoreError::into_wire)
    }

    async fn redact_chunk(
        &self,
        stream: String,
        chunk: Vec<u8>,
        caller: Caller,
    ) -> Result<Vec<u8>, Error> {
        let who = self.who(&caller, false).await;
        self.core
            .ask(|reply| Command::Chunk {
                who,
                stream,
                chunk,
                reply,
            })
            .await
            .map_err(CoreError::into_wire)
    }

    async fn close_stream(&self, stream: String, caller: Caller) -> Result<Vec<u8>, Error> {
        let who = self.who(&caller, false).await;
        self.core
            .ask(|reply| Command::CloseStream { who, stream, reply })
            .await
            .map_err(CoreError::into_wire)
    }

    async fn reveal(
        &self,
        name: String,
        consumer: String,
        caller: Caller,
    ) -> Result<String, Error> {
        let daemon = Daemon::ALL
            .into_iter()
            .find(|d| d.short_name() == consumer)
            .filter(|d| REVEAL_CONSUMERS.contains(&d.short_name()));
        let Some(daemon) = daemon else {
            return Err(Error::InvalidArgument(format!(
                "Reveal serves the daemons {}; `{consumer}` is none of them",
                REVEAL_CONSUMERS.join(", ")
            )));
        };
        if !owns_name(&caller, daemon).await {
            let uid = uid_of(&caller).await.map(i64::from).unwrap_or(-1);
            warn!(
                caller = %caller.name,
                uid,
                consumer = %consumer,
                event = "reveal",
                "reveal refused: the caller does not own the consumer's bus name"
            );
            return Err(Error::PermissionDenied(format!(
                "{} does not own {}: only {consumer} may call Reveal for it",
                caller.name,
                daemon.bus_name()
            )));
        }
        let who = self.who(&caller, true).await;
        self.core
            .ask(|reply| Command::Reveal {
                who,
                name,
                consumer,
                reply,
            })
            .await
            .map(|value| value.expose().to_owned())
            .map_err(CoreError::into_wire)
    }

    async fn resolve(
        &self,
        request: ResolveRequest,
        caller: Caller,
    ) -> Result<ResolveReply, Error> {
        if !caller.name.is_empty() && !owns_name(&caller, Daemon::Sandbox).await {
            let uid = uid_of(&caller).await.map(i64::from).unwrap_or(-1);
            warn!(
                caller = %caller.name,
                uid,
                event = "resolve",
                "resolve refused: the caller does not own the sandboxd bus name"
            );
            return Err(Error::PermissionDenied(format!(
                "{} does not own {}: only sandboxd may call Resolve",
                caller.name,
                Daemon::Sandbox.bus_name()
            )));
        }
        let who = self.who(&caller, true).await;
        let ResolveRequest {
            session,
            text,
            shell,
        } = request;
        self.core
            .ask(|reply| Command::Resolve {
                who,
                session: session_of(session),
                text,
                shell,
                reply,
            })
            .await
            .map(resolve_reply)
            .map_err(CoreError::into_wire)
    }
}
