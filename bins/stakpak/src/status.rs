//! `stakpak status`: asks every daemon for its `Status()`.

use std::time::Duration;

use serde::{Serialize, Serializer};
use stakpak_proto::{
    AgentProxy, Daemon, DaemonState, DaemonStatus, LandlockStatus, SandboxProxy, SchedulerProxy,
    SecretsProxy, WardenProxy,
};
use zbus::Connection;

use crate::{
    locate::Target,
    table::{Column, Table},
};

/// How long one daemon may take to answer before it is shown as unresponsive.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A daemon's state as `stakpak status` shows it: what it answered, or `down` when it did
/// not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Up(DaemonState),
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up(state) => state.as_str(),
            State::Down => "down",
        }
    }
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One row of `stakpak status`.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub daemon: String,
    pub state: State,
    pub pid: Option<u32>,
    pub version: Option<String>,
    pub uptime_ms: Option<u64>,
    pub landlock: Option<LandlockStatus>,
    pub landlock_abi: Option<u32>,
    pub restarts: Option<u32>,
    pub error: Option<String>,
}

impl Row {
    /// The row of a daemon that did not answer: its name, why not, and nothing it would have
    /// said about itself.
    pub fn down(daemon: &str, restarts: Option<u32>, error: String) -> Row {
        Row {
            daemon: daemon.to_string(),
            state: State::Down,
            pid: None,
            version: None,
            uptime_ms: None,
            landlock: None,
            landlock_abi: None,
            restarts,
            error: Some(error),
        }
    }
}

/// What `stakpak status --json` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub bus_address: Option<String>,
    pub supervisor_pid: Option<u32>,
    pub daemons: Vec<Row>,
}

impl Report {
    pub fn all_running(&self) -> bool {
        self.daemons
            .iter()
            .all(|d| d.state == State::Up(DaemonState::Running))
    }
}

pub async fn status_of(conn: &Connection, daemon: Daemon) -> Result<DaemonStatus, String> {
    let call = async {
        match daemon {
            Daemon::Agent => AgentProxy::new(conn).await?.status().await,
            Daemon::Warden => WardenProxy::new(conn).await?.status().await,
            Daemon::Secrets => SecretsProxy::new(conn).await?.status().await,
            Daemon::Sandbox => SandboxProxy::new(conn).await?.status().await,
            Daemon::Scheduler => SchedulerProxy::new(conn).await?.status().await,
        }
    };
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(stakpak_proto::Error::ZBus(e))) if is_absent(&e) => {
            Err("not on the bus".to_string())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", CALL_TIMEOUT.as_secs())),
    }
}

/// True when the error says nobody owns the name: the daemon is not running.
pub(crate) fn is_absent(e: &zbus::Error) -> bool {
    const ABSENT: [&str; 2] = [
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
    ];
    match e {
        zbus::Error::MethodError(name, _, _) => ABSENT.contains(&name.as_str()),
        zbus::Error::FDO(fdo) => matches!(
            **fdo,
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
        ),
        _ => false,
    }
}

pub async fn report(target: &Target) -> anyhow::Result<Report> {
    let conn = target.connect().await?;
    let statuses = futures_join_all(&conn).await;
    let supervised = match target {
        Target::Embedded(info) => Some(info),
        _ => None,
    };
    let daemons = Daemon::ALL
        .into_iter()
        .zip(statuses)
        .map(|(daemon, result)| {
            let restarts = supervised.and_then(|info| {
                info.daemons
                    .iter()
                    .find(|d| d.daemon == daemon.binary())
                    .map(|d| d.restarts)
            });
            match result {
                Ok(s) => Row {
                    daemon: s.daemon,
                    state: State::Up(s.state),
                    pid: Some(s.pid),
                    version: Some(s.version),
                    uptime_ms: Some(s.uptime_ms),
                    landlock: Some(s.landlock),
                    landlock_abi: Some(s.landlock_abi),
                    restarts,
                    error: None,
                },
                Err(e) => Row::down(daemon.binary(), restarts, e),
            }
        })
        .collect();
    Ok(Report {
        mode: target.mode(),
        bus_address: target.bus_address().map(str::to_string),
        supervisor_pid: supervised.map(|i| i.supervisor_pid),
        daemons,
    })
}

/// Asks the five daemons at once: one slow daemon must not add up.
async fn futures_join_all(conn: &Connection) -> Vec<Result<DaemonStatus, String>> {
    let [a, b, c, d, e] = Daemon::ALL;
    let (a, b, c, d, e) = tokio::join!(
        status_of(conn, a),
        status_of(conn, b),
        status_of(conn, c),
        status_of(conn, d),
        status_of(conn, e)
    );
    vec![a, b, c, d, e]
}

pub fn render_table(report: &Report) -> String {
    let mut table = Table::new(
        2,
        [
            "DAEMON", "STATE", "PID", "VERSION", "UPTIME", "LANDLOCK", "RESTARTS",
        ]
        .map(Column::fit),
    );
    for d in &report.daemons {
        table.row([
            d.daemon.clone(),
            d.state.as_str().to_string(),
            d.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            d.version.clone().unwrap_or_else(|| "-".into()),
            d.uptime_ms.map(format_uptime).unwrap_or_else(|| "-".into()),
            match (&d.landlock, d.landlock_abi) {
                (Some(l), Some(abi)) if abi > 0 => format!("{l} (ABI {abi})"),
                (Some(l), _) => l.to_string(),
                _ => "-".into(),
            },
            d.restarts
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut out = table.render();
    for d in &report.daemons {
        if let Some(e) = &d.error {
            out.push_str(&format!("{}: {e}\n", d.daemon));
        }
    }
    out
}

fn format_uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_read_well() {
        let cases = [
            (0, "0s"),
            (59_999, "59s"),
            (61_000, "1m1s"),
            (3_600_000, "1h0m"),
            (90_000_000, "1d1h"),
        ];
        for (ms, text) in cases {
            assert_eq!(format_uptime(ms), text);
        }
    }

    #[test]
    fn table_lines_up_and_lists_errors() {
        let report = Report {
            mode: "embedded",
            bus_address: None,
            supervisor_pid: None,
            daemons: vec![
                Row {
                    daemon: "stakpak-warden".into(),
                    state: State::Up(DaemonState::Running),
                    pid: Some(42),
                    version: Some("0.1.0".into()),
                    uptime_ms: Some(5_000),
                    landlock: Some(LandlockStatus::Enforced),
                    landlock_abi: Some(7),
                    restarts: Some(1),
                    error: None,
                },
                Row::down("stakpak-agent", None, "not on the bus".into()),
            ],
        };
        assert_eq!(
            render_table(&report),
            "DAEMON          STATE    PID  VERSION  UPTIME  LANDLOCK          RESTARTS\n\
             stakpak-warden  running  42   0.1.0    5s      enforced (ABI 7)  1\n\
             stakpak-agent   down     -    -        -       -                 -\n\
             stakpak-agent: not on the bus\n"
        );
        assert!(!report.all_running());
    }
}
