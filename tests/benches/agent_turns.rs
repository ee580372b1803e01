//! What the agent adds to a tool-call turn, and how many turns it carries at once.
//!
//! ```text
//! cargo bench -p stakpak-e2e --bench agent_turns      # or scripts/bench-agent.sh
//! TURNS=400 SESSIONS=50 SESSION_TURNS=10 cargo bench -p stakpak-e2e --bench agent_turns
//! ```
//!
//! Against the embedded suite (release binaries) and a zero-latency LLM double:
//! - one session of `TURNS` turns, each a `run_command true` the profile auto-approves: the
//!   time per turn, minus the median of `Sandbox1.Exec("true")` measured alone (the
//!   command's own run through sandboxd), is the agent's overhead per tool-call turn (model
//!   call over HTTP with SSE, warden advisory check, approval, tool dispatch, secretd,
//!   checkpoint in SQLite, signals);
//! - `SESSIONS` sessions at once, `SESSION_TURNS` turns each: turns per second.
//!
//! Target (issue 6): overhead under 5 ms median per tool-call turn.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::json;
use stakpak_proto::{AgentProxy, ExecRequest, SandboxProxy, StartRequest};
use stakpak_testkit::{EmbeddedSuite, LlmDouble, Turn};

fn env(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let turns = env("TURNS", 200);
    let sessions = env("SESSIONS", 50);
    let session_turns = env("SESSION_TURNS", 10);
    let tool_turn = || Turn::tools(vec![("run_command", json!({"command": "true"}))]);

    let double = LlmDouble::start(Vec::new());
    let config = format!(
        "[profiles.default]\nmodel = \"double/bench\"\nmax_turns = 10000\n\
         auto_approve = [\"run_command::true\"]\n\
         [profiles.default.providers.double]\ntype = \"custom\"\napi_endpoint = \"{}\"\n",
        double.base_url()
    );
    let suite = EmbeddedSuite::builder()
        .config_file("config.toml", &config)
        .start();
    let rt = stakpak_testkit::runtime();
    let conn = stakpak_testkit::connect(&rt, &suite.bus_address());
    let agent = rt.block_on(AgentProxy::new(&conn)).unwrap();
    let sandbox = rt.block_on(SandboxProxy::new(&conn)).unwrap();

    // The command alone through sandboxd.
    let mut exec_times: Vec<Duration> = (0..(turns.min(200) + 20))
        .map(|_| {
            let start = Instant::now();
            let reply = rt
                .block_on(sandbox.exec(ExecRequest {
                    session: "bench-exec".into(),
                    command: "true".into(),
                    ..ExecRequest::default()
                }))
                .unwrap();
            assert_eq!(reply.code, 0, "{reply:?}");
            start.elapsed()
        })
        .skip(20)
        .collect();
    exec_times.sort();
    let exec_median = exec_times[exec_times.len() / 2];

    // One long session.
    for _ in 0..turns {
        double.push(tool_turn());
    }
    double.push(Turn::text("done"));
    let start = Instant::now();
    let info = rt
        .block_on(async {
            agent
                .start(StartRequest {
                    prompt: "bench".into(),
                    ..StartRequest::default()
                })
                .await?;
            let sessions = agent.list_sessions().await?;
            agent.wait_session(sessions[0].id.clone(), 0).await
        })
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(info.state.as_str(), "finished", "{info:?}");
    assert_eq!(info.turns, turns + 1, "{info:?}");
    let per_turn = elapsed / (turns + 1);
    let overhead = per_turn.saturating_sub(exec_median);

    // Many sessions at once, each stopped by max_steps.
    for _ in 0..(sessions * session_turns) {
        double.push(tool_turn());
    }
    let start = Instant::now();
    let finished = rt.block_on(async {
        let mut ids = Vec::new();
        for i in 0..sessions {
            let info = agent
                .start(StartRequest {
                    prompt: format!("bench {i}"),
                    max_steps: session_turns,
                    ..StartRequest::default()
                })
                .await
                .unwrap();
            ids.push(info.id);
        }
        let mut done = 0u32;
        for id in ids {
            let info = agent.wait_session(id, 0).await.unwrap();
            assert_eq!(info.state.as_str(), "max-turns", "{info:?}");
            done += info.turns;
        }
        done
    });
    let elapsed_many = start.elapsed();

    println!("agent, zero-latency LLM double, release build");
    println!(
        "  one session, {turns} tool-call turns: {:.3} ms per turn; run_command true through sandboxd alone: {:.3} ms median",
        ms(per_turn),
        ms(exec_median)
    );
    println!(
        "  agent overhead per tool-call turn: {:.3} ms (target < 5 ms)",
        ms(overhead)
    );
    println!(
        "  {sessions} concurrent sessions x {session_turns} turns: {finished} turns in {:.2} s = {:.0} turns/s",
        elapsed_many.as_secs_f64(),
        f64::from(finished) / elapsed_many.as_secs_f64()
    );
}
