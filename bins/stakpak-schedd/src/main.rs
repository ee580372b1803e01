//! `stakpak-schedd`: the autopilot triggers: schedules, check scripts, channels, notifications.

fn main() -> std::process::ExitCode {
    stakpak_schedd::main()
}
