#!/usr/bin/env bash
# The whole book of a profile (or the named chapters), one result file at a time in the chapters' run order, from a
# clean worktree at a named commit, so that each result file lands on its own: commit them as they land. A killed
# queue resumes: stored result files are skipped, stored models are reused, a model cut short resumes from its
# last epoch checkpoint (on a fresh machine the models are trained again). `python -m compat plan` counts it first.
# usage: [PROFILE=cpu] [ONLY=REGEX] data_scripts/book_queue.sh REV [EXPERIMENT ...]   (default: every chapter)
# ONLY keeps the jobs whose "experiment, label" it matches (e.g. ONLY='seed 1$': the second seed of each chapter),
# so that the jobs sharing one seed's models run together, in one session, while those models are in the cache
set -euo pipefail
rev=${1:?usage: [PROFILE=cpu] [ONLY=REGEX] data_scripts/book_queue.sh REV [EXPERIMENT ...]}; shift
source "$(dirname "$0")/_worktree.sh"
"$py" - "${PROFILE:-cpu}" "$@" <<'PY'
import os, re, sys, time
from compat.budget import book_jobs
from compat.config import get_profile
from compat.store import Store
profile, store, only = get_profile(sys.argv[1]), Store(), re.compile(os.environ.get("ONLY", ""))
for job in (j for j in book_jobs(profile, sys.argv[2:]) if only.search(f"{j.experiment}, {j.label}")):
    where = f"{job.experiment}/{profile.name}/{job.key}.json"
    if store.read_result(job.experiment, profile.name, job.key) is not None:
        print(f"stored {where} ({job.label})", flush=True)
        continue
    print(f"=== {time.strftime('%T')} {job.experiment}, {job.label}", flush=True)
    started = time.perf_counter()
    job.run(store)
    print(f"landed {where} ({job.label}) in {(time.perf_counter() - started) / 60:.1f} min", flush=True)
PY
