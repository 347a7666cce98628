"""transformer.py against transformers.BertModel (the independent reference), and the hooks that
skimming uses (key mask, packed sequences, attention probabilities). Loading is tested by
tests/test_weights.py."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import transformers

from transformer import CONFIGS, BertConfig, BertModel, VarLen, masked_softmax
from weights import from_pretrained, write_safetensors

TINY = CONFIGS["tiny"]


def reference_tiny(cfg: BertConfig = TINY) -> transformers.BertModel:
    """A randomly initialised reference BERT of the same shape (no download)."""
    hf_cfg = transformers.BertConfig(
        **{k: v for k, v in cfg.to_dict().items() if k not in ("architectures",)}
    )
    ref = transformers.BertModel(hf_cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases, so a mix-up cannot hide
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return ref


def save_as_folder(ref: transformers.BertModel, folder: Path, fmt: str = "safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(ref.config.to_dict()))
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    if fmt == "safetensors":
        write_safetensors(state, folder / "model.safetensors")
    else:  # the original bert-base-uncased pickle: `bert.` prefix, LayerNorm gamma/beta
        renamed = {
            "bert."
            + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta"
            ): v
            for k, v in state.items()
        }
        renamed["cls.predictions.bias"] = torch.zeros(ref.config.vocab_size)
        torch.save(renamed, folder / "pytorch_model.bin")
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    return folder


def batch(cfg: BertConfig, B=3, T=7):
    ids = torch.randint(5, cfg.vocab_size, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    types = torch.zeros(B, T, dtype=torch.long)
    types[:, 4:] = 1
    return ids, mask, types


# ----------------------------------------------------------------------------------------------
# Parity with the reference


@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
def test_tiny_model_matches_reference_layer_by_layer(tmp_path, attn_impl):
    ref = reference_tiny()
    ours = from_pretrained(save_as_folder(ref, tmp_path / "tiny"))
    ours.config.attn_impl = attn_impl
    for layer in ours.layers:
        layer.attn.impl = attn_impl
    ids, mask, types = batch(TINY)
    with torch.no_grad():
        theirs = ref(ids, mask, types, output_hidden_states=True).hidden_states
        mine = ours(ids, mask, types, all_layers=True)
    valid = mask.bool()
    for i, (a, b) in enumerate(zip(mine, theirs)):
        torch.testing.assert_close(a[valid], b[valid], atol=1e-5, rtol=0, msg=f"state {i} differs")


def test_released_minilm_matches_reference_on_real_sentences(minilm_dir):
    ours = from_pretrained(minilm_dir)
    ref = transformers.BertModel.from_pretrained(str(minilm_dir)).eval()
    tok = transformers.BertTokenizerFast.from_pretrained(str(minilm_dir))
    cases = [
        tok(["The quick brown fox jumps over the lazy dog."], return_tensors="pt"),
        tok(
            ["A man is playing a guitar."],
            ["Someone plays an instrument on stage."],
            return_tensors="pt",
        ),
        tok(
            [
                "short",
                "a considerably longer sentence, with punctuation; and a clause!",
                "it's 3.14 — naïve café",
            ],
            padding=True,
            return_tensors="pt",
        ),  # right-padded batch
    ]
    for enc in cases:
        with torch.no_grad():
            mine = ours(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
            theirs = ref(**enc).last_hidden_state
        valid = enc["attention_mask"].bool()
        torch.testing.assert_close(mine[valid], theirs[valid], atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------------------
# The hooks skimming uses


# CPU sdpa: one attention call per sequence; eager: the padded grid
@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
def test_packed_varlen_layer_equals_padded_layer_at_real_tokens(attn_impl):
    model = BertModel(dataclasses.replace(TINY, attn_impl=attn_impl)).eval()
    ids, mask, types = batch(TINY)
    lengths = mask.sum(1)
    with torch.no_grad():
        h = model.embed(ids, types)
        padded = model.layers[0](h, mask)
        varlen = VarLen(lengths)
        packed = model.layers[0](h[mask.bool()], varlen=varlen)  # (N, C)
    torch.testing.assert_close(packed, padded[mask.bool()], atol=1e-6, rtol=0)
    torch.testing.assert_close(varlen.pad(packed)[mask.bool()], packed, atol=0, rtol=0)


def test_float_key_mask_with_gradient_equals_removing_the_masked_tokens():
    cfg = TINY
    model = BertModel(cfg).eval()
    h = torch.randn(2, 7, cfg.hidden_size)
    keep = torch.tensor([[1, 0, 1, 1, 0, 1, 1], [1, 1, 0, 0, 1, 0, 0]], dtype=torch.float32)
    key_mask = keep.clone().requires_grad_()  # 0s and 1s, and a gradient flows back to them
    out = model.layers[0](h, key_mask)
    for b in range(2):
        kept = keep[b].bool()
        alone = model.layers[0](h[b : b + 1, kept])
        torch.testing.assert_close(out[b, kept], alone[0], atol=1e-5, rtol=0)
    out[:, 0].sum().backward()
    assert key_mask.grad.abs().sum() > 0, "no gradient reached the key mask"


# ----------------------------------------------------------------------------------------------
# need_probs: the attention probabilities


def hand_probs(attn, h: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """softmax(q·kᵀ/√hs) over the kept keys, written out: h (B, T, C), key_mask (B, T) bool."""
    B, T, C = h.shape
    nh, hs = attn.nh, attn.hs
    q = attn.query(h).view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    k = attn.key(h).view(B, T, nh, hs).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / hs**0.5  # (B, nh, T, T)
    scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return scores.softmax(-1)


@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
def test_need_probs_returns_the_softmax_over_kept_keys_and_the_same_output(attn_impl):
    model = BertModel(dataclasses.replace(TINY, attn_impl=attn_impl)).eval()
    ids, mask, types = batch(TINY)
    keep = mask.bool()
    with torch.no_grad():
        h = model.embed(ids, types)
        attn = model.layers[0].attn
        out, probs = attn(h, keep, need_probs=True)
        expected = hand_probs(attn, h, keep)
        plain = attn(h, keep)  # without need_probs: the fused kernel (sdpa) or eager, as before
        layer_out, layer_probs = model.layers[0](h, keep, need_probs=True)
        layer_plain = model.layers[0](h, keep)
    assert probs.shape == (3, TINY.num_attention_heads, 7, 7)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, TINY.num_attention_heads, 7))
    assert (probs * ~keep[:, None, None, :]).abs().max() == 0, "a masked key has weight"
    torch.testing.assert_close(out, plain, atol=1e-6, rtol=0)
    torch.testing.assert_close(layer_probs, probs, atol=0, rtol=0)
    torch.testing.assert_close(layer_out, layer_plain, atol=1e-6, rtol=0)


@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
def test_need_probs_packed_equals_padded_with_zeros_at_pads(attn_impl):
    model = BertModel(dataclasses.replace(TINY, attn_impl=attn_impl)).eval()
    ids, mask, types = batch(TINY)
    keep = mask.bool()
    with torch.no_grad():
        h = model.embed(ids, types)
        padded_out, padded = model.layers[0](h, keep, need_probs=True)
        varlen = VarLen(mask.sum(1))
        packed_out, packed = model.layers[0](h[keep], varlen=varlen, need_probs=True)
    assert packed.shape == padded.shape == (3, TINY.num_attention_heads, 7, 7)
    real = keep[:, None, :, None] & keep[:, None, None, :]  # (B, 1, T, T): real query, real key
    torch.testing.assert_close(packed, padded * real, atol=1e-6, rtol=0)
    assert (packed * ~real).abs().max() == 0, "pad query rows and pad keys must be zeros"
    torch.testing.assert_close(packed_out, padded_out[keep], atol=1e-6, rtol=0)
    one = VarLen(mask.sum(1)[:1])  # a single sequence: its own grid, no pads
    with torch.no_grad():
        _, alone = model.layers[0](h[0][keep[0]], varlen=one, need_probs=True)
    torch.testing.assert_close(alone, padded[:1], atol=1e-6, rtol=0)


def test_need_probs_are_taken_before_dropout():
    model = BertModel(dataclasses.replace(TINY, attention_probs_dropout_prob=0.5)).train()
    h = torch.randn(2, 7, TINY.hidden_size)
    _, probs = model.layers[0](h, need_probs=True)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, TINY.num_attention_heads, 7))


# ----------------------------------------------------------------------------------------------
# masked_softmax: the skim attention's exact gradient, without overflow


def naive_masked_softmax(s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """The formula as written, m_j·exp(s_ij) / Σ_k m_k·exp(s_ik): safe in float64 for small s."""
    w = m[:, None, None, :] * s.exp()
    return w / w.sum(-1, keepdim=True)


def scores_with_a_skimmed_key_on_top():
    """(1, 2, 4, 6) scores, mask (1, 6) that skims keys 1 and 4; key 1 scores 8 above the best
    kept key in every row (where the old clamp cut its gradient down)."""
    s = torch.randn(1, 2, 4, 6, dtype=torch.float64)
    s[..., 1] = s[..., [0, 2, 3, 5]].amax(-1) + 8.0
    m = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0, 1.0]], dtype=torch.float64)
    return s, m


def test_masked_softmax_forward_is_the_softmax_over_kept_keys():
    s, m = scores_with_a_skimmed_key_on_top()
    probs = masked_softmax(s.float(), m.float())
    kept = s[..., m[0].bool()].softmax(-1)
    torch.testing.assert_close(probs[..., m[0].bool()].double(), kept, atol=1e-6, rtol=0)
    assert probs[..., ~m[0].bool()].abs().max() == 0


def test_masked_softmax_gradient_is_the_formulas_exact_gradient():
    s, m = scores_with_a_skimmed_key_on_top()
    upstream = torch.randn(s.shape, dtype=torch.float64)  # a random loss: sum(upstream · probs)
    grads = []
    for fn, dtype in ((naive_masked_softmax, torch.float64), (masked_softmax, torch.float32)):
        s_, m_ = (x.detach().to(dtype).clone().requires_grad_() for x in (s, m))
        (fn(s_, m_) * upstream.to(dtype)).sum().backward()
        grads.append((s_.grad.double(), m_.grad.double()))
    (ref_s, ref_m), (our_s, our_m) = grads
    torch.testing.assert_close(our_s, ref_s, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(our_m, ref_m, atol=1e-6, rtol=1e-5)
    # the skimmed key on top: its gradient is large (~e^8 times a kept key's), and not cut down
    assert our_m[0, 1].abs() > 100 * our_m[0, 0].abs()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("lead", [0.0, 30.0, 100.0, 1000.0, 60000.0])
def test_masked_softmax_is_finite_with_extreme_scores(dtype, lead):
    """Kept keys `lead` below a skimmed key (float16 tops out at 65504): no NaN, no inf, forward
    or backward, and the forward still the softmax over the kept keys."""
    s = torch.zeros(2, 1, 3, 5)
    s[..., 2] = lead  # key 2 is skimmed
    s[..., 0] = -3.0
    s[1, ..., 4] = lead / 2  # in row 1, a skimmed key halfway
    s = s.to(dtype).requires_grad_()
    m = torch.tensor([[1.0, 1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 1.0, 0.0]], requires_grad=True)
    probs = masked_softmax(s, m)
    assert probs.dtype == dtype
    (probs * torch.randn_like(probs)).sum().backward()
    for name, x in (("probs", probs), ("grad of scores", s.grad), ("grad of mask", m.grad)):
        assert torch.isfinite(x).all(), f"{name} not finite"
    kept = torch.tensor([0, 1, 3])
    expected = s.detach().float()[..., kept].softmax(-1)
    torch.testing.assert_close(probs[..., kept].float(), expected, atol=1e-2, rtol=0)


def test_masked_softmax_row_without_a_kept_key_is_zeros_not_nan():
    probs = masked_softmax(torch.randn(1, 1, 2, 3), torch.zeros(1, 3))
    assert torch.equal(probs, torch.zeros(1, 1, 2, 3))


@pytest.mark.parametrize("bad", [99, 1000, -1])  # TINY's vocabulary: ids 0..98
def test_token_id_outside_the_vocabulary_is_named(bad):
    ids = torch.full((2, 5), 7)
    ids[1, 3] = bad
    with pytest.raises(
        ValueError, match=rf"token id {bad} \(batch row 1, position 3\).*vocabulary of 99"
    ):
        BertModel(TINY)(ids)


def test_token_type_id_outside_the_segment_types_is_named():
    ids, types = torch.full((1, 4), 7), torch.tensor([[0, 0, 1, 2]])
    with pytest.raises(ValueError, match=r"token_type_id 2 \(batch row 0, position 3\).* 2 "):
        BertModel(TINY)(ids, token_type_ids=types)


def test_sequence_longer_than_positions_is_refused_with_advice():
    with pytest.raises(ValueError, match="longer than the model's 64 positions"):
        BertModel(TINY)(torch.zeros(1, 65, dtype=torch.long))
