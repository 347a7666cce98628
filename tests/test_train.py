"""train.py end to end on the smoke preset: every method, resuming, evaluation, bad input."""

import json

import pytest
import torch

import config
import data
import runs
import train
from transformer import CONFIGS
from weights import from_pretrained, read_safetensors, resolve_model_dir

# every built-in method, with the options it needs on the smoke preset
METHOD_ARGS = {
    "baseline": [],
    "transkimmer": [],
    "trbert": [],
    "cls-attention": ["--keep", "0.5"],
    "random": ["--keep-shares", "1,0.5"],
    "ltp": [],
}

FAST = [
    "--preset",
    "smoke",
    "--train-subset",
    "160",
    "--eval-subset",
    "40",
    "--epochs",
    "1",
    "--case-study",
    "5",
]


def run(tmp_path, *args, name="run"):
    return train.main([*FAST, "--out-dir", str(tmp_path / name), *args])


def test_every_built_in_method_is_exercised_here():
    assert METHOD_ARGS.keys() == runs.METHODS.keys()


def test_a_method_s_train_defaults_sit_under_the_preset_and_the_flags(tmp_path):
    def optimiser(*argv):
        cfg, _, _ = train.parse_config(list(argv))
        return cfg.weight_decay, cfg.warmup, cfg.max_grad_norm

    assert optimiser("--method", "trbert", "--preset", "smoke") == (0.0, 0.1, 1.0)  # the authors'
    assert optimiser("--method", "trbert", "--warmup", "0", "--weight-decay=0.01") == (0.01, 0, 1)
    assert optimiser("--method", "transkimmer", "--preset", "smoke") == (0.01, 0.0, 0.0)  # ours
    (tmp_path / "typo.py").write_text(
        "from skim import SkimStrategy\n\n"
        "class Typo(SkimStrategy):\n"
        "    layers = (1,)\n"
        "    train_defaults = {'wramup': 0.1}\n\n"
        "    def decide(self, hidden, ctx):\n"
        "        return ctx.keep\n"
    )
    with pytest.raises(SystemExit, match=r"train_defaults names no train.py setting: \['wramup'\]"):
        train.parse_config(["--method", f"{tmp_path / 'typo.py'}:Typo"])


def test_help_names_the_built_in_methods(capsys):
    with pytest.raises(SystemExit) as stop:
        train.parse_config(["--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps lines (and hyphens)
    assert stop.value.code == 0 and all(name in shown for name in runs.METHODS), shown


def test_the_log_counts_a_tiny_model_s_parameters_and_holds_the_progress_lines(tmp_path):
    run(tmp_path, "--method", "baseline", "--epochs", "1", "--log-every", "1")
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "model 20,076 parameters" in log and "0.0M" not in log
    assert "\nstep 1 | loss " in log  # the loss curve stays with the run, not only on screen


OLD_TEACHER = """
from skim import SkimStrategy, Stage


class OldTeacher(SkimStrategy):
    layers = (1,)

    def decide(self, i, h, alive, ctx):
        return alive > 0 if ctx.pruning else alive

    def stages(self, cfg):  # the teacher came from a stage named "finetune", by its name alone
        return [Stage("finetune", cfg.epochs, cfg.lr, 0.0, skim=False),
                Stage("joint", cfg.epochs, cfg.lr, cfg.lr, teacher=True)]
"""


def test_a_method_whose_teacher_came_from_a_stage_s_name_is_told_what_to_change(tmp_path):
    (tmp_path / "old.py").write_text(OLD_TEACHER)
    with pytest.raises(SystemExit, match=r"stage joint learns from a teacher, but no stage before "
                       r"it saves one: give the stage that fine-tunes Stage\(\.\.\., "
                       r"saves_teacher=True\)"):  # fmt: skip
        run(tmp_path, "--method", f"{tmp_path / 'old.py'}:OldTeacher")


@pytest.mark.parametrize("preset", sorted(config.PRESETS))
def test_every_preset_names_a_known_task_and_a_model_that_is_here(preset):
    cfg, _, _ = train.parse_config(["--preset", preset])
    assert data.get_task(cfg.task).reader == "synthetic"  # presets run offline
    shape = cfg.model.removeprefix("random-")
    if shape != cfg.model:
        assert shape in CONFIGS
    else:  # a released checkpoint installed with the test requirements (negation: MiniLM)
        assert (resolve_model_dir(cfg.model) / "vocab.txt").is_file()


@pytest.mark.parametrize("method", list(METHOD_ARGS))
def test_each_method_runs_the_smoke_preset_and_writes_its_outputs(tmp_path, method):
    results = run(tmp_path, "--method", method, *METHOD_ARGS[method])
    folder = tmp_path / "run"
    for name in (
        "config.json",
        "log.txt",
        "results.json",
        "kept_tokens.svg",
        "case_study.html",
        "ckpt/config.json",
        "ckpt/model.safetensors",
        "ckpt/vocab.txt",
    ):
        assert (folder / name).is_file(), name
    saved = json.loads((folder / "results.json").read_text())
    assert saved["metrics"]["accuracy"] == results["metrics"]["accuracy"]
    assert set(saved["flops"]) == {"none", "batch", "sequence"}
    assert len(saved["kept_per_layer"]) == 2 and 0 < saved["kept"] <= 1
    if method == "baseline":
        assert saved["flops"]["none"]["speedup"] == 1.0
    assert "<svg" in (folder / "kept_tokens.svg").read_text()
    assert (folder / "case_study.html").read_text().count("<p>") == 5 + 1  # legend + 5 examples
    # the checkpoint is a Hugging Face-style folder: our loader reads its encoder back
    encoder = from_pretrained(folder / "ckpt")
    tensors = read_safetensors(folder / "ckpt" / "model.safetensors")
    torch.testing.assert_close(
        encoder.emb.tok.weight, tensors["bert.embeddings.word_embeddings.weight"], atol=0, rtol=0
    )
    prefix = {"transkimmer": "skim.", "trbert": "policy.", "random": "random."}.get(method)
    assert prefix is None or any(k.startswith(prefix) for k in tensors)


def test_transformers_reads_our_checkpoint_folder(tmp_path):
    import transformers

    run(tmp_path, "--method", "baseline", "--epochs", "0.2")
    ours = from_pretrained(tmp_path / "run" / "ckpt")
    ref = transformers.BertForSequenceClassification.from_pretrained(
        str(tmp_path / "run" / "ckpt")
    ).eval()
    ids = torch.tensor([[2, 10, 20, 30, 3]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), ref.bert(ids).last_hidden_state, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method,stop", [("transkimmer", 4), ("trbert", 13)])
def test_interrupted_and_resumed_run_ends_with_identical_weights(tmp_path, method, stop):
    run(tmp_path, "--method", method, name="straight")
    stopped = run(tmp_path, "--method", method, "--stop-after-steps", str(stop), name="resumed")
    assert stopped == {"stopped": True}
    run(tmp_path, "--method", method, "--resume", name="resumed")
    a = read_safetensors(tmp_path / "straight" / "ckpt" / "model.safetensors")
    b = read_safetensors(tmp_path / "resumed" / "ckpt" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resuming"


@pytest.fixture
def keeps_determinism_setting():
    """--deterministic sets globals of torch's: put them back after the test."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fused = {k: getattr(torch.backends.cuda, f"{k}_sdp_enabled")() for k in SDP_KERNELS}
    yield
    torch.use_deterministic_algorithms(before, warn_only=warn_only)
    for k, on in fused.items():
        getattr(torch.backends.cuda, f"enable_{k}_sdp")(on)


SDP_KERNELS = ("cudnn", "flash", "mem_efficient")


# (device, precision, method): bf16 autocast runs on a CPU too; on a GPU every precision, and
# TR-BERT for its guide, its REINFORCE samples and its three stages
ON_DEVICE = [
    pytest.param("cpu", "bf16", "transkimmer", id="cpu-bf16-transkimmer"),
    *(
        pytest.param("cuda", precision, method, id=f"cuda-{precision}-{method}",
                     marks=pytest.mark.cuda)
        for precision, method in [("fp32", "transkimmer"), ("bf16", "transkimmer"),
                                  ("fp16", "transkimmer"), ("bf16", "trbert")]
    ),
]  # fmt: skip


@pytest.mark.parametrize("device,precision,method", ON_DEVICE)
def test_a_run_on_a_device_resumes_there_and_evaluates_on_the_cpu(
    tmp_path, keeps_determinism_setting, device, precision, method
):
    stop = {"transkimmer": 4, "trbert": 13}[method]
    # on a GPU some backward kernels add with atomics in any order: --deterministic switches them
    flags = ["--method", method, "--device", device, "--precision", precision, "--deterministic"]
    trained = run(tmp_path, *flags, name="straight")
    assert f"({device}, 1 process)" in (tmp_path / "straight" / "log.txt").read_text()
    assert run(tmp_path, *flags, "--stop-after-steps", str(stop), name="resumed") == {
        "stopped": True
    }
    train.main(["--resume", "--out-dir", str(tmp_path / "resumed")])
    a = read_safetensors(tmp_path / "straight" / "ckpt" / "model.safetensors")
    b = read_safetensors(tmp_path / "resumed" / "ckpt" / "model.safetensors")
    for k in a:
        err = (a[k].float() - b[k].float()).abs().max().item()
        assert err == 0, f"{k} differs by {err:.1e} after resuming on {device} ({precision})"
    if precision == "fp16":  # CUDA's alone, and --precision is the run's own: no CPU evaluation
        return
    # trained on the device, evaluated on the CPU: the checkpoint holds no trace of the GPU
    again = train.main(["--eval-only", "--out-dir", str(tmp_path / "straight"), "--device", "cpu"])
    if device == "cpu":
        assert again["metrics"] == trained["metrics"] and again["kept"] == trained["kept"]
    elif precision == "fp32":  # other kernels: a token near its threshold may go the other way
        assert abs(again["kept"] - trained["kept"]) < 0.05
        assert abs(again["metrics"]["accuracy"] - trained["metrics"]["accuracy"]) <= 0.05
    else:  # bf16 on two devices rounds differently: it must only work
        assert 0 < again["kept"] <= 1 and 0 <= again["metrics"]["accuracy"] <= 1


def test_fp16_clips_the_unscaled_gradient(monkeypatch):
    """With a loss scale, --max-grad-norm must clip the true gradient: unscaled first."""
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = torch.optim.SGD([w], lr=1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)  # the CPU's twin of CUDA's scaler
    scaler.scale((w * torch.tensor([3.0, 4.0])).sum()).backward()  # true gradient (3, 4): norm 5
    train.clip_gradients(opt, scaler, 1.0, torch.tensor(1.0), where="1 of stage joint")
    scaler.step(opt), scaler.update()
    torch.testing.assert_close(w.detach(), torch.tensor([3.0 - 0.6, 4.0 - 0.8]))


def test_the_loss_scale_is_saved_with_the_trainer_state(tmp_path):
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=7)
    runs.write_trainer_state(tmp_path, {"scaler": scaler.state_dict()})
    again = torch.amp.GradScaler("cpu")
    again.load_state_dict(runs.read_trainer_state(tmp_path)["scaler"])
    assert again.get_scale() == 512.0 and again.get_growth_interval() == 7


@pytest.mark.parametrize("distill", [True, False])
def test_transkimmer_from_a_finetuned_run_starts_from_its_weights_and_distils(
    tmp_path, monkeypatch, distill
):
    run(tmp_path, "--method", "baseline", name="base")
    teachers, task_loss = [], train.task_loss

    def spy(task, logits, batch, teacher=None):  # records the teacher logits each loss is given
        teachers.append(teacher)
        return task_loss(task, logits, batch, teacher)

    monkeypatch.setattr(train, "task_loss", spy)
    run(
        tmp_path,
        "--method",
        "transkimmer",
        "--finetuned",
        str(tmp_path / "base"),
        "--lr",
        "1e-30",
        "--skim-lr",
        "1e-30",
        "--distill" if distill else "--no-distill",
        name="skim",
    )
    assert teachers and all((t is not None) == distill for t in teachers)
    assert (
        "teacher: the fine-tuned model" in (tmp_path / "skim" / "log.txt").read_text()
    ) == distill
    base = read_safetensors(tmp_path / "base" / "ckpt" / "model.safetensors")
    skim = read_safetensors(tmp_path / "skim" / "ckpt" / "model.safetensors")
    for k in base:  # learning rate ~0: the encoder and head are still the fine-tuned ones
        torch.testing.assert_close(skim[k], base[k], atol=1e-12, rtol=0, msg=k)


def test_eval_only_reproduces_the_final_evaluation(tmp_path):
    trained = run(tmp_path, "--method", "transkimmer")
    again = train.main(["--eval-only", "--out-dir", str(tmp_path / "run")])
    assert again["metrics"] == trained["metrics"]
    assert again["kept_per_layer"] == trained["kept_per_layer"]


def test_word_roles_are_kept_with_the_run_and_used_again_by_eval_only(tmp_path):
    trained = run(tmp_path, "--method", "baseline", "--word-roles", "5")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["word_roles"] == 5
    again = train.main(["--eval-only", "--out-dir", str(tmp_path / "run")])
    assert again["metrics"] == trained["metrics"]
    assert again["keywords_kept_per_layer"] == trained["keywords_kept_per_layer"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--epochs", "-1"], "--epochs must be positive"),
        (["--task", "nope"], "unknown task 'nope'"),
        (["--data-dir", "/no/such/folder"], "--data-dir /no/such/folder is not a folder"),
        (["--model", "random-huge"], "known shapes are"),
        (["--method", "trbert", "--policy-layers", "1,x"], "comma-separated integers"),
        (["--method", "trbert", "--policy-layers", "1,7"], "--policy-layers must be increasing"),
        (["--resume"], "is not a run folder"),
        (["--lr", "inf"], "--lr must be positive and finite"),
        (["--warmup", "5"], "--warmup must be a share"),
        (["--log-every", "0"], "--log-every must be ≥ 1"),
        (["--device", "tpu"], "--device must be auto, cpu, cuda"),
        (["--device", "cpu", "--precision", "fp16"], "--precision fp16 needs a CUDA GPU"),
        (["--max-length", "1"], "--max-length must be ≥ 3"),
        (["--method", "trbert", "--num-samples", "1"], "--num-samples must be ≥ 2"),
        (["--method", "trbert", "--imitation-fraction", "5"], "--imitation-fraction must be in"),
        (["--method", "trbert", "--rl-epochs", "-1"], "--rl-epochs must be > 0"),
        (["--skim-lr", "-1"], "--skim-lr must be positive"),
        (["--weight-decay", "-1"], "--weight-decay must be ≥ 0"),
        (["--threads", "-1"], "--threads must be ≥ 0"),
        (["--word-roles", "-1"], "--word-roles must be in 0 .. 2147483647"),
        (["--task", "sst2", "--word-roles", "3"], "--word-roles deals out the words of the"),
        (["--method", "transkimmer", "--tau", "0"], "--tau (the Gumbel temperature) must be > 0"),
        (["--method", "random", "--keep-shares", "1,x"], "--keep-shares must be numbers"),
        (["--method", "random", "--keep-shares", "1,0.5,0.5"], "--keep-shares needs 2 shares"),
        (["--method", "nope"], "unknown method 'nope'"),
        (["--method", "/no/file.py:X"], "no file /no/file.py"),
        (["--method", "tests/conftest.py:NoSuchClass"], "has no class 'NoSuchClass'"),
    ],
)
def test_bad_input_stops_before_training_with_a_clear_message(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        run(tmp_path, *args)
    assert message in str(e.value.code) + capsys.readouterr().err
    assert not (tmp_path / "run" / "ckpt").exists()


def test_model_that_cannot_be_found_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIMBERT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SKIMBERT_HUB", "http://127.0.0.1:9")
    with pytest.raises(SystemExit, match="--model someone/missing-bert: could not download"):
        train.main(
            ["--task", "sst2", "--model", "someone/missing-bert", "--out-dir", str(tmp_path / "r")]
        )


def test_missing_data_folder_for_a_real_task_is_a_clear_error(tmp_path, minilm_dir, monkeypatch):
    monkeypatch.setenv("SKIMBERT_CACHE", str(tmp_path / "cache"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="error: .*SST-2"):
        train.main(
            [
                "--task",
                "sst2",
                "--model",
                str(minilm_dir),
                "--data-dir",
                str(empty),
                "--out-dir",
                str(tmp_path / "r"),
            ]
        )


def test_torchrun_with_two_processes_trains_and_gathers_metrics_over_all_ranks(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "train.py",
        *FAST,
        "--method",
        "transkimmer",
        "--train-subset",
        "128",
        "--eval-subset",
        "37",
        "--threads",
        "1",
        "--out-dir",
        str(out),
    ]
    done = subprocess.run(
        cmd, cwd=train.Path(train.__file__).parent, capture_output=True, text=True, timeout=300
    )
    first_error = done.stderr[done.stderr.find("Traceback") :][
        :4000
    ]  # a rank's own error, not torchrun's summary
    assert done.returncode == 0, first_error
    results = json.loads((out / "results.json").read_text())
    assert results["num_features"] == 37  # each rank evaluated a part; all 37 came back
    assert "2 processes" in (out / "log.txt").read_text()


STUDENT_STRATEGY = '''
"""A student's strategy, outside the repository: it implements decide and its cost, nothing else."""
from skim import SkimStrategy


class KeepEvenPositions(SkimStrategy):
    layers = (1,)  # acts before layer 1

    def decide(self, i, h, alive, ctx):
        keep = (ctx.positions % 2 == 0) & (alive > 0)  # [CLS] is position 0
        return keep if ctx.pruning else keep.to(h.dtype)

    def overhead_flops(self, config, n):
        return 0  # deciding by position costs no matrix product
'''


def test_a_strategy_in_a_file_outside_the_repository_trains_evaluates_and_resumes(tmp_path):
    path = tmp_path / "elsewhere" / "even.py"
    path.parent.mkdir()
    path.write_text(STUDENT_STRATEGY)
    spec = f"{path}:KeepEvenPositions"
    trained = run(tmp_path, "--method", spec, name="straight")
    assert trained["flops"]["none"]["speedup"] > 1 and trained["kept"] < 1
    saved = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert saved["method"] == spec
    # a folder never chooses code to run: the method's file is named again (test_folder_faults)
    again = train.main(["--eval-only", "--out-dir", str(tmp_path / "straight"), "--method", spec])
    assert again["metrics"] == trained["metrics"] and again["kept"] == trained["kept"]
    assert run(tmp_path, "--method", spec, "--stop-after-steps", "4", name="resumed") == {
        "stopped": True
    }
    train.main(["--resume", "--out-dir", str(tmp_path / "resumed"), "--method", spec])
    a = read_safetensors(tmp_path / "straight" / "ckpt" / "model.safetensors")
    b = read_safetensors(tmp_path / "resumed" / "ckpt" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_random_control_without_retraining_evaluates_the_finetuned_run_as_it_is(tmp_path):
    run(tmp_path, "--method", "baseline", name="base")
    args = ["--method", "random", "--keep-shares", "1,0.5", "--finetuned", str(tmp_path / "base")]
    results = run(tmp_path, *args, "--no-retrain", name="control")
    assert "stage" not in (tmp_path / "control" / "log.txt").read_text()  # nothing trained
    assert results["kept_per_layer"][1] == pytest.approx(0.5, abs=0.1)
    base = read_safetensors(tmp_path / "base" / "ckpt" / "model.safetensors")
    ctrl = read_safetensors(tmp_path / "control" / "ckpt" / "model.safetensors")
    assert all(torch.equal(base[k], ctrl[k]) for k in base)


STUDENT_METHOD = '''
"""A student's method with its own settings and schedule, in a file without
`from __future__ import annotations` (so its dataclass annotations are types, not strings)."""
from dataclasses import dataclass, field

import torch

from skim import SkimStrategy, Stage


@dataclass
class Options:
    share: float = field(default=0.5, metadata={"help": "share of tokens kept before layer 1"})
    warm_epochs: float = field(default=0.5, metadata={"help": "epochs of plain fine-tuning first"})
    verbose: bool = field(default=False, metadata={"help": "unused"})


class KeepFirstShare(SkimStrategy):
    Options = Options
    layers = (1,)

    # no __init__: SkimStrategy's takes (config, options, task) and keeps self.options

    def decide(self, i, h, alive, ctx):
        n = alive.sum(1, keepdim=True)  # tokens each sequence has
        keep = (torch.arange(h.shape[1], device=h.device) < (n * self.options.share).ceil())
        keep = keep & (alive > 0)
        return keep if ctx.pruning else keep.to(h.dtype)

    def stages(self, cfg):
        return [Stage("finetune", self.options.warm_epochs, cfg.lr, 0.0, skim=False),
                Stage("joint", cfg.epochs, cfg.lr, 0.0)]
'''


def test_a_method_with_its_own_options_and_stages_trains_from_outside(tmp_path, capsys):
    path = tmp_path / "elsewhere" / "first_share.py"
    path.parent.mkdir()
    path.write_text(STUDENT_METHOD)
    spec = f"{path}:KeepFirstShare"
    with pytest.raises(SystemExit):
        train.main(["--method", spec, "--help"])
    assert "--share" in capsys.readouterr().out
    results = run(tmp_path, "--method", spec, "--share", "0.25", "--warm-epochs", "1")
    assert results["kept_per_layer"][1] == pytest.approx(0.25, abs=0.05)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "stage finetune" in log and "stage joint" in log
    assert json.loads((tmp_path / "run" / "config.json").read_text())["options"]["share"] == 0.25


def test_a_method_whose_constructor_needs_the_model_says_to_override_build(tmp_path):
    path = tmp_path / "needs_model.py"
    path.write_text(
        "from skim import SkimStrategy\n\n"
        "class NeedsModel(SkimStrategy):\n"
        "    layers = (1,)\n\n"
        "    def __init__(self, bert):\n"
        "        super().__init__()\n"
    )
    with pytest.raises(SystemExit, match=r"NeedsModel\(bert\) cannot be made .*override build"):
        run(tmp_path, "--method", f"{path}:NeedsModel")


@pytest.mark.parametrize(
    "source,message",
    [
        ("def decide(:\n", r"SyntaxError: .*broken.py, line 1"),
        (
            "import torch\nraise RuntimeError('no GPU here')\n",
            r"RuntimeError: no GPU here .*line 2",
        ),
    ],
)
def test_a_method_file_that_fails_to_load_names_its_error_and_line(tmp_path, source, message):
    path = tmp_path / "broken.py"
    path.write_text(source)
    with pytest.raises(SystemExit, match=message):
        run(tmp_path, "--method", f"{path}:Broken")
