"""TR-BERT: a policy network chooses the tokens that go on, trained with REINFORCE.

Ye et al., "TR-BERT: Dynamic Token Reduction for Accelerating BERT Inference", NAACL 2021,
https://arxiv.org/abs/2105.11618. Equations implemented here:
  Eq. (2) the policy network π(a|s) = σ(W2·GELU(W1·H + b1) + b2)       -> `PolicyNetwork`
  Eq. (3) the next layer runs on the selected tokens only                 -> skim.skim_forward
  Eq. (4) the reward R = log P(y|X) − λ·(selected tokens)                 -> `reward`
  Eq. (6) REINFORCE: ∇J = Σ_t R·∇ log π(a_t|s_t), with a sample baseline  -> `reinforce_loss`
  Sec. 2 / 3.2 the Residual Strategy's importance, imitation warm-up  -> `residual_scores`,
                                                                          `top_k_actions`
  Sec. 3.2 the three-stage schedule                                     -> `TRBertPolicy.stages`
The policy is a skim strategy (skim.SkimStrategy): the encoder loop that masks in training,
prunes at inference and forwards skipped tokens to the output is skim.py's, shared with
Transkimmer. The three-stage schedule (fine-tune; policy alone; everything) is driven by
train.py. Tests: tests/test_rl_policy.py.

Shapes: B batch (S samples of each example side by side), T tokens, C hidden size, L layers.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from flops import policy_flops
from skim import SkimStrategy, Stage, on_present_tokens, option, require, skim_forward
from transformer import BertConfig, BertForTask

# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass
class PolicyConfig:
    """TR-BERT's settings, with where each default comes from."""

    policy_layers: tuple[int, ...] = option(
        (),
        "0-indexed layers with a policy before them (default 1 and L//2: Sec. 4.3, "
        "'before the second and the sixth layers' of BERT-12)",
    )
    hidden: int = option(32, "width of the policy's hidden layer (authors' code)")
    length_penalty: float = option(0.3, "λ of Eq. (4), on the selected fraction (ours; per task)")
    num_samples: int = option(8, "action sequences sampled per example (App. B: 8)")
    imitation_fraction: float | None = option(
        None,
        "share of stage-2 steps with one heuristic sample (App. B: 0.5 classification, 0.2 QA)",
    )
    distill: bool = option(
        True, "stage 3 learns the fine-tuned model's soft labels (authors, T = 1)"
    )
    rl_epochs: float | None = option(
        None, "stage-2 epochs (default ⌈(N+1)/2⌉ for N epochs, App. B)"
    )

    def __post_init__(self):
        # S = 1 would make each sample its own baseline: the REINFORCE loss would be 0
        require(self.num_samples >= 2, f"--num-samples must be ≥ 2, got {self.num_samples}")
        require(self.hidden >= 1, f"--hidden must be ≥ 1, got {self.hidden}")
        # NaN fails every comparison, so each check refuses it; infinities are refused by name
        inf = float("inf")
        require(0 <= self.length_penalty < inf,
                f"--length-penalty must be ≥ 0 and finite, got {self.length_penalty}")  # fmt: skip
        f = self.imitation_fraction
        require(f is None or 0 <= f <= 1, f"--imitation-fraction must be in [0, 1], got {f}")
        e = self.rl_epochs
        require(e is None or 0 < e < inf, f"--rl-epochs must be > 0 and finite, got {e}")

    def resolved_layers(self, num_layers: int) -> tuple[int, ...]:
        layers = self.policy_layers or tuple(
            sorted({1, num_layers // 2})
        )  # one module when L // 2 = 1
        ok = all(0 <= i < num_layers for i in layers) and list(layers) == sorted(set(layers))
        require(ok, f"--policy-layers must be increasing indices in 0..{num_layers - 1}: {layers}")
        return tuple(layers)


# ----------------------------------------------------------------------------------------------
# The policy network and the strategy built on it


class PolicyNetwork(nn.Module):
    """TR-BERT Eq. (2): π(Select | s) = σ(W2·GELU(W1·h + b1) + b2), one probability per token."""

    def __init__(self, config: BertConfig, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, hidden)  # W1, b1
        self.fc2 = nn.Linear(hidden, 1)  # W2, b2
        # DEVIATION: PyTorch's default init for both (p ≈ 0.5 at first either way); the authors
        # draw the weights from N(0, 0.02) with zero biases.

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> select probabilities (B, T)."""
        return torch.sigmoid(self.fc2(F.gelu(self.fc1(h)))).squeeze(-1)


class TRBertPolicy(SkimStrategy):
    """A policy network before each reduction layer. Training samples Bernoulli actions (no
    gradient flows through them: REINFORCE learns from their log-probabilities); inference keeps
    the tokens with p ≥ 0.5, each sequence exactly its own.

    DEVIATION: at inference the authors keep the top K to the batch's largest K, so a sequence's
    decisions depend on its batch; here they never do. DEVIATION: skipped tokens are forwarded
    to the output (the shared loop's Eq. 3), as Transkimmer does; the authors drop them for
    classification, which changes nothing there ([CLS] stays) but lets span heads read them."""

    Options = PolicyConfig
    checkpoint_prefix = "policy"
    # the authors' optimiser: clipping at 1.0, 10% linear warm-up per stage, no weight decay. On
    # SST-2 it ties ours (weight decay 0.01, no clipping, no warm-up) over three seeds: the
    # README's numbers, measured by `bash benchmarks/sst2_minilm.sh trbert-authors-opt` and
    # `ROWS=trbert-authors-opt bash benchmarks/sst2_minilm_seeds.sh` (the rows measured before
    # this default name our flags)
    train_defaults = {"weight_decay": 0.0, "warmup": 0.1, "max_grad_norm": 1.0}

    def __init__(self, config: BertConfig, options: PolicyConfig | None = None, task=None):
        options = options or PolicyConfig()
        if options.imitation_fraction is None and task is not None:
            # App. B: 0.5 for classification, 0.2 for QA
            fraction = 0.2 if task.kind == "span" else 0.5
            options = dataclasses.replace(options, imitation_fraction=fraction)
        super().__init__(config, options, task)
        self.layers = options.resolved_layers(config.num_hidden_layers)
        self.nets = nn.ModuleDict(
            {str(i): PolicyNetwork(config, options.hidden) for i in self.layers}
        )
        self.guide = {}  # feature index -> Residual Strategy scores (T,), for the imitation warm-up

    def decide(self, i, h, alive, ctx):
        if not self.training:  # p ≥ 0.5, deterministic; pads and skipped tokens are not scored
            return on_present_tokens(self.nets[str(i)], h, alive, 0.0) >= 0.5
        probs = self.nets[str(i)](h) * alive  # (B, T); pads and skipped tokens get p = 0
        actions = torch.bernoulli(probs.detach())  # a_t ~ π(·|s_t), 1 = Select
        # the imitation warm-up, in the loss's hints: some samples follow the Residual Strategy
        if "guide_scores" in ctx.hints:
            guided = top_k_actions(ctx.hints["guide_scores"], probs, alive)
            actions = torch.where(ctx.hints["guide_rows"][:, None], guided, actions)
        # DEVIATION: the authors take the mean over the present tokens, [CLS] included.
        # log π(a_t|s_t), summed over the tokens this module decided ([CLS] is forced, pads absent)
        decided = alive.clone()
        decided[:, 0] = 0
        p = probs.clamp(1e-6, 1 - 1e-6)
        log_prob = ((actions * p.log() + (1 - actions) * (1 - p).log()) * decided).sum(1)  # (B,)
        ctx.extras[i] = log_prob  # for the loss: REINFORCE's ∇ log π (Eq. 6)
        return actions

    def overhead_flops(self, config, n):
        return policy_flops(config, n, self.options.hidden)

    # ------------------------------------------------------------------------------------------
    # Training: TR-BERT's three stages (Sec. 3.2)

    def stages(self, cfg):
        """Fine-tune (skipped when starting from a fine-tuned run); the policy alone, with the
        backbone frozen; then everything together (distilled from the fine-tuned model)."""
        skim_lr = cfg.skim_lr or cfg.lr
        rl_epochs = self.options.rl_epochs or float(math.ceil((cfg.epochs + 1) / 2))
        finetune = Stage("finetune", epochs=cfg.epochs, encoder_lr=cfg.lr, strategy_lr=0.0,
                         skim=False, saves_teacher=True)  # fmt: skip
        first = [] if cfg.finetuned else [finetune]
        return first + [
            Stage("policy", epochs=rl_epochs, encoder_lr=0.0, strategy_lr=skim_lr, teacher=True),
            Stage("joint", epochs=cfg.epochs, encoder_lr=cfg.lr, strategy_lr=skim_lr,
                  teacher=self.options.distill),
        ]  # fmt: skip

    def begin_stage(self, context, batches):
        """Before the policy stage: the Residual Strategy's importance of every training token,
        computed once with the fine-tuned model (Sec. 2, 3.2), guides the imitation warm-up."""
        if not policy_alone(context.stage) or not self.options.imitation_fraction:
            return
        teacher, L = context.teacher, context.teacher.bert.config.num_hidden_layers
        # r = 9 of 12 in the paper; Python's round is to even: round(0.75·6) = round(4.5) = 4
        l, r = self.layers[0], max(self.layers[0] + 1, round(0.75 * L))
        # DEVIATION: one set of scores (from layers l..r) guides every policy module; the authors
        # compute one per module, from its own layer.
        for idx, batch in batches():
            s = residual_scores(teacher, batch, lambda x, b: context.task_loss(x, b).sum(), l, r)
            # to the host once per batch, not once per example (each copy waits for a GPU)
            s, lengths = s.cpu(), batch["attention_mask"].sum(1).tolist()
            for b, i in enumerate(idx):
                self.guide[i] = s[b, : lengths[b]]

    def loss(self, model, batch, context):
        """REINFORCE on S sampled action sequences per example (Eq. 4, 6); in the joint stage
        also the task loss, on the fine-tuned model's soft labels when distilling."""
        if not context.stage.skim:  # stage 1: plain fine-tuning
            return super().loss(model, batch, context)
        S = self.options.num_samples
        rep = {k: v.repeat_interleave(S, 0) for k, v in batch.items()}  # samples side by side
        hints = self._imitation(batch, context) if policy_alone(context.stage) else {}
        out = skim_forward(model, self, rep, prune=False, stage=context.stage, hints=hints)
        hard = context.task_loss(out.logits, rep)  # (B·S,)
        lengths = rep["attention_mask"].sum(1)
        selected = out.tokens_per_layer[:, list(self.layers)]  # (B·S, M)
        rewards = reward(hard.detach(), selected, lengths, self.options.length_penalty)
        log_probs = sum(out.extras[i] for i in self.layers)  # (B·S,): Σ over modules of log π(a|s)
        loss_rl = reinforce_loss(log_probs, rewards, S)
        kept = (selected.float() / lengths[:, None]).mean().item()
        logs = {"reward": rewards.mean().item(), "selected": kept}  # on this batch's samples
        if policy_alone(context.stage):  # stage 2: the backbone frozen, only the policy learns
            return loss_rl, logs
        # DEVIATION: the reward above is on the gold labels; with --train_teacher the authors'
        # stage 3 rewards the distillation loss instead.
        if context.teacher is not None:  # stage 3: the task loss on the teacher's soft labels
            with torch.no_grad():
                teacher = context.teacher(
                    batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
                )
            hard = context.task_loss(out.logits, rep, teacher.repeat_interleave(S, 0))
        return hard.mean() + loss_rl, logs

    def _imitation(self, batch, context) -> dict:
        """decide's hints in the policy stage: during the imitation warm-up (its first steps)
        the guide scores of each example's S samples, and which samples follow them (the first
        of each example); no hints after it."""
        if context.step >= int(self.options.imitation_fraction * context.total):
            return {}
        S, scores = self.options.num_samples, self._guide_grid(batch)
        rows = torch.arange(len(scores) * S, device=scores.device) % S == 0  # (B·S,)
        return {"guide_scores": scores.repeat_interleave(S, 0), "guide_rows": rows}

    def _guide_grid(self, batch):
        """The guide scores of the batch's examples on its (B, T) grid, 0 at pads."""
        grid = torch.zeros(batch["input_ids"].shape)
        for b, i in enumerate(batch["index"].tolist()):
            grid[b, : len(self.guide[i])] = self.guide[i]
        return grid.to(batch["input_ids"].device)


def policy_alone(stage: Stage) -> bool:
    """Sec. 3.3's stage 2, as the Stage declares it (not by its name): the policy decides and
    learns while the backbone is frozen, so the loss is REINFORCE's alone and the imitation
    warm-up happens here."""
    return stage.skim and stage.encoder_lr == 0 and stage.strategy_lr > 0


def top_k_actions(scores: torch.Tensor, probs: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """The heuristic action sequence of Sec. 3.2: select the K most important tokens still alive,
    K = round(Σ p), the number the current policy expects to select. scores, probs, alive: (B, T).
    [CLS] is not counted (the loop keeps it anyway). DEVIATION: the authors count K over every
    present token, [CLS] included."""
    candidates = alive.clone()
    candidates[:, 0] = 0
    k = torch.round((probs.detach() * candidates).sum(1)).long()  # (B,)
    ranked = scores.masked_fill(candidates == 0, float("-inf")).argsort(
        1, descending=True
    )  # (B, T)
    rank = ranked.argsort(1)  # rank of each position
    return ((rank < k[:, None]) & (candidates > 0)).to(probs.dtype)


# ----------------------------------------------------------------------------------------------
# Reward and REINFORCE


def reward(
    task_loss: torch.Tensor, selected: torch.Tensor, lengths: torch.Tensor, length_penalty: float
) -> torch.Tensor:
    """TR-BERT Eq. (4): R = log Pr(y = Y | X) − λ·Σ_t |{a_t = Select}|.

    task_loss: (B,) per-example loss, so log Pr(y|X) = −task_loss (cross-entropy; for regression
    and spans the same role is played by their loss). selected: (B, M) tokens kept by each of the
    M reduction modules. DEVIATION (from the paper's raw count, as in the authors' code in spirit):
    the penalty is the mean over modules of the selected *fraction* of each example's real length,
    so λ does not depend on text length."""
    # ASSIGNMENT 4 BEGIN: reward and REINFORCE (assignments/04_reinforce.md)
    fraction = selected.to(task_loss.dtype) / lengths[:, None].to(task_loss.dtype)  # (B, M)
    return -task_loss - length_penalty * fraction.mean(1)
    # ASSIGNMENT 4 END


def reinforce_loss(
    log_probs: torch.Tensor, rewards: torch.Tensor, num_samples: int
) -> torch.Tensor:
    """TR-BERT Eq. (6): ∇J = Σ_t R·∇ log π(a_t|s_t), as a loss to minimise.

    log_probs, rewards: (B·S,), the S samples of each example side by side. The baseline is the
    mean reward of an example's own samples (Sec. 4.3 / App. B: "average their rewards as the
    reward baseline"). It lowers the variance; because each sample is part of its own baseline,
    it also scales the expected gradient by (S−1)/S (a leave-one-out mean would not), which a
    learning rate absorbs: docs/tutorial.md, section 7, checks it by enumeration."""
    # ASSIGNMENT 4 BEGIN: reward and REINFORCE (assignments/04_reinforce.md)
    r = rewards.detach().view(-1, num_samples)  # (B, S)
    advantage = (r - r.mean(1, keepdim=True)).flatten()  # (B·S,)
    return -(advantage * log_probs).mean()
    # ASSIGNMENT 4 END


# ----------------------------------------------------------------------------------------------
# The Residual Strategy (Sec. 2): importance from the fine-tuned model, for the warm-up


def residual_scores(model: BertForTask, batch: dict, loss_fn, l: int, r: int) -> torch.Tensor:
    """I = |∂loss/∂H_r · (H_r − H_l)| per token: how much the loss would change, to first order,
    if a token's layer-r state were replaced by its layer-l state (it skipped layers l..r-1).

    H_i is the input of layer i (H_0 the embeddings). loss_fn(logits, batch) -> scalar (summed
    over the batch, so each example's scores are its own). Returns (B, T), 0 at pads."""
    bert, mask = model.bert, batch["attention_mask"]
    assert 0 <= l < r <= len(bert.layers), f"need 0 <= l < r <= L, got l = {l}, r = {r}"
    with torch.enable_grad():  # works for a frozen model too: the gradient is taken w.r.t. H_r only
        h = bert.embed(batch["input_ids"], batch.get("token_type_ids"))  # H_0, (B, T, C)
        h_l = None
        for i, layer in enumerate(bert.layers[:r]):
            if i == l:
                h_l = h  # H_l, the input of layer l
            h = layer(h, mask)
        h_r = h.detach().requires_grad_()  # H_r, the leaf we differentiate against
        h = h_r
        for layer in bert.layers[r:]:
            h = layer(h, mask)
        loss = loss_fn(model.logits(h), batch)
        (grad,) = torch.autograd.grad(loss, h_r)  # ∂loss/∂H_r, (B, T, C)
    score = (grad * (h_r - h_l).detach()).sum(-1).abs()  # (B, T)
    return score * mask
