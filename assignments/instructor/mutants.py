"""Known-wrong solutions (mutants) and other right ones, for the instructor's kit only.

A mutant is a mistake the way students write it, put in place of a reference body. The grader
must fail its assignment at the check named, with a message that names the mistake (the words
given). A right solution is another correct way of writing a function: the grader must give it
full marks. `python assignments/instructor/mutants.py COPY` grades every one of them on a solved
copy in one process (torch is imported once) and prints JSON; test_kit.py runs it.

This file holds answers (the right solutions, and mutants a sign away from one): it lives in
assignments/instructor/, which make_student.py never copies.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

# name: (file, function, wrong body, check that must fail, words its message must contain)
MUTANTS = {
    # --- assignment 1: attention with a key mask
    "attention masked without renormalising": (
        "transformer.py",
        "SelfAttention._eager",
        """
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.hs)
        probs = scores.softmax(-1)
        if key_mask is not None:
            probs = probs * key_mask.to(scores.dtype)[:, None, None, :]
        return F.dropout(probs, p_drop, self.training) @ v, probs
        """,
        "renormalises",
        "renormalise",
    ),
    "attention with masked scores filled with -inf": (
        "transformer.py",
        "masked_softmax",
        """
        m = key_mask.bool()[:, None, None, :]
        return scores.masked_fill(~m, float("-inf")).softmax(-1)
        """,
        "float mask weights the keys",
        "does not depend differentiably",
    ),
    "attention inlined in float64, shifted by the row's largest score": (
        "transformer.py",
        "SelfAttention._eager",
        """
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.hs)
        if key_mask is None:
            probs = scores.softmax(-1)
        else:  # float64 holds e^±100 but not e^−1000: a masked key leading by 1000 gives 0/0
            s, m = scores.double(), key_mask.double()[:, None, None, :]
            w = m * (s - s.amax(-1, keepdim=True)).exp()
            probs = (w / w.sum(-1, keepdim=True)).to(scores.dtype)
        return F.dropout(probs, p_drop, self.training) @ v, probs
        """,
        "large scores",
        "1000 above the kept ones",
    ),
    "attention without the 1/sqrt(hs) scaling": (
        "transformer.py",
        "SelfAttention._eager",
        """
        scores = q @ k.transpose(-2, -1)
        probs = scores.softmax(-1) if key_mask is None else masked_softmax(scores, key_mask)
        return F.dropout(probs, p_drop, self.training) @ v, probs
        """,
        "without a mask",
        "without the 1/√hs scaling",
    ),
    "attention scaled by 1/hs": (
        "transformer.py",
        "SelfAttention._eager",
        """
        scores = q @ k.transpose(-2, -1) / self.hs
        probs = scores.softmax(-1) if key_mask is None else masked_softmax(scores, key_mask)
        return F.dropout(probs, p_drop, self.training) @ v, probs
        """,
        "without a mask",
        "divided by hs instead of √hs",
    ),
    "masked softmax without subtracting the largest score": (
        "transformer.py",
        "masked_softmax",
        """
        w = scores.exp() * key_mask.to(scores.dtype)[:, None, None, :]
        return w / w.sum(-1, keepdim=True)
        """,
        "large scores",
        "overflows",
    ),
    "attention without dropout": (
        "transformer.py",
        "SelfAttention._eager",
        """
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.hs)
        probs = scores.softmax(-1) if key_mask is None else masked_softmax(scores, key_mask)
        return probs @ v, probs
        """,
        "dropout",
        "were not dropped",
    ),
    "attention returning the probabilities after dropout": (
        "transformer.py",
        "SelfAttention._eager",
        """
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.hs)
        probs = scores.softmax(-1) if key_mask is None else masked_softmax(scores, key_mask)
        probs = F.dropout(probs, p_drop, self.training)
        return probs @ v, probs
        """,
        "dropout",
        "before dropout",
    ),
    "masked softmax shifted by the largest kept score only": (
        "transformer.py",
        "masked_softmax",
        """
        m = key_mask.to(scores.dtype)[:, None, None, :]
        top = scores.masked_fill(m == 0, float("-inf")).amax(-1, keepdim=True).detach()
        w = m * (scores - top).exp()
        return w / w.sum(-1, keepdim=True)
        """,
        "large scores",
        "inf × 0",
    ),
    "masked keys cut from the gradient": (
        "transformer.py",
        "masked_softmax",
        """
        m = key_mask.to(scores.dtype)[:, None, None, :]
        s = scores - scores.amax(-1, keepdim=True).detach()
        w = torch.where(m > 0, s.exp() * m, torch.zeros_like(s))
        return w / w.sum(-1, keepdim=True)
        """,
        "float mask weights the keys",
        "must get a gradient too",
    ),
    # --- assignment 2: straight-through Gumbel-softmax
    "Gumbel with no noise": (
        "skim.py",
        "gumbel_keep",
        """
        soft = (logits / tau).softmax(-1)[..., 1]
        hard = (soft > 0.5).to(logits.dtype)
        return hard + (soft - soft.detach())
        """,
        "fresh noise",
        "there is no noise",
    ),
    "Gumbel with tau ignored": (
        "skim.py",
        "gumbel_keep",
        """
        gumbel = -torch.empty_like(logits).exponential_().log()
        soft = (logits + gumbel).softmax(-1)[..., 1]
        hard = (soft > 0.5).to(logits.dtype)
        return hard + (soft - soft.detach())
        """,
        "straight through",
        "divided by τ",
    ),
    "hard Gumbel sample with no straight-through gradient": (
        "skim.py",
        "gumbel_keep",
        """
        gumbel = -torch.empty_like(logits).exponential_().log()
        soft = ((logits + gumbel) / tau).softmax(-1)[..., 1]
        return (soft > 0.5).to(logits.dtype)
        """,
        "straight through",
        "carries no gradient",
    ),
    "Gumbel noise reseeded inside the function": (
        "skim.py",
        "gumbel_keep",
        """
        torch.manual_seed(0)
        u = torch.rand_like(logits)
        g = -torch.log(-torch.log(u))
        y = torch.softmax((logits + g) / tau, dim=-1)[..., 1]
        return (y > 0.5).float() - y.detach() + y
        """,
        "fresh noise",
        "frozen",
    ),
    "Gumbel noise from a generator seeded inside the function": (
        "skim.py",
        "gumbel_keep",
        """
        gen = torch.Generator(device=logits.device)
        gen.manual_seed(42)
        u = torch.rand(logits.shape, generator=gen).clamp(1e-9, 1 - 1e-9)
        g = -torch.log(-torch.log(u))
        y = ((logits + g) / tau).softmax(-1)[..., 1]
        return (y > 0.5).float() + (y - y.detach())
        """,
        "fresh noise",
        "frozen",
    ),
    "Gumbel with exponential noise": (
        "skim.py",
        "gumbel_keep",
        """
        g = torch.empty_like(logits).exponential_()
        y = ((logits + g) / tau).softmax(-1)[..., 1]
        return (y > 0.5).to(logits.dtype) + (y - y.detach())
        """,
        "keeps each token with probability",
        "exponential noise",
    ),
    "Gumbel with keep and skip swapped": (
        "skim.py",
        "gumbel_keep",
        """
        g = -torch.log(-torch.log(torch.rand_like(logits)))
        y = ((logits + g) / tau).softmax(-1)[..., 0]
        return (y > 0.5).to(logits.dtype) + (y - y.detach())
        """,
        "keeps each token with probability",
        "P(skip)",
    ),
    "Gumbel with the hard decision drawn from other noise": (
        "skim.py",
        "gumbel_keep",
        """
        g1 = -torch.log(-torch.log(torch.rand_like(logits)))
        g2 = -torch.log(-torch.log(torch.rand_like(logits)))
        y = ((logits + g1) / tau).softmax(-1)[..., 1]
        hard = ((logits + g2).argmax(-1) == 1).to(logits.dtype)
        return hard + (y - y.detach())
        """,
        "size Eq. 5 gives",
        "same noise",
    ),
    "Gumbel returning the soft sample": (
        "skim.py",
        "gumbel_keep",
        """
        g = -torch.log(-torch.log(torch.rand_like(logits)))
        return ((logits + g) / tau).softmax(-1)[..., 1]
        """,
        "exact 0s and 1s",
        "not exactly 0 or 1",
    ),
    # the straight-through sum taken as hard + soft - soft.detach() rounds: 0.99999994 in place of
    # 1, which the encoder loop's (alive - keep) > 0 reads as a skimmed token. (The other order,
    # hard - soft.detach() + soft, torch's own, is exact: 1 - y is exact for y in [0.5, 1].)
    "Gumbel with a straight-through sum that rounds": (
        "skim.py",
        "gumbel_keep",
        """
        u = torch.rand_like(logits).clamp(1e-10, 1.0)
        g = -torch.log(-torch.log(u) + 1e-20)
        y = torch.softmax((logits + g) / tau, dim=-1)[..., 1]
        return (y > 0.5).to(y.dtype) + y - y.detach()
        """,
        "exact 0s and 1s",
        "not exactly 0 or 1",
    ),
    "Gumbel noise shared across the batch": (
        "skim.py",
        "gumbel_keep",
        """
        g = -torch.empty_like(logits[0]).exponential_().log()
        soft = ((logits + g) / tau).softmax(-1)[..., 1]
        hard = (soft > 0.5).to(logits.dtype)
        return hard + (soft - soft.detach())
        """,
        "fresh noise",
        "shared across the batch",
    ),
    # --- assignment 3: the skim loss
    "skim loss divided by the padded length": (
        "skim.py",
        "skim_loss",
        """
        kept = torch.stack([m.sum(1) for m in out.masks], 1)
        return (kept / attention_mask.shape[1]).mean()
        """,
        "hand-worked batch",
        "padded length",
    ),
    "skim loss pooled over the batch": (
        "skim.py",
        "skim_loss",
        """
        total = sum(m.sum() for m in out.masks)
        return total / (len(out.masks) * attention_mask.sum())
        """,
        "hand-worked batch",
        "total kept / total real tokens",
    ),
    "skim loss of the last layer only": (
        "skim.py",
        "skim_loss",
        """
        n = attention_mask.sum(1)
        return (out.masks[-1].sum(1) / n).mean()
        """,
        "hand-worked batch",
        "last layer only",
    ),
    "skim loss summed over the layers": (
        "skim.py",
        "skim_loss",
        """
        n = attention_mask.sum(1).float()
        return sum((m.sum(1) / n).mean() for m in out.masks)
        """,
        "hand-worked batch",
        "sum over the layers",
    ),
    "skim loss from the detached counts": (
        "skim.py",
        "skim_loss",
        """
        n = attention_mask.sum(1, keepdim=True).float()
        return (out.tokens_per_layer.float() / n).mean()
        """,
        "differentiable scalar",
        "carries no gradient",
    ),
    "skim loss as a Python number": (
        "skim.py",
        "skim_loss",
        """
        n = attention_mask.sum(1).float()
        return torch.stack([m.sum(1) / n for m in out.masks]).mean().item()
        """,
        "hand-worked batch",
        "return a tensor",
    ),
    # --- assignment 4: reward and REINFORCE
    "REINFORCE without a baseline": (
        "rl_policy.py",
        "reinforce_loss",
        "return -(rewards.detach() * log_probs).mean()",
        "hand-worked loss",
        "without a baseline",
    ),
    "REINFORCE with one baseline shared across examples": (
        "rl_policy.py",
        "reinforce_loss",
        """
        r = rewards.detach()
        return -((r - r.mean()) * log_probs).mean()
        """,
        "hand-worked loss",
        "one baseline for the whole batch",
    ),
    "reward with its sign flipped": (
        "rl_policy.py",
        "reward",
        """
        fraction = selected.to(task_loss.dtype) / lengths[:, None].to(task_loss.dtype)
        return task_loss - length_penalty * fraction.mean(1)
        """,
        "reward: R =",
        "sign",
    ),
    "reward penalising the raw count": (
        "rl_policy.py",
        "reward",
        "return -task_loss - length_penalty * selected.float().sum(1)",
        "reward: R =",
        "raw count",
    ),
    "reward summing the fractions over modules": (
        "rl_policy.py",
        "reward",
        """
        frac = selected.float() / lengths.float().unsqueeze(1)
        return -task_loss - length_penalty * frac.sum(1)
        """,
        "reward: R =",
        "summed over the modules",
    ),
    "REINFORCE with the samples taken as interleaved": (
        "rl_policy.py",
        "reinforce_loss",
        """
        r = rewards.detach().view(num_samples, -1)
        adv = (r - r.mean(0, keepdim=True)).flatten()
        return -(adv * log_probs).mean()
        """,
        "hand-worked loss",
        "interleaved",
    ),
    "REINFORCE with rewards not detached": (
        "rl_policy.py",
        "reinforce_loss",
        """
        r = rewards.view(-1, num_samples)
        adv = (r - r.mean(1, keepdim=True)).reshape(-1)
        return -(adv * log_probs).mean()
        """,
        "constants",
        "gradient into the rewards",
    ),
    "REINFORCE maximised instead of minimised": (
        "rl_policy.py",
        "reinforce_loss",
        """
        r = rewards.detach().reshape(-1, num_samples)
        adv = r - r.mean(dim=1, keepdim=True)
        return (adv.reshape(-1) * log_probs).mean()
        """,
        "hand-worked loss",
        "sign is flipped",
    ),
    "REINFORCE summed instead of averaged": (
        "rl_policy.py",
        "reinforce_loss",
        """
        r = rewards.detach().reshape(-1, num_samples)
        adv = r - r.mean(dim=1, keepdim=True)
        return -(adv.reshape(-1) * log_probs).sum()
        """,
        "hand-worked loss",
        "take the mean",
    ),
    # --- assignment 5: FLOPs
    "FLOPs without the attention n² terms": (
        "flops.py",
        "layer_flops",
        """
        d, f = config.hidden_size, config.intermediate_size
        return {
            "qkv": 3 * 2 * n * d * d,
            "attn_out": 2 * n * d * d,
            "ffn_up": 2 * n * d * f,
            "ffn_down": 2 * n * f * d,
        }
        """,
        "each matmul",
        "n²",
    ),
    "FLOPs counting one per multiply-add": (
        "flops.py",
        "layer_flops",
        """
        d, f = config.hidden_size, config.intermediate_size
        return {"qkv": 3 * n * d * d, "scores": n * n * d, "context": n * n * d,
                "attn_out": n * d * d, "ffn_up": n * d * f, "ffn_down": n * f * d}
        """,
        "each matmul",
        "That is half",
    ),
    "FLOPs of the scores linear in n": (
        "flops.py",
        "layer_flops",
        """
        d, f = config.hidden_size, config.intermediate_size
        return {"qkv": 6 * n * d * d, "scores": 2 * n * d * d, "context": 2 * n * d * d,
                "attn_out": 2 * n * d * d, "ffn_up": 2 * n * d * f, "ffn_down": 2 * n * f * d}
        """,
        "each matmul",
        "grow with n²",
    ),
    "per-token FLOPs dropping the scorer's remainder": (
        "flops.py",
        "per_token_flops",
        """
        d, f, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
        n = count_tokens(layers_processed, L)
        arriving = [len(layers_processed), *n[:-1]]
        scoring = scoring_flops(config, scorer, arriving)
        costs = []
        for t, k in enumerate(layers_processed):
            own = sum(8 * d * d + 4 * d * f + 4 * n[i] * d for i in range(k))
            share = sum(scoring[i] // arriving[i] for i in range(min(k + 1, L)) if arriving[i])
            costs.append(own + share)
        return costs
        """,
        "what each token cost",
        "was dropped",
    ),
    "per-token FLOPs giving the remainder to the last token": (
        "flops.py",
        "per_token_flops",
        """
        d, f, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
        n = count_tokens(layers_processed, L)
        arriving = [len(layers_processed), *n[:-1]]
        scoring = scoring_flops(config, scorer, arriving)
        costs = []
        for t, k in enumerate(layers_processed):
            own = sum(8 * d * d + 4 * d * f + 4 * n[i] * d for i in range(k))
            share = sum(scoring[i] // arriving[i] for i in range(min(k + 1, L)) if arriving[i])
            costs.append(own + share)
        costs[-1] += sum(c % a for c, a in zip(scoring, arriving) if a)
        return costs
        """,
        "what each token cost",
        "belongs to [CLS]",
    ),
    "per-token FLOPs without the token's own row of scores": (
        "flops.py",
        "per_token_flops",
        """
        d, f, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
        n = count_tokens(layers_processed, L)
        arriving = [len(layers_processed), *n[:-1]]
        scoring = scoring_flops(config, scorer, arriving)
        costs = [sum(8 * d * d + 4 * d * f for i in range(k)) for k in layers_processed]
        for t, k in enumerate(layers_processed):
            costs[t] += sum(scoring[i] // arriving[i] for i in range(min(k + 1, L)) if arriving[i])
        costs[0] += sum(c % a for c, a in zip(scoring, arriving) if a)
        return costs
        """,
        "what each token cost",
        "expected [496, 256, 0]",
    ),
    "per-token FLOPs charging the scorer to the kept tokens only": (
        "flops.py",
        "per_token_flops",
        """
        d, f, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
        n = count_tokens(layers_processed, L)
        arriving = [len(layers_processed), *n[:-1]]
        scoring = scoring_flops(config, scorer, arriving)
        costs = []
        for t, k in enumerate(layers_processed):
            own = sum(8 * d * d + 4 * d * f + 4 * n[i] * d for i in range(k))
            share = sum(scoring[i] // arriving[i] for i in range(k) if arriving[i])
            costs.append(own + share)
        costs[0] += sum(c - (c // a) * a for c, a in zip(scoring, arriving) if a)
        return costs
        """,
        "what each token cost",
        "expected [516, 276, 10]",
    ),
    # --- assignment 6: a skim method (LTP); the conformance checks come before any training
    "a strategy that keeps pads": (
        "ltp.py",
        "LTP.decide",
        """
        keep = torch.ones_like(alive)
        return keep.bool() if ctx.pruning else keep
        """,
        "never keeps a pad",
        "keeps a pad",
    ),
    "LTP summing the attention of every query, skimmed ones included": (
        "ltp.py",
        "LTP.scores",
        """
        return attention.sum(2).sum(1) / attention.shape[1]
        """,
        "FLOPs it is charged",
        "FlopCounterMode",
    ),
    "LTP charging a linear cost for the n² score": (
        "ltp.py",
        "LTP.overhead_flops",
        "return 2 * config.num_attention_heads * n",
        "FLOPs it is charged",
        "FlopCounterMode",
    ),
    "LTP deciding by the labels": (
        "ltp.py",
        "LTP.decide",
        """
        s = self.scores(ctx.attention, alive)
        keep = (s >= self.thresholds[i]) & (alive > 0)
        keep[:, 1] = ctx.batch["labels"] > 0
        return keep if ctx.pruning else keep.to(s.dtype)
        """,
        "masked (training) equals pruned",
        "hidden from decide",
    ),
    "LTP with the soft mask at inference": (
        "ltp.py",
        "LTP.decide",
        """
        s = self.scores(ctx.attention, alive)
        return torch.sigmoid((s - self.thresholds[i]) / self.options.temperature) * alive
        """,
        "masked (training) equals pruned",
        "decide differently",
    ),
    "LTP charging nothing for its scores": (
        "ltp.py",
        "LTP.overhead_flops",
        "return 0",
        "FLOPs it is charged",
        "FlopCounterMode",
    ),
}

# Other right ways of writing a function: each must earn full marks on its assignment.
# name: (file, function, body)
RIGHT = {
    "skim loss reading the real lengths from exit_layer": (
        "skim.py",
        "skim_loss",
        """
        lengths = (out.exit_layer >= 0).sum(1).float()
        shares = [m.sum(1) / lengths for m in out.masks]
        return torch.stack(shares).mean()
        """,
    ),
    "skim loss as a loop over layers": (
        "skim.py",
        "skim_loss",
        """
        n = attention_mask.float().sum(dim=1)
        total = 0
        for mask in out.masks:
            total = total + (mask.sum(dim=1) / n).mean()
        return total / len(out.masks)
        """,
    ),
    "Gumbel through torch's gumbel_softmax": (
        "skim.py",
        "gumbel_keep",
        "return torch.nn.functional.gumbel_softmax(logits, tau=tau, hard=True)[..., 1]",
    ),
    "Gumbel from uniform draws": (
        "skim.py",
        "gumbel_keep",
        """
        u = torch.rand_like(logits).clamp(1e-10, 1.0)
        g = -torch.log(-torch.log(u) + 1e-20)
        y = torch.softmax((logits + g) / tau, dim=-1)[..., 1]
        return (y > 0.5).to(y.dtype) + (y - y.detach())
        """,
    ),
    "REINFORCE with a loop over examples": (
        "rl_policy.py",
        "reinforce_loss",
        """
        r = rewards.detach()
        parts = []
        for start in range(0, len(r), num_samples):
            chunk = r[start : start + num_samples]
            parts.append(chunk - chunk.mean())
        return -(torch.cat(parts) * log_probs).mean()
        """,
    ),
}


def _assignment(path: str, function: str) -> int:
    """The assignment whose markers surround `function` in `path` (of the reference)."""
    import make_student

    repo = Path(__file__).resolve().parents[2]
    regions = make_student.find_regions((repo / path).read_text(), path)
    return next(r.number for r in regions if r.function == function)


def grade_all(copy: Path, names: list[str]) -> dict[str, dict]:
    """Put each mutant or right solution into its own copy of `copy` (the .py files at its top)
    and run its assignment's checks there, stopping at the first failure. Returns name ->
    {number, passed, failed_check, message, earned, possible}."""
    import importlib

    import checks
    import make_student

    checks.load_instructor_checks()
    modules = [p.stem for p in Path(copy).glob("*.py")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(names):
            path, function, body = (MUTANTS.get(name) or RIGHT[name])[:3]
            number = _assignment(path, function)
            here = Path(tmp) / f"copy{i}"
            here.mkdir()
            for file in Path(copy).glob("*.py"):
                shutil.copy(file, here / file.name)
            make_student.replace_body(here, path, function, body)
            for module in modules:
                sys.modules.pop(module, None)
            sys.path[:] = [p for p in sys.path if not p.startswith(tmp)]
            sys.path.insert(1, str(here))
            importlib.invalidate_caches()
            checks.STUDENT_DIR = here.resolve()
            earned, failed = 0, None
            for check in checks.ASSIGNMENTS[number].checks:
                if number == 6 and check.points >= 20 and name in MUTANTS:
                    break  # a mutant of 6 fails before the training; a right one trains
                record = checks.run_check(check)
                if not record["passed"]:
                    failed = record
                    break
                earned += record["points"]
            results[name] = {
                "number": number,
                "passed": failed is None,
                "failed_check": failed and failed["name"],
                "message": failed and failed["message"],
                "earned": earned,
                "possible": checks.ASSIGNMENTS[number].points,
            }
    return results


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here.parent), str(here)]  # the grader's checks.py and make_student.py
    copy = Path(sys.argv[1]).resolve()
    names = sys.argv[2:] or [*MUTANTS, *RIGHT]
    print(json.dumps(grade_all(copy, names)))
