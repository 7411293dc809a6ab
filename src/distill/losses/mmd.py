"""Maximum mean discrepancy: align the distribution of student features with the teacher's."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from distill.errors import ConfigError, check_positive
from distill.losses.base import LOSSES, DistillLoss
from distill.losses.functional import check_pair


@LOSSES.register("mmd")
class MMDLoss(DistillLoss):
    """Squared MMD (Gretton et al., JMLR 2012, "A Kernel Two-Sample Test") between feature batches.

    The biased (V-statistic) estimate ``mean K(s, s') + mean K(t, t') − 2 mean K(s, t)``
    over all pairs of the flattened student rows ``s`` and teacher rows ``t``, diagonal
    terms included, with the multi-kernel ``K(a, b) = Σ_σ exp(−‖a − b‖² / (2σ²))``.
    Each ``σ`` is a multiple in ``bandwidths`` of the median pairwise distance among all
    ``2B`` pooled rows (the lower median, as ``torch.median``; detached, so no gradient
    flows through the bandwidth); ``absolute=True`` uses ``bandwidths`` as the ``σ``
    values themselves. MMD as a feature-alignment loss between domains follows Long et
    al., ICML 2015, "Learning Transferable Features with Deep Adaptation Networks".
    """

    requires = "same_shape"

    def __init__(
        self, bandwidths: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0), absolute: bool = False
    ) -> None:
        super().__init__()
        self.bandwidths = tuple(check_positive("bandwidths", b) for b in bandwidths)
        if not self.bandwidths:
            raise ConfigError("bandwidths must hold at least one value, e.g. (1.0,).")
        self.absolute = absolute

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_pair("mmd", student, teacher, self.requires, min_dim=2)
        batch = student.shape[0]
        pooled = torch.cat([student.float().flatten(1), teacher.float().flatten(1)])
        pooled = pooled - pooled.mean(0)  # same distances, less cancellation in the expansion below
        squared = pooled.pow(2).sum(1)
        dist2 = (squared[:, None] + squared[None, :] - 2 * pooled @ pooled.T).clamp(min=0)
        scale = 1.0
        if not self.absolute:
            pairs = torch.triu_indices(2 * batch, 2 * batch, offset=1, device=pooled.device)
            median = dist2.detach()[pairs[0], pairs[1]].median().sqrt()
            scale = median.clamp(min=torch.finfo(torch.float32).eps)
        kernel = sum(torch.exp(-dist2 / (2 * (b * scale) ** 2)) for b in self.bandwidths)
        k_ss, k_tt, k_st = kernel[:batch, :batch], kernel[batch:, batch:], kernel[:batch, batch:]
        return k_ss.mean() + k_tt.mean() - 2 * k_st.mean()
