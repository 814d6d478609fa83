//! What kube-apiserver validates in an object, in its own words: names and label syntax
//! ([`names`]), metadata ([`metadata`]), and a custom resource against its CRD's structural
//! schema and CEL rules ([`schema`]), and a CRD's own rules: valid `fieldPath`s and the server's
//! CEL cost budget ([`crd_rules`], estimated by [`cel_cost`]).
//!
//! One implementation serves the offline checks of `kubetask render`, the controller's check
//! of what it reads, and the project's test API server, so all three refuse the same objects
//! with the same field paths.
#![forbid(unsafe_code)]

pub mod cel_cost;
pub mod crd_rules;
pub mod metadata;
pub mod names;
pub mod schema;

/// One failed field, as in a `422 Invalid` response's `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: String,
    /// Path of the field (`spec.contexts[0].file`).
    pub field: String,
    /// The server's message.
    pub message: String,
}

/// A string as Go's `%q` prints it (`strconv.Quote`), as kube-apiserver shows an invalid
/// string value: in double quotes, with `"`, `\\`, control and non-printable characters
/// escaped, so a NUL or a newline in a value cannot garble a message.
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Shorthand for a [`Cause`].
pub fn cause(reason: &str, field: impl Into<String>, message: impl Into<String>) -> Cause {
    Cause {
        reason: reason.to_owned(),
        field: field.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_as_go_does() {
        assert_eq!(super::go_quote("plain é"), "\"plain é\"");
        assert_eq!(
            super::go_quote("a\0b\n\"q\"\\\u{7f}\u{85}"),
            "\"a\\x00b\\n\\\"q\\\"\\\\\\x7f\\u0085\""
        );
    }
}
