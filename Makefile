# Loopline: `make demo` and `make test` are the two commands a new user runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest services-start services-stop bench clean setup

setup: $(STAMP)

# uv resolves and installs the ~200 packages in ~35 s where pip takes ~2 minutes; it reads
# only PyPI (not pip.conf), so where it cannot, pip installs the same ranges instead.
# --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE=1 (CI), each of the suite's
# ~500 Python processes would otherwise compile SQLAlchemy, pandas... again (a run took 22
# minutes instead of 15).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q 'uv>=0.4,<1'
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[dev]' \
	  || { $(BIN)/python -m pip install -q --upgrade pip && $(BIN)/python -m pip install -q -e '.[dev]'; }
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/loopline demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Installs the system packages it needs, starts PostgreSQL, S3 (rclone) and Redis on
# loopback, runs ruff, mypy and the whole suite, and stops the services whatever happens.
# apt (system-deps.sh) runs while uv fills the venv: neither needs the other.
test:
	@bash scripts/system-deps.sh & deps=$$!; \
	$(MAKE) --no-print-directory setup; made=$$?; \
	wait $$deps && exit $$made
	bash scripts/run-tests.sh $(PYTEST_ARGS)

services-start: $(STAMP)
	bash scripts/services.sh start

services-stop:
	bash scripts/services.sh stop

bench: $(STAMP)
	bash bench/run.sh

clean:
	bash scripts/services.sh stop || true
	rm -rf $(VENV) .services .loopline .loopline-demo .pytest_cache .mypy_cache .ruff_cache
