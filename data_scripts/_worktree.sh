# Sourced by the queue scripts: a clean worktree at commit $rev beside this checkout, the environment that runs
# its code with this checkout's virtual environment and data cache, and $py. Results land in the worktree's
# results/ unless COMPAT_RESULTS names another folder (an empty one retrains what the commit already holds).
main=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wt="$main/../wt-$rev"
[ -d "$wt" ] || git -C "$main" worktree add -f --detach "$wt" "$rev"
[ -z "$(git -C "$wt" status --porcelain --untracked-files=no)" ] || { echo "worktree $wt is not clean: results must come from commit $rev as it is" >&2; exit 1; }
export COMPAT_CACHE="$main/.cache" COMPAT_RESULTS="${COMPAT_RESULTS:-$wt/results}" OMP_NUM_THREADS=2 PYTHONPATH="$wt/src"
py="$main/.venv/bin/python"
cd "$wt"  # the code, its results/ and the commands all of one checkout
