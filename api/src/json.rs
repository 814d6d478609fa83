//! Decoding Kubernetes objects from JSON with errors that name the offending field.

use serde::de::DeserializeOwned;

/// JSON that does not fit the expected type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Path of the offending field, e.g. `spec.contexts[0].type`; empty for the document itself.
    pub field: String,
    /// What is wrong there.
    pub message: String,
}

/// Decodes `json` as a `T`. Tracking the field path costs time on every call, so it is done only
/// when the plain decode fails, to explain the failure.
pub fn from_json<T: DeserializeOwned>(json: &str) -> Result<T, JsonError> {
    if let Ok(value) = serde_json::from_str(json) {
        return Ok(value);
    }
    let deserializer = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let field = error.path().to_string();
        JsonError {
            field: if field == "." { String::new() } else { field },
            message: error.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Task;

    #[test]
    fn errors_name_the_field() {
        let json = r#"{"apiVersion":"kubetask.io/v1alpha1","kind":"Task","metadata":{},"spec":{"contexts":[{"type":"Folder"}]}}"#;
        let error = from_json::<Task>(json).expect_err("Folder is no context type");
        assert_eq!(error.field, "spec.contexts[0].type");
        assert!(error.message.contains("unknown variant"), "{error:?}");
        let error = from_json::<Task>("not json").expect_err("not JSON");
        assert_eq!(error.field, "");
    }
}
