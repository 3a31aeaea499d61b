# The two README commands are `make demo` and `make test`; the rest are building blocks.
SHELL := /bin/bash
.DEFAULT_GOAL := help
LEDGER := .venv/bin/ledger
# pytest processes for `make test` (each its own scratch ledger and topics on the shared
# PostgreSQL and Kafka; a file is never split between them, and the heavy files all run
# on one of them, first: tests/scheduling.py).
TEST_WORKERS ?= 2

.PHONY: help up down status demo test check unit bench chaos screenshots peers benchtools

help:
	@echo "make demo   - start everything and show a verified access history (the main job)"
	@echo "make test   - install what is missing, start PostgreSQL and Kafka, run all checks and tests"
	@echo "make up     - start PostgreSQL, Kafka, the consumer and the API; write .local/env"
	@echo "              (make up KAFKA_BROKERS=3: a replicated 3-broker Kafka cluster; docs/scaling.md)"
	@echo "make down   - stop everything make up started"
	@echo "make status - what is running"

up:
	@deploy/local/stack.sh up

down:
	@deploy/local/stack.sh down

status:
	@deploy/local/stack.sh status

demo: up
	@$(LEDGER) demo
	@$(LEDGER) dicom-proxy demo
	@$(LEDGER) rules demo

# Static checks first (fast), then the whole pytest suite against real PostgreSQL and Kafka.
check:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

test:
	@deploy/local/stack.sh infra
	@deploy/local/gotools.sh
	@$(MAKE) --no-print-directory check
	.venv/bin/pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

unit:
	.venv/bin/pytest tests/unit tests/vectors

# The fault-injection suite at full scale (CI runs it at 20,000 events per fault).
chaos:
	@deploy/local/stack.sh infra
	FAULT_EVENTS=100000 FAULT_RATE=10000 .venv/bin/pytest -v tests/faults

# Refresh the console screenshots the README shows (docs/console/), from the browser tests.
screenshots: up
	LEDGER_SCREENSHOTS=docs .venv/bin/pytest -q -p no:cacheprovider \
		tests/e2e/test_console_browser.py tests/e2e/test_console_reports.py

# The peers benchmarks/peers.py runs beside the ledger's ingest (Tessera, immudb), built
# from the Go module proxy into .local/peers/bin (cached). Only bench needs them.
peers:
	@deploy/local/peers.sh

benchtools:
	@deploy/local/benchtools.sh

# Speed figures, printed side by side; needs the stack (make up). Never part of make test.
bench: up peers benchtools
	.venv/bin/python benchmarks/codec.py
	.venv/bin/python benchmarks/merkle.py
	.venv/bin/python benchmarks/verify.py
	.venv/bin/python benchmarks/checkpoints.py
	.venv/bin/python benchmarks/ingest.py
	.venv/bin/python benchmarks/emit.py
	.venv/bin/python benchmarks/peers.py
	.venv/bin/python benchmarks/producer_auth.py
	.venv/bin/python benchmarks/dicomproxy.py
	.venv/bin/python benchmarks/proofs.py
	.venv/bin/python benchmarks/rules.py
	@$(LEDGER) demo > /dev/null  # console_verify.py verifies one entry of the stack's own ledger
	.venv/bin/python benchmarks/console_verify.py
	.venv/bin/python benchmarks/queries.py
	.venv/bin/python benchmarks/histories.py
	.venv/bin/python benchmarks/scaling.py
	.venv/bin/python benchmarks/attribution.py
	.venv/bin/python benchmarks/atna.py
	.venv/bin/python benchmarks/refusals.py
	.venv/bin/python benchmarks/orthanc.py
	.venv/bin/python benchmarks/cluster.py
