#!/usr/bin/env bash
# Set up, then run the whole test suite (real RapidOCR, Prefect test harness, SQLite and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/python -m pytest "$@"
