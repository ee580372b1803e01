//! `stakpak-agent`: the agent loop: LLM calls, tool dispatch, approvals, sessions, rulebooks.

fn main() -> std::process::ExitCode {
    stakpak_agent::main()
}
