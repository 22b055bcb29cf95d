# The two commands a newcomer needs are `make run` and `make test`; both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
LINTED := src conformance tests scripts benchmarks

.PHONY: install run test test-fast lint protos bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "otv needs Python 3.11 or newer as '$(PYTHON)'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## The Node.js example adapter's locked dependencies (its certification test needs them).
NODE_EXAMPLE := examples/node-adapter
$(NODE_EXAMPLE)/node_modules/.package-lock.json: $(NODE_EXAMPLE)/package-lock.json
	@command -v npm >/dev/null || { echo "the Node.js example needs Node.js 20 and npm"; exit 1; }
	npm ci --prefix $(NODE_EXAMPLE) --no-audit --no-fund --loglevel=error

## Start the gateway on the embedded default (SQLite demo practice) at 127.0.0.1:50051 and the
## staff page at 127.0.0.1:8080; elsewhere: make run LISTEN=127.0.0.1:50052 HTTP_LISTEN=127.0.0.1:8081
LISTEN      ?= 127.0.0.1:50051
HTTP_LISTEN ?= 127.0.0.1:8080
run: $(STAMP)
	$(BIN)/otv demo --listen $(LISTEN) --http-listen $(HTTP_LISTEN)

## The whole test suite: lint, types, buf lint, then every test including the slow ones.
test: $(STAMP) lint $(NODE_EXAMPLE)/node_modules/.package-lock.json
	cd $(NODE_EXAMPLE) && node --test
	$(BIN)/pytest -m "slow or not slow"

## The fast tests only (what you run while working).
test-fast: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	cd proto && ../$(BIN)/buf lint

## Regenerate src/otv/v1 from proto/ (commit the result; a test fails when it is stale).
protos: $(STAMP)
	$(BIN)/python scripts/generate_protos.py

bench: $(STAMP)
	@mkdir -p var
	$(BIN)/python benchmarks/bench_availability.py --json var/bench-availability.json
	$(BIN)/python benchmarks/bench_patients.py --json var/bench-patients.json
	$(BIN)/python benchmarks/bench_booking.py --json var/bench-booking.json
	$(BIN)/python benchmarks/bench_signing.py --json var/bench-signing.json
	$(BIN)/python benchmarks/bench_observability.py --json var/bench-observability.json
	$(BIN)/python benchmarks/bench_reader.py --json var/bench-reader.json
	$(BIN)/python benchmarks/bench_conformance.py --json var/bench-conformance.json
	cd benchmarks && ../$(BIN)/python bench_changes.py --json ../var/bench-changes.json
	$(BIN)/python benchmarks/bench_snapshot_diff.py --json var/bench-snapshot-diff.json
	$(BIN)/python benchmarks/bench_snapshot_upload.py --json var/bench-snapshot-upload.json
	$(BIN)/python benchmarks/bench_flood.py --json var/bench-flood.json
	$(BIN)/python benchmarks/bench_inbox.py --json var/bench-inbox.json
	$(BIN)/python benchmarks/bench_replicas.py --json var/bench-replicas.json

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
