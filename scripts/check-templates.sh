#!/usr/bin/env bash
# Builds each plugin template as a plugin author would: copied into an empty directory outside
# this repository, tested natively (`cargo test`), built with the build.sh it ships with, then
# checked with `kubetask plugin check`. The KubeTask crates come from this checkout: the copy's
# Git dependencies become path dependencies, as the template's Cargo.toml describes (CI has no
# network for Git, and a `[patch]` would still fetch the source it patches). The other crates
# come at this workspace's locked versions (its Cargo.lock, seeded into the copy; the registry
# serves what the local cache lacks, such as the standard library's crates for -Zbuild-std on a
# machine that has not built plugins yet).
#
#   scripts/check-templates.sh [KUBETASK_BINARY]    (default: target/debug/kubetask)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kubetask=${1:-$root/target/debug/kubetask}
export WASM_TOOLS=${WASM_TOOLS:-$root/.venv-wasm/bin/wasm-tools}
work=$(mktemp -d "${TMPDIR:-/tmp}/kubetask-template.XXXXXX")
trap 'rm -rf "$work"' EXIT

for template in template template-raw; do
  [ -d "$root/plugins/$template" ] || continue
  copy="$work/my-$template"
  # -L: the raw template's wit/ is a link to this repository's wit/ (authors copy the files).
  cp -rL "$root/plugins/$template" "$copy"
  rm -rf "$copy/target" "$copy/Cargo.lock" "$copy"/*.wasm
  cp "$root/Cargo.lock" "$copy/Cargo.lock"
  sed -i -E \
    -e "s|^(kubetask-plugin-sdk *= *)\{ *git *= *\"[^\"]*\" *\}|\1{ path = \"$root/plugins/sdk\" }|" \
    -e "s|^(kubetask-default-plugin *= *)\{ *git *= *\"[^\"]*\" *\}|\1{ path = \"$root/plugins/default\" }|" \
    "$copy/Cargo.toml"
  if grep -nE '^[^#]*git *=' "$copy/Cargo.toml"; then
    echo "error: $template/Cargo.toml has a Git dependency this script does not replace" >&2
    exit 1
  fi
  echo "--- $template, copied to $copy"
  # One target directory for both templates (same profiles): the second reuses the standard
  # library and the crates the first compiled for wasm32, as one author's machine would.
  (cd "$copy" && CARGO_TARGET_DIR="$root/target/templates/native" cargo test)
  CARGO_TARGET_DIR="$root/target/templates/wasm" "$copy/build.sh" -o "$copy/plugin.wasm"
  "$kubetask" plugin check "$copy/plugin.wasm" -v
done
