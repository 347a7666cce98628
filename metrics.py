"""Metrics: pure functions of numpy predictions and labels, and SQuAD v2's official scorer.

Accuracy, binary F1, Matthews correlation (CoLA), Pearson and Spearman correlations (STS-B), and
SQuAD v2's exact match and F1 (evaluate-v2.0.py); `compute_metrics` picks a task's. Each is
checked against scikit-learn, scipy or the official script in tests/test_data.py.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Sequence

import numpy as np


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of predictions equal to the label."""
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def f1_binary(predictions: np.ndarray, labels: np.ndarray) -> float:
    """F1 of the positive class 1: 2·TP / (2·TP + FP + FN); 0.0 when there is no positive at all."""
    p, y = np.asarray(predictions) == 1, np.asarray(labels) == 1
    tp, wrong = np.sum(p & y), np.sum(p != y)
    return float(2 * tp / (2 * tp + wrong)) if tp + wrong else 0.0


def matthews(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation from the confusion matrix (any number of classes; 0.0 if undefined).

    MCC = (c·s − Σ_k p_k·t_k) / sqrt((s² − Σ_k p_k²)(s² − Σ_k t_k²)), c correct, s total,
    p_k predicted and t_k true counts of class k. Constant predictions make the root 0: we return 0.
    """
    classes, inverse = np.unique(np.concatenate([predictions, labels]), return_inverse=True)
    p, y = inverse[: len(predictions)], inverse[len(predictions) :]
    counts = np.zeros((len(classes), len(classes)))
    np.add.at(counts, (y, p), 1)
    t, q, c, s = counts.sum(1), counts.sum(0), np.trace(counts), counts.sum()
    denominator = np.sqrt((s * s - q @ q) * (s * s - t @ t))
    return float((c * s - q @ t) / denominator) if denominator > 0 else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either side is constant (undefined, not NaN), but NaN when
    either holds a NaN or an infinity: a diverged model's scores must not read as "no
    correlation"."""
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    x, y = np.asarray(x, np.float64) - np.mean(x), np.asarray(y, np.float64) - np.mean(y)
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denominator) if denominator > 0 else 0.0


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..N, tied values sharing the mean of their ranks ([10, 20, 20] -> [1, 2.5, 2.5])."""
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation: Pearson of the average ranks (NaN if either side is not finite:
    ranks would place a NaN last, as if it were the highest score)."""
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    return pearson(average_ranks(x), average_ranks(y))


def compute_metrics(task, predictions, labels) -> dict[str, float]:
    """The metrics of `task` (a data.Task) and "main" (its headline metric), as fractions in
    [0, 1] (or −1..1).

    Classification: predictions are class ids (N,) or logits (N, C); labels (N,). Regression:
    scores (N,) or (N, 1). SQuAD: predictions {question id: text}, labels {question id: gold texts}.
    A prediction or label that is not finite makes every metric NaN (never a score).
    """
    if task.kind == "span":
        scores = squad_scores(predictions, labels)
        return {**scores, "main": scores[task.main_metric]}
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if not (np.isfinite(predictions).all() and np.isfinite(labels).all()):
        # a NaN logit's argmax is a class like any other: every metric would look like a score
        return {**{name: float("nan") for name in task.metrics}, "main": float("nan")}
    if task.kind == "classification" and predictions.ndim == 2:
        predictions = predictions.argmax(-1)
    predictions = predictions.reshape(len(labels))
    functions = {
        "accuracy": accuracy,
        "f1": f1_binary,
        "matthews": matthews,
        "pearson": pearson,
        "spearman": spearman,
    }
    scores = {name: functions[name](predictions, labels) for name in task.metrics}
    return {**scores, "main": scores[task.main_metric]}


_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace (official)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def squad_f1(prediction: str, gold: str) -> float:
    """Token F1 of normalised answers; if either is empty, 1.0 iff both are."""
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    same = sum((collections.Counter(p) & collections.Counter(g)).values())
    return 0.0 if same == 0 else 2 * same / (len(p) + len(g))


def squad_scores(predictions: dict[str, str], gold: dict[str, Sequence[str]]) -> dict[str, float]:
    """Official SQuAD v2 exact match and F1 (fractions), each the max over a question's gold
    answers. An unanswerable question (no gold answers) scores 1 iff the prediction is empty."""
    missing = gold.keys() - predictions.keys()
    if missing:
        raise ValueError(f"no prediction for {len(missing)} questions, e.g. {sorted(missing)[:3]}")
    exact, f1 = [], []
    for qid, answers in gold.items():
        # gold answers that normalise to nothing count as "no answer", as in evaluate-v2.0.py
        answers = [a for a in answers if normalize_answer(a)] or [""]
        exact.append(
            max(float(normalize_answer(predictions[qid]) == normalize_answer(a)) for a in answers)
        )
        f1.append(max(squad_f1(predictions[qid], a) for a in answers))
    return {"exact": float(np.mean(exact)), "f1": float(np.mean(f1))}
