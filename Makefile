# Everyday commands. `cargo` alone builds and tests everything; these wrap the rest.
.PHONY: plugins wasm-toolchain test crds check image

# Rebuild the wasm plugins (the embedded default plugin and the test plugin), then compile
# the default plugin ahead of time (the artifact the binary embeds; CI checks it).
plugins: wasm-toolchain
	scripts/build-plugins.sh
	cargo run --quiet -- plugin precompile plugins/default/kubetask_default.wasm \
		-o plugins/default/kubetask_default.cwasm

wasm-toolchain:
	scripts/install-wasm-toolchain.sh

# Regenerate the committed CRDs.
crds:
	cargo run --quiet -- crds > manifests/crds/crds.yaml

test:
	cargo test --workspace --locked

# The controller's image as an OCI archive (target/image/), without a container engine.
image:
	scripts/build-image.sh

# Everything CI checks.
check:
	bash .ci/run
