#!/bin/sh
# API container: migrate (replicas wait on a lock), then serve. Given arguments, runs them instead,
# e.g. `docker compose exec api medtune admin create-project default`.
set -eu

if [ "$#" -gt 0 ]; then
  exec "$@"
fi

python /app/docker/migrate.py
# WEB_CONCURRENCY sets uvicorn's worker processes per container; scale containers for more.
exec uvicorn api.asgi:app \
  --host 0.0.0.0 --port 8000 \
  --proxy-headers --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
  --no-server-header
