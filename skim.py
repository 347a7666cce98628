"""Token skimming: the strategy interface, one encoder loop for every method, and Transkimmer.

Guan et al., "Transkimmer: Transformer Learns to Layer-wise Skim", ACL 2022,
https://arxiv.org/abs/2205.07324. Equations implemented here:
  Eq. (1) gather the kept tokens before each layer      -> `skim_forward`, inference (real pruning)
  Eq. (2) skim predictor MLP                             -> `SkimPredictor`
  Eq. (3) skimmed tokens forwarded to the output         -> `skim_forward`, both modes
  Eq. (4) skim attention: masked, renormalised softmax   -> `skim_forward` training (key_mask hook)
  Eq. (5) Gumbel-softmax decisions, straight-through     -> `gumbel_keep`
  Eq. (6)-(7) skim loss and total loss with λ            -> `skim_loss`, `Transkimmer.loss`
  Eq. (9) unbalanced initialisation of the last bias     -> `SkimPredictor.reset_parameters`
A skim method is one class, a `SkimStrategy`: it decides which tokens stay (`decide`), and it may
also say how it trains (`stages`, `loss`), what deciding costs (`overhead_flops`) and which
settings it takes (`Options`). The loop that masks in training, prunes at inference and forwards
skimmed tokens is shared. Other methods: `Baseline`, `ClsAttentionSkim`, `RandomSkim` (here),
TR-BERT (rl_policy.py), LTP (ltp.py). Tests: tests/test_skim.py, tests/test_strategies.py.

Pruning lays the tokens out in one of two ways, with the same numbers: packed end to end (N, C),
so no layer computes a pad (`_pruned`), or on the padded (B, T, C) grid with each sequence's
survivors moved left (`_pruned_grid`), which a GPU runs in fewer, larger calls; the rule that
picks one per batch is `inference_layout`.

Shapes: B batch, T tokens, N packed tokens, C hidden size, nh heads, L layers.
Masks: 1 / True = keep (Transkimmer: "1 denotes remaining tokens"), 0 = skimmed or pad.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from flops import skim_predictor_flops
from transformer import BertConfig, BertForTask, VarLen


def require(ok: bool, message: str) -> None:
    """A method's settings check: a ValueError naming the flag (asserts vanish under python -O)."""
    if not ok:
        raise ValueError(message)


def option(default, help: str):
    """A field of a method's `Options` dataclass; train.py turns it into a flag with this help."""
    return field(default=default, metadata={"help": help})


# ----------------------------------------------------------------------------------------------
# The strategy interface: what a student implements to try a new skimming idea


# The keys of a batch that hold the answer: a decision may never read them (a method's `loss`
# may). keyword_mask, a synthetic task's oracle of the deciding words, is in no batch at all
# (data.collate), so that a loss cannot train on it either.
ANSWER_KEYS = ("labels", "start_positions", "end_positions", "keyword_mask")
# The keys of a batch that hold the question: what data.collate and train.py give a model, and
# all that `decide` sees of the batch. Anything else a loss wants decide to see goes through
# skim_forward(..., hints=...), which decide reads as ctx.hints.
QUESTION_KEYS = ("input_ids", "attention_mask", "token_type_ids", "lengths", "example_index",
                 "feature_index", "index")  # fmt: skip


class QuestionOnly(dict):
    """A batch's question (QUESTION_KEYS), as a strategy's `decide` sees it. Reading an answer
    key is a KeyError that says why: a method that chose its tokens by the label would be graded
    on a test set it had read. Reading a key a loss added to the batch is a KeyError that names
    the one way for a loss to hand decide something: `hints`."""

    def __init__(self, batch: dict):
        super().__init__((k, v) for k, v in batch.items() if k in QUESTION_KEYS)

    def __missing__(self, key):
        if key in ANSWER_KEYS:
            raise KeyError(
                f"{key!r} is hidden from decide: a skim decision may not see the answer (it is "
                "not there at inference). Use it in the method's loss, which gets the full batch"
            )
        raise KeyError(
            f"{key!r} is not in ctx.batch, which holds the batch's inputs only "
            f"({', '.join(sorted(self))}). A loss hands decide what it computed with "
            f"skim_forward(..., hints={{{key!r}: ...}}), and decide reads ctx.hints[{key!r}]"
        )


class SkimContext:
    """What a strategy may look at before layer i, besides the states and who is still present,
    and where it may leave what its loss wants to see.

    batch: the caller's batch, its inputs only (QUESTION_KEYS: input_ids, attention_mask, ...)
    pruning: True: tokens are really removed (inference); False: masked (training)
    positions: (B, T) long, each token's position in its original sequence (−1 at grid padding);
        computed only when a strategy reads it (at batch 1 every tensor operation counts)
    attention: (B, nh, T, T), the previous layer's attention probabilities on this same grid,
        for strategies with `wants_attention`; None before layer 0
    stage: the training Stage this forward runs in, as the method's `loss` passed it to
        skim_forward (e.g. LTP's soft mask in its soft stage); None at inference
    hints: what the method's `loss` handed decide for this forward, skim_forward(..., hints=)
        (e.g. TR-BERT's imitation guide); {} at inference, so a decision must work without it
    extras: what decide leaves for its `loss` (e.g. TR-BERT's log π, extras[i] for layer i);
        skim_forward returns this dict as `SkimOutput.extras`
    """

    def __init__(self, batch: dict, pruning: bool, positions=None, stage=None, hints=None):
        self.batch, self.pruning = QuestionOnly(batch), pruning
        self._positions = positions  # a tensor, or a function that makes it
        self.stage, self.hints = stage, dict(hints or {})
        self.attention, self.extras = None, {}

    @property
    def positions(self) -> torch.Tensor:
        if callable(self._positions):
            self._positions = self._positions()
        return self._positions

    def set_positions(self, positions) -> None:
        """The loop's, before each decision: a (B, T) tensor, or a function that makes it when
        a strategy first reads ctx.positions."""
        self._positions = positions


@dataclass(frozen=True)  # what train.py records of it is what it trained: no change midway
class Stage:
    """One phase of a method's training: how long, what learns at which rate, what it needs."""

    name: str  # "finetune", "policy", "joint", ...: in the log and results.json, nothing else
    epochs: float
    encoder_lr: float  # learning rate of the encoder and task head; 0 = frozen
    strategy_lr: float  # learning rate of the strategy's parameters; 0 = frozen
    skim: bool = True  # the strategy decides in this stage (False: the plain encoder)
    teacher: bool = False  # the loss needs the fine-tuned model (`StepContext.teacher`)
    # after this stage the model is saved (RUN/finetuned/) as the teacher of later stages
    saves_teacher: bool = field(default=False, repr=False)  # (repr: docs/tutorial.md prints it)


def check_stages(stages: list[Stage], finetuned: bool) -> str | None:
    """What keeps train.py from running this schedule, or None: a stage that learns from the
    teacher (`teacher`) needs one, from --finetuned RUN (`finetuned`) or an earlier stage that
    `saves_teacher`."""
    saved = finetuned
    for stage in stages:
        if stage.teacher and not saved:
            return (
                f"stage {stage.name} learns from a teacher, but no stage before it saves one: give "
                "the stage that fine-tunes Stage(..., saves_teacher=True) (a stage named "
                '"finetune" no longer does so by its name), or start from --finetuned RUN'
            )
        saved = saved or stage.saves_teacher
    return None


@dataclass
class StepContext:
    """What a strategy's `loss` and `begin_stage` get besides the model and the batch, as their
    argument `context` (its `step` is the count of steps; train.py's loop counts in `step`)."""

    stage: Stage
    step: int  # optimiser steps done in this stage
    total: int  # steps in this stage
    task_loss: Callable  # (logits, batch, teacher_logits=None) -> per-example loss (B,)
    teacher: nn.Module | None = None  # the frozen fine-tuned model, when stage.teacher


class SkimStrategy(nn.Module):
    """Decides, before some layers, which of the tokens entering that layer stay.

    A subclass sets `layers` (the indices where it acts) and implements `decide`. That is enough:
    train.py then trains it with the task loss through the masked loop, and evaluates it with
    real pruning. The loop (`skim_forward`) does everything else: keeps [CLS], never keeps pads,
    keeps a token skimmed once skimmed for good, forwards skimmed tokens to the output.
    A method that trains in its own way overrides `stages`, `loss` and `Options`.

    Names, one meaning each: `config` is the model's transformer.BertConfig (__init__,
    overhead_flops), `cfg` is train.py's config.TrainConfig (stages), `context` is a StepContext
    (loss, begin_stage), `ctx` a SkimContext (decide). Between `loss` and `decide` there are two
    ways, both on the SkimContext: `loss` hands decide what it knows for one forward with
    skim_forward(..., stage=, hints=) (ctx.stage, ctx.hints), and decide leaves what `loss`
    wants in ctx.extras (returned as SkimOutput.extras). No attribute is set in one for the other.
    """

    layers: tuple[int, ...] = ()
    Options = None  # a dataclass of the method's settings: its fields become train.py flags
    checkpoint_prefix = "strategy"  # its tensors are saved as <prefix>.<name> in a checkpoint
    wants_attention = False  # True: SkimContext.attention holds the previous layer's attention
    # train.py settings this method trains with unless a flag or the preset says otherwise (e.g.
    # {"warmup": 0.1}: its authors' optimiser); keys are config.TrainConfig fields
    train_defaults: dict = {}

    def __init__(self, config: BertConfig | None = None, options=None, task=None):
        """The constructor convention: config, the model's BertConfig; options, an `Options`
        instance or None (the defaults); task, the data.Task it trains on, or None (for
        settings that default per task, like λ). A method that takes these three, as every
        built-in with settings does, is made by the default `build`."""
        super().__init__()
        self.options = options  # every method keeps its Options here

    @classmethod
    def build(cls, model: BertForTask, options, task) -> SkimStrategy:
        """How train.py makes one for `model` (options: an `Options` instance or None; task:
        data.Task): cls(model.bert.config, options, task). Override it only when the
        constructor needs more than that (ClsAttentionSkim: the encoder's own weights)."""
        _check_constructor(cls)
        return cls(model.bert.config, options, task)

    def decide(self, i: int, h: torch.Tensor, alive: torch.Tensor, ctx: SkimContext):
        """h: (B, T, C) states entering layer i; alive: (B, T) float, 1 = token still present.
        In training (ctx.pruning False) T is the original length; when pruning, T is the longest
        remaining sequence and the surviving tokens are packed left (position 0 is still [CLS];
        ctx.positions says where each token was).

        Returns keep (B, T), bool or float, in either mode, and nothing else: the loop casts it
        (to the states' dtype when masking, to bool when pruning, where any nonzero value keeps).
        In training a float keep may hold soft values in [0, 1] and carry a gradient: it
        multiplies the attention weights and the forwarded states. What `loss` needs besides
        (TR-BERT: the log-probability of its actions) goes into ctx.extras. In eval mode keep
        must be 0 wherever alive is 0 (the conformance suite checks); in training the loop
        multiplies it by alive, a running product: once gone, gone."""
        raise NotImplementedError

    def overhead_flops(self, config: BertConfig, n: int) -> int:
        """FLOPs spent scoring n tokens before one of its layers (any function of n: flops.py)."""
        return 0

    def stages(self, cfg) -> list[Stage]:
        """The training schedule. cfg: config.TrainConfig (epochs, lr, skim_lr, finetuned, ...).
        Default: one stage where the encoder and the strategy learn together."""
        return [Stage("joint", epochs=cfg.epochs, encoder_lr=cfg.lr,
                      strategy_lr=cfg.skim_lr or cfg.lr)]  # fmt: skip

    def begin_stage(self, context: StepContext, batches: Callable):
        """Called before each stage (context.step = 0); batches() yields (feature indices, batch)
        over the training set in a fixed order, for strategies that precompute something from
        the data or the teacher (TR-BERT's guide for its imitation warm-up)."""

    def loss(self, model: BertForTask, batch: dict, context: StepContext):
        """The training loss of one batch and numbers to log. Default: the task loss through the
        masked loop (the plain encoder in stages where the strategy does not decide)."""
        strategy = self if context.stage.skim else None
        out = skim_forward(model, strategy, batch, prune=False, stage=context.stage)
        return context.task_loss(out.logits, batch).mean(), {}


def _check_constructor(cls) -> None:
    """A TypeError that says what to change when cls cannot be made as cls(config, options,
    task), SkimStrategy.build's convention (before it, build called cls() or cls(options))."""
    try:
        inspect.signature(cls).bind(None, None, None)
    except TypeError:
        raise TypeError(
            f"{cls.__name__}{inspect.signature(cls)} cannot be made the way SkimStrategy.build "
            f"makes a method, {cls.__name__}(config, options, task): take those three, "
            "def __init__(self, config, options=None, task=None) (config: the model's "
            "BertConfig; options: your Options or None; task: the data.Task or None), and call "
            "super().__init__(); or override build(model, options, task)"
        ) from None


@dataclass
class SkimOutput:
    """What the shared loop returns."""

    hidden: torch.Tensor  # (B, T, C) final states, every position re-assembled (Eq. 3)
    logits: torch.Tensor  # the task head on `hidden`: (B, num_labels) or (B, T, 2) for spans
    tokens_per_layer: torch.Tensor  # (B, L) long: tokens each layer processed, per example
    exit_layer: torch.Tensor  # (B, T) long: layer before which a token left; L = never; -1 pad
    masks: list = field(default_factory=list)  # training: L tensors (B, T), tokens kept per layer
    extras: dict = field(default_factory=dict)  # what decide left in ctx.extras, for `loss`


# ----------------------------------------------------------------------------------------------
# The shared encoder loop


def scores_whole_grid(device: torch.device) -> bool:
    """Where a scorer runs on every cell of the grid, pads included, rather than on the present
    tokens only: on a GPU, where picking the present rows out would make the host wait for the
    device to count them (a synchronisation per deciding layer) to save arithmetic the GPU has to
    spare. A function of its own so that a test can send a CPU down the GPU's path."""
    return device.type != "cpu"


def on_present_tokens(score, h: torch.Tensor, alive: torch.Tensor, fill: float) -> torch.Tensor:
    """score(h) for a scorer that looks at each token on its own ((..., C) -> (...)), computed on
    the present tokens only, `fill` elsewhere. At inference with more than one sequence the grid a
    strategy gets is padded to the longest sequence still running, and on long texts pads can be
    half of it (on a GPU the whole grid is scored: see `scores_whole_grid`). h: (B, T, C);
    alive: (B, T), 1 = present. Returns (B, T) in h's dtype: under autocast (bf16 / fp16) a
    scorer's linear layers answer in the lower precision, and writing those scores into the
    float32 grid below needs them cast (index_put refuses mixed dtypes)."""
    present = alive.bool()
    if scores_whole_grid(h.device):  # the pads' scores are thrown away, and nothing waits
        return score(h).to(h.dtype).masked_fill(~present, fill)
    if bool(present.all()):  # one sequence, or equal lengths: nothing to leave out
        return score(h).to(h.dtype)
    out = torch.full(present.shape, fill, dtype=h.dtype, device=h.device)
    out[present] = score(h[present]).to(h.dtype)  # (N,)
    return out


def skim_forward(
    model: BertForTask,
    strategy: SkimStrategy | None,
    batch: dict,
    prune: bool | str | None = None,
    *,
    stage: Stage | None = None,
    hints: dict | None = None,
) -> SkimOutput:
    """Run `model` with `strategy` deciding which tokens each layer sees.

    batch: input_ids, attention_mask (1 = real token), token_type_ids, each (B, T) long.
    prune: True: really remove tokens (Eq. 1), in the layout `inference_layout` picks, or in the
    one named ("packed", "grid": the same numbers); False: mask them (Eq. 4), as training does.
    Defaults to `not model.training`.
    With strategy None (or one with no layers) every token is kept: the plain encoder.
    stage, hints: what a method's `loss` hands its `decide` for this forward, which decide reads
    as ctx.stage and ctx.hints (the training Stage; a dict of anything, e.g. tensors (B, T));
    evaluation gives neither. What decide left in ctx.extras comes back as SkimOutput.extras."""
    mask = batch["attention_mask"]
    lengths = mask.sum(1).tolist()  # (B,) on the host: the one synchronisation before the loop
    empty = [b for b, n in enumerate(lengths) if n == 0]
    if empty:
        raise ValueError(
            f"batch rows {empty} have no tokens (attention_mask all 0): every sequence needs at "
            "least its [CLS] token; drop empty rows before calling skim_forward"
        )
    prune = (not model.training) if prune is None else prune
    if prune not in (True, False, *LAYOUTS):
        raise ValueError(f"prune must be True, False or a layout, one of {LAYOUTS}; got {prune!r}")
    ctx = SkimContext(batch, bool(prune), stage=stage, hints=hints)
    if not prune:
        return _masked(model, strategy, batch, ctx)
    layout = prune if prune in LAYOUTS else inference_layout(mask.device, lengths, mask.shape[1])
    # the grid keeps each sequence where it is until tokens leave: [CLS] must be in column 0
    if layout == "grid" and torch.equal(mask[:, 0], torch.ones_like(mask[:, 0])):
        return _pruned_grid(model, strategy, batch, ctx, full=min(lengths) == mask.shape[1])
    return _pruned(model, strategy, batch, ctx)


LAYOUTS = ("packed", "grid")

# The padded grid beats packing on a GPU while a batch is small enough for the device to wait on
# kernel launches rather than on arithmetic: there the pads cost nothing, while packing costs
# gathers, scatters and a synchronisation per layer that drops tokens. One H100 run
# (benchmarks/results/gpu-h100.md, MiniLM, fp32) put the crossover between SST-2 at batch 32
# (32 × 54 = 1,728 grid cells, 46% real: the padded baseline 1.64× faster than the packed one)
# and IMDB at batch 32 (16,384 cells, about half real: packed 1.2× faster); IMDB at batch 1 (no
# pads at all) ran 1.24× faster on the grid. Between those runs the threshold is not measured:
# `python bench.py skim --device cuda` times both layouts side by side, and prints which one the
# rule chose, so that a GPU run checks it.
GRID_CELLS = 4096  # a batch up to this many grid cells (B × longest) goes on the grid on a GPU
GRID_FILL = 0.8  # and a larger one too when at least this share of its cells are real tokens


def inference_layout(device: torch.device, lengths: list[int], t_max: int | None = None) -> str:
    """Which layout pruned inference runs a batch in: "packed" (the real tokens end to end, (N, C),
    so no layer computes a pad) or "grid" (a padded (B, T, C) grid and a key mask, every
    sequence's survivors moved left when tokens leave, as the baseline runs).

    On a CPU always packed: the arithmetic is the time, and a pad costs as much as a token.
    (`python bench.py skim --layouts packed,grid` times both: packing ran 1.4–2.3× faster at batch
    32 and tied at batch 1, docs/speed.md.) On a GPU the grid up to GRID_CELLS cells or from
    GRID_FILL real, else packed.
    lengths: each sequence's real tokens; t_max: the grid's width (default: the longest)."""
    if device.type == "cpu":
        return "packed"
    cells = len(lengths) * (t_max or max(lengths))
    return "grid" if cells <= GRID_CELLS or sum(lengths) >= GRID_FILL * cells else "packed"


def _wants_attention(strategy, i: int) -> bool:
    """Does the strategy read layer i's attention (it decides before layer i + 1)?"""
    return strategy is not None and strategy.wants_attention and i + 1 in strategy.layers


def _decided(strategy, i: int, keep, alive: torch.Tensor) -> torch.Tensor:
    """decide's answer, keep (B, T), checked. A tuple is the old contract's (keep, extra)."""
    if isinstance(keep, tuple):
        raise TypeError(
            f"{type(strategy).__name__}.decide before layer {i} returned a tuple: decide returns "
            "keep (B, T) alone. Put what the method's loss needs in ctx.extras (e.g. "
            "ctx.extras[i] = log_prob); skim_forward returns it as SkimOutput.extras"
        )
    if not isinstance(keep, torch.Tensor) or keep.shape != alive.shape:
        got = tuple(keep.shape) if isinstance(keep, torch.Tensor) else type(keep).__name__
        name, want = type(strategy).__name__, tuple(alive.shape)
        raise ValueError(f"{name}.decide before layer {i} returned {got}; it must return keep "
                         f"of the shape of alive, {want}")  # fmt: skip
    return keep


def _masked(model: BertForTask, strategy, batch, ctx: SkimContext) -> SkimOutput:
    """Training form. Skimmed tokens stay in the tensor but no kept token can attend to them:
    the renormalised key mask (Eq. 4) makes every kept token compute exactly what it would
    compute if they were removed, while gradients still reach the decisions. (Gathering would
    cut the gradient to skimmed tokens: Transkimmer Sec. 4.2.)"""
    bert = model.bert
    h = bert.embed(batch["input_ids"], batch.get("token_type_ids"))  # (B, T, C)
    alive = batch["attention_mask"].to(h.dtype)  # (B, T): pads enter with 0, never come back
    B, T = alive.shape
    L = len(bert.layers)
    out = torch.zeros_like(h)
    tokens = alive.new_zeros(B, L, dtype=torch.long)
    exit_layer = torch.where(alive.bool(), L, -1)  # (B, T)
    ctx.set_positions(torch.arange(T, device=h.device).expand(B, T))
    masks = []
    for i, layer in enumerate(bert.layers):
        if strategy is not None and i in strategy.layers:
            keep = _decided(strategy, i, strategy.decide(i, h, alive, ctx), alive)
            # running product: once skimmed, gone; [CLS] always stays (the classifier reads it)
            keep = torch.cat([alive[:, :1], keep[:, 1:].to(h.dtype) * alive[:, 1:]], 1)  # (B, T)
            # Eq. (3): H^L = Σ_i H^i·M^i. Tokens leaving here carry their input state to the output.
            # DEVIATION: the paper's sum, as written; the authors mix step by step (same forward
            # values, another straight-through backward for heads that read every token).
            out = out + h * (alive - keep).unsqueeze(-1)
            exit_layer = torch.where((alive - keep).detach() > 0, i, exit_layer)
            alive = keep
        tokens[:, i] = alive.detach().sum(1).long()
        masks.append(alive)
        if _wants_attention(strategy, i):
            h, ctx.attention = layer(h, key_mask=alive, need_probs=True)
        else:
            h = layer(h, key_mask=alive)  # Eq. (4): skim attention through the key mask
    hidden = out + h * alive.unsqueeze(-1)
    return SkimOutput(hidden, model.logits(hidden), tokens, exit_layer, masks, ctx.extras)


@torch.no_grad()
def _pruned(model: BertForTask, strategy, batch, ctx: SkimContext) -> SkimOutput:
    """Inference form. Tokens of all sequences are packed end to end (N, C), pads dropped; before
    each layer the strategy's skimmed tokens are written to the output and removed (Eq. 1), so
    every layer computes exactly the tokens each sequence still has, at any batch size."""
    bert = model.bert
    h = bert.embed(batch["input_ids"], batch.get("token_type_ids"))  # (B, T, C)
    B, T, C = h.shape
    L = len(bert.layers)
    valid = batch["attention_mask"].bool()  # (B, T)
    pos = valid.flatten().nonzero().squeeze(1)  # (N,) flat position b·T + t of each packed row
    x = h.reshape(B * T, C).index_select(0, pos)  # (N, C); as [pos], but faster on a CPU
    lengths = valid.sum(1)  # (B,)
    varlen = VarLen(lengths)
    out = h.new_zeros(B * T, C)
    exit_layer = torch.where(valid, L, -1).flatten()  # (B·T,)
    tokens = lengths.new_zeros(B, L)
    # Each tensor operation costs microseconds of Python and dispatch whatever its size, and at
    # batch 1 a skimmed layer takes only milliseconds (measured by `python bench.py skim`: its last
    # table times one layer at batch 1): the bookkeeping below is kept to a few operations per
    # layer, gathers use index_select, and nothing is moved or rebuilt unless tokens leave.
    for i, layer in enumerate(bert.layers):
        if strategy is not None and i in strategy.layers:
            alive = varlen.key_mask()  # (B, T_i): survivors packed left, [CLS] at position 0
            # (B, T_i) original positions, −1 at grid padding; made only if the strategy asks
            ctx.set_positions(lambda pos=pos, v=varlen: v.pad((pos % T + 1)[:, None])[..., 0] - 1)
            keep = strategy.decide(i, varlen.pad(x), alive.to(x.dtype), ctx)
            keep = _decided(strategy, i, keep, alive)
            keep = keep.bool() & alive
            keep[:, 0] = True  # [CLS] always stays
            kept = keep.sum(1)  # (B,)
            if not torch.equal(kept, lengths):  # tokens leave here (else nothing to move)
                lengths = kept
                keep = varlen.unpad(keep)  # (N_i,)
                rows, left = keep.nonzero().squeeze(1), (~keep).nonzero().squeeze(1)
                gone = pos[left]  # flat positions of the tokens leaving here
                out[gone] = x.index_select(0, left)  # Eq. (3): their state entering layer i
                exit_layer[gone] = i
                x, pos = x.index_select(0, rows), pos[rows]
                varlen = VarLen(lengths)
        tokens[:, i] = lengths
        if _wants_attention(strategy, i):
            x, ctx.attention = layer(x, varlen=varlen, need_probs=True)
        else:
            x = layer(x, varlen=varlen)  # Eq. (1): the layer sees only the gathered tokens
    out[pos] = x
    hidden = out.view(B, T, C)
    return SkimOutput(hidden, model.logits(hidden), tokens, exit_layer.view(B, T), [],
                      ctx.extras)  # fmt: skip


@torch.no_grad()
def _pruned_grid(model: BertForTask, strategy, batch, ctx: SkimContext, full: bool) -> SkimOutput:
    """Inference form on the padded grid: the same decisions and numbers as `_pruned`, another
    layout. The states stay (B, T_i, C) with a key mask, as the baseline runs them. Before each
    layer the strategy's skimmed tokens are written to the output and the survivors of every
    sequence are moved left, in order (Eq. 1), so that the grid shrinks to the longest sequence
    still running, T_i. Nothing waits on the device except one small read per layer that decides
    (how wide the grid becomes), and only where tokens leave is anything moved.
    full: the batch has no pads (the caller knows its lengths), so no key mask is needed."""
    bert = model.bert
    x = bert.embed(batch["input_ids"], batch.get("token_type_ids"))  # (B, T, C)
    B, T, _ = x.shape
    L = len(bert.layers)
    alive = batch["attention_mask"].bool()  # (B, T_i): True at the tokens still running
    lengths = alive.sum(1)  # (B,)
    pos = torch.arange(T, device=x.device).expand(B, T)  # (B, T_i): each cell's original position
    out = torch.zeros_like(x)  # (B, T, C): the final states, at their original positions
    exit_layer = torch.where(alive, L, -1)  # (B, T)
    tokens = lengths.new_zeros(B, L)

    for i, layer in enumerate(bert.layers):
        if strategy is not None and i in strategy.layers:
            ctx.set_positions(torch.where(alive, pos, -1))  # (B, T_i), −1 at grid padding
            keep = strategy.decide(i, x, alive.to(x.dtype), ctx)
            keep = _decided(strategy, i, keep, alive).bool() & alive
            keep[:, 0] = True  # [CLS] always stays (survivors sit left: it is in column 0)
            kept = keep.sum(1)  # (B,)
            # the one read per deciding layer: the new width, whether all rows fill it, and
            # whether anything leaves
            stats = torch.stack([kept.max(), kept.min(), (kept != lengths).any()])
            t_new, t_min, moved = stats.tolist()
            if moved:  # Eq. (3): the leaving tokens' states entering layer i go to the output
                _to_output(out, exit_layer, x, pos, alive & ~keep, i)
                x, pos, alive = _survivors_left(keep, t_new, x, pos, keep)
                lengths, full = kept, t_min == t_new
        tokens[:, i] = lengths
        key_mask = None if full else alive  # no pads: the unmasked kernel
        if _wants_attention(strategy, i):
            x, ctx.attention = layer(x, key_mask=key_mask, need_probs=True)
            if key_mask is not None:  # as on the packed path: a pad query row is no token
                ctx.attention = ctx.attention.masked_fill(~alive[:, None, :, None], 0.0)
        else:
            x = layer(x, key_mask=key_mask)  # Eq. (1): every row sees only its survivors
    _to_output(out, exit_layer, x, pos, alive, L)  # their exit layer stays L
    return SkimOutput(out, model.logits(out), tokens, exit_layer, [], ctx.extras)


def _to_output(out, exit_layer, x, pos, leaving: torch.Tensor, layer: int) -> None:
    """Write the grid's cells in `leaving` (B, T_i) to their original positions `pos` (B, T_i):
    their states x (B, T_i, C) into out (B, T, C), `layer` into exit_layer (B, T). Every position
    is written once (out starts at 0, every other cell adds 0), so the sum is exact."""
    out.scatter_add_(1, pos[..., None].expand_as(x), torch.where(leaving[..., None], x, 0.0))
    stay = torch.iinfo(exit_layer.dtype).max  # min(e, stay) = e: the other cells change nothing
    exit_layer.scatter_reduce_(1, pos, torch.where(leaving, layer, stay), "amin")


def _survivors_left(keep: torch.Tensor, width: int, *grids: torch.Tensor) -> list[torch.Tensor]:
    """Each grid (B, T_i) or (B, T_i, C) with every row's kept cells moved left, in their order,
    cut to `width` columns: a stable sort of 0 = kept, 1 = gone gives the order."""
    order = (~keep).to(torch.uint8).sort(dim=1, stable=True).indices[:, :width]  # (B, width)
    return [g.gather(1, order if g.ndim == 2 else order[..., None].expand(-1, -1, g.shape[-1]))
            for g in grids]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# The baseline: a method that never skims


class Baseline(SkimStrategy):
    """Plain fine-tuning: decides nothing, so every layer sees every token."""

    def stages(self, cfg):
        return [Stage("finetune", epochs=cfg.epochs, encoder_lr=cfg.lr, strategy_lr=0.0, skim=False,
                      saves_teacher=True)]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Transkimmer


@dataclass
class SkimConfig:
    """Transkimmer's settings, with where each default comes from."""

    tau: float = option(0.1, "Gumbel temperature τ (Sec. 4.2: 0.1; the authors' code: 1)")
    skim_weight: float | None = option(
        None, "harmony coefficient λ of Eq. (7) (default: the task's, Table 2, in data.py)"
    )
    init_mean: float = option(5.0, "μ0 of the unbalanced initialisation, Eq. (9)")
    init_std: float = option(0.02, "σ of Eqs. (8)-(9), BERT's initializer_range")
    sample_at_eval: bool = option(
        False, "sample Gumbel noise at evaluation too, as the authors' code does"
    )  # DEVIATION: default off; we decide by argmax at evaluation (deterministic)
    distill: bool = option(
        True, "with --finetuned: learn the fine-tuned model's soft labels (a DEVIATION)"
    )

    def __post_init__(self):
        # NaN fails every comparison, so each check refuses it; infinities are refused by name
        inf, w = float("inf"), self.skim_weight
        require(0 < self.tau < inf, f"--tau (the Gumbel temperature) must be > 0 and finite, "
                f"got {self.tau}")  # fmt: skip
        require(w is None or 0 <= w < inf, f"--skim-weight (λ) must be ≥ 0 and finite, got {w}")
        require(-inf < self.init_mean < inf, f"--init-mean must be finite, got {self.init_mean}")
        require(0 <= self.init_std < inf, f"--init-std must be ≥ 0 and finite, got {self.init_std}")


class SkimPredictor(nn.Module):
    """Eq. (2): M = Activation(MLP(H)), MLP = Linear(GELU(LN(Linear(H)))).

    DEVIATION (from the paper, as in the authors' code): a LayerNorm also comes first,
    LN -> Linear(C→C) -> LN -> GELU -> Linear(C→2); output 1 is the keep logit, 0 the skip logit."""

    def __init__(self, config: BertConfig, options: SkimConfig):
        super().__init__()
        C = config.hidden_size
        # DEVIATION: BERT's LayerNorm eps (1e-12); the authors' predictor uses PyTorch's 1e-5
        self.ln_in = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.fc = nn.Linear(C, C)
        self.ln = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.out = nn.Linear(C, 2)
        self.reset_parameters(options)

    def reset_parameters(self, options: SkimConfig):
        # Eq. (8): weights ω ~ N(0, σ)
        for lin in (self.fc, self.out):
            nn.init.normal_(lin.weight, 0.0, options.init_std)
        nn.init.zeros_(self.fc.bias)
        # Eq. (9): β_i ~ N((−1)^(i+1)·μ0, σ): the keep bias (i = 1) starts at +μ0 and the skip
        # bias (i = 0) at −μ0, so the predictor keeps every token until it learns to skim.
        with torch.no_grad():
            self.out.bias.normal_(0.0, options.init_std)
            self.out.bias += torch.tensor([-options.init_mean, options.init_mean])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> logits (B, T, 2): [skip, keep]."""
        return self.out(F.gelu(self.ln(self.fc(self.ln_in(h)))))


def gumbel_keep(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Straight-through Gumbel-softmax keep mask: exactly 0/1 forward, soft gradient backward.

    Transkimmer Eq. (5): M_j = exp((log π_j + g_j)/τ) / Σ_k exp((log π_k + g_k)/τ), g ~ Gumbel(0,1)
    π -> softmax(logits);  g -> gumbel;  τ -> tau. log π differs from the logits by a constant per
    token, which the softmax cancels, so the logits are used directly.
    logits (B, T, 2) -> keep (B, T) float."""
    # ASSIGNMENT 2 BEGIN: straight-through Gumbel-softmax (assignments/02_gumbel.md)
    gumbel = -torch.empty_like(logits).exponential_().log()  # g = −log(E), E ~ Exp(1)
    soft = ((logits + gumbel) / tau).softmax(-1)[..., 1]  # (B, T) probability of keep
    hard = (soft > 0.5).to(logits.dtype)  # the argmax of two classes
    # Forward value `hard` exactly (hard + 0); backward the gradient of `soft`.
    return hard + (soft - soft.detach())
    # ASSIGNMENT 2 END


def skim_loss(out: SkimOutput, attention_mask: torch.Tensor) -> torch.Tensor:
    """Transkimmer Eq. (6): Loss_skim = (1/L) Σ_i sum(M^i) / len(M^i).

    NOTE(paper): the summation bounds are garbled in our copy; we read it as the mean over layers
    of the kept fraction. DEVIATION (from the authors' code, which divides by the padded length
    and counts pads as kept): len(M^i) is each example's real length, and the mean also runs over
    the batch. attention_mask: (B, T), 1 = real token."""
    # ASSIGNMENT 3 BEGIN: skim loss (assignments/03_skim_loss.md)
    lengths = attention_mask.sum(1).to(out.masks[0].dtype)  # (B,)
    kept = torch.stack([m.sum(1) for m in out.masks], 1)  # (B, L)
    return (kept / lengths[:, None]).mean()
    # ASSIGNMENT 3 END


class Transkimmer(SkimStrategy):
    """A skim predictor before every layer, layer 0 included (the authors' code: on its input)."""

    Options = SkimConfig
    checkpoint_prefix = "skim"

    def __init__(self, config: BertConfig, options: SkimConfig | None = None, task=None):
        options = options or SkimConfig()
        if options.skim_weight is None and task is not None:  # λ per task, Transkimmer Table 2
            options = dataclasses.replace(options, skim_weight=task.skim_weight)
        super().__init__(config, options, task)
        self.layers = tuple(range(config.num_hidden_layers))
        self.predictors = nn.ModuleList(SkimPredictor(config, options) for _ in self.layers)

    def decide(self, i, h, alive, ctx):
        if self.training or self.options.sample_at_eval:
            # the loop multiplies by alive (the running product of Eq. 3's masks), and its
            # gradient reaches the earlier decisions through this sample, as in the authors' code.
            # The sample is drawn in float32 at least (float64 stays float64) whatever autocast
            # made the logits: in float16 an Exp(1) draw below 6e-8 rounds to 0 and −log(0) = inf
            # turns the softmax into NaN, and bfloat16's 3 digits would round the noise that
            # makes the decision.
            logits = self.predictors[i](h)
            dtype = torch.promote_types(logits.dtype, torch.float32)
            return gumbel_keep(logits.to(dtype), self.options.tau)
        return self.keep_score(i, h, alive) >= 0  # deterministic: keep logit ≥ skip logit

    def keep_score(self, i, h, alive):
        """Inference: keep logit − skip logit of each present token, (B, T), −inf elsewhere."""

        def score(x):
            logits = self.predictors[i](x)  # (..., 2): [skip, keep]
            return logits[..., 1] - logits[..., 0]

        return on_present_tokens(score, h, alive, float("-inf"))

    def overhead_flops(self, config, n):
        return skim_predictor_flops(config, n)

    def stages(self, cfg):
        # DEVIATION: started from a fine-tuned run (--finetuned), it may learn its soft labels
        teacher = bool(cfg.finetuned) and self.options.distill
        return [Stage("joint", epochs=cfg.epochs, encoder_lr=cfg.lr,
                      strategy_lr=cfg.skim_lr or cfg.lr, teacher=teacher)]  # fmt: skip

    def loss(self, model, batch, context):
        # Transkimmer Eq. (7): Loss_total = Loss_downstream + λ·Loss_skim
        out = skim_forward(model, self, batch, prune=False, stage=context.stage)
        loss_skim = skim_loss(out, batch["attention_mask"])
        teacher = None
        if context.teacher is not None:  # DEVIATION: distil the fine-tuned model's soft labels
            with torch.no_grad():
                teacher = context.teacher(
                    batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
                )
        task = context.task_loss(out.logits, batch, teacher).mean()
        if self.options.skim_weight is None:
            raise ValueError(
                "SkimConfig.skim_weight (λ) is None: give one, or make it with the task, "
                "Transkimmer(config, options, task), which takes the task's (Table 2)"
            )
        return task + self.options.skim_weight * loss_skim, {"skim": loss_skim.item()}


# ----------------------------------------------------------------------------------------------
# Two methods without a trained scorer: a worked example, and a control


@dataclass
class ClsAttentionOptions:
    keep: float = option(
        0.7, "share of each sequence's tokens kept before every layer but the first"
    )

    def __post_init__(self):
        require(0 < self.keep <= 1, f"--keep must be in (0, 1], got {self.keep}")


class ClsAttentionSkim(SkimStrategy):
    """Keep the tokens that [CLS] attends to most (the signal PoWER-BERT and LTP build on), a
    fixed share per layer, with no training: a worked example of the interface.

    Before layer i, [CLS]'s attention to each token is computed with layer i's own query and key
    projections, averaged over heads; each sequence keeps the top ⌈keep·n⌉ of its tokens. Works on
    any fine-tuned model: `skim_forward(model, ClsAttentionSkim(model.bert, keep=0.7), batch)`.
    With train.py: fine-tunes the plain model (or takes --finetuned RUN and trains nothing),
    then evaluates it skimming."""

    Options = ClsAttentionOptions

    def __init__(self, bert, keep: float = 0.7, layers: tuple[int, ...] = ()):
        super().__init__()
        require(0 < keep <= 1, f"keep must be in (0, 1], got {keep}")
        self.keep, self.bert = keep, [bert]  # in a list: the encoder's weights are not ours to save
        self.layers = layers or tuple(range(1, len(bert.layers)))

    @classmethod
    def build(cls, model, options, task):
        # overridden: it scores with the encoder's own weights, more than the config the
        # default build passes
        return cls(model.bert, options.keep)

    def stages(self, cfg):
        finetune = Stage("finetune", epochs=cfg.epochs, encoder_lr=cfg.lr, strategy_lr=0.0,
                         skim=False, saves_teacher=True)  # fmt: skip
        return [] if cfg.finetuned else [finetune]

    def decide(self, i, h, alive, ctx):
        attn = self.bert[0].layers[i].attn
        B, T, C = h.shape
        q = attn.query(h[:, :1]).view(B, 1, attn.nh, attn.hs).transpose(1, 2)  # (B, nh, 1, hs)
        k = attn.key(h).view(B, T, attn.nh, attn.hs).transpose(1, 2)  # (B, nh, T, hs)
        scores = (q @ k.transpose(-2, -1)).squeeze(2) / attn.hs**0.5  # (B, nh, T)
        received = scores.masked_fill(alive[:, None] == 0, float("-inf")).softmax(-1).mean(1)
        received[:, 0] = float("inf")  # [CLS] is kept anyway: let it count towards the share
        k = torch.ceil(self.keep * alive.float().sum(1))  # counted in float32 (bf16 rounds > 256)
        return keep_top(received, alive, k, self.training)

    def overhead_flops(self, config, n):
        # per token: its key projection (2d²) and its score against [CLS]'s query (2d), and once
        # per sequence [CLS]'s query projection (2d²). Keys are recomputed rather than shared with
        # the layer, so the encoder stays unaware of us.
        d = config.hidden_size
        return n * (2 * d * d + 2 * d) + 2 * d * d


def keep_top(score: torch.Tensor, alive: torch.Tensor, k: torch.Tensor, soft: bool):
    """Keep the k[b] highest-scoring present tokens of each sequence. score, alive: (B, T);
    k: (B,). Returns bool (B, T), or float 0/1 when `soft` (training)."""
    score = score.masked_fill(alive == 0, float("-inf"))
    rank = score.argsort(dim=1, descending=True, stable=True).argsort(1)  # 0 = highest
    keep = (rank < k[:, None]) & (alive > 0)
    return keep.to(alive.dtype) if soft else keep


@dataclass
class RandomOptions:
    keep_shares: str = option(
        "",
        "share of each example's tokens kept at each layer, comma-separated, one per layer "
        "(e.g. the kept_per_layer of another run's results.json)",
    )
    keep_shares_from: str = option(
        "",
        "a run folder whose results.json gives the shares (its kept_per_layer), when "
        "--keep-shares is not given: read once, when this run starts, and recorded in its "
        "config.json as keep_shares",
    )
    random_seed: int = option(0, "seed of the fixed random table that decides which tokens go")
    retrain: bool = option(
        True,
        "train the encoder with the random skims; --no-retrain with --finetuned RUN "
        "evaluates that run skimming at random, as it is",
    )

    def __post_init__(self):  # torch's generators take seeds below 2**64; ours start at 0
        s = self.random_seed
        require(0 <= s < 2**63, f"--random-seed must be in 0 .. 2**63 − 1, got {s}")
        # the other run's shares are copied into keep_shares, which config.json records: the
        # control's results then depend on its own folder alone, whatever becomes of the other.
        # (A control saved before keep_shares was filled so reads the other run every time.)
        if self.keep_shares_from and not self.keep_shares:
            self.keep_shares = shares_of_run(self.keep_shares_from)


class RandomSkim(SkimStrategy):
    """The control for any learned method: at each layer keep a given share of each example's
    tokens, chosen at random. It tells whether a learned scorer learned anything beyond "keep
    fewer tokens". The choice is random but fixed (a seeded table indexed by layer, position and
    token id), so the same sequence skims the same way alone or in a batch, masked or pruned."""

    Options = RandomOptions
    checkpoint_prefix = "random"

    def __init__(self, config: BertConfig, options: RandomOptions | None = None, task=None):
        super().__init__(config, options or RandomOptions(), task)
        self.shares = keep_shares(self.options, config.num_hidden_layers)
        self.retrain = self.options.retrain  # train the encoder with the random skims
        # it acts where the share falls below the previous layer's (before layer 0: below 1)
        self.layers = tuple(i for i, s in enumerate(self.shares) if s < ([1.0] + self.shares)[i])
        g = torch.Generator().manual_seed(self.options.random_seed)
        positions = config.max_position_embeddings
        self.register_buffer("by_position", torch.rand(len(self.shares), positions, generator=g))
        self.register_buffer("by_token", torch.rand(config.vocab_size, generator=g))

    def stages(self, cfg):
        if cfg.finetuned and not self.retrain:  # the fine-tuned run as it is, skimming at random
            return []
        return super().stages(cfg)

    def decide(self, i, h, alive, ctx):
        ids = ctx.batch["input_ids"]
        if ctx.pruning:  # the surviving tokens' ids, on the packed grid
            ids = ids.gather(1, ctx.positions.clamp(min=0))
        score = (self.by_position[i][ctx.positions.clamp(min=0)] + self.by_token[ids]) % 1.0
        score[:, 0] = 2.0  # [CLS] is kept anyway: let it count towards the share
        lengths = ctx.batch["attention_mask"].sum(1)  # each example's original length
        k = torch.round(self.shares[i] * lengths).clamp(min=1)  # the share, on average
        return keep_top(score, alive, k, not ctx.pruning)


def shares_of_run(run: str) -> str:
    """The kept_per_layer of the finished run in folder `run` (its results.json), as the text
    --keep-shares takes ("1.0,0.52,..."). Raises ValueError naming the file."""
    from weights import read_json  # a run folder is data: read as such (no links, capped)

    path = Path(run) / "results.json"
    try:
        shares = read_json(path)["kept_per_layer"]
        return ",".join(str(float(s)) for s in shares)
    except FileNotFoundError:
        raise ValueError(
            f"--keep-shares-from: no {path}; give a finished run's folder (a random control "
            "whose config.json records no keep_shares reads its shares there: put that run back)"
        ) from None
    except (KeyError, TypeError, ValueError, OverflowError) as e:  # CheckpointError: ValueError
        raise ValueError(f"--keep-shares-from: {path} gives no kept_per_layer ({e})") from None


def keep_shares(options: RandomOptions, num_layers: int) -> list[float]:
    """RandomSkim's share of tokens kept at each of num_layers layers, from --keep-shares (which
    RandomOptions fills from --keep-shares-from's run when it is not given)."""
    text = options.keep_shares
    try:
        shares = [float(s) for s in text.split(",")] if text else []
    except ValueError:
        raise ValueError(f"--keep-shares must be numbers separated by commas, got {text!r}")
    if len(shares) != num_layers or not all(0 < s <= 1 for s in shares):
        raise ValueError(
            f"--keep-shares needs {num_layers} shares in (0, 1], one per layer, "
            f"got {text!r} (or give --keep-shares-from RUN)"
        )
    return shares
