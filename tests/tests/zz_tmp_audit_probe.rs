#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use stakpak_audit::AuditLog;
use stakpak_proto::{ExecRequest, SandboxProxy, zbus};
use stakpak_testkit::EmbeddedSuite;
#[test]
fn probe() {
    let suite = EmbeddedSuite::builder().start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let conn = zbus::connection::Builder::address(suite.bus_address().as_str()).build().await.unwrap();
        let p = SandboxProxy::new(&conn).await.unwrap();
        for _ in 0..2 {
            let r = p.exec(ExecRequest { session: "s".into(), command: "echo hi".into(), ..ExecRequest::default() }).await.unwrap();
            eprintln!("reply {} {}", r.status, r.exec_id);
        }
    });
    let audit = AuditLog::open(&suite.state_dir.join("state/sandboxd/audit.db")).unwrap();
    eprintln!("now: {}", audit.recent(10).unwrap().len());
    std::thread::sleep(std::time::Duration::from_secs(2));
    let audit = AuditLog::open(&suite.state_dir.join("state/sandboxd/audit.db")).unwrap();
    eprintln!("later: {}", audit.recent(10).unwrap().len());
}
