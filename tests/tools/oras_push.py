#!/usr/bin/env python3
"""Pushes an artifact with the oras Python SDK: one file, a config of the given
media type (what the referrers API reports as its artifactType), and optionally
a subject manifest.

usage: oras_push.py WORKDIR HOST REPO:TAG ARTIFACT_TYPE [SUBJECT_DIGEST SUBJECT_SIZE]
"""
import json
import os
import sys

import oras.client
import oras.oci

work, host, target, artifact_type = sys.argv[1:5]
subject_digest = sys.argv[5] if len(sys.argv) > 5 else ""
subject_size = sys.argv[6] if len(sys.argv) > 6 else ""

os.chdir(work)
name = target.replace("/", "_").replace(":", "_")
with open(f"{name}.txt", "w") as f:
    f.write(f"payload of {target}\n")
with open(f"{name}.config.json", "w") as f:
    json.dump({"artifact": target}, f)

client = oras.client.OrasClient(hostname=host, insecure=True)
subject = None
if subject_digest:
    subject = oras.oci.Subject(
        mediaType="application/vnd.oci.image.manifest.v1+json",
        digest=subject_digest,
        size=int(subject_size),
    )
response = client.push(
    target=f"{host}/{target}",
    files=[f"{name}.txt"],
    manifest_config=f"{name}.config.json:{artifact_type}",
    subject=subject,
    quiet=True,
)
if response.status_code != 201:
    sys.exit(f"manifest push answered {response.status_code}: {response.text}")
