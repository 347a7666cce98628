"""Run folders as hostile input (issue 25): a folder never chooses code, nothing is written outside
it or through a link in it, one writer at a time, and every crafted file is one line of error.

A finished run and a stopped one are trained once (a few seconds) and copied into each test.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import report
import runs
import train
from transformer import CONFIGS

FAST = ["--preset", "smoke", "--train-subset", "160", "--eval-subset", "40", "--epochs", "1",
        "--case-study", "5"]  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]
STUDENT_STRATEGY = """from skim import SkimStrategy


class KeepEvenPositions(SkimStrategy):
    layers = (1,)

    def decide(self, i, h, alive, ctx):
        keep = (ctx.positions % 2 == 0) & (alive > 0)
        return keep if ctx.pruning else keep.to(h.dtype)

    def overhead_flops(self, config, n):
        return 0
"""
HELPER = "from pathlib import Path\nPath({marker!r}).write_text('code from the folder ran')\n"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    """A finished Transkimmer run and one stopped after 3 steps, trained once for the module."""
    base = tmp_path_factory.mktemp("made")
    train.main([*FAST, "--method", "transkimmer", "--out-dir", str(base / "finished")])
    train.main([*FAST, "--method", "transkimmer", "--stop-after-steps", "3",
                "--out-dir", str(base / "stopped")])  # fmt: skip
    return {"finished": base / "finished", "stopped": base / "stopped"}


@pytest.fixture
def finished(made, tmp_path) -> Path:
    shutil.copytree(made["finished"], tmp_path / "run", symlinks=True)
    return tmp_path / "run"


@pytest.fixture
def stopped(made, tmp_path) -> Path:
    shutil.copytree(made["stopped"], tmp_path / "stopped", symlinks=True)
    return tmp_path / "stopped"


@pytest.fixture
def within_seconds():
    """Fail, rather than hang, if the test takes over 30 s (a FIFO read waits forever)."""

    def too_long(*_):
        raise TimeoutError("still reading after 30 s: a FIFO or device was read")

    before = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, before)


def edit(path: Path, change) -> None:
    """Rewrite a JSON file with change(value) applied (change edits in place or returns anew)."""
    value = json.loads(path.read_text())
    path.write_text(json.dumps(change(value) or value))


def error_of(call, *args) -> str:
    """The message of the SystemExit a call raises: one line, starting 'error: '."""
    with pytest.raises(SystemExit) as e:
        call(*args)
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    assert "Traceback" not in message
    return message


def eval_only(run: Path, *args):
    return train.main(["--eval-only", "--out-dir", str(run), *args])


def resume(run: Path, *args):
    return train.main(["--resume", "--out-dir", str(run), *args])


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------------
# 1. No code from a folder


@pytest.mark.parametrize("form", ["file", "module"])
def test_a_folder_that_names_its_own_code_runs_none_of_it(finished, stopped, tmp_path, form,
                                                          monkeypatch):  # fmt: skip
    import bench

    marker = tmp_path / "pwned"
    for run in (finished, stopped):
        (run / "helper.py").write_text(HELPER.format(marker=str(marker)))
        spec = f"{run / 'helper.py'}:Evil" if form == "file" else "helper:Evil"
        edit(run / "config.json", lambda c: c.update(method=spec))
        monkeypatch.syspath_prepend(str(run))  # as if the folder were the current directory
    for call in (eval_only, resume):
        for run in (finished, stopped):
            assert "name it: --method" in error_of(call, run)
    assert "name it: --method" in error_of(bench.load_run, str(finished), CONFIGS["tiny"])
    assert "name it: --method" in error_of(runs.load_run, finished)
    report.main([str(finished), "--out", str(tmp_path / "figs")])  # reads results.json only
    summary = subprocess.run([sys.executable, ROOT / "benchmarks" / "summarize.py", finished],
                             cwd=finished, capture_output=True, text=True)  # fmt: skip
    assert summary.returncode == 0, summary.stderr
    assert not marker.exists()


def test_a_file_method_is_loaded_again_only_when_the_user_names_it(tmp_path):
    path = tmp_path / "mine" / "even.py"
    path.parent.mkdir()
    path.write_text(STUDENT_STRATEGY)
    run = tmp_path / "run"
    trained = train.main([*FAST, "--method", f"{path}:KeepEvenPositions", "--out-dir", str(run)])
    message = error_of(eval_only, run)
    assert f"{run / 'config.json'} records the method {path}:KeepEvenPositions" in message
    assert f"if you trust it, name it: --method {path}:KeepEvenPositions" in message
    assert "contradict" in error_of(eval_only, run, "--method", "transkimmer")
    assert "contradict" in error_of(eval_only, run, "--method", f"{path}:Other")
    again = eval_only(run, "--method", f"{path}:KeepEvenPositions")
    assert again["metrics"] == trained["metrics"]
    moved = tmp_path / "elsewhere" / "even.py"  # a folder from another machine: same file name
    moved.parent.mkdir()
    shutil.copy(path, moved)
    assert eval_only(run, "--method", f"{moved}:KeepEvenPositions")["kept"] == trained["kept"]


def test_bench_loads_a_file_method_s_checkpoint_only_with_its_method_flag(tmp_path):
    import bench

    path = tmp_path / "even.py"
    path.write_text(STUDENT_STRATEGY)
    run = tmp_path / "run"
    train.main([*FAST, "--method", f"{path}:KeepEvenPositions", "--out-dir", str(run)])
    config = runs.load_run(run, f"{path}:KeepEvenPositions")[0].bert.config
    assert "name it: --method" in error_of(bench.load_run, str(run), config)
    name, _, strategy = bench.load_run(str(run), config, [f"{path}:KeepEvenPositions"])
    assert type(strategy).__name__ == "KeepEvenPositions" and "KeepEvenPositions" in name


# ----------------------------------------------------------------------------------------------
# 2. Nothing written outside the folder, nothing read but regular files


def test_links_in_a_run_folder_are_replaced_or_refused_and_their_targets_untouched(
    finished, tmp_path
):
    targets = {}
    for name in ("log.txt", "kept_tokens.svg", "case_study.html", "results.json", "config.json"):
        targets[name] = tmp_path / f"victim-{name}"
        targets[name].write_text("precious")
    links = lambda: [(finished / n).symlink_to(t) for n, t in targets.items()]  # noqa: E731
    # --resume and --eval-only refuse the folder (before reading or writing anything)
    for name in ("log.txt", "eval.json", "kept_tokens.svg"):
        target = targets.get(name, tmp_path / "victim-eval")
        target.write_text("precious")
        (finished / name).unlink(missing_ok=True)
        (finished / name).symlink_to(target)
        assert "is a symbolic link" in error_of(eval_only, finished)
        (finished / "results.json").rename(finished / "results.kept")  # not finished: resumes
        assert "is a symbolic link" in error_of(resume, finished)
        (finished / "results.kept").rename(finished / "results.json")
        (finished / name).unlink()
    # report.py replaces a link by the picture, atomically, and leaves its target alone
    (finished / "kept_tokens.svg").symlink_to(targets["kept_tokens.svg"])
    report.main([str(finished)])
    assert not (finished / "kept_tokens.svg").is_symlink()
    # --overwrite removes the links themselves, then writes a fresh run
    for name in targets:
        (finished / name).unlink(missing_ok=True)
    links()
    train.main([*FAST, "--method", "baseline", "--overwrite", "--out-dir", str(finished)])
    assert all(t.read_text() == "precious" for t in targets.values())
    assert not any((finished / n).is_symlink() for n in targets)


def test_a_link_planted_as_a_temporary_name_is_not_followed(tmp_path):
    from weights import atomic_write

    target = tmp_path / "victim"
    target.write_text("precious")
    (tmp_path / f"out.json.tmp{os.getpid()}").symlink_to(target)
    atomic_write(tmp_path / "out.json", b"{}")
    assert target.read_text() == "precious" and (tmp_path / "out.json").read_text() == "{}"
    (tmp_path / "dir.json").mkdir()  # a write that fails leaves no temporary
    with pytest.raises(OSError):
        atomic_write(tmp_path / "dir.json", b"{}")
    assert not list(tmp_path.glob("*.tmp*"))


def test_eval_only_leaves_no_temporary_and_a_failed_write_is_a_message(finished, monkeypatch):
    eval_only(finished)
    assert not list(finished.rglob("*.tmp*")) and (finished / "eval.json").is_file()

    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train, "atomic_write", full)
    assert "cannot write" in error_of(eval_only, finished)


@pytest.mark.parametrize("where", ["config.json", "ckpt/config.json", "ckpt/model.safetensors"])
@pytest.mark.parametrize("kind", ["/dev/zero", "fifo"])
def test_a_device_or_fifo_in_place_of_a_file_fails_within_seconds(finished, where, kind,
                                                                  within_seconds):  # fmt: skip
    path = finished / where
    path.unlink()
    os.mkfifo(path) if kind == "fifo" else path.symlink_to("/dev/zero")
    started = time.monotonic()
    message = error_of(eval_only, finished)
    assert where.split("/")[-1] in message and time.monotonic() - started < 10
    assert "a FIFO, socket or device" in message or "a symbolic link" in message


def test_report_and_summarize_refuse_a_fifo_or_device_results_json(finished, within_seconds):
    (finished / "results.json").unlink()
    os.mkfifo(finished / "results.json")
    assert "FIFO" in error_of(report.main, [str(finished)])
    (finished / "results.json").unlink()
    (finished / "results.json").symlink_to("/dev/zero")
    assert "symbolic link" in error_of(report.main, [str(finished)])
    out = subprocess.run([sys.executable, ROOT / "benchmarks" / "summarize.py", finished],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 1 and "results.json: cannot be read" in out.stderr


@pytest.mark.parametrize("vocab_size", [20_000_000, 10**9])
def test_a_giant_model_shape_is_refused_before_any_tensor_is_built(finished, vocab_size):
    edit(finished / "ckpt" / "config.json", lambda c: c.update(vocab_size=vocab_size))
    started = time.monotonic()
    message = error_of(eval_only, finished)
    assert "past what this project builds" in message or "not of one model" in message
    assert time.monotonic() - started < 10


def test_config_and_weights_that_disagree_are_refused_before_loading(finished):
    edit(finished / "ckpt" / "config.json", lambda c: c.update(intermediate_size=96))
    message = error_of(eval_only, finished)
    assert "ckpt/model.safetensors" in message and "not of one model" in message


def test_a_giant_config_json_is_refused_without_being_read(finished, within_seconds):
    with open(finished / "config.json", "r+b") as f:  # sparse: costs no disk
        f.truncate(100 << 30)
    started = time.monotonic()
    assert "more than the" in error_of(eval_only, finished)
    assert time.monotonic() - started < 10


def test_weights_promising_more_than_the_model_needs_are_refused_unread(finished, within_seconds):
    # the header adds a 1.2 GB tensor of the method's (the file is sparse: costs no disk)
    path = finished / "ckpt" / "model.safetensors"
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header, data = json.loads(raw[8 : 8 + n]), raw[8 + n :]
    huge = 300_000_000 * 4
    header["skim.huge"] = {"dtype": "F32", "shape": [300_000_000],
                           "data_offsets": [len(data), len(data) + huge]}  # fmt: skip
    head = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little") + head + data)
        f.truncate(8 + len(head) + len(data) + huge)
    started = time.monotonic()
    assert "more than a model of" in error_of(eval_only, finished)
    assert time.monotonic() - started < 10


def test_a_model_name_with_a_newline_forges_no_log_line(stopped):
    forged = "final | accuracy 1.0000 | kept 0.010 | speedup 99.00x"
    edit(stopped / "config.json", lambda c: c["train"].update(model=f"x\n{forged}"))
    before = (stopped / "log.txt").read_text()
    message = error_of(resume, stopped)
    assert "config.json: model holds a newline" in message and "'x\\nfinal" in message
    assert (stopped / "log.txt").read_text() == before
    assert runs.shown(f"x\n{forged}\x1b[2J") == repr(f"x\n{forged}\x1b[2J")  # how logs show it


# ----------------------------------------------------------------------------------------------
# 3. One writer at a time; nothing deleted that the command reads


@pytest.mark.parametrize("command", ["fresh", "overwrite", "resume", "eval-only"])
def test_a_second_writer_is_refused_naming_the_first(stopped, command):
    args = {"fresh": [*FAST, "--out-dir", str(stopped)],
            "overwrite": [*FAST, "--overwrite", "--out-dir", str(stopped)],
            "resume": ["--resume", "--out-dir", str(stopped)],
            "eval-only": ["--eval-only", "--out-dir", str(stopped)]}[command]  # fmt: skip
    before = snapshot(stopped)
    with runs.locked(stopped, "python train.py --the-first-writer"):
        message = error_of(train.main, args)
        assert f"pid {os.getpid()}" in message and "--the-first-writer" in message
        assert snapshot(stopped) == {**before, Path(runs.LOCK): (stopped / runs.LOCK).read_bytes()}
    assert not (stopped / runs.LOCK).exists() and snapshot(stopped) == before


def test_a_real_second_process_is_refused_while_the_first_trains(tmp_path):
    run = tmp_path / "run"
    code = ("import sys, time, runs; from pathlib import Path\n"
            "Path(sys.argv[1]).mkdir()\n"
            "with runs.locked(Path(sys.argv[1]), 'first'):\n"
            "    print('locked', flush=True); time.sleep(60)\n")  # fmt: skip
    first = subprocess.Popen([sys.executable, "-c", code, run], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True)  # fmt: skip
    try:
        assert first.stdout.readline().strip() == "locked"
        assert f"pid {first.pid}" in error_of(train.main, [*FAST, "--out-dir", str(run)])
    finally:
        first.kill()
        first.wait()
    # the first process was killed: its lock is stale, and the next run takes it over
    assert train.main([*FAST, "--method", "baseline", "--out-dir", str(run)])["metrics"]
    assert not (run / runs.LOCK).exists()


def test_report_into_a_run_folder_waits_for_no_writer(finished):
    with runs.locked(finished, "python train.py --resume"):
        assert "is being written by pid" in error_of(report.main, [str(finished)])
    report.main([str(finished)])
    assert not (finished / runs.LOCK).exists()


def test_a_lock_file_that_is_not_ours_is_refused(stopped):
    (stopped / runs.LOCK).write_text("garbage\n\x1b[31mred")
    message = error_of(resume, stopped)
    assert "an unknown process" in message and "\x1b" not in message


@pytest.mark.parametrize("flag", ["--finetuned", "--keep-shares-from"])
@pytest.mark.parametrize("relation", ["same", "child", "parent"])
def test_overwrite_never_deletes_what_the_command_reads(made, tmp_path, flag, relation):
    base = tmp_path / "base"
    train.main([*FAST, "--method", "baseline", "--out-dir", str(base)])
    shutil.copytree(base, tmp_path / "copy")  # a finished baseline, as --finetuned needs
    (base / "inner").mkdir()
    (tmp_path / "copy").rename(base / "inner" / "run")
    out = {"same": base, "child": base / "inner", "parent": tmp_path}[relation]
    read = base if relation != "parent" else base / "inner" / "run"
    before = snapshot(tmp_path)
    extra = ["--method", "random", "--keep-shares", "" if flag != "--finetuned" else "1,0.5"]
    message = error_of(train.main, [*FAST, *extra, flag, str(read), "--overwrite",
                                    "--out-dir", str(out)])  # fmt: skip
    assert "--overwrite would delete" in message and flag in message
    assert snapshot(tmp_path) == before


def test_resuming_a_finished_run_says_so_and_changes_nothing(finished, capsys):
    before = snapshot(finished)
    assert resume(finished) == {"finished": True}
    assert "is finished" in capsys.readouterr().out
    assert snapshot(finished) == before


def test_report_of_several_runs_needs_out_and_writes_into_none_of_them(made, tmp_path):
    for name in ("a", "b"):
        shutil.copytree(made["finished"], tmp_path / name / "run")
    before = snapshot(tmp_path)
    runs_ = [str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run")]
    assert "--out" in error_of(report.main, runs_)
    report.main([*runs_, "--out", str(tmp_path / "figs")])
    svg = (tmp_path / "figs" / "kept_tokens.svg").read_text()
    # a line per run, and one per run for its keywords (a synthetic task)
    assert svg.count("<polyline") == 4 and runs_[0] in svg and runs_[1] in svg
    assert {k: v for k, v in snapshot(tmp_path).items() if k.parts[0] != "figs"} == before


def test_an_empty_out_dir_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in ([*FAST, "--out-dir", ""], ["--eval-only", "--out-dir", " "]):
        assert "--out-dir '' names no folder" in error_of(train.main, args)
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------
# 4. Crafted files: one line naming the file, never a traceback


def _pop(*keys):
    """change(): remove the value at a path of keys in a JSON object."""

    def change(d):
        for k in keys[:-1]:
            d = d[k]
        d.pop(keys[-1])

    return change


def _set(*keys_value):
    """change(): set value at a path of keys in a JSON object."""
    *keys, value = keys_value

    def change(d):
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return change


RUN_CONFIG = [  # (what is changed, how, what the message says) in RUN/config.json
    ("not JSON", b"{train", ": not valid JSON"),
    ("not UTF-8", b'{"train": "\xff\xfe"}', "not UTF-8"),
    ("a list", lambda c: [c], "was not written by train.py"),
    ("train a string", _set("train", "fast"), "'train' is fast"),
    ("method a number", _set("method", 7), "'method' is 7"),
    ("options a list", _set("options", [1]), "'options' is [1]"),
    ("task a number", _set("train", "task", 3), "train.task is 3"),
    ("lr a string", _set("train", "lr", "fast"), "lr is fast, not float"),
    ("batch size negative", _set("train", "batch_size", -3), "--batch-size must be > 0"),
    ("epochs an object", _set("train", "epochs", {"a": 1}), "epochs is {'a': 1}"),
    ("seed negative", _set("train", "seed", -1), "--seed must be in [0, 2^32)"),
    ("a method option of the wrong type", _set("options", "tau", "hot"), "tau is hot"),
    ("padding unknown", _set("train", "padding", "left"), "--padding must be batch or"),
    ("nested garbage", b'{"train": ' + b"[" * 100000 + b"]" * 100000 + b"}", "nested too deep"),
    ("a number of 5000 digits", b'{"train": ' + b"9" * 5000 + b"}", ": not valid JSON"),
    ("a name with a newline", _set("method", "a\nb"), "records the method 'a\\nb'"),
    # found by review: a method name none knows, and numbers past what their fields hold
    ("an unknown built-in", _set("method", "transkimmer2"), "(the nearest: transkimmer)"),
    ("a float of 401 digits", _set("train", "weight_decay", 10**400), "weight_decay is 1000"),
    ("a clip of 401 digits", _set("train", "max_grad_norm", 10**400), "max_grad_norm is 1000"),
    ("a tau of 401 digits", _set("options", "tau", 10**400), "tau is 1000"),
    ("an int past 64 bits", _set("train", "log_every", 10**30), "past 64 bits"),
    ("threads past any machine", _set("train", "threads", 2**40), "--threads must be at most"),
    # found by the second review: '¹'.isdigit() is True, and int('¹') fails
    ("a device of a superscript", _set("train", "device", "cuda:¹"), "--device must be auto, cpu"),
]
CKPT_CONFIG = [  # in RUN/ckpt/config.json
    ("hidden size a string", _set("hidden_size", "big"), "hidden_size must be a positive"),
    ("a list", lambda c: [c], "holds a JSON list"),
    ("layers past the cap", _set("num_hidden_layers", 100000), "past what this project builds"),
    ("vocab_size a fraction", _set("vocab_size", 99.5), "vocab_size must be a positive integer"),
]


@pytest.mark.parametrize("what,change,says", RUN_CONFIG, ids=[c[0] for c in RUN_CONFIG])
@pytest.mark.parametrize("command", ["eval-only", "resume"])
def test_a_crafted_run_config_is_one_line_naming_it(finished, stopped, command, what, change,
                                                    says):  # fmt: skip
    run = finished if command == "eval-only" else stopped
    path = run / "config.json"
    path.write_bytes(change) if isinstance(change, bytes) else edit(path, change)
    message = error_of(eval_only if command == "eval-only" else resume, run)
    assert str(path) in message or "contradict" in message
    assert says in message, message


@pytest.mark.parametrize("what,change,says", CKPT_CONFIG, ids=[c[0] for c in CKPT_CONFIG])
def test_a_crafted_checkpoint_config_is_one_line_naming_it(finished, what, change, says):
    import bench

    edit(finished / "ckpt" / "config.json", change)
    for call, args in ((eval_only, [finished]), (bench.load_run, [str(finished), None])):
        message = error_of(call, *args)
        assert "ckpt/config.json" in message and says in message, message


def _state(run: Path, change) -> None:
    """Rewrite ckpt/trainer_state.* with change(state) applied, through the project's writer."""
    folder = run / "ckpt"
    state = runs.read_trainer_state(folder)
    change(state)
    runs.write_trainer_state(folder, state)


def _moment_transposed(state):
    moments = next(m for m in state["optimizer"]["state"].values() if m["exp_avg"].ndim == 2)
    moments["exp_avg"] = moments["exp_avg"].t().contiguous()


TRAINER_STATE = [  # (what, change of the decoded state, what the message says)
    ("stage a string", lambda s: s.update(stage="two"), "stage is two, not a count"),
    ("step negative", lambda s: s.update(step=-5), "step is -5, not a count"),
    ("stage past the method's", lambda s: s.update(stage=9), "stage 9 of a method with 1"),
    ("history not a list", lambda s: s.update(history="all"), "history is not a list"),
    ("rng missing", lambda s: s.pop("rng"), "rng lacks"),
    ("rng of the wrong kind", lambda s: s["rng"].update(torch=5), "damaged"),
    ("numpy state garbage", lambda s: s["rng"].update(numpy=("MT", 1)), "damaged"),
    ("python state garbage", lambda s: s["rng"].update(python=[1, 2]), "damaged"),
    ("moments of the wrong shape", _moment_transposed, "optimizer state .* is a torch.float32"),
    ("a moment a string", lambda s: s["optimizer"]["state"][0].update(exp_avg="x"), "not a tensor"),
    (
        "state of a parameter not there",
        lambda s: s["optimizer"]["state"].update({999: {}}),
        "the state of parameter 999",
    ),  # fmt: skip
    ("param group without lr", lambda s: s["optimizer"]["param_groups"][0].pop("lr"), "keys"),
    ("schedule epoch a string", lambda s: s["scheduler"].update(last_epoch="x"), "last_epoch"),
    ("optimizer a list", lambda s: s.update(optimizer=[]), "not an optimiser's state"),
    # found by fuzzing the decoded state (each was a traceback inside torch):
    (
        "parameters renumbered",
        lambda s: s["optimizer"]["param_groups"][0]["params"].reverse(),
        "param_groups number the parameters",
    ),  # fmt: skip
    (
        "eps past 64 bits",
        lambda s: s["optimizer"]["param_groups"][0].update(eps=10**30),
        "past a 64-bit integer",
    ),  # fmt: skip
    (
        "a flag that is a tensor",
        lambda s: s["optimizer"]["param_groups"][0].update(foreach=torch.zeros(2)),
        "not null, true or false",
    ),  # fmt: skip
    (
        "a schedule lambda of text",
        lambda s: s["scheduler"]["lr_lambdas"].__setitem__(0, "x"),
        "lr_lambdas",
    ),  # fmt: skip
    # found by review: the stage's own random states, a step past the stage, a flag that climbs
    ("stage_rng empty", lambda s: s.update(stage_rng={}), "stage_rng lacks"),
    ("stage_rng of the wrong kind", lambda s: s["stage_rng"].update(torch=5), "ByteTensor"),
    (
        "step past the stage's end",
        lambda s: s.update(step=10**6, steps_done=10**6),
        "step 1000000 of a stage of",
    ),
    (
        "an optimiser that maximises",
        lambda s: s["optimizer"]["param_groups"][0].update(maximize=True),
        "maximize is True, not False",
    ),  # fmt: skip
    # found by review: a rate, a schedule or moments forged within their types, an odd history
    (
        "a learning rate forged",
        lambda s: s["optimizer"]["param_groups"][0].update(lr=1e3),
        r"param_groups' lr is \[1000\.0",
    ),  # fmt: skip
    ("the base rates forged", lambda s: s["scheduler"].update(base_lrs=[9.0] * 4), "base_lrs"),
    ("the schedule moved back", lambda s: s["scheduler"].update(last_epoch=0), "at step 0, not"),
    ("the last rate forged", lambda s: s["scheduler"].update(_last_lr=[9.0] * 4), "_last_lr"),
    ("Adam's step zero", lambda s: s["optimizer"]["state"][0]["step"].zero_(), "step is 0, not"),
    ("Adam's step negative", lambda s: s["optimizer"]["state"][0]["step"].fill_(-3), "is -3"),
    (
        "a second moment negative",
        lambda s: s["optimizer"]["state"][0]["exp_avg_sq"].fill_(-1),
        "second moment is negative",
    ),  # fmt: skip
    (
        "a moment NaN",
        lambda s: s["optimizer"]["state"][0]["exp_avg"].fill_(math.nan),
        "not finite",
    ),  # fmt: skip
    (
        "an evaluation without metrics",
        lambda s: s["history"].append({"stage": "x", "step": 1}),
        r"history\[\d+\] is .* not an evaluation",
    ),  # fmt: skip
    # found by the second review: counters and history out of what a run can record
    ("steps_done below the step", lambda s: s.update(steps_done=1), "steps_done 1 is below the"),
    (
        "an evaluation keeping -5 of the tokens",
        lambda s: s["history"].append(
            {"stage": "x", "step": 1, "kept": -5.0, "metrics": {}, "speedup_none": 1.0}
        ),
        r"history\[\d+\]: kept is -5, outside \[0, 1\]",
    ),
    (
        "an evaluation 10^300 times faster",
        lambda s: s["history"].append(
            {"stage": "x", "step": 1, "kept": 0.5, "metrics": {}, "speedup_none": 1e300}
        ),
        "speedup_none is 1e.300, outside",
    ),
    (
        "an evaluation of accuracy 77",
        lambda s: s["history"].append(
            {
                "stage": "x",
                "step": 1,
                "kept": 0.5,
                "metrics": {"accuracy": 77.0, "main": 77.0},
                "speedup_none": 1.0,
            }  # fmt: skip
        ),
        "metrics.accuracy is 77, outside",
    ),
    (
        "an evaluation past the run's steps",
        lambda s: s["history"].append(
            {"stage": "x", "step": 99, "kept": 0.5, "metrics": {}, "speedup_none": 1.0}
        ),
        "at step 99, past the run's 3 steps",
    ),
    (
        "an evaluation of infinite speedup",
        lambda s: s["history"].append(
            {"stage": "x", "step": 1, "kept": 1, "metrics": {}, "speedup_none": math.inf}
        ),
        "not finite",
    ),
]


@pytest.mark.parametrize("what,change,says", TRAINER_STATE, ids=[c[0] for c in TRAINER_STATE])
def test_a_crafted_trainer_state_is_one_line_naming_it(stopped, what, change, says):
    import re

    _state(stopped, change)
    message = error_of(resume, stopped)
    assert "trainer_state.json is damaged" in message and re.search(says, message), message


def test_a_trainer_state_of_another_shape_on_disk_is_one_line(stopped):
    tree = json.loads((stopped / "ckpt" / "trainer_state.json").read_text())
    tree["dict"][4][1]["dict"][0][1]["shape"] = [7, 7]  # rng.torch: 5056 bytes as 7 x 7
    (stopped / "ckpt" / "trainer_state.json").write_text(json.dumps(tree))
    assert "trainer_state.json is damaged" in error_of(resume, stopped)


RESULTS = [  # (what, change of results.json, for report.py, for summarize.py)
    ("a list", lambda r: [r], "not a JSON object", "not a JSON object"),
    ("kept shares as text", _set("kept_per_layer", ["a"]), "kept_per_layer", "kept_per_layer"),
    (
        "an exit layer past the model",
        lambda r: r["case_study"][0].update(exit_layers=[99] * 99),
        "exit_layers",
        None,
    ),  # fmt: skip
    ("tokens not text", lambda r: r["case_study"][0].update(tokens=[1]), "tokens", None),
    ("no main metric", _pop("metrics", "main"), None, "metrics has no main"),
    ("flops missing", _pop("flops"), None, "flops lacks"),
    ("wall time as text", _set("wall_time_s", "long"), None, "wall_time_s"),
    ("method a number", _set("method", 3), "method is missing", "method (text)"),
    ("a task with a newline", _set("task", "sst2\n| forged |"), None, "newline or control"),
]


@pytest.mark.parametrize("what,change,reports,summarizes", RESULTS, ids=[r[0] for r in RESULTS])
def test_a_crafted_results_json_is_one_line_naming_it(finished, what, change, reports, summarizes):
    edit(finished / "results.json", change)
    if reports:
        message = error_of(report.main, [str(finished)])
        assert "results.json" in message and reports in message
    if summarizes:
        for args in ([], ["--glue"], ["--seeds"]):
            out = subprocess.run([sys.executable, ROOT / "benchmarks" / "summarize.py", *args,
                                  finished], capture_output=True, text=True)  # fmt: skip
            assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
            assert "results.json" in out.stderr and summarizes in out.stderr


@pytest.mark.parametrize(
    "name,content,says",
    [
        ("tokenizer_config.json", b"[1]", "not a JSON object of tokenizer settings"),
        ("tokenizer_config.json", b'{"do_lower_case": "yes"}', "tokenizer settings"),
        ("tokenizer_config.json", b"{oops", ": not valid JSON"),
        ("vocab.txt", b"[PAD]\n\xff\xfe\n", "vocab.txt: not UTF-8"),
    ],
)
def test_a_crafted_tokenizer_file_is_one_line_naming_it(finished, name, content, says):
    (finished / "ckpt" / name).write_bytes(content)
    message = error_of(eval_only, finished)
    assert f"ckpt/{name}" in message and says in message, message


def test_non_utf8_results_are_one_line(finished):
    (finished / "results.json").write_bytes(b'{"method": "\xff"}')
    assert "not UTF-8" in error_of(report.main, [str(finished)])


def test_keep_shares_from_a_crafted_results_json_is_one_line(finished, tmp_path):
    edit(finished / "results.json", _set("kept_per_layer", {"a": 1}))
    message = error_of(train.main, [*FAST, "--method", "random", "--keep-shares-from",
                                    str(finished), "--out-dir", str(tmp_path / "r")])  # fmt: skip
    assert "results.json gives no kept_per_layer" in message


def test_a_checkpoint_head_of_another_shape_is_refused_before_reading(finished):
    from weights import read_safetensors, write_safetensors

    tensors = read_safetensors(finished / "ckpt" / "model.safetensors")
    tensors["classifier.weight"] = torch.zeros(5, tensors["classifier.weight"].shape[1])
    write_safetensors(tensors, finished / "ckpt" / "model.safetensors")
    assert "classifier.weight has shape [5" in error_of(eval_only, finished)


# ----------------------------------------------------------------------------------------------
# 5. Found by review: every reader checks the folder alike, and what a run needs is in it


@pytest.mark.parametrize("link", ["another run's", "itself"])
def test_every_reader_refuses_a_ckpt_that_is_a_link(finished, made, tmp_path, link):
    import bench

    shutil.rmtree(finished / "ckpt")
    (finished / "ckpt").symlink_to(made["stopped"] / "ckpt" if link == "another run's" else "ckpt")
    finetuned = [*FAST, "--method", "transkimmer", "--finetuned", str(finished),
                 "--out-dir", str(tmp_path / "ft")]  # fmt: skip
    for call, args in ((eval_only, [finished]), (bench.load_run, [str(finished), None]),
                       (train.main, [finetuned])):  # fmt: skip
        assert "ckpt is a symbolic link" in error_of(call, *args)


def test_bench_checks_a_run_s_settings_as_eval_only_does(finished):
    import bench

    edit(finished / "config.json", _set("options", "tau", 10**400))  # was an OverflowError
    assert "tau is 1000" in error_of(bench.load_run, str(finished), None)


def test_nan_weights_are_called_damage_not_divergence(finished):
    import bench
    from weights import read_safetensors, write_safetensors

    path = finished / "ckpt" / "model.safetensors"
    tensors = read_safetensors(path)
    tensors["classifier.weight"] = tensors["classifier.weight"] * float("nan")
    write_safetensors(tensors, path)
    for call, args in ((eval_only, [finished]), (bench.load_run, [str(finished), None])):
        message = error_of(call, *args)
        assert "classifier.weight holds NaN or infinity" in message and "diverged" not in message


def test_a_vocabulary_the_model_has_no_rows_for_is_refused_at_load(finished):
    vocab = finished / "ckpt" / "vocab.txt"  # every id shifted by 500: [CLS] past the embeddings
    vocab.write_text("".join(f"[unused{i}]\n" for i in range(500)) + vocab.read_text())
    message = error_of(eval_only, finished)
    assert "ckpt/vocab.txt has token ids up to" in message and "embedding rows" in message


def test_a_method_too_big_to_build_is_refused_before_its_memory_is_taken(finished):
    import bench

    edit(finished / "config.json", lambda c: c.update(method="trbert", options={"hidden": 10**12}))
    for call, args in ((eval_only, [finished]), (bench.load_run, [str(finished), None])):
        assert "past what this project builds" in error_of(call, *args)


def test_eval_only_in_a_config_json_does_not_turn_resume_into_an_evaluation(stopped):
    edit(stopped / "config.json", _set("train", "eval_only", True))
    resume(stopped)
    assert (stopped / "results.json").is_file() and not (stopped / "eval.json").exists()


def test_bench_model_on_a_damaged_folder_is_one_line(finished):
    import bench

    edit(finished / "ckpt" / "config.json", _set("hidden_size", "big"))
    args = ["skim", "--model", str(finished / "ckpt"), "--sets", "sst2", "--rounds", "1"]
    message = error_of(bench.main, args)
    assert message.startswith("error: --model") and "hidden_size must be a positive" in message


def test_a_random_control_keeps_its_shares_whatever_becomes_of_the_run_they_came_from(
    finished, tmp_path
):
    control = tmp_path / "control"
    source = json.loads((finished / "results.json").read_text())["kept_per_layer"]
    trained = train.main([*FAST, "--method", "random", "--keep-shares-from", str(finished),
                          "--out-dir", str(control)])  # fmt: skip
    options = json.loads((control / "config.json").read_text())["options"]
    assert options["keep_shares"] == ",".join(str(float(s)) for s in source)
    assert options["keep_shares_from"] == str(finished)  # still recorded: where they came from
    edit(finished / "results.json", _set("kept_per_layer", [0.2, 0.1]))  # the other run changes
    assert eval_only(control)["kept_per_layer"] == trained["kept_per_layer"]
    assert runs.load_run(control)[1].shares == [float(s) for s in source]  # bench's reader
    # a control saved before its shares were recorded reads them there, and says if it is gone
    edit(control / "config.json", _set("options", "keep_shares", ""))
    edit(control / "ckpt" / "config.json", _set("skimbert", "options", "keep_shares", ""))
    shutil.rmtree(finished)
    message = error_of(eval_only, control)
    assert f"no {finished / 'results.json'}" in message and "put that run back" in message


def test_the_gpu_summary_reads_what_a_step_left_as_data(tmp_path, within_seconds):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_helper", ROOT / "benchmarks" / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    work = tmp_path / "work"
    for name in ("baseline", "transkimmer"):
        (work / f"sst2-{name}").mkdir(parents=True)
    os.mkfifo(work / "sst2-baseline" / "results.json")  # read, it would hang the summary
    (work / "sst2-transkimmer" / "results.json").write_text('{"metrics": [0.9]}')
    (work / "bench-skim.json").write_text('{"tables": "none"}')
    (work / "environment.json").write_text("[1]")
    (work / "steps.jsonl").write_text('{"step": "tests", "status": "ok", "wall_s": 5}\n[1]\n')
    gpu.summary(work, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["train"] == {} and saved["bench"] == {} and len(saved["steps"]) == 1
    assert len(saved["unreadable"]) == 3
    assert "unreadable (not what its step writes)" in (tmp_path / "out" / "results.md").read_text()


# ----------------------------------------------------------------------------------------------
# 6. Found by the second review: a checkpoint tied to its run, every tensor checked


def _tensors(run: Path, change) -> None:
    """Rewrite ckpt/model.safetensors with change(tensors) applied."""
    from weights import read_safetensors, write_safetensors

    path = run / "ckpt" / "model.safetensors"
    tensors = read_safetensors(path)
    change(tensors)
    write_safetensors(tensors, path)


@pytest.mark.parametrize("name", ["skim.predictors.0.fc.weight", "skim.predictors.1.out.bias"])
def test_nan_in_a_method_s_own_tensors_is_damage_too(finished, name):
    import bench

    _tensors(finished, lambda t: t[name].view(-1)[0].fill_(math.nan))
    for call, args in ((eval_only, [finished]), (bench.load_run, [str(finished), None])):
        assert f"{name} holds NaN or infinity" in error_of(call, *args)


def test_a_tensor_relabelled_as_integers_is_refused(finished):
    path = finished / "ckpt" / "model.safetensors"
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header["bert.pooler.dense.bias"]["dtype"] = "I32"  # the same bytes, read as integers
    head = json.dumps(header).encode()
    path.write_bytes(len(head).to_bytes(8, "little") + head + raw[8 + n :])
    assert "bert.pooler.dense.bias is stored as torch.int32, not torch.float32" in error_of(
        eval_only, finished
    )


@pytest.mark.parametrize("method", ["baseline", "cls-attention"])
def test_a_config_json_naming_another_method_than_its_checkpoint_is_refused(finished, method):
    import bench

    edit(finished / "config.json", lambda c: c.update(method=method, options=None))
    for call, args in ((eval_only, [finished]), (bench.load_run, [str(finished), None])):
        message = error_of(call, *args)
        assert f"records the method {method}, but {finished / 'ckpt' / 'config.json'}" in message
    # both records edited alike: the method's tensors are still there, and belong to no part
    edit(finished / "ckpt" / "config.json", _set("skimbert", "method", method))
    edit(finished / "ckpt" / "config.json", _set("skimbert", "options", None))
    message = error_of(eval_only, finished)
    assert "tensor skim.predictors.0.ln_in.weight is no part of this model" in message


def test_options_or_task_other_than_the_checkpoint_s_are_refused(finished):
    edit(finished / "config.json", _set("options", "tau", 0.5))
    assert "records the options" in error_of(eval_only, finished)
    edit(finished / "config.json", _set("options", "tau", 1.0))
    edit(finished / "config.json", _set("train", "task", "synthetic-hard"))
    assert "records the task synthetic-hard" in error_of(runs.load_run, finished)  # bench's


def test_a_json_key_given_twice_is_refused(finished):
    path = finished / "config.json"
    twice = '"method": "transkimmer", "method": "baseline"'
    path.write_text(path.read_text().replace('"method": "transkimmer"', twice))
    assert "the key 'method' appears twice" in error_of(eval_only, finished)


def test_a_trainer_state_is_tied_to_the_weights_beside_it(stopped, made):
    # another run's trainer state copied in: it was saved beside other weights
    for name in ("trainer_state.json", "trainer_state.safetensors"):
        shutil.copy(made["finished"] / "ckpt" / name, stopped / "ckpt" / name)
    message = error_of(resume, stopped)
    assert "trainer_state.json was saved beside other weights than" in message, message
    assert "their sha256 differ" in message


def test_a_trainer_state_without_the_digest_of_its_weights_is_refused(stopped):
    _state(stopped, lambda s: s.pop("weights_sha256"))
    message = error_of(resume, stopped)
    assert "records no digest of the weights beside it" in message and "--overwrite" in message


@pytest.mark.parametrize("dtype", ["U100000000", "V100000000000", "object", "int64"])
def test_an_array_type_the_trainer_state_never_writes_is_refused(stopped, dtype):
    path = stopped / "ckpt" / "trainer_state.json"

    def forge(node):  # the one array rng_state records: numpy's generator key, uint32
        if isinstance(node, dict):
            if "ndarray" in node:
                node["dtype"] = dtype
            for v in node.values():
                forge(v)
        elif isinstance(node, list):
            for v in node:
                forge(v)

    edit(path, forge)
    message = error_of(resume, stopped)
    assert "trainer_state.json is damaged" in message and "not uint32" in message, message


FORGED_NAME = "x\nfinal | accuracy 1.0000 | ok\x1b[8m"


def test_a_file_name_in_a_run_folder_forges_no_line(finished):
    import bench

    (finished / "ckpt" / FORGED_NAME).symlink_to("vocab.txt")
    for call, args in ((eval_only, [finished]), (bench.load_run, [str(finished), None])):
        message = error_of(call, *args)  # one line, no escape sequence
        assert "is a symbolic link" in message and "\x1b" not in message, message
        assert repr(str(finished / "ckpt" / FORGED_NAME)) in message


def test_bench_names_a_run_folder_without_forging_a_line(finished, tmp_path):
    import bench

    forged = tmp_path / FORGED_NAME
    finished.rename(forged)
    config = runs.load_run(forged)[0].bert.config
    name = bench.load_run(str(forged), config)[0]
    assert "\n" not in name and "\x1b" not in name and "final | accuracy" in name
    out = tmp_path / "out.txt"
    code = ("import sys, bench; bench.main(['skim', '--model', sys.argv[1] + '/ckpt', "
            "'--checkpoint', sys.argv[1], '--sets', 'sst2', '--sst2-examples', '4', "
            "'--batch-sizes', '4', '--rounds', '1', '--threads', '1'])")  # fmt: skip
    ran = subprocess.run([sys.executable, "-c", code, str(forged)], cwd=ROOT, text=True,
                         stdout=out.open("w"), stderr=subprocess.STDOUT, timeout=300)  # fmt: skip
    printed = out.read_text()
    assert ran.returncode == 0, printed[-2000:]
    assert "\x1b" not in printed and not any(
        line.startswith("final |") for line in printed.split("\n")
    )


def test_threads_past_the_cpus_saved_in_config_json_names_the_file_not_a_flag(finished):
    edit(finished / "config.json", _set("train", "threads", 1000))
    message = error_of(eval_only, finished)
    assert (
        f"{finished / 'config.json'} asks for 1000 threads" in message
        and "--threads 1000" not in message
    )
    assert "evaluate it with --threads" in message


def test_finetuned_is_a_finished_baseline_no_process_writes(finished, stopped, tmp_path):
    args = lambda run: [*FAST, "--method", "transkimmer", "--finetuned", str(run),  # noqa: E731
                        "--out-dir", str(tmp_path / "ft")]  # fmt: skip
    assert "is a transkimmer run, not a baseline" in error_of(train.main, args(finished))
    assert "has not finished (no results.json)" in error_of(train.main, args(stopped))
    code = ("import sys, time, runs; from pathlib import Path\n"
            "with runs.locked(Path(sys.argv[1]), 'the-writer'):\n"
            "    print('locked', flush=True); time.sleep(60)\n")  # fmt: skip
    base = tmp_path / "base"
    train.main([*FAST, "--method", "baseline", "--out-dir", str(base)])
    assert "ft" in train.main(args(base))["config"]["train"]["out_dir"]  # a baseline: taken
    shutil.rmtree(tmp_path / "ft")
    writer = subprocess.Popen([sys.executable, "-c", code, base], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert writer.stdout.readline().strip() == "locked"
        message = error_of(train.main, args(base))
    finally:
        writer.kill()
        writer.wait()
    assert f"is still being written by pid {writer.pid} (the-writer)" in message, message
    assert not (tmp_path / "ft").exists()
