#!/usr/bin/env bash
# Builds the Rust plugins into WebAssembly components, reproducibly, with tools from Debian's
# packages and PyPI only (scripts/install-wasm-toolchain.sh installs them; see docs/plugins.md).
# Output: plugins/default/kubetask_default.wasm, embedded by the controller, the test plugin
# plugins/testing/hostile.wasm, the example plugins in plugins/examples/ (the C one built by its
# own build.sh with Debian's clang and wasi-libc). The templates are built by CI from copies outside
# the repository (scripts/check-templates.sh), as a plugin author builds them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
WASM_TOOLS=${WASM_TOOLS:-$root/.venv-wasm/bin/wasm-tools}
target_dir=${PLUGIN_TARGET_DIR:-$root/target/wasm}
cargo_home=${CARGO_HOME:-$HOME/.cargo}

# rustup's shims shadow Debian's compiler, which is the one matching rust-web-src: use it by path.
# Paths are remapped so the bytes do not depend on where the checkout or the cargo home is.
RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-22 \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="--remap-path-prefix=$root=/kubetask --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=/usr/lib/rustlib/src/rust=/rustc" \
  /usr/bin/cargo build --locked -p kubetask-default-plugin -p kubetask-hostile-plugin \
    -p kubetask-example-restricted-policy -p kubetask-example-git-clone -p kubetask-example-agent-runner -p kubetask-example-cilium-egress -p kubetask-example-label-router --profile plugin \
    --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort --target-dir "$target_dir"

check_imports() {
  local out=$1
  # Plugins get no ambient capabilities: the only imports allowed are our own interfaces.
  local foreign
  foreign=$("$WASM_TOOLS" component wit "$out" | grep -E '^\s*import ' | grep -v 'kubetask:plugin/' || true)
  if [ -n "$foreign" ]; then
    echo "error: $out imports more than kubetask:plugin: $foreign" >&2
    exit 1
  fi
  echo "built $out ($(wc -c < "$out") bytes, sha256 $(sha256sum "$out" | cut -d' ' -f1))"
}
componentize() {
  local core="$target_dir/wasm32-unknown-unknown/plugin/$1.wasm" out=$2
  "$WASM_TOOLS" component new "$core" -o "$out"
  "$WASM_TOOLS" validate "$out"
  check_imports "$out"
}
componentize kubetask_default_plugin plugins/default/kubetask_default.wasm
componentize kubetask_hostile_plugin plugins/testing/hostile.wasm
componentize kubetask_example_restricted_policy plugins/examples/restricted-policy/restricted_policy.wasm
componentize kubetask_example_git_clone plugins/examples/git-clone/git_clone.wasm
componentize kubetask_example_agent_runner plugins/examples/agent-runner/agent_runner.wasm
componentize kubetask_example_cilium_egress plugins/examples/cilium-egress/cilium_egress.wasm
componentize kubetask_example_label_router plugins/examples/label-router/label_router.wasm
WASM_TOOLS=$WASM_TOOLS plugins/examples/deadline-c/build.sh plugins/examples/deadline-c/deadline_policy.wasm
check_imports plugins/examples/deadline-c/deadline_policy.wasm
WASM_TOOLS=$WASM_TOOLS scripts/plugin-stamp.sh write
