"""Hidden checks: the instructor's kit adds these to the public ones of assignments/checks.py.

The public checks are in the student copy, so a student can run them as often as they like, and
can also fit their code to their inputs (a hard-coded worked example, a special case for the
batch the check builds). These checks hold each function to the same handout on inputs the
student has not seen: other sizes, other numbers, float64, edge cases the handout states. They
carry points of their own (3 per assignment), so an instructor's grade is out of more than the
student's; `grade.py --public` grades as the student copy does. grade.py loads this file when it
finds it beside checks.py (assignments/instructor/ is never in a student copy).

Each check is, as in checks.py, an independent specification: numbers worked out here.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from checks import ASSIGNMENTS, _close, _fmt, _real_output, _tensor, expect, student


def _hidden(number: int, name: str, points: int = 3):
    return ASSIGNMENTS[number].check(name, points=points, hidden=True)


# ----------------------------------------------------------------------------------------------
# 1: attention with a key mask


@_hidden(
    1,
    "hidden: float64 in, float64 out, a row with one kept key copies its value, and "
    "masked_softmax itself is the softmax over the kept keys",
)
def _attention_float64_one_key():
    import torch

    # masked_softmax is one of the two functions the handout asks for: graded on its own too
    # (an _eager that inlines a formula of its own must not leave it unwritten)
    transformer = student("transformer")
    scores = torch.tensor([[[[0.0, math.log(3.0), 9.0], [2.0, 2.0, 1002.0]]]])  # (1, 1, 2, 3)
    probs = _tensor(transformer.masked_softmax(scores, torch.tensor([[1.0, 1.0, 0.0]])),
                    "masked_softmax's result")  # fmt: skip
    want = torch.tensor([[[[0.25, 0.75, 0.0], [0.5, 0.5, 0.0]]]])
    expect(tuple(probs.shape) == (1, 1, 2, 3), f"masked_softmax gave shape {tuple(probs.shape)}")
    err = (probs.double() - want.double()).abs().max().item()
    expect(
        err < 1e-6,
        f"masked_softmax over kept keys with logits 0, ln 3 (and a masked key leading by 9 or "
        f"1000) is off by {err:.3g} from (1/4, 3/4, 0), (1/2, 1/2, 0)",
    )

    cfg = transformer.BertConfig(vocab_size=10, hidden_size=6, num_hidden_layers=1,
                                 num_attention_heads=3, intermediate_size=6,
                                 max_position_embeddings=9, attn_impl="eager")  # fmt: skip
    attention = transformer.SelfAttention(cfg).double().eval()
    torch.manual_seed(5)
    q, k, v = (torch.randn(2, 3, 7, 2, dtype=torch.float64) for _ in range(3))
    mask = torch.zeros(2, 7, dtype=torch.float64)
    mask[0, 3] = 1.0  # example 0 keeps key 3 alone: every query's context is v[3]
    mask[1] = 1.0
    out = attention._eager(q, k, v, mask, 0.0)
    out = _tensor(out[0] if isinstance(out, tuple) else out, "_eager's result")
    expect(out.dtype == torch.float64, f"float64 inputs gave {out.dtype}: keep the input's dtype")
    err = (out[0] - v[0, :, 3:4, :]).abs().max().item()
    expect(err < 1e-12, f"with one kept key every query must read exactly its value: off {err:.2g}")
    s = q[1] @ k[1].transpose(-2, -1) / math.sqrt(2)
    ref = s.softmax(-1) @ v[1]
    err = (out[1] - ref).abs().max().item()
    expect(err < 1e-10, f"with every key kept (float64) the context is off by {err:.2g}")


# ----------------------------------------------------------------------------------------------
# 2: straight-through Gumbel-softmax


@_hidden(2, "hidden: other logits and τ; float64 kept; shapes (B, T, 2) of any size")
def _gumbel_other_inputs():
    import torch

    skim = student("skim")
    torch.manual_seed(11)
    n, delta, tau = 40000, 1.25, 0.7
    logits = torch.zeros(2, n, 2, dtype=torch.float64)
    logits[..., 1] = delta
    logits[1] += 3.0  # a shift of both logits changes nothing
    keep = _tensor(skim.gumbel_keep(logits.requires_grad_(), tau), "gumbel_keep's result")
    expect(keep.shape == (2, n), f"(2, {n}, 2) logits gave a mask of shape {tuple(keep.shape)}")
    expect(keep.dtype == torch.float64, f"float64 logits gave a {keep.dtype} mask")
    p = 1 / (1 + math.exp(-delta))
    tol = 5 * math.sqrt(p * (1 - p) / n)
    for row in range(2):
        share = keep[row].detach().mean().item()
        expect(
            abs(share - p) <= tol,
            f"keep − skip logit {delta}, τ = {tau}: kept {share:.4f}, expected {p:.4f} ± {tol:.4f}",
        )
    keep.sum().backward()
    bound = 1 / (4 * tau)
    high = logits.grad[..., 1].max().item()
    expect(
        0 < high <= bound * (1 + 1e-9),
        f"∂keep/∂logit up to {high:.4g}; Eq. 5 bounds it by {bound:.4g}",
    )


# ----------------------------------------------------------------------------------------------
# 3: the skim loss


@_hidden(3, "hidden: soft masks in (0, 1) count by their value; one layer; one token")
def _skim_loss_soft_masks():
    import torch

    skim = student("skim")
    # Two examples (lengths 3 and 1) and one layer of soft values: (1 + 0.5 + 0.25)/3 and 1/1,
    # mean (0.58333 + 1)/2 = 0.791667. Eq. 6 is linear in the masks: values count as they are.
    attention = torch.tensor([[1, 1, 1], [1, 0, 0]])
    hard = [torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])]
    out = _real_output(hard, attention)
    soft = torch.tensor([[1.0, 0.5, 0.25], [1.0, 0.0, 0.0]], requires_grad=True)
    out.masks = [soft]
    loss = _tensor(skim.skim_loss(out, attention), "skim_loss's result")
    expected = ((1 + 0.5 + 0.25) / 3 + 1.0) / 2
    expect(
        abs(loss.item() - expected) < 1e-6,
        f"with soft keep values (1, 0.5, 0.25) of a 3-token example and a 1-token example, "
        f"skim_loss gave {loss.item():.6g}; expected {expected:.6g} (the values, not a count of "
        f"the nonzero ones)",
    )


# ----------------------------------------------------------------------------------------------
# 4: reward and REINFORCE


@_hidden(4, "hidden: other numbers; one sample per example gives a zero loss")
def _reinforce_other_numbers():
    import torch

    rl_policy = student("rl_policy")
    # reward: task loss 0.2, 1.0, 0.5; selected (1, 3), (2, 2), (4, 0) of lengths 4, 8, 4; λ = 0.4:
    # −0.2 − 0.4·(1/4 + 3/4)/2 = −0.4, −1.0 − 0.4·(2/8 + 2/8)/2 = −1.1, −0.5 − 0.4·(1 + 0)/2 = −0.7.
    # Three examples and two modules: a mean over the batch's size (3) is not one over M (2).
    r = rl_policy.reward(torch.tensor([0.2, 1.0, 0.5]), torch.tensor([[1, 3], [2, 2], [4, 0]]),
                         torch.tensor([4, 8, 4]), 0.4)  # fmt: skip
    got = _tensor(r, "reward's result").tolist()
    expect(
        _close(got, [-0.4, -1.1, -0.7], 1e-6),
        f"3 examples, 2 modules: reward gave {_fmt(got)}; expected [-0.4, -1.1, -0.7] (the "
        f"penalty averages the fractions over the M modules, not over the batch)",
    )
    # S = 1: each sample is its own baseline, so no action is better than another: loss 0
    loss = rl_policy.reinforce_loss(torch.tensor([-0.3, -2.0]), torch.tensor([5.0, -1.0]), 1)
    expect(
        abs(float(loss)) < 1e-9, f"with one sample per example the loss is 0; got {float(loss):.4g}"
    )
    # S = 2, B = 1: rewards 3 and 1, advantages +1 and −1: loss −(1·(−0.5) − 1·(−1.5))/2 = −0.5
    loss = rl_policy.reinforce_loss(torch.tensor([-0.5, -1.5]), torch.tensor([3.0, 1.0]), 2)
    expect(abs(float(loss) + 0.5) < 1e-6, f"two samples (rewards 3, 1; log π −0.5, −1.5): "
                                          f"expected −0.5, got {float(loss):.6g}")  # fmt: skip


# ----------------------------------------------------------------------------------------------
# 5: FLOPs


@_hidden(5, "hidden: bert-base sizes, three layers, a scorer whose cost leaves remainders")
def _flops_other_sizes():
    flops = student("flops")
    base = SimpleNamespace(hidden_size=768, intermediate_size=3072, num_hidden_layers=12)
    total = sum(flops.layer_flops(base, 384).values())
    expected = (8 * 768 * 768 + 4 * 768 * 3072) * 384 + 4 * 768 * 384 * 384
    expect(total == expected, f"bert-base on 384 tokens: {total:,}; expected {expected:,}")
    # d = 2, f = 3: own rows 8·4 + 4·6 = 56 per layer, plus 4·n_i·2 = 8·n_i for the scores row.
    # L = 3, layers_processed (3, 1, 2, 0, 3): layers 0, 1, 2 process n = 4, 3, 2 tokens, so 4
    # tokens reach the scorer before layer 1 (7·4 + 2 = 30: 7 each, remainder 2) and 3 reach the
    # one before layer 2 (23: 7 each, remainder 2). Token 0 (k = 3): 56·3 + 8·(4 + 3 + 2) + 7 + 7
    # + 2 + 2 = 258 (the remainders are [CLS]'s); token 1 (k = 1): 56 + 32 + 7 = 95 (it reached
    # the scorer before layer 1, which dropped it); token 2 (k = 2): 56·2 + 8·7 + 7 + 7 = 182;
    # token 3 (k = 0): 0; token 4 (k = 3): 240 + 14 = 254.
    cfg = SimpleNamespace(hidden_size=2, intermediate_size=3, num_hidden_layers=3)
    scorer = SimpleNamespace(layers=(1, 2), overhead_flops=lambda config, n: 7 * n + 2)
    got = flops.per_token_flops(cfg, [3, 1, 2, 0, 3], scorer)
    expected = [258, 95, 182, 0, 254]
    expect(got == expected, f"per_token_flops on the hidden case gave {got}; expected {expected}")
