//! Server-side tables: what `kubectl get` asks for (`Accept: application/json;as=Table;v=v1;
//! g=meta.k8s.io`) and prints. A custom resource's columns are its CRD's
//! `additionalPrinterColumns` (by default `Age`), after `Name`; built-in kinds get
//! kube-apiserver's default table (`Name`, `Created At`). Cells are as the real server fills
//! them: JSONPath values, `null` where a path finds nothing, dates as a human age (`10s`).

use serde_json::{Value, json};

use crate::age::since;

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// What each row carries besides its cells (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    /// From the query parameter (default: `Metadata`, as kube-apiserver).
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

impl IncludeObject {
    /// A row of `cells` (a JSON array), with `object` as asked.
    fn row(self, cells: Value, object: &Value) -> Value {
        let mut row = json!({"cells": cells});
        match self {
            IncludeObject::None => {}
            IncludeObject::Metadata => row["object"] = crate::meta::partial_object_metadata(object),
            IncludeObject::Object => row["object"] = object.clone(),
        }
        row
    }
}

/// The Table around `definitions` and `rows`; `metadata` is the list's (or the object's
/// resourceVersion). Without `definitions` (a watch after its first event) the columns are
/// `null`, as kube-apiserver sends them.
fn envelope(definitions: Option<Vec<Value>>, rows: Vec<Value>, metadata: Value) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// The CRD version's printer columns, or the default `Age`.
pub fn crd_columns(version: &Value) -> Vec<Value> {
    match version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
    {
        Some(columns) if !columns.is_empty() => columns.clone(),
        _ => {
            vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})]
        }
    }
}

/// Where a table's columns come from.
#[derive(Clone, Copy)]
pub enum Columns<'a> {
    /// A custom resource's `additionalPrinterColumns`.
    Crd(&'a [Value]),
    /// A built-in kind's printer (group, kind), or the default `Name`, `Created At`.
    Builtin(&'a str, &'a str),
}

/// A `meta.k8s.io/v1` Table of `objects`; `headers: false` leaves out the column definitions
/// (`TableOptions.NoHeaders`).
pub fn table(
    columns: Columns,
    objects: &[Value],
    include: IncludeObject,
    metadata: Value,
    headers: bool,
) -> Value {
    let name = |object: &Value| {
        object
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (definitions, rows): (Vec<Value>, Vec<Value>) = match columns {
        Columns::Crd(columns) => {
            let mut definitions = vec![name_column()];
            for column in columns {
                let path = column
                    .get("jsonPath")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let description = column
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        format!("Custom resource definition column (in JSONPath format): {path}")
                    });
                definitions.push(json!({
                    "name": column.get("name").cloned().unwrap_or(json!("")),
                    "type": column.get("type").cloned().unwrap_or(json!("string")),
                    "format": column.get("format").cloned().unwrap_or(json!("")),
                    "description": description,
                    "priority": column.get("priority").cloned().unwrap_or(json!(0)),
                }));
            }
            let rows = objects
                .iter()
                .map(|object| {
                    let mut cells = vec![name(object)];
                    for column in columns {
                        let text = |field: &str| {
                            column
                                .get(field)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                        };
                        cells.push(cell(object, text("jsonPath"), text("type")));
                    }
                    include.row(Value::Array(cells), object)
                })
                .collect();
            (definitions, rows)
        }
        Columns::Builtin(group, kind) => match crate::printers::printer(group, kind) {
            Some(printer) => {
                let rows = objects
                    .iter()
                    .map(|object| {
                        let mut cells = vec![name(object)];
                        cells.extend((printer.cells)(object));
                        let mut row = include.row(Value::Array(cells), object);
                        if let Some(conditions) =
                            crate::printers::row_conditions(group, kind, object)
                        {
                            row["conditions"] = conditions;
                        }
                        row
                    })
                    .collect();
                (printer.definitions(NAME_DESCRIPTION), rows)
            }
            None => {
                let definitions = vec![
                    name_column(),
                    json!({
                        "name": "Created At", "type": "date", "format": "",
                        "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
                        "priority": 0,
                    }),
                ];
                let rows = objects
                    .iter()
                    .map(|object| {
                        let created = object
                            .pointer("/metadata/creationTimestamp")
                            .cloned()
                            .unwrap_or(Value::Null);
                        include.row(json!([name(object), created]), object)
                    })
                    .collect();
                (definitions, rows)
            }
        },
    };
    envelope(headers.then_some(definitions), rows, metadata)
}

fn name_column() -> Value {
    json!({
        "name": "Name", "type": "string", "format": "name",
        "description": NAME_DESCRIPTION, "priority": 0,
    })
}

/// kube-apiserver's Event table (`kubectl get events`): LAST SEEN, TYPE, REASON, OBJECT,
/// MESSAGE, and with `-o wide` SUBOBJECT, SOURCE, FIRST SEEN, COUNT, NAME. `events` are in
/// their core form.
pub fn event_table(
    events: &[Value],
    include: IncludeObject,
    metadata: Value,
    headers: bool,
) -> Value {
    let column = |name: &str, priority: u8| {
        json!({"name": name, "type": "string", "format": if name == "Name" { "name" } else { "" },
               "description": "", "priority": priority})
    };
    let definitions = vec![
        column("Last Seen", 0),
        column("Type", 0),
        column("Reason", 0),
        column("Object", 0),
        column("Subobject", 1),
        column("Source", 1),
        column("Message", 0),
        column("First Seen", 1),
        column("Count", 1),
        column("Name", 1),
    ];
    let text = |event: &Value, pointer: &str| {
        event
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let age = |time: &str| since(time.parse().ok());
    let rows: Vec<Value> = events
        .iter()
        .map(|event| {
            // The first of these fields that is set.
            let first_of = |pointers: &[&str]| {
                pointers
                    .iter()
                    .map(|p| text(event, p))
                    .find(|t| !t.is_empty())
                    .unwrap_or_default()
            };
            let last = first_of(&[
                "/series/lastObservedTime",
                "/lastTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]);
            let first = first_of(&[
                "/firstTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]);
            let source = first_of(&["/source/component", "/reportingComponent"]);
            let count = event.get("count").and_then(Value::as_i64).unwrap_or(1);
            let cells = json!([
                age(&last),
                text(event, "/type"),
                text(event, "/reason"),
                format!(
                    "{}/{}",
                    text(event, "/involvedObject/kind").to_lowercase(),
                    text(event, "/involvedObject/name")
                ),
                text(event, "/involvedObject/fieldPath"),
                source,
                text(event, "/message"),
                age(&first),
                count,
                text(event, "/metadata/name"),
            ]);
            include.row(cells, event)
        })
        .collect();
    envelope(headers.then_some(definitions), rows, metadata)
}

/// One cell, as apiextensions-apiserver's table convertor fills it: the first value `path`
/// finds (only the first, even for `[*]`), as the column's type; a value of another type is
/// `null`, a `string` column prints any value, a `date` column shows the age.
fn cell(object: &Value, path: &str, kind: &str) -> Value {
    let Some(value) = json_path(object, path).into_iter().next() else {
        return Value::Null;
    };
    match (kind, value) {
        ("string", Value::String(_)) => value.clone(),
        ("string", other) => Value::String(other.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(_)) => value.clone(),
        ("date", Value::String(text)) => match text.parse::<jiff::Timestamp>() {
            Ok(time) => Value::String(since(Some(time))),
            Err(_) => Value::String("<invalid>".to_owned()),
        },
        _ => Value::Null,
    }
}

/// The values a printer column's JSONPath finds: `.a.b`, `.a[0]`, `.a[*].b`,
/// `.a[?(@.type=="X")].b`.
pub fn json_path<'a>(root: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![root];
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let field = &after[..end];
            rest = &after[end..];
            if field.is_empty() {
                continue;
            }
            current = current.into_iter().filter_map(|v| v.get(field)).collect();
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(close) = find_close(after) else {
                return Vec::new();
            };
            let inside = &after[..close];
            rest = &after[close + 1..];
            current = select(current, inside);
        } else {
            return Vec::new();
        }
    }
    current.into_iter().filter(|v| !v.is_null()).collect()
}

fn find_close(text: &str) -> Option<usize> {
    let mut depth = 0;
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ']') if depth == 0 => return Some(i),
            (None, ']') => depth -= 1,
            _ => {}
        }
    }
    None
}

fn select<'a>(values: Vec<&'a Value>, inside: &str) -> Vec<&'a Value> {
    let inside = inside.trim();
    if inside == "*" {
        return values
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().collect::<Vec<_>>(),
                Value::Object(map) => map.values().collect(),
                _ => Vec::new(),
            })
            .collect();
    }
    if let Ok(index) = inside.parse::<usize>() {
        return values.into_iter().filter_map(|v| v.get(index)).collect();
    }
    if let Some(name) = inside
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| inside.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
    {
        return values.into_iter().filter_map(|v| v.get(name)).collect();
    }
    if let Some(filter) = inside.strip_prefix("?(").and_then(|s| s.strip_suffix(')')) {
        let (left, right, equal) = match filter.split_once("==") {
            Some((l, r)) => (l, r, true),
            None => match filter.split_once("!=") {
                Some((l, r)) => (l, r, false),
                None => return Vec::new(),
            },
        };
        let field = left.trim().trim_start_matches('@');
        let wanted = right.trim().trim_matches(['"', '\'']);
        return values
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .filter(|item| {
                let found = json_path(item, field);
                let matches = found.first().is_some_and(|v| match v {
                    Value::String(s) => s == wanted,
                    Value::Number(n) => n.to_string() == wanted,
                    Value::Bool(b) => wanted == if *b { "true" } else { "false" },
                    _ => false,
                });
                matches == equal
            })
            .collect();
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_of_printer_columns() {
        let task = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "reason": "A"}, {"type": "Succeeded", "reason": "Running"}]}});
        assert_eq!(json_path(&task, ".status.phase"), [&json!("Running")]);
        assert_eq!(
            json_path(&task, ".status.conditions[?(@.type==\"Succeeded\")].reason"),
            [&json!("Running")]
        );
        assert_eq!(json_path(&task, ".status.conditions[*].type").len(), 2);
        assert_eq!(
            json_path(&task, ".status.conditions[0].reason"),
            [&json!("A")]
        );
        assert!(json_path(&task, ".spec.agentRef").is_empty());
    }

    #[test]
    fn cells_as_the_crd_table_convertor_fills_them() {
        let object = json!({"status": {"active": [{"name": "a"}, {"name": "b"}], "count": 3,
                                       "flag": true, "when": "not a time"}});
        // Only the first value a path finds, even for `[*]`.
        assert_eq!(cell(&object, ".status.active[*].name", "string"), "a");
        // A string column prints any value; other types must match or are null.
        assert_eq!(cell(&object, ".status.count", "string"), "3");
        assert_eq!(cell(&object, ".status.count", "integer"), 3);
        assert_eq!(cell(&object, ".status.flag", "integer"), Value::Null);
        assert_eq!(cell(&object, ".status.flag", "boolean"), true);
        assert_eq!(cell(&object, ".status.when", "date"), "<invalid>");
        assert_eq!(cell(&object, ".status.missing", "string"), Value::Null);
    }
}
