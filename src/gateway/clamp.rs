//! The most a call may answer. A call's cost is known only once it is answered, so the call
//! that crosses a Task's budget could cross it by a whole answer; the gateway lowers the
//! request's output limit to what the budget has left (in tokens, and in dollars at the
//! model's output price), so it crosses it by its prompt at most. Pure: the proxy passes the
//! request's bytes in and forwards what comes out.

use kubetask_api::Limits;
use serde_json::Value;

use super::ledger::Spent;
use super::prices::PriceTable;
use super::usage::Api;

/// The output tokens `limits` leave after `spent` for a call to `model`, or `None` when
/// nothing limits them (no budget; a dollar budget and a model the table does not price).
pub fn allowance(
    limits: &Limits,
    spent: &Spent,
    model: Option<&str>,
    prices: &PriceTable,
) -> Option<u64> {
    let by_tokens = limits.max_tokens.map(|max| {
        u64::try_from(max)
            .unwrap_or(0)
            .saturating_sub(spent.input_tokens.saturating_add(spent.output_tokens))
    });
    let price = model.and_then(|m| prices.price(m)).map(|p| p.output);
    let by_dollars = match (limits.max_cost_usd, price) {
        (Some(max), Some(per_million)) if per_million > 0 => {
            // Micro-dollars left, then tokens at micro-dollars per million tokens.
            let left = ((max * 1e6).floor().max(0.0) as u64).saturating_sub(spent.cost_micro);
            Some(
                u64::try_from(u128::from(left) * 1_000_000 / u128::from(per_million))
                    .unwrap_or(u64::MAX),
            )
        }
        _ => None,
    };
    match (by_tokens, by_dollars) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The model a request names in its body (the Anthropic and OpenAI APIs; Gemini names it in
/// its path).
pub fn model_of_body(body: &Value) -> Option<&str> {
    body.get("model").and_then(Value::as_str)
}

/// Lowers the output limit of `request` (an `api` request body) to `allowance` (at least one
/// token: a budget with nothing left refuses the call before it is made); returns whether it
/// changed. Each API's own field: Anthropic `max_tokens`, OpenAI Responses
/// `max_output_tokens`, Chat Completions `max_completion_tokens` (and the older `max_tokens`
/// when the request sets it), Gemini `generationConfig.maxOutputTokens`.
pub fn clamp(api: Api, request: &mut Value, allowance: u64) -> bool {
    let allowance = allowance.max(1);
    let Some(object) = request.as_object_mut() else {
        return false;
    };
    // Set to the allowance unless already at or under it.
    let lower = |object: &mut serde_json::Map<String, Value>, field: &str| {
        if object
            .get(field)
            .and_then(Value::as_u64)
            .is_some_and(|set| set <= allowance)
        {
            return false;
        }
        object.insert(field.to_owned(), Value::from(allowance));
        true
    };
    match api {
        Api::AnthropicMessages => lower(object, "max_tokens"),
        Api::OpenAiResponses => lower(object, "max_output_tokens"),
        Api::OpenAiChat if object.contains_key("max_tokens") => lower(object, "max_tokens"),
        Api::OpenAiChat => lower(object, "max_completion_tokens"),
        Api::Gemini => {
            let config = object
                .entry("generationConfig")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            config
                .as_object_mut()
                .is_some_and(|config| lower(config, "maxOutputTokens"))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn table() -> PriceTable {
        PriceTable::parse("models:\n  claude-sonnet-4*: {input: 3, output: 15}\n")
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn spent(tokens: u64, micro: u64) -> Spent {
        Spent {
            input_tokens: tokens,
            output_tokens: 0,
            cost_micro: micro,
            unpriced: 0,
        }
    }

    #[test]
    fn what_is_left_in_tokens_and_in_dollars_at_the_output_price() {
        let tokens = Limits {
            max_tokens: Some(3000),
            max_cost_usd: None,
        };
        assert_eq!(
            allowance(&tokens, &spent(2598, 0), None, &table()),
            Some(402)
        );
        assert_eq!(allowance(&tokens, &spent(4000, 0), None, &table()), Some(0));
        // $0.015 left at $15 per million output tokens: 1,000 tokens.
        let dollars = Limits {
            max_tokens: None,
            max_cost_usd: Some(0.02),
        };
        let near = spent(0, 5_000);
        assert_eq!(
            allowance(&dollars, &near, Some("claude-sonnet-4-5"), &table()),
            Some(1000)
        );
        assert_eq!(
            allowance(&dollars, &near, Some("unpriced-model"), &table()),
            None,
            "no price: only the refusal after the call limits it"
        );
        let both = Limits {
            max_tokens: Some(1500),
            max_cost_usd: Some(0.02),
        };
        assert_eq!(
            allowance(
                &both,
                &spent(1000, 5_000),
                Some("claude-sonnet-4-5"),
                &table()
            ),
            Some(500),
            "the lower of the two"
        );
        assert_eq!(allowance(&Limits::default(), &near, None, &table()), None);
    }

    #[test]
    fn each_apis_output_limit_is_lowered_never_raised() {
        let mut anthropic = json!({"model": "m", "max_tokens": 32000});
        assert!(clamp(Api::AnthropicMessages, &mut anthropic, 402));
        assert_eq!(anthropic["max_tokens"], 402);
        let mut small = json!({"model": "m", "max_tokens": 64});
        assert!(
            !clamp(Api::AnthropicMessages, &mut small, 402),
            "already lower"
        );
        assert_eq!(small["max_tokens"], 64);
        let mut responses = json!({"model": "gpt-5"});
        assert!(clamp(Api::OpenAiResponses, &mut responses, 10));
        assert_eq!(responses["max_output_tokens"], 10);
        let mut chat = json!({"model": "gpt-5", "max_tokens": 100});
        assert!(clamp(Api::OpenAiChat, &mut chat, 10));
        assert_eq!(chat, json!({"model": "gpt-5", "max_tokens": 10}));
        let mut chat = json!({"model": "gpt-5"});
        assert!(clamp(Api::OpenAiChat, &mut chat, 10));
        assert_eq!(chat["max_completion_tokens"], 10);
        let mut gemini = json!({"contents": [], "generationConfig": {"temperature": 0}});
        assert!(clamp(Api::Gemini, &mut gemini, 7));
        assert_eq!(
            gemini["generationConfig"],
            json!({"temperature": 0, "maxOutputTokens": 7})
        );
        let mut nothing_left = json!({"max_tokens": 100});
        assert!(clamp(Api::AnthropicMessages, &mut nothing_left, 0));
        assert_eq!(nothing_left["max_tokens"], 1, "at least one token");
        let mut not_json_object = json!([1, 2]);
        assert!(!clamp(Api::AnthropicMessages, &mut not_json_object, 5));
    }
}
