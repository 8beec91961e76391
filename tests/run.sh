#!/usr/bin/env bash
# Install what the tests need and run the whole suite (the README's second command; CI runs it).
# - a virtualenv with TrialDesk and its test extras;
# - Debian's Chromium for the browser tests, installed when missing (needs root);
# - PostgreSQL 15 started (installed when missing, as root) with a role for the tests; the role
#   may signal backends so that dropping a test database can end an autovacuum worker in it;
# - the Docker image built and tried, where a Docker engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."

python_bin=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if [ ! -x /usr/bin/chromium ]; then
  echo "Installing Debian's chromium for the browser tests..."
  apt_install chromium
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "Installing PostgreSQL..."
  apt_install postgresql
fi
pg_version=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
if [ -n "$pg_version" ]; then
  as_root pg_ctlcluster "$pg_version" main start 2>/dev/null || true
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.5
  done
  as_root runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -c "DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'trialdesk') THEN
      CREATE ROLE trialdesk LOGIN CREATEDB PASSWORD 'trialdesk';
    END IF; END \$\$;
    GRANT pg_signal_backend TO trialdesk;" >/dev/null
  export TRIALDESK_TEST_POSTGRES_URL=${TRIALDESK_TEST_POSTGRES_URL:-postgresql+psycopg://trialdesk:trialdesk@127.0.0.1:5432/postgres}
fi

.venv/bin/ruff check app tests bench
.venv/bin/ruff format --check app tests bench
.venv/bin/mypy

# The Docker image, where a Docker engine answers (elsewhere tests/test_docker.py only reads the
# Dockerfile): built, then run once to migrate, create its administrator, check the study and
# its mappings, and export Define-XML (which needs the mappings and the packaged schemas).
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "Building and trying the Docker image..."
  docker build -q -t trialdesk:test . >/dev/null
  docker run --rm -e TRIALDESK_ADMIN_USERNAME=chief -e TRIALDESK_ADMIN_PASSWORD=Image-2026-check \
    trialdesk:test sh -c 'trialdesk db upgrade && trialdesk create-admin &&
      trialdesk study check forms --exports exports && trialdesk export define -o /tmp/define' >/dev/null
fi
# One worker per core (pytest-xdist); each test file stays on one worker, so its module
# fixtures (demo databases, servers) are built once.
.venv/bin/python -m pytest -n auto --dist loadfile "$@"
