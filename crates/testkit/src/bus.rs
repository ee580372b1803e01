//! A private `dbus-daemon` for tests that run one daemon on its own.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

/// A real `dbus-daemon` on a socket in a temporary folder; killed on drop.
#[derive(Debug)]
pub struct PrivateBus {
    child: Child,
    pub address: String,
    pub dir: tempfile::TempDir,
}

/// How a [`PrivateBus`] differs from the default (only its own user may connect).
#[derive(Debug, Clone, Default)]
pub struct BusOptions {
    /// Let every user connect (`<allow user="*"/>`) and make the socket's folder reachable
    /// by all, for tests that call in as a second uid.
    pub allow_any_user: bool,
}

impl PrivateBus {
    pub fn start() -> PrivateBus {
        Self::start_with(BusOptions::default())
    }

    pub fn start_with(options: BusOptions) -> PrivateBus {
        let dir = tempfile::Builder::new()
            .prefix("stakpak-bus-")
            .tempdir()
            .unwrap();
        let any_user = if options.allow_any_user {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            "\n    <allow user=\"*\"/>"
        } else {
            ""
        };
        let socket: PathBuf = dir.path().join("bus.sock");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>{}
  </policy>
</busconfig>
"#,
                socket.display(),
                any_user
            ),
        )
        .unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon must be installed (apt-get install dbus-daemon)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(!line.trim().is_empty(), "dbus-daemon printed no address");
        PrivateBus {
            child,
            address: format!("unix:path={}", socket.display()),
            dir,
        }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
