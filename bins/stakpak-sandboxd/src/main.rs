//! `stakpak-sandboxd`: the only process that executes anything, inside a sandbox.

fn main() -> std::process::ExitCode {
    stakpak_sandboxd::main()
}
