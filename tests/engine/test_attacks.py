"""Invariants of every attack: ε-ball, pixel range, success that means something, JSMA's budget."""
from __future__ import annotations

import math

import pytest
import torch

from engine import attacks
from tinycnn import digits, model  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x, y = digits()
    return x[:32], y[:32]


def linf(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).abs().amax(1)


def in_range(x: torch.Tensor) -> bool:
    return bool(x.min() >= 0 and x.max() <= 1)


def test_fgsm_and_pgd_stay_in_the_ball_and_the_pixel_range(model, batch):
    x, y = batch
    for adv in (attacks.fgsm(model, x, y, 0.3), attacks.pgd(model, x, y, 0.3, 0.05, 10, seed=0)):
        assert in_range(adv) and linf(adv, x).max() <= 0.3 + 1e-6
    assert (model(attacks.pgd(model, x, y, 0.3, 0.05, 10, seed=0)).argmax(1) == y).float().mean() < 0.5


def test_pgd_is_reproducible_from_its_seed(model, batch):
    x, y = batch
    assert torch.equal(attacks.pgd(model, x, y, 0.2, 0.05, 3, seed=1), attacks.pgd(model, x, y, 0.2, 0.05, 3, seed=1))
    assert not torch.equal(attacks.pgd(model, x, y, 0.2, 0.05, 3, seed=1), attacks.pgd(model, x, y, 0.2, 0.05, 3, seed=2))


def test_attacks_restore_the_model_mode(model, batch):
    x, y = batch
    model.train()
    try:
        attacks.itgsm(model, x[:4], y[:4], iterations=1)
        assert model.training
    finally:
        model.eval()


def test_iterated_tgsm_success_rises_with_iterations_and_eps_ball_holds(model, batch):
    x, y = batch
    t = (y + 1) % 10
    rates = [attacks.itgsm(model, x, t, step=0.1, iterations=k)[1].float().mean().item() for k in (2, 4, 10)]
    assert rates[0] < rates[1] < rates[2] and rates[2] > 0.9
    adv, success = attacks.itgsm(model, x, t, step=0.05, iterations=12, eps=0.2)
    assert in_range(adv) and linf(adv, x).max() <= 0.2 + 1e-6
    assert torch.equal(success, model(adv).argmax(1) == t)


def test_iterated_tgsm_stops_at_the_confidence_and_moves_less(model, batch):
    x, y = batch
    t = (y + 1) % 10
    full, _ = attacks.itgsm(model, x, t, step=0.1, iterations=10)
    early, success = attacks.itgsm(model, x, t, step=0.1, iterations=10, stop_confidence=0.6)
    target_prob = model(early).softmax(1).gather(1, t[:, None]).squeeze(1)
    assert success.float().mean() > 0.9 and torch.equal(success, target_prob >= 0.6)
    l2 = lambda a: (a - x).flatten(1).norm(dim=1)  # noqa: E731
    assert (l2(early) <= l2(full) + 1e-5).all() and l2(early).mean() < 0.8 * l2(full).mean()


@pytest.mark.parametrize("theta", [1.0, -1.0])
def test_jsma_changes_pixels_in_one_direction_within_its_budget(model, batch, theta):
    x, y = batch[0][:12], batch[1][:12]
    t = (y + 3) % 10
    gamma = 0.05
    adv, success = attacks.jsma(model, x, t, theta=theta, gamma=gamma)
    changed = (adv != x).flatten(1).sum(1)
    assert in_range(adv)
    assert (changed <= 2 * math.ceil(784 * gamma / 2)).all() and changed.float().mean() > 0
    assert ((adv >= x) if theta > 0 else (adv <= x)).all()
    assert torch.equal(success, model(adv).argmax(1) == t)
    if theta < 0:  # torchattacks' decreasing mode never moves; ours must reach some targets
        assert success.any()


def test_jsma_stops_as_soon_as_the_target_is_predicted(model, batch):
    x, y = batch
    t = model(x).argmax(1)  # already the prediction: nothing to do
    adv, success = attacks.jsma(model, x, t)
    assert torch.equal(adv, x) and success.all()


@pytest.mark.parametrize("increasing", [True, False])
def test_jsma_pair_search_equals_brute_force_over_all_pairs(increasing):
    """The Pareto-layer search must pick exactly torchattacks' pair: first row-major argmax of α·|β|."""
    gen = torch.Generator().manual_seed(0)
    n = 60
    # Coarse values make ties (equal scores, equal points) common, which is where it could go wrong.
    t = torch.randint(-4, 5, (64, n), generator=gen).float() / 4
    o = torch.randint(-4, 5, (64, n), generator=gen).float() / 4
    domain = torch.rand(64, n, generator=gen) < 0.8
    p, q, valid = attacks._best_pairs(t, o, domain, increasing)
    for i in range(64):
        ti, oi = (t[i], o[i]) if increasing else (-t[i], -o[i])
        out = (~domain[i]).float() * 2
        ti, oi = ti - out * ti.abs().max(), oi + out * oi.abs().max()
        alpha, beta = ti[:, None] + ti[None, :], oi[:, None] + oi[None, :]
        score = alpha * beta.abs() * ((alpha > 0) & (beta < 0) & ~torch.eye(n, dtype=torch.bool))
        best = int(score.flatten().argmax())
        assert bool(valid[i]) == bool(score.max() > 0)
        if valid[i]:
            assert (int(p[i]), int(q[i])) == divmod(best, n)


def test_jsma_pair_search_handles_every_pixel_outside_the_domain():
    t, o = torch.randn(3, 10), torch.randn(3, 10)
    _, _, valid = attacks._best_pairs(t, o, torch.zeros(3, 10, dtype=torch.bool), True)
    assert not valid.any()
