#!/bin/sh
# GPU worker container: refuse to start without a visible GPU (a training run silently on the CPU
# would take days), then run the command (the Celery worker, from the compose file or the image CMD).
set -eu

# A missing, empty or short de-identification secret ends the container with its reason.
python -c 'from platform_core.config import check_or_exit; check_or_exit()'

if [ "${WORKER_REQUIRE_GPU:-1}" = "1" ]; then
  python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' || {
    echo "medtune worker: no CUDA device visible; check the NVIDIA Container Toolkit and the GPU" \
      "reservation, or set WORKER_REQUIRE_GPU=0 to run on the CPU" >&2
    exit 1
  }
fi

exec "$@"
