#!/usr/bin/env bash
# The UniBCT study of the cpu profile, one (scenario, seed) result file at a time, from a clean worktree at a named
# commit: every seed of a scenario before the next scenario, so that a scenario the rules can decide (both seeds)
# lands first. Commit the files as they land; a killed queue resumes from the files and from epoch checkpoints.
# usage: data_scripts/unibct_study_queue.sh REV [SCENARIO ...]   (default: the profile's study scenarios)
set -euo pipefail
rev=${1:?usage: data_scripts/unibct_study_queue.sh REV [SCENARIO ...]}; shift
source "$(dirname "$0")/_worktree.sh"
"$py" - "$@" <<'PY'
import sys, time
from compat.config import get_profile
from compat.experiments import get_experiment
from compat.store import Store
profile, study = get_profile("cpu"), get_experiment("unibct_study")
for scenario in sys.argv[1:] or profile.unibct_study.scenarios:
    for seed in profile.unibct_study.seeds:
        print(f"=== {time.strftime('%T')} {scenario}, seed {seed}", flush=True)
        print("landed", study.run_seed(study.one_scenario(profile, scenario), seed, Store())["key"], flush=True)
PY
