#!/usr/bin/env bash
# The record that ties the committed wasm components to what built them.
#
#   plugin-stamp.sh write   after scripts/build-plugins.sh: records the inputs' hash and the
#                           outputs' sha256 in plugins/BUILD-STAMP
#   plugin-stamp.sh check   exit 0 when the inputs (sources, lock file, build scripts, tool
#                           versions) and the committed outputs are exactly those recorded;
#                           exit 1 (saying what differs) otherwise, and CI rebuilds
#
# CI uses `check` to skip an 11-minute rebuild when nothing that goes into a component changed;
# any change to an input or an output falls back to the full rebuild and byte comparison.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
stamp=plugins/BUILD-STAMP
WASM_TOOLS=${WASM_TOOLS:-$root/.venv-wasm/bin/wasm-tools}
outputs=(
  plugins/default/kubetask_default.wasm
  plugins/testing/hostile.wasm
  plugins/examples/restricted-policy/restricted_policy.wasm
  plugins/examples/git-clone/git_clone.wasm
  plugins/examples/deadline-c/deadline_policy.wasm
)

inputs_hash() {
  {
    # Every tracked file the plugin build reads (the workspace manifest holds the `plugin`
    # profile; the API crate is compiled into every Rust plugin) — not the outputs, nor what
    # is made from them (the packed configmap.yaml manifests), nor documentation.
    git ls-files -z -- plugins wit api Cargo.toml Cargo.lock scripts/build-plugins.sh \
        scripts/install-wasm-toolchain.sh ':!:*.wasm' ":!:$stamp" ':!:*/configmap.yaml' \
        ':!:*.md' |
      sort -z | xargs -0 sha256sum
    # The tools that produce the bytes.
    /usr/bin/rustc --version --verbose
    "$WASM_TOOLS" --version
    clang-22 --version | head -1
    wasm-ld-22 --version
  } | sha256sum | cut -d' ' -f1
}

record() {
  echo "inputs $(inputs_hash)"
  sha256sum "${outputs[@]}"
}

case ${1:-} in
  write)
    record > "$stamp"
    echo "wrote $stamp"
    ;;
  check)
    if ! [ -f "$stamp" ]; then
      echo "no $stamp" >&2
      exit 1
    fi
    if ! diff -u "$stamp" <(record) >&2; then
      echo "plugin inputs or outputs differ from $stamp" >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 write|check" >&2
    exit 2
    ;;
esac
