"""Evaluation of a run on its dev set: the real pruned forward, metrics, FLOPs, kept tokens.

Evaluation always runs the pruned forward (skim.skim_forward with prune=True: skimmed tokens are
really removed), then scores the predictions (data.compute_metrics, or SQuAD's answers) and
counts the FLOPs of what ran with flops.py under the three padding settings (none, batch,
sequence) against the plain encoder's. train.py calls `evaluate` during training and at the end.
Tests: tests/test_train.py.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

import data
import flops
from skim import skim_forward


def evaluate(run, strategy) -> dict:
    """Metrics, FLOPs and kept tokens on the dev features of `run` (a train.Run), split over
    processes with torchrun. strategy: the method, or None for the plain encoder."""
    feats, task = run.dev_feats, run.task
    rows = predict(run, strategy)  # (feature index, prediction, tokens per layer, exit layers)
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
    bert_config = run.model.bert.config
    speed = flops.dataset_speedups(bert_config, lengths, tokens, strategy, run.cfg.max_length,
                                   run.cfg.eval_batch_size)  # fmt: skip
    flop_counts = {p: {"baseline_gflops": s.baseline_gflops, "method_gflops": s.method_gflops,
                       "baseline_gmacs": s.baseline_gflops / 2,
                       "method_gmacs": s.method_gflops / 2, "speedup": s.speedup}
                   for p, s in speed.items()}  # fmt: skip
    token_layers = bert_config.num_hidden_layers * np.sum(lengths)
    return {
        "metrics": metrics,
        "num_features": len(rows),
        "kept_per_layer": (np.array(tokens) / np.array(lengths)[:, None]).mean(0).round(4).tolist(),
        "kept": float(np.sum(tokens) / token_layers),  # the share of token-layers computed
        "flops": flop_counts,
        "exit_layers": [r[3] for r in rows[: run.cfg.case_study]],
        "predictions": [_answer(task, r[1]) for r in rows[: run.cfg.case_study]],
        **_keywords_kept(feats, [r[3] for r in rows], bert_config.num_hidden_layers),
    }


def _answer(task, prediction):
    """What the case study shows as the model's answer: a class id, a score for regression;
    None for spans (the answer is text, read from the SQuAD post-processing)."""
    if task.kind == "span":
        return None
    if task.kind == "regression":
        return round(float(np.ravel(prediction)[0]), 4)
    return int(np.argmax(prediction))


@torch.no_grad()
def predict(run, strategy) -> list[tuple]:
    """(feature index, prediction, tokens per layer, exit layers) of every dev feature, in order:
    the pruned forward, each process a share of the batches with torchrun."""
    run.model.eval(), run.strategy.eval()
    feats, rows = run.dev_feats, []
    order = data.batch_indices([len(f) for f in feats], run.cfg.eval_batch_size)
    for idx in tqdm(order[run.rank :: run.world], "eval", leave=False, disable=run.rank or None):
        batch = run.batch(idx, feats)
        with run.autocast:
            out = skim_forward(run.model, strategy, batch, prune=True)
        logits = out.logits.float()
        if run.task.kind == "span":
            logits = logits.masked_fill(batch["attention_mask"][..., None] == 0, -1e4)
        # to the host once per batch: on a GPU every .cpu() or .tolist() waits for the device
        logits = logits.cpu().numpy()
        tokens, exits = out.tokens_per_layer.tolist(), out.exit_layer.cpu()
        for b, i in enumerate(idx):
            n = len(feats[i])
            pred = logits[b, :n] if run.task.kind == "span" else logits[b]
            rows.append((i, pred, tokens[b], exits[b, :n].tolist()))
    if run.world > 1:
        gathered = [None] * run.world
        dist.all_gather_object(gathered, rows)
        rows = [r for part in gathered for r in part]
    return sorted(rows, key=lambda r: r[0])


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


def eval_line(step, loss, res, stage) -> str:
    """The log line of an evaluation during training: stage, step, loss, metrics, kept, speed-up."""
    metrics = " | ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items() if k != "main")
    none = res["flops"]["none"]
    return (f"[{stage}] step {step} | loss {loss:.4f} | {metrics} | kept {res['kept']:.3f} | "
            f"speedup {none['speedup']:.2f}x | GFLOPs {none['method_gflops']:.3f}")  # fmt: skip
