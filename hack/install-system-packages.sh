#!/usr/bin/env bash
# Debian packages the local and observability tiers use: PostgreSQL (the store), promtool (rule checks).
# Installs only what is missing; needs root (CI runs as root). Without root it says what to install.
set -euo pipefail

need=()
pg_bin_found() { command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
pg_bin_found || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)

if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]} (run: sudo apt-get install -y ${need[*]})" >&2
  exit 1
fi
echo "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps it small; the server's own service is not started (tests start their own).
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian's postinst may start a cluster on 5432; the tests never use it, so leave it to the machine's owner.
