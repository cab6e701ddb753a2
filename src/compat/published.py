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


_FCT_SETTING = (
    "{data}, ResNet-50 128-d old on the first half of the classes, new on all; side-information: SimCLR ResNet-50 "
    "128-d {side}; CMC top-1 / top-5 / mAP (%)"
)
FCT_CIFAR100 = {
    "source": "apple/ml-fct@fa1f8d1 README.md (official FCT code)",
    "setting": _FCT_SETTING.format(data="CIFAR-100 test", side="trained on ImageNet-1k (other data)"),
    "new_case": "new/new",
    "rows": {
        "old/old": {"top1": 32.9, "top5": 59.3, "mAP": 16.1},
        "new/new": {"top1": 56.4, "top5": 77.5, "mAP": 36.5},
        "FCT (side-info) new/old": {"top1": 50.6, "top5": 74.2, "mAP": 34.2},
    },
}
FCT_IMAGENET = {
    "source": "apple/ml-fct@fa1f8d1 README.md (official FCT code)",
    "setting": _FCT_SETTING.format(data="ImageNet-1k val", side="trained on the 500 old classes"),
    "new_case": "new/new",
    "rows": {
        "old/old": {"top1": 46.4, "top5": 65.1, "mAP": 28.3},
        "new/new": {"top1": 68.4, "top5": 84.7, "mAP": 45.6},
        "FCT (side-info) new/old": {"top1": 65.1, "top5": 82.7, "mAP": 44.0},
    },
}
FASTFILL_CIFAR100 = {
    "source": "AllenWrong/ml-fct@1a7f8b5 README.md (Apple's FastFill commit of the FCT code; CIFAR-100 'not averaged over multiple runs'), without backfilling",
    "setting": _FCT_SETTING.format(data="CIFAR-100 test", side="trained on ImageNet-1k (other data)"),
    "new_case": "new/new",
    "rows": {
        "old/old": {"top1": 34.2, "top5": 60.6, "mAP": 16.5},
        "new/new": {"top1": 56.5, "top5": 77.0, "mAP": 36.3},
        "FCT (no side-info) new/old": {"top1": 47.2, "top5": 72.6, "mAP": 25.8},
        "FCT (side-info) new/old": {"top1": 50.2, "top5": 73.7, "mAP": 32.2},
    },
}
FASTFILL_IMAGENET = {
    "source": "AllenWrong/ml-fct@1a7f8b5 README.md (Apple's FastFill commit of the FCT code), without backfilling",
    "setting": _FCT_SETTING.format(data="ImageNet-1k val", side="trained on the 500 old classes"),
    "new_case": "new/new",
    "rows": {
        "old/old": {"top1": 46.4, "top5": 65.1, "mAP": 28.3},
        "new/new": {"top1": 68.4, "top5": 84.7, "mAP": 45.6},
        "FCT (no side-info) new/old": {"top1": 61.8, "top5": 80.5, "mAP": 39.9},
        "FCT (side-info) new/old": {"top1": 65.1, "top5": 82.7, "mAP": 44.0},
    },
}


def reference_table(table: dict) -> pd.DataFrame:
    """A published table with the update gain of each new/old row, computed from its own rows
    (against its ``old/old`` row and its new/new row, ``independent new/new`` unless ``new_case`` says otherwise)."""
    rows = table["rows"]
    frame = pd.DataFrame(rows).T
    new_case = table.get("new_case", "independent new/new")
    for metric in list(frame.columns):
        old_old, new_new = rows["old/old"][metric], rows[new_case][metric]
        frame[f"G ({metric})"] = [
            update_gain(r[metric], old_old, new_new) if case.endswith("new/old") else None for case, r in rows.items()
        ]
    frame.index.name = "case"
    return frame
