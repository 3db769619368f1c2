#!/usr/bin/env bash
# Debian packages the tests start on this host, installed when missing (idempotent, no stdin):
#
#   bash include/scripts/host_packages.sh              everything the suite needs
#   bash include/scripts/host_packages.sh redis-server only these
#
# redis-server     the cross-host request pacer's store (gogooku3.devtools.redis_server starts it)
# chromium         the browser the deployment's UI test drives headless (tests/test_deploy.py)
# chromium-driver  its WebDriver (chromedriver), which Selenium talks to
#
# Needs root (or password-less sudo) for apt-get; a package that is already installed costs nothing.
set -euo pipefail

say() { echo "host_packages.sh: $*"; }
die() { echo "host_packages.sh: error: $*" >&2; exit 1; }

# package -> the binary that shows it is installed
declare -A BINARY=([redis-server]=redis-server [chromium]=chromium [chromium-driver]=chromedriver)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    die "need root or password-less sudo to run: $*"
  fi
}

wanted=("$@")
[ "${#wanted[@]}" -gt 0 ] || wanted=("${!BINARY[@]}")
missing=()
for pkg in "${wanted[@]}"; do
  [ -n "${BINARY[$pkg]:-}" ] || die "unknown package $pkg (known: ${!BINARY[*]})"
  PATH="/usr/sbin:/sbin:$PATH" command -v "${BINARY[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
say "installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
# Installing must not start the package's own service: the tests start what they need themselves.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
  as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
  added_policy=1
fi
trap '[ "$added_policy" = 1 ] && as_root rm -f "$policy"' EXIT
as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null \
  || { as_root apt-get update -qq </dev/null \
    && as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null; } \
  || die "apt-get could not install ${missing[*]}"
for pkg in "${missing[@]}"; do
  PATH="/usr/sbin:/sbin:$PATH" command -v "${BINARY[$pkg]}" >/dev/null 2>&1 \
    || die "$pkg installed but ${BINARY[$pkg]} is not on PATH"
done
say "installed ${missing[*]}"
