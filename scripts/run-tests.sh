#!/usr/bin/env bash
# Start the services, run lint, type checks and the suite, stop the services on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."
# Compile Loopline's and the tests' modules once (~0.5 s): where the environment turns
# bytecode writing off (PYTHONDONTWRITEBYTECODE=1), each of the ~500 Python processes the
# suite starts would compile them again. The run itself keeps the setting: a test that
# edits a module and imports it again within a second must not get a stale .pyc.
.venv/bin/python -m compileall -q src tests >/dev/null
mypy_log=$(mktemp)
mypy_pid=
trap '[ -n "$mypy_pid" ] && kill "$mypy_pid" 2>/dev/null; rm -f "$mypy_log"
      bash scripts/services.sh stop >/dev/null 2>&1 || true' EXIT
# mypy (~35 s without its cache) needs only the venv: it runs while the services start,
# ruff checks and the suite runs.
.venv/bin/mypy >"$mypy_log" 2>&1 &
mypy_pid=$!
bash scripts/services.sh start
# shellcheck disable=SC1091
source "${LOOPLINE_SERVICES_DIR:-.services}/env"
export LOOPLINE_REQUIRE_SERVICES=1
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
# Three workers on two cores: the suite waits on subprocesses, servers starting, databases
# and fsync, and a third worker fills those waits (measured: 733 s against 777 s with two,
# the same tree, 2,870 tests). One process would need over 25 minutes. mypy (~35 s) goes on
# beside the suite's first tests instead of holding them back; both must pass.
pytest_status=0
.venv/bin/python -m pytest -p no:cacheprovider -n "${LOOPLINE_TEST_WORKERS:-3}" --dist worksteal --durations=30 "$@" || pytest_status=$?
mypy_status=0
wait "$mypy_pid" || mypy_status=$?
mypy_pid=
echo "== mypy"
cat "$mypy_log"
[ "$mypy_status" -eq 0 ] || exit "$mypy_status"
exit "$pytest_status"
