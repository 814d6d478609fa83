//! Bodies shaped as the providers document them (their API references' examples, trimmed to
//! the fields that matter and with the documented values).

use super::*;

/// Feeds `stream` in chunks of `size` bytes, as the network might cut it.
fn metered(api: Api, stream: &str, size: usize) -> Option<Usage> {
    let mut meter = StreamMeter::new(api);
    for chunk in stream.as_bytes().chunks(size) {
        meter.feed(chunk);
    }
    meter.finish()
}

#[test]
fn paths_name_their_api() {
    assert_eq!(Api::of_path("/v1/messages"), Some(Api::AnthropicMessages));
    assert_eq!(
        Api::of_path("/v1/messages?beta=true"),
        Some(Api::AnthropicMessages)
    );
    assert_eq!(Api::of_path("/v1/chat/completions"), Some(Api::OpenAiChat));
    assert_eq!(Api::of_path("/v1/responses"), Some(Api::OpenAiResponses));
    let gemini = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse";
    assert_eq!(Api::of_path(gemini), Some(Api::Gemini));
    assert_eq!(
        Api::Gemini.model_of_path(gemini).as_deref(),
        Some("gemini-2.5-pro")
    );
    assert_eq!(
        Api::of_path("/v1/models"),
        None,
        "listing models is not metered"
    );
    assert_eq!(Api::of_path("/v1beta/models/x:countTokens"), None);
}

#[test]
fn anthropic_messages_whole_and_streamed() {
    let body = br#"{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant",
        "model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hi!"}],
        "stop_reason":"end_turn","usage":{"input_tokens":2095,"output_tokens":503,
        "cache_creation_input_tokens":100,"cache_read_input_tokens":2000}}"#;
    let usage = from_body(Api::AnthropicMessages, body).unwrap_or_default();
    assert_eq!(
        usage,
        Usage {
            model: Some("claude-sonnet-4-5-20250929".to_owned()),
            input_tokens: 2095,
            output_tokens: 503,
            cache_read_tokens: 2000,
            cache_write_tokens: 100,
        }
    );
    assert_eq!(usage.total(), 4698);
    let stream = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";
    for size in [1, 7, 64, stream.len()] {
        let usage = metered(Api::AnthropicMessages, stream, size).unwrap_or_default();
        assert_eq!(
            (usage.input_tokens, usage.output_tokens),
            (25, 15),
            "chunks of {size}"
        );
        assert_eq!(usage.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    }
    // Cut before its usage: nothing reported (the gateway counts it as unknown, never free).
    let cut = &stream[..stream.find("event: message_start").unwrap_or(0) + 10];
    assert_eq!(metered(Api::AnthropicMessages, cut, 16), None);
}

#[test]
fn openai_chat_whole_and_streamed_with_its_final_usage_chunk() {
    let body = br#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion",
        "created":1741570283,"model":"gpt-4o-2024-08-06","choices":[],
        "usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,
        "prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0}}}"#;
    let usage = from_body(Api::OpenAiChat, body).unwrap_or_default();
    assert_eq!(
        (
            usage.input_tokens,
            usage.cache_read_tokens,
            usage.output_tokens
        ),
        (93, 1024, 46)
    );
    let stream = "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}],\"usage\":null}\n\n\
data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}}\n\n\
data: [DONE]\n\n";
    let usage = metered(Api::OpenAiChat, stream, 5).unwrap_or_default();
    assert_eq!((usage.input_tokens, usage.output_tokens), (9, 12));
    // Without `include_usage` a stream reports nothing.
    let bare = stream.replace(
        ",\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}",
        "",
    );
    assert_eq!(metered(Api::OpenAiChat, &bare, 5), None);
}

#[test]
fn openai_responses_whole_and_streamed() {
    let body =
        br#"{"id":"resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b","object":"response",
        "model":"gpt-4.1-2025-04-14","output":[],"usage":{"input_tokens":36,
        "input_tokens_details":{"cached_tokens":0},"output_tokens":87,
        "output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}"#;
    let usage = from_body(Api::OpenAiResponses, body).unwrap_or_default();
    assert_eq!((usage.input_tokens, usage.output_tokens), (36, 87));
    let stream = "event: response.created\n\
data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4.1\",\"usage\":null}}\n\n\
event: response.output_text.delta\n\
data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n\
event: response.completed\n\
data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4.1\",\"usage\":{\"input_tokens\":37,\"output_tokens\":11,\"input_tokens_details\":{\"cached_tokens\":0},\"total_tokens\":48}}}\n\n";
    let usage = metered(Api::OpenAiResponses, stream, 3).unwrap_or_default();
    assert_eq!((usage.input_tokens, usage.output_tokens), (37, 11));
}

#[test]
fn gemini_whole_and_streamed_counts_thoughts_as_output() {
    let body =
        br#"{"candidates":[],"usageMetadata":{"promptTokenCount":11,"candidatesTokenCount":25,
        "thoughtsTokenCount":40,"totalTokenCount":76},"modelVersion":"gemini-2.5-flash"}"#;
    let usage = from_body(Api::Gemini, body).unwrap_or_default();
    assert_eq!((usage.input_tokens, usage.output_tokens), (11, 65));
    assert_eq!(usage.model.as_deref(), Some("gemini-2.5-flash"));
    let stream = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"The\"}]}}],\"usageMetadata\":{\"promptTokenCount\":11,\"totalTokenCount\":11},\"modelVersion\":\"gemini-2.5-pro\"}\r\n\r\n\
data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\" end\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":11,\"candidatesTokenCount\":30,\"totalTokenCount\":41},\"modelVersion\":\"gemini-2.5-pro\"}\r\n\r\n";
    let usage = metered(Api::Gemini, stream, 9).unwrap_or_default();
    assert_eq!((usage.input_tokens, usage.output_tokens), (11, 30));
}

#[test]
fn an_overlong_line_is_skipped_not_buffered() {
    let mut meter = StreamMeter::new(Api::OpenAiChat);
    meter.feed(b"data: ");
    meter.feed(&vec![b'x'; MAX_LINE + 10]);
    meter.feed(
        b"\ndata: {\"model\":\"m\",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n",
    );
    assert!(meter.line.capacity() <= MAX_LINE * 2);
    assert_eq!(meter.finish().map(|u| u.output_tokens), Some(2));
}
