#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL cluster on a loopback port, exported to it
# as SEKIMORI_TEST_PG_URL; the cluster is removed afterwards.
set -euo pipefail
bindir=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)")
dir=$(mktemp -d /tmp/sekimori-pg.XXXXXX)
port=${SEKIMORI_TEST_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  # PostgreSQL refuses to run as root.
  chown postgres: "$dir"
  as_pg=(runuser -u postgres --)
fi
cleanup() {
  "${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
"${as_pg[@]}" "$bindir/initdb" -D "$dir/data" -U sekimori -A trust --no-sync -E UTF8 >/dev/null
# fsync off: a test cluster that dies with the run needs no durability.
"${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w start \
  -o "-p $port -h 127.0.0.1 -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >/dev/null
export SEKIMORI_TEST_PG_URL="postgresql://sekimori@127.0.0.1:$port/postgres"
"$@"
