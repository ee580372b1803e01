//! `stakpak-secretd`: the only holder of secret values: vault, placeholder resolution, redaction.

fn main() -> std::process::ExitCode {
    stakpak_secretd::main()
}
