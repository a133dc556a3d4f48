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
.PHONY: build test run services

build:
	$(GO) build -o bin/leadflow ./cmd/leadflow

services:
	scripts/services.sh

test: services
	$(GO) vet ./...
	LEADFLOW_TEST_DATABASE_URL='$(LEADFLOW_TEST_DATABASE_URL)' $(GO) test -race -count=1 ./...

run: services
	[ "$$(psql $(PG_CONN) -tAc "select 1 from pg_database where datname='$(LEADFLOW_DB_NAME)'")" = 1 ] || \
		createdb $(PG_CONN) '$(LEADFLOW_DB_NAME)'
	LEADFLOW_DATABASE_URL='$(LEADFLOW_DATABASE_URL)' LEADFLOW_NATS_URL='$(LEADFLOW_NATS_URL)' \
		$(GO) run ./cmd/leadflow serve
