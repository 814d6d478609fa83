//! `kubetask plugin pack`: a plugin component as the ConfigMap that installs it.

use std::{collections::BTreeMap, io::Write as _};

use k8s_openapi::{
    ByteString, api::core::v1::ConfigMap, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kubetask_api::{MAX_CONFIG_MAP_BYTES, plugin_labels};
use thiserror::Error;

use crate::plugin::digest_of;

/// How to pack a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackOptions {
    /// The plugin's name: the ConfigMap's name, and what Agents list in `spec.plugins`.
    pub name: String,
    /// The controller's namespace, where plugins must live.
    pub namespace: String,
    /// Makes the plugin a cluster policy run for every Task, in this order.
    pub policy_order: Option<i64>,
    /// A mapper plugin (TaskTriggers' `spec.mapper`), not a render plugin.
    pub mapper: bool,
}

/// Why a plugin cannot be packed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PackError {
    #[error("--name {0:?} is not a valid ConfigMap name: {1}")]
    Name(String, String),
    #[error("--namespace {0:?} is not a valid namespace: {1}")]
    Namespace(String, String),
    #[error(
        "the component is {size} bytes{gzip}, more than a ConfigMap holds ({MAX_CONFIG_MAP_BYTES} bytes): \
         build it smaller (opt-level = \"s\" or \"z\", strip = true, fewer dependencies)"
    )]
    TooLarge { size: usize, gzip: &'static str },
    #[error("cannot compress the component: {0}")]
    Compress(String),
    #[error("cannot encode the ConfigMap: {0}")]
    Encode(String),
}

/// The ConfigMap installing `component`: gzip-compressed when that is smaller, pinned to the
/// component's sha256.
pub fn config_map(component: &[u8], options: &PackOptions) -> Result<ConfigMap, PackError> {
    if let Some(why) = kubetask_validation::names::subdomain_error(&options.name) {
        return Err(PackError::Name(options.name.clone(), why));
    }
    if let Some(why) = kubetask_validation::names::label_error(&options.namespace) {
        return Err(PackError::Namespace(options.namespace.clone(), why));
    }
    let compressed = gzip(component)?;
    let (key, data, gzip_note) = if compressed.len() < component.len() {
        (plugin_labels::COMPONENT_GZIP_KEY, compressed, " after gzip")
    } else {
        (plugin_labels::COMPONENT_KEY, component.to_vec(), "")
    };
    let size = key.len() + data.len();
    if size > MAX_CONFIG_MAP_BYTES {
        return Err(PackError::TooLarge {
            size,
            gzip: gzip_note,
        });
    }
    let mut annotations =
        BTreeMap::from([(plugin_labels::SHA256.to_owned(), digest_of(component))]);
    if let Some(order) = options.policy_order {
        annotations.insert(plugin_labels::POLICY_ORDER.to_owned(), order.to_string());
    }
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(options.name.clone()),
            namespace: Some(options.namespace.clone()),
            labels: Some(BTreeMap::from([(
                plugin_labels::PLUGIN.to_owned(),
                "true".to_owned(),
            )])),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        binary_data: Some(BTreeMap::from([(key.to_owned(), ByteString(data))])),
        ..ConfigMap::default()
    })
}

/// [`config_map`] as YAML, with a header saying what it is.
pub fn yaml(component: &[u8], options: &PackOptions) -> Result<String, PackError> {
    let map = config_map(component, options)?;
    let mut value = serde_json::to_value(&map).map_err(|e| PackError::Encode(e.to_string()))?;
    // apiVersion and kind first, as people write them (maps serialize sorted).
    if let Some(object) = value.as_object_mut() {
        object.remove("apiVersion");
        object.remove("kind");
    }
    let body = serde_yaml::to_string(&value).map_err(|e| PackError::Encode(e.to_string()))?;
    let role = match options.policy_order {
        Some(order) => format!("a cluster policy (order {order}), run for every Task"),
        None if options.mapper => format!(
            "a mapper plugin for TaskTriggers whose spec.mapper is {:?}",
            options.name
        ),
        None => format!(
            "a render plugin for Agents that list {:?} in spec.plugins",
            options.name
        ),
    };
    Ok(format!(
        "# KubeTask plugin {:?}: {role}.\n# Packed by `kubetask plugin pack`. Install with `kubectl apply --server-side -f` or\n# `kubectl create -f`: a plain `kubectl apply -f` copies the component into an annotation\n# the API server refuses (over 256 KiB).\napiVersion: v1\nkind: ConfigMap\n{body}",
        options.name
    ))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, PackError> {
    // A fixed header (no name, no time) so the same component always packs to the same bytes.
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|e| PackError::Compress(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::source::component_of;

    fn options(policy_order: Option<i64>) -> PackOptions {
        PackOptions {
            name: "site-policy".to_owned(),
            namespace: "kubetask-system".to_owned(),
            policy_order,
            mapper: false,
        }
    }

    #[test]
    fn compressible_components_are_gzipped_and_round_trip_through_the_loader() {
        let component = b"\0asm\x0d\0\x01\0".repeat(10_000);
        let map = config_map(&component, &options(Some(10))).expect("packs");
        let data = map.binary_data.as_ref().expect("binaryData");
        assert!(data.contains_key(plugin_labels::COMPONENT_GZIP_KEY));
        assert!(data[plugin_labels::COMPONENT_GZIP_KEY].0.len() < component.len() / 10);
        // What the controller reads back is the component, and the pin matches it.
        assert_eq!(component_of(&map).expect("loads"), component);
        let annotations = map.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(annotations[plugin_labels::POLICY_ORDER], "10");
        assert_eq!(
            map.metadata.labels.as_ref().expect("labels")[plugin_labels::PLUGIN],
            "true"
        );
        // Packing is deterministic (no timestamps in the gzip header).
        assert_eq!(config_map(&component, &options(Some(10))), Ok(map));
    }

    #[test]
    fn incompressible_components_are_stored_raw_and_render_plugins_have_no_order() {
        // Pseudo-random bytes do not compress.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let component: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let map = config_map(&component, &options(None)).expect("packs");
        let data = map.binary_data.as_ref().expect("binaryData");
        assert_eq!(data[plugin_labels::COMPONENT_KEY].0, component);
        assert!(
            !map.metadata
                .annotations
                .as_ref()
                .expect("annotations")
                .contains_key(plugin_labels::POLICY_ORDER)
        );
        let yaml = yaml(&component, &options(None)).expect("packs");
        assert!(
            yaml.starts_with("# KubeTask plugin \"site-policy\": a render plugin"),
            "{yaml}"
        );
        assert!(yaml.contains("apiVersion: v1\nkind: ConfigMap\n"), "{yaml}");
    }

    #[test]
    fn too_large_and_badly_named_plugins_are_refused() {
        let mut state = 7_u64;
        let huge: Vec<u8> = (0..MAX_CONFIG_MAP_BYTES + 1)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as u8
            })
            .collect();
        let error = config_map(&huge, &options(None)).expect_err("too large");
        assert!(matches!(error, PackError::TooLarge { .. }), "{error}");
        assert!(
            error.to_string().contains("more than a ConfigMap holds"),
            "{error}"
        );
        for name in ["", "Site", "-a", "a_b", &"a".repeat(254)] {
            let options = PackOptions {
                name: name.to_owned(),
                ..options(None)
            };
            assert!(
                matches!(config_map(b"x", &options), Err(PackError::Name(..))),
                "{name}"
            );
        }
    }
}
