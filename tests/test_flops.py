"""Tests for flops.py: the hand-worked bert-base number, monotonicity, exact per-token attribution,
the padding settings, and exact agreement with torch's FlopCounterMode on real forwards.

Every comparison is between Python integers, so every tolerance here is exact equality.
"""

import dataclasses
import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import flops
from transformer import CONFIGS, BertModel

BERT_BASE = CONFIGS["bert-base-uncased"]
CONFIG_NAMES = ("tiny", "all-MiniLM-L6-v2", "bert-base-uncased")
METHODS = ("baseline", "transkimmer", "trbert")


class PerToken:
    """A flops.Scorer that spends `cost` FLOPs on each token it scores before each of `layers`."""

    def __init__(self, layers, cost: int):
        self.layers, self.cost = tuple(layers), cost

    def overhead_flops(self, config, n: int) -> int:
        return self.cost * n


def score_cost(cfg, method: str):
    """The methods' scorers: Transkimmer's predictor before every layer, TR-BERT's policy before
    0-indexed layers 1 and L//2; None for the baseline."""
    L = cfg.num_hidden_layers
    if method == "transkimmer":
        return PerToken(range(L), flops.skim_predictor_flops(cfg, 1))
    if method == "trbert":
        return PerToken(sorted({1, L // 2}), flops.policy_flops(cfg, 1))
    return None


def random_layers_processed(cfg, method: str, num_tokens: int, rng: random.Random) -> list[int]:
    """How many layers each token goes through, as the method could produce it: a token can leave
    only where a scorer runs (any layer for Transkimmer, the policy layers for TR-BERT)."""
    L = cfg.num_hidden_layers
    scorer = score_cost(cfg, method)
    exits = [*(scorer.layers if scorer else ()), L]
    return [L] + [rng.choice(exits) for _ in range(num_tokens - 1)]  # [CLS] goes all the way


# ----------------------------------------------------------------------------------------------
# The hand-worked number and the arithmetic


def test_bert_base_on_128_tokens_matches_the_hand_worked_number():
    layer = flops.layer_flops(BERT_BASE, 128)
    assert layer["qkv"] + layer["attn_out"] == 8 * 128 * 768**2 == 603_979_776
    assert layer["scores"] + layer["context"] == 4 * 128**2 * 768 == 50_331_648
    assert layer["ffn_up"] + layer["ffn_down"] == 4 * 128 * 768 * 3072 == 1_207_959_552
    assert sum(layer.values()) == 1_862_270_976
    total = flops.encoder_flops(BERT_BASE, [128] * 12)
    assert total == 12 * 1_862_270_976 == 22_347_251_712
    assert total // 2 == 11_173_625_856  # 11.17 GMACs


def test_predictor_and_policy_costs_are_linear_in_the_tokens_they_score():
    for n in (1, 7, 128):
        assert flops.skim_predictor_flops(BERT_BASE, n) == n * (2 * 768 * 768 + 2 * 768 * 2)
        assert flops.policy_flops(BERT_BASE, n) == n * (2 * 768 * 32 + 2 * 32)
        assert flops.policy_flops(BERT_BASE, n, hidden=5) == n * (2 * 768 * 5 + 2 * 5)


def test_count_never_decreases_as_more_tokens_are_kept():
    rng = random.Random(0)
    for name in CONFIG_NAMES:
        cfg = CONFIGS[name]
        L, costs = cfg.num_hidden_layers, score_cost(cfg, "transkimmer")
        for _ in range(20):
            processed = random_layers_processed(cfg, "transkimmer", rng.randint(1, 40), rng)
            before = flops.example_flops(
                cfg, len(processed), flops.count_tokens(processed, L), costs
            )
            t = rng.randrange(
                len(processed)
            )  # keep token t through one more layer, if it can go on
            processed[t] = min(processed[t] + 1, L)
            after = flops.example_flops(
                cfg, len(processed), flops.count_tokens(processed, L), costs
            )
            assert after >= before
        # and per layer: one more token in any layer never lowers the encoder count
        counts = [rng.randint(0, 50) for _ in range(L)]
        for i in range(L):
            more = counts[:i] + [counts[i] + 1] + counts[i + 1 :]
            assert flops.encoder_flops(cfg, more) > flops.encoder_flops(cfg, counts)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_per_token_costs_sum_exactly_to_the_example_total(name, method):
    cfg, rng = CONFIGS[name], random.Random(1)
    for _ in range(10):
        processed = random_layers_processed(cfg, method, rng.randint(1, 60), rng)
        per_token = flops.per_token_flops(cfg, processed, score_cost(cfg, method))
        counts = flops.count_tokens(processed, cfg.num_hidden_layers)
        assert sum(per_token) == flops.example_flops(
            cfg, len(processed), counts, score_cost(cfg, method)
        )


def test_a_token_that_goes_through_more_layers_costs_more():
    cfg = CONFIGS["bert-base-uncased"]
    per_token = flops.per_token_flops(cfg, [12, 12, 3, 0], score_cost(cfg, "transkimmer"))
    assert (
        per_token[0]
        == per_token[1]
        > per_token[2]
        > per_token[3]
        == flops.skim_predictor_flops(cfg, 1)
    )


def test_dropping_tokens_where_nothing_scores_is_rejected():
    cfg = CONFIGS["bert-base-uncased"]  # TR-BERT scores before layers 1 and 6 only
    with pytest.raises(AssertionError, match="nothing decides"):
        flops.example_flops(cfg, 10, [10, 10, 8] + [8] * 9, score_cost(cfg, "trbert"))
    assert flops.example_flops(cfg, 10, [10, 8] + [8] * 10, score_cost(cfg, "trbert")) > 0


# ----------------------------------------------------------------------------------------------
# Padding settings (Transkimmer Table 3)


def test_batch_padding_pads_to_the_longest_of_each_consecutive_batch():
    assert flops.batch_padded_lengths([3, 5, 2, 7, 1], batch_size=2) == [5, 5, 7, 7, 1]


def test_the_baseline_has_speedup_one_under_every_padding():
    cfg = CONFIGS["tiny"]
    lengths = [5, 9, 3]
    result = flops.dataset_speedups(
        cfg,
        lengths,
        [[n] * 2 for n in lengths],
        score_cost(cfg, "baseline"),
        max_length=16,
        batch_size=2,
    )
    assert [r.speedup for r in result.values()] == [1.0, 1.0, 1.0]
    assert result["none"].baseline_flops == sum(flops.encoder_flops(cfg, [n, n]) for n in lengths)
    assert result["sequence"].baseline_flops == 3 * flops.encoder_flops(cfg, [16, 16])


def test_transkimmer_pays_only_its_first_predictor_for_pads():
    cfg, rng = CONFIGS["all-MiniLM-L6-v2"], random.Random(2)
    costs, L = score_cost(cfg, "transkimmer"), cfg.num_hidden_layers
    processed = [random_layers_processed(cfg, "transkimmer", n, rng) for n in (5, 20, 11, 17)]
    lengths = [len(p) for p in processed]
    kept = [flops.count_tokens(p, L) for p in processed]
    result = flops.dataset_speedups(cfg, lengths, kept, costs, max_length=32, batch_size=2)
    pads = {"none": [0] * 4, "batch": [15, 0, 6, 0], "sequence": [32 - n for n in lengths]}
    for padding, r in result.items():
        pad_cost = flops.skim_predictor_flops(
            cfg, sum(pads[padding])
        )  # layer 0's predictor on the pads
        assert r.method_flops == result["none"].method_flops + pad_cost
        padded_lengths = [n + p for n, p in zip(lengths, pads[padding])]
        assert r.baseline_flops == sum(flops.encoder_flops(cfg, [n] * L) for n in padded_lengths)
    assert result["none"].speedup < result["batch"].speedup < result["sequence"].speedup
    assert result["none"].method_gflops == result["none"].method_flops / 4 / 1e9


def test_trbert_pays_layer_zero_and_its_first_policy_for_pads():
    cfg = CONFIGS["bert-base-uncased"]
    costs = score_cost(cfg, "trbert")  # policies before layers 1 and 6
    kept = [10, 4, 4, 4, 4, 4, 2, 2, 2, 2, 2, 2]  # one example of 10 real tokens
    result = flops.dataset_speedups(cfg, [10], [kept], costs, max_length=16, batch_size=1)
    padded = flops.encoder_flops(cfg, [16] + kept[1:]) + flops.policy_flops(cfg, 16 + 4)
    assert result["sequence"].method_flops == padded
    unpadded = flops.example_flops(cfg, 10, kept, costs)
    assert result["batch"].method_flops == result["none"].method_flops == unpadded


# ----------------------------------------------------------------------------------------------
# Exact agreement with torch's FlopCounterMode on real forwards


@pytest.fixture(scope="module")
def models() -> dict[str, BertModel]:
    """Randomly initialised encoders with the explicit-matmul attention. With torch 2.13 on CPU,
    FlopCounterMode does not count the fused SDPA kernel and would miss the 4n²d of attention."""
    torch.manual_seed(0)
    return {
        name: BertModel(dataclasses.replace(CONFIGS[name], attn_impl="eager")).eval()
        for name in CONFIG_NAMES
    }


def measured_flops(fn) -> int:
    """FLOPs torch's FlopCounterMode sees while fn() runs without gradients."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def run_layers(model: BertModel, h: torch.Tensor, tokens_per_layer: list[int]) -> torch.Tensor:
    """Layer i really processes only the first tokens_per_layer[i] tokens (a gather, 0 FLOPs)."""
    for layer, n in zip(model.layers, tokens_per_layer):
        h = layer(h[:, :n])  # (1, n, C)
    return h


LENGTHS = {"tiny": (1, 7, 33), "all-MiniLM-L6-v2": (7, 64, 128), "bert-base-uncased": (3, 17, 64)}


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_plain_encoder_matches_flop_counter_mode_exactly(models, name):
    model, cfg = models[name], CONFIGS[name]
    for n in LENGTHS[name]:
        input_ids = torch.randint(0, cfg.vocab_size, (1, n))  # (1, n)
        # the embedding is a lookup and the flop counter sees 0 FLOPs in it, as flops.py does
        expected = flops.encoder_flops(cfg, [n] * cfg.num_hidden_layers)
        assert measured_flops(lambda: model(input_ids)) == expected


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_layers_on_fewer_tokens_match_flop_counter_mode_exactly(models, name):
    model, cfg, rng = models[name], CONFIGS[name], random.Random(3)
    L, n = cfg.num_hidden_layers, max(LENGTHS[name])
    for _ in range(2):
        counts = sorted((rng.randint(1, n) for _ in range(L)), reverse=True)
        h = torch.randn(1, n, cfg.hidden_size)  # (1, n, C)
        assert measured_flops(lambda: run_layers(model, h, counts)) == flops.encoder_flops(
            cfg, counts
        )


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_predictor_and_policy_shapes_match_flop_counter_mode_exactly(name):
    cfg = CONFIGS[name]
    d = cfg.hidden_size
    predictor = nn.Sequential(
        nn.LayerNorm(d), nn.Linear(d, d), nn.LayerNorm(d), nn.GELU(), nn.Linear(d, 2)
    )
    policy = nn.Sequential(nn.Linear(d, 32), nn.GELU(), nn.Linear(32, 1))
    for n in (1, 7, 50):
        h = torch.randn(1, n, d)  # (1, n, C)
        assert measured_flops(lambda: predictor(h)) == flops.skim_predictor_flops(cfg, n)
        assert measured_flops(lambda: policy(h)) == flops.policy_flops(cfg, n)


# ----------------------------------------------------------------------------------------------
# End to end: the real skimmed forward, predictor or policy included


@pytest.mark.parametrize("method", ["baseline", "transkimmer", "trbert", "cls-attention"])
@pytest.mark.parametrize("name", ["tiny", "all-MiniLM-L6-v2"])
def test_pruned_skim_forward_matches_flop_counter_mode_exactly(name, method):
    """FlopCounterMode around skim_forward(prune=True), one example: the encoder on the tokens each
    layer really kept, plus the scorer on the tokens it scored, plus pooler and classifier."""
    from rl_policy import TRBertPolicy
    from skim import ClsAttentionSkim, SkimConfig, Transkimmer, skim_forward
    from transformer import BertForTask

    torch.manual_seed(0)
    cfg = dataclasses.replace(CONFIGS[name], attn_impl="eager")
    model = BertForTask(cfg, "classification", num_labels=3).eval()
    strategy = {
        "baseline": None,
        "transkimmer": Transkimmer(cfg, SkimConfig(init_mean=0.2, init_std=0.3)),
        "trbert": TRBertPolicy(cfg),
        "cls-attention": ClsAttentionSkim(model.bert, keep=0.6),
    }[method]
    if strategy is not None:
        strategy.eval()
    if method == "trbert":
        for net in strategy.nets.values():
            nn.init.normal_(net.fc2.weight, 0, 2.0)  # select some tokens, not all
    for n in (9, 23):
        batch = {
            "input_ids": torch.randint(5, cfg.vocab_size, (1, n)),
            "attention_mask": torch.ones(1, n, dtype=torch.long),
        }
        with FlopCounterMode(display=False) as counter:
            out = skim_forward(model, strategy, batch, prune=True)
        kept = out.tokens_per_layer[0].tolist()
        d = cfg.hidden_size  # + pooler and classifier, outside flops.py's count
        expected = flops.example_flops(cfg, n, kept, strategy) + 2 * d * d + 2 * d * 3
        if method != "baseline":
            assert kept[-1] < n, "nothing was skimmed: the test would not test skimming"
        assert counter.get_total_flops() == expected, (method, n, kept)
