"""Train and evaluate every method with one script: baseline BERT, Transkimmer, TR-BERT.

    python train.py --method transkimmer --task sst2 --model sentence-transformers/all-MiniLM-L6-v2
    python train.py --method baseline --preset smoke          # a tiny model, offline, ~1 minute

The differences between methods live in one function, `compute_loss`, one branch per method.
Evaluation always runs the real pruned forward (skim.skim_forward with prune=True) and counts
FLOPs with flops.py under the three padding settings. A run folder holds: config.json (the
resolved configuration), log.txt, results.json, kept_tokens.svg (Transkimmer Fig. 4), case_study.html
(Transkimmer Table 5) and ckpt/ (a Hugging Face-style folder, written atomically, with the
optimiser state for --resume). Several GPUs: torchrun --nproc_per_node N train.py ...
Tests: tests/test_train.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import math
import os
import platform
import random
import shutil
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
from rl_policy import PolicyConfig, TRBertPolicy, reinforce_loss, residual_scores, reward
from skim import SkimConfig, Transkimmer, skim_forward, skim_loss
from transformer import CONFIGS, BertConfig, BertForTask
from weights import (
    CheckpointError,
    atomic_write,
    is_run_folder,
    load_encoder_weights,
    read_checkpoint,
    read_config,
    read_safetensors,
    released_name,
    resolve_model_dir,
    write_safetensors,
)

METHODS = ("baseline", "transkimmer", "trbert")


# ----------------------------------------------------------------------------------------------
# Configuration: one dataclass; the command line is generated from it


def _f(default, help, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Every setting of a run. None means "the task's default" (see `resolve`)."""

    method: str = _f("baseline", "which model to train", choices=METHODS)
    task: str = _f(
        "sst2",
        "task name (data.TASKS): cola sst2 mrpc qqp stsb mnli qnli rte wnli imdb yelp 20news squad2 synthetic",
    )
    model: str = _f(
        "bert-base-uncased",
        "model-hub name or local folder; 'random-tiny' etc. builds an untrained model of a transformer.CONFIGS shape",
    )
    data_dir: str | None = _f(
        None, "local folder with the task's files (else the cache, else a download)"
    )
    out_dir: str | None = _f(None, "run folder (default runs/<task>-<method>)")
    preset: str | None = _f(
        None,
        "'smoke': tiny model on the synthetic task, about a minute on a CPU",
        choices=("smoke",),
    )
    # data
    max_length: int | None = _f(None, "tokens per input (default: the task's, Transkimmer Table 2)")
    train_subset: int = _f(0, "train on the first N examples of a fixed shuffle (0 = all)")
    eval_subset: int = _f(0, "evaluate on the first N dev examples (0 = all)")
    padding: str = _f(
        "batch",
        "training batches: pad to the batch's longest or to the fixed length",
        choices=("batch", "sequence"),
    )
    # optimisation (defaults: the authors' recipe, METHODS.md)
    epochs: float | None = _f(None, "training epochs (default 3; 5 for MRPC and WNLI)")
    batch_size: int = _f(32, "examples per optimiser step (per process with torchrun)")
    eval_batch_size: int = _f(32, "examples per evaluation batch")
    lr: float = _f(2e-5, "AdamW learning rate for the backbone")
    skim_lr: float | None = _f(
        None, "learning rate of the skim predictors / policy (default: --lr)"
    )
    weight_decay: float = _f(0.01, "AdamW weight decay (not on biases and LayerNorm)")
    warmup: float = _f(0.0, "share of steps with linear warm-up (the authors use none)")
    seed: int = _f(42, "seed for initialisation, data order, dropout and sampling")
    # Transkimmer
    tau: float = _f(
        0.1, "Gumbel-softmax temperature τ (Transkimmer Sec. 4.2: 0.1; authors' code: 1)"
    )
    skim_weight: float | None = _f(
        None, "harmony coefficient λ of Eq. (7) (default: Table 2, per task)"
    )
    init_mean: float = _f(5.0, "μ0 of the unbalanced initialisation, Eq. (9)")
    # TR-BERT
    policy_layers: str = _f(
        "", "comma-separated 0-indexed layers with a policy (default 1 and L//2)"
    )
    length_penalty: float = _f(0.3, "λ of TR-BERT Eq. (4), on the selected fraction")
    num_samples: int = _f(8, "action sequences sampled per example (TR-BERT App. B)")
    imitation_fraction: float | None = _f(
        None, "share of stage-2 steps with a heuristic sample (0.5 classification, 0.2 QA)"
    )
    distill: bool = _f(
        True,
        "learn from the fine-tuned model's soft labels: TR-BERT's stage 3, and Transkimmer "
        "started from --finetuned",
    )
    finetuned: str | None = _f(
        None,
        "start from this fine-tuned (baseline) run's folder: TR-BERT skips stage 1, "
        "Transkimmer trains its predictors from there",
    )
    rl_epochs: float | None = _f(None, "TR-BERT stage 2 epochs (default ⌈(N+1)/2⌉)")
    # system
    device: str = _f("auto", "auto, cpu or cuda")
    precision: str = _f(
        "fp32", "fp32, or mixed precision bf16 / fp16 (CUDA)", choices=("fp32", "bf16", "fp16")
    )
    threads: int = _f(0, "CPU threads (0 = torch's default)")
    eval_every: int = _f(0, "evaluate every N steps (0 = at the end of each epoch)")
    log_every: int = _f(50, "print the training loss every N steps")
    resume: bool = _f(False, "continue the interrupted run in --out-dir")
    eval_only: bool = _f(
        False, "evaluate the run saved in --out-dir (or --model, a run's ckpt folder)"
    )
    stop_after_steps: int = _f(
        0, "save and stop after N steps in all (all stages), as if interrupted (to test --resume)"
    )
    case_study: int = _f(20, "dev examples in case_study.html")


PRESETS = {
    # a tiny model (2 layers, width 32) on the synthetic task: every method in about a minute on a CPU
    "smoke": dict(
        task="synthetic",
        model="random-tiny",
        epochs=3,
        batch_size=16,
        lr=3e-3,
        skim_lr=1e-3,
        skim_weight=0.1,
        tau=1.0,
        train_subset=1600,
        eval_subset=200,
        log_every=20,
        length_penalty=0.5,
        num_samples=4,
        rl_epochs=1,
        threads=1,
    ),  # one thread: a tiny model gains nothing from more, and a busy machine hurts
}


def build_parser() -> argparse.ArgumentParser:
    """One flag per TrainConfig field; its default and help text live only in the dataclass."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    for f in dataclasses.fields(TrainConfig):
        kind = f.type.split(" |")[0]
        flag = "--" + f.name.replace("_", "-")
        if kind == "bool":
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=f.default,
                help=f.metadata["help"],
            )
        else:
            parser.add_argument(
                flag,
                type={"int": int, "float": float}.get(kind, str),
                default=f.default,
                choices=f.metadata.get("choices"),
                help=f.metadata["help"],
            )
    return parser


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """Command line -> TrainConfig. A preset fills what the command line did not set."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    if args["preset"]:
        given = {
            a.dest
            for a in parser._actions
            if any(o in (argv or sys.argv[1:]) for o in a.option_strings)
        }
        args.update({k: v for k, v in PRESETS[args["preset"]].items() if k not in given})
    return TrainConfig(**args)


def resolve(cfg: TrainConfig, task: data.Task) -> TrainConfig:
    """Fill the task's defaults and check the values, before anything slow happens."""
    defaults = dict(
        max_length=task.max_length,
        skim_weight=task.skim_weight,
        epochs=5.0 if task.name in ("mrpc", "wnli") else 3.0,
        imitation_fraction=0.2 if task.kind == "span" else 0.5,
        out_dir=f"runs/{task.name}-{cfg.method}",
    )
    cfg = dataclasses.replace(cfg, **{k: v for k, v in defaults.items() if getattr(cfg, k) is None})
    if cfg.rl_epochs is None:
        cfg.rl_epochs = float(math.ceil((cfg.epochs + 1) / 2))  # TR-BERT App. B: ⌈(N+1)/2⌉
    problems = [
        f"--{name} must be positive, got {getattr(cfg, name)}"
        for name in (
            "batch_size",
            "eval_batch_size",
            "lr",
            "epochs",
            "max_length",
            "num_samples",
            "tau",
        )
        if not getattr(cfg, name) > 0
    ]
    problems += [
        f"--{n} must be ≥ 0, got {getattr(cfg, n)}"
        for n in ("skim_weight", "length_penalty", "warmup", "train_subset", "eval_subset")
        if getattr(cfg, n) < 0
    ]
    if cfg.precision != "fp32" and not torch.cuda.is_available():
        problems.append(f"--precision {cfg.precision} needs a CUDA GPU; use fp32 on a CPU")
    if cfg.policy_layers and not all(p.strip().isdigit() for p in cfg.policy_layers.split(",")):
        problems.append(
            f"--policy-layers must be comma-separated layer indices, got {cfg.policy_layers!r}"
        )
    if problems:
        raise SystemExit("error: " + "; ".join(problems))
    return cfg


# ----------------------------------------------------------------------------------------------
# Building the model, the strategy and the data


def build_model(cfg: TrainConfig, task: data.Task, run_dir: Path):
    """(model, strategy, tokenizer, bert config). Pretrained weights come from --model; the head
    and any skim modules are new."""
    if cfg.model.startswith("random-"):
        shape = cfg.model.removeprefix("random-")
        if shape not in CONFIGS:
            raise SystemExit(
                f"error: --model {cfg.model}: known shapes are random-{', random-'.join(CONFIGS)}"
            )
        if task.name != "synthetic":
            raise SystemExit(
                "error: an untrained random model has no vocabulary; use --task synthetic"
            )
        folder = run_dir / "vocab"
        data.write_synthetic_vocab(folder)
        vocab_size = len((folder / "vocab.txt").read_text().split("\n"))
        bert_cfg = dataclasses.replace(CONFIGS[shape], vocab_size=vocab_size)
        model = BertForTask(bert_cfg, task.kind, task.num_labels)
    else:
        try:
            folder = resolve_model_dir(cfg.model)
            bert_cfg = read_config(folder)
            model = BertForTask(bert_cfg, task.kind, task.num_labels)
            load_encoder_weights(
                model.bert, read_checkpoint(folder), str(folder), run_folder=is_run_folder(folder)
            )
        except (CheckpointError, RuntimeError) as e:
            raise SystemExit(f"error: --model {cfg.model}: {e}") from None
    if cfg.max_length > bert_cfg.max_position_embeddings:
        raise SystemExit(
            f"error: --max-length {cfg.max_length} exceeds the model's {bert_cfg.max_position_embeddings} positions"
        )
    try:
        tokenizer = data.load_tokenizer(folder)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    return model, build_strategy(cfg, bert_cfg), tokenizer, bert_cfg


def build_strategy(cfg: TrainConfig, bert_cfg: BertConfig):
    if cfg.method == "transkimmer":
        return Transkimmer(
            bert_cfg, SkimConfig(tau=cfg.tau, skim_weight=cfg.skim_weight, init_mean=cfg.init_mean)
        )
    if cfg.method == "trbert":
        layers = tuple(int(p) for p in cfg.policy_layers.split(",")) if cfg.policy_layers else ()
        try:
            return TRBertPolicy(
                bert_cfg,
                PolicyConfig(
                    layers=layers,
                    length_penalty=cfg.length_penalty,
                    num_samples=cfg.num_samples,
                    imitation_fraction=cfg.imitation_fraction,
                    distill=cfg.distill,
                ),
            )
        except AssertionError as e:
            raise SystemExit(f"error: --policy-layers: {e}") from None
    return None


def load_features(cfg: TrainConfig, task: data.Task, tokenizer):
    """Train and dev features (dev: the first evaluation split, e.g. SST-2 dev, IMDB test)."""
    try:
        train_ex = data.load_examples(task, "train", cfg.data_dir)
        dev_ex = data.load_examples(task, task.splits[1], cfg.data_dir)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        raise SystemExit(f"error: {e}") from None
    if cfg.train_subset:  # a fixed shuffle, so a subset is a fair sample of the classes
        order = np.random.default_rng(0).permutation(len(train_ex))[: cfg.train_subset]
        train_ex = [train_ex[i] for i in sorted(order)]
    if cfg.eval_subset:
        dev_ex = dev_ex[: cfg.eval_subset]
    return (
        train_ex,
        data.encode(task, train_ex, tokenizer, cfg.max_length),
        dev_ex,
        data.encode(task, dev_ex, tokenizer, cfg.max_length),
    )


# ----------------------------------------------------------------------------------------------
# Losses: the only place where the methods differ


def task_loss(
    task: data.Task, logits: torch.Tensor, batch: dict, teacher: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-example loss (B,): cross-entropy, MSE for regression, mean of start/end CE for spans.
    With teacher logits, the soft cross-entropy to them instead (knowledge distillation, T = 1)."""
    if task.kind == "regression":
        target = batch["labels"].float() if teacher is None else teacher.squeeze(-1)
        return (logits.squeeze(-1).float() - target) ** 2
    if task.kind == "span":
        logits = logits.float().masked_fill(
            batch["attention_mask"][..., None] == 0, -1e4
        )  # pads are no answer
        if teacher is not None:
            teacher = teacher.float().masked_fill(batch["attention_mask"][..., None] == 0, -1e4)
            return -(teacher.softmax(1) * logits.log_softmax(1)).sum(1).mean(-1)
        start = F.cross_entropy(logits[..., 0], batch["start_positions"], reduction="none")
        end = F.cross_entropy(logits[..., 1], batch["end_positions"], reduction="none")
        return (start + end) / 2
    if teacher is not None:
        return -(teacher.float().softmax(-1) * logits.float().log_softmax(-1)).sum(-1)
    return F.cross_entropy(logits.float(), batch["labels"], reduction="none")


def compute_loss(
    cfg: TrainConfig, task: data.Task, model, strategy, batch: dict, stage: str, teacher_model=None
) -> tuple[torch.Tensor, dict]:
    """The training loss of one batch, and numbers to log. stage: "finetune", "policy" or "joint"."""
    if cfg.method == "baseline" or stage == "finetune":
        out = skim_forward(model, None, batch, prune=False)
        return task_loss(task, out.logits, batch).mean(), {}

    if cfg.method == "transkimmer":
        # Transkimmer Eq. (7): Loss_total = Loss_downstream + λ·Loss_skim
        out = skim_forward(model, strategy, batch, prune=False)
        loss_skim = skim_loss(out, batch["attention_mask"])
        teacher = None
        if (
            teacher_model is not None
        ):  # DEVIATION: started from a fine-tuned run, learn its soft labels
            with torch.no_grad():
                teacher = teacher_model(
                    batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
                )
        loss = task_loss(task, out.logits, batch, teacher).mean() + cfg.skim_weight * loss_skim
        return loss, {"skim": loss_skim.item()}

    # TR-BERT: S sampled action sequences per example, side by side
    S = cfg.num_samples
    rep = {k: v.repeat_interleave(S, 0) for k, v in batch.items()}
    if (
        "guide_scores" in batch
    ):  # imitation warm-up: the first sample of each example follows the heuristic
        rep["guide_rows"] = (
            torch.arange(len(rep["input_ids"]), device=batch["input_ids"].device) % S == 0
        )
    out = skim_forward(model, strategy, rep, prune=False)
    hard = task_loss(task, out.logits, rep)  # (B·S,)
    selected = out.tokens_per_layer[:, list(strategy.layers)]  # (B·S, M)
    rewards = reward(hard.detach(), selected, rep["attention_mask"].sum(1), cfg.length_penalty)
    log_probs = sum(out.extras[i] for i in strategy.layers)  # (B·S,): Σ over modules of log π(a|s)
    loss_rl = reinforce_loss(log_probs, rewards, S)
    logs = {
        "reward": rewards.mean().item(),
        "kept": (selected.float() / rep["attention_mask"].sum(1, keepdim=True)).mean().item(),
    }
    if stage == "policy":  # stage 2: the backbone is frozen, only the policy learns
        return loss_rl, logs
    if cfg.distill and teacher_model is not None:  # stage 3: task (distilled) + RL objectives
        with torch.no_grad():
            teacher = teacher_model(
                batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
            )
        hard = task_loss(task, out.logits, rep, teacher.repeat_interleave(S, 0))
    return hard.mean() + loss_rl, logs


# ----------------------------------------------------------------------------------------------
# Evaluation: the real pruned forward, metrics, FLOPs under three padding settings


@torch.no_grad()
def evaluate(
    cfg: TrainConfig, task: data.Task, model, strategy, examples, features, device, ctx
) -> dict:
    """Metrics, FLOPs and kept tokens on `features`, split over processes with torchrun."""
    model.eval()
    if strategy is not None:
        strategy.eval()
    rank, world = _rank_world()
    batches = data.batch_indices([len(f) for f in features], cfg.eval_batch_size)
    rows = []  # (feature index, prediction, tokens per layer, exit layers)
    for idx in tqdm(batches[rank::world], desc="eval", leave=False, disable=rank != 0 or None):
        batch = _to(data.collate([features[i] for i in idx], "batch"), device)
        with ctx:
            out = skim_forward(model, strategy, batch, prune=True)
        logits = out.logits.float()
        if task.kind == "span":
            logits = logits.masked_fill(batch["attention_mask"][..., None] == 0, -1e4)
        for b, i in enumerate(idx):
            n = len(features[i])
            pred = logits[b, :n].cpu().numpy() if task.kind == "span" else logits[b].cpu().numpy()
            rows.append((i, pred, out.tokens_per_layer[b].tolist(), out.exit_layer[b, :n].tolist()))
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, rows)
        rows = [r for part in gathered for r in part]
    rows.sort(key=lambda r: r[0])
    predictions = [r[1] for r in rows]
    if task.kind == "span":
        answers = data.squad_predictions(
            examples, features, [p[:, 0] for p in predictions], [p[:, 1] for p in predictions]
        )
        metrics = data.compute_metrics(
            task, answers, {e.uid: [a for a, _ in e.answers] for e in examples}
        )
    else:
        metrics = data.compute_metrics(
            task, np.stack(predictions), np.array([f.label for f in features])
        )
    lengths = [len(f) for f in features]
    tokens = [r[2] for r in rows]
    bert_cfg = model.bert.config
    L = bert_cfg.num_hidden_layers
    score_cost = [
        strategy.overhead_flops(bert_cfg, 1) if strategy is not None and i in strategy.layers else 0
        for i in range(L)
    ]
    speed = flops.dataset_speedups(
        bert_cfg, lengths, tokens, score_cost, cfg.max_length, cfg.eval_batch_size
    )
    kept_per_layer = (np.array(tokens) / np.array(lengths)[:, None]).mean(0)
    return {
        "metrics": metrics,
        "num_features": len(rows),
        "kept_per_layer": kept_per_layer.round(4).tolist(),  # mean share of each example's tokens
        "kept": float(np.sum(tokens) / (L * np.sum(lengths))),  # share of token-layers computed
        "flops": {
            p: {
                "baseline_gflops": s.baseline_gflops,
                "method_gflops": s.method_gflops,
                "baseline_gmacs": s.baseline_gflops / 2,
                "method_gmacs": s.method_gflops / 2,
                "speedup": s.speedup,
            }
            for p, s in speed.items()
        },
        "exit_layers": [r[3] for r in rows[: cfg.case_study]],
    }


# ----------------------------------------------------------------------------------------------
# Checkpoints: a Hugging Face-style folder, written atomically


def save_checkpoint(
    folder: Path,
    cfg: TrainConfig,
    task: data.Task,
    model,
    strategy,
    vocab_dir: str,
    trainer_state: dict | None = None,
):
    """ckpt/ = config.json + model.safetensors (+ trainer_state.pt). Encoder tensors carry their
    released names under `bert.` (so weights.from_pretrained and transformers can read them),
    the head is `classifier` or `qa_outputs`, skim modules `skim.*`, the policy `policy.*`.
    Written into ckpt.tmp/ and swapped in by renames: an interruption never leaves half a checkpoint."""
    final, tmp, old = (
        folder,
        folder.with_name(folder.name + ".tmp"),
        folder.with_name(folder.name + ".old"),
    )
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    head = "qa_outputs" if task.kind == "span" else "classifier"
    tensors = {f"bert.{released_name(k)}": v for k, v in model.bert.state_dict().items()}
    tensors.update({f"{head}.{k}": v for k, v in model.head.state_dict().items()})
    if strategy is not None:
        prefix = "skim" if cfg.method == "transkimmer" else "policy"
        tensors.update({f"{prefix}.{k}": v for k, v in strategy.state_dict().items()})
    write_safetensors(tensors, tmp / "model.safetensors")
    meta = {
        **model.bert.config.to_dict(),
        "num_labels": model.num_labels,
        "skimbert": {
            "method": cfg.method,
            "task": task.name,
            "kind": task.kind,
            "train_config": dataclasses.asdict(cfg),
        },
    }
    atomic_write(tmp / "config.json", json.dumps(meta, indent=2).encode())
    for name in (
        "vocab.txt",
        "tokenizer_config.json",
    ):  # so the folder also feeds data.load_tokenizer
        if (Path(vocab_dir) / name).is_file():
            shutil.copy(Path(vocab_dir) / name, tmp / name)
    if trainer_state is not None:
        torch.save(trainer_state, tmp / "trainer_state.pt")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: Path, cfg: TrainConfig, model, strategy) -> dict | None:
    """Load a run's ckpt/ folder into model and strategy; returns its trainer state, if any."""
    old = folder.with_name(folder.name + ".old")
    if not (folder / "config.json").is_file() and (old / "config.json").is_file():
        folder = old  # interrupted between the two renames of save_checkpoint
    try:
        tensors = read_safetensors(folder / "model.safetensors")
    except (CheckpointError, FileNotFoundError) as e:
        raise SystemExit(f"error: cannot load the run's checkpoint: {e}") from None
    load_encoder_weights(
        model.bert, {k: v for k, v in tensors.items() if k.startswith("bert.")}, str(folder)
    )
    head = "qa_outputs" if model.kind == "span" else "classifier"
    model.head.load_state_dict(
        {k.removeprefix(head + "."): v for k, v in tensors.items() if k.startswith(head + ".")}
    )
    if strategy is not None:
        prefix = "skim." if cfg.method == "transkimmer" else "policy."
        strategy.load_state_dict(
            {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        )
    state = folder / "trainer_state.pt"
    return torch.load(state, weights_only=False) if state.is_file() else None


# ----------------------------------------------------------------------------------------------
# The training loop (one for every method and stage)


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rank_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _stages(cfg: TrainConfig) -> list[tuple[str, float]]:
    """(stage, epochs) in order. TR-BERT (Sec. 3.2): fine-tune; policy alone; everything together."""
    if cfg.method != "trbert":
        return [("finetune" if cfg.method == "baseline" else "joint", cfg.epochs)]
    stages = [] if cfg.finetuned else [("finetune", cfg.epochs)]
    return stages + [("policy", cfg.rl_epochs), ("joint", cfg.epochs)]


def make_optimizer(cfg: TrainConfig, model, strategy, stage: str, total_steps: int):
    """AdamW without decay on biases and LayerNorms; stage "policy" trains the policy alone."""
    groups = {(True, False): [], (False, False): [], (True, True): [], (False, True): []}
    modules = [] if stage == "policy" else [(model, False)]
    if strategy is not None and stage != "finetune":
        modules.append((strategy, True))
    for module, is_skim in modules:
        for p in module.parameters():
            groups[(p.ndim >= 2, is_skim)].append(p)  # biases and LayerNorm gains are 1-D: no decay
    trainable = {id(p) for ps in groups.values() for p in ps}
    for module in (model, strategy):
        for p in module.parameters() if module is not None else []:
            p.requires_grad_(id(p) in trainable)
    skim_lr = cfg.skim_lr or cfg.lr
    opt = torch.optim.AdamW(
        [
            {
                "params": ps,
                "weight_decay": cfg.weight_decay if decay else 0.0,
                "lr": skim_lr if is_skim else cfg.lr,
            }
            for (decay, is_skim), ps in groups.items()
            if ps
        ]
    )
    warm = max(1, int(cfg.warmup * total_steps))
    # linear warm-up (if any), then linear decay to 0
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(
            (s + 1) / warm if cfg.warmup else 1.0,
            max(0.0, (total_steps - s) / max(1, total_steps - warm)),
        ),
    )
    return opt, sched


def train(cfg: TrainConfig) -> dict:
    """Train (or, with --eval-only, just evaluate) one run; returns the final results."""
    started = time.time()
    task = _known_task(cfg.task)
    cfg = resolve(cfg, task)
    if cfg.data_dir and not Path(cfg.data_dir).expanduser().is_dir():
        raise SystemExit(f"error: --data-dir {cfg.data_dir} is not a folder")
    run_dir = Path(cfg.out_dir)
    if (
        cfg.resume
        and not (run_dir / "ckpt" / "trainer_state.pt").is_file()
        and not (run_dir / "ckpt.old").is_dir()
    ):
        raise SystemExit(f"error: --resume: no checkpoint in {run_dir / 'ckpt'}")
    if cfg.finetuned and not (Path(cfg.finetuned) / "ckpt" / "model.safetensors").is_file():
        raise SystemExit(
            f"error: --finetuned {cfg.finetuned}: no ckpt/model.safetensors there (a baseline run folder)"
        )
    device = torch.device(
        "cuda"
        if cfg.device == "auto" and torch.cuda.is_available()
        else ("cpu" if cfg.device == "auto" else cfg.device)
    )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but no CUDA GPU is available")
    if "LOCAL_RANK" in os.environ and not dist.is_initialized():  # started by torchrun
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
    rank, world = _rank_world()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = _Logger(run_dir / "log.txt", rank == 0)
    log(
        f"skimbert {cfg.method} on {task.name} ({device}, {world} process{'es' if world > 1 else ''})\n"
        + "\n".join(f"  {k:<19}{v}" for k, v in dataclasses.asdict(cfg).items())
    )
    seed_everything(cfg.seed)
    model, strategy, tokenizer, bert_cfg = build_model(cfg, task, run_dir)
    train_ex, train_feats, dev_ex, dev_feats = load_features(cfg, task, tokenizer)
    log(
        f"{len(train_feats)} train and {len(dev_feats)} dev features; model {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters"
    )
    if rank == 0:
        atomic_write(
            run_dir / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2).encode()
        )
    vocab_dir = str(
        run_dir / "vocab" if cfg.model.startswith("random-") else resolve_model_dir(cfg.model)
    )
    model.to(device)
    if strategy is not None:
        strategy.to(device)
    ctx = (
        torch.autocast(
            device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]
        )
        if cfg.precision != "fp32"
        else torch.autocast(device.type, enabled=False)
    )

    if cfg.eval_only:
        load_checkpoint(run_dir / "ckpt", cfg, model, strategy)
        return _finish(
            cfg,
            task,
            model,
            strategy,
            dev_ex,
            dev_feats,
            device,
            ctx,
            run_dir,
            tokenizer,
            log,
            started,
            {},
        )

    state = {"stage": 0, "step": 0, "history": []}
    if cfg.resume:
        state = load_checkpoint(run_dir / "ckpt", cfg, model, strategy)
        if state is None:
            raise SystemExit(f"error: --resume: {run_dir / 'ckpt'} holds no trainer state")
        log(f"resuming at stage {state['stage']} step {state['step']}")
    elif cfg.finetuned:
        load_checkpoint(
            Path(cfg.finetuned) / "ckpt", dataclasses.replace(cfg, method="baseline"), model, None
        )
        log(f"starting from the fine-tuned run {cfg.finetuned}")
    teacher, scores = None, None
    stages = _stages(cfg)
    for s in range(state["stage"], len(stages)):
        stage, epochs = stages[s]
        # the fine-tuned model: TR-BERT's scorer and teacher; Transkimmer's teacher when it starts from one
        wants_teacher = (
            cfg.method == "trbert"
            and stage != "finetune"
            or cfg.method == "transkimmer"
            and cfg.finetuned
            and cfg.distill
        )
        if wants_teacher and teacher is None:
            teacher = BertForTask(bert_cfg, task.kind, task.num_labels).to(device)
            teacher_dir = Path(cfg.finetuned) / "ckpt" if cfg.finetuned else run_dir / "finetuned"
            load_checkpoint(teacher_dir, dataclasses.replace(cfg, method="baseline"), teacher, None)
            teacher.eval().requires_grad_(False)
            if cfg.method == "transkimmer":
                log(f"distilling from {teacher_dir}")
        if cfg.method == "trbert" and stage == "policy":
            scores = _residual_scores(cfg, task, teacher, train_feats, device, log)
        state = _train_stage(
            cfg,
            task,
            model,
            strategy,
            teacher,
            stage,
            epochs,
            train_feats,
            dev_ex,
            dev_feats,
            device,
            ctx,
            run_dir,
            log,
            state,
            scores,
            vocab_dir,
        )
        if state.get("stopped"):
            return {"stopped": True}
    return _finish(
        cfg,
        task,
        model,
        strategy,
        dev_ex,
        dev_feats,
        device,
        ctx,
        run_dir,
        tokenizer,
        log,
        started,
        {"history": state["history"]},
    )


def _known_task(name: str) -> data.Task:
    try:
        return data.get_task(name)
    except KeyError as e:
        raise SystemExit(f"error: --task: {e.args[0]}") from None


def _residual_scores(cfg, task, teacher, feats, device, log):
    """The Residual Strategy's importance of every training token, computed once with the
    fine-tuned model (TR-BERT Sec. 2, 3.2)."""
    L = teacher.bert.config.num_hidden_layers
    layers = PolicyConfig(
        layers=tuple(int(p) for p in cfg.policy_layers.split(",")) if cfg.policy_layers else ()
    ).resolved_layers(L)
    l, r = layers[0], max(layers[0] + 1, round(0.75 * L))  # r = 9 of 12 in the paper
    scores = [None] * len(feats)
    log(f"residual scores: l = {l}, r = {r}, on {len(feats)} training features")
    for idx in data.batch_indices([len(f) for f in feats], cfg.eval_batch_size):
        batch = _to(data.collate([feats[i] for i in idx], "batch"), device)
        s = residual_scores(
            teacher, batch, lambda logits, b: task_loss(task, logits, b).sum(), l, r
        )
        for b, i in enumerate(idx):
            scores[i] = s[b, : len(feats[i])].cpu()
    return scores


def _train_stage(
    cfg,
    task,
    model,
    strategy,
    teacher,
    stage,
    epochs,
    feats,
    dev_ex,
    dev_feats,
    device,
    ctx,
    run_dir,
    log,
    state,
    guide_scores,
    vocab_dir,
):
    rank, world = _rank_world()
    per_epoch = math.ceil(len(feats) / cfg.batch_size) // world
    total = max(1, int(per_epoch * epochs))
    opt, sched = make_optimizer(cfg, model, strategy, stage, total)
    scaler = torch.amp.GradScaler(enabled=cfg.precision == "fp16")
    runner = _LossModule(cfg, task, model, strategy, teacher)
    if world > 1:  # one DDP per stage: the set of trainable parameters changes between stages
        runner = torch.nn.parallel.DistributedDataParallel(runner, find_unused_parameters=True)
    if state["step"]:  # resuming inside this stage
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
    step = state["step"]
    imitation_steps = int(cfg.imitation_fraction * total) if stage == "policy" else 0
    log(
        f"stage {stage}: {epochs:g} epochs, {total} steps"
        + (f", {imitation_steps} with imitation" if imitation_steps else "")
    )
    bar = tqdm(total=total, initial=step, desc=stage, disable=rank != 0 or None)
    while step < total:
        epoch, skip = divmod(step, per_epoch)
        batches = data.batch_indices(
            [len(f) for f in feats],
            cfg.batch_size,
            shuffle=True,
            seed=cfg.seed + 1000 * state["stage"],
            epoch=epoch,
            bucket=cfg.padding == "batch",
        )[: per_epoch * world]
        for idx in batches[rank::world][skip:]:
            model.train()
            if strategy is not None:
                strategy.train()
            batch = _to(data.collate([feats[i] for i in idx], cfg.padding, cfg.max_length), device)
            if (
                step < imitation_steps
            ):  # one of every example's samples follows the Residual Strategy
                grid = torch.zeros(batch["input_ids"].shape)
                for b, i in enumerate(idx):
                    grid[b, : len(guide_scores[i])] = guide_scores[i]
                batch["guide_scores"] = grid.to(device)
            with ctx:
                loss, logs = runner(batch, stage)
            opt.zero_grad(set_to_none=True)
            scaler.scale(
                loss
            ).backward()  # with torchrun, DDP averages the gradients over processes here
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            state["steps_done"] = (
                state.get("steps_done", 0) + 1
            )  # over all stages, for --stop-after-steps
            bar.update()
            if step % cfg.log_every == 0:
                bar.write(
                    f"step {step} | loss {loss.item():.4f}"
                    + "".join(f" | {k} {v:.3f}" for k, v in logs.items())
                ) if rank == 0 else None
            end_of_epoch = step % per_epoch == 0 or step == total
            if (
                (cfg.eval_every and step % cfg.eval_every == 0)
                or (not cfg.eval_every and end_of_epoch)
                or step == total
            ):
                res = evaluate(
                    cfg,
                    task,
                    model,
                    strategy if stage != "finetune" else None,
                    dev_ex,
                    dev_feats,
                    device,
                    ctx,
                )
                line = _eval_line(task, step, loss.item(), res, stage)
                log(line)
                state["history"].append(
                    {
                        "stage": stage,
                        "step": step,
                        "metrics": res["metrics"],
                        "kept": res["kept"],
                        "speedup_none": res["flops"]["none"]["speedup"],
                    }
                )
            stop = cfg.stop_after_steps and state["steps_done"] == cfg.stop_after_steps
            if end_of_epoch or stop or step == total:
                state.update(
                    step=step,
                    optimizer=opt.state_dict(),
                    scheduler=sched.state_dict(),
                    rng={
                        "torch": torch.get_rng_state(),
                        "numpy": np.random.get_state(),
                        "python": random.getstate(),
                    },
                )
                if rank == 0:
                    save_checkpoint(
                        run_dir / "ckpt",
                        cfg,
                        task,
                        model,
                        strategy,
                        vocab_dir,
                        state
                        if step < total
                        else {
                            "stage": state["stage"] + 1,
                            "step": 0,
                            "history": state["history"],
                            "steps_done": state["steps_done"],
                        },
                    )
                    if (
                        stage == "finetune" and step == total and cfg.method == "trbert"
                    ):  # TR-BERT's teacher
                        save_checkpoint(
                            run_dir / "finetuned",
                            dataclasses.replace(cfg, method="baseline"),
                            task,
                            model,
                            None,
                            vocab_dir,
                        )
            if stop:
                log(f"stopped after step {step} (--stop-after-steps); continue with --resume")
                bar.close()
                return {**state, "stopped": True}
            if step == total:
                break
    bar.close()
    return {
        "stage": state["stage"] + 1,
        "step": 0,
        "history": state["history"],
        "steps_done": state["steps_done"],
    }


class _LossModule(torch.nn.Module):
    """compute_loss as a module, so that DistributedDataParallel can wrap model and strategy."""

    def __init__(self, cfg, task, model, strategy, teacher):
        super().__init__()
        self.cfg, self.task, self.model, self.strategy = cfg, task, model, strategy
        self.teacher = [teacher]  # in a list: not a submodule, DDP must not sync the frozen teacher

    def forward(self, batch, stage):
        return compute_loss(
            self.cfg, self.task, self.model, self.strategy, batch, stage, self.teacher[0]
        )


def _eval_line(task, step, loss, res, stage) -> str:
    metrics = " | ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items() if k != "main")
    return (
        f"[{stage}] step {step} | loss {loss:.4f} | {metrics} | kept {res['kept']:.3f} | "
        f"speedup {res['flops']['none']['speedup']:.2f}x | GFLOPs {res['flops']['none']['method_gflops']:.3f}"
    )


def _finish(
    cfg,
    task,
    model,
    strategy,
    dev_ex,
    dev_feats,
    device,
    ctx,
    run_dir,
    tokenizer,
    log,
    started,
    extra,
) -> dict:
    """Final evaluation; results.json, kept_tokens.svg and case_study.html in the run folder."""
    res = evaluate(cfg, task, model, strategy, dev_ex, dev_feats, device, ctx)
    results = {
        "method": cfg.method,
        "task": task.name,
        **{k: v for k, v in res.items() if k != "exit_layers"},
        "wall_time_s": round(time.time() - started, 1),
        "config": dataclasses.asdict(cfg),
        "versions": _versions(),
        **extra,
    }
    if _rank_world()[0] == 0:
        atomic_write(run_dir / "results.json", json.dumps(results, indent=2).encode())
        atomic_write(
            run_dir / "kept_tokens.svg",
            kept_tokens_svg(res["kept_per_layer"], f"{cfg.method} on {task.name}").encode(),
        )
        atomic_write(
            run_dir / "case_study.html",
            case_study_html(
                dev_feats, res["exit_layers"], tokenizer, model.bert.config.num_hidden_layers, cfg
            ).encode(),
        )
    metrics = " | ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items() if k != "main")
    log(
        f"final | {metrics} | kept {res['kept']:.3f} | speedup {res['flops']['none']['speedup']:.2f}x "
        f"(sequence padding {res['flops']['sequence']['speedup']:.2f}x) | GFLOPs {res['flops']['none']['method_gflops']:.4f} "
        f"| wall {results['wall_time_s']}s | {run_dir}"
    )
    return results


def _versions() -> dict:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "commit": commit,
    }


class _Logger:
    """Print and append to the run's log.txt (rank 0 only)."""

    def __init__(self, path: Path, active: bool):
        self.path, self.active = path, active

    def __call__(self, line: str):
        if self.active:
            tqdm.write(line)
            with open(self.path, "a") as f:
                f.write(line + "\n")


# ----------------------------------------------------------------------------------------------
# Pictures: the layer-wise kept-token curve (Fig. 4) and the case study (Table 5)


def kept_tokens_svg(kept_per_layer: list[float], title: str) -> str:
    """A line chart, written by hand as SVG (no plotting dependency): share of tokens per layer."""
    W, H, pad = 480, 300, 48
    L = len(kept_per_layer)
    x = lambda i: pad + i * (W - 2 * pad) / max(1, L - 1)  # noqa: E731
    y = lambda v: H - pad - v * (H - 2 * pad)  # noqa: E731
    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(kept_per_layer))
    ticks = "".join(
        f'<text x="{x(i):.1f}" y="{H - pad + 18}" text-anchor="middle">{i}</text>' for i in range(L)
    )
    yt = "".join(
        f'<text x="{pad - 8}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>'
        f'<line x1="{pad}" x2="{W - pad}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
        for v in (0, 0.25, 0.5, 0.75, 1)
    )
    dots = "".join(
        f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3"/>' for i, v in enumerate(kept_per_layer)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">'
        f'<rect width="{W}" height="{H}" fill="white"/>{yt}{ticks}'
        f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="2"/>{dots}'
        f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{html.escape(title)}: share of tokens per layer</text>'
        f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle">layer</text></svg>'
    )


def case_study_html(features, exit_layers, tokenizer, L: int, cfg: TrainConfig) -> str:
    """Dev examples with each token coloured by the layer before which it was skimmed."""
    palette = [
        f"hsl({int(220 * i / max(1, L))}, 70%, {45 + 40 * (1 - i / max(1, L)):.0f}%)"
        for i in range(L + 1)
    ]
    rows = []
    for f, exits in zip(features, exit_layers):
        spans = "".join(
            f'<span title="layer {e}" style="background:{palette[e]}">{html.escape(tokenizer.id_to_token(int(t)))}</span> '
            for t, e in zip(f.input_ids, exits)
        )
        rows.append(f"<p>{spans}</p>")
    legend = "".join(
        f'<span style="background:{palette[i]}">{"kept to the end" if i == L else f"skimmed before layer {i}"}</span> '
        for i in range(L + 1)
    )
    return (
        f"<!doctype html><meta charset='utf-8'><title>case study: {cfg.method} on {cfg.task}</title>"
        f"<h1>{cfg.method} on {cfg.task}: where each token was skimmed</h1><p>{legend}</p>{''.join(rows)}"
    )


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(argv)
    threads = torch.get_num_threads()
    try:
        return train(cfg)
    finally:
        torch.set_num_threads(threads)  # --threads is this run's setting, not the caller's
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
