# leadflow: build, test and run against local PostgreSQL and NATS (JetStream).
# scripts/services.sh installs/starts both when needed.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# Use /usr/local/go/bin when go is not already on PATH.
ifeq ($(shell command -v go 2>/dev/null),)
export PATH := /usr/local/go/bin:$(PATH)
endif

GO ?= go

PG_CONN := -h 127.0.0.1 -p 5432 -U postgres -w
LEADFLOW_DB_NAME ?= leadflow

# Each can be overridden from the environment or the make command line.
LEADFLOW_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
LEADFLOW_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/$(LEADFLOW_DB_NAME)?sslmode=disable
LEADFLOW_NATS_URL ?= nats://127.0.0.1:4222

.DEFAULT_GOAL := build
.PHONY: build test run services bench faults

build:
	$(GO) build -o bin/leadflow ./cmd/leadflow

services:
	scripts/services.sh

test: services
	$(GO) vet ./...
	LEADFLOW_TEST_DATABASE_URL='$(LEADFLOW_TEST_DATABASE_URL)' $(GO) test -race -count=1 ./...
	$(GO) test -tags faults -count=1 -run '^TestFaultPoint' ./internal/worker/

# bench: the end-to-end benchmark (cmd/leadflow-bench: its own nats-server
# and leadflow serve, a fresh leadflow_bench database); docs/performance.md.
BENCH_FLAGS ?= -n 100000 -dup 0.2 -ceiling
bench: services
	$(GO) run ./cmd/leadflow-bench $(BENCH_FLAGS)

# faults: the reliability fault suite at full size; rewrites the table of
# docs/reliability.md (about 10 minutes). FAULTS_FLAGS="--short" for a fifth.
FAULTS_FLAGS ?=
faults: services
	scripts/faults.sh $(FAULTS_FLAGS)

# Where `make run` serves /healthz and /readyz, and keeps its dev data.
LEADFLOW_HTTP_ADDR ?= 127.0.0.1:8080
LEADFLOW_DEV_DATA ?= .leadflow-dev

# run: `leadflow dev` (an embedded NATS server and a throwaway PostgreSQL in
# $(LEADFLOW_DEV_DATA), reused by the next run) in the background; once it is
# ready, the demo import when there is one; then dev in the foreground until
# Ctrl-C. Needs no running NATS or PostgreSQL, only PostgreSQL's server
# binaries (installed as root when missing) unless LEADFLOW_DATABASE_URL is set.
run:
	@if [ -z "$${LEADFLOW_DATABASE_URL:-}" ] && ! command -v initdb >/dev/null && \
		! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "run: leadflow dev needs PostgreSQL's server binaries: install the Debian package postgresql (as root: apt-get install -y postgresql)" >&2; \
			exit 1; \
		fi; \
		echo "run: installing the Debian package postgresql (leadflow dev runs its own server from its binaries)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q; \
		LANG=C.UTF-8 LC_ALL=C.UTF-8 apt-get install -y -q postgresql </dev/null; \
	fi
	$(GO) build -o bin/leadflow ./cmd/leadflow
	@data='$(LEADFLOW_DEV_DATA)'; addr='$(LEADFLOW_HTTP_ADDR)'; \
	host=$${addr%:*}; port=$${addr##*:}; \
	case "$$host" in ""|0.0.0.0|"[::]") host=127.0.0.1 ;; esac; \
	LEADFLOW_HTTP_ADDR="$$addr" bin/leadflow dev --data "$$data" & pid=$$!; \
	trap 'kill -INT $$pid 2>/dev/null || true' INT TERM; \
	ready() { \
		[ -f "$$data/env" ] && ( exec 3<>"/dev/tcp/$$host/$$port" && \
			printf 'GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n' "$$addr" >&3 && \
			IFS= read -r -t 5 status <&3 && [[ $$status == *" 200 "* ]] ) 2>/dev/null; \
	}; \
	for i in $$(seq 1 240); do \
		ready && break; \
		kill -0 $$pid 2>/dev/null || break; \
		sleep 0.5 || true; \
	done; \
	if ready; then \
		usage=$$(bin/leadflow help 2>&1 || true); \
		if [ -f examples/leads.csv ] && [[ $$usage == *"  import"* ]]; then \
			flags=(--org demo); \
			help=$$(bin/leadflow import -h 2>&1 || true); \
			[[ $$help == *"-actor"* ]] && flags+=(--actor demo); \
			[[ $$help == *"-skip-invalid"* ]] && flags+=(--skip-invalid); \
			echo "run: bin/leadflow import $${flags[*]} examples/leads.csv"; \
			( . "$$data/env" && bin/leadflow import "$${flags[@]}" examples/leads.csv ) || \
				echo "run: the demo import failed; leadflow dev keeps running" >&2; \
		fi; \
		echo "run: leadflow dev is ready on http://$$addr; Ctrl-C stops it"; \
	elif kill -0 $$pid 2>/dev/null; then \
		echo "run: leadflow dev did not get ready on http://$$addr/readyz within 2 minutes" >&2; \
		kill -INT $$pid; \
	fi; \
	status=0; \
	while :; do \
		wait $$pid && status=0 || status=$$?; \
		kill -0 $$pid 2>/dev/null || break; \
	done; \
	exit $$status
