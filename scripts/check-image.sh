#!/usr/bin/env bash
# Proves an image archive of `make image` (the controller's, or the runner's when its name
# starts with kubetask-agent): skopeo reads it (architecture, labels, user), its root filesystem
# holds exactly the binary, the CA certificates and passwd/group, and the binary runs as user
# 65532 from the unpacked root filesystem.
set -euo pipefail
archive=${1:-target/image/kubetask-linux-amd64.oci.tar}
case "$(basename "$archive")" in
  kubetask-agent-*) program=kubetask-agent ;;
  *) program=kubetask ;;
esac
command -v skopeo >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends skopeo >/dev/null
}
inspect=$(skopeo inspect "oci-archive:$archive")
config=$(skopeo inspect --config "oci-archive:$archive")
python3 - "$inspect" "$config" "$(git rev-parse HEAD)" "$program" <<'PY'
import json, sys
inspect, config, revision = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
program = sys.argv[4]
labels = inspect["Labels"]
assert inspect["Architecture"] == "amd64" and inspect["Os"] == "linux", inspect
assert labels["org.opencontainers.image.source"] == "https://github.com/kubetask/kubetask", labels
assert labels["org.opencontainers.image.revision"] == revision, labels
assert labels["org.opencontainers.image.version"], labels
assert config["config"]["User"] == "65532:65532", config["config"]
assert config["config"]["Entrypoint"] == ["/" + program], config["config"]
print("skopeo reads it:", inspect["Digest"], labels["org.opencontainers.image.version"])
PY
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/layout" "$work/rootfs"
tar -xf "$archive" -C "$work/layout"
layer=$(python3 -c 'import json,sys
index = json.load(open(sys.argv[1] + "/index.json"))
manifest = json.load(open(sys.argv[1] + "/blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
print(manifest["layers"][0]["digest"].split(":")[1])' "$work/layout")
tar -xzf "$work/layout/blobs/sha256/$layer" -C "$work/rootfs"
files=$(cd "$work/rootfs" && find . -mindepth 1 | sort | tr '\n' ' ')
expected="./etc ./etc/group ./etc/passwd ./etc/ssl ./etc/ssl/certs ./etc/ssl/certs/ca-certificates.crt ./$program "
if [ "$files" != "$expected" ]; then
  echo "error: the image holds $files, expected $expected" >&2
  exit 1
fi
echo "the image holds only: $files"
chmod 755 "$work" "$work/rootfs"
setpriv --reuid 65532 --regid 65532 --clear-groups "$work/rootfs/$program" --version
