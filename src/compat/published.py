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


def reference_table(table: dict) -> pd.DataFrame:
    """A published table with the update gain of each new/old row, computed from its own rows."""
    rows = table["rows"]
    frame = pd.DataFrame(rows).T
    for metric in frame.columns:
        old_old, new_new = rows["old/old"][metric], rows["independent new/new"][metric]
        frame[f"G ({metric})"] = [
            update_gain(r[metric], old_old, new_new) if case.endswith("new/old") else None for case, r in rows.items()
        ]
    frame.index.name = "case"
    return frame
