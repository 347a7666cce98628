"""Analytic FLOP counts for a BERT encoder that skims tokens, on Python integers only.

Cost model behind every speedup we report for Transkimmer (Guan et al., ACL 2022,
https://arxiv.org/abs/2205.07324) and TR-BERT (Ye et al., NAACL 2021, https://arxiv.org/abs/2105.11618).
A multiply-add is 2 FLOPs, so (m×k)@(k×n) costs 2mkn, as in torch.utils.flop_counter; the papers'
tools counted MACs = FLOPs / 2. Counted: the matmuls of each layer with n tokens, hidden d, FFN f
(Q, K, V and output projections 8nd², attention scores and context 4n²d, FFN up and down 4ndf),
plus the matmuls of the skim predictor or policy. Left out for every method alike: embeddings,
LayerNorm, softmax, GELU, biases, residual adds, pooler and task heads (well under 1% below).
Worked example, bert-base (d = 768, f = 3072, 12 layers) on 128 tokens, one layer:
  8·128·768² + 4·128²·768 + 4·128·768·3072 = 603,979,776 + 50,331,648 + 1,207,959,552
  = 1,862,270,976 FLOPs; ×12 = 22,347,251,712 FLOPs = 11.17 GMACs per sequence.
Symbols: n tokens, d hidden, f FFN width, L layers, k layers a token went through.
Checked, exactly, against torch's FlopCounterMode by tests/test_flops.py.
"""

from dataclasses import dataclass
from typing import Protocol, Sequence


class Config(Protocol):
    """Any config with these fields, e.g. transformer.BertConfig (flops.py imports none of ours)"""

    hidden_size: int  # d
    intermediate_size: int  # f, FFN width
    num_hidden_layers: int  # L


# ----------------------------------------------------------------------------------------------
# The encoder: one layer, then all L


def layer_flops(config: Config, n: int) -> dict[str, int]:
    """FLOPs of one encoder layer on n tokens, per matmul in forward order; total = sum(.values()).

    Heads do not change the count: nh heads of width d/nh cost nh · 2n²(d/nh) = 2n²d for the scores.
    TR-BERT Sec. 3.3 calls this O(n²d) for attention and O(nd²) for the FFN; here it is exact.
    """
    # ASSIGNMENT 5 BEGIN: FLOPs of a skimmed forward (assignments/05_flops.md)
    d, f = config.hidden_size, config.intermediate_size
    return {
        "qkv": 3 * 2 * n * d * d,  # three (n×d)@(d×d) projections
        "scores": 2 * n * n * d,  # Q Kᵀ: (n×d)@(d×n), summed over heads
        "context": 2 * n * n * d,  # probs V: (n×n)@(n×d), summed over heads
        "attn_out": 2 * n * d * d,  # output projection (n×d)@(d×d)
        "ffn_up": 2 * n * d * f,  # (n×d)@(d×f)
        "ffn_down": 2 * n * f * d,  # (n×f)@(f×d)
    }
    # ASSIGNMENT 5 END


def encoder_flops(config: Config, tokens_per_layer: Sequence[int]) -> int:
    """FLOPs of the L encoder layers for one example whose layer i processes tokens_per_layer[i].

    No predictor, no embeddings, no heads. The plain encoder on n tokens:
    encoder_flops(config, [n] * L).
    """
    assert len(tokens_per_layer) == config.num_hidden_layers, "need one token count per layer"
    return sum(sum(layer_flops(config, n).values()) for n in tokens_per_layer)


# ----------------------------------------------------------------------------------------------
# What deciding costs: the scorer that runs before a layer and picks the tokens it keeps


def skim_predictor_flops(config: Config, n: int) -> int:
    """Transkimmer Eq. (2) skim predictor on n tokens, in the authors' code's form:
    LN → Linear(d→d) → LN → GELU → Linear(d→2)."""
    d = config.hidden_size
    return 2 * n * d * d + 2 * n * d * 2


def policy_flops(config: Config, n: int, hidden: int = 32) -> int:
    """TR-BERT Eq. (2) policy network on n tokens: Linear(d→hidden) → GELU → Linear(hidden→1)."""
    d = config.hidden_size
    return 2 * n * d * hidden + 2 * n * hidden * 1


class Scorer(Protocol):
    """What deciding costs. Every skim strategy (skim.SkimStrategy) is one; None: no scorer."""

    layers: Sequence[int]  # layers before which it scores the tokens reaching them (0-indexed)

    def overhead_flops(self, config: Config, n: int) -> int:
        """FLOPs it spends scoring n tokens before one of its layers: any function of n, even 0."""
        ...


def scoring_flops(config: Config, scorer: Scorer | None, arriving: Sequence[int]) -> list[int]:
    """FLOPs the scorer spends before each layer: overhead_flops(n) where it acts, n being the
    tokens that reach that layer (arriving[i]), 0 elsewhere. Charged on the real n at each layer,
    so a cost that is not linear in n (say, quadratic) is charged exactly."""
    layers = set(scorer.layers) if scorer is not None else set()
    return [scorer.overhead_flops(config, n) if i in layers else 0 for i, n in enumerate(arriving)]


# ----------------------------------------------------------------------------------------------
# One example: its total, and what each of its tokens cost


def count_tokens(layers_processed: Sequence[int], num_layers: int) -> list[int]:
    """Tokens each layer processed, from how many layers each token went through.

    layers_processed[t] = k: token t was processed by layers 0..k-1 and not after (0 ≤ k ≤ L).
    This is the only pattern skimming allows, since a dropped token never comes back; from the
    running-product keep masks the model returns, k = keep_masks[:, t].sum().
    """
    assert all(0 <= k <= num_layers for k in layers_processed), "need 0 <= k <= L for every token"
    return [sum(k > i for k in layers_processed) for i in range(num_layers)]


def example_flops(
    config: Config,
    num_tokens: int,
    tokens_per_layer: Sequence[int],
    scorer: Scorer | None = None,
) -> int:
    """FLOPs of one example: the encoder on the tokens each layer processed, plus its scorer.

    num_tokens: tokens given to the encoder. tokens_per_layer[i]: tokens layer i processed.
    The scorer before layer i scores every token that reaches it (a token must be scored to be
    dropped): the tokens layer i-1 processed, or num_tokens before layer 0. None: the baseline.
    """
    arriving = [num_tokens, *tokens_per_layer[:-1]]
    layers = set(scorer.layers) if scorer is not None else set()
    for i, (n_in, n) in enumerate(zip(arriving, tokens_per_layer)):
        assert n <= n_in, f"layer {i} processes {n} tokens but only {n_in} reach it"
        assert n == n_in or i in layers, f"layer {i} drops tokens but nothing decides before it"
    return encoder_flops(config, tokens_per_layer) + sum(scoring_flops(config, scorer, arriving))


def per_token_flops(
    config: Config, layers_processed: Sequence[int], scorer: Scorer | None = None
) -> list[int]:
    """FLOPs each input token cost; they sum exactly to
    example_flops(config, len(layers_processed), count_tokens(layers_processed, L), scorer).

    layers_processed[t] = k as in count_tokens. At each layer i < k, token t pays its own rows of
    the projections and FFN (8d² + 4df) and its query's row of scores and of context (2·n_i·d
    each, n_i = tokens in layer i). Each scorer's cost is shared by the tokens it scored (those
    that reached it, up to the one where a token was dropped): an equal integer share each, the
    remainder of the division to the first token ([CLS], which reaches every scorer).
    """
    # ASSIGNMENT 5 BEGIN: FLOPs of a skimmed forward (assignments/05_flops.md)
    d, f, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    n = count_tokens(layers_processed, L)
    arriving = [len(layers_processed), *n[:-1]]
    scoring = scoring_flops(config, scorer, arriving)
    costs = []
    for t, k in enumerate(layers_processed):
        own = sum(8 * d * d + 4 * d * f + 4 * n[i] * d for i in range(k))
        share = sum(scoring[i] // arriving[i] for i in range(min(k + 1, L)) if arriving[i])
        costs.append(own + share)
    costs[0] += sum(c - (c // a) * a for c, a in zip(scoring, arriving) if a)
    return costs
    # ASSIGNMENT 5 END


# ----------------------------------------------------------------------------------------------
# A dataset: speedup under the three padding settings of Transkimmer Table 3


@dataclass(frozen=True)
class Speedup:
    """Dataset totals under one padding setting; speedup = Σ baseline FLOPs / Σ method FLOPs."""

    padding: (
        str  # "none" (real lengths), "batch" (longest in the batch) or "sequence" (fixed length)
    )
    num_examples: int
    baseline_flops: int  # Σ over examples: the plain encoder on every position
    method_flops: (
        int  # Σ over examples: the encoder on the tokens it kept, plus predictor or policy
    )

    @property
    def speedup(self) -> float:
        """Σ baseline / Σ method: a ratio of sums, so long examples weigh more."""
        return self.baseline_flops / self.method_flops

    @property
    def baseline_gflops(self) -> float:
        """Baseline GFLOPs per example (MACs are half: results.json also holds baseline_gmacs)."""
        return self.baseline_flops / self.num_examples / 1e9

    @property
    def method_gflops(self) -> float:
        """Method GFLOPs per example."""
        return self.method_flops / self.num_examples / 1e9


def batch_padded_lengths(real_lengths: Sequence[int], batch_size: int) -> list[int]:
    """Each example's length once padded to the longest of its batch (consecutive batches)."""
    padded = []
    for start in range(0, len(real_lengths), batch_size):
        batch = real_lengths[start : start + batch_size]
        padded += [max(batch)] * len(batch)
    return padded


def dataset_speedups(
    config: Config,
    real_lengths: Sequence[int],
    tokens_per_layer: Sequence[Sequence[int]],
    scorer: Scorer | None,
    max_length: int,
    batch_size: int,
) -> dict[str, Speedup]:
    """Speedup over a dataset for padding "none" (our headline), "batch" and "sequence".

    real_lengths[e]: real tokens of example e; tokens_per_layer[e][i]: real tokens layer i
    processed.
    "batch" pads to the longest in each batch of batch_size, in the given order (the paper notes
    this depends on batch size and order); "sequence" pads to the task's max_length (Table 2).
    The baseline processes every position at every layer. The method drops pads at its first
    decision, so only the layers before it and its first scorer pay for them: Transkimmer pays its
    layer-0 predictor on pads (it really scores every position), TR-BERT layer 0 and its first
    policy. Under "none" there are no pads, and scorers see real tokens only.
    """
    L = config.num_hidden_layers
    first = min(scorer.layers, default=L) if scorer is not None else L
    settings = {
        "none": list(real_lengths),
        "batch": batch_padded_lengths(real_lengths, batch_size),
        "sequence": [max_length] * len(real_lengths),
    }
    results = {}
    for padding, padded_lengths in settings.items():
        baseline = method = 0
        for real, padded, kept in zip(real_lengths, padded_lengths, tokens_per_layer, strict=True):
            assert real <= padded, f"an example of {real} tokens is longer than max_length {padded}"
            pads = padded - real
            baseline += encoder_flops(config, [padded] * L)
            with_pads = [n + pads if i < first else n for i, n in enumerate(kept)]
            method += example_flops(config, padded, with_pads, scorer)
        results[padding] = Speedup(padding, len(real_lengths), baseline, method)
    return results
