#!/usr/bin/env bash
# Installs everything the project needs, idempotently, on Debian bookworm as root
# (or through sudo when not root). Safe to run any number of times.
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
PGRX_VERSION="0.18.0"
PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
DEB_PACKAGES=(
  "postgresql-${PG_MAJOR}" "postgresql-server-dev-${PG_MAJOR}"
  clang libclang-dev pkg-config sudo make
  pgbouncer openssl   # the client's PgBouncer (transaction mode) and TLS integration tests
)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "prereqs: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's postgresql package starts a cluster on 5432; our clusters use their own ports.
if ! cargo pgrx --version 2>/dev/null | grep -q "${PGRX_VERSION}"; then
  echo "prereqs: installing cargo-pgrx ${PGRX_VERSION} (takes several minutes)"
  cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
fi

PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
if ! grep -qs "pg${PG_MAJOR}" "${PGRX_HOME}/config.toml"; then
  echo "prereqs: cargo pgrx init --pg${PG_MAJOR} ${PG_CONFIG}"
  cargo pgrx init "--pg${PG_MAJOR}" "${PG_CONFIG}"
fi

# pgrx installs into PostgreSQL's own directories; `cargo pgrx test --runas postgres`
# needs the postgres user to read the target directory.
echo "prereqs: ok"
