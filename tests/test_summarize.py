"""benchmarks/summarize.py: the README's results rows against their runs' results.json."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def fake_run(folder: Path, acc: float, speedup: float, task="sst2", method="transkimmer"):
    folder.mkdir(parents=True)
    flops = {p: {"speedup": speedup * k, "method_gflops": 0.5} for p, k in
             [("none", 1), ("batch", 2), ("sequence", 3)]}  # fmt: skip
    result = {"method": method, "task": task, "metrics": {"accuracy": acc, "main": acc},
              "kept_per_layer": [1.0, 0.5], "flops": flops, "wall_time_s": 60}  # fmt: skip
    (folder / "results.json").write_text(json.dumps(result))


def summarize(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    script = ROOT / "benchmarks" / "summarize.py"
    return subprocess.run([sys.executable, script, *args], cwd=cwd, capture_output=True, text=True)


def test_check_finds_the_stale_rows_of_single_runs_and_of_seed_groups(tmp_path):
    fake_run(tmp_path / "runs" / "sst2-minilm-baseline", 0.8647, 1.0)
    fake_run(tmp_path / "runs" / "glue-rte-tk", 0.70, 2.5)
    for seed, acc in [(42, 0.85), (43, 0.86), (44, 0.87)]:
        fake_run(tmp_path / "runs" / f"sst2-minilm-transkimmer-s{seed}", acc, 1.5)
    (tmp_path / "README.md").write_text(
        "| method | dev acc. | speedup, no padding | command |\n|---|---|---|---|\n"
        "| baseline | 86.47 | 1.00× | `bash benchmarks/sst2_minilm.sh baseline` |\n"
        "| rte | 71.00 | 2.50× | `runs/glue-rte-tk` |\n\n"
        "| runs | seeds | dev (mean ± sd) | speedup, no padding |\n|---|---|---|---|\n"
        "| `runs/sst2-minilm-transkimmer-s*` | 3 | 86.00 ± 1.00 | 1.50 ± 0.00× |\n"
        "| `runs/sst2-minilm-nothing-s*` | 3 | 1.00 ± 0.00 | 1.00 ± 0.00× |\n"
    )
    out = summarize(tmp_path, "--check", "README.md")
    assert out.returncode == 1, out.stderr  # one stale row
    lines = out.stdout.splitlines()
    assert "ok: baseline" in lines
    assert any(line.startswith("stale: rte") and "70.00" in line for line in lines)
    assert "ok: `runs/sst2-minilm-transkimmer-s*`" in lines
    assert any(line.startswith("unchecked: `runs/sst2-minilm-nothing-s*`") for line in lines)


def test_seed_and_glue_tables_print_what_check_reads_back(tmp_path):
    for seed, acc in [(42, 0.85), (43, 0.87)]:
        fake_run(tmp_path / "runs" / f"x-s{seed}", acc, 2.0)
    fake_run(tmp_path / "runs" / "glue-cola", 0.5, 1.25, task="cola")
    seeds = summarize(tmp_path, "--seeds", "runs/x-s42", "runs/x-s43").stdout
    assert "| `runs/x-s*` | 2 | 86.00 ± 1.41 | 2.00 ± 0.00× | 1.00 / 0.50 |" in seeds
    glue = summarize(tmp_path, "--glue", "runs/glue-cola").stdout
    stale = glue.replace("| 2.50× |", "| 2.40× |")  # a wrong batch-padding speedup is caught
    (tmp_path / "README.md").write_text(stale)
    assert summarize(tmp_path, "--check", "README.md").returncode == 1
    assert (
        "| `runs/glue-cola` | cola | transkimmer | accuracy | 50.00 | 1.25× | 2.50× | 3.75× |"
        in glue
    )
    (tmp_path / "README.md").write_text(seeds + "\n" + glue)
    assert summarize(tmp_path, "--check", "README.md").returncode == 0


def test_check_reads_the_share_of_tokens_per_layer_and_names_the_file(tmp_path):
    fake_run(tmp_path / "runs" / "synthetic-ltp", 1.0, 1.72)  # kept_per_layer [1.0, 0.5]
    fake_run(tmp_path / "runs" / "hard-baseline-s1", 1.0, 1.0)
    table = (
        "| method | dev acc. | speedup, no padding | share of tokens per layer | command |\n"
        "|---|---|---|---|---|\n"
        "| ltp | 100.00 | 1.72× | {shares} | `python train.py --out-dir runs/synthetic-ltp` |\n\n"
        "| run | runs | dev (mean ± sd) | speedup, no padding | share of tokens per layer |\n"
        "|---|---|---|---|---|\n"
        "| baseline | `runs/hard-baseline-s*` | 100.00 ± 0.00 | 1.00 ± 0.00× | 1.00 / 0.50 |\n"
    )
    (tmp_path / "guide.md").write_text(table.format(shares="1.00 / 0.50"))
    out = summarize(tmp_path, "--check", "guide.md")
    assert out.returncode == 0 and out.stdout.count("ok: ") == 2, out.stdout
    (tmp_path / "guide.md").write_text(table.format(shares="1.00 / 0.26"))  # a stale share
    out = summarize(tmp_path, "--check", "guide.md")
    assert out.returncode == 1 and "stale: ltp: guide.md {" in out.stdout, out.stdout
    (tmp_path / "guide.md").write_text(table.format(shares="all 1.00"))  # the short form, read
    assert "stale: ltp" in summarize(tmp_path, "--check", "guide.md").stdout


def forge(folder: Path, change) -> None:
    """Change a fake run's results.json in place (json writes NaN and 10**400 as Python does)."""
    r = json.loads((folder / "results.json").read_text())
    change(r)
    (folder / "results.json").write_text(json.dumps(r))


FORGED = {  # what a forger writes into results.json -> what the one line names
    "a 400-digit main": (lambda r: r["metrics"].update(main=10**400), "metrics.main is not"),
    "a NaN main": (lambda r: r["metrics"].update(main=float("nan")), "NaN or infinite"),
    "main as a percent": (lambda r: r["metrics"].update(main=37.0), "outside [-1, 1]"),
    "an infinite speedup": (lambda r: r["flops"]["none"].update(speedup=float("inf")), "speedup"),
    "a negative speedup": (lambda r: r["flops"]["sequence"].update(speedup=-2), "outside [0.5"),
    "a share of 7": (lambda r: r.update(kept_per_layer=[-3, 7]), "kept_per_layer is not"),
    "50x keeping all": (lambda r: (r.update(kept_per_layer=[1.0, 1.0]),
                                   r["flops"]["none"].update(speedup=50.0)), "every layer kept"),
    "9x at a mean share of 0.5": (lambda r: (r.update(kept_per_layer=[0.5, 0.5]),
                                             r["flops"]["none"].update(speedup=9.0)), "4 times"),
    "a huge wall time": (lambda r: r.update(wall_time_s=10**400), "wall_time_s is not"),
    "a huge GFLOPs": (lambda r: r["flops"]["none"].update(method_gflops=10**400), "method_gflops"),
}  # fmt: skip


@pytest.mark.parametrize("what", FORGED)
def test_a_forged_or_impossible_number_is_one_line_in_every_table(tmp_path, what):
    change, says = FORGED[what]
    fake_run(tmp_path / "runs" / "x-s1", 0.9, 1.2)
    forge(tmp_path / "runs" / "x-s1", change)
    for args in ([], ["--glue"], ["--seeds"], ["--pareto"]):
        out = summarize(tmp_path, *args, "runs/x-s1")
        assert out.returncode == 1 and "Traceback" not in out.stderr, (args, out.stderr)
        error = out.stderr.splitlines()[-1]
        assert error.startswith("error: runs/x-s1/results.json: ") and says in error, error
    assert not (tmp_path / "benchmarks").exists()  # --pareto wrote nothing


@pytest.mark.parametrize(
    "name,change",
    [
        ("x\n| forged | 99.99 |-s1", None),  # a folder's name starts a row of its own
        ("x-s1", lambda r: r.update(metrics={"main": 0.5, "acc\n| forged | 99.99 |": 0.5})),
        ("x-s1", lambda r: r.update(method="ltp | 99.99 | <img src=x onerror=alert(1)>")),
        ("x-s1", lambda r: r.update(task="<script>alert(1)</script>")),
        ("x[1](javascript:alert(1))-s1", None),  # a link
        ("x`y-s1", None),  # the end of a code span
    ],
)
def test_nothing_from_a_run_forges_markdown(tmp_path, name, change):
    """Every name a table prints comes from a run, and a run is data anyone could have written:
    a control character or one of | < > [ ] ` is refused in one line, never printed."""
    fake_run(tmp_path / "runs" / name, 0.9, 1.2)
    if change:
        forge(tmp_path / "runs" / name, change)
    for args in ([], ["--glue"], ["--seeds"], ["--pareto"]):
        out = summarize(tmp_path, *args, f"runs/{name}")
        assert out.returncode == 1 and "Traceback" not in out.stderr, (args, out.stderr)
        assert "forged" not in out.stdout and "<" not in out.stdout and "](" not in out.stdout
        assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("error: "), out.stderr


def test_help_an_unknown_option_and_check_of_several_pages(tmp_path):
    assert summarize(tmp_path, "--help").returncode == 0
    assert "--pareto" in summarize(tmp_path, "-h").stdout
    out = summarize(tmp_path, "--bogus")  # not taken for a run folder to skip
    assert out.returncode == 1 and "no option --bogus" in out.stderr
    fake_run(tmp_path / "runs" / "sst2-minilm-baseline", 0.8647, 1.0)
    row = "| baseline | {} | 1.00× | `bash benchmarks/sst2_minilm.sh baseline` |\n"
    head = "| method | dev acc. | speedup, no padding | command |\n|---|---|---|---|\n"
    (tmp_path / "a.md").write_text(head + row.format("86.47"))
    (tmp_path / "b.md").write_text(head + row.format("12.00"))
    assert summarize(tmp_path, "--check", "a.md").returncode == 0
    out = summarize(tmp_path, "--check", "a.md", "b.md")  # the second page's row is stale
    assert out.returncode == 1 and "stale: baseline" in out.stdout


def test_pareto_draws_scores_that_span_the_whole_range_and_writes_all_or_nothing(tmp_path):
    """Found by review: a correlation of -0.95 beside 0.95 (190 points) found no grid step, and
    the figure failed after the records were written, so every later --pareto read them back."""
    for name, score, knob in (("pareto-lo", -0.95, 0.1), ("pareto-hi", 0.95, 0.2)):
        fake_run(tmp_path / "runs" / name, score, 1.2, task="cola")
        forge(
            tmp_path / "runs" / name,
            lambda r: r.update(
                metrics={"mcc": score, "main": score}, config={"options": {"skim_weight": knob}}
            ),
        )
    out = summarize(tmp_path, "--pareto", "runs/pareto-lo", "runs/pareto-hi")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert (tmp_path / "docs" / "figures" / "pareto.svg").read_text().startswith("<svg")
    records = json.loads((tmp_path / "benchmarks" / "results" / "pareto.json").read_text())
    assert sorted(r["accuracy"] for r in records) == [-95.0, 95.0]


@pytest.mark.parametrize(
    "change,says",
    [
        (lambda r: r.update(task="mrpc"), "its task is mrpc, not sst2"),
        (lambda r: r.update(method="ltp"), "its method is ltp, not transkimmer"),
        (lambda r: r.update(kept_per_layer=[1.0, 0.5, 0.1, 0.1]), "number of layers is 4, not 2"),
    ],
)
def test_seeds_of_another_task_method_or_depth_are_not_averaged(tmp_path, change, says):
    fake_run(tmp_path / "runs" / "grp-s1", 0.9, 1.2)
    fake_run(tmp_path / "runs" / "grp-s2", 0.8, 1.2)
    forge(tmp_path / "runs" / "grp-s2", change)
    out = summarize(tmp_path, "--seeds", "runs/grp-s1", "runs/grp-s2")
    assert (
        out.returncode == 1 and out.stderr.startswith("error: runs/grp-s2: ") and says in out.stderr
    )
    assert "not seeds of one run" in out.stderr and "|" not in out.stdout.replace("| runs |", "")


def test_pareto_refuses_two_runs_of_one_name(tmp_path):
    for where in ("a", "b"):
        fake_run(tmp_path / where / "pareto-t", 0.9, 1.2)
    out = summarize(tmp_path, "--pareto", "a/pareto-t", "b/pareto-t")
    assert out.returncode == 1 and "a/pareto-t and b/pareto-t have one name" in out.stderr
    assert not (tmp_path / "benchmarks").exists()
