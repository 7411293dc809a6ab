"""Language-model recipes (``task: language``): a teacher, a student, text, a loss, teacher signals."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from distill.engine.config import StrictModel, TrainConfig
from distill.errors import ConfigError
from distill.experiment.recipe import check_registered

#: the temperature of the teacher's log-probabilities in the top-k caches (``run.teacher_cache``)
TOPK_TEMPERATURE = 1.0


class TeacherSpec(StrictModel):
    """``source``: ``smollm2`` (the packaged SmolLM2-135M-Instruct), a ``.gguf`` file or a local model folder."""

    source: str = "smollm2"


class PruneSpec(StrictModel):
    """A student cut from the teacher (:mod:`distill.tasks.language.methods.prune`): ``layers`` decoder layers
    chosen by ``method`` (``distill list language-pruners``), ``intermediate`` MLP channels and ``heads`` query
    heads per layer ranked by activation (Minitron); None keeps all. Importance is measured on the first
    ``tokens`` training tokens."""

    layers: PositiveInt | None = None
    method: str = "block_influence"
    intermediate: PositiveInt | None = None
    heads: PositiveInt | None = None
    tokens: PositiveInt = 4096

    @model_validator(mode="after")
    def _known(self) -> PruneSpec:
        from distill.tasks.language.methods.prune import PRUNERS

        if self.method not in PRUNERS.names():
            raise ValueError(f"student.prune.method {self.method!r} is unknown; use one of {PRUNERS.names()}")
        return self


class TokenizerTraining(StrictModel):
    """A byte-level BPE of ``vocab_size`` tokens trained on the training text."""

    vocab_size: PositiveInt = 8000


class TokenizerSpec(StrictModel):
    """The student's own tokenizer: ``train`` one on the training text, or a ``file`` (a ``tokenizer.json``, or a
    folder written by ``save_pretrained``) with ``eos`` its end-of-text token where the file names none."""

    train: TokenizerTraining | None = None
    file: str | None = None
    eos: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TokenizerSpec:
        from distill.tasks.language.own_tokenizer import SMALLEST_VOCABULARY, load_tokenizer_file

        if (self.train is None) == (self.file is None):
            raise ValueError("student.tokenizer: give train (e.g. {train: {vocab_size: 8000}}) or file (a tokenizer.json "
                             "or a tokenizer folder), one of them")
        if self.train is not None:
            if self.eos is not None:
                raise ValueError("student.tokenizer.eos names the end-of-text token of a file; a trained tokenizer has its own")
            if self.train.vocab_size < SMALLEST_VOCABULARY:
                raise ValueError(f"student.tokenizer.train.vocab_size must be at least {SMALLEST_VOCABULARY} (256 bytes, "
                                 f"end-of-text and one merge), got {self.train.vocab_size}")
        else:
            try:  # here, not after the teacher has loaded: a tokenizer file reads in milliseconds
                load_tokenizer_file(self.file, self.eos)
            except ConfigError as err:
                raise ValueError(str(err)) from None
        return self


class StudentSpec(StrictModel):
    """A student built from ``preset`` with the teacher's vocabulary (or with its own ``tokenizer``'s), or a local
    model ``folder`` (with its own tokenizer); ``init_layers`` copies the teacher's embeddings and those decoder
    layers (teacher width); ``prune`` cuts the student from the teacher (fewer layers, narrower MLP, fewer heads)."""

    preset: str = "tiny"
    folder: str | None = None
    init_layers: list[int] | None = None
    prune: PruneSpec | None = None
    tokenizer: TokenizerSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> StudentSpec:
        from distill.tasks.language.models import STUDENT_PRESETS

        if sum(map(bool, (self.folder, self.init_layers, self.prune))) > 1:
            raise ValueError("student: give one of folder (a model of your own), init_layers (layers of the teacher) "
                             "or prune (a cut of the teacher)")
        if self.tokenizer is not None and (self.folder or self.init_layers or self.prune):
            raise ValueError("student.tokenizer gives a new student (a preset) its own vocabulary; a folder brings its "
                             "own tokenizer, and init_layers / prune copy the teacher's embeddings, so its tokenizer")
        if not (self.folder or self.init_layers or self.prune) and self.preset not in STUDENT_PRESETS:
            raise ValueError(f"student.preset {self.preset!r} is unknown; use one of {sorted(STUDENT_PRESETS)}")
        return self


class TextSpec(StrictModel):
    """The text: ``corpus`` (``shakespeare``, ``generated``, or ``files`` with ``files`` listed), split by
    document (``heldout`` share), packed into blocks of ``block_length`` tokens; ``train_blocks`` /
    ``eval_blocks`` keep a seeded choice of that many blocks of each side (None: all)."""

    corpus: Literal["shakespeare", "generated", "files"] = "shakespeare"
    files: list[str] = Field(default_factory=list)
    heldout: float = Field(0.1, gt=0, lt=1)
    block_length: PositiveInt = 128
    train_blocks: PositiveInt | None = 256
    eval_blocks: PositiveInt | None = 32
    seed: int = 0

    @model_validator(mode="after")
    def _files_given(self) -> TextSpec:
        from distill.tasks.language.corpus import check_text_file

        if (self.corpus == "files") != bool(self.files):
            raise ValueError("data.files lists the .txt/.jsonl files exactly when data.corpus is 'files'")
        if self.block_length < 8:
            raise ValueError(f"data.block_length must be at least 8 tokens, got {self.block_length}")
        for file in self.files:  # here, not after the teacher has loaded (a minute on a first run)
            check_text_file(file)
        return self


class SignalSpec(StrictModel):
    """Where the teacher's targets come from: ``cache`` (top-``k`` log-probabilities + tail, written
    once) or ``live`` (the full distribution, a teacher forward per batch)."""

    source: Literal["cache", "live"] = "cache"
    k: PositiveInt = 32


class HiddenSpec(StrictModel):
    """Hidden-state matching: ``layers`` lists ``[student, teacher]`` indices into the models' hidden states
    (0 is the embeddings; None maps every student layer uniformly onto the teacher's, as TinyBERT)."""

    weight: float = Field(1.0, gt=0)
    layers: list[tuple[int, int]] | None = None


class RelationSpec(StrictModel):
    """MiniLMv2 self-attention relations of ``student_layer`` against ``teacher_layer`` (-1: the last), split
    into ``heads`` relation heads (must divide every q/k/v width of both models)."""

    weight: float = Field(1.0, gt=0)
    heads: PositiveInt = 4
    student_layer: int = -1
    teacher_layer: int = -1


class MethodSpec(StrictModel):
    """``loss``: a token loss (forward_kl, reverse_kl, jsd, skew_kl, skew_reverse_kl, taid), a cross-tokenizer
    loss for a student with its own tokenizer (uld, mined) or ``ce`` (no teacher); ``ce_weight`` mixes in
    next-token cross-entropy; ``on_policy``: the share λ of batches whose
    continuations the student samples itself and the live teacher scores (GKD); ``sequence_kd``: train
    with cross-entropy on teacher continuations sampled at temperature 1 up to EOS instead (after Kim & Rush
    2016, who take beam search's output); ``hidden`` and
    ``relations`` add hidden-state and MiniLM relation terms from the live teacher (any width of student);
    ``chunk_tokens``: apply the LM heads and the loss that many positions at a time, so a step never holds the
    batch's full-vocabulary logits (0: all at once; the same loss and gradients, each head run once)."""

    loss: str = "forward_kl"
    options: dict[str, Any] = Field(default_factory=dict)
    temperature: float = Field(1.0, gt=0)
    ce_weight: float = Field(0.0, ge=0)
    on_policy: float = Field(0.0, ge=0, le=1)
    prompt_tokens: PositiveInt = 32
    sequence_kd: bool = False
    generations: PositiveInt = 64
    hidden: HiddenSpec | None = None
    relations: RelationSpec | None = None
    chunk_tokens: NonNegativeInt = 0

    @property
    def internals(self) -> bool:
        """Whether hidden-state or relation terms are configured (they need the live teacher)."""
        return self.hidden is not None or self.relations is not None

    @property
    def cross_tokenizer(self) -> bool:
        """Whether the loss compares a student and a teacher with different tokenizers."""
        from distill.tasks.language.methods import CROSS_TOKENIZER_LOSSES

        return self.loss in CROSS_TOKENIZER_LOSSES

    def own_tokenizer_problem(self, own: bool) -> str | None:
        """Why this method does not fit a student with (``own``) or without its own tokenizer, or None."""
        if own and self.loss != "ce" and not self.cross_tokenizer:
            return (f"method.loss {self.loss} compares distributions over one vocabulary, and the student has its own "
                    "tokenizer; use a cross-tokenizer loss (uld, mined) or ce")
        if own and (self.on_policy or self.sequence_kd or self.internals):
            return ("on_policy, sequence_kd, hidden and relations read the teacher on the student's own tokens; they "
                    "are not implemented for a student with its own tokenizer")
        if own and self.chunk_tokens:
            return "method.chunk_tokens is not implemented for a student with its own tokenizer; set it to 0"
        if not own and self.cross_tokenizer:
            return (f"method.loss {self.loss} distils across two tokenizers, and the student shares the teacher's; "
                    "give the student its own (student.tokenizer), or use a token-level loss such as forward_kl")
        return None

    @model_validator(mode="after")
    def _loss_builds(self) -> MethodSpec:
        from distill.tasks.language.methods import CROSS_TOKENIZER_LOSSES, LANGUAGE_LOSSES, TOKEN_LOSSES

        if self.sequence_kd and self.internals:
            raise ValueError("method.sequence_kd trains on teacher generations only; hidden and relations do not apply")
        if self.loss == "ce":
            if self.on_policy or self.options or self.ce_weight:
                raise ValueError("method.loss 'ce' trains without a teacher: on_policy, options and ce_weight do not apply")
            return self
        if self.sequence_kd:
            raise ValueError("method.sequence_kd trains with cross-entropy on teacher generations; set method.loss: ce")
        if self.loss not in TOKEN_LOSSES + CROSS_TOKENIZER_LOSSES:
            raise ValueError(f"method.loss {self.loss!r} is not a token-level loss; use 'ce', one of {list(TOKEN_LOSSES)} "
                             f"or, for a student with its own tokenizer, one of {list(CROSS_TOKENIZER_LOSSES)}")
        if self.cross_tokenizer:  # the objective adds the cross-entropy on the student's own labels
            check_registered(LANGUAGE_LOSSES, self.loss, {"temperature": self.temperature, **self.options})
            return self
        check_registered(LANGUAGE_LOSSES, self.loss, {"temperature": self.temperature, "ce_weight": self.ce_weight, **self.options})
        return self


class EvalSpec(StrictModel):
    """Samples from teacher and student for the same ``prompts`` (``sample_tokens`` each, greedy)."""

    prompts: list[str] = Field(default_factory=lambda: ["HAMLET.\nTo be, or not to be,", "KING.\nMy lord,",
                                                        "ROMEO.\nBut soft, what light"])
    sample_tokens: PositiveInt = 40


class LanguageRecipe(StrictModel):
    """One language-model distillation: ``distill run recipes/language/<name>.yaml``."""

    name: str
    task: Literal["language"]
    teacher: TeacherSpec = Field(default_factory=TeacherSpec)
    student: StudentSpec = Field(default_factory=StudentSpec)
    data: TextSpec = Field(default_factory=TextSpec)
    signals: SignalSpec = Field(default_factory=SignalSpec)
    method: MethodSpec = Field(default_factory=MethodSpec)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=120, batch_size=8, lr=3e-3, warmup_steps=10,
                                                                   schedule="cosine", max_grad_norm=1.0, eval_every=20,
                                                                   log_every=10))
    evaluate: EvalSpec = Field(default_factory=EvalSpec)

    @model_validator(mode="after")
    def _consistent(self) -> LanguageRecipe:
        if self.method.prompt_tokens >= self.data.block_length and (self.method.on_policy or self.method.sequence_kd):
            raise ValueError(f"method.prompt_tokens ({self.method.prompt_tokens}) must be shorter than data.block_length "
                             f"({self.data.block_length}): the rest of each block is generated")
        own = self.student.tokenizer is not None
        if own or self.method.cross_tokenizer:
            # a student folder's tokenizer is compared with the teacher's when the run starts (it must be loaded)
            problem = self.method.own_tokenizer_problem(own or bool(self.student.folder))
            if problem:
                raise ValueError(problem)
        if self.method.cross_tokenizer and self.signals.source != "live":
            raise ValueError(f"method.loss {self.method.loss} reads the live teacher on its own tokenization of each "
                             "student block (the top-k cache holds the teacher's packing of the text); set "
                             "signals.source: live")
        cached = self.method.loss != "ce" and self.signals.source == "cache"
        if cached and self.method.loss == "taid":
            raise ValueError("method.loss taid interpolates teacher and student token by token, which the top-k cache's "
                             "k + 1 bins cannot give (interpolating the bins is another loss); set signals.source: live")
        if cached and self.method.temperature != TOPK_TEMPERATURE:
            raise ValueError(f"the top-k cache holds the teacher's log-probabilities at temperature {TOPK_TEMPERATURE}; "
                             f"method.temperature {self.method.temperature} needs signals.source: live")
        if self.method.internals and self.signals.source != "live":
            raise ValueError("method.hidden / method.relations need the teacher's hidden states, which the top-k cache does "
                             "not hold; set signals.source: live")
        live = self.signals.source == "live" or self.method.on_policy
        if self.train.teacher_placement == "shard" and self.method.chunk_tokens and live:
            raise ValueError("method.chunk_tokens applies the live teacher's LM head outside its forward pass, where a "
                             "sharded teacher's weights are not gathered (FSDP2); set method.chunk_tokens: 0 or "
                             "train.teacher_placement: replicate")
        if self.train.teacher_placement == "cache" and live:
            raise ValueError("train.teacher_placement 'cache' leaves no teacher in training, but signals.source: live and "
                             "method.on_policy run it; use signals.source: cache without on_policy, or placement "
                             "replicate / shard")
        return self
