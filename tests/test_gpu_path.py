"""The `gpu` profile's code path, exercised on the CPU at tiny sizes: every registered method trains a
step with the profile's backbone at 64 px, and every loss term ends on the model's device."""

import pytest
import torch

from compat.config import get_profile
from compat.methods import METHODS
from compat.store import Store

TINY_GPU = {
    "data.dataset": "synthetic",
    "data.image_size": "64",
    "data.synthetic_classes": "4",
    "data.synthetic_train_per_class": "8",
    "data.synthetic_val_per_class": "3",
    "model.width": "2",
    "model.embedding_dim": "8",
    "old_train.epochs": "1",
    "new_train.epochs": "1",
    "old_train.batch_size": "8",
    "new_train.batch_size": "8",
    "old_train.warmup_epochs": "0",
    "new_train.warmup_epochs": "0",
    "protocol.seeds": "0",
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_a_step_on_the_gpu_profiles_path(method, tmp_path, monkeypatch):
    from compat import artefacts
    from compat.artefacts import ModelSpec, SubsetSpec, get_model
    from compat.methods import method_options

    profile = get_profile("gpu", TINY_GPU)
    assert profile.model.backbone == "resnet18" and profile.data.image_size == 64
    store = Store(tmp_path / "c", tmp_path / "r")
    common = {"data": profile.data, "model": profile.model, "seed": 0}
    old = ModelSpec(subset=SubsetSpec("extended-class", 0.5, "old"), train=profile.old_train, **common)
    spec = ModelSpec(
        subset=SubsetSpec("extended-class", 0.5, "new"),
        train=profile.new_train,
        method=method_options(method),
        parent=old if METHODS[method].needs_parent else None,
        **common,
    )
    moved, checked = [], []  # (term, device) of every Module.to call; term tensors found on the model's device
    real_to, real_fit = torch.nn.Module.to, artefacts.fit

    def to(module, *args, **kwargs):
        moved.append((id(module), torch.device(args[0]) if args and isinstance(args[0], (str, torch.device)) else None))
        return real_to(module, *args, **kwargs)

    def fit(model, *args, **kwargs):
        log = real_fit(model, *args, **kwargs)
        device = next(model.parameters()).device
        for term in args[3]:
            assert (id(term), device) in moved, f"{type(term).__name__} was not moved to the training device"
            checked.extend(t.device == device for t in (*term.buffers(), *term.parameters()))
        return log

    monkeypatch.setattr(torch.nn.Module, "to", to)
    monkeypatch.setattr(artefacts, "fit", fit)
    model = get_model(spec, store, progress=False)
    assert model.embedding.out_features == 8 and all(checked)
    if METHODS[method].needs_parent:  # its terms hold the old model's classifier, prototypes or weights
        assert checked, "no loss-term tensor was checked"
