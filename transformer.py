"""BERT, written from scratch, that loads the released weights and matches them number for number.

Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers", NAACL 2019,
https://arxiv.org/abs/1810.04805. A post-LN encoder: embeddings -> L x (self-attention, add & norm,
feed-forward, add & norm) -> hidden states (B, T, C); a pooler and task heads on top.

The encoder knows nothing of skimming. It offers three hooks that skimming needs:
  * `key_mask` (B, T): which tokens may be attended to. A float mask may carry gradient: keys are
    then weighted by it and the softmax renormalised, so a kept token computes exactly what it
    would compute if the masked ones were removed (Transkimmer's skim attention builds on this).
  * `VarLen`: B sequences of different lengths packed end to end as (N, C), so a layer spends
    compute only on the tokens each sequence still has (real pruning at any batch size).
  * `need_probs`: a layer also returns its attention probabilities (B, nh, T, T), for strategies
    that score tokens by the attention they receive.

This file holds only the model and knows nothing of files: weights.py reads and writes checkpoints
(`weights.from_pretrained` gives a BertModel with released weights). Checked by
tests/test_transformer.py.

Shapes: B batch, T padded tokens, N packed tokens, C hidden size, nh heads, hs head size
(C = nh·hs).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass
class BertConfig:
    """Model shape. Field names are those of the released `config.json`, so loading is a filter."""

    vocab_size: int = 30522  # WordPiece vocabulary entries
    hidden_size: int = 768  # C, width of every hidden state
    num_hidden_layers: int = 12  # L, encoder layers
    num_attention_heads: int = 12  # nh; head size hs = C // nh
    intermediate_size: int = 3072  # FFN inner width f (4·C in bert-base)
    hidden_act: str = "gelu"  # exact erf GELU; the released weights were trained with it
    hidden_dropout_prob: float = 0.1  # dropout after embeddings, attention output and FFN
    attention_probs_dropout_prob: float = 0.1  # dropout on attention probabilities
    max_position_embeddings: int = 512  # longest sequence the position table covers
    type_vocab_size: int = 2  # segment ids: 0 = first text, 1 = second text of a pair
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon of the released checkpoints
    pad_token_id: int = 0  # id of [PAD]
    initializer_range: float = 0.02  # std of the normal init for new weights
    # not in config.json: "sdpa" (the fused kernel) or "eager" (explicit matmuls)
    attn_impl: str = "sdpa"

    def __post_init__(self):
        """Refuse a shape the model cannot have, naming the field: a bad config.json otherwise
        fails later and far away (a reshape deep in attention, a NaN after a dropout of 1)."""
        for name in _SIZES:
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}: every head gets hidden_size / heads dimensions"
            )
        if not _is_int(self.pad_token_id) or not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"pad_token_id must be an id of the vocabulary (0..{self.vocab_size - 1}), "
                f"got {self.pad_token_id!r}"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < 1:
                raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
        if not _is_number(self.layer_norm_eps) or not 0 < self.layer_norm_eps < 1:
            raise ValueError(f"layer_norm_eps must be in (0, 1), got {self.layer_norm_eps!r}")
        if not _is_number(self.initializer_range) or not 0 <= self.initializer_range < math.inf:
            raise ValueError(
                f"initializer_range must be a non-negative number, got {self.initializer_range!r}"
            )
        if self.hidden_act != "gelu":
            raise ValueError(
                f"hidden_act {self.hidden_act!r} is not implemented: only 'gelu', the exact erf "
                f"GELU that the released BERT checkpoints were trained with"
            )
        if self.attn_impl not in ("sdpa", "eager"):
            raise ValueError(f"attn_impl must be 'sdpa' or 'eager', got {self.attn_impl!r}")
        self.head_dim = self.hidden_size // self.num_attention_heads  # hs

    @classmethod
    def from_dict(cls, d: dict) -> "BertConfig":
        """Keep the keys we know; the rest of a released config.json does not change the model."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("attn_impl")
        return {"architectures": ["BertModel"], "model_type": "bert", **d}


# the fields that count something: each must be a positive integer
_SIZES = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
)


def _is_int(x) -> bool:
    """An integer, and not a bool (JSON's true is a Python int, but 'true layers' is no size)."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_number(x) -> bool:
    """A real number that is neither a bool nor NaN (every comparison with NaN is False)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and not math.isnan(x)


CONFIGS = {
    # the tests' model: odd sizes so that swapping two axes crashes instead of broadcasting
    "tiny": BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
    ),
    "tiny4": BertConfig(99, 32, 4, 4, 37, max_position_embeddings=64),  # "tiny", 4 layers deep
    # sentence-transformers/all-MiniLM-L6-v2: 6 layers, width 384, 12 heads (~22M parameters)
    "all-MiniLM-L6-v2": BertConfig(hidden_size=384, num_hidden_layers=6, intermediate_size=1536),
    # bert-base-uncased: 12 layers, width 768, 12 heads (~110M parameters)
    "bert-base-uncased": BertConfig(),
}


# ----------------------------------------------------------------------------------------------
# Variable-length batches (packing)


class VarLen:
    """B sequences of different lengths laid end to end as N = Σ lengths rows.

    Projections and the FFN act on packed rows (N, C) and cost exactly the real tokens; only
    attention needs the sequences apart: on a CPU it runs on each sequence's rows in turn
    (`sizes`), on a GPU it scatters them into a (B, T_max) grid and back (`pad`, `unpad`).
    The grid index is built only when first needed: pruning makes a new VarLen before every
    layer that drops tokens, and at batch 1 or on a CPU the index is never used.
    """

    def __init__(self, lengths: torch.Tensor):
        self.lengths = lengths  # (B,) long, every entry ≥ 1
        # the lengths as Python ints: sequence b is rows sum(sizes[:b]) .. + sizes[b]
        self.sizes = lengths.tolist()
        self.t_max = max(self.sizes)

    @functools.cached_property
    def index(self) -> torch.Tensor:
        """(N,) long: packed row -> position in the flattened (B·T_max) grid. The packed rows are
        the real grid cells in row-major order: sequence 0 first, then 1, ..."""
        return self.key_mask().flatten().nonzero().squeeze(1)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(N, *) -> (B, T_max, *), zeros where a sequence has ended."""
        if len(self.sizes) == 1:  # one sequence fills its grid: a view, no copy
            return x.unsqueeze(0)
        grid = x.new_zeros(len(self.sizes) * self.t_max, *x.shape[1:])
        grid[self.index] = x
        return grid.view(len(self.sizes), self.t_max, *x.shape[1:])

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T_max, *) -> (N, *)."""
        if len(self.sizes) == 1:
            return x.squeeze(0)
        # index_select: as [self.index], and faster on a CPU
        return x.reshape(-1, *x.shape[2:]).index_select(0, self.index)

    def key_mask(self) -> torch.Tensor:
        """(B, T_max) bool, True at real tokens."""
        return torch.arange(self.t_max, device=self.lengths.device) < self.lengths[:, None]


# ----------------------------------------------------------------------------------------------
# The encoder, in forward-pass order


class Embeddings(nn.Module):
    """Token + position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.pos = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.seg = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.ln = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        T = input_ids.shape[1]
        if T > self.pos.num_embeddings:
            raise ValueError(
                f"sequence of {T} tokens is longer than the model's "
                f"{self.pos.num_embeddings} positions; truncate it (--max-length)"
            )
        _check_ids(
            input_ids,
            self.tok.num_embeddings,
            "token id",
            "vocabulary",
            "the input was made for another model: tokenise with the checkpoint's own vocab.txt",
        )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        else:
            _check_ids(
                token_type_ids,
                self.seg.num_embeddings,
                "token_type_id",
                "segment types",
                "0 marks the first text, 1 the second text of a pair",
            )
        positions = torch.arange(T, device=input_ids.device)  # (T,)
        h = self.tok(input_ids) + self.pos(positions) + self.seg(token_type_ids)  # (B, T, C)
        return self.drop(self.ln(h))


def _check_ids(ids: torch.Tensor, n: int, what: str, table: str, advice: str) -> None:
    """Refuse an id outside 0..n-1 with a message that names it. nn.Embedding would say only
    "index out of range in self" on a CPU, and on a GPU fail later with a device-side assert.
    One min/max reduction over (B, T) ids: microseconds (on a GPU it waits for that kernel)."""
    if ids.numel() == 0:
        return
    lo, hi = (int(x) for x in ids.aminmax())
    if lo >= 0 and hi < n:
        return
    b, t = ((ids < 0) | (ids >= n)).nonzero()[0].tolist()  # the first offender
    raise ValueError(
        f"{what} {int(ids[b, t])} (batch row {b}, position {t}) is outside the model's {table} "
        f"of {n} (ids 0..{n - 1}); {advice}"
    )


def attends_per_sequence(device: torch.device) -> bool:
    """Where packed sequences attend one call per sequence (a CPU) rather than in one call on the
    padded grid (a GPU): see `SelfAttention._per_sequence`. A function of its own so that a test
    can send a CPU down the GPU's path (tests/test_skim.py)."""
    return device.type == "cpu"


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product attention with a mask on keys.

    softmax(q·kᵀ/√hs) over the keys a query may see, then the probabilities weight v.
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        C = cfg.hidden_size
        self.nh, self.hs, self.impl = cfg.num_attention_heads, cfg.head_dim, cfg.attn_impl
        self.query, self.key, self.value = nn.Linear(C, C), nn.Linear(C, C), nn.Linear(C, C)
        self.out = nn.Linear(C, C)
        self.p_drop = cfg.attention_probs_dropout_prob

    def forward(
        self,
        h: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        varlen: VarLen | None = None,
        need_probs: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """h: (B, T, C), or (N, C) packed with `varlen`. key_mask: (B, T) bool or float, 1 = may be
        attended. Returns the attention output (after the output projection), shaped like h.

        need_probs: also return the attention probabilities, as (out, probs). probs is
        (B, nh, T, T), after the softmax and before dropout, with probs[b, :, i, j] the weight
        of key j for query i. It is on the padded (B, T) grid even for packed input (T = the
        longest sequence, the grid of `varlen.pad`), with zeros at pad keys and pad query rows.
        A key_mask masks keys only: with padded input every query row holds probabilities, pads
        and skimmed tokens included. Getting them costs the explicit matmuls of the eager path;
        without need_probs nothing changes (the fused kernel runs as before)."""
        q, k, v = self.query(h), self.key(h), self.value(h)  # each (B, T, C) or (N, C)
        p_drop = self.p_drop if self.training else 0.0
        # several packed sequences on a CPU: attend within each (one sequence: pad is a view)
        several = varlen is not None and len(varlen.sizes) > 1 and self.impl == "sdpa"
        if several and attends_per_sequence(h.device) and not need_probs:
            return self.out(self._per_sequence(q, k, v, varlen.sizes, p_drop))  # (N, C)
        if varlen is not None:
            q, k, v = varlen.pad(q), varlen.pad(k), varlen.pad(v)  # (B, T_max, C)
            # one sequence: no pads to mask
            key_mask = None if len(varlen.sizes) == 1 else varlen.key_mask()
        B, T, C = q.shape
        # (B, nh, T, hs): one (T, hs) slice per head
        q, k, v = (x.view(B, T, self.nh, self.hs).transpose(1, 2) for x in (q, k, v))
        probs = None
        fused = self.impl == "sdpa" and not need_probs  # else the eager path, probs and all
        if fused and (key_mask is None or not key_mask.requires_grad):
            mask = None if key_mask is None else key_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
            # y (B, nh, T, hs): each query's probability-weighted mix of the values
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p_drop)
        else:
            y, probs = self._eager(q, k, v, key_mask, p_drop)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        if varlen is not None:
            y = varlen.unpad(y)  # (N, C)
            if need_probs and key_mask is not None:  # a pad query row is no token: all zeros
                probs = probs.masked_fill(~key_mask[:, None, :, None], 0.0)
        out = self.out(y)
        return (out, probs) if need_probs else out

    def _per_sequence(self, q, k, v, sizes, p_drop):
        """Packed q, k, v (N, C) -> context (N, C), attending within each sequence.

        On a CPU one attention call per sequence is cheaper than one call on a padded grid: the
        grid costs B·T_max² scores where the sequences need Σ n², plus three scatters and a
        gather, while a call costs only microseconds of Python (measured by `python bench.py
        skim`: the packed rows against the padded ones, IMDB at batch 32). A GPU
        prefers one large call: each small one would pay a kernel launch and leave the device
        idle."""
        y = []
        for qs, ks, vs in zip(q.split(sizes), k.split(sizes), v.split(sizes)):  # each (n, C)
            n = len(qs)
            # (1, nh, n, hs)
            qs, ks, vs = (x.view(1, n, self.nh, self.hs).transpose(1, 2) for x in (qs, ks, vs))
            out = F.scaled_dot_product_attention(qs, ks, vs, dropout_p=p_drop)  # (1, nh, n, hs)
            y.append(out.transpose(1, 2).reshape(n, -1))  # (n, C)
        return torch.cat(y)  # (N, C)

    def _eager(self, q, k, v, key_mask, p_drop):
        """Attention in explicit matmuls: q, k, v (B, nh, T, hs) -> (context (B, nh, T, hs),
        probabilities (B, nh, T, T) before dropout). A float key_mask m weights the keys
        (see `masked_softmax`), differentiably: the straight-through gradient of a skim decision
        flows through here."""
        # ASSIGNMENT 1 BEGIN: attention with a key mask, renormalised (assignments/01_attention.md)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.hs)  # (B, nh, T, T)
        probs = scores.softmax(-1) if key_mask is None else masked_softmax(scores, key_mask)
        return F.dropout(probs, p_drop, self.training) @ v, probs
        # ASSIGNMENT 1 END


# A bound on exponents, in nats (units of the score), that masked_softmax's body explains.
_EXP_LIMIT = 40.0


def masked_softmax(scores: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """scores (B, nh, T, T), key_mask (B, T) bool or float (may carry gradient) -> probabilities
    (B, nh, T, T) in the dtype of scores:

        probs_ij = m_j·exp(s_ij) / Σ_k m_k·exp(s_ik)

    For m ∈ {0, 1} this is the softmax over the kept keys (m = 1), zero at the others, so a kept
    token computes exactly what it would compute if the masked ones were removed; and it is
    differentiable in m and s with the formula's exact gradient. That includes a masked key that
    scores above every kept key: its gradient ∂probs_ij/∂m_j = exp(s_ij)/Σ_k m_k·exp(s_ik) grows
    as e^(its lead) and is not bounded, as in the authors' masked softmax.

    DEVIATION: Transkimmer's released code (master branch) multiplies the mask onto the
    probabilities after the softmax, without renormalising, so the kept weights of a row sum to
    less than 1 during training. We renormalise, so that training computes exactly what pruning
    (removing the skimmed tokens) computes at inference.

    Up to a lead of 80 nats the gradient is the exact one. A row with no kept key gives zeros."""
    # ASSIGNMENT 1 BEGIN: attention with a key mask, renormalised (assignments/01_attention.md)
    # Numerics. Any per-row shift c gives the same formula:
    #   m_j·exp(s_ij - c) / Σ_k m_k·exp(s_ik - c).
    # The usual c, the max over the row, keeps every weight ≤ 1; but when the kept keys all score
    # far below a masked one (by more than about 100 in float32), every kept weight underflows to
    # 0 and the row becomes 0/0 = NaN. The max over the kept keys only has the opposite problem:
    # a masked key far above it overflows to inf, and inf·0 = NaN. So:
    #   * compute in float32 when the input is narrower (float64 stays float64, so a gradient
    #     check in float64 sees the exact formula): float16 spans only e^±11 (e^-17 with
    #     subnormals), too little room for either choice, and bfloat16 rounds a sum of many
    #     weights to 3 significant digits. The cost is a float32 (B, nh, T, T) tensor in training;
    #   * shift by the max over all keys, but by no more than L = _EXP_LIMIT above the best kept
    #     key (c = min(max_all, max_kept + L)): the best kept weight is then ≥ e^-L, so the sum
    #     is > 0;
    #   * clip exponents at +L: a masked key more than 2L = 80 nats above the best kept key gets
    #     weight e^L (times m = 0, so nothing changes forward). Only then is its gradient
    #     bounded: the true value, above e^80, would leave float32's range.
    # e^±40 is far inside float32 (normal numbers span e^±87), so a weight, a sum and a ratio of
    # the two (the gradient w.r.t. m is up to e^80 ≈ 5.5e34 < 3.4e38) neither overflows nor
    # underflows.
    dtype = torch.promote_types(scores.dtype, torch.float32)  # float64 stays float64
    m = key_mask.to(dtype)[:, None, None, :]  # (B, 1, 1, T), 1 = kept
    s = scores.to(dtype)  # (B, nh, T, T); a no-op in float32 and float64
    with torch.no_grad():  # the shift cancels in the ratio: no gradient flows through it
        top_all = s.amax(-1, keepdim=True)  # (B, nh, T, 1)
        top_kept = s.masked_fill(m == 0, float("-inf")).amax(-1, keepdim=True)
        top_kept = torch.where(top_kept == float("-inf"), top_all, top_kept)  # no key kept
        shift = torch.minimum(top_all, top_kept + _EXP_LIMIT)
    weights = (s - shift).clamp(max=_EXP_LIMIT).exp() * m  # (B, nh, T, T), each ≤ e^L
    # DEVIATION: renormalised over the kept keys (the authors' code is not; see the docstring).
    # The sum is ≥ e^-L whenever a key is kept; the floor only turns a row with none into zeros.
    total = weights.sum(-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    return (weights / total).to(scores.dtype)
    # ASSIGNMENT 1 END


class FeedForward(nn.Module):
    """Position-wise FFN: Linear(C→f), exact GELU, Linear(f→C)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.up = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.down = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # Exact erf GELU: the tanh approximation of the original TF code is off by up to ~5e-4.
        return self.down(F.gelu(self.up(h)))  # (.., f) inside, (.., C) out


class EncoderLayer(nn.Module):
    """One post-LN layer: h = LN(h + Attn(h)); h = LN(h + FFN(h)).

    BERT normalises *after* the residual add, unlike the pre-LN GPT code many students know.
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.ln_attn = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn = FeedForward(cfg)
        self.ln_ffn = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(
        self,
        h: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        varlen: VarLen | None = None,
        need_probs: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """h: (B, T, C) with key_mask (B, T), or (N, C) packed with varlen. Same shape out; with
        need_probs, (out, attention probabilities (B, nh, T, T)) as SelfAttention returns them."""
        if need_probs:
            a, probs = self.attn(h, key_mask, varlen, need_probs=True)
        else:
            a, probs = self.attn(h, key_mask, varlen), None
        h = self.ln_attn(h + self.drop(a))
        h = self.ln_ffn(h + self.drop(self.ffn(h)))
        return (h, probs) if need_probs else h


class BertModel(nn.Module):
    """Embeddings, L encoder layers and the pooler (tanh(W·h_[CLS] + b), read by classifiers)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.config = cfg
        self.emb = Embeddings(cfg)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.apply(lambda m: init_weights(m, cfg.initializer_range))

    def embed(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """input_ids (B, T) long -> (B, T, C)."""
        return self.emb(input_ids, token_type_ids)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        all_layers: bool = False,
    ):
        """input_ids, attention_mask (1 = real token, 0 = pad), token_type_ids: (B, T) long.
        Returns the final hidden states (B, T, C); with all_layers, the list of L + 1 states
        (embeddings first), for layer-by-layer comparison."""
        h = self.embed(input_ids, token_type_ids)
        if attention_mask is not None:
            # Convert once for all L layers rather than in each; a mask that hides nothing is
            # dropped, so sdpa runs its unmasked kernel (transformers does the same).
            attention_mask = None if attention_mask.all() else attention_mask.bool()
        # Keep the L + 1 states only when asked: holding them all costs L times the memory of one,
        # and a heap that grows and shrinks by that much each call makes the OS hand out fresh
        # pages every time (a page fault per page, on every forward: `python bench.py encoder`
        # times the forward at bert-base size, 32×128).
        states = [h] if all_layers else None
        for layer in self.layers:
            h = layer(h, attention_mask)
            if all_layers:
                states.append(h)
        return states if all_layers else h

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, C): the [CLS] state through the pooler."""
        return torch.tanh(self.pooler(h[:, 0]))


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation for weights that are not loaded: N(0, std), zero biases, zero [PAD]
    embedding, LayerNorm = identity."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        with torch.no_grad():
            module.weight[module.padding_idx].zero_()
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------------------------
# Task heads


class BertForTask(nn.Module):
    """The encoder plus one task head, named as Hugging Face names them (`classifier`,
    `qa_outputs`).

    kind "classification" / "regression": dropout(pooled [CLS]) -> Linear(C, num_labels)
    kind "span" (SQuAD v2): Linear(C, 2) on every token -> start and end logits
    """

    def __init__(self, cfg: BertConfig, kind: str = "classification", num_labels: int = 2):
        super().__init__()
        assert kind in ("classification", "regression", "span"), f"unknown head kind {kind!r}"
        self.kind, self.num_labels = kind, (2 if kind == "span" else num_labels)
        self.bert = BertModel(cfg)
        self.drop = nn.Dropout(cfg.hidden_dropout_prob)
        self.head = nn.Linear(cfg.hidden_size, self.num_labels)
        init_weights(self.head, cfg.initializer_range)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, C) -> (B, num_labels), or (B, T, 2) for spans."""
        if self.kind == "span":
            return self.head(h)
        return self.head(self.drop(self.bert.pool(h)))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        return self.logits(self.bert(input_ids, attention_mask, token_type_ids))
