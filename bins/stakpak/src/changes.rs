//! `stakpak sandbox changes` and `stakpak sandbox revert`: the file changes sandboxd's file
//! tools made, per session, and undoing one.

use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use stakpak_proto::{ChangeInfo, ChangeKind, Error as WireError, SandboxProxy};

use crate::{
    locate,
    policy::EXIT_DENY,
    suite::Layout,
    table::{Column, Table, utc_ms},
};

/// One change as `--json` prints it.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    session: String,
    kind: ChangeKind,
    path: String,
    created_ms: i64,
    reverted_ms: i64,
    summary: String,
}

impl From<ChangeInfo> for Row {
    fn from(c: ChangeInfo) -> Row {
        Row {
            id: c.id,
            session: c.session,
            kind: c.kind,
            path: c.path,
            created_ms: c.created_ms,
            reverted_ms: c.reverted_ms,
            summary: c.summary,
        }
    }
}

/// `stakpak sandbox changes`: newest first, one session's or every session's.
pub fn list(
    session: &str,
    json: bool,
    bus_address: Option<&str>,
    layout: &Layout,
) -> anyhow::Result<ExitCode> {
    let session = session.to_string();
    let changes = call(bus_address, layout, |sandbox| async move {
        sandbox.changes(session).await
    })?;
    let rows: Vec<Row> = changes.into_iter().map(Row::from).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", render_table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// `stakpak sandbox revert`: exits 4 when the warden refuses, 1 on any other refusal.
pub fn revert(
    change_id: &str,
    bus_address: Option<&str>,
    layout: &Layout,
) -> anyhow::Result<ExitCode> {
    let id = change_id.to_string();
    locate::on_bus(bus_address, layout, async |target, conn| {
        let sandbox = SandboxProxy::new(conn)
            .await
            .context("cannot reach stakpak-sandboxd")?;
        match sandbox.revert(id).await {
            Ok(change) => {
                println!("reverted {} ({} {})", change.id, change.kind, change.path);
                Ok(ExitCode::SUCCESS)
            }
            Err(WireError::PermissionDenied(m)) => {
                eprintln!("stakpak: refused: {m}");
                Ok(ExitCode::from(EXIT_DENY))
            }
            Err(e) => Err(readable(e, &target.describe())),
        }
    })
}

fn render_table(rows: &[Row]) -> String {
    let mut table = Table::new(
        2,
        [
            Column::fit("ID"),
            Column::fit("SESSION"),
            Column::fixed("KIND", 6),
            Column::fit("PATH"),
            Column::fixed("WHEN", 19),
            Column::fit("REVERTED"),
        ],
    );
    for r in rows {
        let reverted = if r.reverted_ms == 0 {
            "-".to_string()
        } else {
            utc_ms(r.reverted_ms)
        };
        table.row([
            r.id.clone(),
            r.session.clone(),
            r.kind.to_string(),
            r.path.clone(),
            utc_ms(r.created_ms),
            reverted,
        ]);
    }
    table.render()
}

/// Finds the suite, connects, and runs one call on sandboxd with errors a person can read.
fn call<T, F, Fut>(bus_address: Option<&str>, layout: &Layout, f: F) -> anyhow::Result<T>
where
    F: FnOnce(SandboxProxy<'static>) -> Fut,
    Fut: std::future::Future<Output = Result<T, WireError>>,
{
    locate::on_bus(bus_address, layout, async |target, conn| {
        let sandbox = SandboxProxy::new(conn)
            .await
            .context("cannot reach stakpak-sandboxd")?;
        f(sandbox)
            .await
            .map_err(|e| readable(e, &target.describe()))
    })
}

fn readable(e: WireError, where_: &str) -> anyhow::Error {
    crate::locate::daemon_error(e, |e| {
        anyhow::anyhow!("stakpak-sandboxd of the {where_} did not answer: {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let rows = [
            Row {
                id: "c-0123456789ab".into(),
                session: "s1".into(),
                kind: ChangeKind::Edit,
                path: "a/b.txt".into(),
                created_ms: 1_764_209_645_123,
                reverted_ms: 0,
                summary: String::new(),
            },
            Row {
                id: "c-ba9876543210".into(),
                session: "cli".into(),
                kind: ChangeKind::Remove,
                path: "x".into(),
                created_ms: 0,
                reverted_ms: 951_782_400_000,
                summary: String::new(),
            },
        ];
        assert_eq!(
            render_table(&rows),
            "ID              SESSION  KIND    PATH     WHEN                 REVERTED\n\
             c-0123456789ab  s1       edit    a/b.txt  2025-11-27 02:14:05  -\n\
             c-ba9876543210  cli      remove  x        1970-01-01 00:00:00  2000-02-29 00:00:00\n"
        );
    }
}
