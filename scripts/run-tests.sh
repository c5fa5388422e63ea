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
# mypy (~30 s without its cache) needs only the venv: it runs while the services start.
.venv/bin/mypy >"$mypy_log" 2>&1 &
mypy_pid=$!
bash scripts/services.sh start
# shellcheck disable=SC1091
source "${LOOPLINE_SERVICES_DIR:-.services}/env"
export LOOPLINE_REQUIRE_SERVICES=1
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
mypy_status=0
wait "$mypy_pid" || mypy_status=$?
mypy_pid=
cat "$mypy_log"
[ "$mypy_status" -eq 0 ] || exit "$mypy_status"
# Two workers: the suite is mostly waiting on subprocesses, databases and fsync, so two
# processes on two cores finish it in well under the 15 minutes one process needs.
.venv/bin/python -m pytest -p no:cacheprovider -n "${LOOPLINE_TEST_WORKERS:-2}" --dist worksteal --durations=30 "$@"
