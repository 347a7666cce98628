"""skim.py: the shared encoder loop (masking = pruning) and Transkimmer's pieces."""

import pytest
import torch
from conftest import DEVICES, make_batch, to

import skim
from skim import (
    LAYOUTS,
    SkimConfig,
    SkimContext,
    SkimOutput,
    SkimStrategy,
    Stage,
    Transkimmer,
    gumbel_keep,
    inference_layout,
    on_present_tokens,
    skim_forward,
    skim_loss,
)
from transformer import CONFIGS, BertForTask

TINY = CONFIGS["tiny"]


def skimming_model(kind="classification", device="cpu"):
    """A tiny model whose predictors skim some tokens, not all, differently per example."""
    model = BertForTask(TINY, kind, num_labels=3).eval().to(device)
    strategy = Transkimmer(TINY, SkimConfig(init_mean=1.0, init_std=0.3)).eval().to(device)
    return model, strategy


# Masked and pruned compute the same sums in different orders and shapes. On a CPU they agree to
# 1e-5; a GPU's kernels (cuBLAS, fused attention) pick their blocking by shape, so allow 1e-4 there:
# a wrong mask or a token attending to a skimmed one is off by 0.1 or more either way.
ATOL = {"cpu": 1e-5, "cuda": 1e-4}


# ----------------------------------------------------------------------------------------------
# Masking in training equals pruning at inference


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["classification", "span"])
def test_masked_forward_equals_pruned_forward_at_every_position(kind, device):
    model, strategy = skimming_model(kind, device)
    batch = to(make_batch(pair=True), device)
    masked = skim_forward(model, strategy, batch, prune=False)
    pruned = skim_forward(model, strategy, batch, prune=True)
    # the test is only meaningful if decisions differ between examples and layers
    assert torch.equal(masked.exit_layer, pruned.exit_layer)
    kept = pruned.tokens_per_layer
    assert (kept[:, -1] < batch["attention_mask"].sum(1)).all(), "nothing was skimmed"
    assert (kept[:, -1] > 1).any(), "everything was skimmed"
    assert (
        len({tuple(r) for r in (kept / batch["attention_mask"].sum(1, keepdim=True)).tolist()}) > 1
    )
    valid = batch["attention_mask"].bool()
    atol = ATOL[device]
    torch.testing.assert_close(masked.hidden[valid], pruned.hidden[valid], atol=atol, rtol=0)
    torch.testing.assert_close(masked.logits, pruned.logits, atol=atol, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_each_sequence_keeps_its_own_decisions_whatever_the_batch(device):
    model, strategy = skimming_model(device=device)
    batch = to(make_batch(pair=True), device)
    together = skim_forward(model, strategy, batch, prune=True)
    for b in range(3):
        n = int(batch["attention_mask"][b].sum())
        alone = skim_forward(
            model, strategy, {k: v[b : b + 1, :n] for k, v in batch.items()}, prune=True
        )
        assert torch.equal(alone.exit_layer[0], together.exit_layer[b, :n])
        torch.testing.assert_close(
            alone.hidden[0], together.hidden[b, :n], atol=ATOL[device], rtol=0
        )


def test_the_gpus_padded_grid_attention_gives_what_masking_gives(monkeypatch):
    """On a GPU, pruned inference attends on a padded (B, T_max) grid with a key mask (one fused
    call), where a CPU loops over the sequences. Taking the GPU's path here checks its gathers,
    scatters and mask on a CPU."""
    import transformer

    monkeypatch.setattr(transformer, "attends_per_sequence", lambda device: False)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        calls.append(q.shape[0])  # the batch size of each attention call
        return sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(transformer.F, "scaled_dot_product_attention", spy)
    model, strategy = skimming_model("span")
    batch = make_batch(pair=True)
    pruned = skim_forward(model, strategy, batch, prune=True)
    assert calls == [3] * TINY.num_hidden_layers, "one grid call per layer, all 3 sequences"
    masked = skim_forward(model, strategy, batch, prune=False)
    assert torch.equal(masked.exit_layer, pruned.exit_layer)
    assert (pruned.tokens_per_layer[:, -1] < batch["attention_mask"].sum(1)).all()
    valid = batch["attention_mask"].bool()
    torch.testing.assert_close(masked.hidden[valid], pruned.hidden[valid], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------
# Pruning's two layouts: packed (no pad computed) and the padded grid (fewer, larger calls)


def test_the_layout_rule_packs_on_a_cpu_and_keeps_small_or_full_batches_on_a_gpus_grid():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")  # a device name needs no GPU
    sst2_32, imdb_32 = [54] + [20] * 31, [512] + [271] * 31  # as in benchmarks/results/gpu-h100.md
    for lengths in ([1], [300], sst2_32, imdb_32, [512] * 128):
        assert inference_layout(cpu, lengths) == "packed"  # a pad costs what a token costs
    assert inference_layout(gpu, [300]) == "grid"  # batch 1: no pads, no gathers
    assert inference_layout(gpu, sst2_32) == "grid"  # 1,728 cells: launches, not arithmetic
    assert inference_layout(gpu, imdb_32) == "packed"  # 16,384 cells, 54% real
    assert inference_layout(gpu, [512] * 32) == "grid"  # no pads to save
    assert inference_layout(gpu, [10] * 4, t_max=2000) == "packed"  # a wide grid, nearly all pads
    assert inference_layout(gpu, [skim.GRID_CELLS // 2] * 2) == "grid"  # the threshold itself
    assert inference_layout(gpu, [skim.GRID_CELLS // 2] * 2, t_max=skim.GRID_CELLS) == "packed"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["classification", "span"])
def test_the_grid_layout_computes_what_packing_computes(kind, device):
    model, strategy = skimming_model(kind, device)
    batch = to(make_batch(pair=True), device)
    packed = skim_forward(model, strategy, batch, prune="packed")
    grid = skim_forward(model, strategy, batch, prune="grid")
    assert (packed.tokens_per_layer[:, -1] < batch["attention_mask"].sum(1)).all()
    assert torch.equal(packed.exit_layer, grid.exit_layer)
    assert torch.equal(packed.tokens_per_layer, grid.tokens_per_layer)
    torch.testing.assert_close(grid.hidden, packed.hidden, atol=ATOL[device], rtol=0)  # pads: 0
    torch.testing.assert_close(grid.logits, packed.logits, atol=ATOL[device], rtol=0)
    plain = skim_forward(model, None, batch, prune="grid")  # the padded baseline
    valid = batch["attention_mask"].bool()
    torch.testing.assert_close(plain.hidden[valid], model.bert(**batch)[valid], atol=1e-5, rtol=0)


def test_the_grid_scores_every_cell_on_a_gpu_and_decides_the_same(monkeypatch):
    """On a GPU the predictors score the whole grid (no wait for the count of present tokens);
    taking that path on a CPU checks that the pads' scores never decide anything."""
    model, strategy = skimming_model()
    batch = make_batch()
    before = skim_forward(model, strategy, batch, prune="grid")
    monkeypatch.setattr(skim, "scores_whole_grid", lambda device: True)
    after = skim_forward(model, strategy, batch, prune="grid")
    assert torch.equal(before.exit_layer, after.exit_layer)
    torch.testing.assert_close(before.logits, after.logits, atol=0, rtol=0)


def test_a_batch_whose_cls_is_not_in_column_0_is_packed_whatever_the_layout_asked(monkeypatch):
    model, strategy = skimming_model()
    batch = make_batch()
    T, n = batch["input_ids"].shape[1], batch["attention_mask"].sum(1).tolist()
    # pads first (left padding): each row's tokens moved right, in their order
    left = {k: torch.stack([r.roll(T - m) for r, m in zip(v, n)]) for k, v in batch.items()}
    packed = skim_forward(model, strategy, left, prune="packed")
    monkeypatch.setattr(skim, "_pruned_grid", lambda *a, **k: pytest.fail("the grid was used"))
    asked = skim_forward(model, strategy, left, prune="grid")
    assert torch.equal(asked.exit_layer, packed.exit_layer)
    assert (asked.exit_layer[0] < TINY.num_hidden_layers).any()  # some tokens were skimmed
    torch.testing.assert_close(asked.logits, packed.logits, atol=0, rtol=0)


def test_an_unknown_layout_is_a_clear_error():
    model, strategy = skimming_model()
    with pytest.raises(
        ValueError, match=r"prune must be True, False or a layout, one of \('packed', 'grid'\)"
    ):
        skim_forward(model, strategy, make_batch(), prune="padded")
    assert LAYOUTS == ("packed", "grid")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_pruned_and_masked_forward_run_under_autocast(device, dtype):
    """train.py evaluates under autocast with --precision bf16 / fp16: the linear layers then
    answer in the lower precision, while the loop's grid stays float32. Batches of unequal
    lengths take the path that scores present tokens only (`on_present_tokens`)."""
    model, strategy = skimming_model(device=device)
    batch = to(make_batch(pair=True), device)
    with torch.autocast(device, dtype=dtype):
        pruned = skim_forward(model, strategy, batch, prune=True)
        masked = skim_forward(model, strategy, batch, prune=False)
    for out in (pruned, masked):
        assert torch.isfinite(out.logits.float()).all() and out.hidden.dtype == torch.float32
        assert (out.exit_layer[:, 0] == TINY.num_hidden_layers).all(), "[CLS] must stay"
        assert (out.exit_layer[batch["attention_mask"] == 0] == -1).all(), "a pad was kept"
    assert (pruned.tokens_per_layer[:, -1] < batch["attention_mask"].sum(1)).any(), "no skimming"


@pytest.mark.parametrize("device", DEVICES)
def test_transkimmer_samples_in_float32_and_trains_under_autocast(device, monkeypatch):
    """Under float16 autocast the predictors' logits are float16; the Gumbel sample must not be
    (−log of an Exp(1) draw that rounds to 0 is inf, and the softmax of inf is NaN)."""
    import skim

    dtypes, sample = [], skim.gumbel_keep

    def spy(logits, tau):
        dtypes.append(logits.dtype)
        return sample(logits, tau)

    monkeypatch.setattr(skim, "gumbel_keep", spy)
    model = BertForTask(TINY).train().to(device)
    strategy = Transkimmer(TINY, SkimConfig(tau=0.1, skim_weight=0.5)).train().to(device)
    batch = to(make_batch(pair=True), device)
    with torch.autocast(device, dtype=torch.float16):
        assert strategy.predictors[0](torch.randn(2, TINY.hidden_size, device=device)).dtype == (
            torch.float16
        ), "autocast should make the predictors' logits float16"
        out = skim_forward(model, strategy, batch)
        labels = torch.tensor([0, 1, 1], device=device)
        loss = torch.nn.functional.cross_entropy(out.logits.float(), labels)
        loss = loss + 0.5 * skim_loss(out, batch["attention_mask"])
    assert dtypes == [torch.float32] * TINY.num_hidden_layers
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in strategy.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_on_present_tokens_scores_only_present_rows_and_fills_the_rest():
    h = torch.randn(2, 5, 4)
    alive = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    seen = []

    def score(x):  # each token on its own: a sum over its features
        seen.append(x.shape[:-1].numel())
        return x.sum(-1)

    out = on_present_tokens(score, h, alive, -7.0)
    assert seen == [8]  # the 8 present tokens, not the 10 cells of the grid
    torch.testing.assert_close(out[alive.bool()], h.sum(-1)[alive.bool()])
    assert (out[~alive.bool()] == -7.0).all()
    full = on_present_tokens(
        score, h[1:], alive[1:], -7.0
    )  # every token present: the grid as it is
    assert seen == [8, 5] and torch.equal(full, h[1:].sum(-1))


def test_inference_scores_only_present_tokens_and_matches_the_predictor_on_the_grid():
    torch.manual_seed(0)
    _, strategy = skimming_model()
    h = torch.randn(3, 11, TINY.hidden_size)
    alive = (torch.arange(11) < torch.tensor([11, 8, 4])[:, None]).float()
    score = strategy.keep_score(1, h, alive)
    logits = strategy.predictors[1](h)  # every cell of the grid, pads included
    present = alive.bool()
    torch.testing.assert_close(
        score[present], (logits[..., 1] - logits[..., 0])[present], atol=1e-5, rtol=0
    )
    assert torch.isneginf(score[~present]).all()
    keep = strategy.decide(1, h, alive, SkimContext({}, True, torch.arange(11).expand(3, 11)))
    assert torch.equal(keep, (logits[..., 1] >= logits[..., 0]) & present)
    assert 0 < keep[present].sum() < present.sum()  # a meaningful mix of keep and skip


def test_cls_is_always_kept_and_pads_never():
    model = BertForTask(TINY).eval()
    strategy = Transkimmer(TINY, SkimConfig(init_mean=-5.0)).eval()  # wants to skim everything
    batch = make_batch(pair=True)
    for prune in (False, True):
        out = skim_forward(model, strategy, batch, prune=prune)
        assert (out.tokens_per_layer == 1).all(), "only [CLS] should survive"
        assert (out.exit_layer[:, 0] == TINY.num_hidden_layers).all()
        assert (out.exit_layer[batch["attention_mask"] == 0] == -1).all()


# ----------------------------------------------------------------------------------------------
# Initialisation, gradients, the loss


@pytest.mark.parametrize("prune", [False, True])
def test_at_initialisation_nothing_is_skimmed_and_output_equals_plain_encoder(prune):
    model = BertForTask(TINY, "span").eval()
    strategy = Transkimmer(TINY).eval()  # Eq. (9): keep bias +5, skip bias −5
    batch = make_batch(pair=True)
    out = skim_forward(model, strategy, batch, prune=prune)
    lengths = batch["attention_mask"].sum(1)
    assert torch.equal(out.tokens_per_layer, lengths[:, None].expand(-1, TINY.num_hidden_layers))
    with torch.no_grad():
        plain = model.bert(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    valid = batch["attention_mask"].bool()
    torch.testing.assert_close(out.hidden[valid], plain[valid], atol=1e-5, rtol=0)


def test_gumbel_masks_are_exactly_zero_or_one_with_a_soft_gradient():
    logits = torch.randn(4, 9, 2, requires_grad=True)
    keep = gumbel_keep(logits, tau=1.0)
    assert set(keep.unique().tolist()) <= {0.0, 1.0}
    (keep * torch.arange(9.0)).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_gradients_reach_every_predictor_in_training():
    model = BertForTask(TINY).train()
    strategy = Transkimmer(TINY, SkimConfig(tau=1.0)).train()
    batch = make_batch(pair=True)
    out = skim_forward(model, strategy, batch)
    assert len(out.masks) == TINY.num_hidden_layers and out.masks[0].requires_grad
    loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 1]))
    (loss + 0.5 * skim_loss(out, batch["attention_mask"])).backward()
    for i, p in enumerate(strategy.predictors):
        assert p.out.bias.grad is not None and p.out.bias.grad.abs().sum() > 0, f"predictor {i}"
        assert p.fc.weight.grad.abs().sum() > 0, f"predictor {i}"


def test_skim_loss_matches_a_hand_worked_example():
    # two layers, two examples of real lengths 5 and 4 (the second has one pad)
    m0 = torch.tensor([[1, 1, 0, 1, 1], [1, 1, 1, 1, 0]], dtype=torch.float32)
    m1 = torch.tensor([[1, 0, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.float32)
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    # a whole SkimOutput, every field as the loop would fill it: a correct skim_loss may read the
    # real lengths from any of them (assignment 3), e.g. where exit_layer is not -1
    exit_layer = torch.tensor([[2, 1, 0, 2, 1], [2, 1, 1, 1, -1]])
    tokens = torch.stack([m0.sum(1), m1.sum(1)], 1).long()
    out = SkimOutput(torch.zeros(2, 5, 4), torch.zeros(2, 2), tokens, exit_layer, masks=[m0, m1])
    # layer 0: 4/5 and 4/4; layer 1: 2/5 and 1/4; mean of the four = (0.8 + 1 + 0.4 + 0.25) / 4
    assert skim_loss(out, attention_mask).item() == pytest.approx(2.45 / 4, abs=1e-7)


def test_predictor_overhead_is_counted_like_flops_py():
    from flops import skim_predictor_flops

    strategy = Transkimmer(TINY)
    assert strategy.overhead_flops(TINY, 10) == skim_predictor_flops(TINY, 10)


# ----------------------------------------------------------------------------------------------
# A strategy written against the interface alone


def test_cls_attention_strategy_keeps_its_share_and_masked_equals_pruned():
    from skim import ClsAttentionSkim

    model = BertForTask(TINY).eval()
    strategy = ClsAttentionSkim(model.bert, keep=0.5, layers=(1,)).eval()
    batch = make_batch(pair=True)
    pruned = skim_forward(model, strategy, batch, prune=True)
    masked = skim_forward(model, strategy, batch, prune=False)
    lengths = batch["attention_mask"].sum(1)
    assert pruned.tokens_per_layer[:, 1].tolist() == torch.ceil(0.5 * lengths).long().tolist()
    assert torch.equal(masked.exit_layer, pruned.exit_layer)
    torch.testing.assert_close(masked.logits, pruned.logits, atol=1e-5, rtol=0)
    assert "bert" not in dict(strategy.named_modules()), "the strategy must not own the encoder"


def test_a_batch_row_without_tokens_is_a_clear_error():
    model, strategy = skimming_model()
    batch = make_batch()
    batch["attention_mask"][1] = 0  # an empty row: not even [CLS]
    for prune in (False, True):
        with pytest.raises(ValueError, match=r"batch rows \[1\] have no tokens"):
            skim_forward(model, strategy, batch, prune=prune)


def test_a_decision_of_the_wrong_shape_is_a_clear_error():
    from skim import SkimStrategy

    class Short(SkimStrategy):
        layers = (1,)

        def decide(self, i, h, alive, ctx):
            return alive[:, 1:]  # one token short

    model = BertForTask(TINY).eval()
    for prune in (False, True):
        with pytest.raises(ValueError, match="Short.decide before layer 1 returned"):
            skim_forward(model, Short(), make_batch(pair=True), prune=prune)


@pytest.mark.parametrize("dtype", [torch.bool, torch.float32])
def test_decide_may_answer_bool_or_float_in_either_mode_the_loop_casts(dtype):
    from skim import SkimStrategy

    class EvenPositions(SkimStrategy):  # the same decision, as bool or as 0/1 float
        layers = (1,)

        def decide(self, i, h, alive, ctx):
            return ((ctx.positions % 2 == 0) & (alive > 0)).to(dtype)

    model, batch = BertForTask(TINY).eval(), make_batch(pair=True)
    masked = skim_forward(model, EvenPositions(), batch, prune=False)
    pruned = skim_forward(model, EvenPositions(), batch, prune=True)
    assert torch.equal(masked.exit_layer, pruned.exit_layer)
    assert (pruned.tokens_per_layer[:, 1] < batch["attention_mask"].sum(1)).all()
    torch.testing.assert_close(masked.logits, pruned.logits, atol=ATOL["cpu"], rtol=0)


# ----------------------------------------------------------------------------------------------
# float64 stays float64: how a gradient is checked


def test_masked_equals_pruned_to_1e12_in_float64():
    model, strategy = skimming_model()
    model, strategy = model.double(), strategy.double()
    batch = make_batch(pair=True)
    masked = skim_forward(model, strategy, batch, prune=False)
    pruned = skim_forward(model, strategy, batch, prune=True)
    assert torch.equal(masked.exit_layer, pruned.exit_layer)
    assert masked.hidden.dtype == pruned.hidden.dtype == torch.float64
    valid = batch["attention_mask"].bool()
    torch.testing.assert_close(masked.hidden[valid], pruned.hidden[valid], atol=1e-12, rtol=0)
    torch.testing.assert_close(masked.logits, pruned.logits, atol=1e-12, rtol=0)


def test_gradcheck_through_the_skim_attention_in_float64():
    """Eq. (4) with a float key mask, differentiated numerically and by autograd: the queries,
    keys, values and the mask itself (the path a skim decision learns through)."""
    model = BertForTask(TINY, "classification", 2).double().eval()
    attention = model.bert.layers[0].attn
    q, k, v = (torch.randn(2, TINY.num_attention_heads, 5, TINY.head_dim, dtype=torch.float64,
                           requires_grad=True) for _ in range(3))  # fmt: skip
    m = torch.tensor([[1.0, 0.7, 0.0, 1.0, 0.2], [1.0, 1.0, 1.0, 0.5, 0.0]], dtype=torch.float64)
    m.requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: attention._eager(*a, 0.0)[0], (q, k, v, m))


def test_gradcheck_through_a_transkimmer_decision_in_float64():
    """The soft path of a decision (Eq. 2's predictor, then Eq. 5's softmax of (logits + g)/τ,
    whose gradient the straight-through mask carries) verified numerically in float64 with the
    noise g held fixed; and the decision itself stays float64."""
    strategy = Transkimmer(TINY, SkimConfig(init_mean=0.5, init_std=0.5, tau=0.7)).double()
    h = torch.randn(2, 6, TINY.hidden_size, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 6, 2, dtype=torch.float64)  # the noise, held fixed: any values will do

    def soft(h):
        return ((strategy.predictors[0](h) + g) / 0.7).softmax(-1)[..., 1]

    assert torch.autograd.gradcheck(soft, (h,))
    ctx = SkimContext({"input_ids": torch.zeros(2, 6, dtype=torch.long)}, False, None)
    keep = strategy.train().decide(0, h, torch.ones(2, 6, dtype=torch.float64), ctx)
    assert keep.dtype == torch.float64 and keep.requires_grad


# ----------------------------------------------------------------------------------------------
# Between a method's loss and its decide: one way each, on the SkimContext. A method written
# against the old contract is told what to change.


class Notes(SkimStrategy):
    """Keeps every token; notes what its context held, and leaves a number for its loss."""

    layers = (0, 1)

    def decide(self, i, h, alive, ctx):
        self.seen = (ctx.stage, dict(ctx.hints))
        ctx.extras[i] = alive.sum(1)  # for the loss: the tokens present before layer i
        return alive


def test_stage_and_hints_reach_decide_and_extras_come_back():
    model, strategy = BertForTask(TINY).train(), Notes()
    batch, stage = make_batch(), Stage("joint", epochs=1, encoder_lr=1e-3, strategy_lr=1e-3)
    out = skim_forward(model, strategy, batch, stage=stage, hints={"guide": 3})
    assert strategy.seen == (stage, {"guide": 3})
    assert set(out.extras) == {0, 1} and out.extras[0].tolist() == [11, 8, 4]
    out = skim_forward(model.eval(), strategy, batch)  # inference: no stage, no hints
    assert strategy.seen == (None, {}) and set(out.extras) == {0, 1}


class OldTuple(SkimStrategy):
    layers = (1,)

    def decide(self, i, h, alive, ctx):
        return alive, alive.sum(1)  # the old contract's (keep, extra)


@pytest.mark.parametrize("prune", [False, True])
def test_decide_returning_a_tuple_is_told_about_ctx_extras(prune):
    with pytest.raises(TypeError, match=r"returned a tuple: .*ctx\.extras\[i\] = log_prob"):
        skim_forward(BertForTask(TINY), OldTuple(), make_batch(), prune=prune)


class OldGuideKey(SkimStrategy):
    layers = (1,)

    def decide(self, i, h, alive, ctx):
        return alive * (ctx.batch["guide_scores"] > 0)  # the old contract: a key the loss added


def test_a_key_the_loss_put_in_the_batch_is_hidden_from_decide_which_is_told_about_hints():
    batch = make_batch()
    batch["guide_scores"] = torch.ones(3, 11)  # as TR-BERT's loss once did
    message = r"'guide_scores' is not in ctx.batch.*hints=\{'guide_scores': \.\.\.\}"
    with pytest.raises(KeyError, match=message + r".*ctx\.hints\['guide_scores'\]"):
        skim_forward(BertForTask(TINY), OldGuideKey(), batch, prune=False)
    with pytest.raises(KeyError, match="hidden from decide: a skim decision may not see"):
        SkimContext({"labels": torch.ones(3)}, False).batch["labels"]


def test_ltp_tells_an_old_decide_that_reads_self_soft_where_the_stage_is():
    from ltp import LTP

    with pytest.raises(AttributeError, match=r"LTP.soft is gone: .*soft_stage\(ctx.stage\)"):
        LTP(TINY).soft
    assert not hasattr(LTP(TINY), "soft")


def test_ltp_takes_its_mask_from_the_stage_its_loss_hands_decide():
    """LTP's soft mask in the stage whose thresholds learn; hard in the other, and without a
    stage, in training or not."""
    from ltp import LTP, LTPOptions

    model, ltp = BertForTask(TINY).train(), LTP(TINY, LTPOptions(threshold_init=0.9)).train()
    soft = Stage("soft", epochs=1, encoder_lr=1e-3, strategy_lr=1e-3)
    hard = Stage("hard", epochs=1, encoder_lr=1e-3, strategy_lr=0.0)
    batch = make_batch()
    for stage, is_soft in ((soft, True), (hard, False), (None, False)):
        mask = skim_forward(model, ltp, batch, prune=False, stage=stage).masks[-1]
        binary = bool(((mask == 0) | (mask == 1)).all())
        assert binary != is_soft, f"stage {stage}: soft values {not binary}"


class OldOptionsOnly(SkimStrategy):
    layers = (1,)

    def __init__(self, options):  # the old default build called cls(options)
        super().__init__()
        self.options = options


def test_the_default_build_makes_a_method_from_config_options_and_task():
    import data

    model, task = BertForTask(TINY), data.get_task("synthetic")
    built = Transkimmer.build(model, SkimConfig(), task)  # no build of its own: the default
    assert built.options.skim_weight == task.skim_weight  # λ from the task, in __init__
    assert Notes.build(model, None, task).options is None  # SkimStrategy's own __init__
    with pytest.raises(TypeError, match=r"OldOptionsOnly\(options\) cannot be made .*"
                       r"OldOptionsOnly\(config, options, task\).*override build"):  # fmt: skip
        OldOptionsOnly.build(model, None, task)
