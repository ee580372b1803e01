//! The suite's private `dbus-daemon`.

use std::{io, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Child,
};

use super::{layout::Layout, spawn};

/// A running private bus.
#[derive(Debug)]
pub struct Bus {
    pub child: Child,
    pub address: String,
}

/// Any local process of the same user may connect; the folder (0700) is the boundary. The
/// privilege split between daemons is the job of the installed system bus, not of this one.
fn config(layout: &Layout) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="{uid}"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        socket = layout.bus_socket().display(),
        uid = rustix::process::getuid().as_raw(),
    )
}

/// Starts `dbus-daemon` on the suite's socket and waits until it prints its address.
pub async fn start(layout: &Layout) -> io::Result<Bus> {
    std::fs::write(layout.bus_config(), config(layout))?;
    match std::fs::remove_file(layout.bus_socket()) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let program = which("dbus-daemon").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "dbus-daemon is not installed (Debian/Ubuntu: apt-get install dbus-daemon)",
        )
    })?;
    let log = spawn::open_log(&layout.log_file("dbus-daemon"))?;
    let mut cmd = spawn::command(&program, &log)?;
    cmd.arg(format!("--config-file={}", layout.bus_config().display()))
        .args(["--nofork", "--nopidfile", "--print-address=1"])
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("dbus-daemon has no stdout"))?;
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    match read {
        Ok(Ok(n)) if n > 0 => Ok(Bus {
            child,
            address: line.trim().to_string(),
        }),
        Ok(Ok(_)) | Ok(Err(_)) => {
            let status = child.wait().await?;
            Err(io::Error::other(format!(
                "dbus-daemon {}; see {}",
                spawn::describe_exit(status),
                layout.log_file("dbus-daemon").display()
            )))
        }
        Err(_) => {
            let _ = child.start_kill();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "dbus-daemon did not start within 10 s",
            ))
        }
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
