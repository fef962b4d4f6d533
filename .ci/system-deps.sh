#!/usr/bin/env bash
# Install the Debian packages the test suite needs, if they are missing.
#
#   docker.io       -> dockerd, containerd, runc (a private engine is started by
#                      tests/support/dockerd.py; nothing here starts a daemon)
#   busybox-static  -> /bin/busybox, used to build the tiny test image offline
#   bubblewrap      -> /usr/bin/bwrap, the kernel sandbox read-only commands run in
#   postgresql      -> /usr/lib/postgresql/<v>/bin/{initdb,postgres}: tests/support/postgres.py
#                      runs a private server on its own port and socket (installed without
#                      the package's "main" cluster: nothing here starts a server either)
#
# Idempotent: exits quickly when everything is already installed. Runs
# `apt-get update` only when something must be installed. When not root or
# apt is unavailable it prints a one-line warning and exits 0; the docker
# and PostgreSQL tests then skip with a precise reason (or fail under
# ORCHESTRATOR_TEST_DOCKER=require / in CI, where CI=true requires PostgreSQL).
set -euo pipefail

PACKAGES=(docker.io busybox-static bubblewrap git openssh-client openssl postgresql)

have_postgres_server() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null
}

have_pkg() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for pkg in "${PACKAGES[@]}"; do
    have_pkg "$pkg" || missing+=("$pkg")
  done
else
  # No dpkg: judge by the binaries alone.
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  [ -x /bin/busybox ] || missing+=(busybox-static)
  command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
  have_postgres_server || missing+=(postgresql)
fi

# The binaries must also be there (a package may be half-removed).
if ! command -v dockerd >/dev/null 2>&1 || ! command -v containerd >/dev/null 2>&1 \
  || ! command -v runc >/dev/null 2>&1; then
  [[ " ${missing[*]-} " == *" docker.io "* ]] || missing+=(docker.io)
fi
if ! have_postgres_server; then
  [[ " ${missing[*]-} " == *" postgresql "* ]] || missing+=(postgresql)
fi

if [ "${#missing[@]}" -eq 0 ]; then
  echo "system-deps: all present (${PACKAGES[*]})"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: WARNING: not root, cannot install ${missing[*]}; docker and PostgreSQL tests will skip" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: WARNING: apt-get unavailable, cannot install ${missing[*]}; docker and PostgreSQL tests will skip" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "system-deps: installing ${missing[*]}"
if ! apt-get update -qq; then
  echo "system-deps: WARNING: apt-get update failed; docker and PostgreSQL tests will skip" >&2
  exit 0
fi
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
  # As docker-library/postgres does: no "main" cluster (and so no server on port 5432) at install.
  if apt-get install -y -qq --no-install-recommends postgresql-common \
    && [ -f /etc/postgresql-common/createcluster.conf ]; then
    sed -ri 's/^#?\s*(create_main_cluster)\s*=.*$/\1 = false/' /etc/postgresql-common/createcluster.conf
  fi
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
  echo "system-deps: WARNING: apt-get install ${missing[*]} failed; docker and PostgreSQL tests will skip" >&2
  exit 0
fi
echo "system-deps: installed ${missing[*]}"
