"""Published reference numbers, quoted verbatim from the named sources (never from memory).

Each table carries its source (repository, commit, file) and what it measured. They are other
datasets and other models: the book compares orderings and update gains, not raw numbers.
"""

from __future__ import annotations

import pandas as pd

from .evaluate import update_gain

OPENBCT_IMAGENET = {
    "source": "YantaoShen/openBCT@69e798c README.md (first BCT author's non-official reimplementation)",
    "setting": "ImageNet val, old ResNet-18 on 50%, new ResNet-50 on 100%, L2 distance; Top-1 / Top-5 (%)",
    "rows": {
        "old/old": {"top1": 39.5, "top5": 60.0},
        "independent new/new": {"top1": 66.3, "top5": 84.0},
        "BCT new/old": {"top1": 42.2, "top5": 65.5},
        "BCT new/new": {"top1": 55.6, "top5": 76.6},
        "L2 new/old": {"top1": 13.0, "top5": 32.8},
        "L2 new/new": {"top1": 43.8, "top5": 64.4},
    },
}

BT2_CIFAR100 = {
    "source": "YifeiZhou02/BT-2@8282360 README.md (third-party BCT runs; 'Some results are different from the paper')",
    "setting": "CIFAR-100, ResNet-50 -> ResNet-50, 50 -> 100 classes, 128-d; TOP1 / TOP5 / meanAP (%)",
    "rows": {
        "old/old": {"top1": 33.6, "top5": 55.4, "mAP": 24.4},
        "independent new/old": {"top1": 0.8, "top5": 4.9, "mAP": 1.5},
        "independent new/new": {"top1": 62.7, "top5": 74.6, "mAP": 49.9},
        "BCT new/old": {"top1": 25.0, "top5": 62.1, "mAP": 24.7},
        "BCT new/new": {"top1": 60.0, "top5": 71.9, "mAP": 47.3},
    },
}


_FCT_SETTINGS = {
    "CIFAR-100": "CIFAR-100 test, {models}; side-information: SimCLR ResNet-50 128-d trained on ImageNet-1k (other data); {metrics}",
    "ImageNet-1k": "ImageNet-1k val, {models}; side-information: SimCLR ResNet-50 128-d trained on the 500 old classes; {metrics}",
}
_FCT_SOURCE = "apple/ml-fct@fa1f8d1 README.md (official FCT code)"
_FASTFILL_SOURCE = "AllenWrong/ml-fct@1a7f8b5 README.md (Apple's FastFill commit of the FCT code{note}), without backfilling"


def _fct_table(source: str, dataset: str, rows: dict[str, tuple[float, float, float]]) -> dict:
    """A table of the FCT code's READMEs: rows of (CMC top-1, top-5, mAP) in %, new/new = the new model."""
    setting = _FCT_SETTINGS[dataset].format(
        models="ResNet-50 128-d old on the first half of the classes, new on all", metrics="CMC top-1 / top-5 / mAP (%)"
    )
    return {
        "source": source,
        "setting": setting,
        "new_case": "new/new",
        "rows": {case: dict(zip(("top1", "top5", "mAP"), values)) for case, values in rows.items()},
    }


FCT_CIFAR100 = _fct_table(
    _FCT_SOURCE,
    "CIFAR-100",
    {
        "old/old": (32.9, 59.3, 16.1),
        "new/new": (56.4, 77.5, 36.5),
        "FCT (side-info) new/old": (50.6, 74.2, 34.2),
    },
)
FCT_IMAGENET = _fct_table(
    _FCT_SOURCE,
    "ImageNet-1k",
    {
        "old/old": (46.4, 65.1, 28.3),
        "new/new": (68.4, 84.7, 45.6),
        "FCT (side-info) new/old": (65.1, 82.7, 44.0),
    },
)
FASTFILL_CIFAR100 = _fct_table(
    _FASTFILL_SOURCE.format(note="; CIFAR-100 'not averaged over multiple runs'"),
    "CIFAR-100",
    {
        "old/old": (34.2, 60.6, 16.5),
        "new/new": (56.5, 77.0, 36.3),
        "FCT (no side-info) new/old": (47.2, 72.6, 25.8),
        "FCT (side-info) new/old": (50.2, 73.7, 32.2),
    },
)
FASTFILL_IMAGENET = _fct_table(
    _FASTFILL_SOURCE.format(note=""),
    "ImageNet-1k",
    {
        "old/old": (46.4, 65.1, 28.3),
        "new/new": (68.4, 84.7, 45.6),
        "FCT (no side-info) new/old": (61.8, 80.5, 39.9),
        "FCT (side-info) new/old": (65.1, 82.7, 44.0),
    },
)


def reference_table(table: dict) -> pd.DataFrame:
    """A published table with the update gain of each new/old row, computed from its own rows
    (against its ``old/old`` row and its new/new row, ``independent new/new`` unless ``new_case`` says otherwise)."""
    rows = table["rows"]
    frame = pd.DataFrame(rows).T
    new_case = table.get("new_case", "independent new/new")
    for metric in list(frame.columns):
        old_old, new_new = rows["old/old"][metric], rows[new_case][metric]
        frame[f"G ({metric})"] = [update_gain(r[metric], old_old, new_new) if case.endswith("new/old") else None for case, r in rows.items()]
    frame.index.name = "case"
    return frame
