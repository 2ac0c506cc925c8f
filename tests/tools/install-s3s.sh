#!/usr/bin/env bash
# Installs s3s-fs, a real S3 server (SigV4, multipart, conditional puts) over a
# folder, which the object-storage tests start on loopback. Built from crates.io
# with its own lock file, into target/s3s/ (or $BERTH_S3S), where the tests look
# for it; about two minutes on two cores. (0.17 needs a newer rustc than ours.)
# Idempotent, and quick when it is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=0.14.1
dest="${BERTH_S3S:-$PWD/target/s3s}"
if [ -x "$dest/bin/s3s-fs" ] && [ "$(cat "$dest/.version" 2>/dev/null)" = "$VERSION" ]; then
    exit 0
fi
echo "install-s3s: cargo install s3s-fs $VERSION into $dest"
cargo install --quiet --locked s3s-fs --version "$VERSION" --features binary --root "$dest"
echo "$VERSION" >"$dest/.version"
