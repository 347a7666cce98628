"""Run folders and methods: which method a run used, and how its folder is written and read.

A run folder (train.py --out-dir) holds only data, never code: nothing here unpickles anything,
so a run folder someone sends you is safe to evaluate or resume.

    config.json        the run's settings: "train" (train.TrainConfig), "method" (its name or
                       file.py:Class) and "options" (the method's Options), written before training
    log.txt            every line train.py printed
    results.json       the final evaluation (metrics, kept tokens, FLOPs), history, versions
    eval.json          the last --eval-only evaluation (results.json is never touched by it)
    kept_tokens.svg, case_study.html    pictures of the final evaluation (report.py)
    ckpt/              a Hugging Face-style folder: config.json, model.safetensors, vocab.txt,
                       trainer_state.json + trainer_state.safetensors (optimiser, RNG: --resume)
    finetuned/         the model after a "finetune" stage, when a later stage needs a teacher

Every file is written to a temporary name and renamed: a kill at any moment leaves either the
old or the new version. Tests: tests/test_train.py, tests/test_faults.py.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import json
import random
import shutil
import sys
import traceback
from pathlib import Path

import numpy as np
import torch

from skim import SkimStrategy
from transformer import BertForTask
from weights import (
    CheckpointError,
    atomic_write,
    load_encoder_weights,
    read_config,
    read_safetensors,
    released_name,
    write_safetensors,
)

# The built-in methods, by name. A method of your own needs no line here:
# python train.py --method path/to/my_method.py:MyStrategy  (or --method my_module:MyStrategy)
METHODS = {
    "baseline": "skim:Baseline",
    "transkimmer": "skim:Transkimmer",
    "trbert": "rl_policy:TRBertPolicy",
    "cls-attention": "skim:ClsAttentionSkim",
    "random": "skim:RandomSkim",
    "ltp": "ltp:LTP",
}


# ----------------------------------------------------------------------------------------------
# Methods: a name, a file or a module -> a SkimStrategy class


def load_method(spec: str) -> type[SkimStrategy]:
    """A built-in name (METHODS), "path/to/file.py:Class" or "module:Class" -> the class.
    Raises ValueError with what is wrong and how to fix it."""
    where, _, name = METHODS.get(spec, spec).rpartition(":")
    if not where or not name:
        known = ", ".join(METHODS)
        raise ValueError(
            f"unknown method {spec!r}: use one of {known}, or path/to/file.py:ClassName, "
            "or module:ClassName"
        )
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_file():
            raise ValueError(f"method {spec!r}: no file {path}")
        module_name = "skimbert_method_" + path.stem  # a stable name: dataclasses need one
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module
        try:
            loader.loader.exec_module(module)
        except Exception as e:  # the student's file: say where it broke, not our stack
            del sys.modules[module_name]
            raise ValueError(f"method {spec!r}: {path} fails to load: {_where(e, path)}") from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise ValueError(f"method {spec!r}: cannot import module {where!r} ({e})") from None
    cls = getattr(module, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, SkimStrategy)):
        raise ValueError(
            f"method {spec!r}: {where} has no class {name!r} that subclasses skim.SkimStrategy"
        )
    return cls


def _where(error: Exception, path: Path) -> str:
    """'ErrorType: message (file.py, line N)', the line being the innermost one in `path`."""
    line = getattr(error, "lineno", None) if isinstance(error, SyntaxError) else None
    for frame in traceback.extract_tb(error.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    return f"{type(error).__name__}: {error}" + (f" ({path.name}, line {line})" if line else "")


def method_spec(spec: str) -> str:
    """What a run records: built-in names as they are, files as absolute paths."""
    where, _, name = spec.rpartition(":")
    if where.endswith(".py"):
        return f"{Path(where).expanduser().resolve()}:{name}"
    return spec


# ----------------------------------------------------------------------------------------------
# Checkpoints: a Hugging Face-style folder, written atomically


def save_checkpoint(folder: Path, model, strategy, meta: dict, vocab_dir: str, state=None):
    """folder/ = config.json + model.safetensors + vocab.txt (+ trainer_state.*). Encoder tensors
    carry their released names under `bert.` (so transformers can read the folder), the head is
    `classifier` or `qa_outputs`, the strategy's tensors `<strategy.checkpoint_prefix>.*`.
    meta: what the run records (method, options, train config) under config.json's "skimbert".
    Written into folder.tmp/ and swapped in by renames: an interruption never leaves half a
    checkpoint (load_checkpoint falls back to folder.old/ if it came between the two renames)."""
    final, tmp = Path(folder), Path(str(folder) + ".tmp")
    old = Path(str(folder) + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        tensors = {f"bert.{released_name(k)}": v for k, v in model.bert.state_dict().items()}
        tensors.update({f"{_head(model)}.{k}": v for k, v in model.head.state_dict().items()})
        if strategy is not None:
            prefix = strategy.checkpoint_prefix
            tensors.update({f"{prefix}.{k}": v for k, v in strategy.state_dict().items()})
        write_safetensors(tensors, tmp / "model.safetensors")
        config = {**model.bert.config.to_dict(), "num_labels": model.num_labels, "skimbert": meta}
        atomic_write(tmp / "config.json", json.dumps(config, indent=2).encode())
        for name in ("vocab.txt", "tokenizer_config.json"):  # the folder feeds load_tokenizer too
            if (Path(vocab_dir) / name).is_file():
                shutil.copy(Path(vocab_dir) / name, tmp / name)
        if state is not None:
            write_trainer_state(tmp, state)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk must not leave a half-written .tmp
        raise SystemExit(f"error: cannot write the checkpoint {final}: {e}") from None
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_folder(folder: Path) -> Path | None:
    """The complete checkpoint at `folder`, or its .old twin if a save stopped between renames."""
    for f in (Path(folder), Path(str(folder) + ".old")):
        if (f / "config.json").is_file() and (f / "model.safetensors").is_file():
            return f
    return None


def load_checkpoint(folder: Path, model, strategy) -> dict | None:
    """Load a checkpoint folder into model (and strategy); returns its trainer state, if any."""
    found = checkpoint_folder(folder)
    if found is None:
        raise SystemExit(f"error: no checkpoint in {folder} (config.json and model.safetensors)")
    try:
        tensors = read_safetensors(found / "model.safetensors")
        bert = {k: v for k, v in tensors.items() if k.startswith("bert.")}
        load_encoder_weights(model.bert, bert, str(found), run_folder=True)
        model.head.load_state_dict(_under(tensors, _head(model)))
        if strategy is not None:
            strategy.load_state_dict(_under(tensors, strategy.checkpoint_prefix))
        return read_trainer_state(found)
    except (CheckpointError, RuntimeError, KeyError, ValueError) as e:
        raise SystemExit(f"error: cannot load the checkpoint in {found}: {e}") from None


def _head(model) -> str:
    return "qa_outputs" if model.kind == "span" else "classifier"


def _under(tensors: dict, prefix: str) -> dict:
    return {
        k.removeprefix(prefix + "."): v for k, v in tensors.items() if k.startswith(prefix + ".")
    }


# ----------------------------------------------------------------------------------------------
# Trainer state: counters and settings as JSON, tensors (optimiser moments, RNG) as safetensors


def write_trainer_state(folder: Path, state: dict) -> None:
    tensors = {}
    tree = _encode(state, tensors, "state")
    write_safetensors(tensors, folder / "trainer_state.safetensors")
    atomic_write(folder / "trainer_state.json", json.dumps(tree).encode())


def read_trainer_state(folder: Path) -> dict | None:
    path = folder / "trainer_state.json"
    if not path.is_file():
        return None
    try:
        tree = json.loads(path.read_text())
        tensors = read_safetensors(folder / "trainer_state.safetensors")
        return _decode(tree, tensors)
    except (json.JSONDecodeError, KeyError, TypeError, FileNotFoundError) as e:
        raise CheckpointError(f"{path} is damaged ({e}); resume from another copy") from None


def _encode(obj, tensors: dict, key: str):
    """A nested structure -> JSON; tensors and arrays go to `tensors` under their path."""
    if isinstance(obj, torch.Tensor):  # 0-d tensors (Adam's step) are stored with one element
        tensors[key] = obj.detach().cpu().reshape(obj.shape or (1,)).contiguous()
        return {"tensor": key, "shape": list(obj.shape)}
    if isinstance(obj, np.ndarray):  # numpy's RNG key (uint32): stored as int64, cast back
        tensors[key] = torch.from_numpy(obj.astype(np.int64))
        return {"ndarray": key, "dtype": str(obj.dtype)}
    if isinstance(obj, dict):  # keys may be ints (optimiser state): keep them as pairs
        return {"dict": [[k, _encode(v, tensors, f"{key}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, tensors, f"{key}.{i}") for i, v in enumerate(obj)]
        return {"tuple": items} if isinstance(obj, tuple) else items
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    assert obj is None or isinstance(obj, (bool, int, float, str)), f"cannot store {type(obj)}"
    return obj


def _decode(tree, tensors: dict):
    if isinstance(tree, list):
        return [_decode(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "tensor" in tree:
        return tensors[tree["tensor"]].reshape(tree["shape"])
    if "ndarray" in tree:
        return tensors[tree["ndarray"]].numpy().astype(tree["dtype"])
    if "tuple" in tree:
        return tuple(_decode(v, tensors) for v in tree["tuple"])
    return {k: _decode(v, tensors) for k, v in tree["dict"]}


def rng_state() -> dict:
    """Every random generator a run draws from, so a resumed run draws the same numbers."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        # one state per GPU of the machine that saved it: a machine with fewer GPUs (a run
        # resumed elsewhere) sets those it has; set_rng_state_all would fail on the missing ones
        for i, gpu_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(gpu_state, i)


# ----------------------------------------------------------------------------------------------
# The run's settings


def options_dict(options) -> dict | None:
    return None if options is None else dataclasses.asdict(options)


def make_options(method: type[SkimStrategy], values: dict):
    """The method's Options from those of `values` that name its fields (JSON lists become the
    tuples the dataclass holds). Its own checks raise ValueError or AssertionError."""
    if method.Options is None:
        return None
    names = {f.name for f in dataclasses.fields(method.Options)}
    return method.Options(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    )


def load_run(run_dir: Path):
    """(model, strategy, saved settings) of a finished run folder, rebuilt from the folder alone:
    its method, options, task head and model shape. Both in eval mode."""
    import data  # here, not at the top: data is only needed to rebuild a run

    saved = read_run_config(run_dir)
    folder = checkpoint_folder(Path(run_dir) / "ckpt")
    if folder is None:
        raise SystemExit(f"error: {run_dir} holds no checkpoint (ckpt/): did the run finish?")
    try:
        method = load_method(saved["method"])
        options = make_options(method, saved.get("options") or {})
        task = data.get_task(saved["train"]["task"])
    except (ValueError, AssertionError, KeyError) as e:
        raise SystemExit(f"error: cannot rebuild the method of {run_dir}: {e}") from None
    meta = json.loads((folder / "config.json").read_text())
    model = BertForTask(read_config(folder), task.kind, meta.get("num_labels", task.num_labels))
    strategy = method.build(model, options, task)
    load_checkpoint(folder, model, strategy)
    return model.eval(), strategy.eval(), saved


def read_run_config(run_dir: Path) -> dict:
    """config.json of a run folder written by train.py: {"train", "method", "options"}."""
    path = Path(run_dir) / "config.json"
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"error: {run_dir} is not a run folder: no config.json") from None
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: {path} is not valid JSON ({e})") from None
    if not isinstance(saved, dict) or not {"train", "method"} <= saved.keys():
        raise SystemExit(f"error: {path} was not written by train.py (no train/method settings)")
    return saved
