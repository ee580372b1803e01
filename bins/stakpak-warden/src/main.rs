//! `stakpak-warden`: the policy decision point: judges every action against the policy packs.

fn main() -> std::process::ExitCode {
    stakpak_warden::main()
}
