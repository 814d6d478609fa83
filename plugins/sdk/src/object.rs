//! [`Object`]: a Kubernetes object as JSON, decoded only where a plugin looks.
//!
//! A stage receives the Job as JSON text. Decoding all of it into `k8s-openapi` types and
//! encoding it again costs most of an SDK plugin's time, and the decoders of the whole Job
//! tree are most of its size. An [`Object`] keeps the text until the plugin reads it, then a
//! `serde_json::Value`; [`Object::get`] and [`Object::edit`] decode only the part at a JSON
//! pointer, into the `k8s-openapi` type of that part. What a plugin does not touch passes
//! through unchanged (byte for byte when it reads nothing at all).

use std::{borrow::Cow, cell::OnceCell, fmt, marker::PhantomData};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::Error;

/// A Kubernetes object of type `T` (e.g. `Object<Job>`) as JSON, decoded lazily and in parts.
///
/// Pointers are JSON pointers (RFC 6901) into the object: `/spec/template/spec/containers/0`.
/// A key holding `/` or `~` is written `~1` or `~0`.
///
/// In a plugin (`wasm32`), a parsed tree is not freed when its `Object` is dropped: the
/// instance's memory is discarded after its one call anyway. A plugin that parses many
/// objects in a loop keeps them all until the call returns (the host's memory limit applies).
pub struct Object<T> {
    /// The text as received, while the object is unchanged (passed on as it is).
    text: Option<String>,
    /// The parsed object, once read; the truth once changed (`text` is then `None`).
    tree: OnceCell<Value>,
    kind: PhantomData<fn() -> T>,
}

impl<T> Object<T> {
    /// The object as JSON text (parsed at the first read).
    pub fn from_json(json: impl Into<String>) -> Self {
        Self {
            text: Some(json.into()),
            tree: OnceCell::new(),
            kind: PhantomData,
        }
    }

    /// The object as a JSON value.
    pub fn from_value(value: Value) -> Self {
        Self {
            text: None,
            tree: OnceCell::from(value),
            kind: PhantomData,
        }
    }

    /// The whole object as a JSON value, parsed at the first read.
    pub fn tree(&self) -> Result<&Value, Error> {
        if let Some(value) = self.tree.get() {
            return Ok(value);
        }
        let text = self.text.as_deref().unwrap_or("{}");
        let value = serde_json::from_str(text)
            .map_err(|error| Error::Internal(format!("the object is not JSON: {error}")))?;
        Ok(self.tree.get_or_init(|| value))
    }

    /// The whole object as a JSON value to change.
    pub fn value(&mut self) -> Result<&mut Value, Error> {
        self.tree()?;
        self.text = None;
        self.tree
            .get_mut()
            .ok_or_else(|| Error::Internal("the object was not parsed".to_owned()))
    }

    /// The part at `pointer` decoded as `U`, or `None` when it is absent or `null`.
    pub fn get<U: DeserializeOwned>(&self, pointer: &str) -> Result<Option<U>, Error> {
        match find(self.tree()?, pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(part) => decode(pointer, part).map(Some),
        }
    }

    /// The string at `pointer`, borrowed (`None` when absent or not a string).
    pub fn str(&self, pointer: &str) -> Option<&str> {
        find(self.tree().ok()?, pointer)?.as_str()
    }

    /// Whether the part at `pointer` is present and not `null`.
    pub fn contains(&self, pointer: &str) -> Result<bool, Error> {
        Ok(!matches!(
            find(self.tree()?, pointer),
            None | Some(Value::Null)
        ))
    }

    /// The length of the list at `pointer` (0 when absent).
    pub fn len(&self, pointer: &str) -> Result<usize, Error> {
        match find(self.tree()?, pointer) {
            None | Some(Value::Null) => Ok(0),
            Some(Value::Array(items)) => Ok(items.len()),
            Some(_) => Err(Error::Internal(format!(
                "{} is not a list",
                field_path(pointer)
            ))),
        }
    }

    /// Replaces the part at `pointer` with `part`, creating the objects on the way.
    pub fn set<U: Serialize>(&mut self, pointer: &str, part: &U) -> Result<(), Error> {
        let part = serde_json::to_value(part).map_err(|error| {
            Error::Internal(format!("cannot encode {}: {error}", field_path(pointer)))
        })?;
        *slot(self.value()?, pointer)? = part;
        Ok(())
    }

    /// Decodes the part at `pointer` as `U` (its default when absent), lets `change` edit it
    /// and writes it back; the rest of the object is not decoded.
    pub fn edit<U, R>(
        &mut self,
        pointer: &str,
        change: impl FnOnce(&mut U) -> R,
    ) -> Result<R, Error>
    where
        U: DeserializeOwned + Serialize + Default,
    {
        self.try_edit(pointer, |part: &mut U| Ok(change(part)))
    }

    /// [`Object::edit`] with a `change` that may fail; the part is left as it was then.
    pub fn try_edit<U, R>(
        &mut self,
        pointer: &str,
        change: impl FnOnce(&mut U) -> Result<R, Error>,
    ) -> Result<R, Error>
    where
        U: DeserializeOwned + Serialize + Default,
    {
        let mut part: U = self.get(pointer)?.unwrap_or_default();
        let result = change(&mut part)?;
        self.set(pointer, &part)?;
        Ok(result)
    }

    /// The object as JSON text: what it was received as while unchanged.
    pub fn to_json(&self) -> Result<String, Error> {
        match &self.text {
            Some(text) => Ok(text.clone()),
            None => serde_json::to_string(self.tree()?)
                .map_err(|error| Error::Internal(error.to_string())),
        }
    }

    /// The object as JSON text, without a copy while unchanged.
    pub fn into_json(mut self) -> Result<String, Error> {
        match self.text.take() {
            Some(text) => Ok(text),
            None => self.to_json(),
        }
    }
}

impl<T: Serialize> Object<T> {
    /// A typed object, encoded.
    pub fn new(object: &T) -> Result<Self, Error> {
        serde_json::to_string(object)
            .map(Self::from_json)
            .map_err(|error| Error::Internal(format!("cannot encode the object: {error}")))
    }
}

impl<T: DeserializeOwned> Object<T> {
    /// The whole object decoded as `T`. This links the decoder of every field of `T` into the
    /// plugin; in a component prefer [`Object::get`] and [`Object::edit`] on the parts it needs
    /// (tests can use this freely).
    pub fn typed(&self) -> Result<T, Error> {
        self.decode_whole()
            .map_err(|(field, message)| Error::Internal(format!("{field}: {message}")))
    }

    /// [`Object::typed`] for an object the user wrote (the Task's Agent): a field that does not
    /// decode is the user's to fix, an [`Error::Invalid`] of `kind`.
    pub(crate) fn typed_input(&self, kind: &str) -> Result<T, Error> {
        self.decode_whole()
            .map_err(|(field, message)| Error::invalid(kind, field, message))
    }

    fn decode_whole(&self) -> Result<T, (String, String)> {
        let text;
        let json = match (&self.text, self.tree.get()) {
            (Some(json), _) => json.as_str(),
            (None, value) => {
                text = value
                    .map(Value::to_string)
                    .unwrap_or_else(|| "{}".to_owned());
                text.as_str()
            }
        };
        kubetask_api::json::from_json(json).map_err(|error| (error.field, error.message))
    }
}

impl<T> Drop for Object<T> {
    fn drop(&mut self) {
        // A plugin instance's memory is discarded with the instance right after its one call:
        // freeing a parsed tree node by node there is work thrown away.
        if cfg!(target_arch = "wasm32")
            && let Some(tree) = self.tree.take()
        {
            std::mem::forget(tree);
        }
    }
}

impl<T> Clone for Object<T> {
    fn clone(&self) -> Self {
        Self {
            text: self.text.clone(),
            tree: self.tree.clone(),
            kind: PhantomData,
        }
    }
}

impl<T> Default for Object<T> {
    /// `{}`.
    fn default() -> Self {
        Self::from_value(Value::Object(serde_json::Map::new()))
    }
}

impl<T> PartialEq for Object<T> {
    /// The same JSON: the same text, or the same parsed values (text that is not JSON equals
    /// only the same text).
    fn eq(&self, other: &Self) -> bool {
        match (&self.text, &other.text) {
            (Some(a), Some(b)) if a == b => true,
            _ => match (self.tree(), other.tree()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            },
        }
    }
}

impl<T> fmt::Debug for Object<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.text, self.tree.get()) {
            (Some(text), _) => f.write_str(text),
            (None, Some(value)) => write!(f, "{value}"),
            (None, None) => f.write_str("{}"),
        }
    }
}

impl<T> Serialize for Object<T> {
    /// The JSON of the object (text is parsed first).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.tree()
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Object<T> {
    /// Any JSON value (checked against `T` only where it is read).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::from_value)
    }
}

fn decode<U: DeserializeOwned>(pointer: &str, part: &Value) -> Result<U, Error> {
    U::deserialize(part).map_err(|error| {
        Error::Internal(format!(
            "{}: {error}",
            if pointer.is_empty() {
                "the object".to_owned()
            } else {
                field_path(pointer)
            }
        ))
    })
}

/// The part at `pointer`, created (as `null`) with the objects on its way if absent: a list
/// where the next token is an index (`0`, or `-` for the end, as in JSON Patch), else an object.
/// An index names an existing item or the end of the list (a new item).
fn slot<'a>(mut value: &'a mut Value, pointer: &str) -> Result<&'a mut Value, Error> {
    if pointer.is_empty() {
        return Ok(value);
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(Error::Internal(format!(
            "{pointer:?} is not a JSON pointer (it must start with '/')"
        )));
    };
    for token in rest.split('/').map(unescape) {
        let index = match token.as_ref() {
            "-" => Some(usize::MAX),
            token => token.parse::<usize>().ok(),
        };
        if value.is_null() {
            *value = match index {
                Some(_) => Value::Array(Vec::new()),
                None => Value::Object(serde_json::Map::new()),
            };
        }
        value = match value {
            // A key is allocated only when it is added.
            Value::Object(map) => {
                if !map.contains_key(token.as_ref()) {
                    map.insert(token.clone().into_owned(), Value::Null);
                }
                map.get_mut(token.as_ref()).ok_or_else(|| {
                    Error::Internal(format!("{}: {token:?} vanished", field_path(pointer)))
                })?
            }
            Value::Array(items) => {
                let len = items.len();
                let index = match index {
                    Some(usize::MAX) => Some(len),
                    other => other.filter(|index| *index <= len),
                };
                let index = index.ok_or_else(|| {
                    Error::Internal(format!(
                        "{}: no item {token} in a list of {len}",
                        field_path(pointer)
                    ))
                })?;
                if index == len {
                    items.push(Value::Null);
                }
                &mut items[index]
            }
            _ => {
                return Err(Error::Internal(format!(
                    "{}: a scalar is in the way at {token:?}",
                    field_path(pointer)
                )));
            }
        };
    }
    Ok(value)
}

/// The part of `value` at `pointer`, as `serde_json::Value::pointer` finds it, without
/// allocating a token that holds no escape (that lookup copies every token twice, which was a
/// tenth of a policy plugin's time).
fn find<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(value);
    }
    pointer
        .strip_prefix('/')?
        .split('/')
        .map(unescape)
        .try_fold(value, |target, token| match target {
            Value::Object(map) => map.get(token.as_ref()),
            Value::Array(items) => list_index(&token).and_then(|index| items.get(index)),
            _ => None,
        })
}

/// A pointer token with `~1` read as `/` and `~0` as `~` (RFC 6901).
fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

/// A list index as RFC 6901 writes it: digits, no sign, no leading zero.
fn list_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() > 1) {
        return None;
    }
    token.parse().ok()
}

/// A JSON pointer as the field path users read: `/spec/containers/0/name` is
/// `spec.containers[0].name`.
pub fn field_path(pointer: &str) -> String {
    let mut path = String::new();
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            path.push_str(&format!("[{token}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&token);
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::{batch::v1::Job, core::v1::SecurityContext};

    use super::*;

    const JOB: &str = r#"{"metadata":{"name":"t"},"spec":{"template":{"spec":{"containers":[{"name":"agent","image":"a"}]}},"x-unknown":{"kept":true}}}"#;

    #[test]
    fn pointers_find_what_serde_json_finds() {
        let value: Value = serde_json::from_str(
            r#"{"a/b":{"m~n":[1,{"x":2}]},"":{"":3},"list":[10,11],"0":"zero"}"#,
        )
        .expect("JSON");
        for pointer in [
            "",
            "/",
            "//",
            "/a~1b",
            "/a~1b/m~0n",
            "/a~1b/m~0n/1/x",
            "/list/0",
            "/list/1",
            "/list/01",
            "/list/+1",
            "/list/2",
            "/list/-",
            "/0",
            "/a/b",
            "a",
            "/list/0/x",
        ] {
            assert_eq!(find(&value, pointer), value.pointer(pointer), "{pointer:?}");
        }
    }

    #[test]
    fn an_object_never_read_passes_through_byte_for_byte() {
        let text = format!("{JOB}  ");
        let job = Object::<Job>::from_json(text.clone());
        assert_eq!(job.to_json().expect("text"), text);
        assert_eq!(job.into_json().expect("text"), text);
    }

    #[test]
    fn edits_decode_only_their_part_and_keep_the_rest() {
        let mut job = Object::<Job>::from_json(JOB);
        job.edit(
            "/metadata/labels",
            |labels: &mut BTreeMap<String, String>| {
                labels.insert("team".to_owned(), "a".to_owned())
            },
        )
        .expect("edits");
        job.edit(
            "/spec/template/spec/containers/0/securityContext",
            |context: &mut SecurityContext| context.run_as_non_root = Some(true),
        )
        .expect("edits");
        let value: Value = serde_json::from_str(&job.to_json().expect("json")).expect("JSON");
        assert_eq!(value["metadata"]["labels"]["team"], "a");
        let container = &value["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["securityContext"]["runAsNonRoot"], true);
        assert_eq!(container["image"], "a");
        assert_eq!(
            value["spec"]["x-unknown"]["kept"], true,
            "unknown fields pass"
        );
        assert_eq!(job.len("/spec/template/spec/containers").expect("list"), 1);
        assert_eq!(job.len("/spec/template/spec/volumes").expect("absent"), 0);
        assert!(
            !job.contains("/spec/template/spec/hostNetwork")
                .expect("reads")
        );
        assert_eq!(
            job.get::<String>("/spec/template/spec/containers/0/name")
                .expect("reads"),
            Some("agent".to_owned())
        );
        let typed = job.typed().expect("a Job");
        assert_eq!(typed.metadata.labels.expect("labels")["team"], "a");
    }

    #[test]
    fn a_list_grows_at_its_end_only_and_a_failed_edit_changes_nothing() {
        let mut job = Object::<Job>::from_json(JOB);
        let containers = "/spec/template/spec/containers";
        job.set(
            &format!("{containers}/1"),
            &serde_json::json!({"name": "b"}),
        )
        .expect("appends");
        assert_eq!(job.len(containers).expect("list"), 2);
        let error = job
            .set(&format!("{containers}/5"), &Value::Null)
            .expect_err("no item 5");
        assert!(
            error
                .to_string()
                .contains("spec.template.spec.containers[5]"),
            "{error}"
        );
        job.set(
            "/spec/template/spec/initContainers/0",
            &serde_json::json!({"name": "i"}),
        )
        .expect("a new list");
        job.set(
            "/spec/template/spec/initContainers/-",
            &serde_json::json!({"name": "j"}),
        )
        .expect("appends");
        let value = job.tree().expect("parsed");
        assert_eq!(
            value["spec"]["template"]["spec"]["initContainers"][1]["name"],
            "j"
        );
        let before = job.clone();
        let error = job
            .try_edit(
                "/metadata/labels",
                |labels: &mut BTreeMap<String, String>| {
                    labels.clear();
                    Err::<(), _>(Error::denied("no"))
                },
            )
            .expect_err("refused");
        assert_eq!(error, Error::denied("no"));
        assert_eq!(job, before);
    }

    #[test]
    fn a_part_of_the_wrong_type_names_its_field() {
        let job = Object::<Job>::from_json(r#"{"spec":{"backoffLimit":"zero"}}"#);
        let error = job
            .get::<i32>("/spec/backoffLimit")
            .expect_err("not a number");
        assert!(error.to_string().contains("spec.backoffLimit"), "{error}");
        let error = Object::<Job>::from_json(r#"{"spec":{"backoffLimit":"zero"}}"#)
            .typed()
            .expect_err("not a Job");
        assert!(error.to_string().contains("spec.backoffLimit"), "{error}");
        assert!(Object::<Job>::from_json("nope").value().is_err());
        assert_ne!(
            Object::<Job>::from_json("nope"),
            Object::<Job>::from_json("nah")
        );
        assert_eq!(
            Object::<Job>::from_json(r#"{"a": 1}"#),
            Object::<Job>::from_json(r#"{"a":1}"#)
        );
        assert!(Object::<Job>::from_json("nope").get::<i32>("/a").is_err());
    }

    #[test]
    fn pointers_read_as_field_paths() {
        assert_eq!(
            field_path("/spec/template/spec/containers/0/securityContext"),
            "spec.template.spec.containers[0].securityContext"
        );
        assert_eq!(field_path("/metadata/labels/a~1b"), "metadata.labels.a/b");
    }
}
