//! Objects to and from the JSON text plugins exchange.

use serde::de::DeserializeOwned;

use super::error::RenderError;

/// `value` as JSON text; `kind` names it in the error.
pub(super) fn encode<T: serde::Serialize>(
    kind: &'static str,
    value: &T,
) -> Result<String, RenderError> {
    serde_json::to_string(value).map_err(|error| RenderError::Encode {
        kind,
        message: error.to_string(),
    })
}

/// A stage's JSON text as `T`; the error names the field that does not decode.
pub(super) fn decode<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    kubetask_api::json::from_json(json).map_err(|error| match error.field.as_str() {
        "" => error.message,
        field => format!("{field}: {}", error.message),
    })
}
