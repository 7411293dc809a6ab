"""The training objective of the ``language`` family: one student, a token loss, and where its targets come from.

Off-policy batches are blocks of real text whose teacher targets come from the top-k
cache or the live teacher. On-policy batches (GKD, Agarwal et al., ICLR 2024) keep a
block's first ``prompt_tokens`` tokens, let the student sample the rest, and score the
sampled continuation with the live teacher; only the sampled positions count. With no
loss the objective is next-token cross-entropy (the from-scratch baseline, and
sequence-level KD on sampled teacher continuations, after Kim & Rush 2016). Hidden-state and
self-attention-relation terms (``methods.internals``) are the pairs of a :class:`~distill.distiller.Distiller`
over student and live teacher; its one teacher pass also gives the token loss its targets. With
``chunk_tokens`` the LM heads and the loss run a chunk of positions at a time (:mod:`.chunked`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distill.distiller import Distiller
from distill.errors import ConfigError, check_int
from distill.losses import IGNORE_INDEX, DistillLoss, TopKTargets, masked_cross_entropy
from distill.signals import LiveSignal, TeacherSignal
from distill.tasks.language.chunked import HIDDEN_CALL, HeadInput, chunked_loss, final_hidden, output_head
from distill.tasks.language.methods.internals import InternalMatching


def next_token_labels(ids: Tensor, mask: Tensor) -> Tensor:
    """Labels for next-token prediction: ``ids`` shifted left, IGNORE_INDEX where ``mask`` is false and at the end."""
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, :-1] = ids[:, 1:]
    return labels.masked_fill(~mask, IGNORE_INDEX)


def prediction_mask(ids: Tensor, first: int = 0) -> Tensor:
    """Positions whose next token is trained on: ``first`` up to the second-to-last position."""
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, first:-1] = True
    return mask


@torch.no_grad()
def sample_continuations(model: nn.Module, prompt: Tensor, length: int) -> Tensor:
    """``prompt`` continued by ``model``'s own samples (temperature 1, no top-k / top-p cut) until its EOS or
    ``length`` tokens, and padded with EOS to ``length``; :func:`continuation_mask` says what was sampled."""
    eos = model.config.eos_token_id
    out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=0,
                         top_p=1.0, temperature=1.0, max_new_tokens=length - prompt.shape[1], pad_token_id=eos)
    return torch.nn.functional.pad(out, (0, length - out.shape[1]), value=eos)


def continuation_mask(ids: Tensor, prompt_tokens: int, eos: int | list[int] | None) -> Tensor:
    """Positions that predict a sampled token: from the prompt's last token to the first EOS sampled
    (predicting it included), nothing after it (padding)."""
    mask = prediction_mask(ids, prompt_tokens - 1)
    if eos is None:
        return mask
    ended = torch.isin(ids, torch.tensor(eos, device=ids.device).flatten())
    ended[:, :prompt_tokens] = False
    return mask & ~(ended.cumsum(dim=1) > 0)  # the first EOS sampled and the padding after it predict nothing


def live_signal(teacher: nn.Module) -> LiveSignal:
    """The live causal LM as a signal: its full logits for a batch's ``input_ids``."""
    return LiveSignal(teacher, inputs={"input_ids": "input_ids"}, output="logits")


class LanguageObjective(nn.Module):
    """``forward(batch) -> {"loss", ...}`` for ``distill.engine.train`` on ``{"input_ids", "row"[, "loss_mask"]}``;
    ``chunk_tokens > 0`` computes the LM heads and the loss that many positions at a time (0: all at once)."""

    def __init__(self, student: nn.Module, loss: DistillLoss | None = None, signal: TeacherSignal | None = None,
                 teacher: nn.Module | None = None, on_policy: float = 0.0, prompt_tokens: int = 32,
                 total_steps: int = 1, internals: InternalMatching | None = None, chunk_tokens: int = 0) -> None:
        super().__init__()
        if internals is not None and teacher is None:
            raise ConfigError("hidden-state and relation terms need the live teacher: pass teacher=")
        self.chunk_tokens = check_int("chunk_tokens (positions per chunk of the LM head; 0: off)", chunk_tokens, least=0)
        self.model = student
        self.loss = loss
        self.signal = signal
        self.teacher = teacher  # frozen; the engine leaves ``teacher.*`` out of checkpoints
        self.live = live_signal(teacher) if teacher is not None else None  # scores on-policy samples
        self.distiller = Distiller(student, teacher, internals.pairs()) if internals is not None else None
        self.on_policy, self.prompt_tokens, self.total_steps = on_policy, prompt_tokens, total_steps
        self._last = None
        self._heads = {}  # the models' checked LM heads, for the chunked loss (a dict: not submodules twice)
        if self.chunk_tokens:
            self._heads["student"] = output_head(student, "student")
            if self._live_teacher() is not None:
                self._heads["teacher"] = output_head(self._live_teacher(), "teacher")

    def _rollout(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """The block's prompt continued by the student's own samples, and the mask of the sampled positions."""
        was_training = self.model.training
        self.model.eval()
        sampled = sample_continuations(self.model, ids[:, : self.prompt_tokens], ids.shape[1])
        self.model.train(was_training)
        return sampled, continuation_mask(sampled, self.prompt_tokens, self.model.config.eos_token_id)

    def train(self, mode: bool = True) -> LanguageObjective:
        """Set the student (and the loss's state) to ``mode``; the frozen teacher always stays in eval mode,
        so its targets never see dropout."""
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        ids = batch["input_ids"]
        mask = batch["loss_mask"] if "loss_mask" in batch else prediction_mask(ids)
        on_policy = self.on_policy > 0 and bool(torch.rand(()) < self.on_policy)
        if on_policy:
            ids, mask = self._rollout(ids)
        call = HIDDEN_CALL if self.chunk_tokens else {}
        if self.distiller is not None:  # runs the teacher too, for the internal terms
            student_out = self.distiller(input_ids=ids, **call)
        else:
            student_out = self.model(input_ids=ids, **call)
        labels = next_token_labels(ids, mask)
        # sampled continuations carry no ground truth: their cross-entropy term would train on the student's own draws
        target = labels if self.loss is None or not on_policy else None
        targets = None if self.loss is None else self._targets(batch, ids, on_policy)
        if self.chunk_tokens:
            student = HeadInput(student_out.hidden_states[-1], self._heads["student"])
            value = chunked_loss(student, targets, target, mask, self.loss, self.chunk_tokens)
        elif self.loss is None:
            value = masked_cross_entropy(student_out.logits, labels)
        else:
            value = self.loss(student_out.logits, targets, target=target, mask=mask)
        self._last = value.detach()  # TAID adapts to its own loss, not to the internal terms
        logged = {}
        if self.distiller is not None:
            terms = self.distiller.compute_losses(mask=mask)
            value = value + terms.pop("total")
            logged = {name: term.detach() for name, term in terms.items()}
        return {"loss": value, "on_policy": torch.tensor(float(on_policy)), **logged}

    def _live_teacher(self) -> nn.Module | None:
        """The live teacher: the one given, or a live signal's."""
        return self.signal.teacher if self.teacher is None and isinstance(self.signal, LiveSignal) else self.teacher

    def _targets(self, batch: dict[str, Tensor], ids: Tensor, on_policy: bool) -> Tensor | TopKTargets | HeadInput:
        """The teacher's targets: the Distiller's teacher pass, the live teacher on sampled ids, or the signal;
        chunked, a live teacher's final hidden states and head instead of its logits."""
        if not self.chunk_tokens:
            if self.distiller is not None:
                return self.distiller.teacher_output.logits
            return self.live.for_batch({"input_ids": ids}) if on_policy else self.signal.for_batch(batch)
        if self.distiller is not None:
            hidden = self.distiller.teacher_output.hidden_states[-1]
        elif on_policy or isinstance(self.signal, LiveSignal):
            with torch.no_grad():
                hidden = final_hidden(self._live_teacher(), ids)
        else:
            return self.signal.for_batch(batch)
        return HeadInput(hidden, self._heads["teacher"])

    def after_optimizer_step(self, step: int) -> None:
        """TAID moves its interpolation towards the teacher once per optimizer step (Shing et al., ICLR 2025)."""
        update = getattr(self.loss, "update", None)
        if update is not None and self._last is not None:
            update(float(self._last), min(1.0, step / max(1, self.total_steps)))
