"""Run folders and methods: which method a run used, and how its folder is written and read.

A run folder (train.py --out-dir) holds only data, never code, and is read as hostile input, so
a run folder someone sends you is safe to evaluate or resume:
  * nothing here unpickles anything, and no code is loaded because a folder names it: its
    config.json's method is loaded only if built in (METHODS); a file or module method only
    when the user names it again (--method), and it must be the one recorded (method_of_run);
  * every reader checks the folder first (check_folder: --eval-only, --resume, --finetuned,
    load_run for bench.py); only regular files are read (no symbolic link followed, no FIFO or
    device waited on), JSON capped at 64 MB, and a checkpoint's config.json is compared with
    its weights' header, and its size capped, before any tensor is built, as is the method's
    (checked_model_config, build_strategy, load_checkpoint);
  * every fault of a file is one line naming it (a crafted trainer state too: check_progress,
    check_like), never a traceback;
  * one writer at a time: a command writing the folder holds RUN/.lock (locked).

    config.json        the run's settings: "train" (config.TrainConfig), "method" (its name or
                       file.py:Class) and "options" (the method's Options), written before training
    log.txt            every line train.py printed
    results.json       the final evaluation (metrics, kept tokens, FLOPs), history, versions
    eval.json          the last --eval-only evaluation (results.json is never touched by it)
    kept_tokens.svg, case_study.html    pictures of the final evaluation (report.py)
    ckpt/              a Hugging Face-style folder: config.json, model.safetensors, vocab.txt,
                       trainer_state.json + trainer_state.safetensors (optimiser, RNG: --resume)
    finetuned/         the model after a stage that saves_teacher (skim.Stage), for later stages

Every file is written to a temporary name and renamed (a link in its place is replaced, never
written through): a kill at any moment leaves either the old or the new version.
train.py's housekeeping lives here too: the folder made ready (created, prepare, check_folder,
clear), its log (RunLog), its model and method built (build_model, build_strategy) and its
trainer state checked (check_progress, check_optimizer_state), so train.py shows the loop.
Tests: tests/test_train.py, tests/test_faults.py, tests/test_folder_faults.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import importlib.util
import inspect
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import report
from skim import SkimStrategy
from transformer import CONFIGS, BertConfig, BertForTask, BertModel
from weights import (
    MAX_HEADER_BYTES,
    MAX_PARAMETERS,
    CheckpointError,
    append_line,
    atomic_write,
    file_sha256,
    is_run_folder,
    load_encoder_weights,
    read_checkpoint,
    read_config,
    read_file,
    read_json,
    read_safetensors,
    read_safetensors_header,
    released_name,
    resolve_model_dir,
    tensor_budget,
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
    before = fingerprint()
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
    changed = rebound(before)
    if changed:
        raise ValueError(f"method {spec!r}: {REBOUND.format(changed[0])}")
    cls = getattr(module, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, SkimStrategy)):
        raise ValueError(
            f"method {spec!r}: {where} has no class {name!r} that subclasses skim.SkimStrategy"
        )
    return cls


# A method's code runs in the process that trains and measures it: it could rebind the function
# that counts the keywords it kept, or torch.allclose, and report what it likes. This does not
# stop code written to get around it (Python is no sandbox; a method is one short file to read),
# but it refuses the plain way: rebinding a function of the project's modules, of builtins or of
# torch. Checked when a method's file is imported (load_method), and before the final evaluation
# (train.finish) against the names as they were when the method was built (build_strategy).
GUARDED = ("__main__", "config", "data", "evaluation", "flops", "ltp", "metrics", "report",
           "rl_policy", "runs", "skim", "synthetic", "transformer", "weights")  # fmt: skip
REBOUND = ("it rebinds {}: a method may not change the project's code or the libraries it calls "
           "(put what it needs in its own file, under names of its own)")  # fmt: skip
AT_BUILD: dict = {}  # the fingerprint taken as the last method was built (build_strategy)


def fingerprint() -> dict:
    """Each function and class of the project's modules, builtins, json, numpy and torch (its
    functions, torch.nn.functional, and every attribute a tensor finds, inherited ones too), by
    name -> the object (and a Python function's code and defaults)."""
    import builtins

    import torch.nn.functional

    spaces = [sys.modules[n] for n in GUARDED if n in sys.modules]
    spaces += [builtins, json, np, torch, torch.nn.functional]
    taken = {
        (space.__name__, name): (value, *_insides(value))
        for space in spaces
        for name, value in list(vars(space).items())
        if callable(value)
    }
    for name in dir(torch.Tensor):  # inherited methods (sum, item, ...) live on its base class
        taken[("torch.Tensor", name)] = (inspect.getattr_static(torch.Tensor, name),)
    return taken


def _insides(value) -> tuple:
    """A Python function's code and defaults: swapping them changes the function in place."""
    if inspect.isfunction(value):
        return value.__code__, value.__defaults__, value.__kwdefaults__
    return ()


def rebound(before: dict) -> list[str]:
    """The names of `before` (a fingerprint) bound now to another object, or to a function whose
    code or defaults were swapped. torch's own wrapper around the same function does not count:
    torch wraps some as it loads its parts (torch._dynamo wraps torch.manual_seed)."""
    now = fingerprint()
    changed = []
    for key, was in before.items():
        found = now.get(key, was)
        if len(found) == len(was) and all(a is b for a, b in zip(found, was)):
            continue
        try:
            wrapped = _from_torch(found[0]) and inspect.unwrap(found[0]) is was[0]
        except Exception:  # a __wrapped__ that loops or raises
            wrapped = False
        if not wrapped:
            changed.append(".".join(key))
    return changed


def _from_torch(function) -> bool:
    """Was `function` written in torch's own files (torch._dynamo's wrappers are)?"""
    code = getattr(function, "__code__", None)
    home = str(Path(torch.__file__).parent) + os.sep
    return code is not None and code.co_filename.startswith(home)


def refuse_rebound(spec: str) -> None:
    """Stop, if a function was rebound since the method was built."""
    changed = rebound(AT_BUILD)
    if changed:
        raise SystemExit(f"error: while {shown(spec)} trained, {REBOUND.format(changed[0])}")


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


def method_of_run(recorded, named: str | None, config: Path) -> str:
    """Which method to load for a run folder whose `config` records `recorded`: a built-in name
    as it is; a file or a module only when the user names it again (`named`, --method), since a
    folder must never choose the code that runs (a folder someone sends may ship its own .py).
    `named` must be the method recorded: the same built-in, or the same class in a file of the
    same name (the folder may come from another machine) or in the same module."""
    if not isinstance(recorded, str) or not recorded:
        raise ValueError(f'{config}: "method" is {recorded!r:.80}, not a method name')
    if named is None:
        if recorded in METHODS:
            return recorded
        if ":" not in recorded:  # neither built in nor file.py:Class or module:Class
            close = difflib.get_close_matches(recorded, METHODS, n=3) or list(METHODS)
            raise ValueError(
                f"{config} records the method {shown(recorded)}, which is not built in (the "
                f"nearest: {', '.join(close)}); the file is damaged, or from another version"
            )
        raise ValueError(
            f"{config} records the method {shown(recorded)}, a file or module: code is never "
            f"loaded from what a run folder names; if you trust it, name it: --method "
            f"{shown(recorded)}"
        )
    ours, theirs = method_spec(named), recorded
    if ours in METHODS or theirs in METHODS:
        same = ours == theirs
    else:  # file.py:Class or module:Class: the file's name (not its folder) and the class
        (a, _, x), (b, _, y) = ours.rpartition(":"), theirs.rpartition(":")
        same = x == y and (Path(a).name == Path(b).name if a.endswith(".py") else a == b)
    if not same:
        raise ValueError(
            f"--method contradicts the run saved in {config.parent}: it records "
            f"{shown(recorded)}, not {shown(named)}; name that method"
            + (" (or none: it is built in)" if recorded in METHODS else "")
        )
    return named


def shown(value) -> str:
    """A value from a file, fit for one line of a message or log: as it is when printable,
    else quoted with its newlines and control characters escaped (no forged log lines)."""
    text = value if isinstance(value, str) else str(value)
    return text if text.isprintable() else repr(text)


# ----------------------------------------------------------------------------------------------
# The lock: one writer per run folder

LOCK = ".lock"  # RUN/.lock: {"pid", "host", "command", "since"} of the process writing RUN


@contextlib.contextmanager
def locked(run_dir: Path, command: str, log: Path | None = None):
    """Hold RUN/.lock while this process writes the run folder: created with O_EXCL, so of two
    processes only one gets it; a second writer (a fresh run, --overwrite, --resume, --eval-only)
    is refused with a message naming the holder. A lock whose process is gone (same host, pid
    no longer running) is stale and taken over. Removed on exit, if still ours. A command failing
    after writing to `log` (log.txt) says why there; one refused before leaves it alone.
    What it does not catch: two processes that find the same stale lock at the same instant may
    both take it over, and a stale lock whose pid the OS has given to another process is taken
    for a live one (the message says which file to delete)."""
    path = Path(run_dir) / LOCK
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for attempt in range(2):
        try:
            fd = os.open(path, flags, 0o644)
            break
        except FileExistsError:
            holder = _lock_holder(path)
            if attempt == 0 and holder and holder["host"] == mine["host"]:
                if not _running(holder["pid"]):  # stale: left by a killed process
                    path.unlink(missing_ok=True)
                    continue
            who = "an unknown process (the lock file is not one this project wrote)"
            if holder:
                who = (f"pid {holder['pid']} on {shown(holder['host'])} since "
                       f"{shown(holder['since'])} ({shown(holder['command']):.200})")  # fmt: skip
            raise SystemExit(
                f"error: {run_dir} is being written by {who}; wait for it to end, or delete "
                f"{path} if that process is gone"
            ) from None
        except OSError as e:
            raise SystemExit(f"error: cannot write to {run_dir}: {e}") from None
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(mine, f)
    except OSError as e:  # a full disk: no empty lock left to refuse every later writer
        path.unlink(missing_ok=True)
        raise SystemExit(f"error: cannot write to {run_dir}: {e}") from None
    start = _size(log)
    try:
        yield
    except (Exception, SystemExit, KeyboardInterrupt) as e:
        if _size(log) > start and getattr(e, "code", 1) not in (0, None):  # this command's log
            _log_ending(log, e)
        _unwritten(e, run_dir)
        raise
    finally:
        if _lock_holder(path) == mine:
            path.unlink(missing_ok=True)


def _unwritten(error: BaseException, run_dir: Path) -> None:
    """A student copy's stub (make_student.py: "Assignment N: write f, see ...") as one line
    naming the assignment, not a traceback through the loop."""
    if isinstance(error, NotImplementedError) and str(error).startswith("Assignment "):
        raise SystemExit(
            f"error: {error}; this command needs it. Then run the command again, with "
            f"--overwrite (this one left {run_dir} behind)"
        ) from None


def writer_of(run_dir: Path) -> str | None:
    """Who holds RUN/.lock, if another live process on this host does (else None): its pid and
    command. (This process holds it when it writes RUN itself.)"""
    holder = _lock_holder(Path(run_dir) / LOCK)
    if holder is None or holder["host"] != socket.gethostname() or not _running(holder["pid"]):
        return None
    if holder["pid"] == os.getpid():
        return None
    return f"pid {holder['pid']} ({shown(holder['command']):.200})"


def _size(log: Path | None) -> int:
    return os.lstat(log).st_size if log is not None and os.path.lexists(log) else 0


def _log_ending(log: Path, error: BaseException) -> None:
    """The end of a failed command, appended to the run's log: the error's message, the whole
    traceback of a crash (in a method's own code, say), or the Ctrl-C that stopped it."""
    if isinstance(error, KeyboardInterrupt):
        text = "stopped by Ctrl-C; continue with --resume"
    elif isinstance(error, SystemExit):  # a message, or an exit status from a method's code
        text = error.code if isinstance(error.code, str) else f"exited with status {error.code}"
    else:
        text = "".join(traceback.format_exception(error)).rstrip()
    try:
        append_line(log, text)
    except OSError:  # the log is a record, not the run: its own failure must not hide the error
        pass


def _lock_holder(path: Path) -> dict | None:
    """What a lock file says, if it is one this project wrote (else None)."""
    try:
        holder = read_json(path, limit=1 << 16)
    except (OSError, CheckpointError):
        return None
    keys = {"pid": int, "host": str, "command": str, "since": str}
    ok = isinstance(holder, dict) and all(isinstance(holder.get(k), t) for k, t in keys.items())
    return holder if ok and not isinstance(holder["pid"], bool) and holder["pid"] > 0 else None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):  # no such process; a pid past any the OS has
        return False
    except PermissionError:  # another user's process
        return True
    return True


# ----------------------------------------------------------------------------------------------
# The folder itself: what a run writes there, and what train.py checks before it writes

RUN_FILES = ("config.json", "log.txt", "results.json", "eval.json", "kept_tokens.svg",
             "case_study.html")  # fmt: skip
RUN_FOLDERS = ("ckpt", "ckpt.old", "ckpt.tmp", "finetuned", "finetuned.old", "finetuned.tmp",
               "vocab")  # fmt: skip


@contextlib.contextmanager
def created(run_dir: Path):
    """The run folder, created if missing; removed again if this command fails leaving it empty
    (a mistyped flag leaves no empty folder behind)."""
    new = not os.path.lexists(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"error: cannot write to --out-dir {run_dir}: {e}") from None
    ok = False
    try:
        yield run_dir
        ok = True
    finally:
        if new and not ok and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()


def prepare(run_dir: Path, meta: dict, fresh: bool, overwrite: dict | None, writer: bool) -> None:
    """Make `run_dir` ready for this command. fresh: a new run (not --resume or --eval-only),
    whose config.json (`meta`) is written now, before training; overwrite: with --overwrite,
    the paths this command reads, by setting (a run there is removed, never one of them);
    writer: this process writes (rank 0 with torchrun)."""
    try:
        if overwrite is not None and fresh and writer:
            check_overwrite(run_dir, overwrite)
            clear(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        check_folder(run_dir)
        if writer and fresh:
            atomic_write(run_dir / "config.json", json.dumps(meta, indent=2).encode())
    except OSError as e:
        raise SystemExit(f"error: cannot write to --out-dir {run_dir}: {e}") from None


def holds_a_run(run_dir: Path) -> bool:
    return any(os.path.lexists(run_dir / n) for n in (*RUN_FILES, *RUN_FOLDERS))


def clear(run_dir: Path) -> None:
    """--overwrite: remove what a run writes, and nothing else the folder may hold. A symbolic
    link among them is removed itself; what it points to is left alone."""
    for name in (*RUN_FILES, *RUN_FOLDERS):
        remove(run_dir / name)


def check_overwrite(out_dir: Path, reads: dict) -> None:
    """--overwrite deletes a run folder: never one this command reads (`reads`, by setting:
    --finetuned, --model, --data-dir, a method's option naming a folder such as
    --keep-shares-from), nor a folder inside or around one of them."""
    run_dir = Path(out_dir).expanduser().resolve()
    for name, value in reads.items():
        if not isinstance(value, str) or not value or not Path(value).expanduser().exists():
            continue
        other = Path(value).expanduser().resolve()
        if other == run_dir or run_dir in other.parents or other in run_dir.parents:
            raise SystemExit(
                f"error: --overwrite would delete {out_dir}, and --{name.replace('_', '-')} "
                f"reads {value} (the same folder, or one inside the other): choose another "
                "--out-dir"
            )


def check_folder(run_dir: Path) -> None:
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
                raise SystemExit(  # the name quoted: a file named "x\nfinal | ..." forges no line
                    f"error: {shown(p)} is {_kind(mode)}; a run folder holds only the regular "
                    "files and folders train.py writes (remove it, or give a fresh --out-dir)"
                )
            if p.name == "vocab.txt" and p.lstat().st_size > 64 << 20:  # read whole: data.py
                raise SystemExit(f"error: {shown(p)} is over 64 MB, not a vocabulary; the run is "
                                 "damaged")  # fmt: skip


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


# ----------------------------------------------------------------------------------------------
# Checkpoints: a Hugging Face-style folder, written atomically


def save_checkpoint(folder: Path, model, strategy, meta: dict, tokenizer, state=None):
    """folder/ = config.json + model.safetensors + vocab.txt (+ trainer_state.*). Encoder tensors
    carry their released names under `bert.` (so transformers can read the folder), the head is
    `classifier` or `qa_outputs`, the strategy's tensors `<strategy.checkpoint_prefix>.*`.
    meta: what the run records (method, options, train config) under config.json's "skimbert".
    tokenizer: the run's tokenizer files as tokenizer_of read them, {name: bytes}, written from
    memory: the folder they came from may be gone by now (a run resumed from ckpt.old deletes it
    at its first save), and a checkpoint without vocab.txt cannot be evaluated. (A folder
    instead saves a model alone, with the tokenizer files the folder holds, if any: tests.)
    Written into folder.tmp/ and swapped in by renames: an interruption never leaves half a
    checkpoint (load_checkpoint falls back to folder.old/ if it came between the two renames)."""
    final, tmp = Path(folder), Path(str(folder) + ".tmp")
    old = Path(str(folder) + ".old")
    if not isinstance(tokenizer, dict):  # a folder (tests)
        tokenizer = tokenizer_files(tokenizer, required=False)
    elif "vocab.txt" not in tokenizer:  # never a checkpoint that cannot be evaluated
        raise SystemExit(f"error: cannot write the checkpoint {final}: no vocab.txt to put in it")
    remove(tmp)
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
        for name, data in tokenizer.items():  # the folder feeds load_tokenizer too
            atomic_write(tmp / name, data)
        if state is not None:  # tied to the weights beside it (load_checkpoint, check_progress)
            digest = file_sha256(tmp / "model.safetensors")
            write_trainer_state(tmp, {**state, "weights_sha256": digest})
    except OSError as e:
        remove(tmp)  # a full disk must not leave a half-written .tmp
        raise SystemExit(f"error: cannot write the checkpoint {final}: {e}") from None
    if final.exists() or final.is_symlink():
        remove(old)
        final.rename(old)  # a symbolic link is renamed itself, never followed
    tmp.rename(final)
    remove(old)


TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json")  # what data.load_tokenizer reads


def tokenizer_files(folder: Path, required: bool = True) -> dict[str, bytes]:
    """The tokenizer files of a model folder, {name: bytes}: vocab.txt (unless not `required`)
    and tokenizer_config.json if there. Links are followed (a released model in the Hugging Face
    cache is made of them; a run's own ckpt/ passed check_folder first). Raises CheckpointError
    or FileNotFoundError naming the file."""
    files = {}
    for name in TOKENIZER_FILES:
        path = Path(folder) / name
        needed = required and name == "vocab.txt"
        if needed or os.path.lexists(path):
            files[name] = read_file(path, limit=64 << 20, links=True)  # as check_folder's cap
    return files


def tokenizer_of(folder: Path, config: BertConfig):
    """(tokenizer, its files as tokenizer_files reads them) of the model folder train.py takes
    its vocabulary from, once the vocabulary fits `config`, the model's shape: every token id
    must have a row in the embeddings (a vocab.txt of another model would fail mid-evaluation).
    Raises ValueError (CheckpointError) or FileNotFoundError naming the file."""
    import data  # here, not at the top: data is only needed to build a tokenizer

    files = tokenizer_files(folder)
    tokenizer = data.load_tokenizer(folder)
    ids = max(tokenizer.get_vocab().values()) + 1
    if ids > config.vocab_size:
        raise CheckpointError(
            f"{Path(folder) / 'vocab.txt'} has token ids up to {ids - 1:,}, but the model has "
            f"{config.vocab_size:,} embedding rows (vocab_size in config.json): the two are not "
            "of one model (copy the whole folder again)"
        )
    return tokenizer, files


def remove(path: Path) -> None:
    """Delete a file, a folder and what it holds, or a symbolic link (never what it points to)."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)  # which unlinks the links inside, not their targets


def checkpoint_folder(folder: Path) -> Path | None:
    """The complete checkpoint at `folder`, or its .old twin if a save stopped between renames.
    A name that is there but is no regular file (a link, a FIFO) still counts: reading it then
    says what is wrong, rather than passing over it in silence."""
    for f in (Path(folder), Path(str(folder) + ".old")):
        if all(os.path.lexists(f / n) for n in ("config.json", "model.safetensors")):
            return f
    return None


def checked_model_config(folder: Path) -> BertConfig:
    """The model shape of a checkpoint folder, once its config.json and the header of its
    model.safetensors agree: every encoder tensor the config implies is in the file with that
    shape, and the file holds no more than such a model can need. All this is checked before any
    tensor is read or built, so a crafted folder (vocab_size 20,000,000, or a header promising
    100 GB) fails at once with a message. Raises CheckpointError."""
    folder = Path(folder)
    config, path = read_config(folder), folder / "model.safetensors"
    header = read_safetensors_header(path)
    with torch.device("meta"):  # shapes without memory: no tensor is allocated
        expected = BertModel(config).state_dict()
    for ours, t in expected.items():
        name = "bert." + released_name(ours)
        if name not in header or list(header[name][1]) != list(t.shape):
            has = f"shape {header[name][1]}" if name in header else "no such tensor"
            raise CheckpointError(
                f"{path}: {name} has {has} but {folder / 'config.json'} implies {list(t.shape)}; "
                f"the two files are not of one model (copy the whole ckpt/ folder again)"
            )
    _check_budget(path, header, sum(t.numel() for t in expected.values()))
    return config


def _check_budget(path: Path, header: dict, parameters: int) -> int:
    """The bytes `header` promises, if no more than twice a model of `parameters` in fp32 plus
    64 MB (what a task head and a method's own tensors could add): else CheckpointError."""
    size = sum(math.prod(shape) * dtype.itemsize for dtype, shape in header.values())
    budget = tensor_budget(parameters)
    if size > budget:
        raise CheckpointError(
            f"{path}: its tensors take {size:,} bytes, more than a model of {parameters:,} "
            f"parameters can need ({budget:,}); the file is not this run's"
        )
    return size


def load_checkpoint(folder: Path, model, strategy) -> dict | None:
    """Load a checkpoint folder into model (and strategy); returns its trainer state, if any.
    The file's header is compared with the model first (_check_header): a tensor of another
    shape or type, one of no part of the model, or a file bigger than the model, is refused
    before the tensors are read."""
    found = checkpoint_folder(folder)
    if found is None:
        raise SystemExit(f"error: no checkpoint in {folder} (config.json and model.safetensors)")
    path = found / "model.safetensors"
    try:
        read_config(found)  # a symbolic link or a crafted config.json: refused like the weights
        check_record(found)  # the run's config.json names the method these weights are of
        header = read_safetensors_header(path)
        expected = {f"bert.{released_name(k)}": v for k, v in model.bert.state_dict().items()}
        expected.update({f"{_head(model)}.{k}": v for k, v in model.head.state_dict().items()})
        if strategy is not None:
            prefix = strategy.checkpoint_prefix
            expected.update({f"{prefix}.{k}": v for k, v in strategy.state_dict().items()})
        parts = ["bert", _head(model)] + ([strategy.checkpoint_prefix] if strategy else [])
        _check_header(path, header, expected, ", ".join(f"{p}.*" for p in parts))
        size = _check_budget(path, header, sum(t.numel() for t in expected.values()))
        tensors = read_safetensors(path, limit=size + 8 + MAX_HEADER_BYTES)
        _check_finite(path, tensors)
        bert = {k: v for k, v in tensors.items() if k.startswith("bert.")}
        load_encoder_weights(model.bert, bert, str(found), run_folder=True)
        model.head.load_state_dict(_under(tensors, _head(model)))
        if strategy is not None:
            strategy.load_state_dict(_under(tensors, strategy.checkpoint_prefix))
        state = read_trainer_state(found, limit=2 * size + (16 << 20))
        _check_digest(found, state)
        return state
    except FileNotFoundError as e:
        raise SystemExit(f"error: cannot load the checkpoint in {found}: no {e.filename}") from None
    except (CheckpointError, RuntimeError, KeyError, ValueError) as e:
        raise SystemExit(f"error: cannot load the checkpoint in {found}: {e}") from None


def _check_header(path: Path, header: dict, expected: dict, parts: str) -> None:
    """Each tensor of the file's header is one the model (and method) holds, of its shape and
    type: a tensor of no part of them is another method's (a config.json edited to name another
    method would ignore it, silently), and one relabelled (F32 stored as I32) would be converted
    into other numbers. `parts`: the prefixes expected, for the message. Raises CheckpointError."""
    for name, (dtype, shape) in header.items():
        if name not in expected:
            raise CheckpointError(
                f"{path}: tensor {shown(name)} is no part of this model ({parts}): the "
                "checkpoint is another method's (check the method in the run's config.json)"
            )
        t = expected[name]
        if list(shape) != list(t.shape):
            raise CheckpointError(
                f"{path}: tensor {name} has shape {shape} but this model expects "
                f"{list(t.shape)}; the checkpoint belongs to a model of another size"
            )
        if dtype != t.dtype:
            raise CheckpointError(f"{path}: tensor {name} is stored as {dtype}, not "
                                  f"{t.dtype}; the file was altered (copy it again)")  # fmt: skip


def _check_digest(folder: Path, state: dict | None) -> None:
    """A trainer state that records the digest of the weights it was saved beside (sha256 of
    model.safetensors) is found beside those weights: another run's trainer_state.* copied into
    a folder would resume its step, schedule and moments on weights they are not of. (A state
    without one is refused where it would be used, check_progress.) Raises CheckpointError."""
    digest = state.get("weights_sha256") if isinstance(state, dict) else None
    if digest is not None and digest != file_sha256(folder / "model.safetensors"):
        raise CheckpointError(
            f"{folder / 'trainer_state.json'} was saved beside other weights than "
            f"{folder / 'model.safetensors'} (their sha256 differ): the two files are not of one "
            "checkpoint (copy the whole ckpt/ again)"
        )


def _check_finite(path: Path, tensors: dict) -> None:
    """Every floating tensor (the encoder's, the head's, the method's) holds no NaN or infinity:
    train.py stops a run whose loss or gradients stop being finite before it saves, so such
    weights are damage, and evaluating them would change the numbers or only say the outputs are
    not finite. Raises CheckpointError."""
    for name, t in tensors.items():
        if t.is_floating_point() and not t.isfinite().all():
            raise CheckpointError(
                f"{path}: tensor {shown(name)} holds NaN or infinity; the checkpoint is damaged "
                "(copy it again, or resume from another copy)"
            )


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


def read_trainer_state(folder: Path, limit: int | None = None) -> dict | None:
    """The trainer state of a checkpoint folder (None if it has none), its .safetensors no more
    than `limit` bytes. What the state holds is checked where it is used (check_like)."""
    path = Path(folder) / "trainer_state.json"
    if not os.path.lexists(path):
        return None
    try:
        tree = read_json(path)
        tensors = read_safetensors(Path(folder) / "trainer_state.safetensors", limit)
        state = _decode(tree, tensors)
    except CheckpointError as e:  # named by its file: the .json, or the .safetensors beside it
        why = str(e).removeprefix(str(path)).strip(" :")
        raise CheckpointError(f"{path} is damaged ({why}); resume from another copy") from None
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError,
            RecursionError, FileNotFoundError, MemoryError) as e:  # fmt: skip
        raise CheckpointError(
            f"{path} is damaged ({type(e).__name__}: {shown(e)}); resume from another copy"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is damaged (not an object); resume from another copy")
    return state


def check_like(saved, fresh, where: str) -> None:
    """`saved` (read from a file) is built like `fresh` (made now): the same dict keys (but flags
    a newer torch adds), list lengths and value types (int and float alike), tensors of the
    same shape and dtype. Raises
    ValueError naming the first place where they differ, so that a crafted trainer state fails
    here, with a message, rather than deep inside an optimiser step."""

    def kind(v):
        return "number" if isinstance(v, (int, float)) and not isinstance(v, bool) else type(v)

    if fresh is None:  # a setting left to torch (AdamW's foreach): unset, or a flag
        if saved is not None and not isinstance(saved, bool):
            raise ValueError(f"{where} is {shown(saved):.60}, not null, true or false")
        return
    if isinstance(saved, int) and not isinstance(saved, bool) and not -(2**63) <= saved < 2**63:
        raise ValueError(f"{where} is {saved:.3g}, past a 64-bit integer")
    if isinstance(fresh, torch.Tensor):
        if not isinstance(saved, torch.Tensor):
            raise ValueError(f"{where} is {kind(saved).__name__}, not a tensor")
        if saved.shape != fresh.shape or saved.dtype != fresh.dtype:
            raise ValueError(
                f"{where} is a {saved.dtype} tensor of shape {list(saved.shape)}, not "
                f"{fresh.dtype} of shape {list(fresh.shape)}"
            )
    elif kind(saved) != kind(fresh):
        got = kind(saved) if isinstance(kind(saved), str) else kind(saved).__name__
        raise ValueError(f"{where} is {got}: {shown(saved):.60}")
    elif isinstance(fresh, dict):
        # another torch version may lack a flag (a bool or None torch fills in): not a number
        needed = {k for k, v in fresh.items() if v is not None and not isinstance(v, bool)}
        if not needed <= saved.keys() <= fresh.keys():
            keys = lambda d: sorted(map(str, d))[:8]  # noqa: E731
            raise ValueError(f"{where} has keys {keys(saved)}, not {keys(fresh)}")
        for k in saved:
            check_like(saved[k], fresh[k], f"{where}[{k!r}]")
    elif isinstance(fresh, (list, tuple)):
        if len(saved) != len(fresh):
            raise ValueError(f"{where} has {len(saved)} items, not {len(fresh)}")
        for i, (a, b) in enumerate(zip(saved, fresh)):
            check_like(a, b, f"{where}[{i}]")


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
    if "ndarray" in tree:  # numpy's generator key, the one array rng_state records
        if tree.get("dtype") != "uint32":  # "U100000000" would take 232 GiB
            raise ValueError(f"an array of dtype {shown(tree.get('dtype')):.40}, not uint32")
        key = tensors[tree["ndarray"]]
        if key.dtype != torch.int64 or ((key < 0) | (key >= 2**32)).any():
            raise ValueError("numpy's generator key holds a number past uint32")
        return key.numpy().astype(np.uint32)
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


def check_progress(progress: dict, stages: int, path: Path) -> None:
    """The trainer state train.py saved (stage, step, counters, history, random states), checked
    before it is used; the optimiser's is checked against the optimiser (train.py). A fault is
    one SystemExit naming `path` (trainer_state.json)."""

    def count(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    digest = progress.get("weights_sha256")  # load_checkpoint compared it with the weights
    if not (isinstance(digest, str) and len(digest) == 64):
        raise SystemExit(f"error: {path} records no digest of the weights beside it (written "
                         "before skimbert recorded one), so it cannot be tied to them: start "
                         "the run again with --overwrite")  # fmt: skip
    try:
        for key in ("stage", "step", "steps_done"):
            if not count(progress.get(key)):
                raise ValueError(f"{key} is {shown(progress.get(key)):.40}, not a count")
        if progress["stage"] > stages:
            raise ValueError(f"stage {progress['stage']} of a method with {stages} stages")
        if progress["steps_done"] < progress["step"]:  # the stage's steps are among the run's
            raise ValueError(f"steps_done {progress['steps_done']} is below the stage's step "
                             f"{progress['step']}")  # fmt: skip
        history = progress.get("history")
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise ValueError("history is not a list of evaluations")
        for i, h in enumerate(history):  # what results.json passes on as the run's own record
            _check_evaluation(h, f"history[{i}]")
            if h["step"] > progress["steps_done"]:
                raise ValueError(f"history[{i}] is at step {h['step']}, past the run's "
                                 f"{progress['steps_done']} steps")  # fmt: skip
        _check_rng(progress.get("rng"), "rng")  # every save records it; resuming sets it
        if progress.get("stage_rng") is not None:  # (absent from older checkpoints)
            _check_rng(progress["stage_rng"], "stage_rng")  # set by a run resumed mid-stage
    except (ValueError, TypeError, RuntimeError, KeyError, IndexError, OverflowError) as e:
        raise SystemExit(f"error: {path} is damaged ({shown(e)}); resume from another copy")


def _check_evaluation(entry: dict, where: str) -> None:
    """One evaluation train.py recorded while training: its stage's name, its step, the share of
    tokens kept, its metrics and its speedup, numbers finite. Raises ValueError naming it."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    metrics = entry.get("metrics")
    if not (isinstance(entry.get("stage"), str) and len(entry["stage"]) <= 100
            and isinstance(entry.get("step"), int) and entry["step"] >= 0
            and isinstance(metrics, dict) and len(metrics) <= 20
            and all(isinstance(k, str) and len(k) <= 40 and number(v) for k, v in metrics.items())
            and number(entry.get("kept")) and number(entry.get("speedup_none"))):  # fmt: skip
        raise ValueError(f"{where} is {shown(entry):.80}, not an evaluation (stage, step, kept, "
                         "metrics, speedup_none)")  # fmt: skip
    if not all(math.isfinite(v) for v in (entry["kept"], entry["speedup_none"], *metrics.values())):
        raise ValueError(f"{where} holds a number that is not finite")
    # what report.py holds a results.json to: results.json passes this history on
    low, high = report.MIN_SPEEDUP, report.MAX_SPEEDUP
    problem = report.scores_problem(metrics)
    problem = problem or report.number_problem("kept", entry["kept"], 0, 1)
    problem = problem or report.number_problem("speedup_none", entry["speedup_none"], low, high)
    if problem:
        raise ValueError(f"{where}: {problem}")


def _check_rng(rng, name: str) -> None:
    """Random generators' states as rng_state records them (`name`: where they are), each tried
    on a new generator of its kind, so the run's own are left alone. Raises what torch, numpy
    and random raise (check_progress turns it into one line)."""
    if not isinstance(rng, dict) or not {"torch", "numpy", "python"} <= rng.keys():
        raise ValueError(f"{name} lacks the torch, numpy and python generator states")
    torch.Generator().set_state(rng["torch"])
    np.random.RandomState().set_state(rng["numpy"])
    random.Random().setstate(rng["python"])
    cuda = rng.get("cuda", [])
    if not isinstance(cuda, list) or not all(isinstance(t, torch.Tensor) for t in cuda):
        raise ValueError(f"{name}'s cuda states are not tensors")


def check_optimizer_state(path: Path, saved: dict, opt, sched, scaler, total: int) -> None:
    """A run resumed inside a stage of `total` steps: its step is one of them, and its saved
    optimiser, schedule and loss scale (`saved`'s "optimizer", "scheduler" and "scaler") are
    built like the ones just made (check_like), with the same settings (all but the learning
    rate, which the schedule moves), each moment the shape of its parameter, before they are
    loaded; a crafted trainer state is one SystemExit naming `path` (trainer_state.json), not a
    failure at the next step, nor a run that trains nothing or climbs its loss."""
    params = [p for g in opt.param_groups for p in g["params"]]
    state, fresh = saved.get("optimizer"), opt.state_dict()
    try:
        if not saved["step"] < total:  # (a checkpoint at a stage's end is the next one's step 0)
            raise ValueError(f"step {saved['step']} of a stage of {total} steps")
        if not isinstance(state, dict) or not isinstance(state.get("state"), dict):
            raise ValueError("optimizer is not an optimiser's state")
        check_like(state.get("param_groups"), fresh["param_groups"], "param_groups")
        for group, ours in zip(state["param_groups"], fresh["param_groups"]):
            if group["params"] != ours["params"]:  # which saved state goes to which parameter
                raise ValueError(f"param_groups number the parameters {group['params'][:8]}")
            for k, v in ours.items():  # maximize: true would climb the loss
                if k not in ("lr", "params") and v is not None and group.get(k, v) != v:
                    raise ValueError(f"param_groups' {k} is {shown(group[k]):.40}, not {v}")
        for i, moments in state["state"].items():
            if not (isinstance(i, int) and 0 <= i < len(params)):
                raise ValueError(f"the state of parameter {shown(i):.20}, of {len(params)}")
            like = torch.empty(params[i].shape, dtype=params[i].dtype, device="meta")
            step = torch.empty((), dtype=torch.float32, device="meta")
            check_like(moments, {"step": step, "exp_avg": like, "exp_avg_sq": like},
                       f"optimizer state {i}")  # fmt: skip
            _check_moments(moments, saved["step"], f"optimizer state {i}")
        check_like(saved.get("scheduler"), sched.state_dict(), "scheduler")
        _check_schedule(saved, state["param_groups"], sched)
        if saved.get("scaler"):
            check_like(saved["scaler"], scaler.state_dict(), "scaler")
    except (ValueError, TypeError, AttributeError) as e:
        raise SystemExit(f"error: {path} is damaged ({e}); resume from another copy") from None


def _check_moments(moments: dict, steps: int, where: str) -> None:
    """Adam's moments of one parameter: its step count 1 to the stage's `steps` (fp16 may skip
    some), its moments finite, the second one not negative. A step of 0 or below makes the bias
    correction 1 - beta^t divide by zero or change sign, and a negative second moment makes
    sqrt NaN: the loss would climb, or the run fail a step later with a misleading message."""
    if not 1 <= moments["step"].item() <= steps or moments["step"].item() % 1:
        raise ValueError(f"{where}'s step is {moments['step'].item():g}, not 1 to {steps}")
    if not (moments["exp_avg"].isfinite().all() and moments["exp_avg_sq"].isfinite().all()):
        raise ValueError(f"{where} holds a value that is not finite")
    if (moments["exp_avg_sq"] < 0).any():
        raise ValueError(f"{where}'s second moment is negative")


def _check_schedule(saved: dict, groups: list, sched) -> None:
    """The saved schedule is the stage's own at the saved step: its base rates are the stage's
    (fresh: `sched`), its epoch the step, and each group's rate (`groups`: the saved optimiser's,
    which load_state_dict makes the rate of the next step) the schedule's at that step. Else a
    forged trainer state could set any learning rate, or move the warm-up and decay."""
    schedule, step = saved["scheduler"], saved["step"]
    if schedule["base_lrs"] != sched.base_lrs:
        raise ValueError(f"scheduler's base_lrs are {shown(schedule['base_lrs']):.60}, not "
                         f"the stage's {sched.base_lrs}")  # fmt: skip
    if schedule["last_epoch"] != step or schedule.get("_step_count", step + 1) != step + 1:
        raise ValueError(f"scheduler is at step {shown(schedule['last_epoch']):.20}, not {step}")
    want = [base * rate(step) for base, rate in zip(sched.base_lrs, sched.lr_lambdas)]
    for name, got in (("param_groups' lr", [g["lr"] for g in groups]),
                      ("scheduler's _last_lr", schedule.get("_last_lr", want))):  # fmt: skip
        if not all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15) for a, b in zip(got, want)):
            raise ValueError(f"{name} is {shown(got):.60}, not {want}, the schedule's at {step}")


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


def load_run(run_dir: Path, method: str | None = None):
    """(model, strategy, saved settings) of a finished run folder, rebuilt from the folder: its
    options, task head and model shape; its method if built in, else `method`, which the user
    names (method_of_run: a folder never chooses the code that runs). Both in eval mode."""
    import config as settings  # here, not at the top: config imports this module
    import data  # here, not at the top: data is only needed to rebuild a run

    run_dir = Path(run_dir)
    check_folder(run_dir)  # as --eval-only and --resume do: no link followed, no FIFO read
    saved = read_run_config(run_dir)
    folder = checkpoint_folder(run_dir / "ckpt")
    if folder is None:
        raise SystemExit(f"error: {run_dir} holds no checkpoint (ckpt/): did the run finish?")
    try:
        spec = method_of_run(saved["method"], method, run_dir / "config.json")
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    try:
        method = load_method(spec)
        settings.check_saved(saved, method, run_dir / "config.json")  # as --eval-only checks
        options = make_options(method, saved["options"] or {})
        task = data.get_task(saved["train"]["task"])
    except (ValueError, AssertionError, KeyError, TypeError) as e:
        raise SystemExit(f"error: cannot rebuild the method of {run_dir}: {shown(e)}") from None
    try:
        config = checked_model_config(folder)
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    # the head as the task has it (train.py built it so); load_checkpoint compares its shape
    model = BertForTask(config, task.kind, task.num_labels)
    strategy = build_strategy(spec, method, model, options, task)
    load_checkpoint(folder, model, strategy)
    return model.eval(), strategy.eval(), saved


def build_model(name: str, task, run_dir: Path, saved: bool, max_length: int):
    """(model, tokenizer folder) of train.py's run in `run_dir` on `task` (a data.Task).
    name (--model): a hub name or folder, whose pretrained weights are loaded (the head is
    new), or random-<shape> (transformer.CONFIGS, on a synthetic task: its vocabulary is
    written into run_dir/vocab). saved (--resume, --eval-only): the shape comes from the run's
    own checkpoint instead, its weights loaded later."""
    import data  # here, not at the top: data is only needed to build a model for a task

    ckpt = checkpoint_folder(run_dir / "ckpt") if saved else None
    random_shape = name.removeprefix("random-") if name.startswith("random-") else None
    if ckpt is not None:  # its config.json against its weights' header, before any tensor
        try:
            folder, bert_config = ckpt, checked_model_config(ckpt)
        except CheckpointError as e:
            raise SystemExit(f"error: {e}") from None
    elif random_shape:
        if random_shape not in CONFIGS:
            shapes = ", ".join("random-" + s for s in CONFIGS)
            raise SystemExit(f"error: --model {name}: known shapes are {shapes}")
        if task.reader != "synthetic":
            raise SystemExit("error: a random model has no vocabulary; use a synthetic --task")
        folder = data.write_synthetic_vocab(run_dir / "vocab", task)
        vocab_size = len((folder / "vocab.txt").read_text().split("\n"))
        bert_config = dataclasses.replace(CONFIGS[random_shape], vocab_size=vocab_size)
    model = None
    try:
        if ckpt is None and not random_shape:
            folder = resolve_model_dir(name)
            bert_config = read_config(folder, links=True)  # a released model: the HF cache is links
            model = BertForTask(bert_config, task.kind, task.num_labels)
            state = read_checkpoint(folder)  # a run's ckpt/ as --model holds more than BERT
            load_encoder_weights(model.bert, state, str(folder), run_folder=is_run_folder(folder))
    except (CheckpointError, RuntimeError) as e:
        raise SystemExit(f"error: --model {name}: {e}") from None
    model = model or BertForTask(bert_config, task.kind, task.num_labels)
    if max_length > bert_config.max_position_embeddings:
        raise SystemExit(f"error: --max-length {max_length} exceeds the model's "
                         f"{bert_config.max_position_embeddings} positions")  # fmt: skip
    return model, folder


def build_strategy(name: str, method, model: BertForTask, options, task) -> SkimStrategy:
    """The method `name` (its class: `method`) built for this model and task (a data.Task) by
    `method.build`, or one line saying what is wrong. Its size is checked first (method_size),
    as a checkpoint's model is: options that ask for a giant method (a run folder's
    "hidden": 10**12) are refused before any memory is taken."""
    AT_BUILD.clear()
    AT_BUILD.update(fingerprint())  # what train.finish finds again (refuse_rebound)
    # a method is not told which words decide (the grader of assignment 6 draws them: the method
    # must learn them): the task it is built with has the published roles
    task = dataclasses.replace(task, word_roles=0) if getattr(task, "word_roles", 0) else task
    size = method_size(method, model, options, task)
    if size is not None and size > MAX_PARAMETERS:
        raise SystemExit(f"error: {name} with these options holds {size:,} numbers, past what "
                         f"this project builds ({MAX_PARAMETERS:,}): check its options (a run's "
                         "are in its config.json)")  # fmt: skip
    try:
        strategy = method.build(model, options, task)
    except TypeError as e:  # most often a constructor that does not take what build gives it
        raise SystemExit(f"error: cannot build {name}: {first_line(e)}") from None
    except (ValueError, AssertionError) as e:
        raise SystemExit(f"error: {first_line(e)}") from None
    except (RuntimeError, MemoryError, OverflowError) as e:  # e.g. no memory for its tensors
        raise SystemExit(
            f"error: cannot build {name}: {type(e).__name__}: {first_line(e)}"
        ) from None
    if not isinstance(strategy, SkimStrategy):
        raise SystemExit(f"error: {name}.build returned {type(strategy).__name__}, "
                         "not a skim.SkimStrategy")  # fmt: skip
    return strategy


def loss_pair(result, strategy) -> tuple[torch.Tensor, dict]:
    """What a method's `loss` returned, checked before the loop uses it: (loss, logs), a scalar
    tensor that gradients flow from and a dict of numbers to print. Else one line that says what
    to return, rather than a traceback from the loop's unpacking or the backward pass."""
    name = f"{type(strategy).__name__}.loss"
    # what "{v:.3f}" prints: a Python number, or a tensor of no dimensions
    number = lambda v: isinstance(v, (int, float)) or (  # noqa: E731
        isinstance(v, torch.Tensor) and v.ndim == 0)  # fmt: skip
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        got = type(result).__name__ + (" of shape " + str(list(result.shape))
                                       if isinstance(result, torch.Tensor) else "")  # fmt: skip
        raise SystemExit(
            f"error: {name} returned a {got}; it returns a pair (loss, logs): "
            "the scalar loss and a dict of numbers to log, e.g. `return loss, {}`"
        )
    loss, logs = result
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise SystemExit(f"error: {name}'s loss is {shown(loss):.60}, not a tensor of one value "
                         "(take the mean over the batch)")  # fmt: skip
    if not loss.requires_grad:
        raise SystemExit(
            f"error: {name}'s loss carries no gradient: it depends on nothing "
            "trained (was it made with .item(), .detach() or torch.no_grad()?)"
        )
    if not isinstance(logs, dict) or not all(isinstance(k, str) and number(v)
                                             for k, v in logs.items()):  # fmt: skip
        raise SystemExit(f"error: {name}'s logs are {shown(logs):.60}, not a dict of names to "
                         "numbers (give {} to log nothing)")  # fmt: skip
    return loss.reshape(()), logs


def method_size(method, model: BertForTask, options, task) -> int | None:
    """How many numbers (parameters and buffers) `method` built for `model` would hold, counted
    by building it on the meta device: shapes only, no memory taken, no random number drawn.
    None if it cannot be built there (a method that reads a value while it is built): the real
    build then says what is wrong, if anything."""
    try:
        with torch.device("meta"):
            strategy = method.build(model, options, task)
            return sum(t.numel() for t in (*strategy.parameters(), *strategy.buffers()))
    except Exception:  # whatever it is, the real build reports it (or succeeds)
        return None


def first_line(error: Exception) -> str:
    """An exception's message fit for one line of error (torch's may add a C++ stack)."""
    lines = str(error).splitlines()
    return shown(lines[0] if lines else type(error).__name__)


def versions() -> dict:
    """What results.json records of the software and machine that made it."""
    git = ["git", "rev-parse", "HEAD"]
    try:
        commit = subprocess.run(git, capture_output=True, text=True, cwd=Path(__file__).parent)
    except OSError:
        commit = None
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "platform": platform.platform(),
            "cpu_threads": torch.get_num_threads(), "commit": commit and commit.stdout.strip(),
            "cuda": torch.cuda.is_available() and torch.cuda.get_device_name()}  # fmt: skip


def exit_now(main) -> None:
    """Run `main`, then end the process at once, without exit hooks: results.json is what the
    run measured, not what a method's atexit function rewrote after train.py wrote it (grading
    reads it). A method's own threads die with the process, too; and when train.py was started
    as a session of its own (as assignment 6's grader starts it), so do the processes a method
    forked, before they can outlive it and rewrite what it wrote."""
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    if hasattr(os, "getsid") and os.getsid(0) == os.getpid() and os.path.isdir("/proc"):
        for entry in os.listdir("/proc"):  # the rest of its process group (never a shell's)
            if entry.isdigit() and int(entry) != os.getpid():
                with contextlib.suppress(OSError):
                    if os.getpgid(int(entry)) == os.getpgrp():
                        os.kill(int(entry), signal.SIGKILL)
    os._exit(0)


class RunLog:
    """Print (rank 0) and append to the run's log.txt (not for --eval-only: the record stays);
    one call, one line (or a block of lines), never written through a symbolic link."""

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


RUN_CONFIG_KEYS = {"train": dict, "method": str, "options": (dict, type(None))}


def read_run_config(run_dir: Path) -> dict:
    """config.json of a run folder written by train.py: {"train", "method", "options"}, each of
    its type, with a known "task" in "train"; the values themselves are train.py's to check."""
    path = Path(run_dir) / "config.json"
    try:
        saved = read_json(path)
    except FileNotFoundError:
        raise SystemExit(f"error: {run_dir} is not a run folder: no config.json") from None
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    if not isinstance(saved, dict) or not {"train", "method"} <= saved.keys():
        raise SystemExit(f"error: {path} was not written by train.py (no train/method settings)")
    saved.setdefault("options", None)
    for key, kind in RUN_CONFIG_KEYS.items():
        if not isinstance(saved[key], kind):
            raise SystemExit(f"error: {path}: {key!r} is {shown(saved[key]):.60}, not what "
                             "train.py writes there; the file is damaged")  # fmt: skip
    task = saved["train"].get("task")
    if not isinstance(task, str):
        raise SystemExit(f"error: {path}: train.task is {shown(task):.60}, not a task name")
    return saved


def check_record(folder: Path) -> None:
    """The checkpoint in `folder` is the run's: the record save_checkpoint wrote into its
    config.json ("skimbert") names the method, options and task that the run's config.json, in
    the folder above, does. Else a config.json edited to another method, or a ckpt/ of another
    run, would be evaluated as what config.json says, its own tensors ignored. A checkpoint
    outside a run folder (no config.json above it: tests) passes."""
    run_dir, path = Path(folder).parent, Path(folder) / "config.json"
    if not os.path.lexists(run_dir / "config.json"):
        return
    saved, record = read_run_config(run_dir), read_json(path)
    record = record.get("skimbert") if isinstance(record, dict) else None
    train = record.get("train") if isinstance(record, dict) else None
    if not isinstance(train, dict):
        raise CheckpointError(f'{path} holds no "skimbert" record of its run (method, options, '
                              "train): train.py did not write it; copy the run's own ckpt/ "
                              "again")  # fmt: skip
    ours = (saved["method"], saved["options"], saved["train"]["task"])
    theirs = (record.get("method"), record.get("options"), train.get("task"))
    for what, a, b in zip(("method", "options", "task"), ours, theirs):
        if a != b:
            raise CheckpointError(
                f"{run_dir / 'config.json'} records the {what} {shown(a):.80}, but {path} "
                f"records {shown(b):.80}: one was edited or comes from another run (put back "
                "the run's own config.json, or copy the whole run again)"
            )
