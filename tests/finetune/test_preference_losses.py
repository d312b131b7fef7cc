"""Diffusion-DPO and Diffusion-KTO losses against direct implementations of the formulas on fixed batches."""

from __future__ import annotations

import math

import pytest
import torch

from finetune.preference_losses import diffusion_dpo_loss, diffusion_kto_loss


def _batch(seed: int, n: int = 6, shape=(4, 8, 8)) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn((n, *shape), generator=generator) for _ in range(6)]


def _mse(prediction: torch.Tensor, target: torch.Tensor, i: int) -> float:
    """Mean over every element of one sample, written out."""
    diff = (prediction[i] - target[i]).flatten().tolist()
    return sum(d * d for d in diff) / len(diff)


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def test_dpo_loss_is_the_papers_formula_sample_by_sample():
    model_w, model_l, ref_w, ref_l, target_w, target_l = _batch(0)
    beta = 3.0
    loss, stats = diffusion_dpo_loss(model_w, model_l, ref_w, ref_l, target_w, target_l, beta=beta)
    insides = []
    for i in range(model_w.shape[0]):
        model_diff = _mse(model_w, target_w, i) - _mse(model_l, target_l, i)
        ref_diff = _mse(ref_w, target_w, i) - _mse(ref_l, target_l, i)
        insides.append(-beta / 2 * (model_diff - ref_diff))
    expected = sum(-_log_sigmoid(x) for x in insides) / len(insides)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert stats["implicit_accuracy"] == pytest.approx(sum(x > 0 for x in insides) / len(insides))
    assert stats["reward_margin"] == pytest.approx(sum(insides) / len(insides), rel=1e-5)


def test_dpo_soft_labels_weigh_both_orders_and_a_tie_is_symmetric():
    model_w, model_l, ref_w, ref_l, target_w, target_l = _batch(1)
    beta = 2.0
    labels = torch.tensor([1.0, 0.5, 0.5, 1.0, 0.0, 0.75])
    loss, _ = diffusion_dpo_loss(model_w, model_l, ref_w, ref_l, target_w, target_l, beta=beta, label_w=labels)
    expected = 0.0
    for i, p in enumerate(labels.tolist()):
        x = (
            -beta
            / 2
            * (
                (_mse(model_w, target_w, i) - _mse(model_l, target_l, i))
                - (_mse(ref_w, target_w, i) - _mse(ref_l, target_l, i))
            )
        )
        expected += -(p * _log_sigmoid(x) + (1 - p) * _log_sigmoid(-x))
    assert float(loss) == pytest.approx(expected / len(labels), rel=1e-5)
    # A tie does not care which image is called the winner.
    tie = torch.full((6,), 0.5)
    forward, _ = diffusion_dpo_loss(model_w, model_l, ref_w, ref_l, target_w, target_l, beta=beta, label_w=tie)
    swapped, _ = diffusion_dpo_loss(model_l, model_w, ref_l, ref_w, target_l, target_w, beta=beta, label_w=tie)
    assert float(forward) == pytest.approx(float(swapped), rel=1e-6)


def test_dpo_gradient_flows_to_the_model_only_and_lowers_the_winners_error():
    model_w, model_l, ref_w, ref_l, target_w, target_l = _batch(2)
    model_w.requires_grad_(True)
    model_l.requires_grad_(True)
    ref_w.requires_grad_(True)
    loss, _ = diffusion_dpo_loss(model_w, model_l, ref_w, ref_l, target_w, target_l, beta=1.0)
    loss.backward()
    assert ref_w.grad is None
    # Descending the gradient moves the winner's prediction toward its target, the loser's away from its own.
    assert float((model_w.grad * (model_w.detach() - target_w)).sum()) > 0
    assert float((model_l.grad * (model_l.detach() - target_l)).sum()) < 0


def test_a_model_equal_to_its_reference_scores_log_two_and_no_implicit_accuracy():
    model_w, model_l, _, _, target_w, target_l = _batch(3)
    loss, stats = diffusion_dpo_loss(model_w, model_l, model_w, model_l, target_w, target_l, beta=500.0)
    assert float(loss) == pytest.approx(math.log(2), rel=1e-6)
    assert stats["implicit_accuracy"] == 0.0 and stats["reward_margin"] == 0.0 and stats["kl_proxy"] == 0.0


def test_kto_loss_is_the_formula_with_the_clamped_batch_reference_point():
    model, ref, target, *_ = _batch(4)
    desirable = torch.tensor([True, False, True, True, False, False])
    beta, w_d, w_u = 4.0, 1.0, 1.5
    loss, stats = diffusion_kto_loss(
        model, ref, target, desirable, beta=beta, desirable_weight=w_d, undesirable_weight=w_u
    )
    gains = [_mse(ref, target, i) - _mse(model, target, i) for i in range(6)]
    point = max(0.0, sum(gains) / len(gains))
    expected = 0.0
    for gain, liked in zip(gains, desirable.tolist(), strict=True):
        sign, weight = (1.0, w_d) if liked else (-1.0, w_u)
        expected += weight * (1 - 1 / (1 + math.exp(-sign * beta * (gain - point))))
    assert float(loss) == pytest.approx(expected / 6, rel=1e-5)
    assert stats["kl_proxy"] == pytest.approx(sum(gains) / 6, abs=1e-6)
    liked_mean = sum(g for g, d in zip(gains, desirable.tolist(), strict=True) if d) / 3
    disliked_mean = sum(g for g, d in zip(gains, desirable.tolist(), strict=True) if not d) / 3
    assert stats["reward_margin"] == pytest.approx(liked_mean - disliked_mean, abs=1e-6)


def test_kto_takes_a_given_reference_point_and_pushes_liked_and_disliked_apart():
    model, ref, target, *_ = _batch(5)
    desirable = torch.tensor([True, True, True, False, False, False])
    point = torch.tensor(0.25)
    loss, _ = diffusion_kto_loss(model, ref, target, desirable, beta=2.0, reference_point=point)
    gains = [_mse(ref, target, i) - _mse(model, target, i) for i in range(6)]
    expected = sum(
        1 - 1 / (1 + math.exp(-(1 if d else -1) * 2.0 * (g - 0.25)))
        for g, d in zip(gains, desirable.tolist(), strict=True)
    )
    assert float(loss) == pytest.approx(expected / 6, rel=1e-5)
    model.requires_grad_(True)
    loss, _ = diffusion_kto_loss(model, ref, target, desirable, beta=2.0, reference_point=point)
    loss.backward()
    assert float((model.grad[:3] * (model[:3].detach() - target[:3])).sum()) > 0  # liked: toward the target
    assert float((model.grad[3:] * (model[3:].detach() - target[3:])).sum()) < 0  # disliked: away from it
