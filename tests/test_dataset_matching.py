"""Gradient and distribution matching for dataset distillation: the distances, per-class gradients,
the networks, and one DC and one DM iteration on a tiny easy problem."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distill.errors import ConfigError, DistillError
from distill.taps import tapped
from distill.tasks.dataset.condense import build_network
from distill.tasks.dataset.matching import class_gradients, gradient_distance, mean_embedding_distance
from distill.tasks.dataset.methods.base import CONDENSERS
from distill.tasks.dataset.methods.dc import GradientMatching, get_loops
from distill.tasks.dataset.methods.dm import DistributionMatching
from distill.tasks.dataset.recipe import ARCHITECTURES
from distill.tasks.dataset.synthetic import ClassBank, SyntheticSet

# -- gradient_distance ----------------------------------------------------------------------


def _grads(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 2, 2, 2, generator=g), torch.randn(4, 3, generator=g), torch.randn(4, generator=g)]


def test_gradient_distance_is_zero_for_identical_and_two_per_row_for_opposite():
    g = _grads()
    assert gradient_distance(g, g).item() == pytest.approx(0.0, abs=1e-5)
    # conv weight: 3 output channels, linear weight: 4 rows → (3 + 4) × 2; the bias adds nothing
    assert gradient_distance([-t for t in g], g).item() == pytest.approx(14.0, abs=1e-5)


def test_gradient_distance_matches_a_hand_computation():
    syn = [torch.tensor([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])]
    real = [torch.tensor([[0.0, 2.0], [2.0, 2.0], [4.0, 3.0]])]
    # rows: orthogonal → 1, parallel → 0, cos = 24/25 → 1/25
    assert gradient_distance(syn, real).item() == pytest.approx(1 + 0 + 1 / 25, abs=1e-5)
    # a conv weight (out, in, kh, kw) is one row per output channel
    conv_syn = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]], [[[1.0, 1.0]], [[1.0, 1.0]]]])  # (2, 2, 1, 2)
    conv_real = torch.tensor([[[[0.0, 1.0]], [[0.0, 0.0]]], [[[-1.0, -1.0]], [[-1.0, -1.0]]]])
    assert gradient_distance([conv_syn], [conv_real]).item() == pytest.approx(1 + 2, abs=1e-5)
    # a 3-D weight (a, b, c) is a rows of b·c
    three_syn, three_real = torch.ones(2, 2, 2), torch.ones(2, 2, 2)
    three_real[1] = -1
    assert gradient_distance([three_syn], [three_real]).item() == pytest.approx(0 + 2, abs=1e-5)


def test_gradient_distance_ignores_one_dimensional_parameters_as_the_reference():
    g = _grads()
    other_bias = [g[0], g[1], -5 * g[2]]
    assert gradient_distance(other_bias, g).item() == pytest.approx(gradient_distance(g, g).item(), abs=1e-6)
    bias_only = gradient_distance([torch.tensor([1.0, 0.0])], [torch.tensor([0.0, 1.0])])
    assert bias_only.item() == 0.0


def test_gradient_distance_zero_gradient_counts_one_per_row_and_stacked_sums_classes():
    g = _grads()
    zeros = [torch.zeros_like(t) for t in g]
    assert gradient_distance(zeros, g).item() == pytest.approx(7.0, abs=1e-5)
    g2 = _grads(1)
    stacked = gradient_distance([torch.stack(p) for p in zip(g, g2)], [torch.stack(p) for p in zip(g2, g2)],
                                stacked=True)
    assert stacked.item() == pytest.approx(gradient_distance(g, g2).item() + gradient_distance(g2, g2).item(),
                                           abs=1e-5)


def test_gradient_distance_refuses_mismatched_gradients():
    g = _grads()
    with pytest.raises(ConfigError, match="one synthetic and one real"):
        gradient_distance(g[:2], g)
    with pytest.raises(ConfigError, match="parameter 1"):
        gradient_distance([g[0], g[1].T], g[:2])


# -- per-class gradients --------------------------------------------------------------------


def _net(seed: int = 0, name: str = "convnet", shape=(3, 8, 8), classes: int = 3, width: int = 8, depth: int = 2):
    torch.manual_seed(seed)
    return build_network(name, shape, classes, width=width, depth=depth).train()


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_class_gradients_equal_per_class_autograd(method):
    net = _net()
    images = torch.randn(3, 4, 3, 8, 8)
    got = class_gradients(net, images, method=method)
    params = list(net.parameters())
    assert [t.shape for t in got] == [(3, *p.shape) for p in params]
    for k in range(3):
        expected = torch.autograd.grad(F.cross_entropy(net(images[k]), torch.full((4,), k)), params)
        for mine, theirs in zip(got, expected):
            torch.testing.assert_close(mine[k], theirs, atol=1e-5, rtol=1e-4)
    assert all(p.grad is None for p in params)


def test_class_gradients_are_differentiable_in_the_images_and_methods_agree():
    net = _net()
    real = torch.randn(3, 5, 3, 8, 8)
    syn = torch.randn(3, 2, 3, 8, 8, requires_grad=True)
    g_real = class_gradients(net, real, method="loop")
    # reference: the python loop of torch.autograd.grad(create_graph=True) on the module's own parameters
    params = list(net.parameters())
    total = 0
    for k in range(3):
        g_syn = torch.autograd.grad(F.cross_entropy(net(syn[k]), torch.full((2,), k)), params, create_graph=True)
        total = total + gradient_distance(g_syn, [g[k] for g in g_real])
    (expected,) = torch.autograd.grad(total, syn)
    for method in ("vmap", "loop"):
        distance = gradient_distance(class_gradients(net, syn, create_graph=True, method=method), g_real, stacked=True)
        assert distance.item() == pytest.approx(total.item(), rel=1e-5)
        (got,) = torch.autograd.grad(distance, syn)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert all(p.grad is None for p in params)
    assert not any(t.requires_grad for t in class_gradients(net, syn, create_graph=False))


def test_class_gradients_take_labels_and_refuse_bad_methods():
    net = _net()
    images = torch.randn(2, 3, 3, 8, 8)
    labels = torch.tensor([[2, 2, 1], [0, 1, 0]])
    got = class_gradients(net, images, labels)
    expected = torch.autograd.grad(F.cross_entropy(net(images[1]), labels[1]), list(net.parameters()))
    torch.testing.assert_close(got[0][1], expected[0], atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError, match="vmap, loop"):
        class_gradients(net, images, method="jacobian")
    with pytest.raises(ConfigError, match="labels"):
        class_gradients(net, images, labels[:, :2])


# -- mean embedding distance ----------------------------------------------------------------


def test_mean_embedding_distance_matches_a_hand_computation():
    real = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [2.0, 2.0]]])  # means (2, 3), (1, 1)
    syn = torch.tensor([[[2.0, 1.0]], [[1.0, 3.0]]])  # means (2, 1), (1, 3)
    assert mean_embedding_distance(real, syn).item() == pytest.approx((0 + 4) + (0 + 4))
    assert mean_embedding_distance(real, real[:, :1]).item() == pytest.approx(1 + 1 + 1 + 1)
    with pytest.raises(ConfigError, match=r"\(K, n, D\)"):
        mean_embedding_distance(real, syn[:1])


# -- networks -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["convnet", "mlp", "resnet"])
@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 28, 28)])
def test_networks_give_logits_and_consistent_embeddings(name, shape):
    net = build_network(name, shape, 5, width=8, depth=3 if shape[1] >= 8 else 2).eval()
    x = torch.randn(4, *shape)
    with tapped(net, "features") as embed:
        logits, features = net(x), embed(x)
    assert logits.shape == (4, 5)
    assert features.shape == (4, net.embedding_dim) and features.dim() == 2
    torch.testing.assert_close(net.classifier(features), logits)
    # per-sample normalisation: a sample's output does not depend on its batch
    torch.testing.assert_close(net(x[:1]), logits[:1], atol=1e-5, rtol=1e-5)


def test_network_feature_sizes():
    assert build_network("convnet", (3, 8, 8), 10, width=8, depth=3).embedding_dim == 8 * 1 * 1
    assert build_network("convnet", (1, 28, 28), 10, width=8, depth=3).embedding_dim == 8 * 3 * 3
    assert build_network("mlp", (1, 28, 28), 10).embedding_dim == 128
    assert build_network("resnet", (3, 8, 8), 10, width=4, depth=3).embedding_dim == 16
    assert list(ARCHITECTURES) == ["convnet", "mlp", "resnet"]


def test_network_errors():
    with pytest.raises(ConfigError, match="convnet, mlp, resnet"):
        build_network("vgg", (3, 8, 8), 10)
    with pytest.raises(ConfigError, match="at least 16×16.*at most 3"):
        build_network("convnet", (3, 8, 8), 10, depth=4)
    with pytest.raises(ConfigError, match="at least 8×8"):
        build_network("resnet", (1, 4, 4), 10, depth=4)
    with pytest.raises(ConfigError, match="width"):
        build_network("convnet", (3, 8, 8), 10, width=0)
    assert build_network("mlp", (1, 1, 1), 2, depth=5)(torch.randn(2, 1, 1, 1)).shape == (2, 2)


# -- the condensers on an easy problem ------------------------------------------------------


def _problem(seed: int = 0, classes: int = 3, per_class: int = 16, ipc: int = 2):
    """Classes are fixed random 8×8 patterns plus a little noise; the synthetic set starts from noise."""
    g = torch.Generator().manual_seed(seed)
    patterns = 1.5 * torch.randn(classes, 3, 8, 8, generator=g)
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = patterns[labels] + 0.3 * torch.randn(len(labels), 3, 8, 8, generator=g)
    bank = ClassBank(images, labels, classes)
    return bank, SyntheticSet.from_noise(bank, ipc, g)


def _factory(built: list | None = None):
    def make():
        net = build_network("convnet", (3, 8, 8), 3, width=8, depth=2)
        if built is not None:
            built.append((net, {k: v.clone() for k, v in net.state_dict().items()}))
        return net
    return make


def _held_out_loss(condenser, seeds=range(4)) -> float:
    """The condenser's matching loss on fixed fresh networks and fixed real batches (a fair before/after)."""
    total = 0.0
    for seed in seeds:
        net = condenser.fresh_network(torch.Generator().manual_seed(1000 + seed))
        total += condenser.matching_loss(net, torch.Generator().manual_seed(seed)).item()
    return total / len(seeds)


def test_dm_iteration_moves_images_lowers_its_loss_and_never_trains_the_network():
    bank, synthetic = _problem()
    built: list = []
    dm = DistributionMatching(synthetic, bank, _factory(built), real_per_class=8)
    start_images, before = synthetic.images.detach().clone(), _held_out_loss(dm)
    generator = torch.Generator().manual_seed(0)
    logs = [dm.iteration(generator) for _ in range(15)]
    assert set(logs[0]) == {"loss"} and all(math.isfinite(log["loss"]) for log in logs)
    assert not torch.equal(synthetic.images.detach(), start_images)
    assert _held_out_loss(dm) < 0.8 * before  # about 0.69 here
    assert len(built) >= 15
    for net, state in built:
        assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
        assert all(not p.requires_grad and p.grad is None for p in net.parameters())
        assert net.training


def test_dc_iteration_moves_images_and_lowers_its_loss():
    bank, synthetic = _problem()
    dc = GradientMatching(synthetic, bank, _factory(), real_per_class=8, outer_loop=2, inner_loop=1, batch_train=4,
                          lr=0.5)
    start_images, before = synthetic.images.detach().clone(), _held_out_loss(dc)
    generator = torch.Generator().manual_seed(0)
    logs = [dc.iteration(generator) for _ in range(6)]
    assert set(logs[0]) == {"loss", "network_loss"}
    assert all(math.isfinite(log["loss"]) and math.isfinite(log["network_loss"]) for log in logs)
    assert not torch.equal(synthetic.images.detach(), start_images)
    assert _held_out_loss(dc) < 0.85 * before  # about 0.75 here


def test_condensers_are_deterministic_given_the_generator():
    results = []
    for _ in range(2):
        bank, synthetic = _problem()
        dm = DistributionMatching(synthetic, bank, _factory(), real_per_class=8)
        dm.iteration(torch.Generator().manual_seed(3))
        results.append(synthetic.images.detach().clone())
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


class _Shift:
    """A stand-in for DSA: a draw is one random brightness shift, shared by every image it is applied to."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def draw(self, generator):
        return torch.rand((), generator=generator)

    def apply(self, images, draw):
        self.calls.append((id(draw), len(images)))
        return images + draw


@pytest.mark.parametrize("name", ["dc", "dsa", "dm"])
def test_augment_draw_is_shared_by_a_class_real_and_synthetic_images(name):
    bank, synthetic = _problem()
    augment = _Shift()
    options = {"real_per_class": 8} | ({} if name == "dm" else {"outer_loop": 1, "inner_loop": 0})
    condenser = CONDENSERS.build(name, synthetic=synthetic, bank=bank, network=_factory(), augment=augment, **options)
    condenser.iteration(torch.Generator().manual_seed(0))
    assert len(augment.calls) == 2 * bank.num_classes
    for (real_draw, real_n), (syn_draw, syn_n) in zip(augment.calls[::2], augment.calls[1::2]):
        assert real_draw == syn_draw and (real_n, syn_n) == (8, synthetic.ipc)


def test_condenser_registry_options_and_loops():
    assert {"dc", "dsa", "dm"} <= set(CONDENSERS.names())
    assert [get_loops(ipc) for ipc in (1, 10, 20, 30, 40, 50)] == [(1, 1), (10, 50), (20, 25), (30, 20), (40, 15),
                                                                   (50, 10)]
    bank, synthetic = _problem()
    with pytest.raises(ConfigError, match="outer_loop and inner_loop"):
        GradientMatching(synthetic, bank, _factory())  # ipc 2 has no reference loops
    with pytest.raises(ConfigError, match="needs an augment"):
        CONDENSERS.build("dsa", synthetic=synthetic, bank=bank, network=_factory(), outer_loop=1, inner_loop=1)
    with pytest.raises(ConfigError, match="Did you mean 'real_per_class'"):
        DistributionMatching(synthetic, bank, _factory(), real_per_clas=4)
    with pytest.raises(ConfigError, match="'lr' must be a float"):
        DistributionMatching(synthetic, bank, _factory(), lr="fast")
    dm = DistributionMatching(synthetic, bank, _factory(), lr=2)
    assert dm.optimizer.param_groups[0]["lr"] == 2.0 and dm.optimizer.param_groups[0]["momentum"] == 0.5
    dc = GradientMatching(SyntheticSet.from_noise(bank, 1, torch.Generator()), bank, _factory())
    assert (dc.options["outer_loop"], dc.options["inner_loop"], dc.optimizer.param_groups[0]["lr"]) == (1, 1, 0.1)
    with pytest.raises(ConfigError, match="does not fit"):
        DistributionMatching(SyntheticSet(torch.zeros(3, 1, 8, 8), 3), bank, _factory())
    with pytest.raises(DistillError):
        CONDENSERS.get("mtt-typo")
