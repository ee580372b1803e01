#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Both wire formats against the provider double: streaming, tool calls, usage, retries,
//! timeouts and every kind of failure, each test run once per provider.

use std::time::{Duration, Instant};

use serde_json::json;
use stakpak_llm::{
    ChatRequest, ChatResponse, Client, LlmError, Message, ProviderConfig, ProviderKind, ToolCall,
    ToolSpec, Usage,
};
use stakpak_testkit::{LlmDouble, Turn};

const KINDS: [ProviderKind; 2] = [ProviderKind::OpenAi, ProviderKind::Anthropic];

fn config(double: &LlmDouble, kind: ProviderKind, key: Option<&str>) -> ProviderConfig {
    let mut config = ProviderConfig::new(kind, double.base_url(), key.map(str::to_owned));
    config.timeout = Duration::from_secs(20);
    config.idle_timeout = Duration::from_secs(10);
    config
}

fn client(double: &LlmDouble, kind: ProviderKind) -> Client {
    Client::new(config(double, kind, Some("sk-test"))).unwrap()
}

fn request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        system: "You are terse.".to_owned(),
        messages: vec![Message::User {
            text: "What is in /etc?".to_owned(),
        }],
        tools: vec![ToolSpec {
            name: "run".to_owned(),
            description: "Runs a shell command".to_owned(),
            parameters: json!({"type": "object", "properties": {"cmd": {"type": "string"}}}),
        }],
        max_tokens: 256,
    }
}

/// One turn; the text deltas that reached `on_text` come back too.
async fn chat(
    client: &Client,
    request: &ChatRequest,
) -> (Result<ChatResponse, LlmError>, Vec<String>) {
    let mut deltas = Vec::new();
    let result = client
        .chat(request, &mut |text: &str| deltas.push(text.to_owned()))
        .await;
    (result, deltas)
}

/// The usage the double reports: a quarter of the request body and of the output.
fn usage(double: &LlmDouble, output_len: usize) -> Usage {
    let body = double.requests().last().unwrap().body.clone();
    Usage {
        input_tokens: (body.len() / 4) as u64,
        output_tokens: (output_len / 4) as u64,
    }
}

fn call_id(kind: ProviderKind, n: usize) -> String {
    match kind {
        ProviderKind::OpenAi => format!("call_1_{n}"),
        ProviderKind::Anthropic => format!("toolu_1_{n}"),
    }
}

#[tokio::test]
async fn streamed_text_arrives_as_several_deltas() {
    for kind in KINDS {
        let text = "The folder holds configuration.";
        let double = LlmDouble::start(vec![Turn::text(text).in_chunks(4)]);
        let (result, deltas) = chat(&client(&double, kind), &request("model-a")).await;
        assert_eq!(
            result.unwrap(),
            ChatResponse {
                text: text.to_owned(),
                tool_calls: vec![],
                usage: usage(&double, text.len()),
                stop_reason: "end_turn".to_owned(),
                attempts: 1,
            },
            "{kind:?}"
        );
        assert_eq!(
            deltas,
            ["The fold", "er holds", " configu", "ration."],
            "{kind:?}"
        );

        let recorded = double.requests();
        assert_eq!(recorded.len(), 1);
        let sent = &recorded[0];
        assert_eq!(sent.matched, Ok(()));
        assert_eq!(sent.json["model"], "model-a");
        assert_eq!(sent.json["stream"], true);
        match kind {
            ProviderKind::OpenAi => {
                assert_eq!(sent.path, "/v1/chat/completions");
                assert_eq!(sent.header("authorization"), Some("Bearer sk-test"));
                assert_eq!(sent.json["stream_options"], json!({"include_usage": true}));
                assert_eq!(
                    sent.json["messages"][0],
                    json!({"role": "system", "content": "You are terse."})
                );
            }
            ProviderKind::Anthropic => {
                assert_eq!(sent.path, "/v1/messages");
                assert_eq!(sent.header("x-api-key"), Some("sk-test"));
                assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
                assert_eq!(sent.json["system"], "You are terse.");
            }
        }
        assert_eq!(double.remaining(), 0);
    }
}

#[tokio::test]
async fn two_tool_calls_in_one_turn_then_their_results_reach_the_model() {
    for kind in KINDS {
        let double = LlmDouble::start(vec![
            Turn::tools(vec![
                ("run", json!({"cmd": "ls -la /etc"})),
                ("run", json!({"cmd": "cat /etc/hostname"})),
            ])
            .with_text("Looking."),
        ]);
        let client = client(&double, kind);
        let mut request = request("model-a");
        let (result, _) = chat(&client, &request).await;
        let response = result.unwrap();
        let calls = vec![
            ToolCall {
                id: call_id(kind, 0),
                name: "run".to_owned(),
                arguments: r#"{"cmd":"ls -la /etc"}"#.to_owned(),
            },
            ToolCall {
                id: call_id(kind, 1),
                name: "run".to_owned(),
                arguments: r#"{"cmd":"cat /etc/hostname"}"#.to_owned(),
            },
        ];
        let output = "Looking.".len() + calls.iter().map(|c| c.arguments.len()).sum::<usize>();
        assert_eq!(
            response,
            ChatResponse {
                text: "Looking.".to_owned(),
                tool_calls: calls.clone(),
                usage: usage(&double, output),
                stop_reason: "tool_use".to_owned(),
                attempts: 1,
            },
            "{kind:?}"
        );

        // The next turn carries both results, in the provider's own form.
        request.messages.push(Message::Assistant {
            text: response.text,
            tool_calls: response.tool_calls,
        });
        for (n, content) in ["hosts\npasswd", "box"].into_iter().enumerate() {
            request.messages.push(Message::Tool {
                call_id: call_id(kind, n),
                content: content.to_owned(),
                is_error: false,
            });
        }
        let (first, second) = match kind {
            ProviderKind::OpenAi => (
                r#"{"content":"hosts\npasswd","role":"tool","tool_call_id":"call_1_0"}"#,
                r#"{"content":"box","role":"tool","tool_call_id":"call_1_1"}"#,
            ),
            ProviderKind::Anthropic => (
                r#"{"content":"hosts\npasswd","is_error":false,"tool_use_id":"toolu_1_0","type":"tool_result"}"#,
                r#"{"content":"box","is_error":false,"tool_use_id":"toolu_1_1","type":"tool_result"}"#,
            ),
        };
        double.push(Turn::text("Done.").expecting(first).expecting(second));
        let (result, _) = chat(&client, &request).await;
        assert_eq!(result.unwrap().text, "Done.", "{kind:?}");
        let sent = &double.requests()[1];
        assert_eq!(sent.matched, Ok(()), "{kind:?}");
        if kind == ProviderKind::Anthropic {
            // Consecutive tool results are one user message.
            let messages = sent.json["messages"].as_array().unwrap();
            assert_eq!(messages.len(), 3);
            assert_eq!(messages[2]["role"], "user");
            assert_eq!(messages[2]["content"].as_array().unwrap().len(), 2);
        }
    }
}

#[tokio::test]
async fn a_refused_key_is_auth_and_never_shows_the_key() {
    for kind in KINDS {
        let key = "sk-wrong-0123456789abcdef";
        let double = LlmDouble::with_key(vec![Turn::text("never")], "sk-right");
        let client = Client::new(config(&double, kind, Some(key))).unwrap();
        let (result, _) = chat(&client, &request("model-a")).await;
        let error = result.unwrap_err();
        // The double's 401 echoes the key it got, as OpenAI's does.
        let text = format!("{error} {error:?}");
        assert!(!text.contains(key), "{kind:?}: {text}");
        match error {
            LlmError::Auth { status, message } => {
                assert_eq!(status, 401);
                assert_eq!(message, "Incorrect API key provided: <api key>", "{kind:?}");
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        assert!(!format!("{client:?}").contains(key));
        // Not retried, and no turn consumed.
        assert_eq!(double.requests().len(), 1);
        assert_eq!(double.requests()[0].matched, Err("unauthorized".to_owned()));
        assert_eq!(double.remaining(), 1);
    }
}

#[tokio::test]
async fn rate_limited_waits_for_retry_after_then_succeeds() {
    for kind in KINDS {
        let double = LlmDouble::start(vec![
            Turn::status(429, r#"{"error":{"message":"slow down"}}"#).retry_after("1"),
            Turn::text("ok"),
        ]);
        let started = Instant::now();
        let (result, _) = chat(&client(&double, kind), &request("model-a")).await;
        let response = result.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1), "{kind:?}");
        assert_eq!(
            (response.text.as_str(), response.attempts),
            ("ok", 2),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn rate_limited_to_the_end_is_rate_limited() {
    for kind in KINDS {
        let turns = (0..2)
            .map(|_| Turn::status(429, r#"{"error":{"message":"slow down"}}"#).retry_after("0"))
            .collect();
        let double = LlmDouble::start(turns);
        let mut config = config(&double, kind, None);
        config.max_retries = 1;
        let (result, _) = chat(&Client::new(config).unwrap(), &request("model-a")).await;
        match result.unwrap_err() {
            LlmError::RateLimited {
                retry_after,
                message,
            } => {
                assert_eq!(retry_after, Some(Duration::ZERO));
                assert_eq!(message, "slow down");
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        assert_eq!(double.requests().len(), 2);
    }
}

#[tokio::test]
async fn a_server_error_is_retried() {
    for kind in KINDS {
        let double = LlmDouble::start(vec![
            Turn::status(500, r#"{"error":{"message":"boom"}}"#),
            Turn::text("recovered"),
        ]);
        let (result, _) = chat(&client(&double, kind), &request("model-a")).await;
        let response = result.unwrap();
        assert_eq!(
            (response.text.as_str(), response.attempts),
            ("recovered", 2),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn server_errors_every_time_end_as_server_after_max_retries() {
    for kind in KINDS {
        let turns = (0..5)
            .map(|_| {
                Turn::status(
                    503,
                    r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#,
                )
            })
            .collect();
        let double = LlmDouble::start(turns);
        let mut config = config(&double, kind, None);
        config.max_retry_wait = Duration::from_millis(50);
        let (result, _) = chat(&Client::new(config).unwrap(), &request("model-a")).await;
        match result.unwrap_err() {
            LlmError::Server { status, message } => {
                assert_eq!((status, message.as_str()), (503, "busy"))
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        // The first request and three retries.
        assert_eq!(double.requests().len(), 4, "{kind:?}");
        assert_eq!(double.remaining(), 1);
    }
}

#[tokio::test]
async fn an_unknown_model_is_named() {
    for kind in KINDS {
        let double = LlmDouble::start(vec![Turn::unknown_model()]);
        let (result, _) = chat(&client(&double, kind), &request("no-such-model")).await;
        match result.unwrap_err() {
            LlmError::UnknownModel { model, message } => {
                assert_eq!(model, "no-such-model");
                assert!(message.contains("no-such-model"), "{kind:?}: {message}");
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        assert_eq!(double.requests().len(), 1, "not retried");
    }
}

#[tokio::test]
async fn malformed_sse_is_malformed() {
    for kind in KINDS {
        let double = LlmDouble::start(vec![Turn::malformed_sse()]);
        let (result, deltas) = chat(&client(&double, kind), &request("model-a")).await;
        match result.unwrap_err() {
            LlmError::Malformed(message) => assert!(message.contains("not"), "{message}"),
            other => panic!("{kind:?}: {other:?}"),
        }
        assert_eq!(deltas, ["par"], "{kind:?}");
        assert_eq!(double.requests().len(), 1, "not retried");
    }
}

#[tokio::test]
async fn a_stream_without_its_terminator_is_malformed() {
    for kind in KINDS {
        let double = LlmDouble::start(vec![Turn::truncated(), Turn::text("unused")]);
        let (result, deltas) = chat(&client(&double, kind), &request("model-a")).await;
        let expected = match kind {
            ProviderKind::OpenAi => "the stream ended before its terminator (data: [DONE])",
            ProviderKind::Anthropic => "the stream ended before its terminator (message_stop)",
        };
        match result.unwrap_err() {
            LlmError::Malformed(message) => assert_eq!(message, expected),
            other => panic!("{kind:?}: {other:?}"),
        }
        assert_eq!(deltas, ["partial ", "answ"], "{kind:?}");
        assert_eq!(double.remaining(), 1, "malformed answers are not retried");
    }
}

#[tokio::test]
async fn a_hanging_server_times_out_within_the_idle_timeout() {
    for kind in KINDS {
        let double = LlmDouble::start(vec![Turn::hang()]);
        let mut config = config(&double, kind, None);
        config.idle_timeout = Duration::from_millis(300);
        let started = Instant::now();
        let (result, _) = chat(&Client::new(config).unwrap(), &request("model-a")).await;
        let elapsed = started.elapsed();
        match result.unwrap_err() {
            LlmError::Timeout(message) => assert_eq!(
                message,
                "the provider was silent for 300ms (waiting for the response)"
            ),
            other => panic!("{kind:?}: {other:?}"),
        }
        assert!(
            elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );
        assert_eq!(double.requests().len(), 1, "timeouts are not retried");
    }
}

#[tokio::test]
async fn a_stream_that_stalls_times_out_between_events() {
    for kind in KINDS {
        let double = LlmDouble::start(vec![Turn::stall("thinking")]);
        let mut config = config(&double, kind, None);
        config.idle_timeout = Duration::from_millis(300);
        let (result, deltas) = chat(&Client::new(config).unwrap(), &request("model-a")).await;
        match result.unwrap_err() {
            LlmError::Timeout(message) => {
                assert_eq!(
                    message,
                    "the provider was silent for 300ms (reading the stream)"
                )
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        assert_eq!(deltas, ["thinking"], "{kind:?}");
    }
}

#[tokio::test]
async fn a_slow_request_hits_the_whole_request_timeout() {
    for kind in KINDS {
        let double = LlmDouble::start(vec![Turn::text("late").after(Duration::from_secs(3))]);
        let mut config = config(&double, kind, None);
        config.timeout = Duration::from_millis(400);
        let started = Instant::now();
        let (result, _) = chat(&Client::new(config).unwrap(), &request("model-a")).await;
        match result.unwrap_err() {
            LlmError::Timeout(message) => assert_eq!(
                message,
                "the request took longer than 400ms (waiting for the response)"
            ),
            other => panic!("{kind:?}: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn invalid_json_arguments_come_back_verbatim() {
    for kind in KINDS {
        let raw = r#"{"cmd": "ls /etc"#;
        let double = LlmDouble::start(vec![Turn::raw_tools(vec![("run", raw)])]);
        let (result, _) = chat(&client(&double, kind), &request("model-a")).await;
        let response = result.unwrap();
        assert_eq!(
            response.tool_calls,
            [ToolCall {
                id: call_id(kind, 0),
                name: "run".to_owned(),
                arguments: raw.to_owned(),
            }],
            "{kind:?}"
        );

        // Sent back, the call still reaches the model (Anthropic: wrapped in an object).
        let mut request = request("model-a");
        request.messages.push(Message::Assistant {
            text: String::new(),
            tool_calls: response.tool_calls,
        });
        request.messages.push(Message::Tool {
            call_id: call_id(kind, 0),
            content: "arguments are not valid JSON".to_owned(),
            is_error: true,
        });
        let needle = match kind {
            ProviderKind::OpenAi => r#""arguments":"{\"cmd\": \"ls /etc""#,
            ProviderKind::Anthropic => r#""input":{"invalid_arguments":"{\"cmd\": \"ls /etc"}"#,
        };
        double.push(Turn::text("sorry").expecting(needle));
        let (result, _) = chat(&client(&double, kind), &request).await;
        assert_eq!(result.unwrap().text, "sorry", "{kind:?}");
    }
}

#[tokio::test]
async fn a_request_the_turn_did_not_expect_is_a_bad_request() {
    for kind in KINDS {
        let double = LlmDouble::start(vec![Turn::text("x").expecting("kubectl")]);
        let (result, _) = chat(&client(&double, kind), &request("model-a")).await;
        match result.unwrap_err() {
            LlmError::BadRequest { status, message } => {
                assert_eq!(
                    (status, message.as_str()),
                    (400, "the request does not contain \"kubectl\"")
                )
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        assert_eq!(
            double.requests()[0].matched,
            Err("the request does not contain \"kubectl\"".to_owned())
        );
    }
}

#[tokio::test]
async fn a_plain_json_answer_is_accepted() {
    // A server that ignores `stream: true` and answers one JSON document.
    let cases = [
        (
            ProviderKind::OpenAi,
            json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Checking.",
                "tool_calls": [{"id": "c9", "type": "function",
                                "function": {"name": "run", "arguments": "{\"cmd\":\"df\"}"}}]}}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 5}}),
        ),
        (
            ProviderKind::Anthropic,
            json!({"type": "message", "role": "assistant", "stop_reason": "tool_use",
                "content": [{"type": "text", "text": "Checking."},
                            {"type": "tool_use", "id": "c9", "name": "run", "input": {"cmd": "df"}}],
                "usage": {"input_tokens": 11, "output_tokens": 5}}),
        ),
    ];
    for (kind, body) in cases {
        let double = LlmDouble::start(vec![Turn::status(200, body.to_string())]);
        let (result, deltas) = chat(&client(&double, kind), &request("model-a")).await;
        assert_eq!(
            result.unwrap(),
            ChatResponse {
                text: "Checking.".to_owned(),
                tool_calls: vec![ToolCall {
                    id: "c9".to_owned(),
                    name: "run".to_owned(),
                    arguments: r#"{"cmd":"df"}"#.to_owned(),
                }],
                usage: Usage {
                    input_tokens: 11,
                    output_tokens: 5
                },
                stop_reason: "tool_use".to_owned(),
                attempts: 1,
            },
            "{kind:?}"
        );
        assert_eq!(deltas, ["Checking."]);
    }
}

#[tokio::test]
async fn an_unreachable_provider_is_a_transport_error_after_retries() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    for kind in KINDS {
        let mut config = ProviderConfig::new(kind, format!("http://127.0.0.1:{port}/v1"), None);
        config.max_retries = 2;
        config.max_retry_wait = Duration::from_millis(20);
        let (result, _) = chat(&Client::new(config).unwrap(), &request("model-a")).await;
        match result.unwrap_err() {
            LlmError::Transport(message) => assert!(message.contains("onnect"), "{message}"),
            other => panic!("{kind:?}: {other:?}"),
        }
    }
}
