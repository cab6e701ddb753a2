"""Loss terms against hand-written references on tiny tensors; frozen parts stay frozen."""

import math

import pytest
import torch

from compat.errors import ConfigError
from compat.losses import CrossEntropy, InfluenceLoss, L2Compatibility, StepOutputs, synthesize_classifier
from compat.models import EmbeddingModel, ModelConfig


def outputs(embedding, labels, logits=None):
    return StepOutputs(torch.zeros(len(labels), 3, 8, 8), torch.tensor(labels), embedding, logits if logits is not None else embedding)


def smoothed_ce(logits, labels, eps):
    """-(1 - eps) log p_y - eps / C * sum_c log p_c, averaged over the batch, by explicit loops."""
    total = 0.0
    for row, y in zip(logits.tolist(), labels):
        log_z = math.log(sum(math.exp(v) for v in row))
        logp = [v - log_z for v in row]
        total += -(1 - eps) * logp[y] - eps / len(row) * sum(logp)
    return total / len(labels)


def test_cross_entropy_with_label_smoothing():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    loss = CrossEntropy(label_smoothing=0.1, weight=2.0)(outputs(logits, [0, 1], logits))
    assert float(loss) == pytest.approx(2.0 * smoothed_ce(logits, [0, 1], 0.1), rel=1e-6)


def test_influence_loss_applies_the_old_classifier_to_the_new_embedding():
    w_old = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # 3 classes x 2-d
    z = torch.tensor([[2.0, -1.0], [0.5, 0.5]], requires_grad=True)
    loss = InfluenceLoss(w_old, weight=3.0)(outputs(z, [0, 2]))
    logits = [[2.0, -1.0, 1.0], [0.5, 0.5, 1.0]]  # z @ w_old.T by hand
    assert loss.item() == pytest.approx(3.0 * smoothed_ce(torch.tensor(logits), [0, 2], 0.0), rel=1e-6)
    loss.backward()
    assert z.grad is not None


def test_influence_loss_normalized_variant():
    w_old = torch.tensor([[3.0, 0.0], [0.0, 0.5]])
    z = torch.tensor([[1.0, 1.0]])
    loss = InfluenceLoss(w_old, normalize=True)(outputs(z, [1]))
    c = 1 / math.sqrt(2)  # cosine of (1,1) with each axis
    assert float(loss) == pytest.approx(smoothed_ce(torch.tensor([[c, c]]), [1], 0.0), rel=1e-6)


def test_influence_classifier_is_a_frozen_buffer():
    term = InfluenceLoss(torch.ones(3, 2))
    assert [n for n, _ in term.named_parameters()] == []
    assert not term.classifier.requires_grad
    with pytest.raises(ConfigError, match="new embedding is 4-d but the old classifier is 2-d"):
        term(outputs(torch.ones(1, 4), [0]))


def test_l2_compatibility_and_frozen_old_model():
    torch.manual_seed(0)
    old = EmbeddingModel(ModelConfig("resnet20", width=2, embedding_dim=4), 3)
    before = {k: v.clone() for k, v in old.state_dict().items()}
    term = L2Compatibility(old, weight=2.0).train()
    images = torch.randn(5, 3, 8, 8)
    new = torch.randn(5, 4, requires_grad=True)
    loss = term(StepOutputs(images, torch.zeros(5, dtype=torch.long), new, new))
    with torch.no_grad():
        ref_old = old.embed(images)
    a = new.detach() / new.detach().norm(dim=1, keepdim=True)
    b = ref_old / ref_old.norm(dim=1, keepdim=True)
    # nn.MSELoss's default: the mean over batch *and* dimensions (openBCT, OpenCompatible), not a sum over D
    assert loss.item() == pytest.approx(2.0 * float(((a - b) ** 2).sum()) / (5 * 4), rel=1e-5)
    loss.backward()
    assert not old.training  # BatchNorm statistics of the old model never move
    assert all(p.grad is None and not p.requires_grad for p in old.parameters())
    assert all(torch.equal(before[k], v) for k, v in old.state_dict().items())


def test_synthesized_classifier_rows_are_old_rows_then_means_of_normalized_features():
    w_old = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # rows of global classes 5 and 1
    emb = torch.tensor([[1.0, 1.0], [3.0, 1.0], [5.0, 5.0], [0.0, 2.0]])
    labels = torch.tensor([2, 2, 5, 3])
    w = synthesize_classifier(w_old, [5, 1], emb, labels, new_classes=[1, 2, 3, 5])
    r2, r10 = math.sqrt(2), math.sqrt(10)  # norms of (1, 1) and (3, 1): openBCT averages unit vectors
    expected = [[0.0, 1.0], [(1 / r2 + 3 / r10) / 2, (1 / r2 + 1 / r10) / 2], [0.0, 1.0], [1.0, 0.0]]
    assert torch.allclose(w, torch.tensor(expected), atol=1e-6)
    with pytest.raises(ConfigError, match="class 4 has no images"):
        synthesize_classifier(w_old, [5, 1], emb, labels, new_classes=[4])
    with pytest.raises(ConfigError, match="old embeddings are 3-d"):
        synthesize_classifier(w_old, [5, 1], torch.ones(2, 3), labels[:2], new_classes=[1])
