"""Train and evaluate any skim method with one script: baseline, Transkimmer, TR-BERT, LTP, yours.

    python train.py --method transkimmer --task sst2 --model sentence-transformers/all-MiniLM-L6-v2
    python train.py --method baseline --preset smoke          # a tiny model, offline, ~1 minute
    python train.py --method path/to/my_method.py:MyStrategy --preset smoke

Read it top to bottom: the task loss every method trains with; `setup` (the settings checked,
device, run folder, model, method, data); `train`, the loop over the method's stages, and
`train_stage`, the loop over steps, where evaluation, checkpoints, gradient clipping and logging
happen; `finish`, results.json; `main`. Elsewhere: where each setting comes from (config.py),
evaluation with real pruning and FLOPs (evaluation.py), what a run folder holds (runs.py). A
method is a skim.SkimStrategy class that brings its settings, stages, loss and cost, so this
file names no method.
Several GPUs: torchrun --nproc_per_node N train.py ... Tests: tests/test_train.py.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

import config
import data
import report
import runs
from config import PRESETS, TrainConfig, parse_config  # noqa: F401 (train.PRESETS, as before)
from evaluation import eval_line, evaluate
from skim import SkimStrategy, Stage, StepContext, check_stages
from transformer import BertForTask
from weights import atomic_write

# ----------------------------------------------------------------------------------------------
# The loss every method trains with (a method's own loss adds its terms to it)


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
# Setup: everything the loop needs, built once


@dataclass
class Run:
    cfg: TrainConfig  # this run's settings (config.py); the model's shape is model.bert.config
    task: data.Task
    model: BertForTask
    strategy: SkimStrategy
    meta: dict  # what config.json and every checkpoint record
    train_feats: list
    dev_ex: list
    dev_feats: list
    tokenizer: object
    tokenizer_files: dict  # {name: bytes}: into every checkpoint (runs.save_checkpoint)
    device: torch.device
    autocast: object
    dir: Path
    log: object
    rank: int = 0
    world: int = 1

    def batch(self, idx: list[int], feats=None, padding="batch") -> dict:
        """Features idx -> tensors on the device; "index" names the features (for strategies)."""
        feats = feats or self.train_feats
        b = data.collate([feats[i] for i in idx], padding, self.cfg.max_length)
        b["index"] = torch.tensor(idx)
        return {k: v.to(self.device, non_blocking=True) for k, v in b.items()}


def setup(cfg: TrainConfig, method, options) -> Run:
    """Check the settings, start torchrun's processes, prepare the run folder, build model,
    method and data."""
    cfg, task = config.check(cfg), data.get_task(cfg.task, cfg.word_roles)
    device, rank, world = start_device(cfg)
    meta = {"train": dataclasses.asdict(cfg), "method": cfg.method, "task": task.name,
            "options": runs.options_dict(options), "kind": task.kind}  # fmt: skip
    reads = {"finetuned": cfg.finetuned, "model": cfg.model, "data_dir": cfg.data_dir,
             **(meta["options"] or {})}  # fmt: skip
    run_dir, fresh = Path(cfg.out_dir), not (cfg.resume or cfg.eval_only)
    runs.prepare(run_dir, meta, fresh, reads if cfg.overwrite else None, writer=rank == 0)
    log = runs.RunLog(run_dir / "log.txt", rank == 0, rank == 0 and not cfg.eval_only)
    settings = {**meta["train"], **(meta["options"] or {})}
    # every value as one line: a name with a newline in a crafted config.json forges no lines
    lines = [f"  {k:<19}{runs.shown(v)}" for k, v in settings.items()]
    log(f"skimbert {runs.shown(cfg.method)} on {task.name} ({device}, {world} process"
        f"{'es' * (world > 1)})\n" + "\n".join(lines))  # fmt: skip
    random.seed(cfg.seed), np.random.seed(cfg.seed), torch.manual_seed(cfg.seed)
    model, folder = runs.build_model(cfg.model, task, run_dir, not fresh, cfg.max_length)
    strategy = runs.build_strategy(cfg.method, method, model, options, task)
    try:
        tokenizer, files = runs.tokenizer_of(folder, model.bert.config)  # checked against it
        train_feats, dev_ex, dev_feats = data.load_features(task, tokenizer, cfg.max_length,
                                                            cfg.data_dir, cfg.train_subset,
                                                            cfg.eval_subset)  # fmt: skip
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as e:
        raise SystemExit(f"error: {e}") from None
    n = sum(p.numel() for p in model.parameters())
    size = f"{n / 1e6:.1f}M" if n >= 10**6 else f"{n:,}"
    log(f"{len(train_feats)} train and {len(dev_feats)} dev features; model {size} parameters")
    model.to(device), strategy.to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    return Run(cfg=cfg, task=task, model=model, strategy=strategy, meta=meta,
               train_feats=train_feats, dev_ex=dev_ex, dev_feats=dev_feats, tokenizer=tokenizer,
               tokenizer_files=files, device=device, autocast=autocast, dir=run_dir, log=log,
               rank=rank, world=world)  # fmt: skip


def start_device(cfg: TrainConfig) -> tuple[torch.device, int, int]:
    """(device, rank, number of processes): torchrun's process group joined, --threads and
    --deterministic applied."""
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
    if cfg.deterministic:  # a CPU is already. On a GPU: sorted kernels for the backward passes
        # that add with atomics in any order (embeddings, gathers); cuBLAS's own workspace per
        # stream (read when it starts: set before); and attention as plain matrix products and a
        # softmax (the fused kernels' backward warn that they are not deterministic)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)  # warns naming any op without one
        for fused in ("cudnn", "flash", "mem_efficient"):
            getattr(torch.backends.cuda, f"enable_{fused}_sdp")(False)
    return device, rank, world


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
# Training: the loop over the method's stages, then over each stage's steps


@dataclass
class TrainState:
    """Where training stands: what ckpt/trainer_state.* saves and --resume restores."""

    stage: int = 0  # the stage under way (after the last: training is over)
    step: int = 0  # optimiser steps done in that stage, at the last checkpoint
    steps_done: int = 0  # optimiser steps done in the whole run (--stop-after-steps)
    history: list = field(default_factory=list)  # every evaluation during training
    rng: dict | None = None  # every random generator's state, at the last checkpoint
    stage_rng: dict | None = None  # ... at the start of the stage under way
    optimizer: dict | None = None  # inside a stage: the optimiser's state dict,
    scheduler: dict | None = None  # the learning-rate schedule's,
    scaler: dict | None = None  # and fp16's loss scale (else None)


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
    state = resumed_state(run) if cfg.resume else TrainState()
    if cfg.finetuned and not cfg.resume:
        runs.load_checkpoint(Path(cfg.finetuned) / "ckpt", run.model, None)
        run.log(f"starting from the fine-tuned run {cfg.finetuned}")
    stages, teacher = run.strategy.stages(run.cfg), None
    if problem := check_stages(stages, finetuned=bool(cfg.finetuned)):
        raise SystemExit(f"error: {run.cfg.method}: {problem}")
    schedule = [dataclasses.asdict(stage) for stage in stages]  # as asked, before any training
    # the first stage that learns from the teacher builds it, and the straight run does so at that
    # stage's start, after the state a resumed run restores: see load_teacher
    first_with_teacher = next((s for s, stage in enumerate(stages) if stage.teacher), None)
    if not stages and run.rank == 0:  # nothing to train (a fine-tuned run evaluated as it is):
        save(run, state)  # its checkpoint still makes the folder a whole run
    for s in range(state.stage, len(stages)):
        if stages[s].teacher and teacher is None:
            teacher = load_teacher(run, draws=s == first_with_teacher)
        if train_stage(run, s, stages[s], state, teacher):
            return {"stopped": True}
    return finish(run, started, {"history": state.history, "stages": schedule})


def train_stage(run: Run, s: int, stage: Stage, state: TrainState, teacher) -> bool:
    """Stage s of the method's schedule, from state.step (0, or where a run stopped). Returns
    True if the run stopped here (--stop-after-steps)."""
    cfg, lengths = run.cfg, [len(f) for f in run.train_feats]
    per_epoch = steps_per_epoch(run)
    total, step = max(1, int(per_epoch * stage.epochs)), state.step
    opt, sched, scaler, runner = start_stage(run, s, stage, state, teacher, total)
    run.log(f"stage {stage.name}: {stage.epochs:g} epochs, {total} steps")
    bar = tqdm(total=total, initial=step, desc=stage.name, disable=run.rank != 0 or None)
    losses = functools.partial(task_loss, run.task)
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
            clip_gradients(opt, scaler, cfg.max_grad_norm, loss,
                           where=f"{step + 1} of stage {stage.name}")  # fmt: skip
            scaler.step(opt), scaler.update(), sched.step()
            step, state.steps_done = step + 1, state.steps_done + 1
            bar.update()
            if step % cfg.log_every == 0 and run.rank == 0:
                run.log(f"step {step} | loss {loss.item():.4f}"  # printed above the bar too
                        + "".join(f" | {k} {v:.3f}" for k, v in logs.items()))  # fmt: skip
            end_of_epoch = step % per_epoch == 0 or step == total
            if step == total or (step % cfg.eval_every == 0 if cfg.eval_every else end_of_epoch):
                res = evaluate(run, run.strategy if stage.skim else None)
                run.log(eval_line(step, loss.item(), res, stage.name))
                state.history.append({"stage": stage.name, "step": step, "kept": res["kept"],
                                      "metrics": res["metrics"],
                                      "speedup_none": res["flops"]["none"]["speedup"]})  # fmt: skip
            stop = state.steps_done == cfg.stop_after_steps  # (steps_done ≥ 1: 0 never stops)
            if end_of_epoch or stop:  # a checkpoint at every epoch's end, and where a run stops
                done = step == total  # then the next stage, from its step 0
                state.stage, state.step = s + done, 0 if done else step
                save(run, state, None if done else (opt, sched, scaler), stage if done else None)
            if stop:
                run.log(f"stopped after step {step} (--stop-after-steps); continue with --resume")
                bar.close()
                return True
            if step == total:
                break
    bar.close()
    return False


def steps_per_epoch(run: Run) -> int:
    """Optimiser steps per epoch in each process."""
    n, batch_size = len(run.train_feats), run.cfg.batch_size
    per_epoch = math.ceil(n / batch_size) // run.world
    if per_epoch == 0:  # with torchrun: no process would get a batch, and the loop never ends
        raise SystemExit(f"error: --batch-size {batch_size} makes fewer batches an epoch than "
                         f"the {run.world} processes: give at most {n // run.world}")  # fmt: skip
    return per_epoch


def start_stage(run: Run, s: int, stage: Stage, state: TrainState, teacher, total: int):
    """(optimiser, schedule, loss scaler, loss module) of stage s, and the method's begin_stage;
    inside the stage (a resumed run), each restored from the checkpoint."""
    # What the stage's start builds (optimiser, begin_stage's precomputation, a strategy's own)
    # draws, if at all, from the state the stage started from: saved with every checkpoint of the
    # stage, and restored here by a run resumed inside it (the state of its stop comes below)
    if state.step == 0:
        state.stage_rng = runs.rng_state()
    elif state.stage_rng is not None:  # (absent from checkpoints written before it was saved)
        runs.set_rng_state(state.stage_rng)
    opt, sched = make_optimizer(run, stage, total)
    scaler = torch.amp.GradScaler(run.device.type, enabled=run.cfg.precision == "fp16")
    runner = _LossModule(run.model, run.strategy, teacher)
    if run.world > 1:  # one DDP per stage: the set of trainable parameters changes between stages
        runner = torch.nn.parallel.DistributedDataParallel(runner, find_unused_parameters=True)
    losses = functools.partial(task_loss, run.task)
    ordered = data.batch_indices([len(f) for f in run.train_feats], run.cfg.eval_batch_size)
    batches = lambda: ((idx, run.batch(idx)) for idx in ordered)  # noqa: E731
    run.strategy.begin_stage(StepContext(stage, 0, total, losses, teacher), batches)
    if state.step:  # resuming inside this stage
        runs.check_optimizer_state(run.dir / "ckpt" / "trainer_state.json", vars(state), opt,
                                   sched, scaler, total)  # fmt: skip
        # the saved tensors are on the CPU; load_state_dict moves the optimiser's moments to
        # each parameter's device, so a run stopped on a GPU may go on on a CPU and back
        opt.load_state_dict(state.optimizer), sched.load_state_dict(state.scheduler)
        if state.scaler:  # fp16's loss scale (absent from older checkpoints)
            scaler.load_state_dict(state.scaler)
        runs.set_rng_state(state.rng)
    return opt, sched, scaler, runner


class _LossModule(torch.nn.Module):
    """The strategy's loss as a module, so DistributedDataParallel can wrap model and strategy."""

    def __init__(self, model, strategy, teacher):
        super().__init__()
        self.model, self.strategy = model, strategy
        self.teacher = [teacher]  # in a list: not a submodule, DDP must not sync the frozen teacher

    def forward(self, batch, context: StepContext):
        context.teacher = self.teacher[0] if context.stage.teacher else None
        return runs.loss_pair(self.strategy.loss(self.model, batch, context), self.strategy)


def make_optimizer(run: Run, stage: Stage, total_steps: int):
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


def clip_gradients(opt, scaler, max_norm: float, loss: torch.Tensor, where: str) -> None:
    """Clip the gradient norm to --max-grad-norm (0: no clipping), and stop a diverged run at
    once, naming the step (`where`: "12 of stage joint"): nothing is saved or reported after it."""
    params = [p for g in opt.param_groups for p in g["params"]]
    bad = "loss" if not torch.isfinite(loss) else None
    if bad is None and scaler.is_enabled():  # fp16: the scaler skips overflowing steps itself
        if max_norm:  # the gradients hold the loss scale: divide it out, then clip
            scaler.unscale_(opt)  # (scaler.step then knows they are unscaled already)
            torch.nn.utils.clip_grad_norm_(params, max_norm)
    elif bad is None:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm or math.inf)
        bad = "gradient norm" if not torch.isfinite(norm) else None
    if bad:
        raise SystemExit(f"error: the {bad} is not finite at step {where}: training diverged "
                         "(try a lower --lr); no results were written")  # fmt: skip


def save(run: Run, state: TrainState, optimizer: tuple | None = None, finished=None) -> None:
    """Checkpoint into ckpt/: the model, the method, and `state` with every random generator's
    and (inside a stage) `optimizer`'s (optimiser, schedule, loss scaler). After a stage that
    saves_teacher (`finished`), first the model into finetuned/, the teacher of later stages: a
    checkpoint past that stage implies a teacher. Only rank 0 writes."""
    opt, sched, scaler = optimizer or (None, None, None)
    state.rng = runs.rng_state()
    state.optimizer = None if opt is None else opt.state_dict()
    state.scheduler = None if sched is None else sched.state_dict()
    state.scaler = None if scaler is None else scaler.state_dict()
    if run.rank != 0:
        return
    if finished is not None and finished.saves_teacher:  # a later stage may learn from it
        runs.save_checkpoint(run.dir / "finetuned", run.model, None, run.meta, run.tokenizer_files)
    runs.save_checkpoint(run.dir / "ckpt", run.model, run.strategy, run.meta,
                         run.tokenizer_files, vars(state))  # fmt: skip


def resumed_state(run: Run) -> TrainState:
    """The trainer state of the run in --out-dir, its model and method loaded, checked first."""
    saved = runs.load_checkpoint(run.dir / "ckpt", run.model, run.strategy)
    if saved is None:
        raise SystemExit(f"error: --resume: {run.dir / 'ckpt'} holds no trainer state")
    stages = len(run.strategy.stages(run.cfg))
    runs.check_progress(saved, stages, run.dir / "ckpt" / "trainer_state.json")
    run.log(f"resuming at stage {saved['stage']} step {saved['step']}")
    if saved["step"] == 0:  # at a stage boundary: draw on as the straight run did
        runs.set_rng_state(saved["rng"])
    return TrainState(**{k: v for k, v in saved.items() if k in TrainState.__dataclass_fields__})


def finish(run: Run, started: float, extra: dict, eval_only: bool = False) -> dict:
    """Final evaluation: results.json and the pictures (eval.json alone after --eval-only)."""
    res = evaluate(run, run.strategy)
    runs.refuse_rebound(run.cfg.method)  # a method that patched what measures it counts nothing
    cases = report.case_study_rows(run.dev_feats, res.pop("exit_layers"), run.tokenizer,
                                   res.pop("predictions"))  # fmt: skip
    wall = round(time.time() - started, 1)
    results = {"method": run.cfg.method, "task": run.task.name, **res, "case_study": cases,
               "wall_time_s": wall, "config": run.meta, "versions": runs.versions(),
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
    run.log(f"final | {metrics} | kept {res['kept']:.3f} | speedup {f['none']['speedup']:.2f}x "
            f"(sequence padding {f['sequence']['speedup']:.2f}x) | GFLOPs "
            f"{f['none']['method_gflops']:.4f} | wall {wall}s | {runs.shown(run.dir)}")  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> dict:
    cfg, method, options = parse_config(argv)
    threads = torch.get_num_threads()
    try:
        if int(os.environ.get("RANK", "0")):  # torchrun: rank 0 holds the folder's lock
            return train(cfg, method, options)
        with runs.created(Path(cfg.out_dir)) as run_dir:
            command = " ".join(["train.py", *(sys.argv[1:] if argv is None else argv)])
            with runs.locked(run_dir, command, None if cfg.eval_only else run_dir / "log.txt"):
                return train(cfg, method, options)
    finally:
        torch.set_num_threads(threads)  # --threads is this run's setting, not the caller's
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    runs.exit_now(main)  # main(), then no exit hook of a method's may rewrite what it wrote
