"""benchmarks/pareto.sh and summarize.py --pareto: every method at four budgets, a matched control
at every learned point, and the page's fronts checked against the records of the runs."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import fronts  # noqa: E402
from test_summarize import summarize  # noqa: E402


def planned_runs(**env) -> dict[str, list[str]]:
    """out-dir -> flags of each run pareto.sh would start (DRY=1 prints them, runs nothing)."""
    out = subprocess.run(["bash", ROOT / "benchmarks" / "pareto.sh"], capture_output=True,
                         text=True, check=True, env={**os.environ, "DRY": "1", **env})  # fmt: skip
    runs = {}
    for line in out.stdout.splitlines():
        if line.startswith("python train.py"):
            flags = shlex.split(line)[2:]
            runs[flags[flags.index("--out-dir") + 1]] = flags
    return runs


def flag(flags: list[str], name: str) -> str | None:
    return flags[flags.index(name) + 1] if name in flags else None


@pytest.mark.parametrize("task,seeds", [("sst2", 1), ("negation", 3)])
def test_every_method_at_four_budgets_with_a_control_trained_the_same_way(task, seeds):
    runs = planned_runs(TASKS=task)
    learned = {d: f for d, f in runs.items() if flag(f, "--method") not in ("random", "baseline")}
    budgets = {}
    for d, f in learned.items():
        family = flag(f, "--method") + ("-ft" if "--finetuned" in f and "transkimmer" in d else "")
        knob = flag(f, "--length-penalty") or flag(f, "--skim-weight")
        budgets.setdefault(family, set()).add(knob)
        controls = [c for c in runs.values() if flag(c, "--keep-shares-from") == d]
        assert len(controls) == 1, f"{d}: {len(controls)} controls"
        (c,) = controls
        assert flag(c, "--method") == "random"
        for same in ("--finetuned", "--epochs", "--seed", "--preset", "--task", "--train-subset"):
            assert flag(c, same) == flag(f, same), (d, same)
    assert set(budgets) == {"transkimmer", "transkimmer-ft", "trbert", "ltp"}
    assert all(len(b) >= 4 for b in budgets.values()), budgets
    assert len(learned) == 16 * seeds
    bases = [d for d, f in runs.items() if flag(f, "--method") == "baseline"]
    assert len(bases) == seeds
    # a method that starts from a fine-tuned run starts from its own seed's baseline
    for d, f in learned.items():
        if "--finetuned" in f:
            assert flag(f, "--finetuned") in bases
            assert flag(runs[flag(f, "--finetuned")], "--seed") == flag(f, "--seed")


def test_an_unknown_task_is_refused_with_the_tasks_named():
    out = subprocess.run(["bash", ROOT / "benchmarks" / "pareto.sh"], capture_output=True,
                         text=True, env={**os.environ, "DRY": "1", "TASKS": "sst"})  # fmt: skip
    assert out.returncode == 2 and "the tasks: sst2 negation" in out.stderr


def results(method, acc, speedup, seed=1, finetuned=None, knob=None, source=""):
    """A results.json as train.py writes it, with what the fronts read."""
    options = {"skim_weight": knob} if method in ("transkimmer", "ltp") else {}
    if method == "trbert":
        options = {"length_penalty": knob}
    if method == "random":
        options = {"keep_shares_from": source}
    flops = {p: {"speedup": speedup * k, "method_gflops": 0.5} for p, k in
             [("none", 1), ("batch", 2), ("sequence", 3)]}  # fmt: skip
    return {"method": method, "task": "synthetic-negation", "flops": flops,
            "metrics": {"accuracy": acc, "main": acc}, "kept_per_layer": [1.0, 0.5],
            "wall_time_s": 60, "config": {"train": {"seed": seed, "finetuned": finetuned},
                                          "options": options}}  # fmt: skip


def write_runs(root: Path) -> list[str]:
    base = "runs/pareto-negation-baseline-s{}"
    made = {}
    for seed, (acc, ctrl) in enumerate([(0.96, 0.60), (0.94, 0.70)], start=1):
        made[base.format(seed)] = results("baseline", 1.0, 1.0, seed)
        ltp = f"runs/pareto-negation-ltp-lambda0.5-s{seed}"
        made[ltp] = results("ltp", acc, 2.0 + seed / 10, seed, base.format(seed), 0.5)
        made[f"runs/pareto-negation-random-at-ltp-lambda0.5-s{seed}"] = results(
            "random", ctrl, 2.0 + seed / 10, seed, base.format(seed), source=ltp
        )
        made[f"runs/pareto-negation-transkimmer-lambda1-s{seed}"] = results(
            "transkimmer", 0.9, 3.5, seed, None, 1.0
        )
    for run, r in made.items():
        (root / run).mkdir(parents=True)
        (root / run / "results.json").write_text(json.dumps(r))
    return list(made)


def test_points_group_seeds_and_match_each_control_to_its_learned_run(tmp_path):
    names = write_runs(tmp_path)
    out = summarize(tmp_path, "--pareto", *names)
    assert out.returncode == 0, out.stderr
    records = json.loads((tmp_path / fronts.RECORDS).read_text())
    assert {r["family"] for r in records} == {"baseline", "ltp", "control", "transkimmer"}
    pts = fronts.points(records)["synthetic-negation"]
    ltp = next(p for p in pts if p["family"] == "ltp")
    assert ltp["seeds"] == 2 and ltp["accuracy"] == pytest.approx(95.0)
    assert ltp["control"][0] == pytest.approx(65.0) and ltp["control_seeds"] == 2
    assert ltp["speedup"][0] == pytest.approx(2.15)
    # the tables: LTP is best at ≥ 1.5x and ≥ 2x with +30 over its control; Transkimmer, at
    # 3.5x, has no control yet (—), and TR-BERT no point at all
    table = out.stdout
    assert "| LTP | 95.00 (+30.00) | 95.00 (+30.00) | — |" in table
    assert "| Transkimmer | 90.00 | 90.00 | 90.00 |" in table
    assert "| TR-BERT | — | — | — |" in table
    row = "| LTP | λ 0.5 | 2 | 95.00 ± 1.41 | 2.15× | 6.45× | 65.00 ± 7.07 at 2.15× | +30.00 |"
    assert row in table
    svg = (tmp_path / fronts.FIGURE).read_text()
    import xml.etree.ElementTree as ET

    ET.fromstring(svg)  # well-formed
    assert svg.count("<circle") >= 4


def test_where_a_task_marks_its_deciding_words_the_table_gives_their_share_at_the_cut(tmp_path):
    """synthetic tasks mark the words that decide the label: at the first layer that keeps at most
    half of the tokens, how many of them a learned run kept, against its control."""
    learned = results("ltp", 0.95, 2.0, knob=0.5)
    learned["kept_per_layer"] = [1.0, 0.6, 0.1, 0.1]  # the cut: layer 2
    learned["keywords_kept_per_layer"] = [1.0, 1.0, 0.9, 0.5]
    control = results("random", 0.6, 2.0, source="runs/ltp")
    control["kept_per_layer"] = [1.0, 0.6, 0.1, 0.1]
    control["keywords_kept_per_layer"] = [1.0, 0.6, 0.1, 0.05]
    base = results("baseline", 1.0, 1.0)
    base["keywords_kept_per_layer"] = [1.0, 1.0]
    for name, r in [("ltp", learned), ("random", control), ("base", base)]:
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "results.json").write_text(json.dumps(r))
    out = summarize(tmp_path, "--pareto", "runs/ltp", "runs/random", "runs/base")
    assert out.returncode == 0, out.stderr
    assert "| margin | deciding words at the cut, control's |" in out.stdout
    assert "| 60.00 at 2.00× | +35.00 | 0.90, 0.10 |" in out.stdout
    # read back from the records file alone, the same table
    again = summarize(tmp_path, "--pareto", str(fronts.RECORDS))
    assert "| +35.00 | 0.90, 0.10 |" in again.stdout
    # SST-2 marks no words: no such column
    for r in (learned, control, base):
        r.pop("keywords_kept_per_layer")
        r["task"] = "sst2"
    for name, r in [("ltp", learned), ("random", control), ("base", base)]:
        (tmp_path / "runs" / name / "results.json").write_text(json.dumps(r))
    (tmp_path / fronts.RECORDS).unlink()
    out = summarize(tmp_path, "--pareto", "runs/ltp", "runs/random", "runs/base")
    assert "deciding words" not in out.stdout and "| +35.00 |\n" in out.stdout


def test_check_compares_the_page_and_the_figure_with_the_records(tmp_path):
    names = write_runs(tmp_path)
    table = summarize(tmp_path, "--pareto", *names).stdout
    page = tmp_path / "results.md"
    page.write_text(f"# Results\n\n<!-- pareto -->\n{table}<!-- /pareto -->\n")
    out = summarize(tmp_path, "--check", "results.md")
    assert out.returncode == 0 and "ok: the fronts" in out.stdout, out.stdout
    page.write_text(page.read_text().replace("95.00 (+30.00)", "96.00 (+31.00)", 1))
    out = summarize(tmp_path, "--check", "results.md")
    assert out.returncode == 1 and "the fronts do not match" in out.stdout
    short = summarize(tmp_path, "--pareto", *names, "--short").stdout
    assert "| LTP | 95.00 (+30.00) |" in short and "| method | budget |" not in short
    page.write_text(f"<!-- pareto short -->\n{short}<!-- /pareto -->\n")
    assert summarize(tmp_path, "--check", "results.md").returncode == 0
    page.write_text(f"<!-- pareto short -->\n{table}<!-- /pareto -->\n")  # the long form
    assert summarize(tmp_path, "--check", "results.md").returncode == 1
    page.write_text(f"<!-- pareto -->\n{table}<!-- /pareto -->\n")
    (tmp_path / fronts.FIGURE).write_text("<svg/>")
    out = summarize(tmp_path, "--check", "results.md")
    assert out.returncode == 1 and "pareto.svg does not match" in out.stdout


def test_write_puts_the_tables_between_each_pages_markers(tmp_path):
    names = write_runs(tmp_path)
    page = tmp_path / "page.md"
    page.write_text("# A\n\n<!-- pareto -->\nold\n<!-- /pareto -->\n\ntext\n\n"
                    "<!-- pareto short -->\n<!-- /pareto -->\nend\n")  # fmt: skip
    out = summarize(tmp_path, "--pareto", *names, "--write", "page.md")
    assert out.returncode == 0, out.stderr
    text = page.read_text()
    assert "old" not in text and text.startswith("# A\n") and text.endswith("end\n")
    assert text.count("| method | budget |") == 1 and text.count("| method | ≥ 1.5× |") == 2
    assert summarize(tmp_path, "--check", "page.md").returncode == 0


def test_records_from_a_file_and_a_run_folder_wins_over_its_record(tmp_path):
    names = write_runs(tmp_path)
    assert summarize(tmp_path, "--pareto", *names).returncode == 0
    kept = tmp_path / "kept.json"
    kept.write_text((tmp_path / fronts.RECORDS).read_text())
    out = summarize(tmp_path, "--pareto", str(kept))  # the records alone give the same tables
    assert out.returncode == 0 and "95.00 (+30.00)" in out.stdout
    run = tmp_path / names[1] / "results.json"
    r = json.loads(run.read_text())
    r["metrics"] = {"accuracy": 0.5, "main": 0.5}
    run.write_text(json.dumps(r))
    out = summarize(tmp_path, "--pareto", str(kept), names[1])
    assert "| LTP | λ 0.5 | 2 | 72.00 ± 31.11 |" in out.stdout


def test_transkimmers_target_is_read_off_the_front():
    def point(family, knob, acc, speedup):
        return {"family": family, "knob": knob, "accuracy": acc, "speedup": (speedup, 0.0)}

    pts = [point("baseline", None, 86.5, 1.0), point("transkimmer", 0.3, 86.0, 1.3),
           point("transkimmer", 0.6, 85.0, 1.6), point("transkimmer", 1.2, 84.0, 2.2),
           point("transkimmer-ft", 0.3, 85.8, 1.7)]  # fmt: skip
    line = fronts.target(pts)
    assert "Transkimmer −1.50 at 1.60× (λ 0.6): missed by 0.50" in line
    assert "Transkimmer from the baseline −0.70 at 1.70× (λ 0.3): met" in line
    assert "has no point at ≥ 1.5× yet" in fronts.target(pts[:2])
    assert fronts.target(pts[1:]) == ""  # no baseline, no verdict


GOOD = {"run": "r", "task": "t", "family": "ltp", "accuracy": 90, "speedup": 2,
        "speedup_sequence": 3, "kept_per_layer": [1.0, 0.4]}  # fmt: skip


@pytest.mark.parametrize("bad", ['{"run": 1}', "[{}]", "not json", "[" * 100000,
                                 json.dumps([{**GOOD, "run": "a\nb"}]),
                                 json.dumps([{**GOOD, "accuracy": True}]),
                                 json.dumps([{**GOOD, "knob": [1]}]),
                                 json.dumps([{**GOOD, "control_of": ["x"]}]),
                                 json.dumps([{**GOOD, "seed": "1"}]),
                                 json.dumps([{**GOOD, "kept_per_layer": None}]),
                                 json.dumps([{**GOOD, "keywords_kept_per_layer": ["1"]}]),
                                 json.dumps([{**GOOD, "keywords_kept_per_layer": 1.0}]),
                                 "[" + json.dumps(GOOD).replace("90", "NaN") + "]",
                                 json.dumps([{**GOOD, "seed": 10**400}]),  # crashed --check
                                 json.dumps([{**GOOD, "seed": True}]),
                                 json.dumps([{**GOOD, "seed": -1}]),
                                 json.dumps([{**GOOD, "knob": True}]),
                                 json.dumps([{**GOOD, "knob": 10**400}]),
                                 json.dumps([{**GOOD, "knob": -0.5}]),
                                 json.dumps([{**GOOD, "accuracy": 1000}]),
                                 json.dumps([{**GOOD, "speedup": 0}]),
                                 json.dumps([{**GOOD, "speedup_sequence": 1e300}]),
                                 json.dumps([{**GOOD, "kept_per_layer": [2.0, 0.4]}]),
                                 json.dumps([{**GOOD, "kept_per_layer": []}]),
                                 json.dumps([{**GOOD, "speedup": 50, "kept_per_layer": [1, 1]}]),
                                 json.dumps([{**GOOD, "task": "t" * 250}]),
                                 json.dumps([{**GOOD, "task": "sst2 | <b>x</b>"}]),
                                 json.dumps([{**GOOD, "control_of": "[x](y)"}]),
                                 json.dumps([{**GOOD, "control_of": []}])],
                         ids=lambda bad: bad[:70])  # fmt: skip
def test_a_forged_records_file_is_refused_in_one_line(tmp_path, bad):
    path = tmp_path / "records.json"
    path.write_text(bad)
    out = summarize(tmp_path, "--pareto", "records.json")
    assert out.returncode == 1 and out.stderr.startswith("error: records.json"), out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1


def test_check_refuses_a_forged_records_file_in_one_line(tmp_path):
    (tmp_path / "page.md").write_text("<!-- pareto -->\n<!-- /pareto -->\n")
    (tmp_path / fronts.RECORDS).parent.mkdir(parents=True)
    (tmp_path / fronts.RECORDS).write_text(json.dumps([{**GOOD, "seed": 10**400}]))
    out = summarize(tmp_path, "--check", "page.md")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr == f"error: {fronts.RECORDS}: record 0 ('r'): its seed is not a whole " \
        "number in [0, 2^32) or null\n"  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [lambda r: r["config"]["train"].update(seed=True),  # a bool is an int to Python
     lambda r: r["config"]["train"].update(seed=10**400),
     lambda r: r["config"]["options"].update(skim_weight=True),
     lambda r: r["config"]["options"].update(skim_weight=10**400),
     lambda r: r["config"]["options"].update(skim_weight="0.5")],
)  # fmt: skip
def test_pareto_never_writes_a_record_that_its_next_read_refuses(tmp_path, change):
    """record() checks each record with record_problem, the function parse_records reads with:
    a record it would write but not read back is refused before anything is written."""
    r = results("ltp", 0.9, 2.0, knob=0.5)
    change(r)
    (tmp_path / "runs" / "ltp").mkdir(parents=True)
    (tmp_path / "runs" / "ltp" / "results.json").write_text(json.dumps(r))
    out = summarize(tmp_path, "--pareto", "runs/ltp")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("error: 'ltp': its results.json gives a record that --pareto "
                                 "could not read back: its "), out.stderr  # fmt: skip
    assert not (tmp_path / fronts.RECORDS).exists()
    assert fronts.record_problem(fronts.record("ltp", results("ltp", 0.9, 2.0, knob=0.5))) is None


def test_pareto_merges_into_the_records_there_and_says_so(tmp_path):
    """`--pareto runs/pareto-*` on a machine that holds some of the runs keeps the records of the
    others (the committed fronts), and a run folder given wins over its record."""
    names = write_runs(tmp_path)
    other = {**GOOD, "run": "pareto-elsewhere", "task": "synthetic-negation"}
    stale = {**GOOD, "run": Path(names[0]).name, "task": "synthetic-negation", "accuracy": 1}
    (tmp_path / fronts.RECORDS).parent.mkdir(parents=True)
    (tmp_path / fronts.RECORDS).write_text(json.dumps([other, stale]))
    out = summarize(tmp_path, "--pareto", *names)
    assert out.returncode == 0, out.stderr
    assert f"kept the records of 1 runs not given, from {fronts.RECORDS}" in out.stderr
    records = {d["run"]: d for d in json.loads((tmp_path / fronts.RECORDS).read_text())}
    assert set(records) == {"pareto-elsewhere", *(Path(n).name for n in names)}
    assert records["pareto-elsewhere"] == other
    assert records[Path(names[0]).name]["accuracy"] == 100.0  # the run, not the stale record


def test_pareto_writes_atomically_and_never_through_a_link(tmp_path):
    """A link planted at the figure's name is replaced by the file, its target untouched; one at
    the records' name or a page's is refused before anything is written."""
    names = write_runs(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("victim\n")
    (tmp_path / fronts.FIGURE).parent.mkdir(parents=True)
    (tmp_path / fronts.FIGURE).symlink_to(victim)
    assert summarize(tmp_path, "--pareto", *names).returncode == 0
    assert victim.read_text() == "victim\n" and not (tmp_path / fronts.FIGURE).is_symlink()
    assert not list((tmp_path / fronts.FIGURE).parent.glob("*.tmp*"))  # no temporary left
    (tmp_path / fronts.RECORDS).unlink()
    (tmp_path / fronts.RECORDS).symlink_to(victim)
    out = summarize(tmp_path, "--pareto", *names)
    assert out.returncode == 1 and out.stderr.startswith(f"error: {fronts.RECORDS}: cannot be read")
    assert victim.read_text() == "victim\n"
    (tmp_path / fronts.RECORDS).unlink()
    (tmp_path / "page.md").symlink_to(victim)
    figure = (tmp_path / fronts.FIGURE).read_text()
    out = summarize(tmp_path, "--pareto", *names[:2], "--write", "page.md")
    assert out.returncode == 1 and out.stderr.startswith("error: page.md: cannot be read")
    assert victim.read_text() == "victim\n" and not (tmp_path / fronts.RECORDS).exists()
    assert (tmp_path / fronts.FIGURE).read_text() == figure


def test_a_run_whose_name_or_source_is_not_printable_is_refused(tmp_path):
    for name, source in [("bad\nrun", "runs/x"), ("ok-run", "runs/x\n| forged |"), ("ok2", 5)]:
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        r = results("random", 0.5, 2.0, source="runs/x")
        r["config"]["options"]["keep_shares_from"] = source
        (run / "results.json").write_text(json.dumps(r))
        out = summarize(tmp_path, "--pareto", f"runs/{name}")
        assert out.returncode == 1 and "not printable text" in out.stderr, out.stderr
        assert not (tmp_path / fronts.RECORDS).exists()


@pytest.mark.parametrize(
    "field,says",
    [("main", "metrics.main is not a finite number (NaN or infinite"),
     ("speedup", "flops.sequence.speedup is not a finite number (NaN or infinite"),
     ("kept", "kept_per_layer is not a list of shares in [0, 1]"),
     ("keywords", "keywords_kept_per_layer is not a share in [0, 1] per layer")],
)  # fmt: skip
def test_a_run_with_a_number_that_is_not_finite_is_refused_before_any_record(tmp_path, field, says):
    r = results("ltp", 0.9, 2.0, knob=0.5)
    r["keywords_kept_per_layer"] = [1.0, 0.5]
    nan = float("nan")
    if field == "main":
        r["metrics"]["main"] = nan
    elif field == "speedup":
        r["flops"]["sequence"]["speedup"] = float("inf")
    elif field == "kept":
        r["kept_per_layer"][1] = nan
    else:
        r["keywords_kept_per_layer"][1] = nan
    (tmp_path / "runs" / "ltp").mkdir(parents=True)
    (tmp_path / "runs" / "ltp" / "results.json").write_text(json.dumps(r))  # NaN, as Python writes
    out = summarize(tmp_path, "--pareto", "runs/ltp")
    assert out.returncode == 1 and says in out.stderr, out.stderr
    assert not (tmp_path / fronts.RECORDS).exists()


def test_a_records_file_that_is_a_fifo_or_a_link_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "good.json").write_text(json.dumps([GOOD]))
    (tmp_path / "link.json").symlink_to(tmp_path / "good.json")
    for name in ("fifo.json", "link.json"):
        script = ROOT / "benchmarks" / "summarize.py"
        out = subprocess.run([sys.executable, script, "--pareto", name], cwd=tmp_path,
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        assert out.returncode == 1 and out.stderr.startswith(f"error: {name}"), out.stderr


@pytest.mark.parametrize("page", ["README.md", "docs/results.md"])
def test_the_shipped_records_match_the_page_and_the_figure(page):
    """The fronts of README.md and docs/results.md, and docs/figures/pareto.svg, are what the
    records of the runs give (benchmarks/results/pareto.json, written by --pareto)."""
    assert "<!-- pareto" in (ROOT / page).read_text()
    out = summarize(ROOT, "--check", page)
    assert "ok: the fronts" in out.stdout, out.stdout
    assert not re.search(r"stale: .*fronts|stale: pareto.svg", out.stdout), out.stdout
