"""Train and evaluate any skim method with one script: baseline, Transkimmer, TR-BERT, LTP, yours.

    python train.py --method transkimmer --task sst2 --model sentence-transformers/all-MiniLM-L6-v2
    python train.py --method baseline --preset smoke          # a tiny model, offline, ~1 minute
    python train.py --method path/to/my_method.py:MyStrategy --preset smoke

A method is a skim.SkimStrategy class: it brings its settings (`Options`, which become flags:
`python train.py --method NAME --help`), its stages, its loss and its cost, so this file names no
method. Evaluation always runs the real pruned forward (skim.skim_forward with prune=True) and
counts FLOPs with flops.py under the three padding settings. What a run folder holds: runs.py.
Several GPUs: torchrun --nproc_per_node N train.py ... Tests: tests/test_train.py.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import platform
import random
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

import data
import flops
import report
import runs
from skim import SkimStrategy, StepContext, skim_forward
from transformer import CONFIGS, BertForTask
from weights import (
    CheckpointError,
    append_line,
    atomic_write,
    is_run_folder,
    load_encoder_weights,
    read_checkpoint,
    read_config,
    resolve_model_dir,
)


def _f(default, help):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every setting of a run but the method's own. None means "the task's default"."""

    method: str = _f("baseline", "a built-in method (runs.METHODS), file.py:Class or module:Class")
    task: str = _f("sst2", "task name: " + " ".join(data.TASKS))
    model: str = _f("bert-base-uncased", "hub name, local folder, or random-<CONFIGS shape>")
    data_dir: str | None = _f(None, "folder with the task's files (else the cache, else download)")
    out_dir: str | None = _f(None, "run folder (default runs/<task>-<method>)")
    overwrite: bool = _f(False, "replace the run already in --out-dir")
    preset: str | None = _f(None, "smoke (tiny model, synthetic task, ~1 min on a CPU), hard or "
                             "negation (train.PRESETS)")  # fmt: skip
    max_length: int | None = _f(None, "tokens per input (default: the task's, Transkimmer Table 2)")
    train_subset: int = _f(0, "train on the first N examples of a fixed shuffle (0 = all)")
    eval_subset: int = _f(0, "evaluate on the first N dev examples (0 = all)")
    padding: str = _f("batch", "training batches: pad to the batch's longest or to --max-length")
    epochs: float | None = _f(None, "training epochs (default 3; 5 for MRPC and WNLI)")
    batch_size: int = _f(32, "examples per optimiser step (per process with torchrun)")
    eval_batch_size: int = _f(32, "examples per evaluation batch")
    lr: float = _f(2e-5, "AdamW learning rate of the encoder and head")
    skim_lr: float | None = _f(None, "learning rate of the method's own parameters (default --lr)")
    # DEVIATION: the next three defaults are ours, not the authors' (both use no weight decay);
    # a method's train_defaults replace them (TR-BERT: its authors' clipping at 1.0, 10% warm-up
    # and no weight decay), and flags replace both.
    weight_decay: float = _f(0.01, "AdamW weight decay (not on biases and LayerNorm)")
    warmup: float = _f(0.0, "share of each stage's steps with linear warm-up")
    max_grad_norm: float = _f(0.0, "clip the gradient norm to this (0 = no clipping)")
    seed: int = _f(42, "seed for initialisation, data order, dropout and sampling")
    finetuned: str | None = _f(None, "start from this baseline run's folder (also the teacher)")
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    precision: str = _f("fp32", "fp32, or mixed precision: bf16, or fp16 (CUDA only)")
    threads: int = _f(0, "CPU threads (0 = torch's default)")
    deterministic: bool = _f(False, "on a GPU too, only kernels that repeat themselves bit for "
                             "bit: a rerun or resume gives the same weights; slower")  # fmt: skip
    eval_every: int = _f(0, "evaluate every N steps (0 = at the end of each epoch)")
    log_every: int = _f(50, "print the training loss every N steps")
    resume: bool = _f(False, "continue the interrupted run in --out-dir, with its settings")
    eval_only: bool = _f(False, "evaluate the run in --out-dir, with its settings (eval.json)")
    stop_after_steps: int = _f(0, "save and stop after N steps, as if interrupted (tests --resume)")
    case_study: int = _f(20, "dev examples kept for case_study.html")

    def problems(self) -> list[str]:
        """What is wrong with these values, each naming its flag. (NaN fails every comparison, so
        each check below refuses it.)"""
        inf, device = math.inf, self.device.removeprefix("cuda:")
        lr_range = f"positive and finite, below {LR_MAX:.1e} (Adam steps 10·lr in float32)"
        named = lambda v: v is None or v.strip() != ""  # None: the flag was not given
        checks = [  # (flag, allowed, what is allowed)
            ("batch_size", self.batch_size > 0, "> 0"),
            ("eval_batch_size", self.eval_batch_size > 0, "> 0"),
            ("lr", 0 < self.lr < LR_MAX, lr_range),
            ("skim_lr", self.skim_lr is None or 0 < self.skim_lr < LR_MAX, lr_range),
            ("epochs", self.epochs is None or 0 < self.epochs < inf, "positive and finite"),
            ("max_length", self.max_length is None or self.max_length >= 3, "≥ 3"),
            ("weight_decay", 0 <= self.weight_decay < inf, "≥ 0 and finite"),
            ("warmup", 0 <= self.warmup < 1, "a share of the steps in [0, 1)"),
            ("max_grad_norm", 0 <= self.max_grad_norm < inf, "≥ 0 and finite (0 = no clipping)"),
            ("seed", 0 <= self.seed < 2**32, "in 0 .. 4294967295 (numpy's seeds are 32-bit)"),
            ("train_subset", self.train_subset >= 0, "≥ 0"),
            ("eval_subset", self.eval_subset >= 0, "≥ 0"),
            ("log_every", self.log_every >= 1, "≥ 1"),
            ("threads", self.threads >= 0, "≥ 0 (0 = torch's default)"),
            ("eval_every", self.eval_every >= 0, "≥ 0"),
            ("stop_after_steps", self.stop_after_steps >= 0, "≥ 0"),
            ("case_study", self.case_study >= 0, "≥ 0"),
            ("padding", self.padding in ("batch", "sequence"), "batch or sequence"),
            ("precision", self.precision in ("fp32", "bf16", "fp16"), "fp32, bf16 or fp16"),
            ("device", device in ("auto", "cpu", "cuda") or device.isdigit(), "auto, cpu, cuda:N"),
            ("preset", self.preset in (None, *PRESETS), "one of " + ", ".join(PRESETS)),
            ("model", named(self.model), "a hub name, a folder or random-<shape>, not empty"),
            ("out_dir", named(self.out_dir), "a folder, not empty (or leave the flag out)"),
            ("data_dir", named(self.data_dir), "a folder, not empty (or leave the flag out)"),
            ("finetuned", named(self.finetuned), "a baseline run's folder, not empty"),
        ]
        found = [f"--{k.replace('_', '-')} must be {what}, got {getattr(self, k)!r}"
                 for k, ok, what in checks if not ok]  # fmt: skip
        # AdamW scales every decayed weight by 1 − lr·wd each step: from lr·wd = 1 on that zeroes
        # the weights or flips their sign, whatever the gradients say
        for flag, lr in (("--lr", self.lr), ("--skim-lr", self.skim_lr)):
            if not found and lr is not None and lr * self.weight_decay >= 1:
                found.append(f"--weight-decay × {flag} must be < 1 (each step scales the weights "
                             f"by 1 − lr·wd), got {self.weight_decay} × {lr}")  # fmt: skip
        return found


# Adam's first step moves a weight by lr / (1 − β1) = 10·lr in float32: a learning rate above a
# tenth of float32's largest number overflows there (torch.optim stops with a RuntimeError)
LR_MAX = float(torch.finfo(torch.float32).max) * (1 - 0.9)


PRESETS = {  # smoke: every method in about a minute on a CPU, one thread (a tiny model gains
    # nothing from more). Keys that are not the chosen method's options are ignored.
    "smoke": dict(task="synthetic", model="random-tiny", epochs=3, batch_size=16, lr=3e-3,
                  skim_lr=1e-3, skim_weight=0.1, tau=1.0, train_subset=1600, eval_subset=200,
                  log_every=20, length_penalty=0.5, num_samples=4, rl_epochs=1, threads=1),
    # hard: synthetic-hard (the aspect word decides which keywords count) on a 4-layer tiny
    # model, all 8,000 examples; a baseline in about a minute, skim methods from its run
    "hard": dict(task="synthetic-hard", model="random-tiny4", epochs=5, batch_size=16, lr=1e-3,
                 skim_lr=1e-3, skim_weight=0.1, tau=1.0, log_every=100, length_penalty=0.5,
                 num_samples=4, rl_epochs=1, threads=1),
    # negation: synthetic-negation ("not" before a keyword turns it around) on the pre-trained
    # all-MiniLM-L6-v2 (installed with the test requirements), which already reads "not bad"
    "negation": dict(task="synthetic-negation", model="sentence-transformers/all-MiniLM-L6-v2",
                     epochs=1, batch_size=32, lr=1e-4, skim_lr=1e-3, tau=1.0,
                     log_every=25, length_penalty=0.5, num_samples=4, rl_epochs=1, threads=1),
}  # fmt: skip
# what --resume and --eval-only may change in a run's saved settings: where and how, not what
MAY_CHANGE = {"data_dir", "device", "threads", "deterministic", "log_every", "eval_batch_size",
              "case_study", "stop_after_steps", "resume", "eval_only", "out_dir",
              "overwrite"}  # fmt: skip
# ... but not these, which --resume must keep: they change the numbers (the threads' share of a
# sum, the GPU's kernels, the batches TR-BERT's guide is computed in), and a resumed run ends
# bit for bit where the straight run would. --device may change: a run moves between machines
# (stopped on a GPU, it goes on on a CPU), and another machine's numbers are its own anyway.
SAME_NUMBERS = {"threads", "deterministic", "eval_batch_size"}


# ----------------------------------------------------------------------------------------------
# The command line: TrainConfig's fields, then the chosen method's Options


def add_fields(parser, cls) -> None:
    """One flag per dataclass field, with its help; defaults stay in the dataclass."""
    for f in dataclasses.fields(cls):
        # the annotation as text: a string under `from __future__ import annotations`, else a type
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        kind, flag = kind.split(" |")[0], "--" + f.name.replace("_", "-")
        default = "" if f.default in (None, "", ()) else f" [default: {f.default}]"
        text = f.metadata["help"] + default
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        elif kind.startswith("tuple"):  # comma-separated integers, e.g. layer indices
            parser.add_argument(flag, type=_int_tuple, help=text + " (comma-separated)")
        else:
            parser.add_argument(flag, type={"int": int, "float": float}.get(kind, str), help=text)


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        values = ()
    if not values:  # an empty list would quietly stand for the default: leave the flag out
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return values


def parse_config(argv: list[str] | None = None):
    """Command line -> (TrainConfig, method class, its options). Values come from the command
    line, then (--resume / --eval-only) the run's saved settings, else the preset, then the
    dataclass defaults. Flags that contradict a saved run are an error."""
    argv = sys.argv[1:] if argv is None else argv
    first = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    add_fields(first, TrainConfig)
    given = vars(first.parse_known_args(argv)[0])
    saved = None
    if given.get("out_dir") is not None and not given["out_dir"].strip():
        raise SystemExit("error: --out-dir '' names no folder: give the run's folder")
    if given.get("resume") or given.get("eval_only"):
        if "out_dir" not in given:
            raise SystemExit("error: --resume and --eval-only need --out-dir RUN, the run's folder")
        saved = runs.read_run_config(Path(given["out_dir"]))
    spec = given.get("method", TrainConfig.method)
    if saved:  # a built-in from the folder; a file or module only if named here (and the same)
        try:
            spec = runs.method_of_run(saved["method"], given.get("method"), _config_path(given))
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
    try:
        method = runs.load_method(spec)
    except ValueError as e:
        raise SystemExit(f"error: --method: {e}") from None
    given = vars(method_parser(spec, method).parse_args(argv))
    if "method" in given:
        given["method"] = saved["method"] if saved else runs.method_spec(given["method"])
    if saved:
        _check_saved(saved, method, _config_path(given))
        values = {**saved["train"], **(saved.get("options") or {})}
        changed = [k for k, v in given.items() if _differs(values.get(k), v)]
        flags = lambda keys: ", ".join("--" + k.replace("_", "-") for k in keys)  # noqa: E731
        if [k for k in changed if k not in MAY_CHANGE]:
            raise SystemExit(f"error: {flags(k for k in changed if k not in MAY_CHANGE)} "
                             f"contradict the run saved in {given['out_dir']}")  # fmt: skip
        numbers = [k for k in changed if k in SAME_NUMBERS]
        if numbers and not given.get("eval_only"):
            was = ", ".join(f"{k.replace('_', '-')} {values.get(k)}" for k in numbers)
            raise SystemExit(f"error: {flags(numbers)} would change the numbers of the run in "
                             f"{given['out_dir']}: --resume continues with its own ({was}); "
                             "drop the flag, or start a new run")  # fmt: skip
        values.update(given)
    else:  # the method's own defaults, then the preset, then the flags
        method_defaults = dict(getattr(method, "train_defaults", None) or {})
        unknown = set(method_defaults) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise SystemExit(f"error: {spec}.train_defaults names no train.py setting: "
                             f"{sorted(unknown)} (see train.TrainConfig)")  # fmt: skip
        values = {**method_defaults, **PRESETS.get(given.get("preset"), {}), **given}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in values.items() if k in names})
    if saved is None and cfg.out_dir is None:
        cfg.out_dir = f"runs/{_known_task(cfg.task).name}-{spec.rpartition(':')[2].lower()}"
    cfg.method = saved["method"] if saved else runs.method_spec(spec)
    try:
        return cfg, method, runs.make_options(method, values)
    except (AssertionError, ValueError, TypeError) as e:
        raise SystemExit(f"error: {method.__name__} options: {e}") from None


def _config_path(given: dict) -> Path:
    return Path(given["out_dir"]) / "config.json"


def _check_saved(saved: dict, method, path: Path) -> None:
    """A run's saved settings (config.json, maybe crafted) before they are used: every value of
    the type its flag takes, and within what the flag allows; else one line naming the file."""
    for values, cls in ((saved["train"], TrainConfig), (saved["options"] or {}, method.Options)):
        for f in dataclasses.fields(cls) if cls else ():
            if f.name in values and not _json_fits(values[f.name], f.type):
                raise SystemExit(
                    f"error: {path}: {f.name} is {runs.shown(values[f.name]):.60}, not "
                    f"{f.type}; the file is damaged (give the run's own config.json)"
                )
            value = values.get(f.name)
            if isinstance(value, str) and not value.isprintable():  # a forged line in the log
                raise SystemExit(f"error: {path}: {f.name} holds a newline or control character "
                                 f"({runs.shown(value):.60}); the file is damaged")  # fmt: skip
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    problems = TrainConfig(**{k: v for k, v in saved["train"].items() if k in names}).problems()
    seed = saved["train"].get("seed", 0)
    if not 0 <= seed < 2**32:  # numpy's seeds
        problems.append(f"--seed must be in [0, 2^32), got {seed}")
    if problems:
        raise SystemExit(f"error: {path}: {'; '.join(problems)}; the file is damaged")


def _json_fits(value, annotation) -> bool:
    """Whether a JSON value fits a dataclass field's annotation ("float | None", "tuple[int,
    ...]", ...). An int is a float too, as in JSON; a bool is neither."""
    kinds = str(annotation).replace(" ", "").split("|")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    for kind in kinds:
        if kind.startswith("tuple["):  # a list of the element type (JSON has no tuples)
            item = kind[len("tuple[") :].split(",")[0]
            if isinstance(value, list) and all(_json_fits(v, item) for v in value):
                return True
        elif (kind == "None" and value is None) or (kind == "bool" and isinstance(value, bool)):
            return True
        elif (kind == "str" and isinstance(value, str)) or (kind == "float" and number):
            return True
        elif kind == "int" and number and isinstance(value, int):
            return True
    # a type named otherwise (a method's own Options, annotated with classes): its checks decide
    return kinds[0] not in ("None", "bool", "str", "float", "int") and "tuple" not in kinds[0]


def method_parser(spec: str, method) -> argparse.ArgumentParser:
    """The full parser: this script's flags, then the method's own (its --help group)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     argument_default=argparse.SUPPRESS)  # fmt: skip
    add_fields(parser.add_argument_group("run"), TrainConfig)
    if method.Options is not None:
        clash = {f.name for f in dataclasses.fields(method.Options)} & set(vars(TrainConfig()))
        if clash:
            raise SystemExit(
                f"error: {spec}'s Options reuse train.py's {sorted(clash)}: rename them"
            )
        add_fields(parser.add_argument_group(f"{spec} options"), method.Options)
    return parser


def _differs(saved, given) -> bool:
    as_list = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return as_list(saved) != as_list(given)


def _known_task(name: str) -> data.Task:
    try:
        return data.get_task(name)
    except KeyError as e:
        raise SystemExit(f"error: --task: {e.args[0]}") from None


# ----------------------------------------------------------------------------------------------
# Building the model and the data


def build_model(cfg: TrainConfig, task: data.Task, run_dir: Path):
    """(model, tokenizer folder). Pretrained weights from --model; the head is new. A run being
    resumed or evaluated rebuilds its model's shape from its own checkpoint."""
    ckpt = runs.checkpoint_folder(run_dir / "ckpt") if cfg.resume or cfg.eval_only else None
    random_shape = cfg.model.removeprefix("random-") if cfg.model.startswith("random-") else None
    if ckpt is not None:  # its config.json against its weights' header, before any tensor
        try:
            folder, bert_cfg = ckpt, runs.checked_model_config(ckpt)
        except CheckpointError as e:
            raise SystemExit(f"error: {e}") from None
    elif random_shape:
        if random_shape not in CONFIGS:
            shapes = ", ".join("random-" + s for s in CONFIGS)
            raise SystemExit(f"error: --model {cfg.model}: known shapes are {shapes}")
        if task.reader != "synthetic":
            raise SystemExit("error: a random model has no vocabulary; use a synthetic --task")
        folder = data.write_synthetic_vocab(run_dir / "vocab", task)
        vocab_size = len((folder / "vocab.txt").read_text().split("\n"))
        bert_cfg = dataclasses.replace(CONFIGS[random_shape], vocab_size=vocab_size)
    model = None
    try:
        if ckpt is None and not random_shape:
            folder = resolve_model_dir(cfg.model)
            bert_cfg = read_config(folder, links=True)  # a released model: the HF cache is links
            model = BertForTask(bert_cfg, task.kind, task.num_labels)
            state = read_checkpoint(folder)  # a run's ckpt/ as --model holds more than BERT
            load_encoder_weights(model.bert, state, str(folder), run_folder=is_run_folder(folder))
    except (CheckpointError, RuntimeError) as e:
        raise SystemExit(f"error: --model {cfg.model}: {e}") from None
    model = model or BertForTask(bert_cfg, task.kind, task.num_labels)
    if cfg.max_length > bert_cfg.max_position_embeddings:
        raise SystemExit(f"error: --max-length {cfg.max_length} exceeds the model's "
                         f"{bert_cfg.max_position_embeddings} positions")  # fmt: skip
    return model, folder


def load_features(cfg: TrainConfig, task: data.Task, tokenizer):
    """Train and dev features (dev: the first evaluation split, e.g. SST-2 dev, IMDB test)."""
    try:
        train_ex = data.load_examples(task, "train", cfg.data_dir)
        dev_ex = data.load_examples(task, task.splits[1], cfg.data_dir)
    except OSError as e:  # a file that is a folder, unreadable, ...; data.py's own say it all
        where = f"cannot read {e.filename}: {e.strerror}" if e.filename else str(e)
        raise SystemExit(f"error: {where} (the {task.name} data; --data-dir names its folder)")
    except (ValueError, KeyError, RuntimeError) as e:
        raise SystemExit(f"error: {e}") from None
    # "the first N" of fewer than N would quietly be all of them
    for flag, n, have, split in (
        ("--train-subset", cfg.train_subset, train_ex, "train"),
        ("--eval-subset", cfg.eval_subset, dev_ex, task.splits[1]),
    ):
        if n > len(have):
            raise SystemExit(
                f"error: {flag} {n} exceeds the {len(have)} {split} examples of "
                f"{task.name}: give at most {len(have)}, or 0 for all"
            )
    if cfg.train_subset:  # a fixed shuffle, so a subset is a fair sample of the classes
        order = np.random.default_rng(0).permutation(len(train_ex))[: cfg.train_subset]
        train_ex = [train_ex[i] for i in sorted(order)]
    dev_ex = dev_ex[: cfg.eval_subset or None]
    encode = functools.partial(data.encode, task, tokenizer=tokenizer, max_length=cfg.max_length)
    return encode(train_ex), dev_ex, encode(dev_ex)


def task_loss(task: data.Task, logits: torch.Tensor, batch: dict, teacher=None) -> torch.Tensor:
    """Per-example loss (B,): cross-entropy, MSE for regression, mean of start/end CE for spans.
    With teacher logits, the soft cross-entropy to them instead (knowledge distillation, T = 1).
    Computed in float32 when the logits are narrower (bf16, fp16), in float64 when they are."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logits = logits.to(dtype)
    teacher = None if teacher is None else teacher.to(dtype)
    if task.kind == "regression":
        target = batch["labels"].to(dtype) if teacher is None else teacher.squeeze(-1)
        return (logits.squeeze(-1) - target) ** 2
    if task.kind == "span":
        pads = batch["attention_mask"][..., None] == 0
        logits = logits.masked_fill(pads, -1e4)  # pads are no answer
        if teacher is not None:
            teacher = teacher.masked_fill(pads, -1e4)
            return -(teacher.softmax(1) * logits.log_softmax(1)).sum(1).mean(-1)
        start = F.cross_entropy(logits[..., 0], batch["start_positions"], reduction="none")
        end = F.cross_entropy(logits[..., 1], batch["end_positions"], reduction="none")
        return (start + end) / 2
    if teacher is not None:
        return -(teacher.softmax(-1) * logits.log_softmax(-1)).sum(-1)
    return F.cross_entropy(logits, batch["labels"], reduction="none")


# ----------------------------------------------------------------------------------------------
# The run: everything the loop needs, built once


@dataclass
class Run:
    cfg: TrainConfig
    task: data.Task
    model: BertForTask
    strategy: object  # a skim.SkimStrategy
    meta: dict  # what config.json and every checkpoint record
    train_feats: list
    dev_ex: list
    dev_feats: list
    tokenizer: object
    vocab_dir: str
    device: torch.device
    autocast: object
    dir: Path
    log: object
    rank: int = 0
    world: int = 1

    def batch(self, idx: list[int], feats=None, padding="batch") -> dict:
        """Features idx -> tensors on the device; "index" names the features (for strategies)."""
        b = data.collate(
            [(feats or self.train_feats)[i] for i in idx], padding, self.cfg.max_length
        )
        b["index"] = torch.tensor(idx)
        return {k: v.to(self.device, non_blocking=True) for k, v in b.items()}


def train(cfg: TrainConfig, method, options) -> dict:
    """Train (or, with --eval-only, just evaluate) one run; returns the final results."""
    started = time.time()
    if cfg.resume and os.path.lexists(Path(cfg.out_dir) / "results.json"):  # written last
        print(f"{cfg.out_dir} is finished (it holds results.json): nothing to resume, nothing "
              "changed; --eval-only evaluates it again")  # fmt: skip
        return {"finished": True}
    run = setup(cfg, method, options)
    if cfg.eval_only:
        runs.load_checkpoint(run.dir / "ckpt", run.model, run.strategy)
        return finish(run, started, {}, eval_only=True)
    progress = {"stage": 0, "step": 0, "steps_done": 0, "history": []}
    if cfg.resume:
        progress = runs.load_checkpoint(run.dir / "ckpt", run.model, run.strategy)
        if progress is None:
            raise SystemExit(f"error: --resume: {run.dir / 'ckpt'} holds no trainer state")
        stages = len(run.strategy.stages(run.cfg))
        runs.check_progress(progress, stages, run.dir / "ckpt" / "trainer_state.json")
        run.log(f"resuming at stage {progress['stage']} step {progress['step']}")
        if progress["step"] == 0:  # at a stage boundary: draw on as the straight run did
            runs.set_rng_state(progress["rng"])
    elif cfg.finetuned:
        runs.load_checkpoint(Path(cfg.finetuned) / "ckpt", run.model, None)
        run.log(f"starting from the fine-tuned run {cfg.finetuned}")
    stages, teacher = run.strategy.stages(run.cfg), None
    # the first stage that learns from the teacher builds it, and the straight run does so at that
    # stage's start, after the state a resumed run restores: see load_teacher
    first_with_teacher = next((s for s, stage in enumerate(stages) if stage.teacher), None)
    if not stages and run.rank == 0:  # nothing to train (a fine-tuned run evaluated as it is):
        progress["rng"] = runs.rng_state()  # its checkpoint still makes the folder a whole run
        runs.save_checkpoint(run.dir / "ckpt", run.model, run.strategy, run.meta, run.vocab_dir,
                             progress)  # fmt: skip
    for s in range(progress["stage"], len(stages)):
        if stages[s].teacher and teacher is None:
            teacher = load_teacher(run, draws=s == first_with_teacher)
        progress = train_stage(run, s, stages[s], progress, teacher)
        if progress.get("stopped"):
            return {"stopped": True}
    schedule = [dataclasses.asdict(stage) for stage in stages]  # what a control can repeat
    return finish(run, started, {"history": progress["history"], "stages": schedule})


def check(cfg: TrainConfig) -> TrainConfig:
    """The task's defaults filled in, and every problem with the settings, before work starts."""
    task = _known_task(cfg.task)
    # None alone means "the task's": a 0 is refused below, never replaced by the default
    if cfg.epochs is None:
        cfg = dataclasses.replace(cfg, epochs=5.0 if task.name in ("mrpc", "wnli") else 3.0)
    if cfg.max_length is None:
        cfg = dataclasses.replace(cfg, max_length=task.max_length)
    problems, cuda, run_dir = cfg.problems(), torch.cuda.is_available(), Path(cfg.out_dir)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cfg.threads > cpus and not cfg.resume:  # (a resumed run keeps its own: slower, no crash)
        problems.append(f"--threads {cfg.threads} exceeds the {cpus} CPUs here: give at most "
                        f"{cpus}, or 0 for torch's default")  # fmt: skip
    index = cfg.device.removeprefix("cuda:")
    if cuda and index.isdigit() and int(index) >= torch.cuda.device_count():
        problems.append(f"--device {cfg.device}: this machine has GPUs cuda:0 .. "
                        f"cuda:{torch.cuda.device_count() - 1}")  # fmt: skip
    on_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and cuda)
    # bf16 autocast also runs on a CPU (slowly, unless it has bf16 units): what lets the mixed-
    # precision path be tested without a GPU. fp16 needs loss scaling, which we do on CUDA only.
    if cfg.precision == "fp16" and not on_cuda:
        problems.append("--precision fp16 needs a CUDA GPU; use fp32 or bf16 on a CPU")
    if cfg.device not in ("auto", "cpu") and not cuda:
        problems.append(f"--device {cfg.device}, but no CUDA GPU is available; use --device cpu")
    if cfg.data_dir and not Path(cfg.data_dir).expanduser().is_dir():
        problems.append(f"--data-dir {cfg.data_dir} is not a folder")
    if cfg.finetuned and runs.checkpoint_folder(Path(cfg.finetuned) / "ckpt") is None:
        problems.append(f"--finetuned {cfg.finetuned}: no ckpt/ there (give a baseline run)")
    if cfg.resume and runs.checkpoint_folder(run_dir / "ckpt") is None:
        problems.append(f"--resume: no checkpoint in {run_dir / 'ckpt'}")
    if cfg.eval_only and runs.checkpoint_folder(run_dir / "ckpt") is None:
        problems.append(f"--eval-only: no checkpoint in {run_dir / 'ckpt'} (did the run finish?)")
    if not (cfg.resume or cfg.eval_only or cfg.overwrite) and _holds_a_run(run_dir):
        problems.append(f"{run_dir} already holds a run: choose another --out-dir, continue it "
                        "with --resume, or replace it with --overwrite")  # fmt: skip
    if problems:
        raise SystemExit("error: " + "; ".join(problems))
    return cfg


def setup(cfg: TrainConfig, method, options) -> Run:
    """Check the settings, start torchrun's processes, build model, method and data."""
    cfg, task = check(cfg), _known_task(cfg.task)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if cfg.device == "auto" else cfg.device)
    if "LOCAL_RANK" in os.environ and not dist.is_initialized():  # started by torchrun
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:  # a CPU is deterministic already; on a GPU, backward passes that add
        # with atomics in any order (embeddings, gathers) switch to sorted kernels; cuBLAS needs
        # its own workspace per stream (read when it starts: set it before, to be sure)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)  # warns naming any op without one
        # scaled_dot_product_attention's fused kernels warn that their backward is not
        # deterministic (cuDNN's, then the memory-efficient one, on an H100 with torch 2.11):
        # leave it the math kernel, plain matrix products and a softmax
        for fused in ("cudnn", "flash", "mem_efficient"):
            getattr(torch.backends.cuda, f"enable_{fused}_sdp")(False)
    meta = {"train": dataclasses.asdict(cfg), "method": cfg.method, "task": task.name,
            "options": runs.options_dict(options), "kind": task.kind}  # fmt: skip
    run_dir, fresh = Path(cfg.out_dir), not (cfg.resume or cfg.eval_only)
    try:
        if cfg.overwrite and fresh and rank == 0:
            _check_overwrite(cfg, options)
            _clear(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        _check_folder(run_dir)
        if rank == 0 and fresh:
            atomic_write(run_dir / "config.json", json.dumps(meta, indent=2).encode())
    except OSError as e:
        raise SystemExit(f"error: cannot write to --out-dir {run_dir}: {e}") from None
    log = _Logger(run_dir / "log.txt", rank == 0, rank == 0 and not cfg.eval_only)
    settings = {**meta["train"], **(meta["options"] or {})}
    # every value as one line: a name with a newline in a crafted config.json forges no lines
    lines = [f"  {k:<19}{runs.shown(v)}" for k, v in settings.items()]
    log(f"skimbert {runs.shown(cfg.method)} on {task.name} ({device}, {world} process"
        f"{'es' * (world > 1)})\n" + "\n".join(lines))  # fmt: skip
    random.seed(cfg.seed), np.random.seed(cfg.seed), torch.manual_seed(cfg.seed)
    model, folder = build_model(cfg, task, run_dir)
    try:
        strategy = method.build(model, options, task)
    except TypeError as e:  # most often a constructor that needs more than build() gives it
        raise SystemExit(f"error: cannot build {cfg.method}: {e}; a method whose __init__ takes "
                         "arguments overrides build(model, options, task)") from None  # fmt: skip
    except (ValueError, AssertionError) as e:
        raise SystemExit(f"error: {e}") from None
    if not isinstance(strategy, SkimStrategy):
        raise SystemExit(f"error: {cfg.method}.build returned {type(strategy).__name__}, "
                         "not a skim.SkimStrategy")  # fmt: skip
    try:
        tokenizer = data.load_tokenizer(folder)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    train_feats, dev_ex, dev_feats = load_features(cfg, task, tokenizer)
    size = sum(p.numel() for p in model.parameters()) / 1e6
    log(f"{len(train_feats)} train and {len(dev_feats)} dev features; model {size:.1f}M parameters")
    model.to(device), strategy.to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    return Run(cfg, task, model, strategy, meta, train_feats, dev_ex, dev_feats, tokenizer,
               str(folder), device, autocast, run_dir, log, rank, world)  # fmt: skip


RUN_FILES = ("config.json", "log.txt", "results.json", "eval.json", "kept_tokens.svg",
             "case_study.html")  # fmt: skip
RUN_FOLDERS = ("ckpt", "ckpt.old", "ckpt.tmp", "finetuned", "finetuned.old", "finetuned.tmp",
               "vocab")  # fmt: skip


def _holds_a_run(run_dir: Path) -> bool:
    return any(os.path.lexists(run_dir / n) for n in (*RUN_FILES, *RUN_FOLDERS))


def _clear(run_dir: Path) -> None:
    """--overwrite: remove what a run writes, and nothing else the folder may hold. A symbolic
    link among them is removed itself; what it points to is left alone."""
    for name in (*RUN_FILES, *RUN_FOLDERS):
        runs.remove(run_dir / name)


def _check_overwrite(cfg: TrainConfig, options) -> None:
    """--overwrite deletes a run folder: never one this command reads (--finetuned, --model,
    --data-dir, a method's option naming a folder such as --keep-shares-from), nor a folder
    inside or around one of them."""
    run_dir = Path(cfg.out_dir).expanduser().resolve()
    reads = {"finetuned": cfg.finetuned, "model": cfg.model, "data_dir": cfg.data_dir,
             **(runs.options_dict(options) or {})}  # fmt: skip
    for name, value in reads.items():
        if not isinstance(value, str) or not value or not Path(value).expanduser().exists():
            continue
        other = Path(value).expanduser().resolve()
        if other == run_dir or run_dir in other.parents or other in run_dir.parents:
            raise SystemExit(
                f"error: --overwrite would delete {cfg.out_dir}, and --{name.replace('_', '-')} "
                f"reads {value} (the same folder, or one inside the other): choose another "
                "--out-dir"
            )


def _check_folder(run_dir: Path) -> None:
    """A run folder holds only what train.py writes there: regular files, and folders of them.
    A symbolic link, FIFO or device under a run's names (a folder someone sent, or planted
    beside a run) is refused before anything is read or written through it."""
    for name in (*RUN_FILES, *RUN_FOLDERS):
        path = run_dir / name
        if not os.path.lexists(path):
            continue
        folder = name in RUN_FOLDERS
        inside = list(path.iterdir()) if folder and not path.is_symlink() and path.is_dir() else []
        for p in [path, *inside]:
            mode, want = p.lstat().st_mode, stat.S_ISDIR if p == path and folder else stat.S_ISREG
            if not want(mode):
                raise SystemExit(
                    f"error: {p} is {_kind(mode)}; a run folder holds only the regular files "
                    "and folders train.py writes (remove it, or give a fresh --out-dir)"
                )
            if p.name == "vocab.txt" and p.lstat().st_size > 64 << 20:  # read whole: data.py
                raise SystemExit(f"error: {p} is over 64 MB, not a vocabulary; the run is damaged")


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return (
        "a folder"
        if stat.S_ISDIR(mode)
        else "a file"
        if stat.S_ISREG(mode)
        else "a FIFO, socket or device"
    )


def load_teacher(run: Run, draws: bool = True) -> BertForTask:
    """The fine-tuned model, frozen: from --finetuned, or this run's own fine-tuning stage.

    Building it initialises weights (replaced at once by the fine-tuned ones) from torch's global
    generator. The straight run builds it when the first stage that needs it starts, and draws;
    a run resumed past that start builds it where the straight run built nothing (`draws` False),
    so under a forked generator: either way the numbers drawn next are the straight run's."""
    with torch.random.fork_rng(devices=[], enabled=not draws):  # built on the CPU, then moved
        teacher = BertForTask(run.model.bert.config, run.task.kind, run.task.num_labels)
    teacher = teacher.to(run.device)
    folder = Path(run.cfg.finetuned) / "ckpt" if run.cfg.finetuned else run.dir / "finetuned"
    runs.load_checkpoint(folder, teacher, None)
    run.log(f"teacher: the fine-tuned model in {folder}")
    return teacher.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------
# The training loop (one for every method and stage)


class _LossModule(torch.nn.Module):
    """The strategy's loss as a module, so DistributedDataParallel can wrap model and strategy."""

    def __init__(self, model, strategy, teacher):
        super().__init__()
        self.model, self.strategy = model, strategy
        self.teacher = [teacher]  # in a list: not a submodule, DDP must not sync the frozen teacher

    def forward(self, batch, step: StepContext):
        step.teacher = self.teacher[0] if step.stage.teacher else None
        return self.strategy.loss(self.model, batch, step)


def train_stage(run: Run, s: int, stage, progress: dict, teacher) -> dict:
    """Stage s of the method's schedule, from progress["step"] (0, or where a run stopped)."""
    cfg, lengths = run.cfg, [len(f) for f in run.train_feats]
    per_epoch = math.ceil(len(lengths) / cfg.batch_size) // run.world
    if per_epoch == 0:  # with torchrun: no process would get a batch, and the loop never ends
        raise SystemExit(f"error: --batch-size {cfg.batch_size} makes fewer batches an epoch "
                         f"than the {run.world} processes: give at most "
                         f"{len(lengths) // run.world}")  # fmt: skip
    total = max(1, int(per_epoch * stage.epochs))
    # What the stage's start builds (optimiser, begin_stage's precomputation, a strategy's own)
    # draws, if at all, from the state the stage started from: saved with every checkpoint of the
    # stage, and restored here by a run resumed inside it (the state of its stop comes below)
    if progress["step"] == 0:
        progress["stage_rng"] = runs.rng_state()
    elif "stage_rng" in progress:  # (absent from checkpoints written before it was saved)
        runs.set_rng_state(progress["stage_rng"])
    opt, sched = make_optimizer(run, stage, total)
    scaler = torch.amp.GradScaler(run.device.type, enabled=cfg.precision == "fp16")
    runner = _LossModule(run.model, run.strategy, teacher)
    if run.world > 1:  # one DDP per stage: the set of trainable parameters changes between stages
        runner = torch.nn.parallel.DistributedDataParallel(runner, find_unused_parameters=True)
    losses, step = functools.partial(task_loss, run.task), progress["step"]
    ordered = data.batch_indices(lengths, cfg.eval_batch_size)
    batches = lambda: ((idx, run.batch(idx)) for idx in ordered)  # noqa: E731
    run.strategy.begin_stage(StepContext(stage, 0, total, losses, teacher), batches)
    if step:
        _check_saved_optimizer(run, progress, opt, sched, scaler)
    if step:  # resuming inside this stage
        # the saved tensors are on the CPU; load_state_dict moves the optimiser's moments to
        # each parameter's device, so a run stopped on a GPU may go on on a CPU and back
        opt.load_state_dict(progress["optimizer"]), sched.load_state_dict(progress["scheduler"])
        if progress.get("scaler"):  # fp16's loss scale (absent from older checkpoints)
            scaler.load_state_dict(progress["scaler"])
        runs.set_rng_state(progress["rng"])
    run.log(f"stage {stage.name}: {stage.epochs:g} epochs, {total} steps")
    bar = tqdm(total=total, initial=step, desc=stage.name, disable=run.rank != 0 or None)
    params = [p for g in opt.param_groups for p in g["params"]]
    while step < total:
        epoch, skip = divmod(step, per_epoch)
        order = data.batch_indices(lengths, cfg.batch_size, shuffle=True, seed=cfg.seed + 1000 * s,
                                   epoch=epoch, bucket=cfg.padding == "batch")  # fmt: skip
        for idx in order[: per_epoch * run.world][run.rank :: run.world][skip:]:
            run.model.train(), run.strategy.train()
            with run.autocast:
                batch = run.batch(idx, padding=cfg.padding)
                loss, logs = runner(batch, StepContext(stage, step, total, losses))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # with torchrun, DDP averages the gradients here
            _check_finite(run, stage, step, loss, params, scaler, opt)
            scaler.step(opt), scaler.update(), sched.step()
            step, progress["steps_done"] = step + 1, progress["steps_done"] + 1
            bar.update()
            if step % cfg.log_every == 0 and run.rank == 0:
                bar.write(f"step {step} | loss {loss.item():.4f}"
                          + "".join(f" | {k} {v:.3f}" for k, v in logs.items()))  # fmt: skip
            if _after_step(run, s, stage, step, total, per_epoch, loss, progress, opt, sched,
                           scaler):  # fmt: skip
                bar.close()
                return {**progress, "stopped": True}
            if step == total:
                break
    bar.close()
    return progress


def _check_saved_optimizer(run: Run, progress: dict, opt, sched, scaler) -> None:
    """A run resumed inside a stage: its saved optimiser, schedule and loss scale are built like
    the ones just made (runs.check_like), each moment the shape of its parameter, before they
    are loaded; a crafted trainer state is one message here, not a failure at the next step."""
    params = [p for g in opt.param_groups for p in g["params"]]
    saved, fresh = progress.get("optimizer"), opt.state_dict()
    try:
        if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict):
            raise ValueError("optimizer is not an optimiser's state")
        runs.check_like(saved.get("param_groups"), fresh["param_groups"], "param_groups")
        for group, ours in zip(saved["param_groups"], fresh["param_groups"]):
            if group["params"] != ours["params"]:  # which saved state goes to which parameter
                raise ValueError(f"param_groups number the parameters {group['params'][:8]}")
        for i, moments in saved["state"].items():
            if not (isinstance(i, int) and 0 <= i < len(params)):
                raise ValueError(f"the state of parameter {runs.shown(i):.20}, of {len(params)}")
            like = torch.empty(params[i].shape, dtype=params[i].dtype, device="meta")
            step = torch.empty((), dtype=torch.float32, device="meta")
            runs.check_like(moments, {"step": step, "exp_avg": like, "exp_avg_sq": like},
                            f"optimizer state {i}")  # fmt: skip
        runs.check_like(progress.get("scheduler"), sched.state_dict(), "scheduler")
        if progress.get("scaler"):
            runs.check_like(progress["scaler"], scaler.state_dict(), "scaler")
    except (ValueError, TypeError, AttributeError) as e:
        path = run.dir / "ckpt" / "trainer_state.json"
        raise SystemExit(f"error: {path} is damaged ({e}); resume from another copy") from None


def _after_step(run, s, stage, step, total, per_epoch, loss, progress, opt, sched,
                scaler) -> bool:  # fmt: skip
    """Evaluate, save and stop as the settings ask after a step; True: stop the run here."""
    cfg, end_of_epoch = run.cfg, step % per_epoch == 0 or step == total
    due = step % cfg.eval_every == 0 if cfg.eval_every else end_of_epoch
    if due or step == total:
        res = evaluate(run, run.strategy if stage.skim else None)
        run.log(_eval_line(step, loss.item(), res, stage.name))
        progress["history"].append(
            {
                "stage": stage.name,
                "step": step,
                "kept": res["kept"],
                "metrics": res["metrics"],
                "speedup_none": res["flops"]["none"]["speedup"],
            }
        )
    stop = bool(cfg.stop_after_steps) and progress["steps_done"] == cfg.stop_after_steps
    if end_of_epoch or stop:
        done = step == total
        progress.update(stage=s + done, step=0 if done else step, rng=runs.rng_state(),
                        optimizer=None if done else opt.state_dict(),
                        scheduler=None if done else sched.state_dict(),
                        scaler=None if done else scaler.state_dict())  # fmt: skip
        if run.rank == 0:  # the teacher first: a checkpoint past the stage implies a teacher
            if done and stage.name == "finetune":  # a later stage may learn from it
                folder = run.dir / "finetuned"
                runs.save_checkpoint(folder, run.model, None, run.meta, run.vocab_dir)
            runs.save_checkpoint(run.dir / "ckpt", run.model, run.strategy, run.meta,
                                 run.vocab_dir, progress)  # fmt: skip
    if stop:
        run.log(f"stopped after step {step} (--stop-after-steps); continue with --resume")
    return stop


def _check_finite(run, stage, step, loss, params, scaler, opt) -> None:
    """Stop a diverged run at once, naming the step; nothing is saved or reported after it. On
    the way, clip the gradient norm to --max-grad-norm."""
    bad = "loss" if not torch.isfinite(loss) else None
    if bad is None and scaler.is_enabled():  # fp16: the scaler skips overflowing steps itself
        if run.cfg.max_grad_norm:  # the gradients hold the loss scale: divide it out, then clip
            scaler.unscale_(opt)  # (scaler.step then knows they are unscaled already)
            torch.nn.utils.clip_grad_norm_(params, run.cfg.max_grad_norm)
    elif bad is None:
        norm = torch.nn.utils.clip_grad_norm_(params, run.cfg.max_grad_norm or math.inf)
        bad = "gradient norm" if not torch.isfinite(norm) else None
    if bad:
        raise SystemExit(
            f"error: the {bad} is not finite at step {step + 1} of stage {stage.name}:"
            " training diverged (try a lower --lr); no results were written"
        )


def make_optimizer(run: Run, stage, total_steps: int):
    """AdamW without decay on biases and LayerNorms, each part at its stage's learning rate."""
    groups = []
    for module, lr in ((run.model, stage.encoder_lr), (run.strategy, stage.strategy_lr)):
        module.requires_grad_(lr > 0)
        for decay in (True, False):  # biases and LayerNorm gains are 1-D: no decay
            ps = [p for p in module.parameters() if lr > 0 and (p.ndim >= 2) == decay]
            wd = run.cfg.weight_decay if decay else 0.0
            groups += [{"params": ps, "lr": lr, "weight_decay": wd}] if ps else []
    if not groups:
        raise SystemExit(f"error: stage {stage.name} trains nothing (both learning rates are 0)")
    opt = torch.optim.AdamW(groups)
    warm, total = max(1, int(run.cfg.warmup * total_steps)), total_steps
    # linear warm-up (if any), then linear decay to 0
    rate = lambda s: min((s + 1) / warm if run.cfg.warmup else 1.0,  # noqa: E731
                         max(0.0, (total - s) / max(1, total - warm)))  # fmt: skip
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, rate)


# ----------------------------------------------------------------------------------------------
# Evaluation: the real pruned forward, metrics, FLOPs under three padding settings


@torch.no_grad()
def evaluate(run: Run, strategy) -> dict:
    """Metrics, FLOPs and kept tokens on the dev features, split over processes with torchrun."""
    run.model.eval(), run.strategy.eval()
    feats, task = run.dev_feats, run.task
    rows = []  # (feature index, prediction, tokens per layer, exit layers)
    order = data.batch_indices([len(f) for f in feats], run.cfg.eval_batch_size)
    for idx in tqdm(order[run.rank :: run.world], "eval", leave=False, disable=run.rank or None):
        batch = run.batch(idx, feats)
        with run.autocast:
            out = skim_forward(run.model, strategy, batch, prune=True)
        logits = out.logits.float()
        if task.kind == "span":
            logits = logits.masked_fill(batch["attention_mask"][..., None] == 0, -1e4)
        # to the host once per batch: on a GPU every .cpu() or .tolist() waits for the device
        logits = logits.cpu().numpy()
        tokens, exits = out.tokens_per_layer.tolist(), out.exit_layer.cpu()
        for b, i in enumerate(idx):
            n = len(feats[i])
            pred = logits[b, :n] if task.kind == "span" else logits[b]
            rows.append((i, pred, tokens[b], exits[b, :n].tolist()))
    if run.world > 1:
        gathered = [None] * run.world
        dist.all_gather_object(gathered, rows)
        rows = [r for part in gathered for r in part]
    rows.sort(key=lambda r: r[0])
    # a diverged model answers NaN or ±inf: no metric, speed-up or picture of it is a result (an
    # argmax of NaN logits is class 0, which scored "accuracy 0.505"); every process sees all rows
    broken = sum(not np.isfinite(r[1]).all() for r in rows)
    if broken:
        raise SystemExit(f"error: the model's outputs are not finite on {broken} of {len(rows)} "
                         "dev features: training diverged (try a lower --lr); no results were "
                         "written")  # fmt: skip
    preds, tokens, lengths = [r[1] for r in rows], [r[2] for r in rows], [len(f) for f in feats]
    if task.kind == "span":
        starts, ends = [p[:, 0] for p in preds], [p[:, 1] for p in preds]
        answers = data.squad_predictions(run.dev_ex, feats, starts, ends)
        gold = {e.uid: [a for a, _ in e.answers] for e in run.dev_ex}
        metrics = data.compute_metrics(task, answers, gold)
    else:
        metrics = data.compute_metrics(task, np.stack(preds), np.array([f.label for f in feats]))
    nan = [k for k, v in metrics.items() if k != "main" and not math.isfinite(v)]
    if nan:  # finite outputs, so the labels: e.g. a regression file with "nan" for a score
        raise SystemExit(f"error: the dev metrics {', '.join(nan)} are not finite: check the "
                         f"labels of {task.name}'s dev file; no results were written")  # fmt: skip
    cfg = run.model.bert.config
    speed = flops.dataset_speedups(cfg, lengths, tokens, strategy, run.cfg.max_length,
                                   run.cfg.eval_batch_size)  # fmt: skip
    return {
        "metrics": metrics,
        "num_features": len(rows),
        "kept_per_layer": (np.array(tokens) / np.array(lengths)[:, None]).mean(0).round(4).tolist(),
        "kept": float(np.sum(tokens) / (cfg.num_hidden_layers * np.sum(lengths))),  # token-layers
        "flops": {
            p: {
                "baseline_gflops": s.baseline_gflops,
                "method_gflops": s.method_gflops,
                "baseline_gmacs": s.baseline_gflops / 2,
                "method_gmacs": s.method_gflops / 2,
                "speedup": s.speedup,
            }
            for p, s in speed.items()
        },  # fmt: skip
        "exit_layers": [r[3] for r in rows[: run.cfg.case_study]],
        **_keywords_kept(feats, [r[3] for r in rows], cfg.num_hidden_layers),
    }


def _keywords_kept(feats, exits: list[list[int]], num_layers: int) -> dict:
    """On the synthetic tasks, where the words that decide the label are known: the share of
    them that each layer still processed (a random skim keeps them as often as any token; a
    method that learned keeps them more). Nothing for other tasks."""
    if not feats or feats[0].keyword_mask is None:
        return {}
    marks = [np.asarray(f.keyword_mask, bool) for f in feats]
    total = max(1, sum(int(m.sum()) for m in marks))
    kept = [
        sum(int((np.asarray(e) > i)[m].sum()) for m, e in zip(marks, exits)) / total
        for i in range(num_layers)
    ]
    return {"keywords_kept_per_layer": [round(k, 4) for k in kept]}


def _eval_line(step, loss, res, stage) -> str:
    metrics = " | ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items() if k != "main")
    none = res["flops"]["none"]
    return (f"[{stage}] step {step} | loss {loss:.4f} | {metrics} | kept {res['kept']:.3f} | "
            f"speedup {none['speedup']:.2f}x | GFLOPs {none['method_gflops']:.3f}")  # fmt: skip


def finish(run: Run, started: float, extra: dict, eval_only: bool = False) -> dict:
    """Final evaluation: results.json and the pictures (eval.json alone after --eval-only)."""
    res = evaluate(run, run.strategy)
    cases = report.case_study_rows(run.dev_feats, res.pop("exit_layers"), run.tokenizer)
    wall = round(time.time() - started, 1)
    results = {"method": run.cfg.method, "task": run.task.name, **res, "case_study": cases,
               "wall_time_s": wall, "config": run.meta, "versions": _versions(),
               **extra}  # fmt: skip
    if run.rank == 0:
        name = "eval.json" if eval_only else "results.json"
        try:
            atomic_write(run.dir / name, json.dumps(results, indent=2).encode())
            if not eval_only:
                report.write(run.dir, results)
        except OSError as e:  # e.g. a folder where the file goes; no temporary is left
            raise SystemExit(f"error: cannot write {run.dir / name} or its pictures: {e}") from None
    metrics = " | ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items() if k != "main")
    f = res["flops"]
    line = (f"final | {metrics} | kept {res['kept']:.3f} | speedup {f['none']['speedup']:.2f}x "
            f"(sequence padding {f['sequence']['speedup']:.2f}x) | GFLOPs "
            f"{f['none']['method_gflops']:.4f} | wall {wall}s | {runs.shown(run.dir)}")  # fmt: skip
    run.log(line)
    return results


def _versions() -> dict:
    git = ["git", "rev-parse", "HEAD"]
    try:
        commit = subprocess.run(git, capture_output=True, text=True, cwd=Path(__file__).parent)
    except OSError:
        commit = None
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "platform": platform.platform(),
            "cpu_threads": torch.get_num_threads(), "commit": commit and commit.stdout.strip(),
            "cuda": torch.cuda.is_available() and torch.cuda.get_device_name()}  # fmt: skip


@contextlib.contextmanager
def _folder(run_dir: Path):
    """The run folder, created if missing; removed again if this command fails leaving it empty
    (a mistyped flag leaves no empty folder behind)."""
    created = not os.path.lexists(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"error: cannot write to --out-dir {run_dir}: {e}") from None
    ok = False
    try:
        yield run_dir
        ok = True
    finally:
        if created and not ok and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()


class _Logger:
    """Print (rank 0) and append to the run's log.txt (not for --eval-only: the record stays)."""

    def __init__(self, path: Path, show: bool, write: bool):
        self.path, self.show, self.write = path, show, write

    def __call__(self, line: str):
        if self.show:
            tqdm.write(line)
        if self.write:  # never through a symbolic link planted as log.txt
            try:
                append_line(self.path, line)
            except OSError as e:
                raise SystemExit(f"error: cannot append to {self.path}: {e}") from None


def main(argv: list[str] | None = None) -> dict:
    cfg, method, options = parse_config(argv)
    threads = torch.get_num_threads()
    try:
        if int(os.environ.get("RANK", "0")):  # torchrun: rank 0 holds the folder's lock
            return train(cfg, method, options)
        with _folder(Path(cfg.out_dir)) as run_dir:
            command = " ".join(["train.py", *(sys.argv[1:] if argv is None else argv)])
            with runs.locked(run_dir, command):
                return train(cfg, method, options)
    finally:
        torch.set_num_threads(threads)  # --threads is this run's setting, not the caller's
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
