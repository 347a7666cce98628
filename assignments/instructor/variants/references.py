"""The variants' reference solutions and the mistakes their checks must catch.

REFERENCES[key][(file, function)] is the body that solves variant `key` (e.g. "4b"), written
between the markers of the public assignment the variant replaces, as
make_student.replace_body takes it:

    make_student.make_student(copy, only=set())          # a solved copy (the public bodies)
    for (path, function), body in REFERENCES["4b"].items():
        make_student.replace_body(copy, path, function, body)
    # python assignments/grade.py copy --variant 4b  ->  PASS 20/20

MUTANTS[name] = (variant, file, function, wrong body, check that must fail, words its message
must contain): wrong solutions written the way students write them. test_variants.py puts each
into a solved copy (the other function of the variant keeps its variant reference) and checks
that the variant's grader fails it, at that check, with a message that names the mistake.

These bodies are the answers: this file is the one to keep away from students (README.md).
"""

REFERENCES = {
    # ------------------------------------------------------------------------------------------
    # 1b: attention with a null key (the "off-by-one" softmax)
    "1b": {
        ("transformer.py", "SelfAttention._eager"): """
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.hs)  # (B, nh, T, T)
            if key_mask is None:  # the null key is there without a mask too
                key_mask = scores.new_ones(scores.shape[0], scores.shape[-1])
            probs = masked_softmax(scores, key_mask)
            return F.dropout(probs, p_drop, self.training) @ v, probs
            """,
        ("transformer.py", "masked_softmax"): """
            # probs_ij = m_j·exp(s_ij) / (1 + Σ_k m_k·exp(s_ik)): a null key scoring 0, value 0.
            m = key_mask.to(torch.float32)[:, None, None, :]  # (B, 1, 1, T)
            s = scores.float()
            with torch.no_grad():  # the shift c cancels: m_j·e^(s_ij − c) / (e^−c + Σ ...)
                top_all = s.amax(-1, keepdim=True)
                top_kept = s.masked_fill(m == 0, float("-inf")).amax(-1, keepdim=True)
                top_kept = torch.where(top_kept == float("-inf"), top_all, top_kept)
                # never below 0, the null key's score, so that its term e^−c stays ≤ 1
                shift = torch.minimum(top_all, top_kept + _EXP_LIMIT).clamp_min(0.0)
            weights = (s - shift).clamp(max=_EXP_LIMIT).exp() * m
            total = weights.sum(-1, keepdim=True) + (-shift).exp()  # the null key: e^(0 − c)
            return (weights / total).to(scores.dtype)
            """,
    },
    # ------------------------------------------------------------------------------------------
    # 2b: a binary concrete (relaxed Bernoulli) decision on the keep logit alone
    "2b": {
        ("skim.py", "gumbel_keep"): """
            keep_logit = logits[..., 1]  # the log-odds of keeping; index 0 is not read
            u = torch.rand_like(keep_logit).clamp(1e-6, 1 - 1e-6)
            noise = u.log() - (-u).log1p()  # Logistic(0, 1): log U − log(1 − U)
            soft = torch.sigmoid((keep_logit + noise) / tau)
            hard = (keep_logit + noise > 0).to(logits.dtype)
            return hard + (soft - soft.detach())
            """,
    },
    # ------------------------------------------------------------------------------------------
    # 3b: the skim loss as the share of attention scores still computed, (n_i / N)²
    "3b": {
        ("skim.py", "skim_loss"): """
            lengths = attention_mask.sum(1).to(out.masks[0].dtype)  # (B,)
            kept = torch.stack([m.sum(1) for m in out.masks], 1)  # (B, L)
            return ((kept / lengths[:, None]) ** 2).mean()
            """,
    },
    # ------------------------------------------------------------------------------------------
    # 4b: a bounded reward, Pr(y|X) − λ·share, and a leave-one-out baseline
    "4b": {
        ("rl_policy.py", "reward"): """
            fraction = selected.to(task_loss.dtype) / lengths[:, None].to(task_loss.dtype)
            return torch.exp(-task_loss) - length_penalty * fraction.mean(1)
            """,
        ("rl_policy.py", "reinforce_loss"): """
            r = rewards.detach().view(-1, num_samples)  # (B, S)
            others = (r.sum(1, keepdim=True) - r) / (num_samples - 1)  # the other S − 1
            return -((r - others).flatten() * log_probs).mean()
            """,
    },
    # ------------------------------------------------------------------------------------------
    # 5b: FLOPs of a layer with grouped-query attention
    "5b": {
        ("flops.py", "layer_flops"): """
            d, f = config.hidden_size, config.intermediate_size
            heads = config.num_attention_heads
            kv = getattr(config, "num_key_value_heads", None) or heads
            d_kv = kv * (d // heads)  # K and V: kv heads of width d/nh
            return {
                "qkv": 2 * n * d * d + 2 * 2 * n * d * d_kv,  # Q (n×d)@(d×d); K, V (d×d_kv)
                "scores": 2 * n * n * d,  # every query head still scores all n keys
                "context": 2 * n * n * d,
                "attn_out": 2 * n * d * d,
                "ffn_up": 2 * n * d * f,
                "ffn_down": 2 * n * f * d,
            }
            """,
        ("flops.py", "per_token_flops"): """
            d, f, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
            heads = config.num_attention_heads
            kv = getattr(config, "num_key_value_heads", None) or heads
            d_kv = kv * (d // heads)
            n = count_tokens(layers_processed, L)
            arriving = [len(layers_processed), *n[:-1]]
            scoring = scoring_flops(config, scorer, arriving)
            rows = 4 * d * d + 4 * d * d_kv + 4 * d * f  # Q, K, V, output and FFN rows
            costs = []
            for t, k in enumerate(layers_processed):
                own = sum(rows + 4 * n[i] * d for i in range(k))
                share = sum(scoring[i] // arriving[i] for i in range(min(k + 1, L)) if arriving[i])
                costs.append(own + share)
            costs[0] += sum(c - (c // a) * a for c, a in zip(scoring, arriving) if a)
            return costs
            """,
    },
}

# name: (variant, file, function, wrong body, check that must fail, words its message must contain)
MUTANTS = {
    # 1b --------------------------------------------------------------------------------------
    "1b: the null key only when there is a mask": (
        "1b",
        "transformer.py",
        "SelfAttention._eager",
        """
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.hs)
        probs = scores.softmax(-1) if key_mask is None else masked_softmax(scores, key_mask)
        return F.dropout(probs, p_drop, self.training) @ v, probs
        """,
        "without a mask",
        "with no null key",
    ),
    "1b: a 1 added after shifting by the row's largest score": (
        "1b",
        "transformer.py",
        "masked_softmax",
        """
        m = key_mask.to(scores.dtype)[:, None, None, :]
        top = scores.masked_fill(m == 0, float("-inf")).amax(-1, keepdim=True).detach()
        weights = (scores - top).exp() * m
        return weights / (1 + weights.sum(-1, keepdim=True))
        """,
        "without a mask",
        "not 1",
    ),
    "1b: masked keys left in the denominator": (
        "1b",
        "transformer.py",
        "masked_softmax",
        """
        m = key_mask.to(scores.dtype)[:, None, None, :]
        shift = scores.amax(-1, keepdim=True).clamp_min(0).detach()
        e = (scores - shift).exp()
        return e * m / ((-shift).exp() + e.sum(-1, keepdim=True))
        """,
        "0/1 key mask",
        "must leave it",
    ),
    "1b: masked_fill(−inf), so no gradient reaches the mask": (
        "1b",
        "transformer.py",
        "masked_softmax",
        """
        s = scores.masked_fill(~key_mask.bool()[:, None, None, :], float("-inf"))
        shift = s.amax(-1, keepdim=True).clamp_min(0).detach()
        e = (s - shift).exp()
        return e / ((-shift).exp() + e.sum(-1, keepdim=True))
        """,
        "float mask weights the keys",
        "does not depend differentiably",
    ),
    "1b: exp of the raw scores": (
        "1b",
        "transformer.py",
        "masked_softmax",
        """
        e = scores.exp() * key_mask.to(scores.dtype)[:, None, None, :]
        return e / (1 + e.sum(-1, keepdim=True))
        """,
        "scores of ±300",
        "overflows",
    ),
    "1b: dropout forgotten": (
        "1b",
        "transformer.py",
        "SelfAttention._eager",
        """
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.hs)
        if key_mask is None:
            key_mask = torch.ones_like(scores[:, 0, 0, :])
        probs = masked_softmax(scores, key_mask)
        return probs @ v, probs
        """,
        "dropout",
        "were not dropped",
    ),
    # 2b --------------------------------------------------------------------------------------
    "2b: Gumbel noise on the keep logit": (
        "2b",
        "skim.py",
        "gumbel_keep",
        """
        g = -torch.empty_like(logits[..., 1]).exponential_().log()
        soft = torch.sigmoid((logits[..., 1] + g) / tau)
        hard = (soft > 0.5).to(logits.dtype)
        return hard + (soft - soft.detach())
        """,
        "keeps each token with probability",
        "not symmetric",
    ),
    "2b: index 0 read as the keep logit": (
        "2b",
        "skim.py",
        "gumbel_keep",
        """
        u = torch.rand_like(logits[..., 0])
        soft = torch.sigmoid((logits[..., 0] + u.log() - (1 - u).log()) / tau)
        hard = (soft > 0.5).to(logits.dtype)
        return hard + (soft - soft.detach())
        """,
        "keeps each token with probability",
        "reads index 0",
    ),
    "2b: τ ignored": (
        "2b",
        "skim.py",
        "gumbel_keep",
        """
        u = torch.rand_like(logits[..., 1])
        soft = torch.sigmoid(logits[..., 1] + torch.log(u / (1 - u)))
        hard = (soft > 0.5).to(logits.dtype)
        return hard + (soft - soft.detach())
        """,
        "straight through",
        "divided by τ",
    ),
    "2b: the hard sample alone": (
        "2b",
        "skim.py",
        "gumbel_keep",
        """
        u = torch.rand_like(logits[..., 1])
        return (logits[..., 1] + torch.log(u / (1 - u)) > 0).to(logits.dtype)
        """,
        "straight through",
        "carries no gradient",
    ),
    "2b: hard and soft from different noise": (
        "2b",
        "skim.py",
        "gumbel_keep",
        """
        def logistic():
            u = torch.rand_like(logits[..., 1])
            return u.log() - (-u).log1p()

        soft = torch.sigmoid((logits[..., 1] + logistic()) / tau)
        hard = (logits[..., 1] + logistic() > 0).to(logits.dtype)
        return hard + (soft - soft.detach())
        """,
        "the size of the relaxed sample",
        "same noise",
    ),
    "2b: the relaxed sample forward": (
        "2b",
        "skim.py",
        "gumbel_keep",
        """
        u = torch.rand_like(logits[..., 1])
        return torch.sigmoid((logits[..., 1] + u.log() - (1 - u).log()) / tau)
        """,
        "exact 0s and 1s",
        "neither 0 nor 1",
    ),
    # 3b --------------------------------------------------------------------------------------
    "3b: shares of the padded length": (
        "3b",
        "skim.py",
        "skim_loss",
        """
        kept = torch.stack([m.sum(1) for m in out.masks], 1)
        return ((kept / attention_mask.shape[1]) ** 2).mean()
        """,
        "hand-worked batch",
        "padded length",
    ),
    "3b: the mean over layers, squared": (
        "3b",
        "skim.py",
        "skim_loss",
        """
        lengths = attention_mask.sum(1)
        share = torch.stack([m.sum(1) / lengths for m in out.masks]).mean(0)
        return (share**2).mean()
        """,
        "hand-worked batch",
        "squares the mean over layers",
    ),
    "3b: n² over N": (
        "3b",
        "skim.py",
        "skim_loss",
        """
        lengths = attention_mask.sum(1)
        return torch.stack([m.sum(1) ** 2 / lengths for m in out.masks]).mean()
        """,
        "hand-worked batch",
        "length squared",
    ),
    "3b: built on tokens_per_layer": (
        "3b",
        "skim.py",
        "skim_loss",
        """
        kept = out.tokens_per_layer.float()
        lengths = attention_mask.sum(1, keepdim=True).float()
        return ((kept / lengths) ** 2).mean()
        """,
        "differentiable scalar",
        "carries no gradient",
    ),
    "3b: the batch's totals": (
        "3b",
        "skim.py",
        "skim_loss",
        """
        total = attention_mask.sum()
        return torch.stack([(m.sum() / total) ** 2 for m in out.masks]).mean()
        """,
        "hand-worked batch",
        "total kept over its total real tokens",
    ),
    "3b: summed over the layers": (
        "3b",
        "skim.py",
        "skim_loss",
        """
        lengths = attention_mask.sum(1)
        return sum(((m.sum(1) / lengths) ** 2).mean() for m in out.masks)
        """,
        "hand-worked batch",
        "sum over the layers",
    ),
    # 4b --------------------------------------------------------------------------------------
    "4b: the log-likelihood reward": (
        "4b",
        "rl_policy.py",
        "reward",
        """
        fraction = selected.float() / lengths[:, None].float()
        return -task_loss - length_penalty * fraction.mean(1)
        """,
        "reward: R = Pr",
        "log-likelihood",
    ),
    "4b: 1 − task_loss": (
        "4b",
        "rl_policy.py",
        "reward",
        """
        fraction = selected.float() / lengths[:, None].float()
        return 1 - task_loss - length_penalty * fraction.mean(1)
        """,
        "reward: R = Pr",
        "first-order",
    ),
    "4b: the others' sum divided by S": (
        "4b",
        "rl_policy.py",
        "reinforce_loss",
        """
        r = rewards.detach().view(-1, num_samples)
        baseline = (r.sum(1, keepdim=True) - r) / num_samples
        return -((r - baseline).flatten() * log_probs).mean()
        """,
        "hand-worked loss",
        "divides the other samples' sum by S",
    ),
    "4b: the sample left out of the whole batch": (
        "4b",
        "rl_policy.py",
        "reinforce_loss",
        """
        r = rewards.detach()
        baseline = (r.sum() - r) / (len(r) - 1)
        return -((r - baseline) * log_probs).mean()
        """,
        "hand-worked loss",
        "whole batch's mean",
    ),
    "4b: the mean baseline with the sample itself": (
        "4b",
        "rl_policy.py",
        "reinforce_loss",
        """
        r = rewards.detach().view(-1, num_samples)
        advantage = r - r.mean(1, keepdim=True)
        return -(advantage.flatten() * log_probs).mean()
        """,
        "hand-worked loss",
        "leave the sample out",
    ),
    "4b: rewards not detached": (
        "4b",
        "rl_policy.py",
        "reinforce_loss",
        """
        r = rewards.view(-1, num_samples)
        others = (r.sum(1, keepdim=True) - r) / (num_samples - 1)
        return -((r - others).flatten() * log_probs).mean()
        """,
        "no gradient flows into them",
        "treat them as constants",
    ),
    "4b: samples taken as interleaved": (
        "4b",
        "rl_policy.py",
        "reinforce_loss",
        """
        r = rewards.detach().view(num_samples, -1)
        others = (r.sum(0, keepdim=True) - r) / (num_samples - 1)
        return -((r - others).flatten() * log_probs).mean()
        """,
        "hand-worked loss",
        "interleaved",
    ),
    # 5b --------------------------------------------------------------------------------------
    "5b: the scores shrunk with the KV heads": (
        "5b",
        "flops.py",
        "layer_flops",
        """
        d, f = config.hidden_size, config.intermediate_size
        kv = getattr(config, "num_key_value_heads", config.num_attention_heads)
        d_kv = kv * d // config.num_attention_heads
        return {
            "qkv": 2 * n * d * d + 4 * n * d * d_kv,
            "scores": 2 * n * n * d_kv,
            "context": 2 * n * n * d_kv,
            "attn_out": 2 * n * d * d,
            "ffn_up": 2 * n * d * f,
            "ffn_down": 2 * n * f * d,
        }
        """,
        "each matmul",
        "every one of the nh query heads",
    ),
    "5b: Q shrunk too": (
        "5b",
        "flops.py",
        "layer_flops",
        """
        d, f = config.hidden_size, config.intermediate_size
        kv = getattr(config, "num_key_value_heads", config.num_attention_heads)
        d_kv = kv * d // config.num_attention_heads
        return {
            "qkv": 3 * 2 * n * d * d_kv,
            "scores": 2 * n * n * d,
            "context": 2 * n * n * d,
            "attn_out": 2 * n * d * d,
            "ffn_up": 2 * n * d * f,
            "ffn_down": 2 * n * f * d,
        }
        """,
        "each matmul",
        "shrinks the queries too",
    ),
    "5b: only K shrunk": (
        "5b",
        "flops.py",
        "layer_flops",
        """
        d, f = config.hidden_size, config.intermediate_size
        kv = getattr(config, "num_key_value_heads", config.num_attention_heads)
        d_kv = kv * d // config.num_attention_heads
        return {
            "qkv": 2 * n * d * d + 2 * n * d * d_kv + 2 * n * d * d,
            "scores": 2 * n * n * d,
            "context": 2 * n * n * d,
            "attn_out": 2 * n * d * d,
            "ffn_up": 2 * n * d * f,
            "ffn_down": 2 * n * f * d,
        }
        """,
        "each matmul",
        "only one of K and V",
    ),
    "5b: the KV ratio inverted": (
        "5b",
        "flops.py",
        "layer_flops",
        """
        d, f = config.hidden_size, config.intermediate_size
        group = config.num_attention_heads // getattr(config, "num_key_value_heads", 1)
        return {
            "qkv": 2 * n * d * d + 2 * 2 * n * d * d * group,
            "scores": 2 * n * n * d,
            "context": 2 * n * n * d,
            "attn_out": 2 * n * d * d,
            "ffn_up": 2 * n * d * f,
            "ffn_down": 2 * n * f * d,
        }
        """,
        "each matmul",
        "instead of kv/nh",
    ),
    "5b: d·kv/nh as a float": (
        "5b",
        "flops.py",
        "layer_flops",
        """
        d, f = config.hidden_size, config.intermediate_size
        d_kv = d * getattr(config, "num_key_value_heads", config.num_attention_heads) / (
            config.num_attention_heads
        )
        return {
            "qkv": 2 * n * d * d + 4 * n * d * d_kv,
            "scores": 2 * n * n * d,
            "context": 2 * n * n * d,
            "attn_out": 2 * n * d * d,
            "ffn_up": 2 * n * d * f,
            "ffn_down": 2 * n * f * d,
        }
        """,
        "each matmul",
        "whole numbers (int)",
    ),
    "5b: no default when num_key_value_heads is missing": (
        "5b",
        "flops.py",
        "layer_flops",
        """
        d, f = config.hidden_size, config.intermediate_size
        d_kv = config.num_key_value_heads * (d // config.num_attention_heads)
        return {
            "qkv": 2 * n * d * d + 4 * n * d * d_kv,
            "scores": 2 * n * n * d,
            "context": 2 * n * n * d,
            "attn_out": 2 * n * d * d,
            "ffn_up": 2 * n * d * f,
            "ffn_down": 2 * n * f * d,
        }
        """,
        "no num_key_value_heads",
        "AttributeError",
    ),
    "5b: each token charged the multi-head rows": (
        "5b",
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
        costs[0] += sum(c - (c // a) * a for c, a in zip(scoring, arriving) if a)
        return costs
        """,
        "per_token_flops",
        "multi-head rows",
    ),
}
