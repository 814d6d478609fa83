//! Context files: validation of each context, the merge of an Agent's defaults with a Task's
//! own contexts, and the checks that the merged set can be mounted.

use k8s_openapi::api::core::v1::ConfigMapKeySelector;
use kubetask_api::{ConfigMapReference, Context, ContextType};

use kubetask_api::names::{data_key_error, subdomain_error};

use crate::{RenderError, paths, refused};

/// The writable directory the agent works in.
pub const WORKSPACE: &str = "/workspace";
/// Where the Agent's tools image is mounted.
pub const TOOLS: &str = "/tools";

/// Where a layer of contexts comes from.
pub(crate) struct Layer<'a> {
    /// `Kind/name` of the object holding the contexts.
    pub object: String,
    /// Field holding them, e.g. `spec.contexts`.
    pub field: &'static str,
    pub contexts: &'a [Context],
}

/// A validated context, ready to mount.
#[derive(Debug)]
pub(crate) struct PlacedContext<'a> {
    /// `Kind/name` of the object it came from.
    pub object: String,
    /// Path of its path field, e.g. `spec.contexts[0].file.filePath`.
    pub path_field: String,
    /// Normalized absolute path in the agent container.
    pub path: String,
    pub source: ContextSource<'a>,
}

/// Where a context's content comes from.
#[derive(Debug)]
pub(crate) enum ContextSource<'a> {
    /// Content written in the Task or Agent: one file.
    Inline(&'a str),
    /// One key of a user's ConfigMap: one file.
    ConfigMapKey(&'a ConfigMapKeySelector),
    /// A whole user ConfigMap: a directory.
    ConfigMapDirectory(&'a ConfigMapReference),
}

impl ContextSource<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Self::ConfigMapDirectory(_) => "directory",
            _ => "file",
        }
    }
}

/// Validates both layers and merges them: the Agent's defaults first, the Task's contexts
/// after; a Task context replaces an Agent default at the same path (returned as a warning).
pub(crate) fn merge<'a>(
    agent: Option<Layer<'a>>,
    task: Layer<'a>,
) -> Result<(Vec<PlacedContext<'a>>, Vec<String>), RenderError> {
    let defaults = match &agent {
        Some(layer) => validate_layer(layer)?,
        None => Vec::new(),
    };
    let own = validate_layer(&task)?;
    let mut warnings = Vec::new();
    let mut merged = Vec::with_capacity(defaults.len() + own.len());
    for default in defaults {
        match own.iter().find(|context| context.path == default.path) {
            Some(winner) => warnings.push(format!(
                "{} {} overrides {} {} at {}",
                winner.object,
                field_of(&winner.path_field),
                default.object,
                field_of(&default.path_field),
                default.path
            )),
            None => merged.push(default),
        }
    }
    merged.extend(own);
    check_nesting(&merged)?;
    Ok((merged, warnings))
}

/// `spec.contexts[1].file.filePath` → `spec.contexts[1]`.
fn field_of(path_field: &str) -> &str {
    path_field.split(".file.").next().unwrap_or(path_field)
}

fn validate_layer<'a>(layer: &Layer<'a>) -> Result<Vec<PlacedContext<'a>>, RenderError> {
    let mut placed: Vec<PlacedContext<'a>> = Vec::with_capacity(layer.contexts.len());
    for (index, context) in layer.contexts.iter().enumerate() {
        let field = format!("{}[{index}]", layer.field);
        let next = validate(&layer.object, &field, context)?;
        if let Some(earlier) = placed.iter().find(|earlier| earlier.path == next.path) {
            return Err(RenderError::invalid(
                &layer.object,
                next.path_field,
                format!(
                    "{} is also the path of {}; each path may appear once",
                    next.path,
                    field_of(&earlier.path_field)
                ),
            ));
        }
        placed.push(next);
    }
    Ok(placed)
}

fn validate<'a>(
    object: &str,
    field: &str,
    context: &'a Context,
) -> Result<PlacedContext<'a>, RenderError> {
    let ContextType::File = context.type_;
    let Some(file) = &context.file else {
        return Err(RenderError::invalid(
            object,
            format!("{field}.file"),
            "is required when type is File",
        ));
    };
    let (path_field, raw_path) = match (&file.file_path, &file.dir_path) {
        (Some(path), None) => (format!("{field}.file.filePath"), path),
        (None, Some(path)) => (format!("{field}.file.dirPath"), path),
        (Some(_), Some(_)) => {
            return Err(RenderError::invalid(
                object,
                format!("{field}.file"),
                "set filePath (a single file) or dirPath (a directory), not both",
            ));
        }
        (None, None) => {
            return Err(RenderError::invalid(
                object,
                format!("{field}.file"),
                "set filePath (a single file) or dirPath (a directory)",
            ));
        }
    };
    let path = paths::normalize_absolute(raw_path)
        .map_err(|message| RenderError::invalid(object, &path_field, message))?;
    if path == WORKSPACE {
        return Err(RenderError::invalid(
            object,
            &path_field,
            "is the writable workspace itself; place contexts inside it, e.g. /workspace/task.md",
        ));
    }
    if path == TOOLS || paths::is_inside(path, TOOLS) {
        return Err(RenderError::invalid(
            object,
            &path_field,
            "/tools is reserved for the Agent's toolsImage",
        ));
    }
    let source_field = format!("{field}.file.source");
    let source = &file.source;
    let source = match (
        &source.inline,
        &source.config_map_key_ref,
        &source.config_map_ref,
    ) {
        (Some(content), None, None) => ContextSource::Inline(content),
        (None, Some(selector), None) => ContextSource::ConfigMapKey(selector),
        (None, None, Some(reference)) => ContextSource::ConfigMapDirectory(reference),
        (None, None, None) => {
            return Err(RenderError::invalid(
                object,
                source_field,
                "set one of inline, configMapKeyRef or configMapRef",
            ));
        }
        (inline, key_ref, directory_ref) => {
            let found: Vec<&str> = [
                inline.as_ref().map(|_| "inline"),
                key_ref.as_ref().map(|_| "configMapKeyRef"),
                directory_ref.as_ref().map(|_| "configMapRef"),
            ]
            .into_iter()
            .flatten()
            .collect();
            return Err(RenderError::invalid(
                object,
                source_field,
                format!(
                    "set only one of inline, configMapKeyRef or configMapRef (found {})",
                    found.join(", ")
                ),
            ));
        }
    };
    let is_directory = file.dir_path.is_some();
    match (&source, is_directory) {
        (ContextSource::ConfigMapDirectory(_), false) => {
            return Err(RenderError::invalid(
                object,
                format!("{source_field}.configMapRef"),
                "mounts a whole ConfigMap as a directory: use dirPath instead of filePath",
            ));
        }
        (ContextSource::Inline(_) | ContextSource::ConfigMapKey(_), true) => {
            return Err(RenderError::invalid(
                object,
                &path_field,
                "a directory needs source.configMapRef; for a single file use filePath",
            ));
        }
        _ => {}
    }
    match &source {
        ContextSource::ConfigMapKey(selector) => {
            if let Some(message) = refused("object name", &selector.name, subdomain_error) {
                return Err(RenderError::invalid(
                    object,
                    format!("{source_field}.configMapKeyRef.name"),
                    message,
                ));
            }
            if let Some(message) = refused("key", &selector.key, data_key_error) {
                return Err(RenderError::invalid(
                    object,
                    format!("{source_field}.configMapKeyRef.key"),
                    message,
                ));
            }
        }
        ContextSource::ConfigMapDirectory(reference) => {
            if let Some(message) = refused("object name", &reference.name, subdomain_error) {
                return Err(RenderError::invalid(
                    object,
                    format!("{source_field}.configMapRef.name"),
                    message,
                ));
            }
        }
        ContextSource::Inline(_) => {}
    }
    Ok(PlacedContext {
        object: object.to_owned(),
        path_field,
        path: path.to_owned(),
        source,
    })
}

/// A path inside another context's file or (read-only) directory cannot be mounted.
fn check_nesting(merged: &[PlacedContext<'_>]) -> Result<(), RenderError> {
    for inner in merged {
        if let Some(outer) = merged
            .iter()
            .find(|outer| paths::is_inside(&inner.path, &outer.path))
        {
            return Err(RenderError::invalid(
                &inner.object,
                &inner.path_field,
                format!(
                    "{} is inside {}, which {} {} mounts as a read-only {}; context paths may not nest",
                    inner.path,
                    outer.path,
                    outer.object,
                    field_of(&outer.path_field),
                    outer.source.kind()
                ),
            ));
        }
    }
    Ok(())
}
