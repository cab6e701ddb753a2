"""The unified comparison: every method of every chapter on the same data, backbone and evaluator, read
from the committed result files, with what each must store and recompute per gallery item to upgrade.

No paper offers this view: accuracy retained by the upgraded system (new queries against the gallery
the method leaves: M(new, gallery) / M(new*, new*), the independent new model's new/new) against the
compute the upgrade spends per stored gallery item (0 for backward-compatible training, the
transformation h for forward-compatible upgrades, a full forward pass of the new model for backfilling).
"""

from __future__ import annotations

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from .experiments import EXPERIMENTS, get_experiment
from .experiments.base import ComparisonEntry, case_values, main_results
from .intervals import bootstrap, difference_interval
from .models import EmbeddingModel
from .results import load_result_files
from .store import Store
from .transformations import build_transformation
from .verdicts import summary


def comparison_entries() -> list[tuple[str, ComparisonEntry]]:
    """Every registered experiment's comparison rows (:attr:`Experiment.comparison`), in the book's order, each
    with the name of the experiment that measures it."""
    return [(name, entry) for name, experiment in EXPERIMENTS.items() for entry in experiment.comparison]


def forward_flops(module: torch.nn.Module, *inputs: torch.Tensor) -> float:
    """Forward FLOPs per row of ``inputs`` (torch's flop counter: convolutions and matrix products)."""
    counter = FlopCounterMode(display=False)
    module.eval()
    with torch.no_grad(), counter:
        module(*inputs)
    return counter.get_total_flops() / len(inputs[0])


def upgrade_flops(profile) -> dict[str, float]:
    """Forward FLOPs per gallery item of each kind of upgrade, for the profile's models."""
    torch.manual_seed(0)
    d, size = profile.model.embedding_dim, profile.data.image_size
    model = EmbeddingModel(profile.model, 2)
    side = profile.fct.side_dim
    h_side = build_transformation(profile.fct.transformation, d, side, d)
    h_none = build_transformation(profile.fct.transformation, d, d, d)
    rows = 64
    return {
        "nothing": 0.0,
        # flip-averaged embeddings run the model twice per image
        "re-embedding": forward_flops(_Embed(model), torch.randn(8, 3, size, size)) * (2 if profile.protocol.test_flip else 1),
        "transformation": forward_flops(h_none, torch.randn(rows, d), torch.randn(rows, d)),
        "transformation, side-information": forward_flops(h_side, torch.randn(rows, d), torch.randn(rows, side)),
    }


class _Embed(torch.nn.Module):
    """The model's embedding alone (what re-embedding a gallery image runs)."""

    def __init__(self, model: EmbeddingModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.embed(x)


def comparison_table(profile, store: Store | None = None, distance: str = "l2") -> pd.DataFrame:
    """One row per method (its chapter's committed result files, read, never trained): top-1 and mAP
    with 95 % intervals (from its chapter's interval table); against its own protocol's baselines, the accuracy
    retained (top-1 as a share of the backfill's: the independent new model's new/new, in the BiCT chapter that of
    its last generation) and the top-1 above the old model on both sides, each with its paired 95 % interval over
    queries (seeds averaged); what it stores and the upgrade's forward FLOPs per gallery item (BiCT's chains: summed
    over their upgrades)."""
    store = store or Store()
    flops = upgrade_flops(profile)
    tables, results = {}, {}
    records = []
    for name, entry in comparison_entries():
        if name not in tables:
            experiment = get_experiment(name)
            results[name] = main_results(load_result_files(experiment, profile, store))
            tables[name] = experiment.summary_table(results[name], distance, store)
        table = tables[name]
        last = len(profile.bict.generations)
        case, ceiling, floor = (c.format(last=last) for c in (entry.case, entry.ceiling, entry.floor))
        row = table.loc[case]
        top1 = {c: case_values(results[name], c, distance, "top1", store) for c in (case, ceiling, floor)}
        retained = bootstrap(lambda a, b: 100 * a / b, [top1[case], top1[ceiling]])
        above = difference_interval(top1[case], top1[floor])
        kind = "transformation, side-information" if entry.side_dim else entry.upgrade
        records.append(
            {
                "method": entry.method,
                "chapter": name,
                "case": case,
                "top1": row["top1"],
                "top1 low": row["top1 low"],
                "top1 high": row["top1 high"],
                "mAP": row["mAP"],
                "mAP low": row["mAP low"],
                "mAP high": row["mAP high"],
                "own old/old top1": table.loc[floor, "top1"],
                "own backfill top1": table.loc[ceiling, "top1"],
                "retained": retained.value,
                "retained low": retained.low,
                "retained high": retained.high,
                "above own old/old": above.value,
                "above own old/old low": above.low,
                "above own old/old high": above.high,
                "stores per item": entry.stores.replace("d_side", str(profile.fct.side_dim)).replace("d old", str(profile.model.embedding_dim)),
                "upgrade MFLOP per item": flops[kind] / 1e6 * (last - 1 if entry.chain else 1),
            }
        )
    return pd.DataFrame.from_records(records).set_index("method")


PAPERS = ("bct", "fct", "unibct", "bict")  # the chapters that reproduce a paper, in the book's order


def outcomes_table(profile, store: Store | None = None) -> pd.DataFrame:
    """Every paper's verdict at every distance of the protocol, from its committed result files (read, never
    trained), in the one vocabulary of :mod:`compat.verdicts`: the book's outcomes at a glance."""
    store = store or Store()
    outcomes = []
    for name in PAPERS:
        experiment = get_experiment(name)
        results = load_result_files(experiment, profile, store)
        outcomes.extend(experiment.outcome(results, distance, store) for distance in profile.protocol.distances)
    return summary(outcomes)
