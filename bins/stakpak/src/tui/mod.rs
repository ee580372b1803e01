//! `stakpak` with no prompt on a terminal: the operator's console.
//!
//! Three parts: [`app::App`] (state; keys and suite events in, bus requests out, no I/O),
//! [`ui::draw`] (the frame from the state), and [`client::Worker`] (the bus). This module
//! runs them: the terminal in raw mode on the alternate screen, a thread reading keys, a
//! current-thread runtime for the bus, and a redraw after each batch of events.

pub mod app;
pub mod chat;
pub mod client;
pub mod highlight;
pub mod input;
pub mod markdown;
pub mod session;
pub mod text;
pub mod ui;

#[cfg(test)]
mod tests;

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use ratatui::crossterm::{
    event::{self as term, DisableBracketedPaste, EnableBracketedPaste, KeyEventKind},
    execute,
};
use stakpak_config::AgentConfig;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::suite::Layout;
pub use app::{App, ProfileEntry};
use client::{Event, Worker};

/// How often the daemons (and the panel) are asked again, and a lost suite looked for.
const TICK: Duration = Duration::from_secs(2);

/// What the console starts with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub bus_address: Option<String>,
    pub profile: Option<String>,
    pub model: Option<String>,
    /// Where the agent's `config.toml` is, for `/profiles`.
    pub agent_config_dir: std::path::PathBuf,
}

/// The profiles of the agent's `config.toml` and their models; none when it cannot be read
/// (the agent reports its own configuration problems).
pub fn profiles(agent_config_dir: &std::path::Path) -> Vec<ProfileEntry> {
    let Ok(config) = AgentConfig::load(&agent_config_dir.join("config.toml")) else {
        return Vec::new();
    };
    config
        .profile_names()
        .into_iter()
        .map(|name| {
            // No environment and no credential file: only the model is wanted, never a key.
            let model = config
                .profile(&name, &|_| None, None)
                .map(|p| format!("{}/{}", p.provider_key, p.model))
                .unwrap_or_default();
            ProfileEntry { name, model }
        })
        .collect()
}

/// Whether standard input and output are both terminals.
pub fn on_terminal() -> bool {
    rustix::termios::isatty(std::io::stdin()) && rustix::termios::isatty(std::io::stdout())
}

/// Runs the console until the operator quits.
pub fn run(options: Options, layout: &Layout) -> anyhow::Result<ExitCode> {
    let runtime = crate::runtime::new()?;
    let mut app = App::new(
        options.profile.clone().unwrap_or_default(),
        options.model.clone().unwrap_or_default(),
        profiles(&options.agent_config_dir),
    );
    app.workdir = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();

    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let _ = execute!(std::io::stdout(), EnableBracketedPaste);
    let result = runtime.block_on(event_loop(&mut terminal, &mut app, options, layout));
    let _ = execute!(std::io::stdout(), DisableBracketedPaste);
    let restored = ratatui::try_restore();
    result?;
    restored.context("cannot restore the terminal")?;
    Ok(ExitCode::SUCCESS)
}

/// Terminal input, read on a thread of its own.
enum Input {
    Key(term::KeyEvent),
    Paste(String),
    Resize,
}

fn read_terminal(tx: mpsc::UnboundedSender<Input>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match term::poll(Duration::from_millis(100)) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => break,
        }
        let input = match term::read() {
            Ok(term::Event::Key(k)) if k.kind != KeyEventKind::Release => Input::Key(k),
            Ok(term::Event::Paste(text)) => Input::Paste(text),
            Ok(term::Event::Resize(_, _)) => Input::Resize,
            Ok(_) => continue,
            Err(_) => break,
        };
        if tx.send(input).is_err() {
            break;
        }
    }
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    options: Options,
    layout: &Layout,
) -> anyhow::Result<()> {
    let (event_tx, mut events) = mpsc::unbounded_channel::<Event>();
    let (request_tx, requests) = mpsc::unbounded_channel();
    let worker = Worker::new(options.bus_address, layout.clone(), event_tx);
    let worker = tokio::spawn(worker.run(requests));

    let (key_tx, mut keys) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || read_terminal(key_tx, stop))
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // SIGTERM and SIGHUP end the console like /quit, so the terminal is given back intact.
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;

    let outcome = loop {
        for r in app.take_requests() {
            let _ = request_tx.send(r);
        }
        if let Err(e) = terminal.draw(|f| ui::draw(f, app)) {
            break Err(anyhow::Error::from(e).context("cannot draw"));
        }
        if app.quit {
            break Ok(());
        }
        tokio::select! {
            input = keys.recv() => match input {
                Some(input) => handle_input(app, input),
                // The terminal can no longer be read: nobody is there to answer.
                None => break Ok(()),
            },
            Some(event) = events.recv() => app.apply(event),
            _ = tick.tick() => app.tick(),
            _ = terminate.recv() => break Ok(()),
            _ = hangup.recv() => break Ok(()),
        }
        // Take whatever else is queued before drawing again, so a burst of streamed text
        // costs one frame, not one per delta.
        while let Ok(input) = keys.try_recv() {
            handle_input(app, input);
        }
        while let Ok(event) = events.try_recv() {
            app.apply(event);
        }
    };
    stop.store(true, Ordering::Relaxed);
    drop(request_tx);
    worker.abort();
    let _ = reader.join();
    outcome
}

fn handle_input(app: &mut App, input: Input) {
    match input {
        Input::Key(k) => app.key(k),
        Input::Paste(text) => app.paste(&text),
        Input::Resize => {}
    }
}
