"""bench.py: the fixed-share strategies keep exactly the share asked, and prune as they mask."""
import math

import pytest
import torch

from bench import FixedTranskimmer, FixedTRBert, evenly_spaced, keep_top
from skim import skim_forward
from transformer import CONFIGS, BertForTask

TINY = CONFIGS["tiny"]


def make_batch(lengths=(11, 8, 4), T=11):
    ids = torch.randint(5, TINY.vocab_size, (len(lengths), T))
    mask = (torch.arange(T) < torch.tensor(lengths)[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_keep_top_keeps_cls_and_the_best_scored_share_of_alive_tokens():
    score = torch.tensor([[0.0, 5.0, 1.0, 4.0, 9.0], [3.0, 2.0, 7.0, 1.0, 8.0]])
    alive = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    keep = keep_top(score, alive, 0.5)
    # row 0: 4 alive, k = 2: [CLS] and the best alive (5.0); the dead 9.0 is never kept
    # row 1: 5 alive, k = ⌈2.5⌉ = 3: [CLS], 8.0 and 7.0
    assert keep.tolist() == [[True, True, False, False, False], [True, False, True, False, True]]


@pytest.mark.parametrize("make", [lambda: FixedTranskimmer(TINY, 0.6), lambda: FixedTRBert(TINY, 0.6)])
def test_fixed_share_strategies_keep_the_share_asked_and_prune_as_they_mask(make):
    model, strategy = BertForTask(TINY).eval(), make().eval()
    batch = make_batch()
    pruned = skim_forward(model, strategy, batch, prune=True)
    masked = skim_forward(model, strategy, batch, prune=False)
    expected = []
    for n in (11, 8, 4):  # a decision before layer i keeps ⌈0.6·n⌉ of the n tokens reaching it
        row = []
        for i in range(TINY.num_hidden_layers):
            n = math.ceil(0.6 * n) if i in strategy.layers else n
            row.append(n)
        expected.append(row)
    assert pruned.tokens_per_layer.tolist() == expected
    assert torch.equal(pruned.exit_layer, masked.exit_layer)
    valid = batch["attention_mask"].bool()
    torch.testing.assert_close(pruned.hidden[valid], masked.hidden[valid], atol=1e-5, rtol=0)


def test_evenly_spaced_subset_spans_the_list():
    assert evenly_spaced(list(range(10)), 4) == [0, 2, 5, 7]
    assert evenly_spaced(list(range(3)), 0) == [0, 1, 2]
