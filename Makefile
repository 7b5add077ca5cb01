# Herald's command runner. Every target makes its own virtualenv in .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run bench test lint typecheck install install-test system-deps web-assets lock clean

run: $(VENV)/.run-installed ## Start Herald on its embedded default at http://127.0.0.1:8000
	$(BIN)/herald serve

# Every benchmark scenario on a fresh local Herald; the table goes into docs/benchmarks.md.
# BENCH_ARGS="--quick" or BENCH_ARGS="inapp" to run less. Run it on a quiet machine.
bench: $(VENV)/.run-installed
	$(BIN)/herald bench --docs docs/benchmarks.md $(BENCH_ARGS)

test: $(VENV)/.test-installed system-deps tests/js/node_modules/.installed clients/js/node_modules/.installed web-assets ## Install what the tests need and run them all
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check herald tests
	$(BIN)/ruff format --check herald tests

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy herald

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Installs pin every package to constraints.txt, so a release made after the last green run
# cannot change what CI or a newcomer gets.
$(VENV)/.run-installed: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@ $(VENV)/.run-installed

# constraints.txt from the newest versions pyproject.toml allows, resolved in a scratch venv.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip
	.lock-venv/bin/pip install -q -e '.[test]'
	head -2 constraints.txt > constraints.new
	.lock-venv/bin/pip freeze --exclude-editable >> constraints.new
	mv constraints.new constraints.txt && rm -rf .lock-venv

# The official Socket.IO JavaScript client, for the interoperability tests.
tests/js/node_modules/.installed: tests/js/package-lock.json | system-deps
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Herald's own JS client (clients/js) and its one dependency, socket.io-client, for the tests
# that run it in Node.
clients/js/node_modules/.installed: clients/js/package-lock.json | system-deps
	cd clients/js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The Socket.IO client the web pages load, vendored from npm (web/package-lock.json pins it) so
# the pages need no network. The copy is committed, so `make run` needs no Node; this refreshes
# it (after a version bump in web/package.json, commit the new file).
# Herald's JS client (clients/js/src/index.js) is copied beside it as herald-client.js, its
# `socket.io-client` import pointed at that copy (the pages' CSP allows no import map).
# Swagger UI for /docs comes the same way (swagger-ui-dist), so /docs works offline too.
WEB_VENDOR := herald/web/static/vendor
web-assets: web/node_modules/.installed
	cp web/node_modules/socket.io-client/dist/socket.io.esm.min.js $(WEB_VENDOR)/socket.io.esm.min.js
	sed 's|^import { io } from "socket.io-client";$$|import { io } from "./socket.io.esm.min.js";|' \
	   clients/js/src/index.js > $(WEB_VENDOR)/herald-client.js
	mkdir -p $(WEB_VENDOR)/swagger-ui
	cp web/node_modules/swagger-ui-dist/swagger-ui-bundle.js web/node_modules/swagger-ui-dist/swagger-ui.css \
	   web/node_modules/swagger-ui-dist/LICENSE $(WEB_VENDOR)/swagger-ui/

web/node_modules/.installed: web/package-lock.json | system-deps
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages the tests use: Node.js for the JS client, Chromium for the browser tests.
system-deps:
	@scripts/system-deps.sh

clean:
	rm -rf $(VENV) herald-data .pytest_cache
