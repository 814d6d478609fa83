//! What a model API reports it used: the tokens of one response, read from its JSON body or,
//! for a streamed one, from its server-sent events as they pass (the final usage events), for
//! the four APIs the gateway fronts — Anthropic Messages, OpenAI Chat Completions and
//! Responses, and Gemini. Pure: the gateway feeds bytes in and reads the usage out; nothing
//! here holds a response back.

use serde_json::Value;

/// The model APIs the gateway meters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/messages`.
    AnthropicMessages,
    /// `POST /v1/chat/completions`.
    OpenAiChat,
    /// `POST /v1/responses`.
    OpenAiResponses,
    /// `POST /v1beta/models/{model}:generateContent` (or `:streamGenerateContent`).
    Gemini,
}

impl Api {
    /// The API a request path is for; `None` for a path the gateway does not meter.
    pub fn of_path(path: &str) -> Option<Api> {
        let path = path.split('?').next().unwrap_or_default();
        match path {
            "/v1/messages" => Some(Api::AnthropicMessages),
            "/v1/chat/completions" => Some(Api::OpenAiChat),
            "/v1/responses" => Some(Api::OpenAiResponses),
            _ if (path.starts_with("/v1beta/models/") || path.starts_with("/v1/models/"))
                && (path.ends_with(":generateContent")
                    || path.ends_with(":streamGenerateContent")) =>
            {
                Some(Api::Gemini)
            }
            _ => None,
        }
    }

    /// The model a Gemini request names in its path (`/v1beta/models/gemini-2.5-pro:...`).
    pub fn model_of_path(self, path: &str) -> Option<String> {
        if self != Api::Gemini {
            return None;
        }
        let rest = path.split("/models/").nth(1)?;
        Some(rest.split(':').next()?.to_owned()).filter(|m| !m.is_empty())
    }
}

/// The tokens of one response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// The model that answered, as the response names it.
    pub model: Option<String>,
    /// Input tokens billed at the input price (cache reads and writes excluded).
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the provider's prompt cache (Anthropic).
    pub cache_write_tokens: u64,
}

impl Usage {
    /// Every token, for token budgets.
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens
    }
}

fn count(value: &Value) -> u64 {
    value.as_u64().unwrap_or_default()
}

/// The usage in a whole (not streamed) JSON response of `api`; `None` when it reports none.
pub fn from_body(api: Api, body: &[u8]) -> Option<Usage> {
    let value: Value = serde_json::from_slice(body).ok()?;
    from_value(api, &value)
}

fn from_value(api: Api, value: &Value) -> Option<Usage> {
    let model = |v: &Value| v.as_str().map(str::to_owned);
    match api {
        Api::AnthropicMessages => {
            let usage = value.get("usage")?;
            Some(Usage {
                model: model(&value["model"]),
                input_tokens: count(&usage["input_tokens"]),
                output_tokens: count(&usage["output_tokens"]),
                cache_read_tokens: count(&usage["cache_read_input_tokens"]),
                cache_write_tokens: count(&usage["cache_creation_input_tokens"]),
            })
        }
        Api::OpenAiChat => {
            let usage = value.get("usage").filter(|u| u.is_object())?;
            let cached = count(&usage["prompt_tokens_details"]["cached_tokens"]);
            Some(Usage {
                model: model(&value["model"]),
                input_tokens: count(&usage["prompt_tokens"]).saturating_sub(cached),
                output_tokens: count(&usage["completion_tokens"]),
                cache_read_tokens: cached,
                cache_write_tokens: 0,
            })
        }
        Api::OpenAiResponses => {
            let usage = value.get("usage").filter(|u| u.is_object())?;
            let cached = count(&usage["input_tokens_details"]["cached_tokens"]);
            Some(Usage {
                model: model(&value["model"]),
                input_tokens: count(&usage["input_tokens"]).saturating_sub(cached),
                output_tokens: count(&usage["output_tokens"]),
                cache_read_tokens: cached,
                cache_write_tokens: 0,
            })
        }
        Api::Gemini => {
            let usage = value.get("usageMetadata")?;
            let cached = count(&usage["cachedContentTokenCount"]);
            Some(Usage {
                model: model(&value["modelVersion"]),
                input_tokens: count(&usage["promptTokenCount"]).saturating_sub(cached),
                // Thinking tokens are billed as output.
                output_tokens: count(&usage["candidatesTokenCount"])
                    + count(&usage["thoughtsTokenCount"]),
                cache_read_tokens: cached,
                cache_write_tokens: 0,
            })
        }
    }
}

/// Reads the usage of a streamed (server-sent events) response as its bytes pass, in chunks
/// of any size: lines are split as they complete, a partial line kept for the next chunk
/// (bounded: a line longer than [`MAX_LINE`] is skipped, not buffered).
#[derive(Debug)]
pub struct StreamMeter {
    api: Api,
    line: Vec<u8>,
    overlong: bool,
    usage: Option<Usage>,
}

/// The longest SSE line the meter buffers (a usage event is far smaller).
pub const MAX_LINE: usize = 1024 * 1024;

impl StreamMeter {
    pub fn new(api: Api) -> Self {
        StreamMeter {
            api,
            line: Vec::new(),
            overlong: false,
            usage: None,
        }
    }

    /// Reads `chunk` (the bytes are passed on by the caller, untouched).
    pub fn feed(&mut self, chunk: &[u8]) {
        for &byte in chunk {
            if byte == b'\n' {
                if !self.overlong {
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line);
                }
                self.line.clear();
                self.overlong = false;
            } else if self.line.len() < MAX_LINE {
                self.line.push(byte);
            } else {
                self.overlong = true;
            }
        }
    }

    fn line_done(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let Ok(value) = serde_json::from_slice::<Value>(data.trim_ascii()) else {
            return; // `[DONE]`, keep-alives
        };
        match self.api {
            Api::AnthropicMessages => match value["type"].as_str() {
                // Input (and cache) tokens, and the model.
                Some("message_start") => {
                    if let Some(usage) = from_value(self.api, &value["message"]) {
                        self.usage = Some(usage);
                    }
                }
                // Output tokens, cumulative.
                Some("message_delta") => {
                    let usage = self.usage.get_or_insert_with(Usage::default);
                    if let Some(output) = value["usage"]["output_tokens"].as_u64() {
                        usage.output_tokens = output;
                    }
                    if let Some(input) = value["usage"]["input_tokens"].as_u64() {
                        usage.input_tokens = input;
                    }
                }
                _ => {}
            },
            // The last chunk carries the usage (with `stream_options.include_usage`).
            Api::OpenAiChat => {
                if let Some(usage) = from_value(self.api, &value) {
                    self.usage = Some(usage);
                }
            }
            Api::OpenAiResponses => {
                if value["type"].as_str().is_some_and(|t| {
                    matches!(
                        t,
                        "response.completed" | "response.incomplete" | "response.failed"
                    )
                }) && let Some(usage) = from_value(self.api, &value["response"])
                {
                    self.usage = Some(usage);
                }
            }
            // Every chunk carries the usage so far: the last one counts.
            Api::Gemini => {
                if let Some(usage) = from_value(self.api, &value) {
                    self.usage = Some(usage);
                }
            }
        }
    }

    /// The usage the stream reported, once it ended (a last line without its newline read
    /// too); `None` when it reported none — a stream cut before its usage events.
    pub fn finish(mut self) -> Option<Usage> {
        if !self.line.is_empty() && !self.overlong {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line);
        }
        self.usage
    }
}

#[cfg(test)]
mod tests;
