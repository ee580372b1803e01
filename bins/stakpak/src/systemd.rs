//! The installed suite under systemd: `stakpak up`, `down` and `status` drive `systemctl` on
//! `stakpak.target` (units/) when its unit file is installed and no `--state-dir` asks for
//! an embedded suite.
//!
//! `up` starts the target, then waits until each of the five services is `active` (the
//! target only `Wants=` them, so `systemctl start` succeeds even when one fails); `down`
//! stops the target, which stops every service (`PartOf=`); `status` adds each unit's
//! `ActiveState`, `SubState` and `NRestarts` to what the daemons answer on the system bus.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::Serialize;
use stakpak_proto::Daemon;

use crate::{
    status::Report,
    suite,
    table::{Column, Table},
};

/// The target that pulls in the five services.
pub const TARGET: &str = "stakpak.target";

/// Where an installed `stakpak.target` may live.
pub const UNIT_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// How often `up` asks whether the services are active yet.
const POLL: Duration = Duration::from_millis(250);

/// True when the installed suite's target unit is on this system.
pub fn installed() -> bool {
    let roots: Vec<&Path> = UNIT_DIRS.iter().map(Path::new).collect();
    suite::installed_unit_exists(&roots)
}

/// Whether `up`/`down`/`status` go through systemd: installed, and no folder of an
/// embedded suite given.
pub fn drives(state_dir_given: bool) -> bool {
    !state_dir_given && installed()
}

/// The five service units, in start-up order.
pub fn units() -> Vec<String> {
    Daemon::ALL
        .iter()
        .map(|d| format!("{}.service", d.binary()))
        .collect()
}

/// `systemctl` arguments of each step.
pub fn start_args() -> Vec<String> {
    vec!["start".into(), TARGET.into()]
}

pub fn stop_args() -> Vec<String> {
    vec!["stop".into(), TARGET.into()]
}

pub fn is_active_args() -> Vec<String> {
    let mut args = vec!["is-active".to_string()];
    args.extend(units());
    args
}

pub fn show_args() -> Vec<String> {
    let mut args = vec![
        "show".to_string(),
        "--property=Id,ActiveState,SubState,NRestarts".to_string(),
    ];
    args.extend(units());
    args
}

/// One service as systemd sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitState {
    pub unit: String,
    pub active_state: String,
    pub sub_state: String,
    pub restarts: Option<u32>,
}

/// Parses `systemctl show --property=Id,ActiveState,SubState,NRestarts U…`: one block of
/// `Key=Value` lines per unit, blocks separated by an empty line.
pub fn parse_show(text: &str) -> Vec<UnitState> {
    text.split("\n\n")
        .filter_map(|block| {
            let value = |key: &str| {
                block.lines().find_map(|l| {
                    l.strip_prefix(key)
                        .and_then(|rest| rest.strip_prefix('='))
                        .map(str::to_owned)
                })
            };
            Some(UnitState {
                unit: value("Id")?,
                active_state: value("ActiveState").unwrap_or_default(),
                sub_state: value("SubState").unwrap_or_default(),
                restarts: value("NRestarts").and_then(|n| n.parse().ok()),
            })
        })
        .collect()
}

/// Pairs `systemctl is-active U…` output (one state a line, in the order asked) with the
/// units; a missing line counts as `unknown`.
pub fn parse_is_active(units: &[String], text: &str) -> Vec<(String, String)> {
    let mut lines = text.lines().map(str::trim);
    units
        .iter()
        .map(|u| {
            let state = lines.next().filter(|s| !s.is_empty()).unwrap_or("unknown");
            (u.clone(), state.to_owned())
        })
        .collect()
}

/// Runs `systemctl ARGS`; the output, or an error with systemctl's own message.
fn systemctl(args: &[String], allow_failure: bool) -> anyhow::Result<String> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .context("cannot run systemctl")?;
    if !out.status.success() && !allow_failure {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut msg = format!("systemctl {} failed: {}", args.join(" "), stderr.trim());
        if stderr.contains("Access denied") || stderr.contains("authentication") {
            msg.push_str(" (starting and stopping the installed suite needs root: try sudo)");
        }
        bail!(msg);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `stakpak up` on an installed suite: start the target, wait until the five services are
/// active.
pub fn up(timeout: Duration) -> anyhow::Result<()> {
    systemctl(&start_args(), false)?;
    let units = units();
    let deadline = Instant::now() + timeout;
    loop {
        // `is-active` exits non-zero unless every unit is active; the lines say which.
        let states = parse_is_active(&units, &systemctl(&is_active_args(), true)?);
        let waiting: Vec<&(String, String)> =
            states.iter().filter(|(_, s)| s != "active").collect();
        if waiting.is_empty() {
            println!("stakpak suite started ({TARGET})");
            return Ok(());
        }
        let failed = waiting.iter().find(|(_, s)| s == "failed");
        if failed.is_some() || Instant::now() >= deadline {
            let list: Vec<String> = waiting.iter().map(|(u, s)| format!("{u} {s}")).collect();
            let first = &waiting[0].0;
            bail!(
                "the installed suite did not start: {} (see `journalctl -u {first}` or `stakpak logs`)",
                list.join(", ")
            );
        }
        std::thread::sleep(POLL);
    }
}

/// `stakpak down` on an installed suite.
pub fn down() -> anyhow::Result<()> {
    systemctl(&stop_args(), false)?;
    println!("stakpak suite stopped ({TARGET})");
    Ok(())
}

/// Each service's state, for `stakpak status`.
pub fn unit_states() -> anyhow::Result<Vec<UnitState>> {
    Ok(parse_show(&systemctl(&show_args(), false)?))
}

/// Fills each daemon's restart count from systemd's `NRestarts`.
pub fn merge_restarts(report: &mut Report, units: &[UnitState]) {
    for row in &mut report.daemons {
        let name = format!("{}.service", row.daemon);
        if let Some(u) = units.iter().find(|u| u.unit == name) {
            row.restarts = u.restarts;
        }
    }
}

/// True when every unit is active.
pub fn all_active(units: &[UnitState]) -> bool {
    units.len() == Daemon::ALL.len() && units.iter().all(|u| u.active_state == "active")
}

/// The units table printed under the daemons' table.
pub fn render_units(units: &[UnitState]) -> String {
    let mut table = Table::new(2, ["UNIT", "ACTIVE", "SUB", "RESTARTS"].map(Column::fit));
    for u in units {
        table.row([
            u.unit.clone(),
            u.active_state.clone(),
            u.sub_state.clone(),
            u.restarts.map_or_else(|| "-".into(), |r| r.to_string()),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn arguments_name_the_target_and_every_service() {
        let services = [
            "stakpak-secretd.service",
            "stakpak-warden.service",
            "stakpak-sandboxd.service",
            "stakpak-agent.service",
            "stakpak-schedd.service",
        ];
        assert_eq!(units(), services);
        assert_eq!(start_args(), ["start", "stakpak.target"]);
        assert_eq!(stop_args(), ["stop", "stakpak.target"]);
        let mut is_active = vec!["is-active"];
        is_active.extend(services);
        assert_eq!(is_active_args(), is_active);
        let mut show = vec!["show", "--property=Id,ActiveState,SubState,NRestarts"];
        show.extend(services);
        assert_eq!(show_args(), show);
    }

    #[test]
    fn show_output_becomes_one_state_per_unit() {
        let text = "Id=stakpak-secretd.service\nActiveState=active\nSubState=running\nNRestarts=0\n\n\
                    NRestarts=3\nId=stakpak-warden.service\nActiveState=activating\nSubState=auto-restart\n\n\
                    Id=stakpak-agent.service\nActiveState=inactive\nSubState=dead\nNRestarts=\n";
        assert_eq!(
            parse_show(text),
            vec![
                UnitState {
                    unit: "stakpak-secretd.service".into(),
                    active_state: "active".into(),
                    sub_state: "running".into(),
                    restarts: Some(0),
                },
                UnitState {
                    unit: "stakpak-warden.service".into(),
                    active_state: "activating".into(),
                    sub_state: "auto-restart".into(),
                    restarts: Some(3),
                },
                UnitState {
                    unit: "stakpak-agent.service".into(),
                    active_state: "inactive".into(),
                    sub_state: "dead".into(),
                    restarts: None,
                },
            ]
        );
        assert_eq!(parse_show(""), vec![]);
    }

    #[test]
    fn is_active_lines_pair_with_units_in_order() {
        let units = units();
        let text = "active\nactive\nfailed\nactivating\n";
        let expected: Vec<(String, String)> = [
            ("stakpak-secretd.service", "active"),
            ("stakpak-warden.service", "active"),
            ("stakpak-sandboxd.service", "failed"),
            ("stakpak-agent.service", "activating"),
            ("stakpak-schedd.service", "unknown"),
        ]
        .into_iter()
        .map(|(u, s)| (u.to_owned(), s.to_owned()))
        .collect();
        assert_eq!(parse_is_active(&units, text), expected);
    }

    #[test]
    fn units_table_and_all_active() {
        let mut states = parse_show(
            "Id=stakpak-secretd.service\nActiveState=active\nSubState=running\nNRestarts=2\n",
        );
        assert_eq!(
            render_units(&states),
            "UNIT                     ACTIVE  SUB      RESTARTS\n\
             stakpak-secretd.service  active  running  2\n"
        );
        assert!(!all_active(&states));
        let one = states[0].clone();
        states = units()
            .into_iter()
            .map(|unit| UnitState {
                unit,
                ..one.clone()
            })
            .collect();
        assert!(all_active(&states));
        states[4].active_state = "failed".into();
        assert!(!all_active(&states));
    }
}
