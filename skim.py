"""Token skimming: one encoder loop for every method, and Transkimmer as its first strategy.

Guan et al., "Transkimmer: Transformer Learns to Layer-wise Skim", ACL 2022,
https://arxiv.org/abs/2205.07324. Equations implemented here:
  Eq. (1) gather the kept tokens before each layer      -> `skim_forward`, inference (real pruning)
  Eq. (2) skim predictor MLP                             -> `SkimPredictor`
  Eq. (3) skimmed tokens forwarded to the output         -> `skim_forward`, both modes
  Eq. (4) skim attention: masked, renormalised softmax   -> `skim_forward` training (key_mask hook)
  Eq. (5) Gumbel-softmax decisions, straight-through     -> `gumbel_keep`
  Eq. (6)-(7) skim loss and total loss with λ            -> `skim_loss`
  Eq. (9) unbalanced initialisation of the last bias     -> `SkimPredictor.reset_parameters`
A skim strategy only decides which tokens stay (`SkimStrategy.decide`); the loop that masks in
training, prunes at inference and forwards skimmed tokens is shared. TR-BERT's policy
(rl_policy.py) is the second strategy. Tests: tests/test_skim.py.

Shapes: B batch, T tokens, N packed tokens, C hidden size, L layers.
Masks: 1 / True = keep (Transkimmer: "1 denotes remaining tokens"), 0 = skimmed or pad.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from flops import skim_predictor_flops
from transformer import BertConfig, BertForTask, VarLen

# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass
class SkimConfig:
    """Transkimmer's knobs, with where each default comes from."""

    tau: float = (
        0.1  # Gumbel temperature τ; Transkimmer Sec. 4.2 uses 0.1 everywhere (authors' code: 1)
    )
    skim_weight: float = (
        0.5  # harmony coefficient λ of Eq. (7); per task in Table 2 (data.py holds them)
    )
    init_mean: float = (
        5.0  # μ0 of the unbalanced initialisation, Eq. (9): "set to 5 for all experiments"
    )
    init_std: float = 0.02  # σ of Eqs. (8)-(9), BERT's initializer_range
    sample_at_eval: bool = (
        False  # DEVIATION: the authors' code samples at eval too; we decide by argmax
    )

    def __post_init__(self):
        assert self.tau > 0, f"the Gumbel temperature must be positive, got {self.tau}"
        assert self.skim_weight >= 0, f"λ must be ≥ 0, got {self.skim_weight}"


# ----------------------------------------------------------------------------------------------
# The strategy interface: what a student implements to try a new skimming idea


class SkimStrategy(nn.Module):
    """Decides, before some layers, which of the tokens entering that layer stay.

    Subclasses set `layers` (the indices where they act) and implement `decide`. The encoder loop
    (`skim_forward`) does everything else: keeps [CLS], never keeps pads, keeps a token skimmed
    once skimmed for good, forwards skimmed tokens to the output, masks in training and really
    removes tokens at inference.
    """

    layers: tuple[int, ...] = ()

    def decide(self, i: int, h: torch.Tensor, alive: torch.Tensor, batch: dict):
        """h: (B, T, C) states entering layer i; alive: (B, T) float, 1 = token still present.
        In training, T is the original length and positions are the original ones; at inference,
        T is the longest remaining sequence and the surviving tokens are packed left (position
        0 is still [CLS]). `batch` is the caller's batch dict (extra keys may guide the choice).

        Returns keep (B, T): float 0/1 in training (it may carry a gradient: it multiplies the
        attention weights and the forwarded states), bool at inference; or a tuple
        (keep, extra), where extra is kept in `SkimOutput.extras[i]` for the strategy's loss."""
        raise NotImplementedError

    def overhead_flops(self, config: BertConfig, n: int) -> int:
        """FLOPs the strategy spends scoring n tokens at one of its layers (see flops.py)."""
        return 0


@dataclass
class SkimOutput:
    """What the shared loop returns."""

    hidden: torch.Tensor  # (B, T, C) final states, every position re-assembled (Eq. 3)
    logits: torch.Tensor  # the task head on `hidden`: (B, num_labels) or (B, T, 2) for spans
    tokens_per_layer: torch.Tensor  # (B, L) long: tokens each layer processed, per example
    scored_per_layer: torch.Tensor  # (B, L) long: tokens the strategy scored before each layer
    exit_layer: (
        torch.Tensor
    )  # (B, T) long: layer before which a token was skimmed; L = never; -1 pad
    masks: list = field(
        default_factory=list
    )  # training: L tensors (B, T) float, tokens kept per layer
    extras: dict = field(
        default_factory=dict
    )  # layer -> whatever the strategy returned beside keep


# ----------------------------------------------------------------------------------------------
# The shared encoder loop


def on_present_tokens(score, h: torch.Tensor, alive: torch.Tensor, fill: float) -> torch.Tensor:
    """score(h) for a scorer that looks at each token on its own ((..., C) -> (...)), computed on
    the present tokens only, `fill` elsewhere. At inference with more than one sequence the grid a
    strategy gets is padded to the longest sequence still running, and on long texts pads can be
    half of it. h: (B, T, C); alive: (B, T), 1 = present. Returns (B, T)."""
    present = alive.bool()
    if bool(present.all()):  # one sequence, or equal lengths: nothing to leave out
        return score(h)
    out = torch.full(present.shape, fill, dtype=h.dtype, device=h.device)
    out[present] = score(h[present])  # (N,)
    return out


def skim_forward(
    model: BertForTask, strategy: SkimStrategy | None, batch: dict, prune: bool | None = None
) -> SkimOutput:
    """Run `model` with `strategy` deciding which tokens each layer sees.

    batch: input_ids, attention_mask (1 = real token), token_type_ids, each (B, T) long.
    prune: really remove tokens (Eq. 1) or mask them (Eq. 4); defaults to `not model.training`.
    With strategy None every token is kept: the plain encoder (packed at inference, no pads)."""
    prune = (not model.training) if prune is None else prune
    run = _pruned if prune else _masked
    return run(model, strategy, batch)


def _masked(model: BertForTask, strategy, batch) -> SkimOutput:
    """Training form. Skimmed tokens stay in the tensor but no kept token can attend to them:
    the renormalised key mask (Eq. 4) makes every kept token compute exactly what it would
    compute if they were removed, while gradients still reach the decisions. (Gathering would
    cut the gradient to skimmed tokens: Transkimmer Sec. 4.2.)"""
    bert = model.bert
    h = bert.embed(batch["input_ids"], batch.get("token_type_ids"))  # (B, T, C)
    alive = batch["attention_mask"].to(h.dtype)  # (B, T): pads enter with 0 and never come back
    B, T = alive.shape
    L = len(bert.layers)
    out = torch.zeros_like(h)
    tokens, scored = (
        alive.new_zeros(B, L, dtype=torch.long),
        alive.new_zeros(B, L, dtype=torch.long),
    )
    exit_layer = torch.where(alive.bool(), L, -1)  # (B, T)
    masks, extras = [], {}
    for i, layer in enumerate(bert.layers):
        if strategy is not None and i in strategy.layers:
            keep = strategy.decide(i, h, alive, batch)
            if isinstance(keep, tuple):
                keep, extras[i] = keep
            scored[:, i] = alive.sum(1).long()
            # running product: once skimmed, gone; [CLS] always stays (the classifier reads it)
            keep = torch.cat([alive[:, :1], keep[:, 1:].to(h.dtype) * alive[:, 1:]], 1)  # (B, T)
            # Eq. (3): H^L = Σ_i H^i·M^i. Tokens leaving here carry their input state to the output.
            out = out + h * (alive - keep).unsqueeze(-1)
            exit_layer = torch.where((alive - keep).detach() > 0, i, exit_layer)
            alive = keep
        tokens[:, i] = alive.detach().sum(1).long()
        masks.append(alive)
        h = layer(h, key_mask=alive)  # Eq. (4): skim attention through the key mask
    hidden = out + h * alive.unsqueeze(-1)
    return SkimOutput(hidden, model.logits(hidden), tokens, scored, exit_layer, masks, extras)


@torch.no_grad()
def _pruned(model: BertForTask, strategy, batch) -> SkimOutput:
    """Inference form. Tokens of all sequences are packed end to end (N, C), pads dropped; before
    each layer the strategy's skimmed tokens are written to the output and removed (Eq. 1), so
    every layer computes exactly the tokens each sequence still has, at any batch size."""
    bert = model.bert
    h = bert.embed(batch["input_ids"], batch.get("token_type_ids"))  # (B, T, C)
    B, T, C = h.shape
    L = len(bert.layers)
    valid = batch["attention_mask"].bool()  # (B, T)
    pos = valid.flatten().nonzero().squeeze(1)  # (N,) flat position b·T + t of each packed row
    x = h.reshape(B * T, C).index_select(0, pos)  # (N, C); as [pos], but ~3× faster on a CPU
    lengths = valid.sum(1)  # (B,)
    varlen = VarLen(lengths)
    out = h.new_zeros(B * T, C)
    exit_layer = torch.where(valid, L, -1).flatten()  # (B·T,)
    tokens, scored = lengths.new_zeros(B, L), lengths.new_zeros(B, L)
    extras = {}
    # Each tensor operation costs ~10 µs of Python and dispatch whatever its size, and at batch 1
    # a skimmed layer may take only ~3 ms: the bookkeeping below is kept to a few operations per
    # layer, gathers use index_select, and nothing is moved or rebuilt unless tokens leave.
    for i, layer in enumerate(bert.layers):
        if strategy is not None and i in strategy.layers:
            alive = varlen.key_mask()  # (B, T_i): survivors packed left, [CLS] at position 0
            keep = strategy.decide(i, varlen.pad(x), alive.to(x.dtype), batch)
            if isinstance(keep, tuple):
                keep, extras[i] = keep
            keep = keep.bool() & alive
            keep[:, 0] = True  # [CLS] always stays
            scored[:, i] = lengths
            kept = keep.sum(1)  # (B,)
            if not torch.equal(kept, lengths):  # tokens leave here (else nothing to move)
                lengths = kept
                keep = varlen.unpad(keep)  # (N_i,)
                rows, left = (
                    keep.nonzero().squeeze(1),
                    (~keep).nonzero().squeeze(1),
                )  # packed rows staying, leaving
                gone = pos[left]  # flat positions of the tokens leaving here
                out[gone] = x.index_select(
                    0, left
                )  # Eq. (3): forwarded with the state they had entering layer i
                exit_layer[gone] = i
                x, pos = x.index_select(0, rows), pos[rows]
                varlen = VarLen(lengths)
        tokens[:, i] = lengths
        x = layer(x, varlen=varlen)  # Eq. (1): the layer sees only the gathered tokens
    out[pos] = x
    hidden = out.view(B, T, C)
    return SkimOutput(
        hidden, model.logits(hidden), tokens, scored, exit_layer.view(B, T), [], extras
    )


# ----------------------------------------------------------------------------------------------
# Transkimmer


class SkimPredictor(nn.Module):
    """Eq. (2): M = Activation(MLP(H)), MLP = Linear(GELU(LN(Linear(H)))).

    DEVIATION (from the paper, as in the authors' code): a LayerNorm also comes first,
    LN -> Linear(C→C) -> LN -> GELU -> Linear(C→2); output 1 is the keep logit, 0 the skip logit."""

    def __init__(self, cfg: BertConfig, skim: SkimConfig):
        super().__init__()
        C = cfg.hidden_size
        self.ln_in = nn.LayerNorm(C, eps=cfg.layer_norm_eps)
        self.fc = nn.Linear(C, C)
        self.ln = nn.LayerNorm(C, eps=cfg.layer_norm_eps)
        self.out = nn.Linear(C, 2)
        self.reset_parameters(skim)

    def reset_parameters(self, skim: SkimConfig):
        # Eq. (8): weights ω ~ N(0, σ)
        for lin in (self.fc, self.out):
            nn.init.normal_(lin.weight, 0.0, skim.init_std)
        nn.init.zeros_(self.fc.bias)
        # Eq. (9): β_i ~ N((−1)^(i+1)·μ0, σ): the keep bias (i = 1) starts at +μ0 and the skip
        # bias (i = 0) at −μ0, so the predictor keeps every token until it learns to skim.
        with torch.no_grad():
            self.out.bias.normal_(0.0, skim.init_std)
            self.out.bias += torch.tensor([-skim.init_mean, skim.init_mean])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> logits (B, T, 2): [skip, keep]."""
        return self.out(F.gelu(self.ln(self.fc(self.ln_in(h)))))


def gumbel_keep(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Straight-through Gumbel-softmax keep mask: exactly 0/1 forward, soft gradient backward.

    Transkimmer Eq. (5): M_j = exp((log π_j + g_j)/τ) / Σ_k exp((log π_k + g_k)/τ),  g ~ Gumbel(0, 1)
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


class Transkimmer(SkimStrategy):
    """A skim predictor before every layer, layer 0 included (authors' code: on that layer's input)."""

    def __init__(self, cfg: BertConfig, skim: SkimConfig | None = None):
        super().__init__()
        self.skim = skim or SkimConfig()
        self.layers = tuple(range(cfg.num_hidden_layers))
        self.predictors = nn.ModuleList(SkimPredictor(cfg, self.skim) for _ in self.layers)

    def decide(self, i, h, alive, batch):
        if self.training or self.skim.sample_at_eval:
            return gumbel_keep(self.predictors[i](h), self.skim.tau)
        return (
            self.keep_score(i, h, alive) >= 0
        )  # deterministic at inference: keep logit ≥ skip logit

    def keep_score(self, i, h, alive):
        """Inference: keep logit − skip logit of each present token, (B, T), −inf elsewhere."""

        def score(x):
            logits = self.predictors[i](x)  # (..., 2): [skip, keep]
            return logits[..., 1] - logits[..., 0]

        return on_present_tokens(score, h, alive, float("-inf"))

    def overhead_flops(self, config, n):
        return skim_predictor_flops(config, n)


class ClsAttentionSkim(SkimStrategy):
    """A third strategy, as a worked example of the interface: keep the tokens that [CLS] attends
    to most (the signal PoWER-BERT and LTP build on), a fixed share per layer, with no training.

    Before layer i, [CLS]'s attention to each token is computed with layer i's own query and key
    projections, averaged over heads; each sequence keeps the top ⌈keep·n⌉ of its tokens. Works on
    any fine-tuned model: `skim_forward(model, ClsAttentionSkim(model.bert, keep=0.7), batch)`."""

    def __init__(self, bert, keep: float = 0.7, layers: tuple[int, ...] = ()):
        super().__init__()
        assert 0 < keep <= 1, f"keep must be in (0, 1], got {keep}"
        self.keep, self.bert = keep, [bert]  # in a list: the encoder's weights are not ours to save
        self.layers = layers or tuple(range(1, len(bert.layers)))

    def decide(self, i, h, alive, batch):
        attn = self.bert[0].layers[i].attn
        B, T, C = h.shape
        q = attn.query(h[:, :1]).view(B, 1, attn.nh, attn.hs).transpose(1, 2)  # (B, nh, 1, hs)
        k = attn.key(h).view(B, T, attn.nh, attn.hs).transpose(1, 2)  # (B, nh, T, hs)
        scores = (q @ k.transpose(-2, -1)).squeeze(2) / attn.hs**0.5  # (B, nh, T)
        received = (
            scores.masked_fill(alive[:, None] == 0, float("-inf")).softmax(-1).mean(1)
        )  # (B, T)
        received[:, 0] = float("inf")  # [CLS] is kept anyway: let it count towards the share
        k_keep = torch.ceil(self.keep * alive.sum(1)).long()  # (B,)
        rank = received.argsort(1, descending=True).argsort(1)  # 0 = most attended
        keep = (rank < k_keep[:, None]) & (alive > 0)  # (B, T)
        return keep.to(h.dtype) if self.training else keep

    def overhead_flops(self, config, n):
        # per token: its key projection (2d²) and its score against [CLS]'s query (2d). Keys are
        # recomputed rather than shared with the layer, so the encoder stays unaware of us.
        # Left out: [CLS]'s one query projection per sequence (2d², not a per-token cost).
        d = config.hidden_size
        return n * (2 * d * d + 2 * d)


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
