#!/usr/bin/env bash
# Prints install.yaml: what `kubectl kustomize manifests/` produces with the controller's
# image set to IMAGE (a name pinned by digest, `ghcr.io/kubetask/kubetask:v0.1.0@sha256:…`).
#   scripts/install-yaml.sh ghcr.io/kubetask/kubetask:v0.1.0@sha256:<digest> > install.yaml
set -euo pipefail
image=${1:?usage: install-yaml.sh IMAGE@sha256:DIGEST}
case "$image" in
  *@sha256:*) ;;
  *) echo "error: $image is not pinned by digest (NAME@sha256:...)" >&2; exit 1 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$root/target"
overlay=$(mktemp -d "$root/target/install-overlay.XXXXXX")
trap 'rm -rf "$overlay"' EXIT
name=${image%@*}
name=${name%:*}
digest=${image#*@}
cat > "$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../manifests
images:
  - name: ghcr.io/kubetask/kubetask
    newName: $name
    digest: $digest
YAML
kubectl kustomize "$overlay"
