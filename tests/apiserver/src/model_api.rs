//! A fake model API on loopback, for the gateway's tests: Anthropic's `/v1/messages`, OpenAI's
//! `/v1/chat/completions` and Gemini's `:generateContent`, whole or streamed (server-sent
//! events in chunks), with the usage each provider documents. It records every request (the
//! key it came with), answers `401` to any key but the one it was started with, and can hold a
//! stream after its first event until the test releases it — so a test proves the gateway
//! passes a stream through as it comes instead of buffering it.

use std::io::Write as _;
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};

use serde_json::{Value, json};

/// A request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub path: String,
    /// The key it came with (`x-api-key`, `Authorization: Bearer`, `x-goog-api-key`).
    pub key: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    hold: bool,
    released: bool,
    /// Statuses the next requests get instead of an answer, in order.
    failures: std::collections::VecDeque<u16>,
    /// The next stream stops after its first event, its connection closed mid-way.
    cut: bool,
}

/// The fake, serving until the process ends.
#[derive(Clone)]
pub struct ModelApi {
    port: u16,
    key: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl ModelApi {
    /// Starts a fake that takes `key` only.
    pub fn start(key: &str) -> ModelApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let api = ModelApi {
            port,
            key: key.to_owned(),
            state: Arc::default(),
        };
        let serving = api.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let api = serving.clone();
                std::thread::spawn(move || api.serve(stream));
            }
        });
        api
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Streams stop after their first event until [`ModelApi::release`].
    pub fn hold_streams(&self) {
        let mut state = self.lock();
        state.hold = true;
        state.released = false;
    }

    /// The next requests get these statuses (`429`, `529`, `500`...) in the provider's error
    /// shape, one each, in order.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.lock().failures.extend(statuses);
    }

    /// The next stream's connection is closed after its first event.
    pub fn cut_next_stream(&self) {
        self.lock().cut = true;
    }

    /// Lets held streams go on.
    pub fn release(&self) {
        self.lock().released = true;
        self.state.1.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn serve(&self, stream: std::net::TcpStream) {
        let Some(request) = crate::http1::read(&stream) else {
            return;
        };
        let header = |name: &str| request.headers.get(name).cloned();
        let key = header("x-api-key")
            .or_else(|| {
                header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned))
            })
            .or_else(|| header("x-goog-api-key"));
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let path = request
            .target
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        self.lock().received.push(Received {
            path: path.clone(),
            key: key.clone(),
            body: body.clone(),
        });
        let mut stream = stream;
        if key.as_deref() != Some(self.key.as_str()) {
            let answer = json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}).to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            return;
        }
        let failure = self.lock().failures.pop_front();
        if let Some(status) = failure {
            let reason = match status {
                429 => "Too Many Requests",
                529 => "Overloaded",
                _ => "Internal Server Error",
            };
            let kind = match status {
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            let answer =
                json!({"type": "error", "error": {"type": kind, "message": reason}}).to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nRetry-After: 0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            return;
        }
        let streamed =
            body["stream"].as_bool() == Some(true) || path.ends_with(":streamGenerateContent");
        let tool = shell_tool_to_call(&body);
        let events: Vec<String> = match (path.as_str(), streamed) {
            ("/v1/messages", false) if let Some(tool) = &tool => {
                return whole(
                    &mut stream,
                    &json!({"id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929", "content": [{"type": "tool_use", "id": "toolu_01", "name": tool, "input": SHELL_INPUT.clone()}],
                    "stop_reason": "tool_use",
                    "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}),
                );
            }
            ("/v1/messages", true) if let Some(tool) = &tool => vec![
                sse(
                    "message_start",
                    &json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
                ),
                sse(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_01", "name": tool, "input": {}}}),
                ),
                sse(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": SHELL_INPUT.to_string()}}),
                ),
                sse(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": 0}),
                ),
                sse(
                    "message_delta",
                    &json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 15}}),
                ),
                sse("message_stop", &json!({"type": "message_stop"})),
            ],
            // A response without usage, as a misbehaving provider or proxy might send.
            ("/v1/messages", false) if body["model"] == NO_USAGE_MODEL => {
                return whole(
                    &mut stream,
                    &json!({"id": "msg_2", "type": "message", "role": "assistant",
                    "content": [{"type": "text", "text": ANSWER}], "stop_reason": "end_turn"}),
                );
            }
            ("/v1/messages", false) => {
                return whole(
                    &mut stream,
                    &json!({"id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929", "content": [{"type": "text", "text": "Done."}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}),
                );
            }
            ("/v1/messages", true) => vec![
                sse(
                    "message_start",
                    &json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}),
                ),
                sse(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ),
                sse(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ANSWER}}),
                ),
                sse(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": 0}),
                ),
                sse(
                    "message_delta",
                    &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}}),
                ),
                sse("message_stop", &json!({"type": "message_stop"})),
            ],
            ("/v1/chat/completions", false) => {
                return whole(
                    &mut stream,
                    &json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-5-mini", "choices": [],
                    "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29}}),
                );
            }
            ("/v1/chat/completions", true) => vec![
                format!(
                    "data: {}\n\n",
                    json!({"id": "c", "model": "gpt-5-mini", "choices": [{"index": 0, "delta": {"content": "Hi"}}], "usage": null})
                ),
                format!(
                    "data: {}\n\n",
                    json!({"id": "c", "model": "gpt-5-mini", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}})
                ),
                "data: [DONE]\n\n".to_owned(),
            ],
            // OpenAI Responses, streamed (what Codex sends): the answer as one message item, or
            // first a call of Codex's `clock.sleep` tool (one millisecond), so a real Codex run
            // takes two calls as real work does.
            ("/v1/responses", true) => {
                let item = if codex_sleep_to_call(&body) {
                    json!({"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1",
                        "namespace": "clock", "name": "sleep", "arguments": "{\"duration_ms\":1}"})
                } else {
                    json!({"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": ANSWER, "annotations": []}]})
                };
                let mut events = vec![sse(
                    "response.created",
                    &json!({"type": "response.created", "response": {"id": "resp_1", "model": "gpt-5-codex", "status": "in_progress", "output": []}}),
                )];
                if item["type"] == "message" {
                    events.push(sse(
                        "response.output_item.added",
                        &json!({"type": "response.output_item.added", "output_index": 0, "item": {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}}),
                    ));
                    events.push(sse(
                        "response.output_text.delta",
                        &json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": ANSWER}),
                    ));
                }
                events.extend([
                    sse(
                        "response.output_item.done",
                        &json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
                    ),
                    sse(
                        "response.completed",
                        &json!({"type": "response.completed", "response": {"id": "resp_1", "model": "gpt-5-codex", "status": "completed", "output": [item],
                            "usage": {"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1240}}}),
                    ),
                ]);
                events
            }
            (gemini, false) if gemini.ends_with(":generateContent") => {
                // A request for JSON (Gemini CLI's model router asks for a complexity score)
                // gets JSON of the schema it gives, as the real API answers.
                let config = &body["generationConfig"];
                let text = if config["responseMimeType"] == "application/json" {
                    let schema = config
                        .get("responseJsonSchema")
                        .or_else(|| config.get("responseSchema"))
                        .unwrap_or(&Value::Null);
                    example_of(schema).to_string()
                } else {
                    ANSWER.to_owned()
                };
                return whole(
                    &mut stream,
                    &json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
                    "modelVersion": "gemini-2.5-flash",
                    "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": 25, "totalTokenCount": 36}}),
                );
            }
            (gemini, true) if gemini.ends_with(":streamGenerateContent") => vec![
                format!(
                    "data: {}\r\n\r\n",
                    json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ANSWER}]}, "index": 0}], "modelVersion": "gemini-2.5-pro"})
                ),
                format!(
                    "data: {}\r\n\r\n",
                    json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP", "index": 0}],
                        "modelVersion": "gemini-2.5-pro",
                        "usageMetadata": {"promptTokenCount": 3000, "candidatesTokenCount": 20, "totalTokenCount": 3020}})
                ),
            ],
            _ => {
                let answer = json!({"error": "not found"}).to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                return;
            }
        };
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        let cut = std::mem::take(&mut self.lock().cut);
        for (i, event) in events.iter().enumerate() {
            let _ = write!(stream, "{:x}\r\n{event}\r\n", event.len());
            let _ = stream.flush();
            if i == 0 && cut {
                // Closed mid-way: no further event, no end of the chunked body.
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
            if i == 0 {
                let (lock, released) = &*self.state;
                let mut state = lock
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                while state.hold && !state.released {
                    state = released
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
        }
        let _ = write!(stream, "0\r\n\r\n");
    }
}

/// A value of JSON schema `schema` (Gemini's upper-case types or JSON Schema's): every
/// property of an object, the first of an enum, one item of an array.
fn example_of(schema: &Value) -> Value {
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = schema["type"].as_str().unwrap_or("object").to_lowercase();
    match kind.as_str() {
        "string" => Value::from("fake"),
        "integer" => Value::from(1),
        "number" => Value::from(1.0),
        "boolean" => Value::from(true),
        "array" => Value::Array(vec![example_of(&schema["items"])]),
        _ => Value::Object(
            schema["properties"]
                .as_object()
                .map(|properties| {
                    properties
                        .iter()
                        .map(|(name, property)| (name.clone(), example_of(property)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
    }
}

/// The shell command the fake asks an agent to run once.
static SHELL_INPUT: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| json!({"command": "echo kubetask", "description": "Print a word"}));

/// The shell tool of an Anthropic request (Claude Code's `Bash`, OpenCode's `bash`) when no
/// tool has run yet in the conversation: the fake then asks for it, so a real CLI's run takes
/// two calls (a tool call, then the answer) as real work does.
fn shell_tool_to_call(body: &Value) -> Option<String> {
    let tool = body["tools"]
        .as_array()?
        .iter()
        .filter_map(|t| t["name"].as_str())
        .find(|name| matches!(*name, "Bash" | "bash"))?;
    let ran = body["messages"].as_array()?.iter().any(|message| {
        message["content"]
            .as_array()
            .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
    });
    (!ran).then(|| tool.to_owned())
}

/// Whether a Responses request is Codex's (it offers Codex's `clock.sleep` tool, among the
/// `additional_tools` of its input) and no tool has run yet in the conversation.
fn codex_sleep_to_call(body: &Value) -> bool {
    let Some(input) = body["input"].as_array() else {
        return false;
    };
    let offers_sleep = input.iter().any(|item| {
        item["type"] == "additional_tools"
            && item["tools"].as_array().is_some_and(|namespaces| {
                namespaces.iter().any(|namespace| {
                    namespace["name"] == "clock"
                        && namespace["tools"]
                            .as_array()
                            .is_some_and(|tools| tools.iter().any(|t| t["name"] == "sleep"))
                })
            })
    });
    let ran = input
        .iter()
        .any(|item| item["type"] == "function_call_output");
    offers_sleep && !ran
}

/// The model whose (whole) Anthropic answers carry no usage.
pub const NO_USAGE_MODEL: &str = "no-usage-model";

/// What every model answers.
pub const ANSWER: &str = "Hello from the fake model API.";

fn sse(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

fn whole(stream: &mut std::net::TcpStream, body: &Value) {
    let text = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}
