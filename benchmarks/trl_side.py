"""TRL's side of ``benchmarks/vs_trl.py``: its GKD trainer on the job the driver wrote, one step per ``go``.

Run by the driver with TRL's own interpreter (a virtual environment holding trl==1.16.0,
transformers==5.25.0, accelerate==1.16.0 and torch 2.13.0; see ``vs_trl.py``), never the project's;
it imports nothing of distill. ``python trl_side.py JOB.json`` reads the job: ``teacher`` and
``student`` (Hugging Face folders written by ``save_pretrained``; the student is the initial weights),
``data`` (a safetensors file whose ``input_ids`` are the training blocks in the order they are
consumed), ``steps``, ``batch_size``, ``lr``, ``schedule``, ``max_grad_norm``, ``seed``, ``beta``,
``lmbda``, ``prompt_tokens`` (with ``lmbda > 0``: a block's first tokens are the prompt the student
continues, and the loss skips them on every batch; 0: the loss covers every next-token position),
``threads`` and ``out`` (the folder the trained student is saved to).

Every ``GKDConfig`` field that changes the job is set here explicitly: it inherits ``bf16=True``,
``gradient_checkpointing=True``, ``optim="adamw_torch_fused"`` and a linear schedule from
``SFTConfig``, and defaults to ``lmbda=0.5``, ``temperature=0.9``. TRL's ``temperature`` is only the
sampling temperature (its loss is always at T = 1), so it is 1, as distill samples.

Protocol (JSON lines on the original stdout; everything else the libraries print goes to stderr):
``{"event": "ready", ...}`` once loaded, then for each line read on stdin one optimizer step and
``{"event": "step", "step", "loss", "seconds", "on_policy"}`` — ``seconds`` from the trainer's
``on_step_begin`` to its ``on_step_end`` (the forward and backward passes, any generation, clipping,
the optimizer and schedule steps; not the data loading, which both libraries do before); finally
``{"event": "done", "train_peak_kib", "max_rss_kib"}`` after the student is saved (the peak resident memory
since training started, ``VmHWM`` reset then, and over the process's life).
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import time
from pathlib import Path


def resident_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in KiB."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the trainer's own prints (PrinterCallback, warnings) must not reach the protocol
    sys.stdout = sys.stderr

    def say(**message) -> None:
        protocol.write(json.dumps(message) + "\n")

    import torch

    torch.set_num_threads(job["threads"])
    from datasets import Dataset
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    ids = load_file(job["data"])["input_ids"]
    length, prompt = ids.shape[1], job["prompt_tokens"]

    def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = torch.tensor([row["input_ids"] for row in rows])
        labels = batch.clone()
        labels[:, :prompt] = -100  # prompt tokens are not trained on (none when prompt_tokens is 0)
        prompts = batch[:, :max(prompt, 1)]
        return {"input_ids": batch, "attention_mask": torch.ones_like(batch), "labels": labels,
                "prompts": prompts, "prompt_attention_mask": torch.ones_like(prompts)}

    class Paced(TrainerCallback):
        """Waits for the driver's ``go`` before each step and reports the step's time and loss."""

        def __init__(self) -> None:
            self.started = self.seconds = 0.0
            self.draws = random.getstate()

        def on_step_begin(self, args, state, control, **kwargs):
            if not sys.stdin.readline():
                raise SystemExit("the driver closed the pipe")
            self.draws = random.getstate()  # GKD draws random.random() <= lmbda first thing in its step
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.started

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                draw = random.Random()
                draw.setstate(self.draws)
                say(event="step", step=state.global_step, loss=logs["loss"], seconds=self.seconds,
                    on_policy=bool(job["lmbda"] > 0 and draw.random() <= job["lmbda"]))

    teacher = AutoModelForCausalLM.from_pretrained(job["teacher"], dtype=torch.float32, local_files_only=True)
    student = AutoModelForCausalLM.from_pretrained(job["student"], dtype=torch.float32, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(job["teacher"], local_files_only=True)
    config = GKDConfig(
        output_dir=str(Path(job["out"]) / "trainer"), per_device_train_batch_size=job["batch_size"],
        gradient_accumulation_steps=1, max_steps=job["steps"], learning_rate=job["lr"],
        lr_scheduler_type=job["schedule"], warmup_steps=0, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999,
        adam_epsilon=1e-8, max_grad_norm=job["max_grad_norm"], optim="adamw_torch", bf16=False, fp16=False,
        gradient_checkpointing=False, use_cpu=True, seed=job["seed"], train_sampling_strategy="sequential",
        dataloader_drop_last=True, dataloader_num_workers=0, logging_steps=1, save_strategy="no", eval_strategy="no",
        report_to=[], disable_tqdm=True, max_length=length, packing=False, padding_free=False, use_liger_kernel=False,
        lmbda=job["lmbda"], beta=job["beta"], temperature=1.0, max_new_tokens=length - prompt, seq_kd=False,
        disable_dropout=True)
    data = Dataset.from_dict({"input_ids": ids.tolist()})
    trainer = GKDTrainer(model=student, teacher_model=teacher, args=config, data_collator=collate, train_dataset=data,
                         processing_class=tokenizer, callbacks=[Paced()])
    say(event="ready", rss_kib=resident_kib("VmRSS"), trl=__import__("trl").__version__, torch=torch.__version__,
        threads=torch.get_num_threads())
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on: the training's peak
    trainer.train()
    trainer.accelerator.unwrap_model(trainer.model).save_pretrained(job["out"], safe_serialization=True)
    say(event="done", train_peak_kib=resident_kib("VmHWM"), max_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


if __name__ == "__main__":
    main()
