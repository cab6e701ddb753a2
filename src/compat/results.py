"""Reading committed results without training: a chapter's result files for a profile, and the inventory of
every file and model (the reproducibility page).

The unified comparison reads only :func:`load_result_files`. Result files are found by the keys the current
profile implies (the same keys the runner writes), so a table never mixes configurations; a missing file is
an error naming the command that makes it.
"""

from __future__ import annotations

import pandas as pd

from .errors import ConfigError
from .store import KEY_PATTERN, DamagedArtefact, Store


def load_result_files(experiment, profile, store: Store) -> list[dict]:
    """The result files of ``experiment`` for ``profile``, those of its :meth:`~compat.experiments.base.Experiment.jobs`."""
    out = []
    for job in experiment.jobs(profile):
        res = store.read_result(experiment.name, profile.name, job.key)
        if res is None:
            raise ConfigError(
                f"no result file {experiment.name}/{profile.name}/{job.key}.json ({job.label}); "
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
        if not (path.is_file() and KEY_PATTERN.fullmatch(path.stem)):
            raise ConfigError(
                f"{path} is not a result file (those are files named by their 16-hex-digit key, beside their .sha256): move it out of {store.results}"
            )
        res = store.read_result(path.parts[-3], profile_name, path.stem)  # digest, key and fields checked
        env = res.get("environment", {})
        files.append(
            {
                "experiment": res.get("experiment", path.parts[-3]),
                "kind": res.get("kind", ""),
                "seed": res.get("seed", ""),
                "candidate": res.get("candidate", ""),
                "file": str(path.relative_to(store.results.parent)) if store.results.parent in path.parents else str(path),
                "written at": env.get("git_revision", "")[:12],
                "device": env.get("device", ""),
                "wall minutes": sum(res.get("wall_seconds", {}).values()) / 60,
                "data checksum": (res.get("data") or {}).get("source_checksums_sha256", "")[:16],
            }
        )
        for name, m in _model_records(path, res):
            if m["key"] in seen:
                continue
            seen.add(m["key"])
            models.append(
                {
                    "experiment": res.get("experiment", ""),
                    "model": name,
                    "key": m["key"],
                    "trained at": m["trained_at_revision"][:12],
                    "training minutes": m["train_seconds"] / 60,
                    "device": m["device"],
                    "precision": m["precision"],
                    "diverged": m.get("diverged") or "no",
                }
            )
    return pd.DataFrame.from_records(files), pd.DataFrame.from_records(models)


MODEL_FIELDS = ("key", "trained_at_revision", "train_seconds", "device", "precision")  # what training records per model


def _model_records(path, result: dict) -> list[tuple[str, dict]]:
    """The (name, record) of every model a result file names; :class:`DamagedArtefact` naming the file if one
    lacks what training records."""
    records = result.get("models", {})
    for name, record in records.items() if isinstance(records, dict) else [("models", records)]:
        if not isinstance(record, dict) or (missing := [f for f in MODEL_FIELDS if f not in record]):
            what = "is not a record" if not isinstance(record, dict) else f"lacks {', '.join(missing)}"
            raise DamagedArtefact(
                f"{path}: model {name!r} {what}: the file is incomplete; delete it and rerun "
                f"`python -m compat run {result['experiment']} --profile {result['profile']}`"
            )
    return list(records.items())
