#!/usr/bin/env bash
# `make image`: the controller's container image and the agent runner's, without a container
# engine.
#
# Builds a static `kubetask` and `kubetask-agent` (glibc, crt-static; paths remapped so the
# checkout's location does not reach the binaries) and writes
# target/image/{kubetask,kubetask-agent}-linux-<arch>.oci.tar, OCI image layouts in a tar
# (scripts/oci-image.py), each with its digest beside it (.digest), for this
# machine's architecture (KUBETASK_IMAGE_ARCH=amd64|arm64 to say it; building for another
# architecture needs its Rust target and linker). The release workflow builds each
# architecture on a runner of that architecture.
#
# Load it with `skopeo copy oci-archive:target/image/kubetask-linux-amd64.oci.tar
# docker://REGISTRY/kubetask:TAG` (or `kind load image-archive` after `skopeo copy` to
# docker-archive:).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
revision=$(git rev-parse HEAD)
epoch=$(git log -1 --format=%ct)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}

build() { # arch target
  local arch=$1 target=$2
  RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$root=/src --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$rustup_home=/rustup" \
    cargo build --release --locked --target "$target" -p kubetask -p kubetask-agent \
    --bin kubetask --bin kubetask-agent
  mkdir -p target/image
  local program
  for program in kubetask kubetask-agent; do
    local binary="target/$target/release/$program"
    if readelf -l "$binary" | grep -q "program interpreter"; then
      echo "error: $binary is dynamically linked (it names a program interpreter)" >&2
      exit 1
    fi
    local out="target/image/$program-linux-$arch.oci.tar"
    python3 scripts/oci-image.py --binary "$binary" --program "$program" --arch "$arch" \
      --version "$version" --revision "$revision" --created-epoch "$epoch" --output "$out" > "$out.digest"
    echo "$out $(cat "$out.digest")"
  done
}

arch=${KUBETASK_IMAGE_ARCH:-$(case "$(uname -m)" in aarch64 | arm64) echo arm64 ;; *) echo amd64 ;; esac)}
case "$arch" in
  amd64) build amd64 x86_64-unknown-linux-gnu ;;
  arm64) build arm64 aarch64-unknown-linux-gnu ;;
  *) echo "error: KUBETASK_IMAGE_ARCH=$arch: amd64 or arm64" >&2; exit 1 ;;
esac
