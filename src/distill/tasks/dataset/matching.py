"""The matching objectives of gradient matching (DC/DSA) and distribution matching (DM).

* ``gradient_distance``: DC's layer-wise distance between two sets of parameter gradients.
* ``class_gradients``: the gradients of the classification loss of every class's batch at once
  (``torch.func.vmap`` over the class dimension, or a python loop over classes), differentiable
  with respect to the images when asked to.
* ``mean_embedding_distance``: DM's squared distance between per-class mean embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from distill.errors import ConfigError

#: added to the product of the norms in the cosine, as in the reference implementation
COSINE_EPS = 1e-6

#: ways ``class_gradients`` can compute the per-class gradients
GRADIENT_METHODS = ("vmap", "loop")


def gradient_distance(g_syn: Sequence[Tensor], g_real: Sequence[Tensor], stacked: bool = False) -> Tensor:
    """DC's distance between two gradients of the same parameters, summed over layers.

    For each parameter the gradient is viewed as a matrix with one row per output unit
    (a conv weight ``(out, in, kh, kw)`` as ``(out, in·kh·kw)``, a 3-D weight ``(a, b, c)`` as
    ``(a, b·c)``, a linear weight as it is), and the distance is
    ``Σ_rows (1 − ⟨s, r⟩ / (‖s‖·‖r‖ + 1e-6))``: 0 for identical gradients, 2 per row for
    opposite ones, 1 per row for orthogonal (or zero) ones.

    **One-dimensional parameters (biases, norm scales and shifts) contribute nothing**, and
    neither do scalars: the reference (``distance_wb`` of Zhao et al.) returns 0 for them, and
    so does this. So only the weights of conv and linear layers are matched.

    ``stacked=True``: every tensor has a leading class dimension ``K`` (as ``class_gradients``
    returns them) and the result is the sum of the per-class distances.
    """
    if len(g_syn) != len(g_real):
        raise ConfigError(f"gradient_distance needs one synthetic and one real gradient per parameter; got "
                          f"{len(g_syn)} and {len(g_real)}. Pass gradients of the same parameters.")
    lead = 1 if stacked else 0
    total = None
    for index, (syn, real) in enumerate(zip(g_syn, g_real)):
        if syn.shape != real.shape:
            raise ConfigError(f"gradient_distance: parameter {index} has synthetic gradient {tuple(syn.shape)} but "
                              f"real gradient {tuple(real.shape)}; pass gradients of the same parameters.")
        if syn.dim() - lead <= 1:  # bias, norm scale or shift, scalar: ignored, as the reference does
            continue
        rows = syn.shape[:lead + 1]
        syn, real = syn.reshape(*rows, -1), real.reshape(*rows, -1)
        cosine = (syn * real).sum(-1) / (syn.norm(dim=-1) * real.norm(dim=-1) + COSINE_EPS)
        layer = (1 - cosine).sum()
        total = layer if total is None else total + layer
    if total is None:
        device = g_syn[0].device if len(g_syn) else None
        return torch.zeros((), device=device)
    return total


def trainable_parameters(network: nn.Module) -> dict[str, Tensor]:
    """The network's parameters that require grad, by name (the ones gradients are taken of)."""
    return {name: p for name, p in network.named_parameters() if p.requires_grad}


def class_gradients(network: nn.Module, images: Tensor, labels: Tensor | None = None, create_graph: bool = False,
                    method: str = "vmap") -> tuple[Tensor, ...]:
    """Gradients of the mean cross-entropy of each class's batch w.r.t. the network's trainable parameters.

    ``images`` is ``(K, n, C, H, W)``: ``n`` images of each of ``K`` classes; ``labels`` is
    ``(K, n)`` (by default row ``k`` is labelled ``k``). Returns one tensor per trainable
    parameter (in ``named_parameters`` order), each ``(K, *parameter.shape)``: row ``k`` is the
    gradient of ``cross_entropy(network(images[k]), labels[k])``.

    ``create_graph=True`` keeps the gradients differentiable with respect to ``images`` (as
    ``torch.autograd.grad(..., create_graph=True)``), so a distance of them can be
    back-propagated into synthetic images; the parameters themselves are treated as
    constants (no gradient ever reaches ``network``'s parameters). ``create_graph=False``
    returns detached gradients.

    ``method``: "vmap" (``torch.func.vmap`` of ``torch.func.grad`` over the classes, one batched
    pass) or "loop" (a python loop of ``torch.autograd.grad``, one class at a time). They give
    the same numbers. The network must not mix samples of a batch (no batch norm in train mode):
    the per-class batches are what matter, and vmap keeps them separate anyway.
    """
    if method not in GRADIENT_METHODS:
        raise ConfigError(f"unknown gradient method {method!r}; valid: {', '.join(GRADIENT_METHODS)}.")
    if images.dim() < 2:
        raise ConfigError(f"class_gradients needs images (K, n, ...); got {tuple(images.shape)}.")
    classes, per_class = images.shape[:2]
    if labels is None:
        labels = torch.arange(classes, device=images.device).unsqueeze(1).expand(classes, per_class)
    elif labels.shape != (classes, per_class):
        raise ConfigError(f"class_gradients: labels must be (K, n) = {(classes, per_class)}; "
                          f"got {tuple(labels.shape)}.")
    if not create_graph:
        images = images.detach()
    params = {name: p.detach() for name, p in trainable_parameters(network).items()}
    if not params:
        raise ConfigError("class_gradients: the network has no trainable parameters; unfreeze them.")

    if method == "vmap":
        def loss(weights: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
            return F.cross_entropy(functional_call(network, weights, (x,)), y)

        grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, images, labels)
        return tuple(grads[name] for name in params)

    leaves = [p.requires_grad_() for p in params.values()]  # fresh leaves sharing the parameters' storage
    rows: list[tuple[Tensor, ...]] = []
    with torch.enable_grad():
        for k in range(classes):
            out = functional_call(network, dict(zip(params, leaves)), (images[k],))
            rows.append(torch.autograd.grad(F.cross_entropy(out, labels[k]), leaves, create_graph=create_graph))
    return tuple(torch.stack(column) for column in zip(*rows))


def mean_embedding_distance(real_embeddings: Tensor, syn_embeddings: Tensor) -> Tensor:
    """DM's loss: ``Σ_k ‖mean_n real[k] − mean_m syn[k]‖²`` for ``(K, n, D)`` real and ``(K, m, D)``
    synthetic embeddings (sum over classes and features of the squared difference of the means,
    as the reference does; no averaging)."""
    if real_embeddings.dim() != 3 or syn_embeddings.dim() != 3 or (
            real_embeddings.shape[0] != syn_embeddings.shape[0] or real_embeddings.shape[2] != syn_embeddings.shape[2]):
        raise ConfigError(f"mean_embedding_distance needs real (K, n, D) and synthetic (K, m, D) embeddings; got "
                          f"{tuple(real_embeddings.shape)} and {tuple(syn_embeddings.shape)}.")
    return (real_embeddings.mean(1) - syn_embeddings.mean(1)).pow(2).sum()
