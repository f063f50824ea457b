#!/bin/sh
# Fills .wheelhouse/ (ignored by git) once with every wheel the images install: the server extra and
# its dependencies (torch and torchvision as the venv pins them), and moto's server for the CI S3 image
# (docker/ci/). The stack test serves the folder to the image builds as PIP_FIND_LINKS, so a rebuild
# never downloads torch again. Re-run when pyproject.toml changes: the stamp names its hash.
# Debian bookworm's Python is 3.11.2, so what a dependency needs only below 3.11.3 (redis's
# async-timeout) is named here: this host's newer 3.11 would skip it.
#   sh scripts/wheelhouse.sh [DIR]
set -eu
cd "$(dirname "$0")/.."

dest="${1:-.wheelhouse}"
python="${PYTHON:-python3}"
stamp="$dest/.filled-$(cat pyproject.toml docker/Dockerfile.mlflow | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  echo "$dest"
  exit 0
fi
mkdir -p "$dest"
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), "the images run Python 3.11"'
# Wheels only, built here for the few sdists (grad-cam): the images have no compiler. setuptools and
# wheel build medtune itself in the image.
# The MLflow server's pinned version, which may differ from the newest the server extra resolves.
mlflow="$(sed -n 's/^ARG MLFLOW_VERSION=//p' docker/Dockerfile.mlflow)"
log="$dest/.pip.log"
if ! "$python" -m pip wheel --quiet --prefer-binary --wheel-dir "$dest" \
    ".[server]" "mlflow==$mlflow" "moto[server]>=5.0" "async-timeout>=4.0.3" \
    pip setuptools wheel >"$log" 2>&1; then
  grep -v "^WARNING: Location" "$log" >&2
  exit 1
fi
rm -f "$dest"/medtune-*.whl "$dest"/.filled-*
touch "$stamp"
echo "$dest"
