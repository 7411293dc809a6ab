"""The LM head and the token loss a chunk of positions at a time, so a step never holds a batch's logits.

A batch's full-vocabulary logits are most of a language step's memory (8 × 512 × 49,152 float32 is
805 MB, and the loss keeps as much again for backward). With ``chunk_tokens = n`` the objective runs
the models without their LM heads (:data:`HIDDEN_CALL`) and :class:`FusedHeadLoss` takes the kept
positions ``n`` at a time: it applies the student's head (and the live teacher's, without autograd),
computes the chunk's share of the loss and, in the same pass, its gradients with respect to the chunk's
hidden states, the head's parameters (a head tied to the input embedding included) and the loss's own
parameters; the chunk's logits are then freed. Backward only scales the gradients gathered in forward,
so each head runs once per chunk and step, and one chunk's logits live at a time. The chunks' shares add
up to the loss of the whole batch — divergences over all kept positions of the batch, cross-entropies over
all labelled ones — never a mean of chunk means. This is the scheme of Liger-Kernel's fused linear
losses (``LigerFusedLinearJSDFunction``, linkedin/Liger-Kernel; TRL's chunked JSD saves the logits'
memory the same way); here it covers every token loss, dense teacher logits, the live teacher's head and
the top-k cache, with PyTorch's autograd inside each chunk instead of hand-written kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from distill.errors import ConfigError
from distill.losses import IGNORE_INDEX, TokenDistillLoss, TopKTargets
from distill.losses.functional import cross_entropy_sum

#: keywords of a Hugging Face causal LM call that also return its hidden states, and logits of one position only
HIDDEN_CALL = {"output_hidden_states": True, "logits_to_keep": 1}


@dataclass(frozen=True)
class HeadInput:
    """Logits not computed yet: a model's LM ``head`` and the final ``hidden`` states it maps, ``(..., H)``."""

    hidden: Tensor
    head: nn.Module

    def logits(self, rows: Tensor) -> Tensor:
        """The logits of the flattened positions ``rows``."""
        return self.head(self.hidden.reshape(-1, self.hidden.shape[-1]).index_select(0, rows))


def final_hidden(model: nn.Module, ids: Tensor) -> Tensor:
    """The final (normalised) hidden states of a Hugging Face causal LM: its base model's last hidden state.
    Without autograd (a live teacher) this keeps no other layer's states, as ``output_hidden_states`` would."""
    return model.base_model(input_ids=ids).last_hidden_state


def output_head(model: nn.Module, role: str) -> nn.Module:
    """``model``'s LM head, checked once to be all that turns its final hidden state — its base model's last
    hidden state, the last of its ``hidden_states`` — into its logits: a model that scales or soft-caps its
    logits after the head (Gemma 2, Cohere) would otherwise be distilled on other logits."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise ConfigError(f"method.chunk_tokens needs the {role}'s LM head (get_output_embeddings()), and "
                          f"{type(model).__name__} has none; set method.chunk_tokens: 0.")
    ids = torch.tensor([[1, 2]], device=next(model.parameters()).device)  # not 0, often the padding id (zero embedding)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True)
            same = all(torch.allclose(head(hidden), out.logits, rtol=1e-4, atol=1e-5)
                       for hidden in (out.hidden_states[-1], final_hidden(model, ids)))
    except (AttributeError, TypeError) as error:
        raise ConfigError(f"method.chunk_tokens needs the {role}'s final hidden states, which {type(model).__name__} "
                          f"does not give as a Hugging Face causal LM does ({error}); set method.chunk_tokens: 0.") from None
    finally:
        model.train(was_training)
    if not same:
        raise ConfigError(f"the {role} ({type(model).__name__}) changes its logits after its LM head (e.g. scaling or "
                          "soft-capping them), which the chunked head would skip; set method.chunk_tokens: 0.")
    return head


def _teacher_rows(teacher: HeadInput | Tensor | TopKTargets, rows: Tensor) -> Tensor | TopKTargets:
    """The teacher's targets at the flattened positions ``rows``; a live teacher's head runs here, without autograd."""
    if isinstance(teacher, HeadInput):
        with torch.no_grad():
            return teacher.logits(rows)
    if isinstance(teacher, TopKTargets):
        return TopKTargets(teacher.indices.reshape(-1, teacher.k).index_select(0, rows),
                           teacher.logprobs.reshape(-1, teacher.k).index_select(0, rows), teacher.temperature)
    return teacher.reshape(-1, teacher.shape[-1]).index_select(0, rows)


class FusedHeadLoss(torch.autograd.Function):
    """``share(head(hidden[s:s + n]), s)`` summed over chunks of ``n = chunk_tokens`` rows of ``hidden (N, H)``, with
    the gradients of every chunk taken in forward; ``parameters`` are the head's and the loss's that train.

    Liger-Kernel's fused linear losses do the same (``LigerFusedLinearJSDFunction``, linkedin/Liger-Kernel): the
    gradients with respect to ``hidden`` and ``parameters`` are kept for backward — ``(N, H)`` and the
    parameters' shapes, nothing positions × vocabulary — and backward scales them by the output's gradient.
    Gradients of the parameters add up over chunks in float32.
    """

    @staticmethod
    def forward(ctx, share: Callable[[Tensor, int], Tensor], head: nn.Module, chunk_tokens: int, hidden: Tensor,
                *parameters: Tensor) -> Tensor:
        inputs = (hidden, *parameters)
        wanted = [tensor.requires_grad for tensor in inputs]
        grads = [torch.zeros(tensor.shape, dtype=torch.float32, device=tensor.device) if need else None
                 for tensor, need in zip(inputs, wanted)]
        total = torch.zeros((), device=hidden.device)
        for start in range(0, max(len(hidden), 1), chunk_tokens):  # one (empty) chunk when nothing is kept
            end = start + chunk_tokens
            with torch.enable_grad():
                rows = hidden[start:end].detach().requires_grad_(hidden.requires_grad)
                # the head gets a view, not the leaf: hooks on a module's inputs (torch's module tracker, as in
                # FlopCounterMode) cannot watch a leaf while autograd.grad runs
                value = share(head(rows.view_as(rows)), start)
                leaves = [leaf for leaf, need in zip((rows, *parameters), wanted) if need]
                chunk_grads = iter(torch.autograd.grad(value, leaves, allow_unused=True, materialize_grads=True)
                                   if leaves else ())
            total = total + value.detach()
            if wanted[0]:
                grads[0][start:end] = next(chunk_grads)
            for grad, need in zip(grads[1:], wanted[1:]):
                if need:
                    grad += next(chunk_grads)
        ctx.save_for_backward(*(grad if grad is None else grad.to(tensor.dtype) for grad, tensor in zip(grads, inputs)))
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        return None, None, None, *(grad if grad is None else grad * grad_output for grad in ctx.saved_tensors)


def chunked_loss(student: HeadInput, teacher: HeadInput | Tensor | TopKTargets | None, target: Tensor | None,
                 mask: Tensor, loss: TokenDistillLoss | None, chunk_tokens: int) -> Tensor:
    """``loss(student logits, teacher, target, mask=mask)`` (next-token cross-entropy on ``target`` when
    ``loss`` is None), the head and the loss applied ``chunk_tokens`` kept positions at a time.

    ``target`` holds labels (IGNORE_INDEX where unlabelled) or None; only the positions ``mask`` keeps are
    computed at all. Equal to the unchunked loss up to the order of float32 sums.
    """
    rows = mask.reshape(-1).nonzero().squeeze(1)
    if target is not None:
        target = target.reshape(-1).index_select(0, rows)
    positions = rows.numel()
    cross_entropy = loss is None or (target is not None and loss.ce_weight > 0)
    labelled = int((target != IGNORE_INDEX).sum()) if cross_entropy else None

    def share(logits: Tensor, start: int) -> Tensor:
        labels = None if target is None else target[start:start + chunk_tokens]
        if loss is None:
            return cross_entropy_sum(logits, labels) / max(labelled, 1)
        return loss.share(logits, _teacher_rows(teacher, rows[start:start + chunk_tokens]), labels, mask=None,
                          positions=positions, labelled=labelled)

    hidden = student.hidden.reshape(-1, student.hidden.shape[-1]).index_select(0, rows)
    if not torch.is_grad_enabled():
        return sum(share(student.head(hidden[start:start + chunk_tokens]), start)
                   for start in range(0, max(positions, 1), chunk_tokens))
    trained = [p for p in (*student.head.parameters(), *(loss.parameters() if loss is not None else ())) if p.requires_grad]
    return FusedHeadLoss.apply(share, student.head, chunk_tokens, hidden, *trained)
