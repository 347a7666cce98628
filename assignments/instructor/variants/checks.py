"""The variants' checks: another specification of the functions of assignments 1-5 each.

A variant is graded in place of its public assignment: `python assignments/grade.py DIR
--variant 4b`. The student writes the same functions between the same markers, from the
variant's handout (assignments/instructor/variants/4b_*.md), whose answers are in no public
module: the repository's own code solves the public assignment and fails these checks.

Loaded by the grader (checks.load_instructor_checks) when this file exists; it registers with the
grader's framework, imported as `checks` (grade.py puts assignments/ on sys.path). The rules of
the public checks hold here too: every check is its own specification (hand-worked numbers,
statistics with fixed seeds, gradients derived here), calls only the functions it grades, and
says what was expected, what came and, in words, the likely mistake.
"""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import checks
from checks import CheckFailed, expect, student

_close, _diagnose, _fmt, _tensor = checks._close, checks._diagnose, checks._fmt, checks._tensor

HERE = "assignments/instructor/variants"

# ----------------------------------------------------------------------------------------------
# 1b: attention with a null key, the "off-by-one" softmax
#
#     p_ij = m_j·exp(s_ij) / (1 + Σ_k m_k·exp(s_ik)),   out_i = Σ_j p_ij·v_j
#
# The 1 is a null key that every query may attend: score 0, value 0. A row may give almost all of
# its weight to it, and so attend to (almost) nothing.

ATTENTION_1B = checks.variant(
    "1b",
    1,
    "attention with a null key (off-by-one softmax)",
    f"{HERE}/1b_null_key_attention.md",
)

# The public table (checks.SCORES, checks.VALUES; head 1 has zero queries, so scores 0).
# No mask, head 0: row 0: e^s = 1, 3, 4, Z = 1 + 8 = 9 -> (4 + 24 + 64, 8 + 0 + 16)/9
#                                                       = (92/9, 24/9)
#                  row 1: e^s = 2, 1, 5, Z = 9 -> (8 + 8 + 80, 16 + 0 + 20)/9 = (96/9, 36/9)
#                  row 2: e^s = 1, 1, 1, Z = 4 -> (28/4, 12/4) = (7, 3); head 1 likewise
NULL_NO_MASK = [[[92 / 9, 24 / 9], [96 / 9, 4.0], [7.0, 3.0]], [[7.0, 3.0]] * 3]
# Keys 0 and 1 kept: row 0: 1, 3, Z = 5 -> (4 + 24, 8)/5 = (5.6, 1.6)
#                    row 1: 2, 1, Z = 4 -> (8 + 8, 16)/4 = (4, 4); row 2: Z = 3 -> (4, 8/3)
NULL_KEEP_01 = [[[5.6, 1.6], [4.0, 4.0], [4.0, 8 / 3]], [[4.0, 8 / 3]] * 3]
# Keys 0 and 2 kept: row 0: 1, 4, Z = 6 -> (4 + 64, 8 + 16)/6 = (34/3, 4)
#                    row 1: 2, 5, Z = 8 -> (8 + 80, 16 + 20)/8 = (11, 4.5); row 2: (20/3, 4)
NULL_KEEP_02 = [[[34 / 3, 4.0], [11.0, 4.5], [20 / 3, 4.0]], [[20 / 3, 4.0]] * 3]


def _null_attention(scores, values, mask, scale=1.0, null=True, renormalise=True, one=False):
    """Head 0 in plain Python: out_i = Σ_j p_ij·v_j, p_ij = m_j·e^s_ij / (1 + Σ_k m_k·e^s_ik).
    The other flags give the common mistakes: null=False the ordinary softmax; renormalise=False
    the masked keys left in the denominator; one=True a 1 added after shifting by the row's
    largest kept score (instead of e^−c)."""
    out = []
    for row in scores:
        s = [scale * x for x in row]
        shift = max(x for x, m in zip(s, mask) if m) if one else 0.0
        e = [math.exp(x - shift) for x in s]
        kept = sum(w * m for w, m in zip(e, mask))
        total = (kept if renormalise else sum(e)) + (1.0 if null else 0.0)
        p = [w * m / total for w, m in zip(e, mask)]
        out.append([sum(pj * vj[c] for pj, vj in zip(p, values)) for c in range(len(values[0]))])
    return out


def _null_mistakes(mask) -> dict[str, object]:
    S, V = checks.SCORES, checks.VALUES
    return {
        "These are the values of the ordinary softmax, with no null key: add 1 (the null key, "
        "score 0, value 0) to the denominator.": _null_attention(S, V, mask, null=False),
        "These are the values with the masked keys left in the denominator: a masked key "
        "(m = 0) must leave it, 1 + Σ_k m_k·exp(s_ik).": (
            _null_attention(S, V, mask, renormalise=False)
        ),
        "These are the values with the mask ignored: masked keys must get weight 0.": (
            _null_attention(S, V, [1, 1, 1])
        ),
        "These are the values of a 1 added after shifting the scores by the row's largest score c: "
        "after the shift the null key's term is exp(0 − c), not 1.": (
            _null_attention(S, V, mask, one=True)
        ),
        "These are the values without the 1/√hs scaling (hs = 4 here).": (
            _null_attention(S, V, mask, scale=2.0)
        ),
        "These are the values with scores divided by hs instead of √hs.": (
            _null_attention(S, V, mask, scale=0.5)
        ),
    }


@ATTENTION_1B.check("without a mask: the null key is there, 1 + Σ_k exp(s_ik), hand-worked", 4)
def _null_no_mask():
    q, k, v = checks._table_qkv(checks.SCORES, checks.VALUES, batch=1)
    out = _tensor(checks._run_eager(q, k, v, None, 0.0), "_eager's result")
    expect(
        tuple(out.shape) == (1, 2, 3, 4),
        f"for q, k, v of shape (B, nh, T, hs) = (1, 2, 3, 4) the result has shape "
        f"{tuple(out.shape)}; expected (B, nh, T, hs)",
    )
    got = out[0, :, :, :2].tolist()
    hint = _diagnose(got[0], 1e-4, _null_mistakes([1, 1, 1]))
    if not hint and _close(got[0], NULL_NO_MASK[0]) and not _close(got, NULL_NO_MASK):
        hint = " Head 0 is right, head 1 is not."
    expect(
        _close(got, NULL_NO_MASK),
        f"with key_mask None, heads 0 and 1 gave {_fmt(got)}; expected {_fmt(NULL_NO_MASK)}: "
        f"the null key is there without a mask too (the handout works out head 0, row 0).{hint}",
    )
    expect(out[..., 2:].abs().max() < 1e-6, "features 2 and 3 of every v are 0, so of the output")


@ATTENTION_1B.check("a 0/1 key mask removes keys; the null key stays, hand-worked", points=5)
def _null_zero_one_mask():
    import torch

    q, k, v = checks._table_qkv(checks.SCORES, checks.VALUES, batch=2)
    masks = [[1, 1, 0], [1, 0, 1]]
    for dtype in (torch.float32, torch.bool):
        key_mask = torch.tensor(masks).to(dtype)
        out = _tensor(checks._run_eager(q, k, v, key_mask, 0.0), "_eager's result")
        for b, expected in enumerate((NULL_KEEP_01, NULL_KEEP_02)):
            got = out[b, :, :, :2].tolist()
            hint = _diagnose(got[0], 1e-4, _null_mistakes(masks[b]))
            expect(
                _close(got, expected),
                f"with key_mask {masks[b]} ({str(dtype)[6:]}), heads 0 and 1 gave {_fmt(got)}; "
                f"expected {_fmt(expected)}: m_j·exp(s_ij) / (1 + Σ_k m_k·exp(s_ik)).{hint}",
            )
    # masked_softmax itself: the probabilities of a row sum to Σ/(1 + Σ), less than 1
    transformer = student("transformer")
    scores = torch.tensor([[[[0.0, checks.LN3, checks.LN4]]]])  # e^s = 1, 3, 4
    probs = _tensor(
        transformer.masked_softmax(scores, torch.tensor([[True, False, True]])),
        "masked_softmax's result",
    )
    got, expected = probs[0, 0, 0].tolist(), [1 / 6, 0.0, 4 / 6]
    hint = (
        " They sum to 1: that is the softmax over the kept keys without the null key."
        if abs(sum(got) - 1) < 1e-5
        else ""
    )
    expect(
        _close(got, expected, 1e-5),
        f"masked_softmax of scores (0, ln 3, ln 4) with key mask (1, 0, 1) gave {_fmt(got)}; "
        f"expected (1, 0, 4)/(1 + 1 + 4) = {_fmt(expected)}, summing to 5/6.{hint}",
    )


@ATTENTION_1B.check("a float mask weights the keys; its gradient is the analytic one", points=6)
def _null_mask_gradient():
    import torch

    # Query 0 scores keys 0, 1, 2 with 0, ln 3, −ln 2 (e^s = 1, 3, ½); v_j[0] = 4, 8, 100;
    # m = (1, 1, 0). Z = 1 + 1 + 3 = 5, out = (4 + 24)/5 = 5.6. With out = N/Z,
    # N = Σ_j m_j e^s_j v_j, Z = 1 + Σ_k m_k e^s_k: ∂out/∂m_j = e^s_j·(v_j − out)/Z:
    # key 0: 1·(4 − 5.6)/5 = −0.32, key 1: 3·(8 − 5.6)/5 = 1.44, key 2: ½·(100 − 5.6)/5 = 9.44.
    scores = [[0.0, checks.LN3, -checks.LN2], [0.0] * 3, [0.0] * 3]
    q, k, v = checks._table_qkv(scores, [[4.0], [8.0], [100.0]], batch=1)
    m = torch.tensor([[1.0, 1.0, 0.0]], requires_grad=True)
    out = _tensor(checks._run_eager(q, k, v, m, 0.0), "_eager's result")
    got0 = out[0, 0, 0, 0].item()
    hint = " That is 28/4, the softmax without the null key." if abs(got0 - 7) < 1e-4 else ""
    expect(
        abs(got0 - 5.6) < 1e-4,
        f"with m = (1, 1, 0) query 0 gave {got0:.4g}; expected (4 + 24)/(1 + 1 + 3) = 5.6 (the "
        f"worked example of the handout).{hint}",
    )
    expect(
        out.requires_grad,
        "the result does not depend differentiably on key_mask: a skim decision learns through "
        "this gradient. Multiply the exponentials by m rather than filling masked scores with "
        "−inf.",
    )
    out[0, 0, 0, 0].backward()
    expected = [-0.32, 1.44, 9.44]
    got = [0.0] * 3 if m.grad is None else m.grad[0].tolist()
    hint = (
        " No gradient reached the mask: masked_fill(−inf) or a bool mask cuts it; multiply the "
        "exponentials by m instead."
        if not any(got)
        else " The masked key (m = 0) must get a gradient too: that is how a skimmed token "
        "learns it should have been kept."
        if _close(got[:2], expected[:2]) and abs(got[2]) < 1e-6
        else ""
    )
    expect(
        _close(got, expected),
        f"∂out/∂m for query 0 is {_fmt(got)}; expected e^s_j·(v_j − out)/Z = {_fmt(expected)}, "
        f"Z = 1 + Σ_k m_k·e^s_k = 5 (worked out in the handout).{hint}",
    )

    # Random inputs, a float mask in (0.2, 1): every gradient against the formula's, derived by
    # autograd on our own lines in float64.
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 4) for _ in range(3))
    m = torch.rand(2, 5) * 0.8 + 0.2
    weight = torch.randn(2, 2, 5, 4)

    def leaves(dtype):
        return [t.clone().to(dtype).requires_grad_() for t in (q, k, v, m)]

    theirs = leaves(torch.float32)
    (checks._run_eager(*theirs, 0.0) * weight).sum().backward()
    ours = leaves(torch.float64)
    s = ours[0] @ ours[1].transpose(-2, -1) / 2.0  # √hs = 2; |s| is small, no shift needed
    w = ours[3][:, None, None, :] * s.exp()
    ((w / (1 + w.sum(-1, keepdim=True))) @ ours[2] * weight.double()).sum().backward()
    for name, got, ref in zip(
        ("q", "k", "v", "key_mask"), [t.grad for t in theirs], [t.grad for t in ours]
    ):
        expect(got is not None, f"no gradient reached {name}")
        err = (got.double() - ref).abs().max().item()
        expect(
            err < 1e-4 * max(1.0, ref.abs().max().item()),
            f"on random inputs with a float mask in (0.2, 1), the gradient with respect to {name} "
            f"is off by up to {err:.3g} from that of m_j·exp(s_ij) / (1 + Σ_k m_k·exp(s_ik))",
        )


@ATTENTION_1B.check("scores of ±300: no overflow, and a row far below 0 attends to nothing", 3)
def _null_large_scores():
    import torch

    # Query 0 scores 300, 299 and (masked) 250: the null key's e^0 is nothing beside e^300, so
    # out = (4 + 8/e)/(1 + 1/e), as without it. Query 1 scores −300, −299, −250 (the last key
    # masked): now the null key takes all the weight, e^−299 is 0 in float32, and out = 0.
    # exp(300) is inf in float32: shift by c ≥ 0, the null key's term becoming e^−c.
    rows = [[300.0, 299.0, 250.0], [-300.0, -299.0, -250.0], [0.0] * 3]
    q, k, v = checks._table_qkv(rows, checks.VALUES, batch=1)
    out = checks._run_eager(q, k, v, torch.tensor([[1.0, 1.0, 0.0]]), 0.0)
    high, low = out[0, 0, 0, 0].item(), out[0, 0, 1, :2].tolist()
    expected = (4 + 8 / math.e) / (1 + 1 / math.e)
    expect(
        math.isfinite(high) and abs(high - expected) < 1e-3,
        f"with scores 300, 299, 250 (the last key masked) query 0 gave {high:.6g}, expected "
        f"{expected:.6g}. exp(300) overflows float32: subtract a shift c from every score, and "
        f"the null key's term becomes exp(0 − c).",
    )
    hint = (
        " That is the softmax over the kept keys: the null key, e^0 = 1, must outweigh "
        "e^−299 and take all the weight."
        if _close(low, [(4 + 8 * math.e) / (1 + math.e), 2 / (1 + math.e)], 1e-3)
        else ""
    )
    expect(
        all(math.isfinite(x) and abs(x) < 1e-6 for x in low),
        f"with scores −300, −299, −250 (the last masked) query 1 gave {_fmt(low)}; expected "
        f"(0, 0): every key scores far below the null key's 0, so the row attends to "
        f"nothing.{hint}",
    )


@ATTENTION_1B.check("in training, dropout acts on the attention probabilities", points=2)
def _null_dropout():
    import torch

    # v = 1, so each output is its row's sum of probabilities, Σ/(1 + Σ). Inverted dropout
    # (p = 0.5) zeroes or doubles each probability: the sums move, but not on average.
    torch.manual_seed(0)
    q, k = torch.randn(64, 2, 5, 4), torch.randn(64, 2, 5, 4)
    v = torch.ones(64, 2, 5, 4)
    mask = (torch.rand(64, 5) < 0.7).float()
    mask[:, 0] = 1.0
    plain = checks._run_eager(q, k, v, mask, 0.5, training=False)[..., 0].detach()
    sums = checks._run_eager(q, k, v, mask, 0.5, training=True)[..., 0].detach()
    moved = (sums - plain).abs().gt(1e-4).float().mean().item()
    expect(
        moved > 0.5,
        "with self.training and p_drop = 0.5 the probabilities were not dropped: apply "
        "F.dropout(probs, p_drop, self.training) to the probabilities",
    )
    ratio = sums.mean().item() / plain.mean().item()
    expect(
        abs(ratio - 1) < 0.15,
        f"with dropout the probabilities of a row should keep their sum on average, got "
        f"{ratio:.3f} times it: drop the probabilities (scaled by 1/(1 − p), as F.dropout "
        f"does), after normalising",
    )


# ----------------------------------------------------------------------------------------------
# 2b: a binary concrete (relaxed Bernoulli) decision that reads the keep logit alone
#
#     u = logits[..., 1] + log U − log(1 − U),  U ~ Uniform(0, 1)      (logistic noise)
#     keep = 1{u > 0} forward,  gradient of y = σ(u/τ) backward;  logits[..., 0] is not read

GUMBEL_2B = checks.variant(
    "2b",
    2,
    "straight-through binary concrete on the keep logit",
    f"{HERE}/2b_binary_concrete.md",
)

# Rows of N tokens: keep logit KEEP_LOGITS[b]; the skip logits SKIPS[b] must change nothing.
KEEP_LOGITS, SKIPS, TAUS, N = (-1.5, 0.5, 2.5), (0.3, -1.0, 2.0), (0.25, 3.0), 20000
SIGMAS = 5.0


def _concrete_call(tau: float):
    import torch

    skim = student("skim")
    skip = torch.tensor(SKIPS)[:, None].expand(3, N)
    keep = torch.tensor(KEEP_LOGITS)[:, None].expand(3, N)
    logits = torch.stack([skip, keep], -1).requires_grad_()
    return logits, skim.gumbel_keep(logits, tau)


def _gumbel_on_one_logit(logit: float) -> float:
    """P(logit + g > 0) for g ~ Gumbel(0, 1): 1 − exp(−e^logit)."""
    return 1 - math.exp(-math.exp(logit))


@GUMBEL_2B.check("returns a float (B, T) mask of exact 0s and 1s", points=4)
def _concrete_shape():
    import torch

    torch.manual_seed(0)
    _, keep = _concrete_call(0.25)
    keep = _tensor(keep, "gumbel_keep's result")
    expect(
        tuple(keep.shape) == (3, N),
        f"for logits of shape (B, T, 2) = (3, {N}, 2) the mask has shape {tuple(keep.shape)}; "
        f"expected (B, T): one decision per token",
    )
    expect(keep.dtype.is_floating_point, f"the mask has dtype {keep.dtype}; return floats")
    bad = ~((keep == 0) | (keep == 1))
    if bad.any():
        raise CheckFailed(
            f"{int(bad.sum())} of {keep.numel()} entries are neither 0 nor 1 (e.g. "
            f"{keep[bad][0].item():.4g}): the forward value is the hard decision; only the "
            f"gradient is the relaxed sample's (straight-through)"
        )


@GUMBEL_2B.check("keeps each token with probability σ(logits[..., 1]), whatever τ and index 0", 7)
def _concrete_frequencies():
    import torch

    torch.manual_seed(0)
    for tau in TAUS:
        _, keep = _concrete_call(tau)
        keep = _tensor(keep, "gumbel_keep's result").detach().double()
        for b, (logit, skip) in enumerate(zip(KEEP_LOGITS, SKIPS)):
            share, p = keep[b].mean().item(), checks._sigmoid(logit)
            tol = SIGMAS * math.sqrt(p * (1 - p) / N)
            near = lambda x: abs(share - x) <= tol  # noqa: E731
            # the mistake whose keep probability lies nearest the share kept, if any is near
            mistakes = {
                " That is σ(keep − skip), the two-class softmax of the public assignment: this "
                "one reads the keep logit alone as log-odds and never index 0.": (
                    checks._sigmoid(logit - skip)
                ),
                " That is 1 − σ(keep logit): the token is kept when logit + noise > 0.": 1 - p,
                " That reads index 0 as the keep logit; index 1 is keep.": checks._sigmoid(skip),
                " That is Gumbel noise on one logit, which is not symmetric: the noise of a "
                "binary concrete is logistic, log U − log(1 − U).": _gumbel_on_one_logit(logit),
            }
            nearest = min(mistakes, key=lambda h: abs(share - mistakes[h]))
            hint = (
                " Every token got the same decision: there is no noise. Add logistic noise "
                "log U − log(1 − U) to the keep logit before comparing with 0."
                if share in (0.0, 1.0)
                else nearest
                if near(mistakes[nearest])
                else " The decision (the sign of logit + noise) must not depend on τ > 0."
            )
            expect(
                near(p),
                f"with keep logit {logit} (skip logit {skip}) and τ = {tau}, {share:.4f} of {N} "
                f"tokens were kept; expected σ({logit}) = {p:.4f} (± {tol:.4f} for {N} "
                f"samples).{hint}",
            )


@GUMBEL_2B.check("the gradient goes straight through to the keep logit, none to index 0", 6)
def _concrete_straight_through():
    import torch

    torch.manual_seed(0)
    for tau in TAUS:
        logits, keep = _concrete_call(tau)
        keep = _tensor(keep, "gumbel_keep's result")
        expect(
            keep.requires_grad,
            "the mask carries no gradient, so the skim predictor could never learn: return "
            "hard + (soft − soft.detach()), hard forward, the relaxed sample's gradient backward",
        )
        keep.sum().backward()
        grad = logits.grad
        expect(
            grad is not None and grad[..., 1].abs().sum() > 0,
            "the gradient of the mask with respect to the keep logit is zero: a hard decision "
            "alone has none; add (soft − soft.detach())",
        )
        keep_grad, skip_grad = grad[..., 1], grad[..., 0]
        skip_max = skip_grad.abs().max().item()
        hint = (
            " It is minus the keep logit's: that is the two-class softmax, which reads the "
            "difference keep − skip; this decision reads logits[..., 1] alone."
            if (keep_grad + skip_grad).abs().max().item() < 1e-6
            else ""
        )
        expect(
            skip_max == 0.0,
            f"∂keep/∂logits[..., 0] reaches {skip_max:.4g}; index 0 is not read, so its "
            f"gradient must be 0.{hint}",
        )
        low, high, bound = keep_grad.min().item(), keep_grad.max().item(), 1 / (4 * tau)
        hint = " Is (logit + noise) divided by τ?" if high > bound * (1 + 1e-4) else ""
        expect(
            -1e-7 <= low and high <= bound * (1 + 1e-4),
            f"with τ = {tau}, ∂keep/∂(keep logit) ranges over [{low:.4g}, {high:.4g}]; the "
            f"relaxed sample y = σ((logit + noise)/τ) has gradient y(1 − y)/τ, in [0, 1/(4τ)] = "
            f"[0, {bound:.4g}].{hint}",
        )


@GUMBEL_2B.check("the gradient has the size of the relaxed sample at temperature τ", points=8)
def _concrete_gradient_size():
    import torch

    # u = logit + logistic noise has the logistic density σ'(u − logit), the same as the public
    # assignment's delta + g_keep − g_skip: checks._gumbel_theory(logit, τ) gives the mean and
    # variance of G·1{kept} and G·1{skipped}, G = y(1 − y)/τ, y = σ(u/τ).
    torch.manual_seed(0)
    for tau in TAUS:
        logits, keep = _concrete_call(tau)
        keep = _tensor(keep, "gumbel_keep's result")
        expect(keep.requires_grad, "the mask carries no gradient (see the previous check)")
        keep.sum().backward()
        expect(logits.grad is not None, "no gradient reached the logits")
        g = logits.grad[..., 1].double()
        kept = keep.detach().double()
        for b, logit in enumerate(KEEP_LOGITS):
            theory, at_one = checks._gumbel_theory(logit, tau), checks._gumbel_theory(logit, 1.0)
            # over all tokens: a sampler whose hard and soft draw their own noise is right here
            # and wrong only when split by the decision; one that ignores τ is τ = 1's
            total = g[b].mean().item()
            (mk, vk), (ms, vs) = theory["keep"], theory["skip"]
            spread = vk + mk**2 + vs + ms**2 - (mk + ms) ** 2  # Var(G) over all tokens
            total_tol = SIGMAS * math.sqrt(spread / N) + 1e-6
            at_one_total = at_one["keep"][0] + at_one["skip"][0]
            for decision, on in (("kept", kept[b]), ("skipped", 1 - kept[b])):
                key = "keep" if decision == "kept" else "skip"
                mean, var = theory[key]
                tol = SIGMAS * math.sqrt(var / N) + 1e-6
                got = (g[b] * on).mean().item()
                hint = (
                    " That is what τ = 1 gives: divide (logit + noise) by τ before the sigmoid."
                    if abs(total - at_one_total) <= total_tol
                    and abs(mk + ms - at_one_total) > total_tol
                    else " The hard decision and the relaxed sample must share the same noise "
                    "(hard = 1{y > 1/2}): over all tokens the gradient is right, split by the "
                    "decision it is not."
                    if abs(total - (mk + ms)) <= total_tol
                    else ""
                )
                expect(
                    abs(got - mean) <= tol,
                    f"with keep logit {logit} and τ = {tau}, the gradient with respect to the "
                    f"keep logit, summed over the {decision} tokens and divided by all {N}, is "
                    f"{got:.5f}; the relaxed sample gives {mean:.5f} ± {tol:.5f} (y(1 − y)/τ, "
                    f"y = σ((logit + noise)/τ)).{hint}",
                )


# ----------------------------------------------------------------------------------------------
# 3b: the skim loss as the share of attention scores still computed
#
#     Loss = (1/B) Σ_b (1/L) Σ_i (n_bi / N_b)²,  n_bi = Σ_t M^i_bt,  N_b = the real length

SKIM_LOSS_3B = checks.variant(
    "3b", 3, "skim loss on the attention's n² work", f"{HERE}/3b_quadratic_skim_loss.md"
)


def _quadratic_loss(masks, attention_mask):
    skim = student("skim")
    out = skim.skim_loss(checks._real_output(masks, attention_mask), attention_mask)
    return _tensor(out, "skim_loss's result")


# The public batch: example 0 (length 4) keeps 3 then 2: ((3/4)² + (2/4)²)/2 = 13/32;
# example 1 (length 2) keeps 2 then 1: ((2/2)² + (1/2)²)/2 = 5/8; loss = (13/32 + 20/32)/2 = 33/64.
QUAD_LOSS = 33 / 64


def _quadratic_mistakes() -> dict[str, float]:
    kept = [[3, 2], [2, 1]]  # [example][layer]
    lengths, T, L, B = [4, 2], 4, 2, 2
    per = lambda f: sum(sum(f(n, b) for n in kept[b]) / L for b in range(B)) / B  # noqa: E731
    layer_totals = [sum(kept[b][i] for b in range(B)) for i in range(L)]
    return {
        "That is the linear share of the public assignment, n/N: this loss squares each "
        "layer's share, (n/N)².": per(lambda n, b: n / lengths[b]),
        "That is what dividing by the padded length T gives: divide by each example's real "
        "length, attention_mask.sum(1).": per(lambda n, b: (n / T) ** 2),
        "That squares the mean over layers; square each layer's share, then take the mean.": (
            sum((sum(kept[b]) / L / lengths[b]) ** 2 for b in range(B)) / B
        ),
        "That squares the batch's total kept over its total real tokens; take each "
        "example's share first.": sum((t / sum(lengths)) ** 2 for t in layer_totals) / L,
        "That is n²/N: divide the square by the length squared, (n/N)².": (
            per(lambda n, b: n * n / lengths[b])
        ),
        "That is a sum where the loss takes a mean (over layers, and over the batch).": (
            per(lambda n, b: (n / lengths[b]) ** 2) * L * B
        ),
        "That is a sum over the layers; take their mean.": (
            per(lambda n, b: (n / lengths[b]) ** 2) * L
        ),
    }


@SKIM_LOSS_3B.check("hand-worked batch: each layer's kept share, squared, then means", points=6)
def _quadratic_hand_worked():
    import torch

    masks = [torch.tensor(m, dtype=torch.float32) for m in checks.HAND_KEEP]
    loss = _quadratic_loss(masks, torch.tensor(checks.HAND_MASK))
    expect(loss.numel() == 1, f"the loss has shape {tuple(loss.shape)}; return one number")
    got = loss.item()
    hint = _diagnose(got, 1e-4, _quadratic_mistakes())
    expect(
        abs(got - QUAD_LOSS) < 1e-5,
        f"skim_loss gave {got:.6g} on the batch of the handout; expected ((3/4)² + (2/4)²)/2 = "
        f"13/32 for example 0 and ((2/2)² + (1/2)²)/2 = 5/8 for example 1, mean 33/64 = "
        f"{QUAD_LOSS:.6g}.{hint}",
    )


@SKIM_LOSS_3B.check("random batches: the squared shares counted token by token", points=4)
def _quadratic_random():
    import torch

    torch.manual_seed(1)
    for L, lengths in ((3, [7, 5, 3, 1]), (1, [2, 6]), (4, [6])):
        B, T = len(lengths), max(lengths)
        attention = (torch.arange(T) < torch.tensor(lengths)[:, None]).long()
        alive, masks = attention.float(), []
        for _ in range(L):
            alive = alive * (torch.rand(B, T) < 0.7).float()
            alive[:, 0] = 1.0
            masks.append(alive.clone())
        rows = [[m[b].tolist() for m in masks] for b in range(B)]
        expected = sum(sum((sum(r) / n) ** 2 for r in rows[b]) / L for b, n in enumerate(lengths))
        expected /= B
        got = _quadratic_loss(masks, attention).item()
        expect(
            abs(got - expected) < 1e-5,
            f"with L = {L} layers and real lengths {lengths}, skim_loss gave {got:.6g}; counting "
            f"the kept tokens of each example and layer by hand gives {expected:.6g}",
        )


@SKIM_LOSS_3B.check("a differentiable scalar: ∂loss/∂M = 2·n/(L·B·N²) at real tokens", points=5)
def _quadratic_gradient():
    import torch

    masks = [torch.tensor(m, dtype=torch.float32, requires_grad=True) for m in checks.HAND_KEEP]
    loss = _quadratic_loss(masks, torch.tensor(checks.HAND_MASK))
    expect(
        loss.requires_grad,
        "the loss carries no gradient: it must be computed from out.masks (differentiable), not "
        "from detached counts such as out.tokens_per_layer, .item() or Python numbers",
    )
    loss.sum().backward()
    kept = [[3, 2], [2, 1]]  # [layer][example]
    for i, m in enumerate(masks):
        expect(m.grad is not None, f"no gradient reached out.masks[{i}]")
        for b, length in enumerate((4, 2)):
            got = m.grad[b, :length].tolist()
            n = kept[i][b]
            expected = 2 * n / (2 * 2 * length**2)  # L = 2, B = 2
            hint = (
                " That is the linear loss's 1/(L·B·N): the square's derivative is 2·(n/N)/N."
                if all(abs(x - 1 / (4 * length)) < 1e-6 for x in got)
                else ""
            )
            expect(
                all(abs(x - expected) < 1e-6 for x in got),
                f"∂loss/∂masks[{i}][{b}] at the {length} real tokens is {_fmt(got)}; with "
                f"n = {n} kept, expected 2·n/(L·B·N²) = 2·{n}/(2·2·{length}²) = "
                f"{expected:.4g} each.{hint}",
            )


# ----------------------------------------------------------------------------------------------
# 4b: a bounded reward and a leave-one-out baseline
#
#     R_b = Pr(y|X) − λ·(1/M) Σ_m selected_bm / length_b,   Pr(y|X) = exp(−task_loss_b)
#     loss = −mean_{b,s} (R_bs − (1/(S−1)) Σ_{s'≠s} R_bs')·log π_bs

REINFORCE_4B = checks.variant(
    "4b",
    4,
    "bounded reward and leave-one-out REINFORCE",
    f"{HERE}/4b_leave_one_out.md",
)

LN2, LN4 = math.log(2), math.log(4)
# Example 0: loss ln 2 -> Pr = 1/2; fractions 3/4, 1/4, mean 1/2: R = 0.5 − 0.2·0.5 = 0.4
# Example 1: loss ln 4 -> Pr = 1/4; fractions 1, 1/4, mean 5/8: R = 0.25 − 0.2·0.625 = 0.125
BOUNDED_INPUT = ([LN2, LN4], [[3, 1], [8, 2]], [4, 8], 0.2)
BOUNDED = [0.4, 0.125]

# The public samples (checks.LOG_PROBS, checks.REWARDS), B = 2, S = 3.
# Example 0, rewards 1, 2, 6: the others' means 4, 3.5, 1.5 -> advantages −3, −1.5, 4.5
# Example 1, rewards −4, −2, 0: the others' means −1, −2, −3 -> advantages −3, 0, 3
# Σ A·log π = 1.5 + 1.5 − 9 + 4.5 + 0 − 9 = −10.5: loss = 10.5/6 = 7/4;
# ∂loss/∂log π = −A/6 = 1/2, 1/4, −3/4, 1/2, 0, −1/2.
LOO_LOSS, LOO_GRAD = 7 / 4, [0.5, 0.25, -0.75, 0.5, 0.0, -0.5]


def _loo_mistakes() -> dict[str, float]:
    lp, r, S = checks.LOG_PROBS, checks.REWARDS, 3

    def loss(baseline):
        advantages = [r[i] - baseline(i) for i in range(len(r))]
        return -sum(a * x for a, x in zip(advantages, lp)) / len(r)

    group = lambda i: r[i // S * S : i // S * S + S]  # noqa: E731
    return {
        "That is the mean baseline of the public assignment, each sample's own reward "
        "included: leave the sample out, the mean of the other S − 1.": checks.LOSS,
        "That divides the other samples' sum by S; there are S − 1 of them.": (
            loss(lambda i: (sum(group(i)) - r[i]) / S)
        ),
        "That is REINFORCE without a baseline: subtract the mean of the other S − 1 rewards of "
        "the same example.": loss(lambda i: 0.0),
        "That leaves the sample out of the whole batch's mean; the baseline is the mean of the "
        "other samples of its own example.": loss(lambda i: (sum(r) - r[i]) / (len(r) - 1)),
        "That takes the samples as interleaved (view(S, B)); they lie side by side: example b "
        "is entries b·S … b·S + S − 1.": loss(
            lambda i: (sum(r[i % 2 :: 2]) - r[i]) / (S - 1)  # B = 2: every other entry
        ),
        "The sign is flipped: the loss to minimise is −mean(advantage·log π).": -LOO_LOSS,
        "That is a sum over the B·S samples; take the mean.": LOO_LOSS * 6,
    }


@REINFORCE_4B.check("reward: R = Pr(y|X) − λ·(mean selected fraction), hand-worked", points=6)
def _bounded_reward():
    import torch

    rl_policy = student("rl_policy")
    task_loss, selected, lengths, lam = BOUNDED_INPUT
    args = torch.tensor(task_loss), torch.tensor(selected), torch.tensor(lengths)
    got = _tensor(rl_policy.reward(*args, lam), "reward's result").tolist()
    hint = _diagnose(
        got,
        1e-5,
        {
            "That is the log-likelihood −task_loss of the public assignment: this reward is the "
            "probability of the label, Pr(y|X) = exp(−task_loss), between 0 and 1.": [
                -LN2 - 0.1,
                -LN4 - 0.125,
            ],
            "That is exp(+task_loss): Pr(y|X) = exp(−task_loss) falls as the loss grows.": [
                2 - 0.1,
                4 - 0.125,
            ],
            "That is 1 − task_loss, a first-order guess: the reward is exp(−task_loss).": [
                1 - LN2 - 0.1,
                1 - LN4 - 0.125,
            ],
            "The penalty is added: selecting tokens must lower R.": [0.6, 0.375],
            "The fractions are summed over the modules; take their mean.": [0.3, 0.0],
            "That penalises the raw count of selected tokens; the penalty is the fraction of "
            "each example's real length, averaged over modules.": [-0.3, -1.75],
        },
    )
    expect(
        _close(got, BOUNDED, 1e-5),
        f"reward(task_loss=(ln 2, ln 4), selected={selected}, lengths={lengths}, λ={lam}) gave "
        f"{_fmt(got)}; expected {BOUNDED}: 1/2 − 0.2·1/2 and 1/4 − 0.2·5/8 (worked out in the "
        f"handout).{hint}",
    )
    plain = rl_policy.reward(*args, 0.0).tolist()
    expect(
        _close(plain, [0.5, 0.25], 1e-6),
        f"with λ = 0 the reward should be Pr(y|X) = exp(−task_loss) = [0.5, 0.25], got "
        f"{_fmt(plain)}",
    )


def _loo(log_probs, rewards, num_samples: int):
    rl_policy = student("rl_policy")
    loss = rl_policy.reinforce_loss(log_probs, rewards, num_samples)
    return _tensor(loss, "reinforce_loss's result")


@REINFORCE_4B.check("REINFORCE: hand-worked loss and gradient, leave-one-out baseline", points=7)
def _loo_hand_worked():
    import torch

    log_probs = torch.tensor(checks.LOG_PROBS, requires_grad=True)
    loss = _loo(log_probs, torch.tensor(checks.REWARDS), 3)
    expect(loss.numel() == 1, f"the loss has shape {tuple(loss.shape)}; return one number")
    got = loss.item()
    hint = _diagnose(got, 1e-5, _loo_mistakes())
    expect(
        abs(got - LOO_LOSS) < 1e-5,
        f"reinforce_loss(log_probs={checks.LOG_PROBS}, rewards={checks.REWARDS}, num_samples=3) "
        f"gave {got:.6g}; expected 7/4 = {LOO_LOSS:.6g} (worked out in the handout).{hint}",
    )
    expect(loss.requires_grad, "the loss carries no gradient with respect to log_probs")
    loss.sum().backward()
    got_grad = log_probs.grad.tolist()
    expect(
        _close(got_grad, LOO_GRAD, 1e-5),
        f"∂loss/∂log_probs is {_fmt(got_grad)}; expected −advantage/(B·S) = {_fmt(LOO_GRAD)}",
    )


@REINFORCE_4B.check("REINFORCE: unbiased (enumerated), and blind to a shift of one example", 5)
def _loo_unbiased():
    import torch

    # A bandit with K = 3 arms, π = softmax(θ), reward r_a; J = Σ_a π_a r_a and
    # ∂J/∂θ_k = π_k (r_k − J). Enumerate all K^S = 27 ways to draw S = 3 samples, weigh the
    # gradient of each draw's loss by its probability: the expectation must be −∂J/∂θ exactly.
    # (A baseline that includes the sample itself scales it by (S − 1)/S; none leaves it
    # unbiased too, which the hand-worked check catches.)
    theta = torch.tensor([0.2, -0.5, 1.0], dtype=torch.float64)
    r = torch.tensor([1.0, 4.0, -2.0], dtype=torch.float64)
    pi = theta.softmax(0)
    true = -(pi * (r - (pi * r).sum()))  # −∂J/∂θ
    S, expected_grad = 3, torch.zeros(3, dtype=torch.float64)
    for draw in itertools.product(range(3), repeat=S):
        t = theta.clone().requires_grad_()
        index = torch.tensor(draw)
        loss = _loo(t.log_softmax(0)[index], r[index], S)
        (grad,) = torch.autograd.grad(loss.sum(), t)
        expected_grad += pi[index].prod() * grad
    got, want = expected_grad.tolist(), true.tolist()
    hint = (
        " That is (S − 1)/S of it: a baseline that includes the sample's own reward is "
        "correlated with its action. Leave the sample out."
        if _close(got, [x * (S - 1) / S for x in want], 1e-6)
        else ""
    )
    expect(
        _close(got, want, 1e-6),
        f"the expected gradient of the loss with respect to θ, over all 27 draws of S = 3 "
        f"samples from a 3-armed bandit, is {_fmt(got)}; the policy gradient is −∂J/∂θ = "
        f"{_fmt(want)}.{hint}",
    )

    torch.manual_seed(0)
    B, S = 5, 4
    log_probs, rewards = -torch.rand(B * S) * 3, torch.randn(B * S)
    shift = torch.tensor([10.0, -3.0, 0.5, 100.0, -50.0]).repeat_interleave(S)
    before = _loo(log_probs, rewards, S).item()
    after = _loo(log_probs, rewards + shift, S).item()
    expect(
        abs(after - before) < 1e-4 * max(1.0, abs(before)),
        f"adding a constant to all {S} rewards of an example changed the loss from "
        f"{before:.5g} to {after:.5g}; a baseline made of the same example's other samples "
        f"makes it unchanged",
    )
    same = _loo(log_probs, torch.full((B * S,), 7.0), S).item()
    expect(
        abs(same) < 1e-6,
        f"when every sample of an example has the same reward the loss must be 0; got {same:.5g}",
    )


@REINFORCE_4B.check("REINFORCE: the rewards are constants, no gradient flows into them", points=2)
def _loo_detached():
    import torch

    rewards = torch.tensor(checks.REWARDS, requires_grad=True)
    loss = _loo(torch.tensor(checks.LOG_PROBS, requires_grad=True), rewards, 3)
    loss.sum().backward()
    expect(
        rewards.grad is None or not rewards.grad.any(),
        "the loss sends a gradient into the rewards; treat them as constants (rewards.detach()): "
        "REINFORCE differentiates log π only",
    )


# ----------------------------------------------------------------------------------------------
# 5b: FLOPs of a layer with grouped-query attention
#
# nh query heads of width hs = d/nh share kv = num_key_value_heads key/value heads (absent: kv =
# nh). K and V project d -> d_kv = kv·hs; Q, the scores, the context and everything after keep
# their size. One layer: (4d² + 4d·d_kv + 4df)·n + 4d·n².

FLOPS_5B = checks.variant(
    "5b", 5, "FLOPs with grouped-query attention", f"{HERE}/5b_grouped_query_flops.md"
)

GQA = SimpleNamespace(
    hidden_size=8,
    intermediate_size=12,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=1,
)
# d = 8, f = 12, nh = 4 (hs = 2), kv = 1 (d_kv = 2), n = 3:
GQA_3 = {
    "qkv": 576,  # Q (3×8)@(8×8): 2·3·8·8 = 384; K and V (3×8)@(8×2): 2·3·8·2 = 96 each
    "scores": 144,  # 4 heads, (3×2)@(2×3) each: 4·2·3·3·2 = 2·3·3·8
    "context": 144,
    "attn_out": 384,  # (3×8)@(8×8)
    "ffn_up": 576,  # (3×8)@(8×12)
    "ffn_down": 576,
}


def _qkv_mistakes(d, f, nh, kv, n) -> dict[str, int]:
    d_kv = kv * (d // nh)
    return {
        "That is the multi-head cost 3·2nd², the public assignment's: K and V project to "
        "num_key_value_heads·hs = d_kv outputs, not d.": 6 * n * d * d,
        "That shrinks the queries too: Q keeps all nh heads, (n×d)@(d×d); only K and V have "
        "num_key_value_heads heads.": 6 * n * d * d_kv,
        "That shrinks only one of K and V: both have num_key_value_heads heads of width hs.": (
            2 * n * d * d + 2 * n * d * d + 2 * n * d * d_kv
        ),
        "That counts K and V together as one (d×d_kv) projection: there are two.": (
            2 * n * d * d + 2 * n * d * d_kv
        ),
        "That scales K and V by nh/kv instead of kv/nh: fewer KV heads must cost less.": (
            2 * n * d * d + 4 * n * d * d * nh // kv
        ),
    }


@FLOPS_5B.check("layer_flops: each matmul, hand-worked (d = 8, f = 12, nh = 4, kv = 1)", 8)
def _gqa_hand_worked():
    flops = student("flops")
    got = flops.layer_flops(GQA, 3)
    expect(isinstance(got, dict), f"layer_flops returned a {type(got).__name__}; return a dict")
    missing, extra = GQA_3.keys() - got.keys(), got.keys() - GQA_3.keys()
    expect(
        not missing and not extra,
        f"layer_flops has keys {sorted(got)}; expected one per matmul, as in the public "
        f"assignment: {list(GQA_3)} (missing {sorted(missing)}, unexpected {sorted(extra)})",
    )
    for key, expected in GQA_3.items():
        value = got[key]
        expect(
            isinstance(value, int) and not isinstance(value, bool),
            f"layer_flops[{key!r}] is {value!r}, a {type(value).__name__}; FLOPs are whole "
            f"numbers (int): hs = d // nh is an integer, and so is every product",
        )
        if key == "qkv":
            hint = next((h for h, v in _qkv_mistakes(8, 12, 4, 1, 3).items() if v == value), "")
        elif key in ("scores", "context") and value * 4 == expected:
            hint = (
                "That shrinks the attention by kv/nh: every one of the nh query heads still "
                "scores all n keys (a KV head is shared, not skipped), 2·n²·d in all."
            )
        elif value * 2 == expected:
            hint = "That is half: count 2 FLOPs per multiply-add."
        else:
            hint = ""
        expect(
            value == expected,
            f"layer_flops(d=8, f=12, nh=4, num_key_value_heads=1, n=3)[{key!r}] is {value}; "
            f"expected {expected} (the handout works out each matmul). {hint}".rstrip(),
        )


@FLOPS_5B.check("layer_flops: (4d² + 4d·d_kv + 4df)·n + 4d·n²; no num_key_value_heads: kv = nh", 4)
def _gqa_scaling():
    flops = student("flops")
    shapes = ((768, 3072, 12, 4), (4096, 14336, 32, 8), (384, 1536, 6, 6), (64, 256, 8, 1))
    for d, f, nh, kv in shapes:
        cfg = SimpleNamespace(
            hidden_size=d,
            intermediate_size=f,
            num_hidden_layers=12,
            num_attention_heads=nh,
            num_key_value_heads=kv,
        )
        d_kv = kv * (d // nh)
        for n in (0, 1, 7, 128):
            total = sum(flops.layer_flops(cfg, n).values())
            linear, quadratic = (4 * d * d + 4 * d * d_kv + 4 * d * f) * n, 4 * d * n * n
            expect(
                total == linear + quadratic,
                f"with d = {d}, f = {f}, nh = {nh}, num_key_value_heads = {kv}, n = {n}, the "
                f"layer costs {total} FLOPs; expected (4d² + 4d·d_kv + 4df)·n + 4d·n², d_kv = "
                f"kv·d/nh = {d_kv}: {linear} + {quadratic} = {linear + quadratic}",
            )
    # A config without the field (BERT's) is multi-head attention: kv = nh, 8d² + 4df.
    bert = SimpleNamespace(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12
    )
    try:
        total = sum(flops.layer_flops(bert, 128).values())
    except AttributeError as e:
        raise CheckFailed(
            f"a config without num_key_value_heads (bert-base's) raised AttributeError: {e}. "
            f"Without the field there are as many KV heads as query heads (multi-head attention)"
        ) from None
    expect(
        total == 1_862_270_976,
        f"bert-base (no num_key_value_heads: kv = nh = 12) on 128 tokens costs {total} FLOPs per "
        f"layer; expected 1,862,270,976, the multi-head count",
    )


@FLOPS_5B.check("per_token_flops: what each token cost with grouped-query attention", 8)
def _gqa_per_token():
    flops = student("flops")
    # d = 8, f = 12, nh = 4, kv = 1 (d_kv = 2): a token's own rows cost 2d² (Q) + 4·d·d_kv (K, V)
    # + 2d² (output) + 4df (FFN) = 128 + 64 + 128 + 384 = 704 per layer, plus 4·n_i·d = 32·n_i.
    # L = 2, [2, 1, 0]: n = (2, 1). Token 0: (704 + 64) + (704 + 32) = 1504; token 1: 768; 0.
    # A scorer costing 10 per token before layers 0 and 1: +20, +20, +10.
    # L = 3, [3, 0, 3, 1]: n = (3, 2, 2). k = 3: (704 + 96) + (704 + 64)·2 = 2336; k = 1: 800.
    # Multi-head (kv = nh = 2, or no field), d = 4, f = 6: the public numbers, [496, 256, 0].
    per_token = SimpleNamespace(layers=(0, 1), overhead_flops=lambda config, n: 10 * n)
    three = SimpleNamespace(**{**vars(GQA), "num_hidden_layers": 3})
    mha = SimpleNamespace(**{**vars(checks.SMALL), "num_key_value_heads": 2})
    cases = [
        (GQA, [2, 1, 0], None, [1504, 768, 0]),
        (GQA, [2, 1, 0], per_token, [1524, 788, 10]),
        (three, [3, 0, 3, 1], None, [2336, 0, 2336, 800]),
        (mha, [2, 1, 0], None, [496, 256, 0]),
        (checks.SMALL, [2, 1, 0], None, [496, 256, 0]),
    ]
    for cfg, processed, cost, expected in cases:
        kv = getattr(cfg, "num_key_value_heads", None)
        args = (cfg, processed) if cost is None else (cfg, processed, cost)
        try:
            got = flops.per_token_flops(*args)
        except AttributeError as e:
            raise CheckFailed(
                f"a config without num_key_value_heads raised AttributeError: {e}. Without the "
                f"field there are as many KV heads as query heads (multi-head attention)"
            ) from None
        expect(
            isinstance(got, list) and all(isinstance(x, int) for x in got),
            f"per_token_flops returned {got!r}; return a list of ints, one per token",
        )
        d, f, nh = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads
        mha_rows = 8 * d * d + 4 * d * f
        n = [sum(k > i for k in processed) for i in range(cfg.num_hidden_layers)]
        old = [sum(mha_rows + 4 * n[i] * d for i in range(k)) for k in processed]
        hint = (
            " That charges each token the multi-head rows, 8d² + 4df: its K and V rows cost "
            "2·d·d_kv each, not 2d²."
            if got == old and got != expected and cost is None
            else ""
        )
        expect(
            got == expected,
            f"per_token_flops(d={d}, f={f}, nh={nh}, num_key_value_heads={kv}, "
            f"L={cfg.num_hidden_layers}, layers_processed={processed}, "
            f"scorer={'none' if cost is None else cost.layers}) gave {got}; expected {expected} "
            f"(worked out in the handout).{hint}",
        )
