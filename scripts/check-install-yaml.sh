#!/usr/bin/env bash
# Checks install.yaml as the release makes it: exactly `kubectl kustomize manifests/` with the
# controller's image set to IMAGE (name@sha256:digest), and nothing else changed.
#   scripts/check-install-yaml.sh ghcr.io/kubetask/kubetask@sha256:<digest>
set -euo pipefail
image=${1:?usage: check-install-yaml.sh NAME@sha256:DIGEST}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p target
scripts/install-yaml.sh "$image" > target/install.yaml
kubectl kustomize manifests/ > target/kustomize.yaml
python3 -c 'import yaml' 2>/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-yaml >/dev/null
}
python3 - "$image" target/install.yaml target/kustomize.yaml <<'PY'
import sys, yaml
image, install, kustomized = sys.argv[1], sys.argv[2], sys.argv[3]
ours = [d for d in yaml.safe_load_all(open(install)) if d]
theirs = [d for d in yaml.safe_load_all(open(kustomized)) if d]
images = []
for doc in theirs:
    if doc["kind"] == "Deployment":
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if container["image"].startswith("ghcr.io/kubetask/kubetask"):
                images.append(container["image"])
                # kustomize writes a digest-pinned image as name@digest, without the tag.
                name, digest = image.split("@", 1)
                path, _, last = name.rpartition("/")
                container["image"] = f"{path}/{last.split(':')[0]}@{digest}"
assert images, "no controller image in manifests/"
assert ours == theirs, "install.yaml differs from kubectl kustomize manifests/ with the image set"
kinds = sorted({d["kind"] for d in ours})
deployment = next(d for d in ours if d["kind"] == "Deployment")
pinned = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
assert "@sha256:" in pinned, pinned
print(f"install.yaml: {len(ours)} objects ({', '.join(kinds)}), the controller pinned as {pinned}")
PY
