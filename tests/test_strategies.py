"""The conformance suite: what every skim strategy must do, whoever wrote it.

Runs over every built-in method and, given `--strategy path/to/file.py:Class` (repeatable), over
yours:    python -m pytest tests/test_strategies.py --strategy my_method.py:MyStrategy
Each check is a plain function of a `make(model) -> strategy` factory, so the suite can test
itself: known-wrong strategies at the end of this file must each fail the check they break.

The checks: masked (training form) equals pruned (inference form, packed and on the padded grid),
also where nobody leaves and where all but [CLS] leave; [CLS] stays, pads are never kept and a
skimmed token never returns; batch and alone give the same decisions; tokens_per_layer counts what
the layers saw; the FLOPs charged equal torch's FlopCounterMode at two lengths; a checkpoint round
trip keeps the decisions; in training, gradients reach every trainable parameter of the strategy;
under autocast (bf16, fp16) it trains and prunes; its loss sets no attribute for decide to read
(what decide needs arrives on its context: ctx.stage, ctx.hints). Each check takes a device ("cpu"
by default); the suite runs them on a CUDA GPU too when there is one (`-m cuda` selects those
alone).
"""

import dataclasses
import types

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import data
import flops
import runs
from skim import LAYOUTS, SkimStrategy, Stage, StepContext, skim_forward
from train import task_loss
from transformer import CONFIGS, BertForTask

# 4 layers and 130 positions, so a batch can hold sequences of 1, 3, 17 and 128 tokens
CFG = dataclasses.replace(CONFIGS["tiny"], num_hidden_layers=4, max_position_embeddings=130)
LENGTHS = (1, 3, 17, 128)
TASK = data.get_task("synthetic")
# How far masked and pruned (or batch and alone) may differ. A GPU's kernels choose their blocking
# by shape, so the same sums come in another order than on the grid of the other form: 1e-4 there
# still tells rounding from a real difference (a token that sees a skimmed one is off by ~0.1).
ATOL = {"cpu": 1e-5, "cuda": 1e-4}
# conftest.DEVICES, written again: the grader (assignments/checks.py) loads this file on its own,
# where conftest cannot be imported. The `cuda` mark is skipped without a GPU (conftest.py).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def make_batch(lengths=LENGTHS, seed=0) -> dict:
    """Sequences of the given lengths: [CLS] first, [SEP] last (when there is room), pads after."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(5, CFG.vocab_size, (len(lengths), T), generator=g)
    mask = (torch.arange(T) < torch.tensor(lengths)[:, None]).long()
    ids[:, 0] = 2  # [CLS]
    for b, n in enumerate(lengths):
        if n > 1:
            ids[b, n - 1] = 3  # [SEP]
    ids = ids * mask
    labels = torch.randint(0, 2, (len(lengths),), generator=g)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(ids),
        "labels": labels,
        "index": torch.arange(len(lengths)),
    }


def tiny_model(attn_impl="sdpa", seed=0) -> BertForTask:
    torch.manual_seed(seed)
    return BertForTask(dataclasses.replace(CFG, attn_impl=attn_impl), "classification", 2).eval()


def built_in(name: str, **options):
    """A factory for a built-in method, with options (and tweaks) that make it skim some tokens
    at initialisation, so that every check has decisions to look at."""

    def make(model):
        method = runs.load_method(name)
        opts = runs.make_options(method, options)
        strategy = method.build(model, opts, TASK)
        if name == "trbert":  # a policy that selects some tokens, not ~half of every sequence
            for net in strategy.nets.values():
                torch.nn.init.normal_(net.fc2.weight, 0, 2.0)
        return strategy.eval()

    return make


CASES = {
    "baseline": built_in("baseline"),
    "transkimmer": built_in("transkimmer", init_mean=0.3, init_std=0.3),
    "trbert": built_in("trbert"),
    "cls-attention": built_in("cls-attention", keep=0.6),
    "random": built_in("random", keep_shares="1,0.7,0.5,0.5"),
    "ltp": built_in("ltp", threshold_init=0.9),
}


def from_spec(spec: str):
    def make(model):
        method = runs.load_method(spec)
        defaults = runs.make_options(method, {})
        return method.build(model, defaults, TASK).eval()

    return make


def pytest_generate_tests(metafunc):
    if "make" in metafunc.fixturenames:
        specs = metafunc.config.getoption("strategy") or []
        cases = {**CASES, **{spec: from_spec(spec) for spec in specs}}
        if specs:  # a student's run: their strategies only, the built-ins are checked in CI
            cases = {spec: cases[spec] for spec in specs}
        metafunc.parametrize("make", list(cases.values()), ids=list(cases))


# ----------------------------------------------------------------------------------------------
# Recording and forcing decisions


def recorded(strategy):
    """Wrap strategy.decide so that every call's (layer, alive, raw keep, ctx) is kept."""
    calls, decide = [], strategy.decide

    def spy(i, h, alive, ctx):
        keep = decide(i, h, alive, ctx)
        calls.append((i, alive.detach().clone(), keep.detach().clone(), ctx.pruning))
        return keep

    strategy.decide = spy
    return calls


def forced(strategy, layer: int, rule: str):
    """Let the strategy decide, then override layer `layer`: "none" (nobody leaves) or "all"
    (all but [CLS] leave)."""
    decide = strategy.decide

    def force(i, h, alive, ctx):
        keep = decide(i, h, alive, ctx)  # what it leaves in ctx.extras stays there
        if i != layer:
            return keep
        keep = alive.clone() if rule == "none" else torch.zeros_like(alive)
        return keep if not ctx.pruning else keep.bool()

    strategy.decide = force
    return strategy


# ----------------------------------------------------------------------------------------------
# The checks


def check_masked_equals_pruned(make, force=None, device="cpu"):
    model = tiny_model().to(device)
    strategy = make(model).to(device)
    if force and strategy.layers:
        forced(strategy, strategy.layers[0] if force == "none" else strategy.layers[-1], force)
    batch = to(make_batch(), device)
    masked = skim_forward(model, strategy, batch, prune=False)
    for layout in LAYOUTS:  # pruning packs the tokens, or keeps them on a padded grid
        pruned = skim_forward(model, strategy, batch, prune=layout)
        assert torch.equal(masked.exit_layer, pruned.exit_layer), (
            f"masked and pruned ({layout}) decide differently"
        )
        assert torch.equal(masked.tokens_per_layer, pruned.tokens_per_layer), layout
        valid = batch["attention_mask"].bool()
        err = (masked.hidden[valid] - pruned.hidden[valid]).abs().max().item()
        assert err <= ATOL[device], (
            f"masked and pruned ({layout}) hidden states differ by {err:.2e}"
        )
        torch.testing.assert_close(masked.logits, pruned.logits, atol=ATOL[device], rtol=0)
    if force == "all" and strategy.layers:
        assert (pruned.tokens_per_layer[:, -1] == 1).all(), "all but [CLS] should have left"


def check_raw_decisions(make, device="cpu"):
    """What decide returns: 0 at pads and at tokens already skimmed, in both forms."""
    model = tiny_model().to(device)
    strategy = make(model).to(device)
    batch = to(make_batch(), device)
    for prune in (False, True):
        calls = recorded(strategy)
        out = skim_forward(model, strategy, batch, prune=prune)
        assert (out.exit_layer[:, 0] == CFG.num_hidden_layers).all(), "[CLS] must stay to the end"
        assert (out.exit_layer[batch["attention_mask"] == 0] == -1).all()
        for i, alive, keep, pruning in calls:
            assert keep.shape == alive.shape, (
                f"layer {i}: keep {tuple(keep.shape)} != {tuple(alive.shape)}"
            )
            gone = (alive == 0) & (keep.float() != 0)
            if not pruning:
                pads = gone & (batch["attention_mask"] == 0)
                assert not pads.any(), f"layer {i} keeps a pad"
            assert not gone.any(), f"layer {i} keeps a token that is not present (skimmed or pad)"
        strategy = make(model).to(device)  # unwrapped again


def check_batch_equals_alone(make, device="cpu"):
    model = tiny_model().to(device)
    strategy = make(model).to(device)
    batch = to(make_batch(), device)
    for layout in LAYOUTS:
        together = skim_forward(model, strategy, batch, prune=layout)
        for b, n in enumerate(LENGTHS):
            alone = skim_forward(
                model,
                strategy,
                {k: v[b : b + 1, :n] if v.ndim == 2 else v[b : b + 1] for k, v in batch.items()},
                prune=True,
            )
            same = torch.equal(alone.exit_layer[0], together.exit_layer[b, :n])
            assert same, f"sequence {b} alone decides otherwise than in a batch ({layout})"
            torch.testing.assert_close(
                alone.hidden[0], together.hidden[b, :n], atol=ATOL[device], rtol=0
            )


def check_tokens_per_layer(make, device="cpu"):
    model = tiny_model().to(device)
    strategy = make(model).to(device)
    batch = to(make_batch(), device)
    for prune in (False, True):
        out = skim_forward(model, strategy, batch, prune=prune)
        counted = torch.stack(
            [(out.exit_layer > i).sum(1) for i in range(CFG.num_hidden_layers)], 1
        )
        assert torch.equal(out.tokens_per_layer, counted), "tokens_per_layer != the tokens kept"
        if not prune:
            masks = torch.stack([m.sum(1) for m in out.masks], 1).round().long()
            assert torch.equal(out.tokens_per_layer, masks)


def check_flops(make, device="cpu"):
    """One example at a time, attention in explicit matmuls (FlopCounterMode does not see the
    fused kernel): what flops.py charges equals what torch counts, at two lengths, so a cost that
    is not linear in n is caught."""
    model = tiny_model("eager").to(device)
    strategy = make(model).to(device)
    d = CFG.hidden_size
    for n in (17, 128):
        batch = to(make_batch((n,), seed=n), device)
        with FlopCounterMode(display=False) as counter:
            out = skim_forward(model, strategy, batch, prune=True)
        kept = out.tokens_per_layer[0].tolist()
        charged = flops.example_flops(CFG, n, kept, strategy) + 2 * d * d + 2 * d * 2  # + heads
        measured = counter.get_total_flops()
        assert measured == charged, f"n = {n}: FlopCounterMode {measured:,}, charged {charged:,}"


def check_decisions_ignore_answers(make, device="cpu"):
    """A decision may not see the answer: the same questions with other labels (and, for the
    synthetic tasks, another keyword mask) skim exactly the same tokens, in training (the same
    random draws) and at inference. The loop hides the answer keys from decide; this catches
    every other way round (a label kept from the last training batch, a look into the caller)."""
    model = tiny_model().to(device)
    strategy = make(model).to(device)
    batch = make_batch()
    other = dict(batch, labels=1 - batch["labels"])
    batch["keyword_mask"] = batch["attention_mask"].clone()
    other["keyword_mask"] = torch.zeros_like(batch["attention_mask"])
    for prune in (True, False):
        decided = []
        for b in (batch, other):
            torch.manual_seed(0)  # a stochastic decision draws the same numbers for both
            try:
                out = skim_forward(model, strategy, to(b, device), prune=prune)
            except KeyError as e:
                raise AssertionError(f"decide reads the answer: {e}") from None
            decided.append(out.exit_layer)
        form = "pruned" if prune else "masked"
        assert torch.equal(*decided), f"the decisions ({form}) change when the labels do"


def check_checkpoint_round_trip(make, tmp_path, device="cpu"):
    """Saved and loaded again on the same device: the same decisions and logits. Saved from a GPU,
    it also loads on the CPU (a run trained on a GPU is evaluated anywhere)."""
    model = tiny_model().to(device)
    strategy = make(model).to(device)
    batch = to(make_batch(), device)
    before = skim_forward(model, strategy, batch, prune=True)
    runs.save_checkpoint(tmp_path / "ckpt", model, strategy, {}, str(tmp_path))
    model2 = tiny_model(seed=1).to(device)
    torch.manual_seed(1)
    strategy2 = make(model2).to(device)
    runs.load_checkpoint(tmp_path / "ckpt", model2, strategy2)
    after = skim_forward(model2, strategy2.eval(), batch, prune=True)
    assert torch.equal(before.exit_layer, after.exit_layer), "decisions changed after reloading"
    torch.testing.assert_close(before.logits, after.logits, atol=1e-6, rtol=0)
    if device != "cpu":
        model3 = tiny_model(seed=2)
        torch.manual_seed(2)
        strategy3 = make(model3)
        runs.load_checkpoint(tmp_path / "ckpt", model3, strategy3)
        on_cpu = skim_forward(model3, strategy3.eval(), to(batch, "cpu"), prune=True)
        assert torch.equal(before.exit_layer.cpu(), on_cpu.exit_layer), "decisions differ on CPU"
        torch.testing.assert_close(before.logits.cpu(), on_cpu.logits, atol=ATOL[device], rtol=0)


def check_gradients(make, device="cpu"):
    """In the stage where the strategy learns, its loss reaches every trainable parameter."""
    model = tiny_model().to(device)
    strategy = make(model).to(device)
    cfg = types.SimpleNamespace(epochs=1.0, lr=1e-3, skim_lr=None, finetuned=None)
    stages = [s for s in strategy.stages(cfg) if s.skim and s.strategy_lr > 0]
    params = [(name, p) for name, p in strategy.named_parameters() if p.requires_grad]
    if not stages:
        assert not params, "the strategy has parameters but no stage trains them"
        return
    stage = stages[-1]
    teacher = tiny_model().to(device) if stage.teacher else None
    step = StepContext(stage, 0, 10, lambda *a: task_loss(TASK, *a), teacher)
    model.train(), strategy.train()
    loss, _ = strategy.loss(model, to(make_batch(), device), step)
    loss.backward()
    for name, p in params:
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def check_mixed_precision(make, device="cpu", dtype=torch.bfloat16):
    """train.py --precision bf16 / fp16 runs the loss and the evaluation under autocast: linear
    layers then answer in the lower precision while the loop keeps its grid in float32. Every
    stage's loss must be finite with finite gradients, and pruned inference must run and keep its
    rules ([CLS] stays, pads never count)."""
    model = tiny_model().to(device)
    strategy = make(model).to(device)
    cfg = types.SimpleNamespace(epochs=1.0, lr=1e-3, skim_lr=None, finetuned=None)
    teacher = tiny_model().to(device)
    batch = to(make_batch((1, 3, 17, 40)), device)  # shorter than LENGTHS: a CPU emulates bf16
    for stage in strategy.stages(cfg):
        step = StepContext(stage, 0, 10, lambda *a: task_loss(TASK, *a), teacher)
        # as train.py does, outside autocast: e.g. TR-BERT's guide for its imitation warm-up
        strategy.begin_stage(step, lambda: [(batch["index"].tolist(), batch)])
        model.train(), strategy.train()
        model.zero_grad(), strategy.zero_grad()
        with torch.autocast(device, dtype=dtype):
            loss, _ = strategy.loss(model, batch, step)
        assert torch.isfinite(loss), f"stage {stage.name}: the loss is {loss.item()} under autocast"
        loss.backward()
        for name, p in [*model.named_parameters(), *strategy.named_parameters()]:
            ok = p.grad is None or torch.isfinite(p.grad).all()
            assert ok, f"stage {stage.name}: the gradient of {name} is not finite under autocast"
    model.eval(), strategy.eval()
    for layout in LAYOUTS:
        with torch.no_grad(), torch.autocast(device, dtype=dtype):
            out = skim_forward(model, strategy, batch, prune=layout)
        finite = torch.isfinite(out.logits.float()).all()
        assert finite, f"pruned logits ({layout}) are not finite under autocast"
        assert (out.exit_layer[:, 0] == CFG.num_hidden_layers).all(), "[CLS] must stay to the end"
    assert (out.exit_layer[batch["attention_mask"] == 0] == -1).all()


def check_loss_sets_no_state(make, device="cpu"):
    """What decide needs from the loss arrives through its context (skim_forward's stage= and
    hints=, read as ctx.stage and ctx.hints), never through an attribute the loss sets: after
    each stage's loss the strategy's attributes are the objects they were before."""
    model = tiny_model().to(device)
    strategy = make(model).to(device)
    cfg = types.SimpleNamespace(epochs=1.0, lr=1e-3, skim_lr=None, finetuned=None)
    batch = to(make_batch((1, 3, 17)), device)
    for stage in strategy.stages(cfg):
        step = StepContext(stage, 0, 10, lambda *a: task_loss(TASK, *a), tiny_model().to(device))
        strategy.begin_stage(step, lambda: [(batch["index"].tolist(), batch)])
        model.train(), strategy.train()
        before = {k: v for k, v in vars(strategy).items() if not k.startswith("_")}
        strategy.loss(model, batch, step)
        after = {k: v for k, v in vars(strategy).items() if not k.startswith("_")}
        changed = sorted(k for k in {*before, *after} if before.get(k, step) is not after.get(k))
        assert not changed, (
            f"stage {stage.name}: the loss set {', '.join(changed)} on the strategy. A loss hands "
            "decide what it knows with skim_forward(..., stage=context.stage, hints={...}), "
            "which decide reads as ctx.stage and ctx.hints"
        )


# ----------------------------------------------------------------------------------------------
# The suite: every check on every strategy


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("force", [None, "none", "all"])
def test_masked_equals_pruned(make, force, device):
    check_masked_equals_pruned(make, force, device)


@pytest.mark.parametrize("device", DEVICES)
def test_cls_kept_pads_never_kept_skimmed_never_return(make, device):
    check_raw_decisions(make, device)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_and_alone_decide_alike(make, device):
    check_batch_equals_alone(make, device)


@pytest.mark.parametrize("device", DEVICES)
def test_tokens_per_layer_counts_what_the_layers_saw(make, device):
    check_tokens_per_layer(make, device)


@pytest.mark.parametrize("device", DEVICES)
def test_flops_charged_equal_flop_counter_mode(make, device):
    check_flops(make, device)


@pytest.mark.parametrize("device", DEVICES)
def test_decisions_never_see_the_answers(make, device):
    check_decisions_ignore_answers(make, device)


@pytest.mark.parametrize("device", DEVICES)
def test_checkpoint_round_trip_keeps_decisions(make, tmp_path, device):
    check_checkpoint_round_trip(make, tmp_path, device)


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_reach_every_trainable_parameter(make, device):
    check_gradients(make, device)


# train.py's --precision: bf16 on a CPU or a GPU, fp16 on a GPU only
AUTOCAST = [
    pytest.param("cpu", torch.bfloat16, id="cpu-bf16"),
    pytest.param("cuda", torch.bfloat16, id="cuda-bf16", marks=pytest.mark.cuda),
    pytest.param("cuda", torch.float16, id="cuda-fp16", marks=pytest.mark.cuda),
]


@pytest.mark.parametrize("device,dtype", AUTOCAST)
def test_trains_and_prunes_under_autocast(make, device, dtype):
    check_mixed_precision(make, device, dtype)


def test_the_loss_hands_decide_what_it_knows_through_the_context(make):
    check_loss_sets_no_state(make)


# ----------------------------------------------------------------------------------------------
# The suite tests itself: each known-wrong strategy fails the check it breaks


class KeepsPads(SkimStrategy):
    """Wrong: keeps every cell of the grid, pads included."""

    layers = (1,)

    def decide(self, i, h, alive, ctx):
        keep = torch.ones_like(alive)
        keep[:, 2::2] = alive[:, 2::2]  # skims some tokens, but keeps every odd cell, pads too
        return keep.bool() if ctx.pruning else keep


class BringsBack(SkimStrategy):
    """Wrong: at layer 2 keeps the odd positions, whatever layer 1 skimmed."""

    layers = (1, 2)

    def decide(self, i, h, alive, ctx):
        odd = (ctx.positions % 2 == 1) | (ctx.positions == 0)
        keep = (odd if i == 2 else ~odd | (ctx.positions == 0)) & (ctx.positions >= 0)
        keep = keep & (ctx.batch["attention_mask"].gather(1, ctx.positions.clamp(min=0)) > 0)
        return keep if ctx.pruning else keep.to(h.dtype)


class UnderReports(SkimStrategy):
    """Wrong: scores tokens with a matrix product it does not charge."""

    layers = (1,)

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(CFG.hidden_size, 1)

    def decide(self, i, h, alive, ctx):
        keep = (self.w(h).squeeze(-1) > 0) & (alive > 0)
        return keep if ctx.pruning else keep.to(h.dtype)


class QuadraticCharge(UnderReports):
    """Wrong: charges n² where its cost is linear in n (right at one length only)."""

    def overhead_flops(self, config, n):
        return 2 * config.hidden_size * n * n // 17  # the true 2·d·n at n = 17 only


class ReadsLabels(SkimStrategy):
    """Wrong: keeps every token of a positive example, only [CLS] of a negative one."""

    layers = (1,)

    def decide(self, i, h, alive, ctx):
        keep = alive * ctx.batch["labels"][:, None].to(alive.dtype)
        return keep.bool() if ctx.pruning else keep


class RemembersLabels(SkimStrategy):
    """Wrong: keeps the labels its loss saw and decides by them (at evaluation too)."""

    layers = (1,)

    def __init__(self):
        super().__init__()
        self.seen = None

    def decide(self, i, h, alive, ctx):
        import inspect

        # the caller's own batch, from its frame: any such trick changes decisions with labels
        frame = inspect.currentframe().f_back
        while frame is not None and "batch" not in frame.f_locals:
            frame = frame.f_back
        labels = frame.f_locals["batch"]["labels"]
        keep = alive * labels[:, None].to(alive.dtype)
        return keep.bool() if ctx.pruning else keep


class SetsStateInLoss(SkimStrategy):
    """Wrong (the old contract's way, LTP's `self.soft`): the loss sets an attribute for decide."""

    layers = (1,)

    def __init__(self, config=None, options=None, task=None):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.soft = True

    def decide(self, i, h, alive, ctx):
        keep = alive * torch.sigmoid(self.w + 5) if self.training and self.soft else alive
        return keep.bool() if ctx.pruning else keep

    def loss(self, model, batch, context):
        self.soft = context.stage.strategy_lr > 0
        return super().loss(model, batch, context)

    def stages(self, cfg):
        return [Stage("soft", cfg.epochs, cfg.lr, 1e-3), Stage("hard", cfg.epochs, cfg.lr, 0.0)]


def test_known_wrong_strategies_fail_the_suite():
    wrong = lambda cls: lambda model: cls().eval()  # noqa: E731
    with pytest.raises(AssertionError, match="keeps a pad"):
        check_raw_decisions(wrong(KeepsPads))
    with pytest.raises(AssertionError, match="not present"):
        check_raw_decisions(wrong(BringsBack))
    with pytest.raises(AssertionError, match="FlopCounterMode"):
        check_flops(wrong(UnderReports))
    with pytest.raises(AssertionError, match="FlopCounterMode"):
        check_flops(wrong(QuadraticCharge))
    with pytest.raises(AssertionError, match="decide reads the answer: .*'labels' is hidden"):
        check_decisions_ignore_answers(wrong(ReadsLabels))
    with pytest.raises(AssertionError, match="change when the labels do"):
        check_decisions_ignore_answers(wrong(RemembersLabels))
    with pytest.raises(AssertionError, match="stage hard: the loss set soft on the strategy"):
        check_loss_sets_no_state(wrong(SetsStateInLoss))


class FloatKeep(SkimStrategy):
    """Right, if unusual: a keep of 0.0 and 1.0 floats when pruning too (the loop casts)."""

    layers = (1, 2)

    def decide(self, i, h, alive, ctx):
        return ((ctx.positions % (i + 1) == 0) & (alive > 0)).to(h.dtype)


def test_a_right_strategy_returning_floats_when_pruning_passes_the_suite():
    right = lambda model: FloatKeep().eval()  # noqa: E731
    for check in (check_raw_decisions, check_masked_equals_pruned, check_batch_equals_alone,
                  check_tokens_per_layer, check_decisions_ignore_answers):  # fmt: skip
        check(right)
