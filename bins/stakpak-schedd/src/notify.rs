//! The hook for telling people how a run ended. The scheduler decides *whether* a run is
//! worth a notification (the schedule's `notify_on`); a [`Notifier`] decides *how* it
//! reaches `notify_channel`/`notify_target` (the Slack channel implements it).

use std::fmt::Debug;

use stakpak_proto::RunOutcome;

/// One run's end, for a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub schedule: String,
    pub run_id: String,
    pub outcome: RunOutcome,
    /// One or two lines for humans: outcome, reason, session id.
    pub text: String,
    /// `notify_channel` of the schedule (`slack`); empty: none configured.
    pub channel: String,
    /// `notify_target` (a channel or user of that service).
    pub target: String,
}

/// Delivers notifications. Called from the scheduler's loop: it must not block; an
/// implementation hands the notification to its own task (a channel) and returns.
pub trait Notifier: Send + Sync + Debug + 'static {
    fn notify(&self, notification: Notification);
}

/// Writes notifications to the log; the default while no channel is configured.
#[derive(Debug, Default)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn notify(&self, n: Notification) {
        tracing::info!(
            schedule = %n.schedule,
            run = %n.run_id,
            outcome = %n.outcome,
            channel = %n.channel,
            target = %n.target,
            "{}",
            n.text
        );
    }
}
