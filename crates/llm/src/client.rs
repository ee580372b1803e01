//! The HTTP side: one connection pool per provider, the retry loop, the timeouts, and
//! the stream read into a decoder.
//!
//! Retries happen only while nothing of the turn has reached the caller: on 408, 429, 5xx,
//! a failed connection, or an overload the provider reports at the start of a stream.
//! Timeouts are not retried: a provider that stayed silent for `idle_timeout` is more
//! likely to do so again than to recover, and the caller decides what waiting more is
//! worth.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderValue};
use tokio::time::Instant;

use crate::error::{Failure, LlmError, classify, error_message};
use crate::openai::Progress;
use crate::sse::SseParser;
use crate::{ChatRequest, ChatResponse, ProviderConfig, ProviderKind, anthropic, openai};

/// The Anthropic API version this client speaks.
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The most of an error body we read.
const MAX_ERROR_BODY: usize = 64 << 10;
/// The most of a whole response (streamed or not) we read.
const MAX_RESPONSE: usize = 64 << 20;
/// The first wait between two attempts; it doubles with each retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// A client for one provider. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProviderConfig,
    http: reqwest::Client,
    url: String,
    headers: HeaderMap,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(config: ProviderConfig) -> Result<Client, LlmError> {
        let key = config.api_key.clone();
        Client::build(config).map_err(|e| e.masked(key.as_deref()))
    }

    fn build(config: ProviderConfig) -> Result<Client, LlmError> {
        let base = config.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(LlmError::Config(format!(
                "the base URL {base:?} is not an http:// or https:// URL"
            )));
        }
        if config.timeout.is_zero() || config.idle_timeout.is_zero() {
            return Err(LlmError::Config(
                "timeout and idle_timeout must be longer than zero".to_owned(),
            ));
        }
        let url = format!("{base}{}", config.kind.endpoint());
        reqwest::Url::parse(&url)
            .map_err(|e| LlmError::Config(format!("the base URL {base:?} does not parse: {e}")))?;
        let headers = headers(&config)?;

        // Our own TLS configuration with ring, so the client works whether or not a
        // process-wide rustls provider was installed, and never falls back to another.
        // The system's roots (certificates rustls cannot use are skipped); none at all is
        // an error now rather than a failed handshake later, worded as it always was.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(stakpak_util::roots::system_roots());
        if roots.is_empty() {
            return Err(LlmError::Config(
                "no TLS certificate verifier: unexpected error: No CA certificates were loaded \
                 from the system"
                    .to_owned(),
            ));
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| LlmError::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(config.idle_timeout.min(Duration::from_secs(30)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("stakpak/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Config(format!("HTTP client: {}", chain(&e))))?;
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                http,
                url,
                headers,
            }),
        })
    }

    /// The provider this client talks to.
    pub fn config(&self) -> &ProviderConfig {
        &self.inner.config
    }

    /// One model turn, streamed: `on_text` gets each text delta as it arrives.
    pub async fn chat(
        &self,
        request: &ChatRequest,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ChatResponse, LlmError> {
        let config = &self.inner.config;
        let key = config.api_key.as_deref();
        let body = match config.kind {
            ProviderKind::OpenAi => openai::request_body(request, self.is_openai_itself()),
            ProviderKind::Anthropic => anthropic::request_body(request),
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| LlmError::Config(format!("the request does not serialize: {e}")))?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut emitted = false;
            let mut sink = |text: &str| {
                emitted = true;
                on_text(text);
            };
            let result = self.attempt(&body, &request.model, &mut sink).await;
            match result {
                Ok(mut response) => {
                    response.attempts = attempts;
                    return Ok(response);
                }
                Err(failure) if failure.retryable && !emitted && attempts <= config.max_retries => {
                    let wait = failure
                        .retry_after
                        .unwrap_or_else(|| backoff(attempts))
                        .min(config.max_retry_wait);
                    tokio::time::sleep(wait).await;
                }
                Err(failure) => return Err(failure.error.masked(key)),
            }
        }
    }

    /// OpenAI's own endpoint wants `max_completion_tokens`; compatible servers know only
    /// `max_tokens`.
    fn is_openai_itself(&self) -> bool {
        reqwest::Url::parse(&self.inner.url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h == "api.openai.com"))
            .unwrap_or(false)
    }

    /// One HTTP request and its whole answer.
    async fn attempt(
        &self,
        body: &[u8],
        model: &str,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ChatResponse, Failure> {
        let inner = &*self.inner;
        let clock = Clock::start(&inner.config);
        let send = inner
            .http
            .post(&inner.url)
            .headers(inner.headers.clone())
            .body(body.to_vec())
            .send();
        let mut response = match tokio::time::timeout_at(clock.next(), send).await {
            Err(_) => return Err(clock.expired("waiting for the response")),
            Ok(Err(e)) if e.is_builder() => {
                return Err(Failure::fatal(LlmError::Config(chain(&e))));
            }
            Ok(Err(e)) => return Err(Failure::retryable(LlmError::Transport(chain(&e)))),
            Ok(Ok(response)) => response,
        };

        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = retry_after(response.headers());
            // An error body that cannot be read still leaves the status to go by.
            let body = read_to_end(&mut response, &clock, MAX_ERROR_BODY)
                .await
                .unwrap_or_default();
            let (message, code) = error_message(&String::from_utf8_lossy(&body));
            return Err(classify(
                status,
                message,
                code.as_deref(),
                model,
                retry_after,
            ));
        }

        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if is_json {
            let body = read_to_end(&mut response, &clock, MAX_RESPONSE).await?;
            let body = String::from_utf8(body).map_err(|_| {
                Failure::fatal(LlmError::Malformed(
                    "an answer that is not UTF-8".to_owned(),
                ))
            })?;
            return match inner.config.kind {
                ProviderKind::OpenAi => openai::parse_whole(&body, model, on_text),
                ProviderKind::Anthropic => anthropic::parse_whole(&body, model, on_text),
            };
        }

        let mut decoder = match inner.config.kind {
            ProviderKind::OpenAi => Decoder::OpenAi(openai::Decoder::new(model)),
            ProviderKind::Anthropic => Decoder::Anthropic(anthropic::Decoder::new(model)),
        };
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        let mut received = 0usize;
        loop {
            let chunk = match tokio::time::timeout_at(clock.next(), response.chunk()).await {
                Err(_) => return Err(clock.expired("reading the stream")),
                Ok(Err(e)) => {
                    // Retried only if nothing reached the caller yet (see `chat`).
                    return Err(Failure::retryable(LlmError::Transport(format!(
                        "the stream broke: {}",
                        chain(&e)
                    ))));
                }
                Ok(Ok(chunk)) => chunk,
            };
            match &chunk {
                Some(bytes) => {
                    received += bytes.len();
                    if received > MAX_RESPONSE {
                        return Err(Failure::fatal(LlmError::Malformed(format!(
                            "a stream longer than {MAX_RESPONSE} bytes"
                        ))));
                    }
                    parser.push(bytes, &mut events)
                }
                None => parser.finish(&mut events),
            }
            .map_err(|e| Failure::fatal(LlmError::Malformed(e)))?;
            for event in events.drain(..) {
                if decoder.event(&event, on_text)? == Progress::Done {
                    return decoder.finish();
                }
            }
            if chunk.is_none() {
                return decoder.finish();
            }
        }
    }
}

/// The decoder of the provider's stream format.
enum Decoder {
    OpenAi(openai::Decoder),
    Anthropic(anthropic::Decoder),
}

impl Decoder {
    fn event(
        &mut self,
        event: &crate::sse::SseEvent,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Progress, Failure> {
        match self {
            Decoder::OpenAi(d) => d.event(event, on_text),
            Decoder::Anthropic(d) => d.event(event, on_text),
        }
    }

    fn finish(self) -> Result<ChatResponse, Failure> {
        match self {
            Decoder::OpenAi(d) => d.finish(),
            Decoder::Anthropic(d) => d.finish(),
        }
    }
}

/// The two limits on one attempt: its whole length, and silence.
struct Clock {
    deadline: Instant,
    timeout: Duration,
    idle: Duration,
}

impl Clock {
    fn start(config: &ProviderConfig) -> Clock {
        Clock {
            deadline: Instant::now() + config.timeout,
            timeout: config.timeout,
            idle: config.idle_timeout,
        }
    }

    /// When the next wait must end.
    fn next(&self) -> Instant {
        (Instant::now() + self.idle).min(self.deadline)
    }

    /// The error for a wait that ran out while `doing` something.
    fn expired(&self, doing: &str) -> Failure {
        let message = if Instant::now() >= self.deadline {
            format!("the request took longer than {:?} ({doing})", self.timeout)
        } else {
            format!("the provider was silent for {:?} ({doing})", self.idle)
        };
        Failure::fatal(LlmError::Timeout(message))
    }
}

/// Reads the rest of `response`, at most `limit` bytes, within the clock's limits.
async fn read_to_end(
    response: &mut reqwest::Response,
    clock: &Clock,
    limit: usize,
) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout_at(clock.next(), response.chunk()).await {
            Err(_) => return Err(clock.expired("reading the body")),
            Ok(Err(e)) => {
                return Err(Failure::fatal(LlmError::Transport(format!(
                    "the body broke: {}",
                    chain(&e)
                ))));
            }
            Ok(Ok(None)) => return Ok(body),
            Ok(Ok(Some(bytes))) => {
                let room = limit.saturating_sub(body.len());
                body.extend_from_slice(&bytes[..bytes.len().min(room)]);
                if body.len() >= limit {
                    return Ok(body);
                }
            }
        }
    }
}

/// The headers every request carries, the key marked sensitive.
fn headers(config: &ProviderConfig) -> Result<HeaderMap, LlmError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    let bad_key =
        || LlmError::Config("the API key has characters an HTTP header cannot carry".to_owned());
    match config.kind {
        ProviderKind::OpenAi => {
            if let Some(key) = &config.api_key {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| bad_key())?;
                value.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, value);
            }
        }
        ProviderKind::Anthropic => {
            if let Some(key) = &config.api_key {
                let mut value = HeaderValue::from_str(key).map_err(|_| bad_key())?;
                value.set_sensitive(true);
                headers.insert("x-api-key", value);
            }
            headers.insert(
                "anthropic-version",
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
        }
    }
    Ok(headers)
}

/// How long the provider asked us to wait: `retry-after-ms` (OpenAI), else `retry-after`
/// in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return duration_from_secs(ms / 1000.0);
    }
    parse_retry_after(get("retry-after")?, SystemTime::now())
}

fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = value.parse::<f64>() {
        return duration_from_secs(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn duration_from_secs(secs: f64) -> Option<Duration> {
    // `try_from_secs_f64` refuses negative, NaN and overflowing values.
    Duration::try_from_secs_f64(secs).ok()
}

/// The wait before attempt `attempts + 1`: doubling from [`FIRST_BACKOFF`], with up to a
/// quarter more at random so clients that failed together do not retry together.
fn backoff(attempts: u32) -> Duration {
    let base = FIRST_BACKOFF.saturating_mul(1 << attempts.saturating_sub(1).min(16));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// An error and its sources, one after the other: reqwest's own message says little
/// ("error sending request") without them.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_turn_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let client = Client::new(ProviderConfig::new(ProviderKind::OpenAi, "", None)).unwrap();
        let request = ChatRequest {
            model: String::new(),
            system: String::new(),
            messages: Vec::new(),
            tools: Vec::new(),
            max_tokens: 1,
        };
        let mut on_text = |_: &str| {};
        assert_send(&client.chat(&request, &mut on_text));
    }

    #[test]
    fn retry_after_values() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let cases = [
            ("1", Some(Duration::from_secs(1))),
            ("0.5", Some(Duration::from_millis(500))),
            (
                "Wed, 21 Oct 2015 07:28:30 GMT",
                Some(Duration::from_secs(30)),
            ),
            ("Wed, 21 Oct 2015 07:27:00 GMT", Some(Duration::ZERO)),
            ("-3", None),
            ("soon", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now), expected, "{value}");
        }
    }

    #[test]
    fn backoff_doubles() {
        for (attempts, base) in [(1, 500), (2, 1000), (3, 2000)] {
            let wait = backoff(attempts);
            let base = Duration::from_millis(base);
            assert!(
                wait >= base && wait <= base + base / 4,
                "{attempts}: {wait:?}"
            );
        }
    }

    #[test]
    fn bad_configurations() {
        let cases = [
            (
                "ftp://x",
                None,
                "configuration: the base URL \"ftp://x\" is not an http:// or https:// URL",
            ),
            (
                "http://x",
                Some("bad\nkey"),
                "configuration: the API key has characters an HTTP header cannot carry",
            ),
        ];
        for (url, key, expected) in cases {
            let config = ProviderConfig::new(ProviderKind::OpenAi, url, key.map(str::to_owned));
            assert_eq!(Client::new(config).unwrap_err().to_string(), expected);
        }
    }
}
