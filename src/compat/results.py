"""Reading committed results without training: a chapter's result files for a profile, and the inventory of
every file and model (the reproducibility page).

The unified comparison reads only :func:`load_result_files`. Result files are found by the keys the current
profile implies (the same keys the runner writes), so a table never mixes configurations; a missing file is
an error naming the command that makes it.
"""

from __future__ import annotations

import pandas as pd

from .errors import ConfigError
from .store import Store


def load_result_files(experiment, profile, store: Store) -> list[dict]:
    """The result files of ``experiment`` for ``profile``: every protocol seed, then the ablation if asked."""
    wanted = [(seed, False) for seed in experiment.seeds(profile)]
    if experiment.runs_ablation(profile):
        wanted.append((profile.protocol.ablation_seed, True))
    out = []
    for seed, ablation in wanted:
        key = experiment.result_key(profile, seed, ablation)
        res = store.read_result(experiment.name, profile.name, key)
        if res is None:
            raise ConfigError(
                f"no result file {experiment.name}/{profile.name}/{key}.json (seed {seed}{', ablation' if ablation else ''}); "
                f"make it with `python -m compat run {experiment.name} --profile {profile.name}` and the same --set overrides"
            )
        out.append(res)
    return out


def inventory(profile_name: str, store: Store | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every committed result file of a profile, and every model they name (once), for the reproducibility page.

    :return: (files: experiment, kind, seed, file, written at revision, device, wall minutes, data checksum;
        models: experiment, model key, trained at revision, training minutes, device, precision, diverged).
    """
    store = store or Store()
    files, models, seen = [], [], set()
    for path in sorted(store.results.glob(f"*/{profile_name}/*.json")):
        res = store.read_result(path.parts[-3], profile_name, path.stem)  # digest checked
        env = res.get("environment", {})
        files.append({
            "experiment": res.get("experiment", path.parts[-3]), "kind": res.get("kind", ""),
            "seed": res.get("seed", ""), "candidate": res.get("candidate", ""),
            "file": str(path.relative_to(store.results.parent)) if store.results.parent in path.parents else str(path),
            "written at": env.get("git_revision", "")[:12], "device": env.get("device", ""),
            "wall minutes": sum(res.get("wall_seconds", {}).values()) / 60,
            "data checksum": (res.get("data") or {}).get("source_checksums_sha256", "")[:16],
        })
        for name, m in res.get("models", {}).items():
            if m["key"] in seen:
                continue
            seen.add(m["key"])
            models.append({"experiment": res.get("experiment", ""), "model": name, "key": m["key"],
                           "trained at": m["trained_at_revision"][:12], "training minutes": m["train_seconds"] / 60,
                           "device": m["device"], "precision": m["precision"], "diverged": m.get("diverged") or "no"})
    return pd.DataFrame.from_records(files), pd.DataFrame.from_records(models)
