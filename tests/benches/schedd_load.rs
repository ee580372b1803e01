//! schedd carrying many schedules: its idle CPU, its RSS and how late firings start.
//!
//! ```text
//! cargo bench -p stakpak-e2e --bench schedd_load      # or scripts/bench-schedd.sh
//! SCHEDULES=10000 FIRING=20 FIRE_SECS=12 IDLE_SECS=10 cargo bench -p stakpak-e2e --bench schedd_load
//! ```
//!
//! Against the embedded suite (release binaries): `autopilot.toml` holds `SCHEDULES`
//! schedules, of which `FIRING` fire every 2 s (check `exit 0`, so the agent stays asleep)
//! and the rest once a year. For `FIRE_SECS` the firing ones run; the lateness of a firing
//! is its run's start minus its due time, as schedd recorded them. Then the firing ones
//! are disabled and schedd's CPU time is read from /proc/<pid>/stat over `IDLE_SECS`.
//!
//! Targets (issue 8): idle CPU near zero between firings, RSS under 64 MiB, firings within
//! 1 s of their due time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    fmt::Write,
    time::{Duration, Instant},
};

use stakpak_proto::SchedulerProxy;
use stakpak_testkit::{EmbeddedSuite, LlmDouble};

fn env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    let schedules = env("SCHEDULES", 10_000);
    let firing = env("FIRING", 20).min(schedules);
    let fire_secs = env("FIRE_SECS", 12);
    let idle_secs = env("IDLE_SECS", 10);

    let mut autopilot = String::new();
    for i in 0..schedules {
        let (cron, check) = if i < firing {
            ("*/2 * * * * *", "exit 0")
        } else {
            ("0 0 1 1 *", "")
        };
        writeln!(
            autopilot,
            "[[schedules]]\nname = \"s{i}\"\ncron = \"{cron}\"\ncheck = \"{check}\"\n\
             prompt = \"bench {i}\"\n"
        )
        .unwrap();
    }
    let double = LlmDouble::start(Vec::new());
    let config = format!(
        "[profiles.default]\nmodel = \"double/bench\"\n\
         [profiles.default.providers.double]\ntype = \"custom\"\napi_endpoint = \"{}\"\n",
        double.base_url()
    );
    // The binaries are built (when stale) before the clock starts.
    stakpak_testkit::bin_dir();
    let started = Instant::now();
    let suite = EmbeddedSuite::builder()
        .config_file("config.toml", &config)
        .config_file("autopilot.toml", &autopilot)
        .ready_timeout(60.0)
        .start();
    let up = started.elapsed();
    let pid = suite.pid_of("stakpak-schedd").unwrap();
    let rt = stakpak_testkit::runtime();
    let conn = stakpak_testkit::connect(&rt, &suite.bus_address());
    let scheduler = rt.block_on(SchedulerProxy::new(&conn)).unwrap();

    let list_started = Instant::now();
    let listed = rt.block_on(scheduler.list_schedules()).unwrap().len();
    let list_time = list_started.elapsed();
    assert_eq!(listed as u64, schedules);

    std::thread::sleep(Duration::from_secs(fire_secs));
    for i in 0..firing {
        rt.block_on(scheduler.enable_schedule(format!("s{i}"), false))
            .unwrap();
    }
    let mut lateness: Vec<i64> = Vec::new();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..firing {
        for run in rt
            .block_on(scheduler.history(format!("s{i}"), 1000))
            .unwrap()
        {
            *outcomes
                .entry(run.outcome.as_str().to_string())
                .or_default() += 1;
            if run.trigger.as_str() == "schedule" && run.due_ms > 0 {
                lateness.push(run.started_ms - run.due_ms);
            }
        }
    }
    lateness.sort_unstable();

    // Let the last runs end before measuring idleness.
    std::thread::sleep(Duration::from_secs(2));
    // /proc/<pid>/stat counts in USER_HZ, which Linux fixes at 100 for user space.
    let ticks_per_sec = 100.0;
    let before = cpu_ticks(pid);
    let idle_started = Instant::now();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let used = (cpu_ticks(pid) - before) as f64 / ticks_per_sec;
    let idle_cpu = 100.0 * used / idle_started.elapsed().as_secs_f64();
    let rss = rss_kib(pid);

    println!("schedd with {schedules} schedules ({firing} firing every 2 s for {fire_secs} s)");
    println!(
        "  suite up (schedd loading autopilot.toml): {:.2} s",
        up.as_secs_f64()
    );
    println!(
        "  ListSchedules of {listed}: {:.0} ms",
        list_time.as_secs_f64() * 1000.0
    );
    println!(
        "  firings: {} ({outcomes:?}); lateness ms: p50 {} p99 {} max {}",
        lateness.len(),
        percentile(&lateness, 0.5),
        percentile(&lateness, 0.99),
        lateness.last().copied().unwrap_or(0)
    );
    println!("  idle CPU over {idle_secs} s: {idle_cpu:.3} % ({used:.3} s)");
    println!("  RSS: {:.1} MiB", rss as f64 / 1024.0);
}
