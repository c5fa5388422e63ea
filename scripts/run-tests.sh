#!/usr/bin/env bash
# Start the services, run lint, type checks and the suite, stop the services on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."
trap 'bash scripts/services.sh stop >/dev/null 2>&1 || true' EXIT
bash scripts/services.sh start
# shellcheck disable=SC1091
source "${LOOPLINE_SERVICES_DIR:-.services}/env"
export LOOPLINE_REQUIRE_SERVICES=1
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
# Two workers: the suite is mostly waiting on subprocesses, databases and fsync, so two
# processes on two cores finish it in well under the 15 minutes one process needs.
.venv/bin/python -m pytest -p no:cacheprovider -n "${LOOPLINE_TEST_WORKERS:-2}" --dist worksteal --durations=30 "$@"
