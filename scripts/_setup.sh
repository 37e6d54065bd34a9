# Shared set-up for scripts/demo and scripts/test: a virtualenv in .venv with
# FieldLedger installed from this checkout. Sourced, not run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "Please run as root, or install: $*" >&2
    exit 1
  fi
}

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

make_venv() {
  if [ -x .venv/bin/python ] && .venv/bin/python -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    return
  fi
  rm -rf .venv
  if ! "$PYTHON" -m venv .venv >/dev/null 2>&1; then
    # Debian ships venv's pip bootstrap separately.
    rm -rf .venv
    apt_install python3-venv
    "$PYTHON" -m venv .venv
  fi
}

install_project() {  # $1: "" or "[test]"
  make_venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".$1"
}

install_postgresql_if_missing() {
  # For the tests marked postgres, which start throw-away clusters of their own
  # (tests/pg_cluster.py). Debian's postgresql package would also create and start
  # a cluster "main" on port 5432: postgresql-common goes first, told not to.
  if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    return
  fi
  echo "Installing from Debian: postgresql"
  apt_install postgresql-common
  as_root sed -i -E 's/^#? *create_main_cluster *=.*/create_main_cluster = false/' \
    /etc/postgresql-common/createcluster.conf
  apt_install postgresql
}
