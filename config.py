"""A run's settings: TrainConfig, the presets, the command line, and where each value comes from.

Where a setting comes from, later sources winning (each source is written in one place):

  1. the field's default in TrainConfig below (a method's own settings: its `Options` dataclass)
  2. the method's `train_defaults` (e.g. TR-BERT: its authors' optimiser, rl_policy.py)
  3. the preset, --preset NAME (PRESETS below)
  4. a flag on the command line
  5. for what is still None after 1-4, the task's default: --epochs 3 (5 for MRPC and WNLI),
     --max-length from Transkimmer Table 2 (data.TASKS), --out-dir runs/<task>-<method>
  6. with --resume or --eval-only: the run's saved config.json replaces 1-3 and 5; a flag may
     differ from it only where MAY_CHANGE allows, and SAME_NUMBERS only with --eval-only

`parse_config` does 1-4, 6 and --out-dir's default; `check` fills in the task's other defaults
and refuses every problem before work starts.
The flags are made from the fields (`add_fields`): the dataclass is the only place a default is
written. Tests: tests/test_train.py, tests/test_faults.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

import data
import runs


def _f(default, help):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every setting of a run but the method's own. None means "the task's default"."""

    method: str = _f("baseline", f"a built-in method ({', '.join(runs.METHODS)}), "
                     "path/to/file.py:Class or module:Class")  # fmt: skip
    task: str = _f("sst2", "task name: " + " ".join(data.TASKS))
    model: str = _f("bert-base-uncased", "hub name, local folder, or random-<CONFIGS shape>")
    data_dir: str | None = _f(None, "folder with the task's files (else the cache, else download)")
    out_dir: str | None = _f(None, "run folder (default runs/<task>-<method>)")
    overwrite: bool = _f(False, "replace the run already in --out-dir")
    preset: str | None = _f(None, "smoke (tiny model, synthetic task, ~1 min on a CPU), hard or "
                             "negation (config.PRESETS)")  # fmt: skip
    max_length: int | None = _f(None, "tokens per input (default: the task's, Transkimmer Table 2)")
    train_subset: int = _f(0, "train on the first N examples of a fixed shuffle (0 = all)")
    eval_subset: int = _f(0, "evaluate on the first N dev examples (0 = all)")
    word_roles: int = _f(0, "synthetic task: deal its words out again, seeded by N, so that "
                         "other words decide (0 = the published keywords)")  # fmt: skip
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
            ("epochs", self.epochs is None or 0 < self.epochs <= 10**4, "positive, at most 10000"),
            ("max_length", self.max_length is None or self.max_length >= 3, "≥ 3"),
            ("weight_decay", 0 <= self.weight_decay < inf, "≥ 0 and finite"),
            ("warmup", 0 <= self.warmup < 1, "a share of the steps in [0, 1)"),
            ("max_grad_norm", 0 <= self.max_grad_norm < inf, "≥ 0 and finite (0 = no clipping)"),
            ("seed", 0 <= self.seed < 2**32, "in 0 .. 4294967295 (numpy's seeds are 32-bit)"),
            ("train_subset", self.train_subset >= 0, "≥ 0"),
            ("eval_subset", self.eval_subset >= 0, "≥ 0"),
            ("word_roles", 0 <= self.word_roles < 2**31, "in 0 .. 2147483647 (0 = published)"),
            ("log_every", self.log_every >= 1, "≥ 1"),
            ("threads", self.threads >= 0, "≥ 0 (0 = torch's default)"),
            ("threads", self.threads <= MAX_THREADS, f"at most {MAX_THREADS}, on any machine"),
            ("eval_every", self.eval_every >= 0, "≥ 0"),
            ("stop_after_steps", self.stop_after_steps >= 0, "≥ 0"),
            ("case_study", self.case_study >= 0, "≥ 0"),
            ("padding", self.padding in ("batch", "sequence"), "batch or sequence"),
            ("precision", self.precision in ("fp32", "bf16", "fp16"), "fp32, bf16 or fp16"),
            ("device", device in ("auto", "cpu", "cuda") or _index(device), "auto, cpu, cuda:N"),
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


def _index(text: str) -> bool:
    """Whether `text` is a GPU's index, digits 0-9 only: '¹'.isdigit() and '٣'.isdigit() are
    True too, and int() then fails on the first (or reads the second as 3)."""
    return text.isascii() and text.isdigit()


# the most CPU threads a run may ask for, a resumed one too (a run keeps its --threads wherever
# it goes on: a machine with fewer CPUs is slower, not refused; a crafted 2**40 is refused)
MAX_THREADS = 1024
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
COMMANDS = {"resume", "eval_only"}  # chosen on the command line only: never read from a folder
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
        text = f.metadata.get("help", f"{cls.__name__}.{f.name}") + default  # skim.option's
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


def _held(run_dir: Path) -> str:
    """What to do about a run already in --out-dir: resume it, unless it stopped before its
    first checkpoint (a crash at step 1, a method that failed to build): then nothing is left
    to resume, and the log says why it stopped."""
    if runs.checkpoint_folder(run_dir / "ckpt") is not None:
        return (f"{run_dir} already holds a run: choose another --out-dir, continue it with "
                "--resume, or replace it with --overwrite")  # fmt: skip
    return (f"{run_dir} holds a run that stopped before its first checkpoint, so there is "
            f"nothing to resume (why it stopped: the end of {run_dir / 'log.txt'}): start it "
            "again with --overwrite, or choose another --out-dir")  # fmt: skip


def parse_config(argv: list[str] | None = None):
    """Command line -> (TrainConfig, method class, its options), each value from the first of:
    a flag; with --resume or --eval-only, the run's saved config.json (flags that contradict it
    are an error); else the preset, the method's train_defaults, the dataclass default (the
    module docstring lists all six sources; the task's defaults come later, in `check`)."""
    argv = sys.argv[1:] if argv is None else argv
    first = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    add_fields(first, TrainConfig)
    given = vars(first.parse_known_args(argv)[0])  # the flags given, before the method is known
    if (given.get("resume") or given.get("eval_only")) and "out_dir" not in given:
        given["out_dir"] = default_out_dir(given)  # where these flags' new run would be
        argv = [*argv, "--out-dir", given["out_dir"]]
        print(f"--out-dir not given: the run of these flags, {given['out_dir']}", file=sys.stderr)
    saved = _saved_run(given)
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
    given = vars(method_parser(spec, method).parse_args(argv))  # every flag, the method's too
    if "method" in given:
        given["method"] = saved["method"] if saved else runs.method_spec(given["method"])
    values = _saved_values(saved, given, method) if saved else _fresh_values(spec, method, given)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in values.items() if k in names})
    if saved is None and cfg.out_dir is None:
        cfg.out_dir = default_out_dir({**values, "method": spec})
    # a resumed run keeps its record; an evaluation names the code that ran (a copy of the file)
    cfg.method = saved["method"] if saved and not cfg.eval_only else runs.method_spec(spec)
    try:
        return cfg, method, runs.make_options(method, values)
    except (AssertionError, ValueError, TypeError) as e:
        raise SystemExit(f"error: {method.__name__} options: {e}") from None


def default_out_dir(values: dict) -> str:
    """A run's folder when --out-dir is not given: runs/<task>-<method's class, lower case>, the
    task from the flags, else the preset (the method's train_defaults count for a new run)."""
    task = values.get("task") or PRESETS.get(values.get("preset"), {}).get("task")
    spec = values.get("method", TrainConfig.method)
    return f"runs/{_known_task(task or TrainConfig.task).name}-{spec.rpartition(':')[2].lower()}"


def _saved_run(given: dict) -> dict | None:
    """The saved settings of the run in --out-dir, for --resume and --eval-only (else None)."""
    if given.get("out_dir") is not None and not given["out_dir"].strip():
        raise SystemExit("error: --out-dir '' names no folder: give the run's folder")
    if not (given.get("resume") or given.get("eval_only")):
        return None
    return runs.read_run_config(Path(given["out_dir"]))


def _fresh_values(spec: str, method, given: dict) -> dict:
    """A new run's values: the method's train_defaults, then the preset, then the flags (the
    dataclass defaults fill the rest)."""
    method_defaults = dict(getattr(method, "train_defaults", None) or {})
    unknown = set(method_defaults) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise SystemExit(f"error: {spec}.train_defaults names no train.py setting: "
                         f"{sorted(unknown)} (see config.TrainConfig)")  # fmt: skip
    return {**method_defaults, **PRESETS.get(given.get("preset"), {}), **given}


def _saved_values(saved: dict, given: dict, method) -> dict:
    """A saved run's values (--resume, --eval-only): its config.json, then the flags that may
    change it (MAY_CHANGE; SAME_NUMBERS only with --eval-only); any other flag is an error."""
    check_saved(saved, method, _config_path(given))
    # what this command does is the command line's choice, never the folder's: a config.json
    # saying "eval_only": true must not turn --resume into an evaluation
    train = {k: v for k, v in saved["train"].items() if k not in COMMANDS}
    values = {**train, **(saved.get("options") or {})}
    changed = [k for k, v in given.items() if _differs(values.get(k), v)]
    flags = lambda keys: ", ".join("--" + k.replace("_", "-") for k in keys)  # noqa: E731
    if fixed := [k for k in changed if k not in MAY_CHANGE]:
        was = ", ".join(f"--{k.replace('_', '-')} {runs.shown(values.get(k)):.40}" for k in fixed)
        one = len(fixed) == 1
        raise SystemExit(f"error: {flags(fixed)} {'contradicts' if one else 'contradict'} the "
                         f"run saved in {given['out_dir']}, which has {was}: drop "
                         f"{'it' if one else 'them'}, or start a new run")  # fmt: skip
    numbers = [k for k in changed if k in SAME_NUMBERS]
    if numbers and not given.get("eval_only"):
        was = ", ".join(f"{k.replace('_', '-')} {values.get(k)}" for k in numbers)
        raise SystemExit(f"error: {flags(numbers)} would change the numbers of the run in "
                         f"{given['out_dir']}: --resume continues with its own ({was}); "
                         "drop the flag, or start a new run")  # fmt: skip
    return {**values, **given}


def _config_path(given: dict) -> Path:
    return Path(given["out_dir"]) / "config.json"


def check_saved(saved: dict, method, path: Path) -> None:
    """A run's saved settings (config.json, maybe crafted) before they are used: every value of
    the type its flag takes, and within what the flag allows; else one line naming the file."""
    for values, cls in ((saved["train"], TrainConfig), (saved["options"] or {}, method.Options)):
        for f in dataclasses.fields(cls) if cls else ():
            if f.name in values and not _json_fits(values[f.name], f.type):
                big = isinstance(values[f.name], int) and abs(values[f.name]) >= 2**63
                raise SystemExit(
                    f"error: {path}: {f.name} is {runs.shown(values[f.name]):.60}, not "
                    f"{f.type}{' (it is past 64 bits)' if big else ''}; the file is damaged "
                    "(give the run's own config.json)"
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
    ...]", ...). An int is a float too, as in JSON, if a float holds it (10**400 is no float);
    an int field holds a 64-bit integer; a bool is neither."""
    kinds = str(annotation).replace(" ", "").split("|")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and isinstance(value, int):  # JSON's integers have no bound: ours do
        number = abs(value) < 2**63
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
    about = (
        f"Train and evaluate a skim method: a built-in one ({', '.join(runs.METHODS)}), or "
        "yours, path/to/file.py:Class or module:Class (its own flags: --method NAME --help). "
        "A setting is, the later winning: its default, the method's train_defaults, the "
        "preset's, the flag's; --resume and --eval-only take the run's (config.py)."
    )
    parser = argparse.ArgumentParser(description=about, argument_default=argparse.SUPPRESS)
    add_fields(parser.add_argument_group("run"), TrainConfig)
    if method.Options is not None and not dataclasses.is_dataclass(method.Options):
        raise SystemExit(f"error: {spec}.Options is not a dataclass: write @dataclass above it, "
                         "with a field per option (skim.option gives each its help)")  # fmt: skip
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


def _finetuned_problems(run: Path) -> list[str]:
    """--finetuned RUN is a finished baseline run: not one a live process still writes (its
    checkpoint would change under this run), nor one stopped before its end (no results.json),
    nor a run of another method (its own tensors are no part of the model started from)."""
    writer = runs.writer_of(run)
    if writer:
        return [f"--finetuned {runs.shown(run)} is still being written by {writer}: wait for it "
                "to finish"]  # fmt: skip
    if not os.path.lexists(run / "results.json"):
        return [f"--finetuned {runs.shown(run)} has not finished (no results.json): finish it "
                "with --resume first"]  # fmt: skip
    method = runs.read_run_config(run)["method"]
    if method != "baseline":
        return [f"--finetuned {runs.shown(run)} is a {runs.shown(method)} run, not a baseline: "
                "give the folder of a finished --method baseline run"]  # fmt: skip
    return []


def _too_many_threads(cfg: TrainConfig, cpus: int) -> str:
    """What to say of --threads past the CPUs here: of the flag, or (--eval-only without the
    flag) of the run's config.json, which the user never typed."""
    path = Path(cfg.out_dir) / "config.json"
    saved = runs.read_run_config(path.parent)["train"] if cfg.eval_only else {}
    if saved.get("threads") == cfg.threads:
        return (f"{path} asks for {cfg.threads} threads, more than the {cpus} CPUs here: "
                f"evaluate it with --threads {cpus} (or 0 for torch's default)")  # fmt: skip
    return (f"--threads {cfg.threads} exceeds the {cpus} CPUs here: give at most {cpus}, or 0 "
            "for torch's default")  # fmt: skip


def check(cfg: TrainConfig) -> TrainConfig:
    """The task's defaults filled in, and every problem with the settings, before work starts."""
    task = _known_task(cfg.task)
    # None alone means "the task's": a 0 is refused below, never replaced by the default
    if cfg.epochs is None:
        cfg = dataclasses.replace(cfg, epochs=5.0 if task.name in ("mrpc", "wnli") else 3.0)
    if cfg.max_length is None:
        cfg = dataclasses.replace(cfg, max_length=task.max_length)
    problems, cuda, run_dir = cfg.problems(), torch.cuda.is_available(), Path(cfg.out_dir)
    # the run folders this command reads, checked as data first (runs.check_folder): a ckpt/
    # that is a link to another run is refused as one, never followed nor taken for no ckpt/
    for folder in (cfg.finetuned, cfg.out_dir if cfg.resume or cfg.eval_only else None):
        if folder:
            runs.check_folder(Path(folder))
    if cfg.word_roles and task.name != "synthetic":
        problems.append(f"--word-roles deals out the words of the synthetic task, not of "
                        f"{task.name}: drop it, or use --task synthetic")  # fmt: skip
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cfg.threads > cpus and not cfg.resume:  # (a resumed run keeps its own: slower, no crash)
        problems.append(_too_many_threads(cfg, cpus))
    index = cfg.device.removeprefix("cuda:")
    if cuda and _index(index) and int(index) >= torch.cuda.device_count():
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
    elif cfg.finetuned:
        problems += _finetuned_problems(Path(cfg.finetuned))
    if cfg.resume and runs.checkpoint_folder(run_dir / "ckpt") is None:
        problems.append(f"--resume: no checkpoint in {run_dir / 'ckpt'}")
    if cfg.eval_only and runs.checkpoint_folder(run_dir / "ckpt") is None:
        problems.append(f"--eval-only: no checkpoint in {run_dir / 'ckpt'} (did the run finish?)")
    if not (cfg.resume or cfg.eval_only or cfg.overwrite) and runs.holds_a_run(run_dir):
        problems.append(_held(run_dir))
    if problems:
        raise SystemExit("error: " + "; ".join(problems))
    return cfg
