//! sandboxd's file tools end to end, over the suite's bus: `StrReplace` that does not match
//! exactly once changes nothing; every change can be reverted to the exact previous bytes
//! and mode; `View` shows placeholders, never secret values; the warden's `write`/`delete`
//! rules are enforced; `stakpak sandbox changes|revert` drive the same changesets.

// Test files: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::PathBuf,
};

use stakpak_proto::{ChangeInfo, Error, SandboxProxy, ViewReply, ViewRequest, WardenProxy, zbus};
use stakpak_testkit::{EmbeddedSuite, random_string};

/// One connection to the suite's bus, sandboxd's proxy on it and a runtime to drive them.
struct Client {
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
    sandbox: SandboxProxy<'static>,
}

impl Client {
    fn new(suite: &EmbeddedSuite) -> Client {
        let rt = stakpak_testkit::runtime();
        let conn = stakpak_testkit::connect(&rt, &suite.bus_address());
        let sandbox = rt.block_on(SandboxProxy::new(&conn)).unwrap();
        Client { rt, conn, sandbox }
    }

    fn create(&self, session: &str, path: &str, content: &str) -> Result<ChangeInfo, Error> {
        self.rt.block_on(
            self.sandbox
                .create(session.into(), path.into(), content.into()),
        )
    }

    fn str_replace(
        &self,
        session: &str,
        path: &str,
        old: &str,
        new: &str,
        all: bool,
    ) -> Result<ChangeInfo, Error> {
        self.rt.block_on(self.sandbox.str_replace(
            session.into(),
            path.into(),
            old.into(),
            new.into(),
            all,
        ))
    }

    fn remove(&self, session: &str, path: &str) -> Result<ChangeInfo, Error> {
        self.rt
            .block_on(self.sandbox.remove(session.into(), path.into()))
    }

    fn revert(&self, id: &str) -> Result<ChangeInfo, Error> {
        self.rt.block_on(self.sandbox.revert(id.into()))
    }

    fn changes(&self, session: &str) -> Vec<ChangeInfo> {
        self.rt
            .block_on(self.sandbox.changes(session.into()))
            .unwrap()
    }

    fn view(&self, request: ViewRequest) -> Result<ViewReply, Error> {
        self.rt.block_on(self.sandbox.view(request))
    }
}

fn workspace(suite: &EmbeddedSuite, session: &str) -> PathBuf {
    let ws = suite.workspace(session);
    std::fs::create_dir_all(&ws).unwrap();
    ws
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o777
}

fn invalid(result: Result<ChangeInfo, Error>) -> String {
    match result {
        Err(Error::InvalidArgument(m)) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn changes_are_exact_and_every_kind_reverts() {
    let suite = EmbeddedSuite::builder().start();
    let client = Client::new(&suite);
    let ws = workspace(&suite, "f1");
    let conf = ws.join("app.conf");
    let original = b"port = 80\nhost = a\nport = 81\n".to_vec();
    std::fs::write(&conf, &original).unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();

    // Zero or two matches: refused, the file byte for byte as it was.
    let m = invalid(client.str_replace("f1", "app.conf", "port = 99", "x", false));
    assert!(m.contains("0 matches"), "{m}");
    let m = invalid(client.str_replace("f1", "app.conf", "port", "x", false));
    assert!(m.contains("matches 2 times"), "{m}");
    let m = invalid(client.str_replace("f1", "app.conf", "", "x", false));
    assert!(m.contains("old is empty"), "{m}");
    assert_eq!(std::fs::read(&conf).unwrap(), original);
    assert_eq!(mode(&conf), 0o640);

    // One match: edited, mode kept; revert gives back the exact bytes and mode.
    let edit = client
        .str_replace("f1", "app.conf", "host = a", "host = b", false)
        .unwrap();
    assert_eq!(edit.kind.as_str(), "edit");
    assert_eq!(edit.path, "app.conf");
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "port = 80\nhost = b\nport = 81\n"
    );
    assert_eq!(mode(&conf), 0o640);
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let reverted = client.revert(&edit.id).unwrap();
    assert!(reverted.reverted_ms > 0);
    assert_eq!(std::fs::read(&conf).unwrap(), original);
    assert_eq!(mode(&conf), 0o640);
    let m = invalid(client.revert(&edit.id));
    assert!(m.contains("already reverted"), "{m}");

    // An edit whose file changed since cannot be reverted.
    let all = client
        .str_replace("f1", "app.conf", "port", "listen", true)
        .unwrap();
    assert!(all.summary.contains("2 matches"), "{all:?}");
    std::fs::write(&conf, "changed by hand\n").unwrap();
    let m = invalid(client.revert(&all.id));
    assert!(m.contains("changed since"), "{m}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "changed by hand\n");

    // Remove moves a tree away; revert brings it back.
    std::fs::create_dir_all(ws.join("dir/sub")).unwrap();
    std::fs::write(ws.join("dir/sub/x"), "x").unwrap();
    let removed = client.remove("f1", "dir").unwrap();
    assert_eq!(removed.kind.as_str(), "remove");
    assert!(!ws.join("dir").exists());
    let backup = suite
        .state_dir
        .join("state/sandboxd/backups/f1")
        .join(&removed.id);
    assert_eq!(std::fs::read(backup.join("sub/x")).unwrap(), b"x");
    assert_eq!(mode(backup.parent().unwrap()), 0o700);
    client.revert(&removed.id).unwrap();
    assert_eq!(std::fs::read(ws.join("dir/sub/x")).unwrap(), b"x");

    // Create (with parents), then revert: the file is gone again.
    let created = client.create("f1", "new/deep/file.txt", "hello\n").unwrap();
    assert_eq!(created.kind.as_str(), "create");
    assert_eq!(
        std::fs::read(ws.join("new/deep/file.txt")).unwrap(),
        b"hello\n"
    );
    client.revert(&created.id).unwrap();
    assert!(!ws.join("new/deep/file.txt").exists());

    // Paths that leave the workspace are refused.
    std::os::unix::fs::symlink("/etc", ws.join("etc")).unwrap();
    for bad in ["../f2/x", "/etc/hostname", "etc/hostname"] {
        let m = invalid(client.create("f1", bad, "x"));
        assert!(m.contains(bad), "{m}");
    }

    // The changeset, newest first; the CLI shows the same.
    let ids: Vec<String> = client.changes("f1").into_iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        [&created.id, &removed.id, &all.id, &edit.id].map(|s| s.to_string())
    );
    assert_eq!(client.changes("").len(), 4);

    let out = suite.stakpak(&["sandbox", "changes", "--session", "f1", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["id"], created.id.as_str());
    assert_eq!(rows[0]["kind"], "create");
    assert_eq!(rows[0]["path"], "new/deep/file.txt");
    assert!(rows[0]["reverted_ms"].as_i64().unwrap() > 0);
    assert_eq!(rows[2]["reverted_ms"], 0);

    let out = suite.stakpak(&["sandbox", "changes"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{out:?}");
    assert!(
        lines[0].starts_with("ID ") && lines[0].ends_with("REVERTED"),
        "{out:?}"
    );
    assert!(
        lines[3].contains(&all.id) && lines[3].ends_with(" -"),
        "{out:?}"
    );

    // `stakpak sandbox revert`: restore the hand-made state first so the hash matches.
    let reedit = client
        .str_replace("f1", "app.conf", "by hand", "by the agent", false)
        .unwrap();
    let out = suite.stakpak(&["sandbox", "revert", &reedit.id]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains(&reedit.id), "{out:?}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "changed by hand\n");
    let out = suite.stakpak(&["sandbox", "revert", &reedit.id]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("already reverted"), "{out:?}");
}

const SITE_PACK: &str = r#"
[pack]
id = "site"
description = "this site's own rules"

[[rule]]
id = "site.protected-files"
decision = "deny"
reason = "files under protected/ are kept by hand"
match = { write_path = ['~/protected/'], delete_path = ['~/protected/'] }
examples.match = ["write:/srv/protected/a", "delete:/srv/protected/a"]
examples.not_match = ["write:/srv/open/a"]
"#;

#[test]
fn secrets_are_written_but_never_shown_and_the_warden_is_enforced() {
    let suite = EmbeddedSuite::builder().start();
    let client = Client::new(&suite);
    let ws = workspace(&suite, "f2");

    // A secret in the vault.
    let canary = format!(
        "cnry{}",
        random_string(
            b"abcdefghijkmnopqrstuvwyzABCDEFGHJKLMNPQRSTUVWYZ23456789",
            28
        )
    );
    suite.set_secret("CANARY", &canary);

    // Create resolves the placeholder: the file holds the value.
    client
        .create("f2", "app.env", "A=1\nTOKEN={{secret:CANARY}}\nB=2\n")
        .unwrap();
    let on_disk = std::fs::read_to_string(ws.join("app.env")).unwrap();
    assert_eq!(on_disk, format!("A=1\nTOKEN={canary}\nB=2\n"));

    // View, a line range and grep show the placeholder, never the value.
    let view = |path: &str, start: u32, end: u32, grep: &str| {
        client
            .view(ViewRequest {
                session: "f2".into(),
                path: path.into(),
                start_line: start,
                end_line: end,
                grep: grep.into(),
                ..Default::default()
            })
            .unwrap()
    };
    let file = view("app.env", 0, 0, "");
    assert_eq!(
        file,
        ViewReply {
            kind: "file".parse().unwrap(),
            content: "     1\tA=1\n     2\tTOKEN={{secret:CANARY}}\n     3\tB=2\n".into(),
            truncated: false,
            total: 3,
        }
    );
    let range = view("app.env", 2, 2, "");
    assert_eq!(range.content, "     2\tTOKEN={{secret:CANARY}}\n");
    let grep = view("", 0, 0, "TOKEN");
    assert_eq!(grep.kind.as_str(), "grep");
    assert_eq!(grep.content, "app.env:2: TOKEN={{secret:CANARY}}\n");
    let tree = view("", 0, 0, "");
    assert_eq!(tree.kind.as_str(), "dir");
    assert!(
        tree.content.starts_with("./\n") && tree.content.contains("  app.env\n"),
        "{tree:?}"
    );
    for reply in [&file, &range, &grep, &tree] {
        assert!(!reply.content.contains(&canary), "{reply:?}");
    }

    // str_replace may name the value by its placeholder, as the agent only ever saw that.
    client
        .str_replace(
            "f2",
            "app.env",
            "TOKEN={{secret:CANARY}}",
            "TOKEN=none",
            false,
        )
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(ws.join("app.env")).unwrap(),
        "A=1\nTOKEN=none\nB=2\n"
    );

    // A warden rule on write and delete paths, loaded by a reload.
    let packs = suite.config_dir.join("policies.d");
    std::fs::create_dir_all(&packs).unwrap();
    std::fs::write(packs.join("site.toml"), SITE_PACK).unwrap();
    client
        .rt
        .block_on(async { WardenProxy::new(&client.conn).await.unwrap().reload().await })
        .unwrap();
    std::fs::create_dir_all(ws.join("protected")).unwrap();
    let kept = ws.join("protected/keep.txt");
    std::fs::write(&kept, b"hands off\n").unwrap();
    for result in [
        client.create("f2", "protected/keep.txt", "overwritten\n"),
        client.str_replace("f2", "protected/keep.txt", "hands", "feet", false),
        client.create("f2", "protected/new.txt", "x"),
        client.remove("f2", "protected/keep.txt"),
    ] {
        match result {
            Err(Error::PermissionDenied(m)) => {
                assert!(m.contains("site.protected-files"), "{m}");
                assert!(m.contains("kept by hand"), "{m}");
            }
            other => panic!("expected PermissionDenied, got {other:?}"),
        }
    }
    assert_eq!(std::fs::read(&kept).unwrap(), b"hands off\n");
    assert!(!ws.join("protected/new.txt").exists());
    assert!(
        client
            .changes("f2")
            .iter()
            .all(|c| !c.path.starts_with("protected")),
    );
}
