"""bench.py: the fixed-share strategies keep exactly the share asked, and prune as they mask."""
import math

import pytest
import torch

from bench import FixedTranskimmer, FixedTRBert, evenly_spaced, keep_pattern, keep_top, main
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


@pytest.mark.parametrize("make", [lambda: FixedTranskimmer(TINY, "0.6"), lambda: FixedTRBert(TINY, "0.6"),
                                  lambda: FixedTranskimmer(TINY, "1,0.6")])
def test_fixed_share_strategies_keep_the_share_asked_and_prune_as_they_mask(make):
    model, strategy = BertForTask(TINY).eval(), make().eval()
    batch = make_batch()
    pruned = skim_forward(model, strategy, batch, prune=True)
    masked = skim_forward(model, strategy, batch, prune=False)
    expected = []
    for n in (11, 8, 4):  # a decision before layer i keeps ⌈share·n⌉ of the n tokens reaching it
        row = []
        for i in range(TINY.num_hidden_layers):
            n = math.ceil(strategy.pattern[i] * n) if i in strategy.layers else n
            row.append(n)
        expected.append(row)
    assert pruned.tokens_per_layer.tolist() == expected
    assert expected[0] != [11] * TINY.num_hidden_layers  # the pattern does drop tokens
    assert torch.equal(pruned.exit_layer, masked.exit_layer)
    valid = batch["attention_mask"].bool()
    torch.testing.assert_close(pruned.hidden[valid], masked.hidden[valid], atol=1e-5, rtol=0)


def test_keep_pattern_reads_one_share_or_one_per_layer_and_names_a_bad_one():
    assert keep_pattern("0.5", (1, 3)) == {1: 0.5, 3: 0.5}
    assert keep_pattern("1,0.3,1", (0, 1, 2)) == {0: 1.0, 1: 0.3, 2: 1.0}
    with pytest.raises(SystemExit, match="one per layer"):
        keep_pattern("0.5,0.5,0.5", (1, 3))
    with pytest.raises(SystemExit, match="numbers separated by commas"):
        keep_pattern("half", (1, 3))
    with pytest.raises(SystemExit, match=r"\(0, 1\]"):
        keep_pattern("0", (1, 3))


@pytest.mark.parametrize("args,message", [
    (["--sets", "sst2,mnli"], "'mnli' is not one of imdb, sst2"),
    (["--batch-sizes", "1,x"], "expected int values separated by commas"),
    (["--batch-sizes", "0"], "0 is not positive"),
])
def test_bad_bench_flags_stop_before_any_work_with_a_clear_message(args, message, capsys):
    with pytest.raises(SystemExit):
        main(["skim", *args])
    assert message in capsys.readouterr().err


def test_evenly_spaced_subset_spans_the_list():
    assert evenly_spaced(list(range(10)), 4) == [0, 2, 5, 7]
    assert evenly_spaced(list(range(3)), 0) == [0, 1, 2]


def test_skim_bench_runs_end_to_end_on_real_data_and_prints_every_row(minilm_dir, shared_data, capsys):
    import bench
    bench.main(["skim", "--model", str(minilm_dir), "--glue-dir", str(shared_data / "glue"),
                "--imdb-dir", str(shared_data / "imdb"), "--sst2-examples", "2", "--imdb-examples", "2",
                "--rounds", "1", "--threads", "1"])
    out = capsys.readouterr().out
    for row in ["baseline, packed", "transformers, padded", "transkimmer, keep 0.75 at layers 0,1,2,3,4,5",
                "transkimmer, keep 0.3 at 1, all elsewhere", "trbert, keep 0.5 at layers 1,3",
                "trbert, keep 0.35 at 1, all elsewhere"]:
        assert out.count(row) == 4, row  # SST-2 and IMDB, batch 1 and 32
    assert "one layer at batch 1" in out
