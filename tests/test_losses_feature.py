"""Feature and relation losses (RKD, PKT, NST, pair-wise affinity, channel-wise) against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.errors import ConfigError, DistillError
from distill.losses.base import LOSSES
from distill.losses.nst import NSTLoss
from distill.losses.pkt import PKTLoss
from distill.losses.rkd import RKDLoss
from distill.losses.spatial import ChannelWiseLoss, PairwiseAffinityLoss

NAMES = ["rkd", "pkt", "nst", "pairwise_affinity", "channel_wise"]
RELATION = ["rkd", "pkt"]  # only the batch size must agree
DENSE = ["nst", "pairwise_affinity", "channel_wise"]  # maps (B, C, *spatial)


def t(a) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float32)


def unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 0 else 0 * v


def softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


# --- registry ---------------------------------------------------------------------------


def test_registered_classes_and_requirements():
    expected = {
        "rkd": (RKDLoss, "same_batch"),
        "pkt": (PKTLoss, "same_batch"),
        "nst": (NSTLoss, "same_spatial"),
        "pairwise_affinity": (PairwiseAffinityLoss, "same_spatial"),
        "channel_wise": (ChannelWiseLoss, "same_shape"),
    }
    for name, (cls, requires) in expected.items():
        assert LOSSES.get(name) is cls
        assert cls.requires == requires


# --- RKD --------------------------------------------------------------------------------

RKD_S = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])  # collinear: angles of 0 and 180 degrees
RKD_T = np.array([[0.0, 1.0, 1.0], [2.0, 0.0, 1.0], [1.0, 1.0, 0.0]])  # a triangle in 3-D


def huber_mean(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(a - b)
    return float(np.where(d < 1, 0.5 * d**2, d - 0.5).mean())


def rkd_relations(x: np.ndarray):
    n = len(x)
    dist = np.array([[np.linalg.norm(x[i] - x[j]) for j in range(n)] for i in range(n)])
    dist = dist / dist[dist > 0].mean()
    # Park et al. eq. (4): cos ∠x_i x_j x_k = <e_ij, e_kj>, e_ij = (x_i − x_j) / ‖x_i − x_j‖.
    angle = np.array(
        [[[unit(x[i] - x[j]) @ unit(x[k] - x[j]) for k in range(n)] for j in range(n)] for i in range(n)]
    )
    return dist, angle


def test_rkd_matches_hand_computation():
    d_s, a_s = rkd_relations(RKD_S)
    d_t, a_t = rkd_relations(RKD_T)
    assert np.abs(a_s - a_t).max() > 1  # both branches of the Huber loss are exercised
    expected = 25.0 * huber_mean(d_s, d_t) + 50.0 * huber_mean(a_s, a_t)
    assert RKDLoss()(t(RKD_S), t(RKD_T)).item() == pytest.approx(expected, rel=1e-5)


def test_rkd_weights_combine_the_two_terms():
    s, te = t(RKD_S), t(RKD_T)
    distance = RKDLoss(distance_weight=1.0, angle_weight=0.0)(s, te)
    angle = RKDLoss(distance_weight=0.0, angle_weight=1.0)(s, te)
    assert RKDLoss(2.0, 3.0)(s, te).item() == pytest.approx((2 * distance + 3 * angle).item(), rel=1e-6)
    with pytest.raises(ConfigError, match="angle_weight"):
        RKDLoss(angle_weight=-1.0)


def test_rkd_invariant_to_scale_and_rotation():
    rkd = RKDLoss()
    s, te = torch.randn(5, 4), torch.randn(5, 2, 3)
    q, _ = torch.linalg.qr(torch.randn(4, 4))
    base = rkd(s, te).item()
    assert rkd(3.0 * s, te).item() == pytest.approx(base, rel=1e-5)
    assert rkd(s, 0.1 * te).item() == pytest.approx(base, rel=1e-5)
    assert rkd(s @ q, te).item() == pytest.approx(base, rel=1e-4)
    assert rkd(s, s @ q).item() == pytest.approx(0.0, abs=1e-5)


def test_rkd_gradient_finite_with_repeated_samples():
    s = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]], requires_grad=True)
    RKDLoss()(s, torch.randn(3, 5)).backward()
    assert torch.isfinite(s.grad).all()
    assert RKDLoss()(torch.ones(3, 2), torch.ones(3, 4)).item() == 0.0  # all distances zero: no NaN


# --- PKT --------------------------------------------------------------------------------


def pkt_probabilities(x: np.ndarray) -> np.ndarray:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    kernel = (u @ u.T + 1) / 2
    return kernel / kernel.sum(axis=1, keepdims=True)


def test_pkt_matches_hand_computation():
    fs = np.array([[1.0, 0.0], [1.0, 1.0], [-1.0, 2.0]])
    ft = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, -1.0, 3.0]])  # feature sizes may differ
    p_s, p_t = pkt_probabilities(fs), pkt_probabilities(ft)
    expected = (p_t * np.log(p_t / p_s)).sum() / 3**2  # authors' code: mean over all B² entries
    assert PKTLoss()(t(fs), t(ft)).item() == pytest.approx(expected, rel=1e-4)


def test_pkt_invariant_to_scale():
    pkt = PKTLoss()
    s, te = torch.randn(6, 3, 2), torch.randn(6, 8)
    assert pkt(5.0 * s, te).item() == pytest.approx(pkt(s, te).item(), rel=1e-5)
    assert pkt(s, 0.2 * te).item() == pytest.approx(pkt(s, te).item(), rel=1e-5)


def test_pkt_zero_feature_row_is_finite():
    s = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, -1.0]], requires_grad=True)
    loss = PKTLoss()(s, torch.randn(3, 4))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    with pytest.raises(ConfigError, match="eps"):
        PKTLoss(eps=0.0)


# --- NST --------------------------------------------------------------------------------


def test_nst_matches_hand_computation():
    fs = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]])  # C_s = 2 channels, 3 positions
    ft = np.array([[1.0, 0.0, 0.0], [2.0, 1.0, 2.0], [0.0, 3.0, 1.0]])  # C_t = 3 channels
    us, ut = [unit(c) for c in fs], [unit(c) for c in ft]

    def k_mean(a, b):
        return np.mean([(x @ y) ** 2 for x in a for y in b])

    expected = k_mean(ut, ut) + k_mean(us, us) - 2 * k_mean(us, ut)
    assert NSTLoss()(t(fs[None]), t(ft[None])).item() == pytest.approx(expected, rel=1e-5)


def test_nst_averages_over_batch_and_flattens_2d_maps():
    s, te = torch.randn(2, 3, 2, 2), torch.randn(2, 5, 2, 2)
    nst = NSTLoss()
    per_sample = [nst(s[i : i + 1].reshape(1, 3, 4), te[i : i + 1].reshape(1, 5, 4)).item() for i in range(2)]
    assert nst(s, te).item() == pytest.approx(np.mean(per_sample), rel=1e-5)


# --- pair-wise affinity -----------------------------------------------------------------


def test_pairwise_affinity_matches_hand_computation():
    fs = np.array([[1.0, 0.0, 2.0], [1.0, 1.0, -1.0]])  # C_s = 2 channels, N = 3 positions
    ft = np.array([[0.0, 1.0, 1.0], [2.0, 0.0, 1.0], [1.0, 1.0, 0.0]])  # C_t = 3 channels

    def affinity(f):
        cols = [unit(f[:, i]) for i in range(f.shape[1])]
        return np.array([[a @ b for b in cols] for a in cols])

    expected = ((affinity(fs) - affinity(ft)) ** 2).sum() / 3**2
    assert PairwiseAffinityLoss()(t(fs[None]), t(ft[None])).item() == pytest.approx(expected, rel=1e-5)


def test_pairwise_affinity_2d_maps_are_flattened_per_sample():
    s, te = torch.randn(2, 3, 2, 3), torch.randn(2, 4, 2, 3)
    pa = PairwiseAffinityLoss()
    assert pa(s, te).item() == pytest.approx(pa(s.flatten(2), te.flatten(2)).item(), rel=1e-6)


# --- channel-wise -----------------------------------------------------------------------


def test_channel_wise_matches_hand_computation():
    temp = 4.0
    fs = np.array([[[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], [[4.0, 0.0, 1.0], [2.0, 2.0, 0.0]]])  # (B=2, C=2, L=3)
    ft = np.array([[[2.0, 1.0, 0.0], [1.0, 0.5, 2.5]], [[0.0, 3.0, 1.0], [-2.0, 1.0, 5.0]]])
    total = 0.0
    for b in range(2):
        for c in range(2):
            p, q = softmax(ft[b, c] / temp), softmax(fs[b, c] / temp)
            total += (p * np.log(p / q)).sum()
    expected = temp**2 * total / (2 * 2)
    assert ChannelWiseLoss(temperature=temp)(t(fs), t(ft)).item() == pytest.approx(expected, rel=1e-5)


def test_channel_wise_invariant_to_per_channel_constant():
    cw = ChannelWiseLoss()
    s, te = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    shift = torch.tensor([5.0, -2.0, 0.5]).view(1, 3, 1, 1)
    assert cw(s + shift, te).item() == pytest.approx(cw(s, te).item(), rel=1e-5)
    assert cw(s, te - shift).item() == pytest.approx(cw(s, te).item(), rel=1e-5)


def test_channel_wise_needs_matching_channels():
    with pytest.raises(DistillError, match=r"\(2, 3, 4\).*\(2, 5, 4\).*projector"):
        ChannelWiseLoss()(torch.zeros(2, 3, 4), torch.zeros(2, 5, 4))
    with pytest.raises(ConfigError, match="temperature"):
        ChannelWiseLoss(temperature=0.0)


# --- shared behaviour -------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_zero_when_student_equals_teacher(name):
    feature = torch.randn(4, 3, 3, 2)
    assert LOSSES.build(name)(feature, feature.clone()).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("name", ["nst", "pairwise_affinity"])
def test_channel_counts_may_differ(name):
    loss = LOSSES.build(name)(torch.randn(2, 3, 4, 4), torch.randn(2, 7, 4, 4))
    assert torch.isfinite(loss) and loss.item() > 0


@pytest.mark.parametrize("name", RELATION)
def test_relation_losses_accept_different_feature_shapes(name):
    loss = LOSSES.build(name)(torch.randn(4, 3, 2, 2), torch.randn(4, 10))
    assert torch.isfinite(loss) and loss.item() > 0


@pytest.mark.parametrize("name", DENSE)
def test_spatial_mismatch_names_both_shapes(name):
    with pytest.raises(DistillError, match=r"\(2, 3, 4, 4\).*\(2, 3, 8, 8\)"):
        LOSSES.build(name)(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 8, 8))


@pytest.mark.parametrize("name", NAMES)
def test_batch_mismatch_names_both_shapes(name):
    with pytest.raises(DistillError, match=r"\(2, 3, 4\).*\(5, 3, 4\)"):
        LOSSES.build(name)(torch.zeros(2, 3, 4), torch.zeros(5, 3, 4))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_computed_in_float32(name, dtype):
    s, te = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    loss = LOSSES.build(name)
    low = loss(s.to(dtype), te.to(dtype))
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(loss(s.to(dtype).float(), te.to(dtype).float()).item(), rel=1e-6)


def test_crd_contrastive_by_hand_and_bank():
    import torch.nn.functional as F

    from distill.losses.crd import CRDLoss

    torch.manual_seed(0)
    loss = CRDLoss(dim=4, temperature=0.5, bank_size=3)
    s, t = torch.randn(2, 5), torch.randn(2, 6)
    value = loss(s, t)  # materialises the lazy heads; training mode pushes to the banks
    z_s = F.normalize(loss.embed_student(s), dim=1)
    z_t = F.normalize(loss.embed_teacher(t), dim=1)
    bank_t, bank_s = loss.teacher_bank.bank.clone(), loss.student_bank.bank.clone()
    assert torch.allclose(bank_t[:2], z_t) and int(loss.teacher_bank.head) == 2
    loss.eval()  # no push: the banks now hold the embeddings seen above
    again = loss(s, t)
    by_hand = 0.0
    for anchor, positive, bank in ((z_s, z_t, bank_t), (z_t, z_s, bank_s)):
        for i in range(2):
            logits = torch.cat([anchor[i] @ positive.T, anchor[i] @ bank.T]) / 0.5
            by_hand += -(logits[i] - torch.logsumexp(logits, 0)) / 2
    assert torch.allclose(again, by_hand, atol=1e-5)
    assert torch.isfinite(value)


def test_crd_heads_exist_before_the_optimizer():
    from distill import Distiller

    student = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    teacher = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    distiller = Distiller(student, teacher, {("1", "1"): "crd"}, example_input=torch.randn(5, 4))
    heads = distiller.pairs[0].loss
    assert heads.embed_student.weight.shape == (128, 8) and heads.embed_teacher.weight.shape == (128, 16)
    assert int(heads.teacher_bank.head) == 0  # the dummy pass did not fill the bank


def test_hierarchical_context_loss_by_hand():
    from distill.losses.review import hierarchical_context_loss

    s = torch.zeros(1, 1, 4, 4)
    t = torch.zeros(1, 1, 4, 4)
    t[0, 0, :2, :2] = 4.0  # one quadrant lit
    full = (16 * 4) / 16  # MSE at 4x4: four cells of 16 out of 16 cells
    two = 4.0  # 2x2 pooled: one cell of value 4 (mean 4) -> 16 / 4 cells
    one = 1.0  # 1x1 pooled: mean 1 -> 1
    # level 4 is skipped (not coarser than the 4x4 map); weights 1, 1/2, 1/4, normalised by 1.75
    assert hierarchical_context_loss(s, t).item() == pytest.approx((full + two / 2 + one / 4) / 1.75)


def test_reviewkd_fuses_levels_through_the_distiller():
    from distill import Distiller
    from distill.models import build_model

    torch.manual_seed(0)
    student = build_model("convnet", (1, 40), 10, channels=[4, 4, 4])
    teacher = build_model("convnet", (1, 40), 10, channels=[16, 16, 16])
    taps = ("conv1", "conv2", "conv3")
    x = torch.randn(8, 1, 40)
    distiller = Distiller(student, teacher, {(taps, taps): "reviewkd"}, example_input=x)
    fusions = distiller.pairs[0].loss.fusions
    assert len(fusions) == 3 and fusions[0].attention is not None and fusions[2].attention is None
    opt = torch.optim.Adam(distiller.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        distiller(x)
        loss = distiller.compute_losses()["total"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_multi_level_taps_only_for_multi_level_losses():
    from distill import Distiller
    from distill.errors import DistillError
    from distill.models import build_model

    student = build_model("convnet", (1, 40), 10, channels=[4, 4, 4])
    teacher = build_model("convnet", (1, 40), 10)
    with pytest.raises(DistillError, match="multi-level"):
        Distiller(student, teacher, {(("conv1", "conv2"), ("conv1", "conv2")): "fitnet"})
    with pytest.raises(DistillError, match="multi-level"):
        Distiller(student, teacher, {("conv1", "conv1"): "reviewkd"})
