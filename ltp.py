"""LTP, Learned Token Pruning: a learned threshold per layer on the attention each token receives.

Kim et al., "Learned Token Pruning for Transformers", KDD 2022, https://arxiv.org/abs/2107.00910.
A fourth method, written against skim.SkimStrategy alone (this file is all it takes):
  importance   s_j = (1/(nh·n)) Σ_h Σ_i A_h[i, j], the attention token j receives in the layer
               before, averaged over heads and the n present queries       -> `LTP.scores`
  soft mask    M_j = σ((s_j − θ_l)/T) in the soft stage, θ_l learned         -> `LTP.decide`
  hard mask    M_j = [s_j ≥ θ_l] in the hard stage and at inference          -> `LTP.decide`
  loss         task loss + λ·(1/L) Σ_l Σ_j M_j / n (the soft masks' L1 norm) -> `LTP.loss`
  schedule     soft stage (encoder and thresholds learn), then hard stage (thresholds frozen)
NOTE: the paper's text is not in this repository; the defaults below are ours, tuned on the
synthetic task, not the paper's. Tests: tests/test_strategies.py (the conformance suite).

Shapes: B batch, T tokens, nh heads, L layers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn

from skim import SkimStrategy, Stage, option, require, skim_forward, skim_loss
from transformer import BertConfig


@dataclass
class LTPOptions:
    """LTP's settings (ours: see the NOTE above)."""

    temperature: float = option(0.1, "T of the soft mask σ((s − θ)/T), on the relative score")
    skim_weight: float | None = option(
        None, "λ of the mask regulariser (default: the task's λ of Transkimmer Table 2)"
    )
    threshold_init: float = option(0.0, "θ of every layer at the start, on the relative score")
    hard_epochs: float = option(1.0, "epochs of the hard stage, thresholds frozen (0 = none)")

    def __post_init__(self):
        # NaN fails every comparison, so each check refuses it; infinities are refused by name
        inf, t, w, h = float("inf"), self.temperature, self.skim_weight, self.hard_epochs
        require(0 < t < inf, f"--temperature must be > 0 and finite, got {t}")
        require(w is None or 0 <= w < inf, f"--skim-weight must be ≥ 0 and finite, got {w}")
        require(-inf < self.threshold_init < inf,
                f"--threshold-init must be finite, got {self.threshold_init}")  # fmt: skip
        require(0 <= h < inf, f"--hard-epochs must be ≥ 0 and finite (0 = none), got {h}")


def soft_stage(stage: Stage | None) -> bool:
    """LTP's soft stage, as the Stage declares it (not by its name): the thresholds learn.
    None, no stage (inference, or a forward its loss did not run), is not."""
    return stage is not None and stage.strategy_lr > 0


class LTP(SkimStrategy):
    """A threshold θ_l before every layer but the first, on the attention the layer before gave.

    DEVIATION: LTP removes a token right after the attention of layer l, so it skips layer l's FFN;
    here every decision is taken before a layer (the shared loop's one place for it), on the
    attention of the layer before: a token pays that layer's FFN and leaves after it.
    DEVIATION: θ is compared with n·s_j, the score relative to the mean attention a token receives
    (1/n), not with s_j itself: one θ then fits short and long inputs, and Adam's steps at the
    method's learning rate are on its scale."""

    Options = LTPOptions
    checkpoint_prefix = "ltp"
    wants_attention = True

    def __init__(self, config: BertConfig, options: LTPOptions | None = None, task=None):
        options = options or LTPOptions()
        if options.skim_weight is None and task is not None:  # the task's λ
            options = dataclasses.replace(options, skim_weight=task.skim_weight)
        super().__init__(config, options, task)
        L = config.num_hidden_layers
        self.layers = tuple(range(1, L))
        self.thresholds = nn.Parameter(torch.full((L,), options.threshold_init))

    def __getattr__(self, name):
        if name == "soft":  # the old contract's flag, set by loss for decide to read
            raise AttributeError(
                "LTP.soft is gone: decide reads the stage from its context, "
                "`self.training and soft_stage(ctx.stage)` (ltp.soft_stage)"
            )
        return super().__getattr__(name)

    def scores(self, attention: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """Relative importance n·s_j of each token, (B, T), from the previous layer's attention
        (B, nh, T, T) and who is present (B, T). Summing over queries is written as a product
        with the present-query vector, so it is a matmul: flops.py and FlopCounterMode see it."""
        # ASSIGNMENT 6 BEGIN: a skim method of your own (assignments/06_strategy.md)
        nh = attention.shape[1]
        queries = alive[:, None, None, :].to(attention.dtype).expand(-1, nh, 1, -1)  # (B, nh, 1, T)
        received = (queries @ attention).squeeze(2).sum(1)  # (B, T): Σ_h Σ_i A_h[i, j]
        return received / nh  # n·s_j = Σ_h Σ_i A/(nh): the n of the mean cancels
        # ASSIGNMENT 6 END

    def decide(self, i, h, alive, ctx):
        """Keep the tokens whose relative score n·s_j reaches θ_i: a soft mask σ((n·s − θ)/T) in
        the soft stage of training, hard everywhere else; 0 wherever alive is 0."""
        # ASSIGNMENT 6 BEGIN: a skim method of your own (assignments/06_strategy.md)
        s = self.scores(ctx.attention, alive)  # (B, T)
        theta = self.thresholds[i]
        if self.training and soft_stage(ctx.stage):
            return torch.sigmoid((s - theta) / self.options.temperature) * alive
        keep = (s >= theta) & (alive > 0)
        return keep if ctx.pruning else keep.to(s.dtype)
        # ASSIGNMENT 6 END

    def overhead_flops(self, config, n):
        """FLOPs of `scores` on n tokens: per head, the (1×n)@(n×n) product with the queries."""
        # ASSIGNMENT 6 BEGIN: a skim method of your own (assignments/06_strategy.md)
        return 2 * config.num_attention_heads * n * n
        # ASSIGNMENT 6 END

    def stages(self, cfg):
        stages = [Stage("soft", epochs=cfg.epochs, encoder_lr=cfg.lr,
                        strategy_lr=cfg.skim_lr or cfg.lr)]  # fmt: skip
        if self.options.hard_epochs:
            stages.append(Stage("hard", epochs=self.options.hard_epochs, encoder_lr=cfg.lr,
                                strategy_lr=0.0))  # fmt: skip
        return stages

    def loss(self, model, batch, context):
        # LTP: task loss + λ·(mean over layers of each example's kept share, soft masks)
        # the stage goes to decide as ctx.stage: the soft mask in the soft stage
        out = skim_forward(model, self, batch, prune=False, stage=context.stage)
        kept = skim_loss(out, batch["attention_mask"])
        task = context.task_loss(out.logits, batch).mean()
        if not soft_stage(context.stage):  # the hard stage fine-tunes to the frozen thresholds
            return task, {"skim": kept.item()}  # the skim loss of Eq. 6 on this batch's masks
        return task + self.options.skim_weight * kept, {"skim": kept.item()}
