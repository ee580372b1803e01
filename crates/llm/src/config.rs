//! Which provider to talk to, where, and how patiently.

use std::fmt;
use std::time::Duration;

/// The wire format a provider speaks. It is plain data that lives with the configuration,
/// so reading `config.toml` (schedd, the CLI) does not bring in the HTTP client.
pub use stakpak_config::ProviderKind;

/// How to reach one provider. `Debug` never shows the API key.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// The API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer` (OpenAI) or `x-api-key` (Anthropic); `None` for
    /// local servers that need none.
    pub api_key: Option<String>,
    /// The longest one HTTP request may take, from sending it to the end of its stream.
    /// Each retry gets its own.
    pub timeout: Duration,
    /// The longest the provider may stay silent: before the response headers, and between
    /// two reads of the stream.
    pub idle_timeout: Duration,
    /// Retries after the first request (so at most `max_retries + 1` requests) on 408,
    /// 429, 5xx and connection failures.
    pub max_retries: u32,
    /// The cap on one wait between two requests, whatever `retry-after` asks for.
    pub max_retry_wait: Duration,
}

impl ProviderConfig {
    /// A configuration with defaults: 10 min per request, 2 min idle, 3 retries, waits of
    /// at most 60 s. An empty `base_url` means the provider's public endpoint.
    pub fn new(kind: ProviderKind, base_url: impl Into<String>, api_key: Option<String>) -> Self {
        let base_url = base_url.into();
        let base_url = if base_url.trim().is_empty() {
            kind.default_base_url().to_owned()
        } else {
            base_url.trim().trim_end_matches('/').to_owned()
        };
        ProviderConfig {
            kind,
            base_url,
            api_key,
            timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(120),
            max_retries: 3,
            max_retry_wait: Duration::from_secs(60),
        }
    }
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_retries", &self.max_retries)
            .field("max_retry_wait", &self.max_retry_wait)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn debug_hides_the_key() {
        let config =
            ProviderConfig::new(ProviderKind::OpenAi, "", Some("sk-secret-value".to_owned()));
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-secret-value"), "{shown}");
        assert!(shown.contains("<set>"), "{shown}");
    }

    #[test]
    fn base_url_defaults_and_loses_its_trailing_slash() {
        let cases = [
            (ProviderKind::OpenAi, "", "https://api.openai.com/v1"),
            (ProviderKind::Anthropic, " ", "https://api.anthropic.com/v1"),
            (
                ProviderKind::OpenAi,
                "http://127.0.0.1:11434/v1/",
                "http://127.0.0.1:11434/v1",
            ),
        ];
        for (kind, given, expected) in cases {
            assert_eq!(ProviderConfig::new(kind, given, None).base_url, expected);
        }
    }
}
