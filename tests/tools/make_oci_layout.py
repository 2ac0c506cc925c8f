#!/usr/bin/env python3
"""Writes an OCI image layout holding a two-platform image index, with no network
and no container engine: each platform gets a config and two gzipped tar layers
(one of them shared by both platforms), and the index is tagged in index.json.

usage: make_oci_layout.py DIR [TAG]
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def write_blob(root, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(root, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def layer(files):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    return gzip.compress(raw.getvalue(), mtime=0), diff_id


def main():
    root = sys.argv[1]
    tag = sys.argv[2] if len(sys.argv) > 2 else "latest"
    os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    shared, shared_diff = layer({"etc/shared.txt": b"shared by both platforms\n" * 1000})
    shared_desc = write_blob(root, shared)
    manifests = []
    for arch in ("amd64", "arm64"):
        own, own_diff = layer({f"bin/{arch}.txt": os.urandom(64 * 1024)})
        own_desc = write_blob(root, own)
        config = json.dumps({
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [shared_diff, own_diff]},
        }).encode()
        config_desc = write_blob(root, config)
        layer_type = "application/vnd.oci.image.layer.v1.tar+gzip"
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [
                {"mediaType": layer_type, **shared_desc},
                {"mediaType": layer_type, **own_desc},
            ],
        }).encode()
        manifests.append({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            **write_blob(root, manifest),
            "platform": {"architecture": arch, "os": "linux"},
        })
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }).encode()
    index_desc = write_blob(root, index)
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                **index_desc,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        }, f)
    print(index_desc["digest"])


if __name__ == "__main__":
    main()
