#!/usr/bin/env bash
# The record that ties the committed wasm components to what built them.
#
#   plugin-stamp.sh write   after scripts/build-plugins.sh: records the inputs' hash and the
#                           outputs' sha256 in plugins/BUILD-STAMP
#   plugin-stamp.sh check   exit 0 when the tool versions, the inputs (sources, the plugins'
#                           part of the manifest and lock file, build scripts) and the
#                           committed outputs are exactly those recorded; exit 1 (showing
#                           what differs) otherwise, and CI rebuilds
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
  plugins/examples/agent-runner/agent_runner.wasm
  plugins/examples/cilium-egress/cilium_egress.wasm
  plugins/examples/label-router/label_router.wasm
  plugins/examples/deadline-c/deadline_policy.wasm
)

# The plugin packages `scripts/build-plugins.sh` builds.
plugin_packages=(kubetask-default-plugin kubetask-hostile-plugin kubetask-example-restricted-policy
  kubetask-example-git-clone kubetask-example-agent-runner kubetask-example-cilium-egress
  kubetask-example-label-router)

# What of the workspace manifest and the lock file the plugin build reads: the workspace tables
# and the release/plugin profiles (not the host package's dependencies, benches or dev profile),
# and the locked packages the plugins depend on, transitively (not the host's, so a new host
# dev-dependency does not force an 11-minute rebuild). Fails if a plugin depends on a path
# package outside the directories hashed below.
plugin_manifests() {
  python3 - "${plugin_packages[@]}" <<'EOF'
import json, sys, tomllib
manifest = tomllib.load(open("Cargo.toml", "rb"))
for table in ("package", "dependencies", "dev-dependencies", "build-dependencies", "bench", "bin", "test"):
    manifest.pop(table, None)
manifest.get("profile", {}).pop("dev", None)
print("Cargo.toml", json.dumps(manifest, sort_keys=True))
lock = tomllib.load(open("Cargo.lock", "rb"))
by_name = {}
for package in lock["package"]:
    by_name.setdefault(package["name"], []).append(package)
def locked(dep):
    # A lock dependency is "name", "name version" or "name version (source)".
    name, _, rest = dep.partition(" ")
    candidates = by_name[name]
    if rest:
        version = rest.split(" ")[0]
        candidates = [p for p in candidates if p["version"] == version]
    return candidates[0]
seen, todo = {}, [locked(name) for name in sys.argv[1:]]
while todo:
    package = todo.pop()
    key = (package["name"], package["version"], package.get("source", ""))
    if key not in seen:
        seen[key] = package
        todo.extend(locked(dep) for dep in package.get("dependencies", []))
hashed = ("kubetask-api", "kubetask-plugin-sdk")
for name, _, source in seen:
    if not source and name not in hashed and name not in sys.argv[1:]:
        sys.exit(f"plugin-stamp: plugins depend on the path package {name}: add its directory to the stamp's inputs")
print("Cargo.lock", lock.get("version"))
for key in sorted(seen):
    print("Cargo.lock", json.dumps(seen[key], sort_keys=True))
EOF
}

# The tools that produce the bytes, in clear text so a difference says which one.
tool_versions() {
  /usr/bin/rustc --version --verbose | sed 's/^/tool rustc: /'
  echo "tool wasm-tools: $("$WASM_TOOLS" --version)"
  echo "tool clang: $(clang-22 --version | head -1)"
  echo "tool wasm-ld: $(wasm-ld-22 --version)"
}

inputs_hash() {
  {
    # Every tracked file the plugin build reads (the API crate is compiled into every Rust
    # plugin) — not the outputs, nor what is made from them (the packed configmap.yaml
    # manifests), nor documentation.
    git ls-files -z -- plugins wit api scripts/build-plugins.sh scripts/install-wasm-toolchain.sh \
        ':!:plugins/template*' ':!:*.wasm' ':!:*.cwasm' ":!:$stamp" ':!:*/configmap.yaml' ':!:*.md' |
      sort -z | xargs -0 sha256sum
    plugin_manifests
  } | sha256sum | cut -d' ' -f1
}

record() {
  tool_versions
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
