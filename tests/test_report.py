"""report.py: the pictures of a run, drawn again from its results.json alone."""

import json
import re

import pytest

import report


def results(method: str, kept: list[float]) -> dict:
    cases = [{"tokens": ["[CLS]", "a", "<b>"], "exit_layers": [2, 0, 1]}]
    return {"method": method, "task": "synthetic", "kept_per_layer": kept, "case_study": cases}


def test_one_run_gives_its_chart_and_case_study_and_escapes_its_text(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(results("ltp", [1.0, 0.25])))
    report.main([str(tmp_path / "run"), "--out", str(tmp_path / "figs")])
    svg = (tmp_path / "figs" / "kept_tokens.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<circle") == 2 + 1  # two layers, the legend
    html = (tmp_path / "figs" / "case_study.html").read_text()
    assert "&lt;b&gt;" in html and "<b>" not in html  # a token is text, never markup
    assert html.count("<p>") == 1 + 1  # the legend and one example


def test_several_runs_share_one_chart_with_a_curve_each(tmp_path):
    for name, kept in (("a", [1.0, 0.5]), ("b", [0.8, 0.2])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(results(name, kept)))
    report.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "figs")])
    svg = (tmp_path / "figs" / "kept_tokens.svg").read_text()
    assert svg.count("<polyline") == 2 and ">a<" in svg and ">b<" in svg


def test_a_folder_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="results.json not found"):
        report.main([str(tmp_path)])


def full_results(method: str, kept: list[float], acc: float, speedup: float, **extra) -> dict:
    r = results(method, kept)
    r["metrics"] = {"accuracy": acc, "main": acc}
    r["flops"] = {"none": {"speedup": speedup}}
    return {**r, **extra}


def test_the_chart_names_each_runs_accuracy_and_speedup_and_a_control_on_its_line_shows(tmp_path):
    """A random control at LTP's shares lies exactly on LTP's line: its own dashes, marker and
    width keep it visible, and the legend tells the two apart by accuracy."""
    for name, acc in (("ltp", 1.0), ("random", 0.855)):
        (tmp_path / name).mkdir()
        r = full_results(name, [1.0, 0.26], acc, 1.7, keywords_kept_per_layer=[1.0, 0.25])
        (tmp_path / name / "results.json").write_text(json.dumps(r))
    report.main([str(tmp_path / "ltp"), str(tmp_path / "random"), "--out", str(tmp_path / "f")])
    svg = (tmp_path / "f" / "kept_tokens.svg").read_text()
    assert "accuracy 100.00 · speedup 1.70×" in svg and "accuracy 85.50 · speedup 1.70×" in svg
    assert "share processed by layer i" in svg and "layer i (0 = the first)" in svg  # axes
    lines = re.findall(r"<polyline [^>]*>", svg)
    assert len(lines) == 4  # two runs, each with its keywords line
    runs = [line for line in lines if 'dasharray="1 3"' not in line]  # not the keywords' lines
    styles = {re.sub(r'points="[^"]*"|stroke="#\w+"', "", line) for line in runs}
    assert len(styles) == 2, "the two runs' lines are drawn alike"
    assert svg.count("its keywords") == 2


def test_the_case_study_gives_gold_prediction_legend_and_readable_contrast(tmp_path):
    row = {"tokens": ["[CLS]", "good", "x", "[SEP]"], "exit_layers": [2, 2, 0, 1],
           "label": 1, "prediction": 0, "keywords": [0, 1, 0, 0]}  # fmt: skip
    page = report.case_study_html([row], 2, "ltp on synthetic")
    assert "gold <b>1</b>" in page and "predicted <b>0</b> (wrong)" in page
    assert "skimmed before layer 0" in page and "kept to the end" in page  # the legend
    assert 'font-weight:bold;text-decoration:underline">good<' in page  # a keyword
    for L in range(1, 13):  # WCAG AA: text at least 4.5 times as light or dark as its cell
        for bg, fg in report.layer_colours(L):
            assert report.contrast(report._rgb(bg), report._rgb(fg)) >= 4.5, (L, bg, fg)
    cells = re.findall(r'style="background:(#\w{6});color:(#\w{6})', page)
    assert cells and all(report.contrast(report._rgb(b), report._rgb(f)) >= 4.5 for b, f in cells)


@pytest.mark.parametrize(
    "change,says",
    [
        (lambda r: r["case_study"][0].update(label="1"), "label is not a number"),
        (lambda r: r["case_study"][0].update(prediction=float("nan")), "prediction"),
        (lambda r: r["case_study"][0].update(keywords=[1]), "keywords"),
        (lambda r: r.update(keywords_kept_per_layer=[2.0, 0.0]), "keywords_kept_per_layer"),
    ],
)
def test_a_crafted_case_study_field_is_one_line_naming_it(tmp_path, change, says):
    r = results("ltp", [1.0, 0.5])
    change(r)
    (tmp_path / "results.json").write_text(json.dumps(r))
    with pytest.raises(SystemExit, match=says):
        report.main([str(tmp_path), "--out", str(tmp_path / "f")])


def _forge(r: dict, path: str, value) -> dict:
    """r with the field at a dotted path ("metrics.main") set to value."""
    *keys, last = path.split(".")
    inner = r
    for key in keys:
        inner = inner[key]
    inner[last] = value
    return r


@pytest.mark.parametrize(
    "path,value,says",
    [
        ("metrics.main", 10**400, "metrics.main is not a finite number"),  # crashed every format
        ("metrics.main", float("nan"), "metrics.main is not a finite number (NaN or infinite"),
        ("metrics.main", 37.0, "metrics.main is 37, outside [-1, 1]"),  # a percent, not a fraction
        ("metrics.accuracy", True, "metrics.accuracy is not a finite number"),  # a bool
        ("flops.none.speedup", float("inf"), "flops.none.speedup is not a finite number"),
        ("flops.none.speedup", -2, "flops.none.speedup is -2, outside [0.5, 1000]"),
        # found by the second review: fractions out of [0, 1], a method costing 1000 encoders,
        # a "main" that is none of the scores, a share for each of a million layers
        ("metrics.accuracy", -1.0, "metrics.accuracy is -1, outside [0, 1] (a fraction"),
        ("metrics.accuracy", 5, "metrics.accuracy is 5, outside [0, 1]"),
        ("flops.none.speedup", 0.001, "is 0.001, outside [0.5, 1000] (a method costing twice"),
        ("flops.sequence.speedup", 0.001, "flops.sequence.speedup is 0.001, outside [0.5"),
        ("metrics.main", 0.5, "metrics.main is 0.5, none of the metrics beside it"),
        ("kept_per_layer", [0.5] * 10**6, "kept_per_layer has 1,000,000 shares, one per layer"),
        ("flops.none.speedup", 50.0, "is 50.00×, yet every layer kept every token"),
        ("kept_per_layer", [1.0, 0.1], "8.00×, is more than 4 times the 1.82×"),  # kept 0.55
        ("kept_per_layer", [-3, 7], "kept_per_layer is not a list of shares in [0, 1]"),
        ("method", "ltp | 99.99 | <img src=x>", "method holds a newline or control character"),
        ("task", "<script>alert(1)</script>", "task holds a newline or control character"),
        ("task", "t" * 250, "or 200 characters or more"),
        ("metrics", {"main": 0.5, "acc\n| forged |": 0.5}, "a metric's name in metrics is not"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_a_forged_or_impossible_number_or_name_is_one_line_naming_it(tmp_path, path, value, says):
    """Numbers a run could not have measured, and names that would forge Markdown, are refused by
    the check report.py shares with benchmarks/summarize.py and fronts.py (results_problem)."""
    r = full_results("ltp", [1.0, 1.0], 0.9, 8.0 if path == "kept_per_layer" else 0.95)
    r["flops"]["sequence"] = {"speedup": 1.9}
    (tmp_path / "results.json").write_text(json.dumps(_forge(r, path, value)))
    with pytest.raises(SystemExit, match=re.escape(says)) as e:
        report.main([str(tmp_path), "--out", str(tmp_path / "f")])
    assert "\n" not in str(e.value) and "results.json" in str(e.value)


def test_the_check_takes_what_train_py_writes():
    """The bounds leave room for every real run: a skimmed run's speedup near 1 / (mean share),
    correlations below zero, a slow run, a speedup under sequence padding of 20×."""
    r = full_results("ltp", [1.0, 0.3, 0.1], 0.9, 2.4, keywords_kept_per_layer=[1.0, 1.0, 0.5])
    r["metrics"] = {"matthews": -0.2, "main": -0.2}
    r["flops"]["sequence"] = {"speedup": 20.0}
    assert report.results_problem(r) is None
    assert report.finite(1) and not report.finite(True) and not report.finite(10**400)
    assert report.plain("sst2") and not report.plain("a|b") and not report.plain("a\nb")


def test_the_deepest_model_is_the_weights_reader_s():
    import weights

    assert report.MAX_LAYERS == weights.MAX_LAYERS  # report.py cannot import it (no torch there)
