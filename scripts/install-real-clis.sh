#!/usr/bin/env bash
# Installs the four agent CLIs from npm, at the versions agents/Dockerfile pins (one list: the
# images ship what the tests run), into target/real-clis (or $1). The integration tests in
# tests/integration/real_clis.rs run them through kubetask-agent against the fake model API.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-target/real-clis}
mapfile -t packages < <(sed -n 's/^ARG [A-Z_]*_PACKAGE=\(.*\)$/\1/p' agents/Dockerfile)
if [ "${#packages[@]}" -ne 4 ]; then
  echo "error: expected 4 pinned CLI packages in agents/Dockerfile, found: ${packages[*]}" >&2
  exit 1
fi
mkdir -p "$prefix"
# A throw-away npm cache: the packages are 1.2 GB and would be kept twice (CI's disk is finite).
cache=$(mktemp -d "${TMPDIR:-/tmp}/kubetask-npm-cache.XXXXXX")
trap 'rm -rf "$cache"' EXIT
# The packages' native parts come as optional dependencies (no install scripts needed).
npm install --prefix "$prefix" --cache "$cache" --no-audit --no-fund --no-save --loglevel=error \
  "${packages[@]}" >/dev/null
# npm 11 leaves install scripts of packages not approved in an allowScripts list unrun; two of
# the CLIs fetch their native binary (from the npm registry) in theirs: run them by name.
for package in "${packages[@]}"; do
  name=${package%@*}
  if grep -q '"postinstall"' "$prefix/node_modules/$name/package.json"; then
    npm run --prefix "$prefix/node_modules/$name" --cache "$cache" --loglevel=error postinstall >/dev/null
  fi
done
for cli in claude gemini codex opencode; do
  printf '%s: %s\n' "$cli" "$("$prefix/node_modules/.bin/$cli" --version 2>&1 | head -1)"
done
