"""bench.py: the fixed-share strategies keep exactly the share asked, and prune as they mask."""

import math

import pytest
import torch
from conftest import DEVICES, make_batch

from bench import FixedTranskimmer, FixedTRBert, evenly_spaced, keep_pattern, keep_top, main
from skim import skim_forward
from transformer import CONFIGS, BertForTask

TINY = CONFIGS["tiny"]


def test_keep_top_keeps_cls_and_the_best_scored_share_of_alive_tokens():
    score = torch.tensor([[0.0, 5.0, 1.0, 4.0, 9.0], [3.0, 2.0, 7.0, 1.0, 8.0]])
    alive = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    keep = keep_top(score, alive, 0.5)
    # row 0: 4 alive, k = 2: [CLS] and the best alive (5.0); the dead 9.0 is never kept
    # row 1: 5 alive, k = ⌈2.5⌉ = 3: [CLS], 8.0 and 7.0
    assert keep.tolist() == [[True, True, False, False, False], [True, False, True, False, True]]


@pytest.mark.parametrize(
    "make",
    [
        lambda: FixedTranskimmer(TINY, "0.6"),
        lambda: FixedTRBert(TINY, "0.6"),
        lambda: FixedTranskimmer(TINY, "1,0.6"),
    ],
)
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


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sets", "sst2,mnli"], "'mnli' is not one of imdb, sst2"),
        (["--batch-sizes", "1,x"], "expected int values separated by commas"),
        (["--batch-sizes", "0"], "0 is not positive"),
        (["--device", "tpu"], "--device 'tpu': expected cpu, cuda or cuda:N"),
        (["--models", "gpt2"], "'gpt2' is not one of MiniLM-L6, bert-base"),
        (["--layouts", "auto,padded"], "'padded' is not one of auto, grid, packed"),
        (["--dtype", "int8"], "invalid choice: 'int8'"),
        (
            ["--random-model", "bert-base-uncased", "--checkpoint", "runs/x"],
            "leave out --random-model",
        ),
    ],
)
def test_bad_bench_flags_stop_before_any_work_with_a_clear_message(args, message, capsys):
    with pytest.raises(SystemExit):
        main(["skim", *args])
    assert message in capsys.readouterr().err


def test_a_checkpoint_that_is_not_a_skim_run_is_a_clear_error(tmp_path):
    import train
    from bench import load_run

    with pytest.raises(SystemExit, match="missing is not a run folder: no config.json"):
        load_run(str(tmp_path / "missing"), TINY)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match="was not written by train.py"):
        load_run(str(tmp_path / "other"), TINY)
    base = ["--preset", "smoke", "--train-subset", "32", "--eval-subset", "8", "--epochs", "1"]
    train.main([*base, "--out-dir", str(tmp_path / "base")])
    with pytest.raises(SystemExit, match="a baseline run makes no skim decisions"):
        load_run(str(tmp_path / "base"), TINY)
    train.main([*base, "--method", "random", "--keep-shares", "1,0.5", "--out-dir",
                str(tmp_path / "random")])  # fmt: skip
    with pytest.raises(SystemExit) as e:  # a smoke run timed beside MiniLM, the default --model
        load_run(str(tmp_path / "random"), CONFIGS["all-MiniLM-L6-v2"])
    said = str(e.value.code)
    assert "2 layers of width 32" in said and "6 layers of width 384" in said, said
    assert f"--model {tmp_path / 'random' / 'ckpt'}" in said


@pytest.mark.parametrize("name", CONFIGS)
def test_the_default_patterns_fit_every_model(name):
    """Found by a student timing a 2-layer smoke run: TR-BERT's early pattern named two policy
    layers, where a 2-layer model has one."""
    from bench import default_patterns

    transkimmer, trbert = default_patterns(CONFIGS[name])
    for pattern in transkimmer:
        FixedTranskimmer(CONFIGS[name], pattern)
    for pattern in trbert:
        FixedTRBert(CONFIGS[name], pattern)


def test_evenly_spaced_subset_spans_the_list():
    assert evenly_spaced(list(range(10)), 4) == [0, 2, 5, 7]
    assert evenly_spaced(list(range(3)), 0) == [0, 1, 2]


def test_a_gpu_that_is_not_there_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        main(["skim", "--device", "cuda"])
    assert "--device cuda, but torch sees no CUDA GPU" in capsys.readouterr().err


@pytest.mark.parametrize("device", DEVICES)
def test_layer_timings_run_on_the_device_and_wait_for_it(device, capsys, monkeypatch):
    import bench

    waits = []
    sync = bench.synchronizer(torch.device(device))
    monkeypatch.setattr(bench, "synchronizer", lambda d: lambda: waits.append(sync()))
    bert = BertForTask(TINY).eval().to(device).bert
    with torch.no_grad():
        bench.layer_cost(bert, 2, torch.device(device))
    assert "one layer at batch 1" in capsys.readouterr().out
    assert (
        len(waits) == 2 * 6 * 4 * 2
    )  # before and after each timed call: 6 sizes, 4 calls, 2 rounds


def test_skim_bench_runs_end_to_end_on_real_data_and_prints_every_row(
    minilm_dir, shared_data, capsys, tmp_path
):
    import json

    import bench

    bench.main(
        [
            "skim",
            "--model",
            str(minilm_dir),
            "--glue-dir",
            str(shared_data / "glue"),
            "--imdb-dir",
            str(shared_data / "imdb"),
            "--sst2-examples",
            "2",
            "--imdb-examples",
            "2",
            "--rounds",
            "1",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--json",
            str(tmp_path / "skim.json"),
        ]
    )
    out = capsys.readouterr().out
    assert out.count("transformers, padded") == 4  # SST-2 and IMDB, batch 1 and 32
    assert out.count("baseline, grid") == 4  # the padded grid of skim_forward, every table
    assert out.count("the layout rule picks packed for") == 8  # a CPU packs: each table, split
    for row in [
        "baseline, packed",
        "transkimmer, keep 0.75 at layers 0,1,2,3,4,5",
        "transkimmer, keep 0.35 at 1, all elsewhere",
        "trbert, keep 0.5 at layers 1,3",
        "trbert, keep 0.4 at 1, all elsewhere",
    ]:
        assert out.count(row) == 8, row  # each table, and its split of the time
    assert (
        out.count("share of each setting's time in its layers") == 4
    )  # where the time goes, per table
    assert "one layer at batch 1" in out
    saved = json.loads((tmp_path / "skim.json").read_text())
    assert saved["device"] == "cpu" and saved["threads"] == 1
    assert len(saved["tables"]) == 4 + 4 + 1  # 4 tables, their 4 splits, the layer's cost
    rows = saved["tables"][0]["rows"]
    assert rows[0][0] == "baseline, padded" and all(isinstance(v, float) for v in rows[0][1:])


def test_skim_bench_times_a_random_model_in_both_layouts_and_in_bfloat16(
    minilm_dir, shared_data, capsys, tmp_path
):
    import json

    import bench

    common = ["skim", "--model", str(minilm_dir), "--glue-dir", str(shared_data / "glue")]
    bench.main(
        [*common, "--sets", "sst2", "--sst2-examples", "3", "--batch-sizes", "3", "--rounds", "1",
         "--threads", "1", "--random-model", "all-MiniLM-L6-v2", "--layouts", "auto,packed,grid",
         "--dtype", "bf16", "--transkimmer-keep", "0.5", "--trbert-keep", "0.5",
         "--json", str(tmp_path / "skim.json")]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "bf16, eval, no_grad" in out and "one layer at batch 1, bfloat16" in out
    saved = json.loads((tmp_path / "skim.json").read_text())
    assert saved["dtype"] == "bf16"
    table, split = saved["tables"][:2]
    names = [row[0] for row in table["rows"]]
    for layout in ("auto", "packed", "grid"):  # each method in each layout, named by it
        assert f"transkimmer, keep 0.5 at layers 0,1,2,3,4,5 ({layout})" in names
        assert f"trbert, keep 0.5 at layers 1,3 ({layout})" in names
    kept = {row[0]: row[1] for row in table["rows"]}
    # the same decisions whatever the layout: the same tokens kept and the same FLOPs
    for method in ("transkimmer, keep 0.5 at layers 0,1,2,3,4,5", "trbert, keep 0.5 at layers 1,3"):
        assert kept[f"{method} (packed)"] == kept[f"{method} (grid)"] == kept[f"{method} (auto)"]
        assert kept[f"{method} (grid)"] < 0.7
    assert len(split["rows"]) == 1 + 6  # the packed baseline and six method rows
    with pytest.raises(SystemExit):  # a layout we do not know
        bench.main([*common, "--layouts", "padded"])
    assert "--layouts" in capsys.readouterr().err


def test_time_split_shares_add_up_and_leave_the_modules_as_they_were(capsys):
    from bench import time_split

    model, strategy = BertForTask(TINY).eval(), FixedTranskimmer(TINY, "0.5").eval()
    batches = [make_batch(), make_batch((6, 3), 6)]
    with torch.no_grad():
        before = skim_forward(model, strategy, batches[0], prune=True)
        time_split(
            "tiny",
            3,
            batches,
            {"baseline, packed": 1.0, "fixed": 0.5},
            model,
            {"fixed": (model, strategy, "auto")},
            TINY,
        )
        after = skim_forward(model, strategy, batches[0], prune=True)
    rows = {
        line.split("  ")[0]: line.split()[-6:]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith(("baseline, packed", "fixed"))
    }
    for name, (layers, deciding, elsewhere, *_) in rows.items():
        assert math.isclose(float(layers) + float(deciding) + float(elsewhere), 1, abs_tol=0.015), (
            name
        )
    assert (
        rows["baseline, packed"][1] == "0.00" and float(rows["fixed"][1]) > 0
    )  # only a strategy decides
    assert rows["baseline, packed"][3:] == ["1.00", "1.00", "1.00"]  # the baseline against itself
    # the timing wrappers are gone: the class's own forward and decide run again, same numbers
    assert all(
        "forward" not in vars(layer) for layer in model.bert.layers
    ) and "decide" not in vars(strategy)
    torch.testing.assert_close(after.hidden, before.hidden)


# ----------------------------------------------------------------------------------------------
# benchmarks/gpu.py: the carried checkpoint and the summary of benchmarks/gpu.sh


def gpu_helper():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "gpu.py"
    spec = importlib.util.spec_from_file_location("gpu_helper", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_float16_checkpoint_is_expanded_to_float32_with_its_values(tmp_path, capsys):
    from weights import read_safetensors, write_safetensors

    gpu = gpu_helper()
    src = tmp_path / "half"
    src.mkdir()
    weights = {"a.weight": torch.randn(3, 4), "ids": torch.arange(3)}
    write_safetensors({k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
                      src / "model.safetensors")  # fmt: skip
    (src / "config.json").write_text("{}")
    gpu.expand(src, tmp_path / "full")
    assert capsys.readouterr().out.strip() == str(tmp_path / "full")
    full = read_safetensors(tmp_path / "full" / "model.safetensors")
    assert full["a.weight"].dtype == torch.float32 and full["ids"].dtype == torch.int64
    assert torch.equal(full["a.weight"], weights["a.weight"].half().float())
    assert (tmp_path / "full" / "config.json").is_file()
    gpu.expand(tmp_path / "full", tmp_path / "again")  # float32 already: used where it is
    assert capsys.readouterr().out.strip() == str(tmp_path / "full")


def test_the_gpu_summary_reports_tests_runs_and_steps(tmp_path):
    import json

    gpu = gpu_helper()
    work = tmp_path / "work"
    (work / "sst2-baseline").mkdir(parents=True)
    (work / "pytest-cuda.xml").write_text(
        '<testsuites><testsuite><testcase classname="t" name="ok"/>'
        '<testcase classname="t" name="bad"><failure message="boom"/></testcase>'
        '<testcase classname="t" name="off"><skipped/></testcase></testsuite></testsuites>'
    )
    speed = {"none": {"speedup": 1.0}, "sequence": {"speedup": 1.0}}
    result = {"method": "baseline", "metrics": {"accuracy": 0.9}, "kept": 1.0, "flops": speed,
              "kept_per_layer": [1.0, 1.0], "wall_time_s": 3.0, "case_study": ["long"]}  # fmt: skip
    (work / "sst2-baseline" / "results.json").write_text(json.dumps(result))
    (work / "steps.jsonl").write_text('{"step": "tests", "status": "ok", "wall_s": 5}\n')
    gpu.summary(work, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["tests"]["passed"] == 1 and saved["tests"]["skipped"] == 1
    assert saved["tests"]["failures"] == [{"test": "t::bad", "message": "boom"}]
    assert "case_study" not in saved["train"]["baseline"]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| baseline | 90.00 |" in table and "FAILED t::bad: boom" in table
    assert "Skimming against the baselines" not in table  # no skim bench ran


def test_the_gpu_summary_sets_each_skimmed_row_against_its_target(tmp_path):
    import json

    gpu = gpu_helper()
    header = ["setting", "kept", "tokens/s", "wall× vs padded", "wall× vs packed",
              "FLOPs× vs packed", "wall/FLOPs"]  # fmt: skip

    def table(where, B, model, rows):
        meta = {"set": where, "batch": B, "model": model, "dtype": "bf16", "table": "speed"}
        return {"title": f"{where}, batch {B}", "header": header, "rows": rows, "meta": meta}

    early = "transkimmer, keep 0.35 at 1, all elsewhere"
    tables = [
        table("sst2", 32, "bert-base-uncased", [
            ["baseline, padded", 1, 9, 1.0, 1.6, 0.5, 3.2],  # a baseline: no target
            [f"{early} (auto)", 0.5, 9, 1.07, 1.9, 2.0, 0.95],
            [f"{early} (grid)", 0.5, 9, 1.07, 1.9, 2.0, 0.95],  # a forced layout: no target
        ]),
        table("imdb", 32, "bert-base-uncased", [[f"{early} (auto)", 0.5, 9, 3.0, 1.5, 2.1, 0.71]]),
        table("imdb", 32, "/some/minilm", [[f"{early} (auto)", 0.5, 9, 3.0, 1.5, 2.1, 0.5]]),
        table("imdb", 1, "bert-base-uncased", [["trbert, trained", 0.5, 9, 1.2, 1.2, 2, 0.6]]),
    ]  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    (work / "bench-skim-base-bf16.json").write_text(
        json.dumps({"command": "bench.py skim", "device_name": "a GPU", "tables": tables})
    )
    gpu.summary(work, tmp_path / "out")
    lines = (tmp_path / "out" / "results.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("| skim-base-bf16 |")]
    assert rows == [
        f"| skim-base-bf16 | sst2 | 32 | {early} (auto) | wall× vs padded | 1.07 | 1.00 | yes |",
        f"| skim-base-bf16 | imdb | 32 | {early} (auto) | wall/FLOPs | 0.71 | 0.80 | no |",
        "| skim-base-bf16 | imdb | 1 | trbert, trained | wall× vs padded | 1.20 | 1.00 | yes |",
    ]
