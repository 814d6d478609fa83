//! Where plugin components come from: a ConfigMap's `binaryData` (raw or gzip), with an
//! optional sha256 pin checked before anything is compiled.

use std::io::Read as _;

use k8s_openapi::api::core::v1::ConfigMap;
use kubetask_api::plugin_labels;
use sha2::{Digest as _, Sha256};

/// Largest component accepted after decompression.
pub const MAX_COMPONENT_BYTES: u64 = 32 * 1024 * 1024;

/// The component bytes of a plugin ConfigMap, decompressed and checked against its pin.
pub fn component_of(map: &ConfigMap) -> Result<Vec<u8>, String> {
    let binary = map.binary_data.as_ref();
    let bytes = if let Some(raw) = binary.and_then(|b| b.get(plugin_labels::COMPONENT_KEY)) {
        raw.0.clone()
    } else if let Some(compressed) = binary.and_then(|b| b.get(plugin_labels::COMPONENT_GZIP_KEY)) {
        gunzip(&compressed.0)?
    } else {
        return Err(format!(
            "binaryData has neither {:?} nor {:?}",
            plugin_labels::COMPONENT_KEY,
            plugin_labels::COMPONENT_GZIP_KEY
        ));
    };
    let pin = map
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(plugin_labels::SHA256));
    if let Some(pin) = pin {
        let expected = pin
            .trim()
            .trim_start_matches("sha256:")
            .to_ascii_lowercase();
        let actual = hex_sha256(&bytes);
        if expected != actual {
            return Err(format!(
                "annotation {} is sha256:{expected} but the component is sha256:{actual}",
                plugin_labels::SHA256
            ));
        }
    }
    Ok(bytes)
}

/// Decompresses gzip, refusing more than [`MAX_COMPONENT_BYTES`].
pub fn gunzip(compressed: &[u8]) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(compressed)
        .take(MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| {
            format!(
                "{}: not valid gzip: {error}",
                plugin_labels::COMPONENT_GZIP_KEY
            )
        })?;
    if bytes.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(format!(
            "the component is larger than {MAX_COMPONENT_BYTES} bytes"
        ));
    }
    Ok(bytes)
}

/// Lowercase hex sha256.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The policy order of a plugin ConfigMap, if it is a cluster policy.
pub fn policy_order(map: &ConfigMap) -> Option<Result<i64, String>> {
    let value = map
        .metadata
        .annotations
        .as_ref()?
        .get(plugin_labels::POLICY_ORDER)?;
    Some(value.trim().parse::<i64>().map_err(|_| {
        format!(
            "annotation {} must be an integer, not {value:?}",
            plugin_labels::POLICY_ORDER
        )
    }))
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex_sha256(bytes))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Write as _;

    use k8s_openapi::ByteString;

    use super::*;

    fn map(key: &str, bytes: Vec<u8>, annotations: &[(&str, &str)]) -> ConfigMap {
        let mut map = ConfigMap {
            binary_data: Some(BTreeMap::from([(key.to_owned(), ByteString(bytes))])),
            ..ConfigMap::default()
        };
        map.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        );
        map
    }

    #[test]
    fn raw_gzip_and_pins() {
        let component = b"\0asm component".to_vec();
        assert_eq!(
            component_of(&map("plugin.wasm", component.clone(), &[])),
            Ok(component.clone())
        );
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&component).unwrap();
        let gz = encoder.finish().unwrap();
        assert_eq!(
            component_of(&map("plugin.wasm.gz", gz, &[])),
            Ok(component.clone())
        );
        let digest = hex_sha256(&component);
        let pinned = map(
            "plugin.wasm",
            component.clone(),
            &[("kubetask.io/sha256", &format!("sha256:{digest}"))],
        );
        assert!(component_of(&pinned).is_ok());
        let wrong = map("plugin.wasm", component, &[("kubetask.io/sha256", "00")]);
        assert!(
            component_of(&wrong)
                .unwrap_err()
                .contains("but the component is sha256:")
        );
        assert!(
            component_of(&map("other", vec![], &[]))
                .unwrap_err()
                .contains("binaryData has neither")
        );
        assert!(
            component_of(&map("plugin.wasm.gz", b"not gzip".to_vec(), &[]))
                .unwrap_err()
                .contains("not valid gzip")
        );
    }

    #[test]
    fn policy_orders() {
        assert_eq!(
            policy_order(&map("k", vec![], &[("kubetask.io/policy-order", "10")])),
            Some(Ok(10))
        );
        assert!(
            policy_order(&map("k", vec![], &[("kubetask.io/policy-order", "x")]))
                .unwrap()
                .is_err()
        );
        assert_eq!(policy_order(&map("k", vec![], &[])), None);
    }
}
