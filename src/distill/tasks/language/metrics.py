"""The language family's evaluation: a model's held-out perplexity and bits per character, agreement with
the teacher and KL to it on the teacher's top-k cache, and greedy samples for the report."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from distill.losses import IGNORE_INDEX
from distill.losses.sparse import binned_log_probs
from distill.losses.token import kl_divergence
from distill.metrics.classification import hits
from distill.signals import TopKCache
from distill.tasks.language.objectives import next_token_labels, prediction_mask


@torch.no_grad()
def evaluate_model(model: nn.Module, blocks: Tensor, cache: TopKCache | None = None, characters: Tensor | None = None,
                   lengths: Tensor | None = None, batch_size: int = 16) -> dict[str, float]:
    """Held-out perplexity (per token of the model's own tokenizer); with ``characters`` (per block, the
    characters its predictions cover) bits per character, which compares models whose tokenizers differ;
    with the teacher's ``cache`` (same tokenizer) top-1 agreement with the teacher and KL(teacher ‖ student)
    on the cache's top-k + tail bins (a lower bound of the full KL, data-processing inequality). ``lengths``
    (per block, its real tokens) leaves padding after them out."""
    model.eval()
    nll = kl = agree = count = 0.0
    for start in range(0, len(blocks), batch_size):
        ids = blocks[start:start + batch_size]
        logits = model(input_ids=ids).logits.float()
        mask = prediction_mask(ids)
        if lengths is not None:
            mask &= torch.arange(ids.shape[1]) < (lengths[start:start + len(ids)] - 1).unsqueeze(1)
        labels = next_token_labels(ids, mask)
        nll += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum",
                                                       ignore_index=IGNORE_INDEX))
        count += float(mask.sum())
        if cache is not None:
            targets = cache.targets(torch.arange(start, start + len(ids)))
            log_q, log_p = binned_log_probs(logits, targets, targets.temperature)
            kl += float((kl_divergence(log_p, log_q) * mask).sum())
            agree += float(hits(logits, targets.indices[..., 0].masked_fill(~mask, IGNORE_INDEX))[0])
    scores = {"perplexity": math.exp(nll / count)}
    if characters is not None:
        scores["bits_per_char"] = nll / math.log(2) / float(characters.sum())
    if cache is not None:
        scores.update(agreement=agree / count, kl=kl / count)
    return scores


@torch.no_grad()
def samples(model: nn.Module, tokenizer, prompts: list[str], tokens: int) -> list[str]:
    """Greedy continuations of ``prompts`` (the prompt included)."""
    model.eval()
    out = []
    for prompt in prompts:
        ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        generated = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                   max_new_tokens=tokens, pad_token_id=tokenizer.eos_token_id)
        out.append(tokenizer.decode(generated[0], skip_special_tokens=True))
    return out
