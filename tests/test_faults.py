"""Faults and hostile input: run folders are data, nothing is lost, nothing fails deep inside.

A planted pickle never runs; a finished run is never replaced without --overwrite; --eval-only
and --resume rebuild a run from its folder and refuse contradicting flags; a kill at a stage
boundary, or while the teacher is being written, still resumes bit for bit; a diverged run stops
at its step; a full disk or an unwritable folder is a message, not a traceback.
"""

import json
import pickle
from pathlib import Path

import pytest
import torch

import runs
import train
from weights import read_safetensors

FAST = ["--preset", "smoke", "--train-subset", "160", "--eval-subset", "40", "--epochs", "1",
        "--case-study", "5"]  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]


def run(tmp_path, *args, name="run"):
    return train.main([*FAST, "--out-dir", str(tmp_path / name), *args])


def same_weights(a: Path, b: Path) -> bool:
    x, y = (read_safetensors(p / "ckpt" / "model.safetensors") for p in (a, b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


class Planted:
    """Unpickling this writes a file: the proof that a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pickle code ran"))


def test_no_code_path_unpickles_anything():
    for path in ROOT.glob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text, path.name
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path.name}: {line.strip()}"


def test_a_planted_pickle_in_a_run_folder_never_runs(tmp_path):
    import bench

    run(tmp_path, "--method", "transkimmer")
    marker = tmp_path / "pwned"
    for name in ("trainer_state.pt", "optimizer.pt", "training_args.bin"):
        (tmp_path / "run" / "ckpt" / name).write_bytes(pickle.dumps(Planted(marker)))
    train.main(["--eval-only", "--out-dir", str(tmp_path / "run")])
    train.main(["--resume", "--out-dir", str(tmp_path / "run")])  # finished: evaluates again
    base = run(tmp_path, "--method", "baseline", name="base")
    assert base["metrics"]
    for name in ("trainer_state.pt",):
        (tmp_path / "base" / "ckpt" / name).write_bytes(pickle.dumps(Planted(marker)))
    run(tmp_path, "--method", "transkimmer", "--finetuned", str(tmp_path / "base"), name="ft")
    bench.load_run(str(tmp_path / "run"), runs.load_run(tmp_path / "run")[0].bert.config)
    assert not marker.exists()


def test_a_finished_run_is_not_replaced_without_overwrite(tmp_path):
    run(tmp_path, "--method", "baseline")
    before = (tmp_path / "run" / "results.json").read_bytes()
    with pytest.raises(SystemExit, match="already holds a run.*--overwrite"):
        run(tmp_path, "--method", "transkimmer")
    assert (tmp_path / "run" / "results.json").read_bytes() == before
    results = run(tmp_path, "--method", "transkimmer", "--overwrite")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["method"] == "transkimmer"
    assert results["method"] == "transkimmer"


def test_eval_only_rebuilds_the_run_and_leaves_its_record_alone(tmp_path):
    trained = run(tmp_path, "--method", "transkimmer")
    folder = tmp_path / "run"
    record = {n: (folder / n).read_bytes() for n in ("results.json", "config.json", "log.txt")}
    again = train.main(["--eval-only", "--out-dir", str(folder)])  # no --method, no --model
    assert again["metrics"] == trained["metrics"] and again["kept"] == trained["kept"]
    assert json.loads((folder / "eval.json").read_text())["kept"] == trained["kept"]
    with pytest.raises(SystemExit, match="--method contradict"):
        train.main(["--eval-only", "--out-dir", str(folder), "--method", "trbert"])
    with pytest.raises(SystemExit, match="--lr contradict"):
        train.main(["--resume", "--out-dir", str(folder), "--lr", "1e-4"])
    assert {n: (folder / n).read_bytes() for n in record} == record
    history = json.loads((folder / "results.json").read_text())["history"]
    assert history and history[-1]["kept"] == trained["kept"]


def test_trbert_resumes_bit_for_bit_from_a_stage_boundary(tmp_path):
    run(tmp_path, "--method", "trbert", name="straight")
    # 160 examples in batches of 16: stage 1 (fine-tuning) ends at step 10
    assert run(tmp_path, "--method", "trbert", "--stop-after-steps", "10", name="resumed") == {
        "stopped": True
    }
    state = runs.read_trainer_state(tmp_path / "resumed" / "ckpt")
    assert (state["stage"], state["step"]) == (1, 0) and "rng" in state
    train.main(["--resume", "--out-dir", str(tmp_path / "resumed")])
    assert same_weights(tmp_path / "straight", tmp_path / "resumed")


def test_a_kill_while_the_teacher_is_written_still_resumes(tmp_path, monkeypatch):
    run(tmp_path, "--method", "trbert", "--epochs", "2", name="straight")
    save = runs.save_checkpoint

    def killed(folder, *args, **kwargs):  # dies half-way through writing finetuned/
        if Path(folder).name == "finetuned":
            (Path(str(folder) + ".tmp")).mkdir(parents=True, exist_ok=True)
            (Path(str(folder) + ".tmp") / "model.safetensors").write_bytes(b"half")
            raise KeyboardInterrupt
        return save(folder, *args, **kwargs)

    monkeypatch.setattr(runs, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "--method", "trbert", "--epochs", "2", name="killed")
    monkeypatch.setattr(runs, "save_checkpoint", save)
    train.main(["--resume", "--out-dir", str(tmp_path / "killed")])
    assert same_weights(tmp_path / "straight", tmp_path / "killed")


def test_a_diverged_run_stops_at_its_step_and_reports_nothing(tmp_path):
    with pytest.raises(SystemExit, match="not finite at step .* training diverged"):
        run(tmp_path, "--method", "transkimmer", "--lr", "1e30", "--weight-decay", "0")
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.parametrize("form", [["--epochs=2"], ["--epoch", "2"]])
def test_a_preset_never_overrides_a_flag_however_it_is_written(form):
    cfg, _, _ = train.parse_config(["--preset", "smoke", *form])
    assert cfg.epochs == 2.0 and cfg.batch_size == 16  # the flag, and the preset for the rest


def test_a_full_disk_is_a_message_and_leaves_no_temporary_folder(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs, "write_safetensors", full)
    with pytest.raises(SystemExit, match="cannot write the checkpoint.*No space left"):
        run(tmp_path, "--method", "baseline")
    assert not (tmp_path / "run" / "ckpt.tmp").exists()


def test_an_unwritable_out_dir_is_a_message(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SystemExit, match="cannot write to --out-dir"):
        train.main([*FAST, "--out-dir", str(tmp_path / "file" / "run")])


def test_a_damaged_trainer_state_is_a_message(tmp_path):
    run(tmp_path, "--method", "transkimmer", "--stop-after-steps", "3")
    (tmp_path / "run" / "ckpt" / "trainer_state.json").write_text("{not json")
    with pytest.raises(SystemExit, match="trainer_state.json is damaged"):
        train.main(["--resume", "--out-dir", str(tmp_path / "run")])


def test_resume_with_another_method_is_a_message(tmp_path):
    run(tmp_path, "--method", "transkimmer", "--stop-after-steps", "3")
    with pytest.raises(SystemExit, match="--method contradict"):
        train.main(["--resume", "--out-dir", str(tmp_path / "run"), "--method", "trbert"])
