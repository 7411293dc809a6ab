"""SDS's successors (ISM, SSD, CSD, DSD) on small tensors: hand-computed values and properties under
exact priors, for the flow and the diffusion process."""

from __future__ import annotations

import pytest
import torch

from distill.diffusion import Denoiser, build_denoiser, build_process, ode_step
from distill.diffusion.exact import ExactDenoiser
from distill.diffusion.process import broadcast
from distill.errors import ConfigError
from distill.tasks.score import GUIDANCES, ParticlesObjective
from distill.tasks.score.methods.base import annealed
from distill.tasks.score.methods.noise import FixedNoise, ddim_path
from distill.tasks.score.methods.ssd import SSD

PROCESSES = ("flow", "diffusion")
POINT = torch.tensor([[1.0, -0.5]])
THREE = torch.tensor([[2.0, 0.0], [-2.0, 0.5], [0.0, -2.0]])


def _coefficients(process, t: float) -> tuple[float, float]:
    alpha, sigma, _, _ = process.coefficients(torch.tensor([t]))
    return float(alpha), float(sigma)


class ConditionalPoints:
    """A class-conditional exact prior: label ≥ 0 → the ideal denoiser of ``cond``, no label or −1 → of
    ``uncond``; ``cfg_scale`` w mixes them as classifier-free guidance does (uncond + w·(cond − uncond))."""

    def __init__(self, cond, uncond, process, cfg_scale: float = 1.0) -> None:
        self.process, self.num_classes, self.cfg_scale = process, 1, cfg_scale
        self.cond, self.uncond = ExactDenoiser(cond, process), ExactDenoiser(uncond, process)

    def split(self, x, t, y=None, d=None):
        x0_u, eps_u = self.uncond.split(x, t)
        if y is None:
            return x0_u, eps_u
        x0_c, eps_c = self.cond.split(x, t)
        has = broadcast(y >= 0, x)
        w = self.cfg_scale
        return (torch.where(has, x0_u + w * (x0_c - x0_u), x0_u), torch.where(has, eps_u + w * (eps_c - eps_u), eps_u))

    def evaluations_per_call(self, y=None) -> int:
        return 1 if y is None or self.cfg_scale == 1.0 else 2


# --- the fixed noise per particle ------------------------------------------------------------------

def test_fixed_noise_is_a_function_of_seed_index_and_shape_only():
    bank = FixedNoise(seed=3)
    first = bank(torch.tensor([0, 5, 2]), torch.zeros(3, 4), "test")
    torch.manual_seed(123)  # the global RNG has no say
    again = FixedNoise(seed=3)(torch.tensor([2, 0]), torch.zeros(2, 4, dtype=torch.float64), "test")
    assert torch.equal(again.float(), first[[2, 0]]) and again.dtype == torch.float64
    assert not torch.allclose(first[0], first[1]) and not torch.allclose(first[1], first[2])
    assert not torch.allclose(FixedNoise(seed=4)(torch.tensor([0]), torch.zeros(1, 4), "test"), first[:1])
    assert bank(torch.tensor([0]), torch.zeros(1, 2, 2), "test").shape == (1, 2, 2)  # its own draw per shape
    with pytest.raises(ConfigError, match="index="):
        bank(None, torch.zeros(2, 4), "test")
    for bad in (torch.tensor([0, 1, 2]), torch.tensor([0.0, 1.0]), torch.tensor([0, -1])):
        with pytest.raises(ConfigError, match="index must be 2"):
            bank(bad, torch.zeros(2, 4), "test")


@pytest.mark.parametrize("name", ["csd", "dsd"])
def test_csd_and_dsd_follow_the_particle_not_its_place_in_the_batch(name):
    prior = ExactDenoiser(THREE, build_process("flow"))
    guidance = GUIDANCES.build(name)
    second = 0.3 if name == "csd" else 0.6  # s < t for CSD, t⁺ > t for DSD
    guidance.times = lambda n, progress, device: (torch.full((n,), 0.5), torch.full((n,), second))
    torch.manual_seed(0)
    x, index = torch.randn(4, 2), torch.tensor([7, 1, 4, 0])
    update = guidance.update(x, prior, progress=0.3, index=index)
    assert update.abs().sum() > 0
    order = torch.tensor([2, 0, 3, 1])
    assert torch.allclose(guidance.update(x[order], prior, progress=0.3, index=index[order]), update[order], atol=1e-6)
    assert not torch.allclose(guidance.update(x, prior, progress=0.3, index=index + 10), update, atol=1e-4)
    with pytest.raises(ConfigError, match=f"{name} keeps one fixed noise per particle"):
        guidance.update(x, prior, progress=0.3)
    with pytest.raises(ConfigError, match=name):
        guidance.loss(x, prior, progress=0.3)


# --- ISM ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("process_name", PROCESSES)
def test_ism_inversion_of_the_one_point_denoiser_is_the_analytic_ddim_path(process_name):
    process = build_process(process_name)
    prior = ExactDenoiser(POINT, process)
    ism = GUIDANCES.build("ism", interval=0.2, inversion_steps=3, t_start=0.01)
    torch.manual_seed(0)
    x, eps, t = torch.randn(5, 2), torch.randn(5, 2), torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])
    s, x_s, x_t, eps_s = ism.interval_points(x, prior, t, eps)
    assert torch.allclose(s, torch.tensor([0.01, 0.1, 0.3, 0.5, 0.7]))  # t − interval, floored at t_start
    # one point: ε̂(x_a, a) = (x_a − α_a p)/σ_a is constant along DDIM, so from x_start = α_0 x + σ_0 ε
    a0, s0 = _coefficients(process, 0.01)
    constant = a0 * (x - POINT) / s0 + eps
    coefficients = lambda u: [c[:, None] for c in process.coefficients(u)[:2]]  # noqa: E731
    alpha_s, sigma_s = coefficients(s)
    alpha_t, sigma_t = coefficients(t)
    assert torch.allclose(x_s, alpha_s * POINT + sigma_s * constant, rtol=1e-4, atol=1e-4)
    assert torch.allclose(x_t, alpha_t * POINT + sigma_t * constant, rtol=1e-4, atol=1e-4)
    assert torch.allclose(eps_s, constant, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("process_name", PROCESSES)
def test_ddim_path_is_iterated_ode_steps_both_ways(process_name):
    prior = ExactDenoiser(THREE, build_process(process_name))
    torch.manual_seed(1)
    x = torch.randn(6, 2)
    up = [torch.full((6,), v) for v in (0.2, 0.35, 0.6)]
    expected = ode_step(prior, ode_step(prior, x, 0.2, 0.35, None, "ddim"), 0.35, 0.6, None, "ddim")
    end, eps = ddim_path(prior, x, up, None)
    assert torch.allclose(end, expected, atol=1e-5)
    assert torch.allclose(eps, prior.split(ode_step(prior, x, 0.2, 0.35, None, "ddim"), up[1])[1], atol=1e-5)
    still, _ = ddim_path(prior, x, [up[0], up[0]], None)  # a step between equal times stays put
    assert torch.allclose(still, x, atol=1e-5)


@pytest.mark.parametrize("process_name", PROCESSES)
def test_ism_update_is_zero_for_one_point_and_the_guided_gap_with_a_conditional_prior(process_name):
    process = build_process(process_name)
    torch.manual_seed(2)
    x = torch.randn(16, 2)
    ism = GUIDANCES.build("ism", weighting="uniform")
    exact = ism.update(x, ExactDenoiser(POINT, process))
    assert exact.abs().max() < 1e-3  # DDIM inversion is exact for one point: ε̂(x_t, t) = ε̂(x_s, s)
    # conditional p, unconditional q, guidance 3: ε̂_g(x_t) − ε̂_u(x_s) = 3·(α_t/σ_t)·(q − p) exactly
    p, q = torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 2.0]])
    prior = ConditionalPoints(p, q, process, cfg_scale=3.0)
    narrow = GUIDANCES.build("ism", weighting="uniform", t_range=(0.5, 0.5001), inversion_steps=2)
    alpha, sigma = _coefficients(process, 0.5)
    update = narrow.update(x, prior, y=torch.zeros(16, dtype=torch.long))
    assert torch.allclose(update, (3 * alpha / sigma * (q - p)).expand(16, 2), rtol=1e-3, atol=1e-3)
    assert narrow.evaluations_per_step(prior, torch.zeros(16, dtype=torch.long)) == 2 + 1 + 2


# --- SSD ------------------------------------------------------------------------------------------

def test_ssd_combines_its_terms_by_hand():
    eps = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    cond = torch.tensor([[2.0, 3.0], [2.0, 3.0]])
    uncond = torch.tensor([[1.5, 3.0], [1.5, 3.0]])
    w = torch.tensor([2.0, 2.0])
    g = SSD.combine(cond, uncond, eps, w, torch.tensor([True, False]))
    # h = w·(cond − uncond) = (1, 0); ε̃ = cond − (⟨cond, ε⟩/‖ε‖²)·ε = (0, 3), rescaled to ‖h‖ = 1
    assert torch.allclose(g, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    same = SSD.combine(cond[:1], cond[:1], eps[:1], w[:1], torch.tensor([True]))
    assert torch.equal(same, torch.zeros(1, 2))  # no class signal, no update (and no 0/0)


@pytest.mark.parametrize("process_name", PROCESSES)
def test_ssd_is_zero_without_classes_and_disengages_from_the_unconditional_mode(process_name):
    process = build_process(process_name)
    torch.manual_seed(3)
    x = torch.randn(16, 2)
    ssd = GUIDANCES.build("ssd")
    assert torch.equal(ssd.update(x, ExactDenoiser(POINT, process)), torch.zeros(16, 2))
    p, q = torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 2.0]])
    y = torch.zeros(16, dtype=torch.long)
    guided = ConditionalPoints(p, q, process, cfg_scale=5.0)
    high = GUIDANCES.build("ssd", weighting="uniform", t_range=(0.5, 0.9), switch_t=0.2)
    torch.manual_seed(4)
    update = high.update(x, guided, y=y)
    ratio = update / (q - p)  # ε̂(y) − ε̂(∅) = (α/σ)·(q − p): a positive multiple of q − p per row
    assert torch.allclose(ratio[:, 0], ratio[:, 1], rtol=1e-4) and (ratio > 0).all()
    assert guided.cfg_scale == 5.0  # the prior's scale is put back …
    torch.manual_seed(4)  # … and plays no part
    assert torch.allclose(high.update(x, ConditionalPoints(p, q, process), y=y), update, atol=1e-6)
    low = GUIDANCES.build("ssd", weighting="uniform", t_range=(0.05, 0.0501), switch_t=0.2)
    alpha, sigma = _coefficients(process, 0.05)
    seeking = low.update(x, guided, y=y)  # mode-seeking, at the norm of the mode-disengaging term
    assert torch.allclose(seeking.norm(dim=1), torch.full((16,), alpha / sigma * float((q - p).norm())), rtol=5e-3)
    assert high.evaluations_per_step(guided, y) == 2 and high.evaluations_per_step(guided, None) == 1


# --- CSD ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("process_name", PROCESSES)
def test_csd_update_is_the_noise_prediction_gap_of_one_ddim_step(process_name):
    prior = ExactDenoiser(THREE, build_process(process_name))
    csd = GUIDANCES.build("csd", gap=(0.2, 0.2), seed=5)
    torch.manual_seed(6)
    x, index = torch.randn(8, 2), torch.arange(8)
    t, s = csd.times(8, 0.25, x.device)
    assert torch.allclose(s, torch.full((8,), 0.4)) and torch.allclose(t, torch.full((8,), 0.6))  # 0.7 − 0.6·√0.25
    x_t = prior.process.noise(x, csd.noise(index, x, "csd"), t)
    x_s = ode_step(prior, x_t, t, s, None, "ddim")
    expected = prior.split(x_t, t)[1] - prior.split(x_s, s)[1]  # w = 1: ε̂(x_t, t) − ε̂(x̂_s, s)
    update = csd.update(x, prior, progress=0.25, index=index)
    assert torch.allclose(update, expected, atol=1e-4) and update.abs().sum() > 0
    assert torch.allclose(csd.update(x, ExactDenoiser(POINT, prior.process), progress=0.25, index=index),
                          torch.zeros(8, 2), atol=1e-4)  # one point: x̂0 ≡ p, no update anywhere
    if process_name == "flow":  # DDIM is Euler for the flow process
        euler = GUIDANCES.build("csd", gap=(0.2, 0.2), seed=5, solver="euler")
        assert torch.allclose(euler.update(x, prior, progress=0.25, index=index), update, atol=1e-4)
        assert euler.evaluations_per_step(prior) == 3
    assert csd.evaluations_per_step(prior) == 2


def test_csd_schedule_anneals_s_and_keeps_t_above_it():
    csd = GUIDANCES.build("csd")
    torch.manual_seed(7)
    for progress, s_expected in ((0.0, 0.7), (1.0, 0.1), (0.5, annealed(0.7, 0.1, 0.5))):
        t, s = csd.times(1000, progress, torch.device("cpu"))
        assert torch.allclose(s, torch.full((1000,), s_expected))
        gap = t - s
        assert gap.min() >= 0.1 - 1e-6 and gap.max() <= 0.3 and t.max() <= 0.98
    assert (t - s).std() > 0.03  # jittered


# --- DSD ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("process_name", PROCESSES)
def test_dsd_pulls_particles_straight_to_one_point(process_name):
    process = build_process(process_name)
    prior = ExactDenoiser(POINT, process)
    dsd = GUIDANCES.build("dsd", weighting="uniform")
    torch.manual_seed(8)
    x, index = torch.randn(32, 2), torch.arange(32)
    update = dsd.update(x, prior, progress=0.5, index=index)
    # ε̂(x_t) − ε̂(x_{t⁺}) = (α_t/σ_t − α_{t⁺}/σ_{t⁺})·(x − p) with t⁺ ∈ [t, t + 0.1·(t − 0.02)]
    ratio = update / (x - POINT)
    t = annealed(0.98, 0.02, 0.5)
    (a, s), (a_top, s_top) = _coefficients(process, t), _coefficients(process, t + 0.1 * (t - 0.02))
    assert torch.allclose(ratio[:, 0], ratio[:, 1], rtol=1e-3)
    assert (ratio >= 0).all() and (ratio <= a / s - a_top / s_top + 1e-4).all() and ratio.mean() > 0
    on_point = dsd.update(POINT.expand(4, 2), prior, progress=0.5, index=index[:4])
    assert torch.allclose(on_point, torch.zeros(4, 2), atol=1e-4)
    assert torch.equal(GUIDANCES.build("dsd", plus_ratio=0.0).update(x, prior, progress=0.5, index=index),
                       torch.zeros(32, 2))  # t⁺ = t: nothing to match


@pytest.mark.parametrize("process_name", PROCESSES)
def test_dsd_generation_path_and_schedule(process_name):
    process = build_process(process_name)
    prior = ExactDenoiser(POINT, process)
    dsd = GUIDANCES.build("dsd", path_steps=4)
    torch.manual_seed(9)
    eps_star, t_plus = torch.randn(3, 2), torch.tensor([0.9, 0.5, 0.13])
    # one point: ε̂ is constant on the DDIM path from x_1 = ε*, so x_{t⁺} = α p + σ·(ε* − α_1 p)/σ_1
    a1, s1 = _coefficients(process, 1.0)
    alpha, sigma = (c[:, None] for c in process.coefficients(t_plus)[:2])
    expected = alpha * POINT + sigma * (eps_star - a1 * POINT) / s1
    assert torch.allclose(dsd.path(prior, eps_star, t_plus, None), expected, rtol=1e-4, atol=1e-4)
    t, t_plus = dsd.times(500, 0.0, torch.device("cpu"))
    assert torch.allclose(t, torch.full((500,), 0.98)) and t_plus.min() >= 0.98 and t_plus.max() <= 1.0
    t, t_plus = dsd.times(500, 1.0, torch.device("cpu"))
    assert torch.allclose(t, torch.full((500,), 0.02)) and torch.allclose(t_plus, t)
    assert dsd.evaluations_per_step(prior) == 4 + 2 + 1


@pytest.mark.parametrize("process_name", PROCESSES)
def test_dsd_target_is_the_plain_conditional_prediction(process_name):
    process = build_process(process_name)
    p, q = torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 2.0]])
    prior = ConditionalPoints(p, q, process, cfg_scale=3.0)
    dsd = GUIDANCES.build("dsd", weighting="uniform", plus_ratio=0.0)
    torch.manual_seed(10)
    x = torch.randn(6, 2)
    update = dsd.update(x, prior, y=torch.zeros(6, dtype=torch.long), progress=0.36, index=torch.arange(6))
    # t⁺ = t: guided minus plain conditional ε̂ at x_t = (3 − 1)·(ε̂_c − ε̂_u) = 2·(α_t/σ_t)·(q − p)
    alpha, sigma = _coefficients(process, annealed(0.98, 0.02, 0.36))
    assert torch.allclose(update, (2 * alpha / sigma * (q - p)).expand(6, 2), rtol=1e-4, atol=1e-4)
    assert prior.cfg_scale == 3.0


# --- options and the shared contract --------------------------------------------------------------

@pytest.mark.parametrize("name, options, option", [
    ("ism", {"interval": 0.0}, "interval"), ("ism", {"interval": 1.5}, "interval"),
    ("ism", {"inversion_steps": 0}, "inversion_steps"), ("ism", {"t_start": 0.05}, "t_start"),
    ("ism", {"t_range": (0.5, 0.2)}, "t_range"), ("ism", {"weighting": "snr"}, "weighting"),
    ("ssd", {"switch_t": 1.5}, "switch_t"), ("ssd", {"t_range": (0.0, 0.5)}, "t_range"),
    ("csd", {"anneal": (0.1, 0.7)}, "anneal"), ("csd", {"gap": (0.0, 0.1)}, "gap"),
    ("csd", {"t_max": 0.5}, "t_max"), ("csd", {"solver": "rk4"}, "solver"), ("csd", {"seed": -1}, "seed"),
    ("dsd", {"path_steps": 0}, "path_steps"), ("dsd", {"plus_ratio": -0.1}, "plus_ratio"),
    ("dsd", {"t_range": (0.3, 1.0)}, "t_range"), ("dsd", {"interval": 0.1}, "interval"),
])
def test_bad_options_name_the_option(name, options, option):
    with pytest.raises(ConfigError, match=option):
        GUIDANCES.build(name, **options)


@pytest.mark.parametrize("name", ["ism", "ssd", "csd", "dsd"])
def test_the_surrogate_gradient_is_the_update(name):
    prior = ExactDenoiser(THREE, build_process("diffusion"))
    guidance = GUIDANCES.build(name)
    torch.manual_seed(12)
    x, index = torch.randn(8, 2).requires_grad_(True), torch.arange(8)
    torch.manual_seed(11)
    update = guidance.update(x, prior, progress=0.4, index=index)
    torch.manual_seed(11)
    guidance.loss(x, prior, progress=0.4, index=index)["loss"].backward()
    assert torch.allclose(x.grad, update / x[0].numel() / len(x), atol=1e-7)


def _conditioned_denoiser(kind: str) -> tuple[Denoiser, torch.Tensor]:
    """A small flow prior conditioned on two classes (guidance 2) or on a 4-vector pose, and 8 conditions."""
    torch.manual_seed(0)
    if kind == "classes":
        net = build_denoiser("mlp", (2,), num_classes=2, hidden=16, depth=1)
        return Denoiser(net, build_process("flow"), "velocity", num_classes=2, cfg_scale=2.0).eval(), torch.arange(8) % 2
    net = build_denoiser("mlp", (2,), hidden=16, depth=1, pose_dim=4)
    return Denoiser(net, build_process("flow"), "velocity").eval(), torch.randn(8, 4)


@pytest.mark.parametrize("kind", ["classes", "poses"])
@pytest.mark.parametrize("name", GUIDANCES.names())
def test_every_guidance_takes_one_step_on_particles_of_a_conditioned_prior(name, kind):
    prior, conditions = _conditioned_denoiser(kind)
    scale = prior.cfg_scale
    objective = ParticlesObjective(GUIDANCES.build(name), prior, torch.randn(8, 2), total_steps=10, y=conditions)
    index = torch.tensor([3, 0, 6, 5])
    extra = (objective.fake,) if objective.fake is not None else ()
    out = objective.guidance.loss(objective.particles[index], objective.prior, *extra, y=conditions[index],
                                  progress=0.5, index=index)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    grad = objective.particles.grad
    assert torch.isfinite(grad).all() and grad[[1, 2, 4, 7]].abs().sum() == 0
    # no first move: SSD has no class to disengage from; VSD's φ starts as the (unguided) prior itself
    assert grad[index].abs().sum() > 0 or (kind == "poses" and name in ("ssd", "vsd"))
    assert all(p.grad is None for p in objective.prior.parameters()) and objective.prior.cfg_scale == scale
    cost = objective.guidance.evaluations_per_step(prior, conditions[index])
    assert isinstance(cost, int) and cost >= prior.evaluations_per_call(conditions[index])
