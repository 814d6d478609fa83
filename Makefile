# Everyday commands. `cargo` alone builds and tests everything; these wrap the rest.
.PHONY: plugins wasm-toolchain test crds check

# Rebuild the wasm plugins (the embedded default plugin and the test plugin).
plugins: wasm-toolchain
	scripts/build-plugins.sh

wasm-toolchain:
	scripts/install-wasm-toolchain.sh

# Regenerate the committed CRDs.
crds:
	cargo run --quiet -- crds > manifests/crds/crds.yaml

test:
	cargo test --workspace --locked

# Everything CI checks.
check:
	bash .ci/run
