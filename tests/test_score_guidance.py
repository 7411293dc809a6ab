"""Score-distillation guidances on small tensors: update rules against hand-computed values and properties."""

from __future__ import annotations

import pytest
import torch

from distill.diffusion import Denoiser, build_denoiser, build_process
from distill.diffusion.exact import ExactDenoiser
from distill.errors import ConfigError
from distill.tasks.score import GUIDANCES
from distill.tasks.score.methods import NoiseLevels


def test_the_exact_denoiser_of_one_point_always_predicts_it():
    point = torch.tensor([[1.5, -0.5]])
    prior = ExactDenoiser(point, build_process("flow"))
    x, t = torch.randn(6, 2), torch.rand(6) * 0.9 + 0.05
    x0, eps = prior.split(x, t)
    assert torch.allclose(x0, point.expand(6, 2), atol=1e-6)
    assert torch.allclose((1 - t)[:, None] * x0 + t[:, None] * eps, x, atol=1e-5)  # x_t = α x̂0 + σ ε̂


def test_the_exact_denoiser_picks_the_nearest_point_at_low_noise():
    points = torch.tensor([[2.0, 0.0], [-2.0, 0.0]])
    prior = ExactDenoiser(points, build_process("flow"))
    x0, _ = prior.split(torch.tensor([[1.7, 0.3], [-1.9, -0.2]]), torch.full((2,), 0.05))
    assert torch.allclose(x0, points, atol=1e-4)


def test_sds_with_the_exact_prior_of_one_point_pulls_particles_straight_to_it():
    point = torch.tensor([[1.0, 2.0]])
    prior = ExactDenoiser(point, build_process("flow"))
    x = torch.randn(32, 2)
    update = GUIDANCES.build("sds", weighting="uniform").update(x, prior)
    # ε̂ − ε = α(x − p)/σ: a positive multiple of x − p for every particle
    ratio = update / (x - point)
    assert torch.allclose(ratio[:, 0], ratio[:, 1], rtol=1e-4) and (ratio > 0).all()
    particles = torch.randn(64, 2).requires_grad_(True)
    optimizer = torch.optim.Adam([particles], lr=0.05)
    sds = GUIDANCES.build("sds")
    start = (particles.detach() - point).norm(dim=1).mean()
    for step in range(300):
        loss = sds.loss(particles, prior, progress=step / 300)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (particles.detach() - point).norm(dim=1).mean() < 0.1 * start


def test_the_surrogate_gradient_is_the_update():
    prior = ExactDenoiser(torch.randn(5, 2), build_process("flow"))
    x = torch.randn(8, 2).requires_grad_(True)
    torch.manual_seed(3)
    update = GUIDANCES.build("sds").update(x, prior)
    torch.manual_seed(3)
    GUIDANCES.build("sds").loss(x, prior)["loss"].backward()
    assert torch.allclose(x.grad, update / x[0].numel() / len(x), atol=1e-7)


def _prior(seed: int = 0) -> Denoiser:
    torch.manual_seed(seed)
    return Denoiser(build_denoiser("mlp", (2,), hidden=16, depth=1), build_process("flow"), "velocity").eval()


def test_vsd_update_is_zero_when_the_fake_score_equals_the_prior():
    prior = _prior().requires_grad_(False)
    vsd = GUIDANCES.build("vsd")
    fake = vsd.fake_network(prior)
    assert all(p.requires_grad for p in fake.parameters()) and not any(p.requires_grad for p in prior.parameters())
    assert torch.equal(vsd.update(torch.randn(16, 2), prior, fake), torch.zeros(16, 2))
    with torch.no_grad():
        for p in fake.parameters():
            p.add_(0.1)
    assert vsd.update(torch.randn(16, 2), prior, fake).abs().sum() > 0


def test_vsd_loss_trains_the_fake_score_and_the_particles_not_the_prior():
    prior = _prior().requires_grad_(False)
    vsd = GUIDANCES.build("vsd")
    fake = vsd.fake_network(prior)
    particles = torch.randn(16, 2).requires_grad_(True)
    with torch.no_grad():
        next(fake.parameters()).add_(0.1)  # φ ≠ prior, so the particles get an update
    out = vsd.loss(particles, prior, fake)
    assert set(out) == {"loss", "particles", "fake"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert particles.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in fake.parameters())
    assert all(p.grad is None for p in prior.parameters())
    with pytest.raises(ConfigError, match="exact prior has none"):
        vsd.fake_network(ExactDenoiser(torch.randn(3, 2), build_process("flow")))


def test_noise_levels_weightings_and_annealing():
    process = build_process("flow")  # α = 1 − t, σ = t
    t = torch.tensor([0.25, 0.5])
    assert torch.allclose(NoiseLevels(weighting="sigma2").weight(process, t), t**2)
    assert torch.allclose(NoiseLevels(weighting="alpha_sigma").weight(process, t), (1 - t) * t)
    assert torch.equal(NoiseLevels(weighting="uniform").weight(process, t), torch.ones(2))
    annealed = NoiseLevels((0.1, 0.9), "sqrt_anneal")
    assert annealed.draw(1000, 0.0, torch.device("cpu")).max() > 0.8
    late = annealed.draw(1000, 0.25, torch.device("cpu"))  # upper end 0.9 − 0.8·√0.25 = 0.5
    assert late.min() >= 0.1 and late.max() <= 0.5
    for bad in ({"weighting": "snr"}, {"schedule": "cosine"}, {"t_range": (0.0, 0.5)}):
        with pytest.raises(ConfigError):
            NoiseLevels(**bad)


def test_particles_train_on_the_engine_and_reach_the_exact_priors_point(tmp_path):
    from distill.engine.config import TrainConfig
    from distill.engine.trainer import train
    from distill.tasks.score import ParticlesObjective, mode_statistics

    point = torch.tensor([[1.0, 2.0]])
    objective = ParticlesObjective(GUIDANCES.build("sds", schedule="sqrt_anneal"),
                                   ExactDenoiser(point, build_process("flow")), torch.randn(64, 2), total_steps=150)
    assert set(objective.parameter_groups()) == {"particles"}
    start = mode_statistics(objective.particles.detach(), point)
    config = TrainConfig(steps=150, batch_size=32, lr=0.05, progress=False, groups={"particles": {"lr": 0.05}})
    train(objective, ParticlesObjective.dataset(64), config, tmp_path)
    end = mode_statistics(objective.particles.detach(), point)
    assert objective.step == 150 and end["modes_covered"] == 1
    assert end["mode_distance"] < 0.2 * start["mode_distance"] and end["mode_spread"] < start["mode_spread"]


def test_vsd_particles_have_a_fake_group():
    from distill.tasks.score import ParticlesObjective

    objective = ParticlesObjective(GUIDANCES.build("vsd"), _prior(), torch.randn(8, 2), total_steps=10)
    groups = objective.parameter_groups()
    assert set(groups) == {"particles", "fake"} and len(groups["fake"]) == len(list(_prior().parameters()))
    out = objective({"index": torch.arange(8)})
    assert {"loss", "particles", "fake"} <= set(out)


def test_mode_statistics_by_hand():
    from distill.tasks.score import mode_statistics

    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    points = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [10.0, 1.0], [10.0, -1.0]])
    stats = mode_statistics(points, centres)
    assert stats["mode_distance"] == pytest.approx(1.0) and stats["modes_covered"] == 2
    # per mode: std over x and y of two points ±1 on one axis = (√2, 0) → mean √2 / 2
    assert stats["mode_spread"] == pytest.approx(2 ** 0.5 / 2, rel=1e-5)
