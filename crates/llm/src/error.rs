//! What can go wrong with a model turn, and the one place an API key is scrubbed from it.

use std::time::Duration;

/// Why a model turn failed. Messages come from the provider (its error body) or from us;
/// the API key is masked out of every one of them.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// 401 or 403: the key is missing, wrong, or lacks permission.
    #[error("the provider refused the credentials (http {status}): {message}")]
    Auth { status: u16, message: String },
    /// The provider does not know the model (404, or an error body naming the model).
    #[error("unknown model {model:?}: {message}")]
    UnknownModel { model: String, message: String },
    /// 429, still, after every retry.
    #[error("rate limited{}: {message}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    /// 5xx or 408 after every retry, or an error the provider reported inside a stream.
    #[error("provider error (http {status}): {message}")]
    Server { status: u16, message: String },
    /// Any other 4xx: the provider refused the request as written.
    #[error("request refused (http {status}): {message}")]
    BadRequest { status: u16, message: String },
    /// The response was not what the wire format promises: bad SSE or JSON, or a stream
    /// that ended before its terminator.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The request took longer than `timeout`, or the provider was silent for longer than
    /// `idle_timeout`.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection failed (after every retry, when nothing had been received yet).
    #[error("transport: {0}")]
    Transport(String),
    /// The configuration cannot work (bad base URL, a key that is not a header value).
    #[error("configuration: {0}")]
    Config(String),
}

/// What a masked key is replaced with.
const MASK: &str = "<api key>";

impl LlmError {
    /// The same error with every occurrence of `key` in its text replaced.
    pub(crate) fn masked(self, key: Option<&str>) -> LlmError {
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return self;
        };
        let m = |s: String| {
            if s.contains(key) {
                s.replace(key, MASK)
            } else {
                s
            }
        };
        match self {
            LlmError::Auth { status, message } => LlmError::Auth {
                status,
                message: m(message),
            },
            LlmError::UnknownModel { model, message } => LlmError::UnknownModel {
                model: m(model),
                message: m(message),
            },
            LlmError::RateLimited {
                retry_after,
                message,
            } => LlmError::RateLimited {
                retry_after,
                message: m(message),
            },
            LlmError::Server { status, message } => LlmError::Server {
                status,
                message: m(message),
            },
            LlmError::BadRequest { status, message } => LlmError::BadRequest {
                status,
                message: m(message),
            },
            LlmError::Malformed(s) => LlmError::Malformed(m(s)),
            LlmError::Timeout(s) => LlmError::Timeout(m(s)),
            LlmError::Transport(s) => LlmError::Transport(m(s)),
            LlmError::Config(s) => LlmError::Config(m(s)),
        }
    }
}

/// A failed attempt: the error, and whether another attempt may succeed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: LlmError,
    /// 408, 429, 5xx, a connection failure, an overload reported inside the stream.
    pub retryable: bool,
    /// What the provider asked us to wait, if it said.
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn fatal(error: LlmError) -> Failure {
        Failure {
            error,
            retryable: false,
            retry_after: None,
        }
    }

    pub fn retryable(error: LlmError) -> Failure {
        Failure {
            error,
            retryable: true,
            retry_after: None,
        }
    }
}

/// Turns a provider's error status and message into our error, the way both providers
/// use their status codes. `model` is the model the request named.
pub(crate) fn classify(
    status: u16,
    message: String,
    code: Option<&str>,
    model: &str,
    retry_after: Option<Duration>,
) -> Failure {
    let unknown_model = || LlmError::UnknownModel {
        model: model.to_owned(),
        message: message.clone(),
    };
    match status {
        401 | 403 => Failure::fatal(LlmError::Auth { status, message }),
        404 => Failure::fatal(unknown_model()),
        400 | 422 if names_unknown_model(&message, code, model) => Failure::fatal(unknown_model()),
        429 => Failure {
            error: LlmError::RateLimited {
                retry_after,
                message,
            },
            retryable: true,
            retry_after,
        },
        408 | 500.. => Failure {
            error: LlmError::Server { status, message },
            retryable: true,
            retry_after,
        },
        _ => Failure::fatal(LlmError::BadRequest { status, message }),
    }
}

/// Whether a 400 is the provider's way of saying the model does not exist (OpenRouter,
/// some OpenAI-compatible servers): an explicit code, or a message naming the model
/// together with words that say it is missing.
fn names_unknown_model(message: &str, code: Option<&str>, model: &str) -> bool {
    if matches!(code, Some("model_not_found")) {
        return true;
    }
    let lower = message.to_lowercase();
    !model.is_empty()
        && message.contains(model)
        && [
            "not found",
            "does not exist",
            "not a valid model",
            "invalid model",
            "unknown model",
        ]
        .iter()
        .any(|w| lower.contains(w))
}

/// An error the provider reported inside a 200 stream (Anthropic's `error` event, an
/// OpenAI-compatible chunk with an `error` object), classified like the HTTP status it
/// stands for.
pub(crate) fn stream_error(data: &str, model: &str) -> Failure {
    let parsed: Option<serde_json::Value> = serde_json::from_str(data).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let numeric = error
        .and_then(|e| e.get("code"))
        .and_then(|c| c.as_u64())
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c));
    let (message, code) = error_message(data);
    let status = numeric.unwrap_or(match code.as_deref() {
        Some("invalid_request_error") => 400,
        Some("authentication_error" | "invalid_api_key") => 401,
        Some("permission_error") => 403,
        Some("not_found_error" | "model_not_found") => 404,
        Some("request_too_large") => 413,
        Some("rate_limit_error" | "rate_limit_exceeded") => 429,
        Some("overloaded_error") => 529,
        _ => 500,
    });
    classify(status, message, code.as_deref(), model, None)
}

/// The longest provider message we keep in an error.
const MAX_MESSAGE: usize = 2000;

/// The human-readable message of an error body in either provider's format (OpenAI
/// `{"error": {"message", "code"}}`, Anthropic `{"type": "error", "error": {"type",
/// "message"}}`, Ollama `{"error": "…"}`), else the body itself, shortened. Also the
/// error's code or type, if it has one.
pub(crate) fn error_message(body: &str) -> (String, Option<String>) {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let (message, code) = match error {
        Some(serde_json::Value::String(s)) => (Some(s.clone()), None),
        Some(e) => (
            e.get("message").and_then(|m| m.as_str()).map(str::to_owned),
            e.get("code")
                .and_then(|c| c.as_str())
                .or_else(|| e.get("type").and_then(|t| t.as_str()))
                .map(str::to_owned),
        ),
        None => (
            parsed
                .as_ref()
                .and_then(|v| v.get("message").or_else(|| v.get("detail")))
                .and_then(|m| m.as_str())
                .map(str::to_owned),
            None,
        ),
    };
    let message = message.unwrap_or_else(|| {
        let trimmed = body.trim();
        if trimmed.is_empty() {
            "(empty body)".to_owned()
        } else {
            trimmed.to_owned()
        }
    });
    (shorten(message), code)
}

/// `s` cut to at most [`MAX_MESSAGE`] bytes, on a character boundary.
pub(crate) fn shorten(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn masking_reaches_every_message() {
        let key = "sk-live-123";
        let err = LlmError::Auth {
            status: 401,
            message: format!("Incorrect API key provided: {key}. And again {key}"),
        }
        .masked(Some(key));
        assert_eq!(
            err.to_string(),
            "the provider refused the credentials (http 401): \
             Incorrect API key provided: <api key>. And again <api key>"
        );
        let err = LlmError::Transport(format!("x {key}")).masked(Some(key));
        assert_eq!(err.to_string(), "transport: x <api key>");
    }

    #[test]
    fn error_bodies_of_each_provider() {
        let cases: [(&str, &str, Option<&str>); 5] = [
            (
                r#"{"error":{"message":"The model `x` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#,
                "The model `x` does not exist",
                Some("model_not_found"),
            ),
            (
                r#"{"type":"error","error":{"type":"not_found_error","message":"model: x"}}"#,
                "model: x",
                Some("not_found_error"),
            ),
            (
                r#"{"error":"model \"x\" not found"}"#,
                "model \"x\" not found",
                None,
            ),
            ("upstream gone\n", "upstream gone", None),
            ("", "(empty body)", None),
        ];
        for (body, message, code) in cases {
            assert_eq!(
                error_message(body),
                (message.to_owned(), code.map(str::to_owned)),
                "{body}"
            );
        }
    }

    #[test]
    fn statuses_and_what_becomes_of_them() {
        let kind = |status: u16, message: &str, code: Option<&str>| {
            let f = classify(status, message.to_owned(), code, "gpt-x", None);
            let name = match f.error {
                LlmError::Auth { .. } => "auth",
                LlmError::UnknownModel { .. } => "model",
                LlmError::RateLimited { .. } => "rate",
                LlmError::Server { .. } => "server",
                LlmError::BadRequest { .. } => "bad",
                _ => "other",
            };
            (name, f.retryable)
        };
        let cases = [
            (401, "", None, ("auth", false)),
            (403, "", None, ("auth", false)),
            (404, "", None, ("model", false)),
            (400, "gpt-x is not a valid model ID", None, ("model", false)),
            (400, "whatever", Some("model_not_found"), ("model", false)),
            (
                400,
                "max_tokens is too large for gpt-x",
                None,
                ("bad", false),
            ),
            (429, "", None, ("rate", true)),
            (408, "", None, ("server", true)),
            (500, "", None, ("server", true)),
            (529, "", None, ("server", true)),
            (413, "", None, ("bad", false)),
        ];
        for (status, message, code, expected) in cases {
            assert_eq!(kind(status, message, code), expected, "{status} {message}");
        }
    }
}
