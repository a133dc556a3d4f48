#!/usr/bin/env bash
# Runs leadflow's reliability fault suite (cmd/leadflow-faults) at full size
# against real leadflow, nats-server and PostgreSQL processes on loopback, and
# rewrites the generated table of docs/reliability.md.
#
#   scripts/faults.sh                      every scenario, full size (about 10 minutes on 2 cores)
#   scripts/faults.sh --rev HEAD           the same, building leadflow from a git revision
#   scripts/faults.sh --scenario 2,6 --out ''   some scenarios, without touching the document
#
# Extra arguments go to leadflow-faults (see `go run ./cmd/leadflow-faults -h`).
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust; or
# LEADFLOW_TEST_DATABASE_URL), PostgreSQL's initdb/pg_ctl for the scenarios
# that crash it, nats-server (/usr/sbin/nats-server, or --nats-server), and Go.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
go build -o "${TMPDIR:-/tmp}/leadflow-faults" ./cmd/leadflow-faults
exec "${TMPDIR:-/tmp}/leadflow-faults" --out docs/reliability.md --command "scripts/faults.sh${*:+ $*}" "$@"
