"""TR-BERT: a policy network chooses the tokens that go on, trained with REINFORCE.

Ye et al., "TR-BERT: Dynamic Token Reduction for Accelerating BERT Inference", NAACL 2021,
https://arxiv.org/abs/2105.11618. Equations implemented here:
  Eq. (2) the policy network π(a|s) = σ(W2·GELU(W1·H + b1) + b2)       -> `PolicyNetwork`
  Eq. (3) the next layer runs on the selected tokens only                 -> skim.skim_forward
  Eq. (4) the reward R = log P(y|X) − λ·(selected tokens)                 -> `reward`
  Eq. (6) REINFORCE: ∇J = Σ_t R·∇ log π(a_t|s_t), with a sample baseline  -> `reinforce_loss`
  Sec. 2 / 3.2 the Residual Strategy's importance and imitation warm-up   -> `residual_scores`, `TRBertPolicy.decide`
The policy is a skim strategy (skim.SkimStrategy): the encoder loop that masks in training,
prunes at inference and forwards skipped tokens to the output is skim.py's, shared with
Transkimmer. The three-stage schedule (fine-tune; policy alone; everything) is driven by
train.py. Tests: tests/test_rl_policy.py.

Shapes: B batch (S samples of each example side by side), T tokens, C hidden size, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from flops import policy_flops
from skim import SkimStrategy, on_present_tokens
from transformer import BertConfig, BertForTask

# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass
class PolicyConfig:
    """TR-BERT's knobs, with where each default comes from."""

    layers: tuple[
        int, ...
    ] = ()  # 0-indexed layers with a reduction module before them; () -> (1, L//2),
    #                               TR-BERT Sec. 4.3 "before the second and the sixth layers" of BERT-12
    hidden: int = 32  # width of the policy's hidden layer (authors' code)
    length_penalty: float = (
        0.3  # λ of Eq. (4); on the kept *fraction* (see `reward`); ours, tune per task
    )
    num_samples: int = (
        8  # action sequences sampled per example, App. B: "we sample 8 action sequences"
    )
    imitation_fraction: float = (
        0.5  # share of RL steps with one heuristic sample: 0.5 classification, 0.2 QA (App. B)
    )
    distill: bool = (
        True  # stage 3 learns from the fine-tuned model's soft labels (authors' code, T = 1)
    )

    def resolved_layers(self, num_layers: int) -> tuple[int, ...]:
        layers = self.layers or tuple(sorted({1, num_layers // 2}))  # one module when L // 2 = 1
        assert all(0 <= i < num_layers for i in layers) and list(layers) == sorted(set(layers)), (
            f"policy layers must be increasing indices in 0..{num_layers - 1}, got {layers}"
        )
        return tuple(layers)


# ----------------------------------------------------------------------------------------------
# The policy network and the strategy built on it


class PolicyNetwork(nn.Module):
    """TR-BERT Eq. (2): π(Select | s) = σ(W2·GELU(W1·h + b1) + b2), one probability per token."""

    def __init__(self, cfg: BertConfig, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, hidden)  # W1, b1
        self.fc2 = nn.Linear(hidden, 1)  # W2, b2; default init, so p ≈ 0.5 at first (authors' code)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> select probabilities (B, T)."""
        return torch.sigmoid(self.fc2(F.gelu(self.fc1(h)))).squeeze(-1)


class TRBertPolicy(SkimStrategy):
    """A policy network before each reduction layer. Training samples Bernoulli actions (no
    gradient flows through them: REINFORCE learns from their log-probabilities); inference keeps
    the tokens with p ≥ 0.5, each sequence exactly its own."""

    def __init__(self, cfg: BertConfig, policy: PolicyConfig | None = None):
        super().__init__()
        self.policy = policy or PolicyConfig()
        self.layers = self.policy.resolved_layers(cfg.num_hidden_layers)
        self.nets = nn.ModuleDict(
            {str(i): PolicyNetwork(cfg, self.policy.hidden) for i in self.layers}
        )

    def decide(self, i, h, alive, batch):
        if not self.training:  # pads and skipped tokens are not scored
            return on_present_tokens(self.nets[str(i)], h, alive, 0.0) >= 0.5
        probs = self.nets[str(i)](h) * alive  # (B, T); pads and skipped tokens get p = 0
        actions = torch.bernoulli(probs.detach())  # a_t ~ π(·|s_t), 1 = Select
        if "guide_scores" in batch:  # imitation warm-up: some samples follow the Residual Strategy
            actions = torch.where(
                batch["guide_rows"][:, None],
                top_k_actions(batch["guide_scores"], probs, alive),
                actions,
            )
        # log π(a_t|s_t), summed over the tokens this module decided ([CLS] is forced, pads absent)
        decided = alive.clone()
        decided[:, 0] = 0
        p = probs.clamp(1e-6, 1 - 1e-6)
        log_prob = ((actions * p.log() + (1 - actions) * (1 - p).log()) * decided).sum(1)  # (B,)
        return actions, log_prob

    def overhead_flops(self, config, n):
        return policy_flops(config, n, self.policy.hidden)


def top_k_actions(scores: torch.Tensor, probs: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """The heuristic action sequence of Sec. 3.2: select the K most important tokens still alive,
    K = round(Σ p), the number the current policy expects to select. scores, probs, alive: (B, T).
    [CLS] is not counted (the loop keeps it anyway)."""
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
    mean reward of an example's own samples (App. B: "average their rewards as the reward
    baseline"), which lowers the variance without changing the expected gradient."""
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
        for i, layer in enumerate(bert.layers[:r]):
            h_l = h if i == l else h_l if i > l else None
            h = layer(h, mask)
        h_r = h.detach().requires_grad_()  # H_r, the leaf we differentiate against
        h = h_r
        for layer in bert.layers[r:]:
            h = layer(h, mask)
        loss = loss_fn(model.logits(h), batch)
        (grad,) = torch.autograd.grad(loss, h_r)  # ∂loss/∂H_r, (B, T, C)
    score = (grad * (h_r - h_l).detach()).sum(-1).abs()  # (B, T)
    return score * mask
