#!/usr/bin/env bash
# Prepare Tiny-ImageNet-200 into the project's data cache.
# Usage: data_scripts/prepare_tiny_imagenet.sh [MIRROR_FOLDER]
#   MIRROR_FOLDER: zip shards + SHA256SUMS (default: $COMPAT_TINY_IMAGENET_MIRROR, then
#   ../shared/data/tiny-imagenet-200, then the official archive downloaded with its checksum).
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
[ -x "$python" ] || { echo "no .venv: run 'make venv' first" >&2; exit 1; }
exec "$python" -m compat data prepare ${1:+--mirror "$1"}
