#!/usr/bin/env bash
# The recipe study, one (candidate, seed) at a time, from a clean worktree at a named commit, so that each run lands
# its own result file (commit them as they land; a killed queue resumes from the files and from epoch checkpoints).
# usage: data_scripts/recipe_queue.sh REV [CANDIDATE ...]   (default: every candidate of compat.experiments.recipe)
set -euo pipefail
rev=${1:?usage: data_scripts/recipe_queue.sh REV [CANDIDATE ...]}; shift
source "$(dirname "$0")/_worktree.sh"
if [ $# -eq 0 ]; then mapfile -t names < <("$py" -c "from compat.experiments.recipe import CANDIDATES; print('\n'.join(CANDIDATES))"); else names=("$@"); fi
for name in "${names[@]}"; do
  for seed in 0 1; do
    echo "=== $(date +%T) $name, seed $seed (results in $COMPAT_RESULTS/recipe/cpu)"
    "$py" -c "import sys; from compat.config import get_profile; from compat.experiments.recipe import run_candidate
from compat.store import Store; r = run_candidate(get_profile('cpu'), sys.argv[1], int(sys.argv[2]), Store()); print('landed', r['key'])" "$name" "$seed"
  done
done
