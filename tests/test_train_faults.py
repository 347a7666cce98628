"""The training loop's faults: a stopped run resumes bit for bit wherever it stopped, a run that
ends with numbers that are not finite fails, and a bad flag is a one-line message naming it.

Every run here is tiny (the smoke preset on 32 examples: 2 steps an epoch), so stopping at each
stage boundary and one step after it takes a second or two per case. (Run folders as data:
tests/test_faults.py; the smoke preset's own sizes: tests/test_train.py.)
"""

import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import data
import metrics
import readers
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
    # from a baseline run (BASE), as the README's rows: the policy stage builds the teacher, so
    # a run resumed at the joint stage (step 2) builds it where the straight run did not
    "trbert-finetuned": (["--method", "trbert", "--finetuned", "BASE"], [1, 2, 3]),
}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    run(folder, "--method", "baseline")
    return folder


def flags(name, base):
    return [str(base) if f == "BASE" else f for f in RESUMES[name][0]]


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory, base_run):
    """Each method's uninterrupted run, trained once for all its stops."""
    done = {}

    def get(name):
        if name not in done:
            folder = tmp_path_factory.mktemp(f"straight-{name}")
            done[name] = (run(folder, *flags(name, base_run)), folder)
        return done[name]

    return get


@pytest.mark.parametrize(
    "name,stop", [(name, stop) for name, (_, stops) in RESUMES.items() for stop in stops]
)
def test_a_run_stopped_at_a_stage_boundary_or_a_step_after_resumes_bit_for_bit(
    tmp_path, straight_runs, base_run, name, stop
):
    straight, folder = straight_runs(name)
    stopped = run(tmp_path, *flags(name, base_run), "--stop-after-steps", str(stop))
    assert stopped == {"stopped": True}
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
    # a method from a file is named again on resume: a folder never chooses the code it runs
    resumed = train.main(["--resume", "--out-dir", str(tmp_path / "resumed"), *flags])
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
    # a method from a file is named again on resume: a folder never chooses the code it runs
    resumed = train.main(["--resume", "--out-dir", str(tmp_path / "resumed"), *flags])
    assert_same_run(straight, resumed, tmp_path / "straight", tmp_path / "resumed")


# the smoke preset runs on 1 thread: 0 (torch's default) differs, and needs no second CPU here
@pytest.mark.parametrize(
    "flags", [["--threads", "0"], ["--eval-batch-size", "8"], ["--deterministic"]]
)
def test_resume_refuses_a_flag_that_changes_the_numbers_and_eval_only_takes_it(tmp_path, flags):
    run(tmp_path, "--method", "transkimmer", "--stop-after-steps", "1")
    with pytest.raises(SystemExit, match=f"{flags[0]} would change the numbers.*drop the flag"):
        train.main(["--resume", "--out-dir", str(tmp_path), *flags])
    train.main(["--resume", "--out-dir", str(tmp_path), "--log-every", "1"])  # how: it may
    assert train.main(["--eval-only", "--out-dir", str(tmp_path), *flags])["metrics"]


def test_a_kill_between_the_checkpoint_renames_still_ends_with_a_whole_checkpoint(tmp_path):
    """Killed between save_checkpoint's renames (ckpt -> ckpt.old, ckpt.tmp -> ckpt), a run
    holds ckpt.old and ckpt.tmp and no ckpt: --resume goes on from ckpt.old, whose first save
    deletes it. Every later checkpoint must still hold the tokenizer (it took it from ckpt.old,
    and once wrote checkpoints without vocab.txt, which --eval-only then could not read)."""
    run(tmp_path, "--method", "transkimmer", "--epochs", "2", "--stop-after-steps", "1")
    ckpt = tmp_path / "ckpt"
    ckpt.rename(tmp_path / "ckpt.old")
    shutil.copytree(tmp_path / "ckpt.old", tmp_path / "ckpt.tmp")
    train.main(["--resume", "--out-dir", str(tmp_path)])  # two saves: steps 2 and 4
    assert not (tmp_path / "ckpt.old").exists() and not (tmp_path / "ckpt.tmp").exists()
    assert (ckpt / "vocab.txt").read_bytes() == (tmp_path / "vocab" / "vocab.txt").read_bytes()
    assert train.main(["--eval-only", "--out-dir", str(tmp_path)])["metrics"]


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
    assert math.isnan(metrics.pearson([1.0, nan, 3.0], labels))  # was reported as Pearson 0.0000
    assert math.isnan(metrics.spearman([1.0, nan, 3.0], labels))  # ranks put NaN last: not 1.0
    assert math.isnan(metrics.pearson([1.0, math.inf, 3.0], labels))
    stsb = data.compute_metrics("stsb", [nan, nan, nan], labels)
    assert all(math.isnan(v) for v in stsb.values())
    sst2 = data.compute_metrics("sst2", [[nan, nan], [0.0, 1.0]], [0, 1])  # argmax of NaN is 0
    assert all(math.isnan(v) for v in sst2.values())
    assert metrics.pearson([2.0, 2.0, 2.0], labels) == 0.0  # constant: undefined, 0 as before


def test_a_score_that_is_not_finite_in_a_regression_file_is_refused():
    with pytest.raises(ValueError, match="dev.tsv:3: score 'nan' is not a finite number"):
        readers._label(data.get_task("stsb"), "nan", "dev.tsv:3")


# ----------------------------------------------------------------------------------------------
# A bad flag is a one-line message naming it: never a traceback, never a default in its place

BAD_FLAGS = [
    (["--epochs", "0"], "--epochs must be positive, at most 10000, got 0.0"),  # trained 3 epochs
    (["--epochs", "nan"], "--epochs must be positive, at most 10000"),
    (["--epochs", "1e300"], "--epochs must be positive, at most 10000"),
    (["--max-length", "0"], "--max-length must be ≥ 3, got 0"),  # became the task's 64
    (["--seed", "-1"], "--seed must be in 0 .. 4294967295"),
    (["--seed", "4294967296"], "--seed must be in 0 .. 4294967295"),
    (["--threads", "100000"], "--threads 100000 exceeds the"),
    (["--lr", "nan"], "--lr must be positive and finite"),
    (["--weight-decay", "inf"], "--weight-decay must be ≥ 0 and finite"),
    (["--warmup", "nan"], "--warmup must be a share of the steps"),
    (["--max-grad-norm", "inf"], "--max-grad-norm must be ≥ 0 and finite"),
    (["--max-grad-norm", "-1"], "--max-grad-norm must be ≥ 0 and finite"),
    (["--batch-size", "0"], "--batch-size must be > 0"),
    (["--eval-batch-size", "-1"], "--eval-batch-size must be > 0"),
    (["--train-subset", "-1"], "--train-subset must be ≥ 0"),
    (["--train-subset", "100000"], "--train-subset 100000 exceeds the 2000 train examples"),
    (["--eval-subset", "100000"], "--eval-subset 100000 exceeds the 500 dev examples"),
    (["--eval-every", "-1"], "--eval-every must be ≥ 0"),
    (["--stop-after-steps", "-1"], "--stop-after-steps must be ≥ 0"),
    (["--case-study", "-1"], "--case-study must be ≥ 0"),
    (["--padding", ""], "--padding must be batch or sequence, got ''"),
    (["--precision", ""], "--precision must be fp32, bf16 or fp16"),
    (["--device", ""], "--device must be auto, cpu, cuda"),
    (["--preset", ""], "--preset must be one of smoke"),
    (["--model", ""], "--model must be a hub name, a folder or random-<shape>, not empty"),
    (["--out-dir", ""], "--out-dir '' names no folder"),  # wrote into the cwd
    (["--data-dir", ""], "--data-dir must be a folder, not empty"),  # was the cache's
    (["--finetuned", ""], "--finetuned must be a baseline run's folder, not empty"),  # was none
    (["--task", ""], "--task: unknown task ''"),
    (["--method", ""], "--method: unknown method ''"),
    (["--method", "transkimmer", "--tau", "inf"], "--tau (the Gumbel temperature) must be > 0"),
    (["--method", "transkimmer", "--tau", "nan"], "--tau (the Gumbel temperature) must be > 0"),
    (["--method", "transkimmer", "--skim-weight", "inf"], "--skim-weight (λ) must be ≥ 0 and"),
    (["--method", "transkimmer", "--init-mean", "nan"], "--init-mean must be finite"),
    (["--method", "transkimmer", "--init-std", "inf"], "--init-std must be ≥ 0 and finite"),
    (["--method", "trbert", "--length-penalty", "nan"], "--length-penalty must be ≥ 0 and"),
    (["--method", "trbert", "--rl-epochs", "inf"], "--rl-epochs must be > 0 and finite"),
    (["--method", "trbert", "--hidden", "0"], "--hidden must be ≥ 1"),
    (["--method", "trbert", "--hidden", str(10**12)], "past what this project builds"),  # no RAM
    (["--method", "trbert", "--num-samples", "0"], "--num-samples must be ≥ 2"),
    (["--method", "trbert", "--imitation-fraction", "nan"], "--imitation-fraction must be in"),
    (["--method", "trbert", "--policy-layers", ""], "--policy-layers: expected comma-separated"),
    (["--method", "trbert", "--policy-layers", "-1"], "--policy-layers must be increasing"),
    (["--method", "ltp", "--temperature", "0"], "--temperature must be > 0 and finite"),
    (["--method", "ltp", "--skim-weight", "nan"], "--skim-weight must be ≥ 0 and finite"),
    (["--method", "ltp", "--threshold-init", "inf"], "--threshold-init must be finite"),
    (["--method", "ltp", "--hard-epochs", "-1"], "--hard-epochs must be ≥ 0 and finite"),
    (["--method", "cls-attention", "--keep", "nan"], "--keep must be in (0, 1]"),
    (["--method", "cls-attention", "--keep", "0"], "--keep must be in (0, 1]"),
    (["--method", "random", "--keep-shares", ""], "--keep-shares needs 2 shares"),
    (["--method", "random", "--keep-shares", "nan,1"], "--keep-shares needs 2 shares"),
    (
        ["--method", "random", "--keep-shares", "1,1", "--random-seed", "-1"],
        "--random-seed must be in 0 .. 2**63",
    ),  # fmt: skip
    (
        ["--method", "random", "--keep-shares", "1,1", "--random-seed", str(2**64)],
        "--random-seed must be in 0 .. 2**63",
    ),  # crashed in torch.Generator  # fmt: skip
]


@pytest.mark.parametrize("args,message", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_a_bad_flag_is_a_one_line_message_naming_it(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        run(tmp_path / "run", *args)
    said = str(e.value.code) + capsys.readouterr().err
    assert message in said
    assert "error:" in said.strip().splitlines()[-1]  # ours, or argparse's after its usage
    assert "\n" not in str(e.value.code)
    assert not (tmp_path / "run" / "ckpt").exists()


def test_a_data_file_that_is_a_folder_is_a_message(tmp_path, minilm_dir):
    (tmp_path / "SST-2" / "train.tsv").mkdir(parents=True)
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\na fine film\t1\n")
    with pytest.raises(SystemExit, match=r"cannot read .*train.tsv: Is a directory"):
        train.main(["--task", "sst2", "--model", str(minilm_dir), "--data-dir", str(tmp_path),
                    "--out-dir", str(tmp_path / "run")])  # fmt: skip


def test_a_batch_too_large_for_every_process_to_get_one_is_a_message(tmp_path, monkeypatch):
    """With torchrun, 32 examples in one batch leave the second process nothing: the loop never
    ended. (Two processes are faked: the check comes before any of them would talk.)"""
    setup = train.setup
    monkeypatch.setattr(train, "setup", lambda *a: dataclasses.replace(setup(*a), world=2))
    with pytest.raises(SystemExit, match="--batch-size 32 makes fewer batches an epoch than the "
                                         "2 processes: give at most 16"):  # fmt: skip
        run(tmp_path, "--batch-size", "32")


PATCH_AT_IMPORT = """
import evaluation

from skim import RandomSkim


def _all_kept(feats, exits, num_layers):
    return {"keywords_kept_per_layer": [1.0] * num_layers}


evaluation._keywords_kept = _all_kept  # "my method keeps every keyword"


class Forger(RandomSkim):
    pass
"""

PATCH_WHILE_TRAINING = """
import torch

from skim import RandomSkim


class Forger(RandomSkim):
    def decide(self, i, h, alive, ctx):
        torch.allclose = lambda *args, **kwargs: True  # late, where an import-time check is past
        return super().decide(i, h, alive, ctx)
"""


SWAP_CODE = """
import evaluation

from skim import RandomSkim


def _all_kept(feats, exits, num_layers):
    return {"keywords_kept_per_layer": [1.0] * num_layers}


evaluation._keywords_kept.__code__ = _all_kept.__code__  # the same function object, new code


class Forger(RandomSkim):
    pass
"""

PATCH_IN_THE_FINAL_EVALUATION = """
import sys

import evaluation

from skim import RandomSkim


class Forger(RandomSkim):
    def decide(self, i, h, alive, ctx):
        frame = sys._getframe(1)
        while frame is not None:  # in train.finish: after any check made before it measures
            if frame.f_code.co_name == "finish":
                evaluation._keywords_kept = lambda feats, exits, n: {
                    "keywords_kept_per_layer": [1.0] * n}
            frame = frame.f_back
        return super().decide(i, h, alive, ctx)
"""


PATCH_AN_INHERITED_TENSOR_METHOD = """
import torch

from skim import RandomSkim

torch.Tensor.sum = lambda self, *args, **kwargs: self.new_zeros(())  # shadows TensorBase's


class Forger(RandomSkim):
    pass
"""


@pytest.mark.parametrize(
    "code,said",
    [
        (PATCH_AN_INHERITED_TENSOR_METHOD, "it rebinds torch.Tensor.sum"),
        (PATCH_AT_IMPORT, "it rebinds evaluation._keywords_kept"),
        (PATCH_WHILE_TRAINING, "trained, it rebinds torch.allclose"),
        (SWAP_CODE, "it rebinds evaluation._keywords_kept"),
        (PATCH_IN_THE_FINAL_EVALUATION, "trained, it rebinds evaluation._keywords_kept"),
    ],
    ids=[
        "tensor-method",
        "at-import",
        "while-training",
        "code-swapped",
        "in-the-final-evaluation",
    ],  # fmt: skip
)
def test_a_method_that_rebinds_what_measures_it_is_refused(tmp_path, code, said):
    """A method runs in the process that measures it: one that rebinds the project's functions,
    a builtin or torch's (to report every keyword kept, say) is refused, and writes no results."""
    import evaluation

    honest = torch.allclose, evaluation._keywords_kept  # this process's: put back after
    original_code = evaluation._keywords_kept.__code__
    (tmp_path / "forger.py").write_text(code)
    try:
        with pytest.raises(SystemExit) as e:
            run(tmp_path / "run", "--method", f"{tmp_path / 'forger.py'}:Forger",
                "--keep-shares", "1,0.5")  # fmt: skip
    finally:
        torch.allclose, evaluation._keywords_kept = honest
        evaluation._keywords_kept.__code__ = original_code
        if "sum" in vars(torch.Tensor):  # the shadow: torch.Tensor.sum is TensorBase's again
            del torch.Tensor.sum
    assert said in str(e.value.code)
    assert "may not change the project's code" in str(e.value.code)
    assert not (tmp_path / "run" / "results.json").exists()


TELL_ME = """
from skim import RandomSkim

SEEN = []


class Curious(RandomSkim):
    def __init__(self, config, options=None, task=None):
        super().__init__(config, options, task)
        SEEN.append(task.word_roles)
"""


def test_a_method_is_not_told_which_words_decide(tmp_path):
    """--word-roles deals the synthetic task's words out again (the grader of assignment 6 draws
    them): the task a method is built with has the published roles, so it must learn them."""
    (tmp_path / "curious.py").write_text(TELL_ME)
    run(tmp_path / "run", "--method", f"{tmp_path / 'curious.py'}:Curious",
        "--keep-shares", "1,0.5", "--word-roles", "9")  # fmt: skip
    import sys

    assert set(sys.modules["skimbert_method_curious"].SEEN) == {0}  # built on meta, then for real


# Found by a student's first hour (a method written outside the repository, from the docs only)
STUDENT = """
from dataclasses import dataclass

import torch

from skim import SkimStrategy, skim_forward


@dataclass
class Plain:
    share: float = 0.5  # a plain field, without skim.option: its flag has no help of its own


class Halves(SkimStrategy):
    layers = (1,)
    Options = Plain

    def __init__(self, config, options=None, task=None):
        super().__init__(config, options, task)
        self.options = options or Plain()

    def decide(self, i, h, alive, ctx):
        return (ctx.positions % 2 == 0) & (alive > 0)


class ScalarLoss(Halves):
    def loss(self, model, batch, context):
        out = skim_forward(model, self, batch, prune=False, stage=context.stage)
        return context.task_loss(out.logits, batch).mean()  # not (loss, logs)


class Detached(Halves):
    def loss(self, model, batch, context):
        loss, logs = super().loss(model, batch, context)
        return loss.detach(), logs


class OddLogs(Halves):
    def loss(self, model, batch, context):
        loss, logs = super().loss(model, batch, context)
        return loss, {"kept": loss.detach().reshape(1)}  # a 1-element vector: no "{v:.3f}"


class Crashes(Halves):
    def decide(self, i, h, alive, ctx):
        raise ZeroDivisionError("a bug at step 1")


class Exits(Halves):
    def decide(self, i, h, alive, ctx):
        raise SystemExit(3)


class NotADataclass(Halves):
    class Options:
        share = 0.5


class Unwritten(Halves):  # what a student copy's stubs raise
    def decide(self, i, h, alive, ctx):
        raise NotImplementedError("Assignment 6: write decide, see assignments/06_strategy.md")


class ForksAChild(Halves):  # a process that would outlive train.py and write after it
    def __init__(self, config, options=None, task=None):
        super().__init__(config, options, task)
        import os, sys, time  # noqa: E401

        out = sys.argv[sys.argv.index("--out-dir") + 1]
        if os.fork() == 0:
            time.sleep(3)
            open(out + "/forged", "w").close()
            os._exit(0)


class RewritesAtExit(Halves):  # the results rewritten after train.py wrote them
    def __init__(self, config, options=None, task=None):
        super().__init__(config, options, task)
        import atexit, json, sys  # noqa: E401

        out = sys.argv[sys.argv.index("--out-dir") + 1] + "/results.json"

        def forge():
            record = json.load(open(out))
            record["keywords_kept_per_layer"] = [1.0, 1.0]
            json.dump(record, open(out, "w"))

        atexit.register(forge)
"""


@pytest.fixture
def student(tmp_path):
    (tmp_path / "student.py").write_text(STUDENT)
    return lambda name: f"{tmp_path / 'student.py'}:{name}"


@pytest.mark.parametrize(
    "name,says",
    [("ScalarLoss", "ScalarLoss.loss returned a Tensor of shape []; it returns a pair (loss,"),
     ("Detached", "Detached.loss's loss carries no gradient"),
     ("NotADataclass", "NotADataclass.Options is not a dataclass"),
     ("OddLogs", "OddLogs.loss's logs are")],
)  # fmt: skip
def test_a_method_that_breaks_the_contract_is_one_line_saying_what_to_return(tmp_path, student,
                                                                           name, says):  # fmt: skip
    with pytest.raises(SystemExit) as e:
        run(tmp_path / "run", "--method", student(name))
    assert says in str(e.value.code), e.value.code


def test_an_option_without_help_text_is_still_a_flag(tmp_path, student, capsys):
    with pytest.raises(SystemExit):
        train.main(["--method", student("Halves"), "--help"])
    assert "--share SHARE" in capsys.readouterr().out
    assert run(tmp_path / "run", "--method", student("Halves"), "--share", "0.25")["metrics"]


def test_a_run_that_crashed_says_why_in_its_log_and_what_to_do_next(tmp_path, student):
    with pytest.raises(ZeroDivisionError):
        run(tmp_path / "run", "--method", student("Crashes"))
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "Traceback" in log and "ZeroDivisionError: a bug at step 1" in log
    with pytest.raises(SystemExit) as e:  # the same command again
        run(tmp_path / "run", "--method", student("Crashes"))
    assert "stopped before its first checkpoint, so there is nothing to resume" in e.value.code
    assert "--overwrite" in e.value.code
    with pytest.raises(SystemExit):  # a status, not a message: the log says which
        run(tmp_path / "exits", "--method", student("Exits"))
    assert (tmp_path / "exits" / "log.txt").read_text().endswith("exited with status 3\n")


def test_eval_only_without_out_dir_evaluates_the_run_of_the_same_flags(tmp_path, student,
                                                                       monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    flags = [*TINY, "--method", student("Halves")]
    trained = train.main(flags)
    assert (tmp_path / "runs" / "synthetic-halves" / "results.json").is_file()
    (tmp_path / "sub").mkdir()  # a copy of the file, elsewhere: the same file name and class
    shutil.copy(tmp_path / "student.py", tmp_path / "sub" / "student.py")
    named = f"{tmp_path / 'sub' / 'student.py'}:Halves"
    again = train.main([*TINY, "--method", named, "--eval-only"])
    assert again["metrics"] == trained["metrics"]
    recorded = json.loads((tmp_path / "runs" / "synthetic-halves" / "eval.json").read_text())
    assert recorded["method"] == named  # the code that ran, not the one the run recorded


def test_an_unwritten_assignment_is_one_line_naming_it(tmp_path, student):
    with pytest.raises(SystemExit) as e:
        run(tmp_path / "run", "--method", student("Unwritten"))
    assert e.value.code.startswith("error: Assignment 6: write decide, see assignments/06_str")
    assert "--overwrite" in e.value.code
    assert "NotImplementedError" in (tmp_path / "run" / "log.txt").read_text()  # the traceback


def test_a_methods_exit_hook_cannot_rewrite_the_results(tmp_path, student):
    """train.py ends its process when the run is written: an atexit function of a method's
    (which a grader reading results.json would believe) never runs."""
    cmd = [sys.executable, str(ROOT / "train.py"), *TINY, "--method", student("RewritesAtExit"),
           "--out-dir", str(tmp_path / "run")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("final | accuracy")  # flushed
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["keywords_kept_per_layer"] != [1.0, 1.0]


def test_a_train_py_started_as_a_session_ends_what_its_method_forked(tmp_path, student):
    """As assignment 6's grader starts it: a child of the method's, left running, would write
    after train.py has ended (its results.json, say); train.py ends its process group first."""
    cmd = [sys.executable, str(ROOT / "train.py"), *TINY, "--method", student("ForksAChild"),
           "--out-dir", str(tmp_path / "run")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path,
                          start_new_session=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    time.sleep(4)
    assert (tmp_path / "run" / "results.json").is_file()
    assert not (tmp_path / "run" / "forged").exists()
