//! The price table: what a million tokens of each model cost, in US dollars, as a cluster admin
//! writes it (a ConfigMap's `prices.yaml`; [`DEFAULT_PRICES`] ships with KubeTask). Money is
//! counted in micro-dollars (integers), never in floating point; a response is priced from its
//! [`Usage`], and an unknown model is counted in tokens and flagged — never free.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::usage::Usage;

/// The prices KubeTask ships: list prices per million tokens (standard tier, no batch or
/// long-context surcharges) as the providers published them when this table was written.
/// Check them against your contract; the ConfigMap overrides them.
pub const DEFAULT_PRICES: &str = include_str!("default-prices.yaml");

/// A price in micro-dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    /// Tokens read from the prompt cache (default: the input price).
    pub cache_read: u64,
    /// Tokens written to the prompt cache (default: the input price).
    pub cache_write: u64,
}

/// A price table: model names, or prefixes ending in `*`, and their prices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PriceTable {
    exact: BTreeMap<String, Price>,
    /// Longest prefix first.
    prefixes: Vec<(String, Price)>,
}

/// Why a price table is refused (the previous one is kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PriceError {
    /// The path of the bad field, e.g. `models["gpt-5"].output`.
    pub field: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    models: BTreeMap<String, RawPrice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPrice {
    input: serde_yaml::Value,
    output: serde_yaml::Value,
    #[serde(default)]
    cache_read: Option<serde_yaml::Value>,
    #[serde(default)]
    cache_write: Option<serde_yaml::Value>,
}

/// The most a million tokens may cost, in dollars (a typo guard).
const MAX_PRICE: u64 = 10_000;

/// Dollars (a number or a decimal string, at most six decimals) as micro-dollars.
fn micro_dollars(value: &serde_yaml::Value, field: &str) -> Result<u64, PriceError> {
    let bad = |message: &str| PriceError {
        field: field.to_owned(),
        message: message.to_owned(),
    };
    let text = match value {
        serde_yaml::Value::String(text) => text.trim().to_owned(),
        serde_yaml::Value::Number(number) => number.to_string(),
        _ => return Err(bad("must be a price in dollars, such as 3 or \"0.30\"")),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad(&format!(
            "{text:?} is not a price in dollars (digits, one point, no sign)"
        )));
    }
    if fraction.len() > 6 {
        return Err(bad("at most six decimals (micro-dollars)"));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| bad("too large a number of dollars"))?
    };
    if whole > MAX_PRICE {
        return Err(bad(&format!(
            "over ${MAX_PRICE} per million tokens: a typo?"
        )));
    }
    let fraction: u64 = format!("{fraction:0<6}").parse().unwrap_or_default();
    Ok(whole * 1_000_000 + fraction)
}

impl PriceTable {
    /// Parses a table (`models: {<model or prefix*>: {input, output, cacheRead, cacheWrite}}`,
    /// dollars per million tokens); the first bad field is the error.
    pub fn parse(text: &str) -> Result<PriceTable, PriceError> {
        let raw: RawTable = serde_yaml::from_str(text).map_err(|e| PriceError {
            field: "prices.yaml".to_owned(),
            message: e.to_string(),
        })?;
        let mut table = PriceTable::default();
        for (model, raw) in raw.models {
            let field = |name: &str| format!("models[{model:?}].{name}");
            if model.is_empty()
                || model.trim() != model
                || model.matches('*').count() > 1
                || (model.contains('*') && !model.ends_with('*'))
            {
                return Err(PriceError {
                    field: format!("models[{model:?}]"),
                    message: "a model name, or a prefix ending in a single *".to_owned(),
                });
            }
            let input = micro_dollars(&raw.input, &field("input"))?;
            let price = Price {
                input,
                output: micro_dollars(&raw.output, &field("output"))?,
                cache_read: raw
                    .cache_read
                    .as_ref()
                    .map(|v| micro_dollars(v, &field("cacheRead")))
                    .transpose()?
                    .unwrap_or(input),
                cache_write: raw
                    .cache_write
                    .as_ref()
                    .map(|v| micro_dollars(v, &field("cacheWrite")))
                    .transpose()?
                    .unwrap_or(input),
            };
            match model.strip_suffix('*') {
                Some(prefix) => table.prefixes.push((prefix.to_owned(), price)),
                None => {
                    table.exact.insert(model, price);
                }
            }
        }
        table
            .prefixes
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Ok(table)
    }

    /// The shipped table.
    pub fn defaults() -> PriceTable {
        // Tested to parse (`the_shipped_table_parses`).
        PriceTable::parse(DEFAULT_PRICES).unwrap_or_default()
    }

    /// The price of `model`: its own entry, else the longest prefix that matches it.
    pub fn price(&self, model: &str) -> Option<Price> {
        self.exact.get(model).copied().or_else(|| {
            self.prefixes
                .iter()
                .find(|(prefix, _)| model.starts_with(prefix.as_str()))
                .map(|(_, price)| *price)
        })
    }

    /// What `usage` cost, in micro-dollars (rounded up); `None` for a model the table does not
    /// price (or a response that named none): count its tokens and flag it.
    pub fn cost(&self, usage: &Usage) -> Option<u64> {
        let price = self.price(usage.model.as_deref()?)?;
        let part = |tokens: u64, per_million: u64| u128::from(tokens) * u128::from(per_million);
        let total = part(usage.input_tokens, price.input)
            + part(usage.output_tokens, price.output)
            + part(usage.cache_read_tokens, price.cache_read)
            + part(usage.cache_write_tokens, price.cache_write);
        u64::try_from(total.div_ceil(1_000_000)).ok()
    }
}

/// Micro-dollars as dollars with six decimals, trailing zeros trimmed to two (`0.42`,
/// `0.004215`), as `status.usage.cost` writes them.
pub fn dollars(micro: u64) -> String {
    let text = format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000);
    let trimmed = text.trim_end_matches('0');
    let decimals = trimmed.split_once('.').map_or(0, |(_, f)| f.len());
    if decimals < 2 {
        format!("{}.{:02}", micro / 1_000_000, micro % 1_000_000 / 10_000)
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(model: &str, input: u64, output: u64) -> Usage {
        Usage {
            model: Some(model.to_owned()),
            input_tokens: input,
            output_tokens: output,
            ..Usage::default()
        }
    }

    #[test]
    fn the_shipped_table_parses() {
        let table = PriceTable::parse(DEFAULT_PRICES).unwrap_or_else(|e| panic!("{e}"));
        for model in ["claude-sonnet-4-5-20250929", "gpt-5", "gemini-2.5-pro"] {
            assert!(table.price(model).is_some(), "{model}");
        }
    }

    #[test]
    fn prices_are_exact_or_the_longest_prefix_and_money_is_integers() {
        let table = PriceTable::parse(
            r#"
models:
  claude-sonnet-4*: {input: 3, output: 15, cacheRead: "0.30", cacheWrite: "3.75"}
  claude-sonnet-4-5*: {input: "3.00", output: "15"}
  gpt-5: {input: "1.25", output: 10}
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // 1,000 input and 2,000 output tokens of a $1.25/$10 model: $0.00125 + $0.02.
        assert_eq!(table.cost(&usage("gpt-5", 1000, 2000)), Some(21_250));
        assert_eq!(dollars(21_250), "0.02125");
        assert_eq!(dollars(420_000), "0.42");
        assert_eq!(dollars(5_000_000), "5.00");
        // The longer prefix wins; its cache prices default to its input price.
        let cached = Usage {
            cache_read_tokens: 1_000_000,
            ..usage("claude-sonnet-4-5-20250929", 0, 0)
        };
        assert_eq!(table.cost(&cached), Some(3_000_000));
        let older = Usage {
            cache_read_tokens: 1_000_000,
            ..usage("claude-sonnet-4-20250514", 0, 0)
        };
        assert_eq!(table.cost(&older), Some(300_000));
        // One token of a $15 model rounds up to a micro-dollar's worth, never to free.
        assert_eq!(table.cost(&usage("claude-sonnet-4-5", 0, 1)), Some(15));
        assert_eq!(
            table.cost(&usage("mystery-model", 10, 10)),
            None,
            "unknown: flagged"
        );
        let anonymous = Usage {
            model: None,
            ..usage("x", 1, 1)
        };
        assert_eq!(table.cost(&anonymous), None);
    }

    #[test]
    fn a_bad_entry_is_refused_naming_its_field() {
        for (text, field) in [
            (
                "models: {gpt-5: {input: -1, output: 1}}",
                r#"models["gpt-5"].input"#,
            ),
            (
                "models: {gpt-5: {input: 1, output: \"ten\"}}",
                r#"models["gpt-5"].output"#,
            ),
            (
                "models: {gpt-5: {input: 1, output: 1, cacheRead: 1.1234567}}",
                r#"models["gpt-5"].cacheRead"#,
            ),
            (
                "models: {gpt-5: {input: 20000, output: 1}}",
                r#"models["gpt-5"].input"#,
            ),
            (
                "models: {\"gpt-*-mini\": {input: 1, output: 1}}",
                r#"models["gpt-*-mini"]"#,
            ),
            (
                "models: {gpt-5: {input: 1, output: 1, output2: 3}}",
                "prices.yaml",
            ),
        ] {
            let error = PriceTable::parse(text).expect_err(text);
            assert_eq!(error.field, field, "{text}: {error}");
        }
    }
}
