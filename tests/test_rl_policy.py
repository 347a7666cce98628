"""rl_policy.py: TR-BERT's policy, reward, REINFORCE and Residual Strategy."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import make_batch

from rl_policy import (
    PolicyConfig,
    PolicyNetwork,
    TRBertPolicy,
    reinforce_loss,
    residual_scores,
    reward,
    top_k_actions,
)
from skim import skim_forward
from transformer import CONFIGS, BertConfig, BertForTask

TINY = CONFIGS["tiny"]
TINY4 = BertConfig(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
)


def test_default_reduction_layers_are_second_and_middle():
    assert TRBertPolicy(CONFIGS["bert-base-uncased"]).layers == (1, 6)
    assert TRBertPolicy(CONFIGS["all-MiniLM-L6-v2"]).layers == (1, 3)
    with pytest.raises(ValueError, match="increasing indices"):
        PolicyConfig(policy_layers=(3, 1)).resolved_layers(6)


@pytest.mark.parametrize("prune", [False, True])
def test_selecting_every_token_reproduces_the_baseline(prune):
    model = BertForTask(TINY4, "span").eval()
    policy = TRBertPolicy(TINY4).eval()
    for net in policy.nets.values():
        torch.nn.init.constant_(net.fc2.bias, 30.0)  # p ≈ 1 for every token
    batch = make_batch()
    out = skim_forward(model, policy, batch, prune=prune)
    with torch.no_grad():
        plain = model.bert(batch["input_ids"], batch["attention_mask"])
    valid = batch["attention_mask"].bool()
    torch.testing.assert_close(out.hidden[valid], plain[valid], atol=1e-5, rtol=0)
    assert (out.tokens_per_layer == batch["attention_mask"].sum(1, keepdim=True)).all()


def test_policy_masked_equals_pruned_and_sequences_keep_their_own_tokens():
    model = BertForTask(TINY4).eval()
    policy = TRBertPolicy(TINY4).eval()
    for net in policy.nets.values():
        torch.nn.init.normal_(net.fc2.weight, 0, 3.0)  # a policy that selects some tokens
    batch = make_batch()
    masked = skim_forward(model, policy, batch, prune=False)
    pruned = skim_forward(model, policy, batch, prune=True)
    assert torch.equal(masked.exit_layer, pruned.exit_layer)
    assert (pruned.tokens_per_layer[:, -1] < batch["attention_mask"].sum(1)).any()
    torch.testing.assert_close(masked.logits, pruned.logits, atol=1e-5, rtol=0)
    alone = skim_forward(model, policy, {k: v[2:, :4] for k, v in batch.items()}, prune=True)
    assert torch.equal(alone.exit_layer[0], pruned.exit_layer[2, :4])


def test_training_samples_actions_and_their_log_probability():
    """decide returns the actions alone and leaves log π in ctx.extras, which comes back as
    SkimOutput.extras: one entry per policy module."""
    model = BertForTask(TINY4).train()
    policy = TRBertPolicy(TINY4).train()
    batch = make_batch()
    out = skim_forward(model, policy, batch)
    assert set(out.extras) == set(policy.layers)
    for mask in out.masks:
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
    log_prob = out.extras[1]
    assert log_prob.shape == (3,) and (log_prob < 0).all()
    log_prob.sum().backward()
    assert policy.nets["1"].fc1.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------
# Reward, baseline, loss: a hand-worked example


def test_reward_baseline_and_loss_match_a_hand_worked_example():
    # two examples, two samples each; task losses, and tokens kept by two modules
    task_loss = torch.tensor([0.5, 1.0, 0.2, 0.2])
    selected = torch.tensor([[4, 2], [2, 2], [5, 5], [10, 0]])
    lengths = torch.tensor([8, 8, 10, 10])
    r = reward(task_loss, selected, lengths, length_penalty=0.4)
    # sample 1: −0.5 − 0.4·(4/8 + 2/8)/2 = −0.5 − 0.15 = −0.65;  sample 2: −1.0 − 0.4·0.25 = −1.1
    # sample 3: −0.2 − 0.4·0.5 = −0.4;  sample 4: −0.2 − 0.4·(1 + 0)/2 = −0.4
    torch.testing.assert_close(r, torch.tensor([-0.65, -1.1, -0.4, -0.4]), atol=1e-6, rtol=0)
    log_probs = torch.tensor([-1.0, -2.0, -0.5, -3.0], requires_grad=True)
    loss = reinforce_loss(log_probs, r, num_samples=2)
    # baselines −0.875 and −0.4 -> advantages 0.225, −0.225, 0, 0
    # loss = −(0.225·(−1) + (−0.225)·(−2) + 0 + 0) / 4 = −0.225 / 4
    assert loss.item() == pytest.approx(-0.225 / 4, abs=1e-6)
    loss.backward()
    torch.testing.assert_close(
        log_probs.grad, torch.tensor([-0.225, 0.225, 0.0, 0.0]) / 4, atol=1e-6, rtol=0
    )


def test_reinforce_moves_a_two_armed_policy_towards_the_better_arm():
    """Two kinds of token (two fixed states); selecting kind A pays +1, kind B costs 1."""
    torch.manual_seed(0)
    net = PolicyNetwork(TINY, hidden=8)
    states = torch.randn(2, TINY.hidden_size)  # row 0 = arm A, row 1 = arm B
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    start = net(states).detach()
    for _ in range(40):
        p = net(states.expand(8, 2, -1))  # 8 samples of the same "example"
        a = torch.bernoulli(p.detach())
        log_prob = (a * p.log() + (1 - a) * (1 - p).log()).sum(1)
        r = a[:, 0] - a[:, 1]
        opt.zero_grad()
        reinforce_loss(log_prob, r, num_samples=8).backward()
        opt.step()
    end = net(states).detach()
    assert end[0] > start[0] + 0.2 and end[1] < start[1] - 0.2, (start, end)


def test_top_k_heuristic_selects_the_expected_number_of_best_alive_tokens():
    scores = torch.tensor([[9.0, 1.0, 5.0, 3.0, 7.0, 0.0]])
    probs = torch.tensor([[1.0, 0.5, 0.5, 0.5, 0.5, 0.0]])  # expects round(2.0) = 2 besides [CLS]
    alive = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 0.0]])  # token 4 (score 7) already skipped
    assert top_k_actions(scores, probs, alive).tolist() == [[0.0, 0.0, 1.0, 1.0, 0.0, 0.0]]


def test_imitation_rows_follow_the_heuristic():
    """The loss hands decide the guide as hints (skim_forward(..., hints=)), not batch keys."""
    model = BertForTask(TINY4).train()
    policy = TRBertPolicy(TINY4).train()
    batch = make_batch()
    hints = {"guide_scores": torch.rand(3, 11), "guide_rows": torch.tensor([True, False, False])}
    out = skim_forward(model, policy, batch, hints=hints)
    k = int(out.tokens_per_layer[0, 1]) - 1  # tokens the guided row selected, besides [CLS]
    kept = out.exit_layer[0] > 1
    top = hints["guide_scores"][0, 1:].argsort(descending=True)[:k] + 1
    assert kept[top].all() and int(kept[1:].sum()) == k, "the guided row did not take the top-K"


def test_the_loss_guides_the_first_sample_of_each_example_during_the_warm_up():
    """TR-BERT's loss, in the policy stage's first steps: its hints name the first of each
    example's S samples, and those samples take the guide's top K."""
    from skim import Stage, StepContext

    model = BertForTask(TINY4).train()
    policy = TRBertPolicy(TINY4, PolicyConfig(num_samples=2, imitation_fraction=0.5)).train()
    batch = {**make_batch(), "labels": torch.tensor([0, 1, 0]), "index": torch.arange(3)}
    for b, n in enumerate(batch["attention_mask"].sum(1).tolist()):
        policy.guide[b] = torch.rand(n)
    stage = Stage("policy", epochs=1, encoder_lr=0.0, strategy_lr=1e-3)
    seen, decide = [], policy.decide

    def spy(i, h, alive, ctx):  # what the loss handed decide
        seen.append((ctx.stage, ctx.hints))
        return decide(i, h, alive, ctx)

    def task_loss(logits, b, teacher=None):
        return F.cross_entropy(logits, b["labels"], reduction="none")

    policy.decide = spy
    policy.loss(model, batch, StepContext(stage, 0, 10, task_loss))
    (got_stage, hints), *_ = seen
    assert got_stage is stage and hints["guide_rows"].tolist() == [True, False] * 3
    assert hints["guide_scores"].shape == (6, 11)
    seen.clear()
    policy.loss(model, batch, StepContext(stage, 5, 10, task_loss))  # after the warm-up
    assert seen[0][1] == {}, "no guide after the imitation warm-up"


# ----------------------------------------------------------------------------------------------
# The Residual Strategy


def test_residual_scores_agree_with_finite_differences():
    torch.manual_seed(1)
    model = BertForTask(TINY4).eval().double()
    batch = make_batch((7, 5))
    labels = torch.tensor([0, 1])
    loss_fn = lambda logits, b: F.cross_entropy(logits, labels, reduction="sum")  # noqa: E731
    l, r = 1, 3
    scores = residual_scores(model, batch, loss_fn, l, r)
    with torch.no_grad():
        states = model.bert(batch["input_ids"], batch["attention_mask"], all_layers=True)

        def loss_from(h_r):
            h = h_r
            for layer in model.bert.layers[r:]:
                h = layer(h, batch["attention_mask"])
            return loss_fn(model.logits(h), batch)

        base, eps = loss_from(states[r]), 1e-6
        for b, t in [(0, 0), (0, 3), (1, 2), (1, 4)]:
            moved = states[r].clone()
            moved[b, t] += eps * (states[l][b, t] - states[r][b, t])  # towards the layer-l state
            fd = (loss_from(moved) - base) / eps  # = −∂loss/∂H_r·(H_r − H_l)
            assert math.isclose(abs(fd.item()), scores[b, t].item(), rel_tol=1e-4, abs_tol=1e-8)
    assert (scores[1, 5:] == 0).all()


def test_stage_behaviour_comes_from_the_stage_not_its_name():
    """TR-BERT's policy-alone stage and LTP's soft stage are what their Stage declares (which
    learning rates are 0), so a schedule may name its stages as it likes."""
    from ltp import soft_stage
    from rl_policy import policy_alone
    from skim import Stage

    assert policy_alone(Stage("warm-up", epochs=1, encoder_lr=0.0, strategy_lr=1e-3))
    assert not policy_alone(Stage("policy", epochs=1, encoder_lr=1e-4, strategy_lr=1e-3))
    assert not policy_alone(Stage("x", epochs=1, encoder_lr=0.0, strategy_lr=1e-3, skim=False))
    assert soft_stage(Stage("a", epochs=1, encoder_lr=1e-3, strategy_lr=1e-3))
    assert not soft_stage(Stage("soft", epochs=1, encoder_lr=1e-3, strategy_lr=0.0))
    assert not soft_stage(None)  # no stage: inference
