//! `stakpak`: the command line of the suite.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = stakpak::Cli::parse();
    match stakpak::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stakpak: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
