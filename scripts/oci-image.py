#!/usr/bin/env python3
"""Writes a container image of one static binary as an OCI image layout in a tar (what
`skopeo copy oci-archive:FILE docker://REGISTRY/NAME:TAG` pushes), without a container engine:
the controller (`kubetask`) or the agent runner (`kubetask-agent`).

    scripts/oci-image.py --binary target/x86_64-unknown-linux-gnu/release/kubetask \
        --arch amd64 --version 0.1.0 --revision $(git rev-parse HEAD) --created-epoch EPOCH \
        --output target/image/kubetask-linux-amd64.oci.tar

The image holds the static binary (/kubetask, the entrypoint, `controller` its default
argument; or /kubetask-agent with `--program kubetask-agent`), the CA certificates and a
passwd/group naming user 65532 (`nonroot`), and nothing else: no shell, no package manager. It
runs as 65532:65532.

Reproducible by construction (the same inputs give the same bytes, so the same digest): every
tar entry has a fixed owner, mode and mtime (the commit's time), entries are sorted, gzip
carries no name or time, and the JSON documents are written with sorted keys. Python's
standard library (tarfile, gzip, hashlib, json) does it all; Debian's umoci stamps the current
time into the image, which would change the digest at every build.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

SOURCE = "https://github.com/kubetask/kubetask"
USER = "65532:65532"
PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\n"
DESCRIPTIONS = {
    "kubetask": "KubeTask controller: AI agents as Kubernetes Jobs, shaped by WebAssembly plugins",
    "kubetask-agent": "KubeTask agent runner: drives a coding CLI in an agent pod and reports to the Task",
}


def tar_bytes(entries, mtime):
    """A tar of `entries` [(path, mode, bytes or None for a directory)], sorted, owned by root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, mode, data in sorted(entries, key=lambda entry: entry[0]):
            info = tarfile.TarInfo(path)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def gzipped(data):
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as out:
        out.write(data)
    return buffer.getvalue()


def canonical(document):
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--program", default="kubetask", choices=["kubetask", "kubetask-agent"])
    parser.add_argument("--arch", required=True, choices=["amd64", "arm64"])
    parser.add_argument("--version", required=True)
    parser.add_argument("--revision", required=True)
    parser.add_argument("--created-epoch", type=int, required=True, help="the commit's time")
    parser.add_argument("--ca-certificates", default="/etc/ssl/certs/ca-certificates.crt")
    parser.add_argument("--tag", help="the tag named in the layout (default: v<version>)")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    with open(args.binary, "rb") as f:
        binary = f.read()
    with open(args.ca_certificates, "rb") as f:
        certificates = f.read()
    mtime = args.created_epoch
    created = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    layer_tar = tar_bytes(
        [
            ("etc", 0o755, None),
            ("etc/passwd", 0o644, PASSWD.encode()),
            ("etc/group", 0o644, GROUP.encode()),
            ("etc/ssl", 0o755, None),
            ("etc/ssl/certs", 0o755, None),
            ("etc/ssl/certs/ca-certificates.crt", 0o644, certificates),
            (args.program, 0o755, binary),
        ],
        mtime,
    )
    layer = gzipped(layer_tar)
    labels = {
        "org.opencontainers.image.source": SOURCE,
        "org.opencontainers.image.version": args.version,
        "org.opencontainers.image.revision": args.revision,
        "org.opencontainers.image.title": args.program,
        "org.opencontainers.image.description": DESCRIPTIONS[args.program],
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.created": created,
    }
    config = canonical(
        {
            "architecture": args.arch,
            "os": "linux",
            "created": created,
            "config": {
                "User": USER,
                "Entrypoint": ["/" + args.program],
                **({"Cmd": ["controller"]} if args.program == "kubetask" else {}),
                "Env": ["SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
                "ExposedPorts": {"8080/tcp": {}},
                "WorkingDir": "/",
                "Labels": labels,
            },
            "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]},
            "history": [{"created": created, "created_by": "scripts/oci-image.py"}],
        }
    )
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(layer),
                    "size": len(layer),
                }
            ],
            "annotations": labels,
        }
    )
    index = canonical(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": args.arch, "os": "linux"},
                    "annotations": {
                        "org.opencontainers.image.ref.name": args.tag or f"v{args.version}"
                    },
                }
            ],
        }
    )
    blobs = [config, manifest, layer]
    entries = [
        ("oci-layout", 0o644, canonical({"imageLayoutVersion": "1.0.0"})),
        ("index.json", 0o644, index),
        ("blobs", 0o755, None),
        ("blobs/sha256", 0o755, None),
    ] + [("blobs/sha256/" + digest(blob).split(":")[1], 0o644, blob) for blob in blobs]
    archive = tar_bytes(entries, mtime)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "wb") as f:
        f.write(archive)
    # The image's digest (its manifest's), for pinning: name@sha256:...
    print(digest(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
