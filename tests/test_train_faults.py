"""The training loop's faults: a stopped run resumes bit for bit wherever it stopped, a run that
ends with numbers that are not finite fails, and a bad flag is a one-line message naming it.

Every run here is tiny (the smoke preset on 32 examples: 2 steps an epoch), so stopping at each
stage boundary and one step after it takes a second or two per case. (Run folders as data:
tests/test_faults.py; the smoke preset's own sizes: tests/test_train.py.)
"""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import data
import train
from weights import read_safetensors

ROOT = Path(__file__).resolve().parents[1]

# 32 examples in batches of 16: 2 steps an epoch. TR-BERT: fine-tuning ends at step 2, the policy
# stage at 4, the joint stage at 6; LTP: the soft stage at 2, the hard one at 4
TINY = ["--preset", "smoke", "--train-subset", "32", "--eval-subset", "16", "--epochs", "1",
        "--case-study", "2"]  # fmt: skip


def run(folder, *args):
    return train.main([*TINY, "--out-dir", str(folder), *args])


def weights(folder):
    return read_safetensors(folder / "ckpt" / "model.safetensors")


def assert_same_run(straight: dict, resumed: dict, a, b):
    """Weights, metrics, kept tokens, FLOPs and history equal bit for bit."""
    x, y = weights(a), weights(b)
    assert x.keys() == y.keys()
    for k in x:
        assert torch.equal(x[k], y[k]), f"{k} differs after resuming"
    for key in ("metrics", "kept", "kept_per_layer", "flops", "history", "case_study"):
        assert resumed[key] == straight[key], f"{key} differs after resuming"


# (name, flags, the steps to stop after): each stage boundary, and the step after it
RESUMES = {
    "trbert": (["--method", "trbert"], [2, 3, 4, 5]),
    "ltp": (["--method", "ltp"], [2, 3]),
    # one stage; its epoch boundary, and the step after it
    "transkimmer": (["--method", "transkimmer", "--epochs", "2"], [2, 3]),
}


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory):
    """Each method's uninterrupted run, trained once for all its stops."""
    done = {}

    def get(name):
        if name not in done:
            folder = tmp_path_factory.mktemp(f"straight-{name}")
            done[name] = (run(folder, *RESUMES[name][0]), folder)
        return done[name]

    return get


@pytest.mark.parametrize(
    "name,stop", [(name, stop) for name, (_, stops) in RESUMES.items() for stop in stops]
)
def test_a_run_stopped_at_a_stage_boundary_or_a_step_after_resumes_bit_for_bit(
    tmp_path, straight_runs, name, stop
):
    straight, folder = straight_runs(name)
    assert run(tmp_path, *RESUMES[name][0], "--stop-after-steps", str(stop)) == {"stopped": True}
    resumed = train.main(["--resume", "--out-dir", str(tmp_path)])
    assert_same_run(straight, resumed, folder, tmp_path)


@pytest.mark.parametrize("stop", [1, 2])
def test_transkimmer_distilled_from_a_finetuned_run_resumes_bit_for_bit(tmp_path, stop):
    """The teacher is built in the first stage here: a resumed run builds it as the straight
    run did, and the straight run's numbers do not depend on where it was stopped."""
    run(tmp_path / "base", "--method", "baseline")
    flags = ["--method", "transkimmer", "--epochs", "2", "--finetuned", str(tmp_path / "base")]
    straight = run(tmp_path / "straight", *flags)
    run(tmp_path / "resumed", *flags, "--stop-after-steps", str(stop))
    resumed = train.main(["--resume", "--out-dir", str(tmp_path / "resumed")])
    assert_same_run(straight, resumed, tmp_path / "straight", tmp_path / "resumed")


DRAWING = '''
import torch
from skim import SkimStrategy, Stage


class Drawing(SkimStrategy):
    """Two plain stages whose loss is scaled by a number drawn when each stage starts."""

    def stages(self, cfg):
        return [Stage(name, cfg.epochs, cfg.lr, 0.0, skim=False) for name in ("one", "two")]

    def begin_stage(self, step, batches):
        self.scale = 1 + float(torch.rand(()))

    def loss(self, model, batch, step):
        loss, logs = super().loss(model, batch, step)
        return loss * self.scale, logs
'''


def test_what_a_stage_start_draws_is_drawn_again_by_a_run_resumed_inside_the_stage(tmp_path):
    (tmp_path / "drawing.py").write_text(DRAWING)
    flags = ["--method", f"{tmp_path / 'drawing.py'}:Drawing"]
    straight = run(tmp_path / "straight", *flags)
    run(tmp_path / "resumed", *flags, "--stop-after-steps", "3")  # inside stage two
    resumed = train.main(["--resume", "--out-dir", str(tmp_path / "resumed")])
    assert_same_run(straight, resumed, tmp_path / "straight", tmp_path / "resumed")


@pytest.mark.parametrize(
    "flags", [["--threads", "2"], ["--eval-batch-size", "8"], ["--deterministic"]]
)
def test_resume_refuses_a_flag_that_changes_the_numbers_and_eval_only_takes_it(tmp_path, flags):
    run(tmp_path, "--method", "transkimmer", "--stop-after-steps", "1")
    with pytest.raises(SystemExit, match=f"{flags[0]} would change the numbers.*drop the flag"):
        train.main(["--resume", "--out-dir", str(tmp_path), *flags])
    train.main(["--resume", "--out-dir", str(tmp_path), "--log-every", "1"])  # how: it may
    assert train.main(["--eval-only", "--out-dir", str(tmp_path), *flags])["metrics"]


# ----------------------------------------------------------------------------------------------
# A run that ends with numbers that are not finite fails


def test_the_smoke_baseline_at_an_absurd_learning_rate_exits_with_a_message(tmp_path):
    """The issue's command: one step at --lr 1e30 left every logit NaN and the run exited 0 with
    accuracy 0.505; the weight decay at that rate is refused before any work."""
    cmd = [sys.executable, str(ROOT / "train.py"), "--preset", "smoke", "--train-subset", "16",
           "--epochs", "1", "--lr", "1e30", "--out-dir", str(tmp_path / "run")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith("error: --weight-decay × --lr")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--lr", "1e38"], "--lr must be positive and finite, below 3.4e+37"),  # crashed in Adam
        (["--skim-lr", "1e38"], "--skim-lr must be positive and finite, below 3.4e+37"),
        (["--weight-decay", "1000"], "--weight-decay × --lr must be < 1"),  # 1000 × 3e-3
        (["--lr", "1", "--weight-decay", "0", "--skim-lr", "1e-3"], None),  # absurd, not refused
    ],
)
def test_a_learning_rate_that_overflows_is_refused_before_any_work(tmp_path, args, message):
    if message is None:
        assert run(tmp_path, *args, "--stop-after-steps", "1") == {"stopped": True}
        return
    with pytest.raises(SystemExit, match=re.escape(message)):
        run(tmp_path, *args)
    assert not (tmp_path / "ckpt").exists()


def test_outputs_that_are_not_finite_at_evaluation_stop_the_run_and_write_no_results(tmp_path):
    # no weight decay: the step at --lr 1e30 itself is finite, and the logits after it are NaN
    with pytest.raises(SystemExit, match="outputs are not finite on 16 of 16 dev features: "
                                         "training diverged"):  # fmt: skip
        run(tmp_path, "--train-subset", "16", "--lr", "1e30", "--weight-decay", "0")
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "ckpt").exists()


def test_a_metric_that_is_not_finite_stops_the_run(tmp_path, monkeypatch):
    nan = {"accuracy": float("nan"), "main": float("nan")}
    monkeypatch.setattr(data, "compute_metrics", lambda *args: nan)
    with pytest.raises(SystemExit, match="dev metrics accuracy are not finite"):
        run(tmp_path)
    assert not (tmp_path / "results.json").exists()


def test_nan_scores_are_nan_metrics_never_zero():
    nan, labels = float("nan"), [0.5, 2.0, 4.0]
    assert math.isnan(data.pearson([1.0, nan, 3.0], labels))  # was reported as Pearson 0.0000
    assert math.isnan(data.spearman([1.0, nan, 3.0], labels))  # ranks put NaN last: not 1.0
    assert math.isnan(data.pearson([1.0, math.inf, 3.0], labels))
    stsb = data.compute_metrics("stsb", [nan, nan, nan], labels)
    assert all(math.isnan(v) for v in stsb.values())
    sst2 = data.compute_metrics("sst2", [[nan, nan], [0.0, 1.0]], [0, 1])  # argmax of NaN is 0
    assert all(math.isnan(v) for v in sst2.values())
    assert data.pearson([2.0, 2.0, 2.0], labels) == 0.0  # constant: undefined, 0 as before


def test_a_score_that_is_not_finite_in_a_regression_file_is_refused():
    with pytest.raises(ValueError, match="dev.tsv:3: score 'nan' is not a finite number"):
        data._label(data.get_task("stsb"), "nan", "dev.tsv:3")
