"""report.py: the pictures of a run, drawn again from its results.json alone."""

import json

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
    assert svg.startswith("<svg") and svg.count("<circle") == 2
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
