"""Speed benchmarks: our encoder against transformers, and real token pruning against its FLOPs.

    python bench.py encoder   # ours vs transformers.BertModel, same weights, 32×128 and 1×128
    python bench.py skim      # the plain encoder (padded, packed, transformers) vs skimming

`encoder` loads the same weights into our `transformer.BertModel` and into `transformers.BertModel`
(the released all-MiniLM-L6-v2, and a random bert-base-size model) and compares tokens/s.
`skim` runs all-MiniLM-L6-v2 on SST-2 dev and a fixed IMDB test subset at batch 1 and 32: the plain
encoder padded (BertForTask), packed (skim_forward without a strategy: no pad is computed), on
skim_forward's padded grid and in transformers, then Transkimmer and TR-BERT with real pruning.
Their decisions follow a fixed pattern (`FixedTranskimmer`, `FixedTRBert`: the real predictor or
policy runs and is paid for, then each sequence keeps a fixed share of its tokens;
`--transkimmer-keep`, `--trbert-keep` set the shares, gradual and early patterns by default), so
the pattern is aggressive and repeatable; `--checkpoint RUN` adds the trained decisions of a
train.py run (a run of your own method also needs `--method file.py:Class`: a run folder never
chooses the code that runs). Each row sets its wall-clock speedup beside its FLOPs speedup
(flops.py, predictor or policy included), both against the packed baseline: FLOPs "no padding"
counts real tokens, which is what the packed baseline computes. `--layouts packed,grid` times each
method in both of pruning's layouts (see skim.inference_layout; the default, auto, is the rule's
choice, as evaluation runs), and each table's title says which layout the rule picks;
`--random-model bert-base-uncased` times a random model of that shape, `--dtype bf16` in that
precision.
Under each table a second one splits every setting's time into its layers, its deciding (predictor
or policy) and the rest, and sets the layers' own speedup beside their FLOPs. A last table times
one layer at batch 1 against its token count: why batch 1 gains less than its FLOPs.

How: one process, fp32 (or --dtype), eval mode, no_grad, `--threads` (default 2). Each round runs
every input through every setting in turn (the order rotating), and tables show the median over
rounds, so a busy spell on a shared machine slows every setting alike: trust the ratios, not the
tokens/s. `--device cuda`: models and inputs on the GPU (inputs copied there before timing), every
timed call followed by torch.cuda.synchronize() (a CUDA call returns before the GPU is done),
--threads ignored. `--json PATH` also writes every table as JSON. Tests: tests/test_bench.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import data
import flops
import runs
from rl_policy import PolicyConfig, TRBertPolicy
from skim import Transkimmer, inference_layout, on_present_tokens, skim_forward
from transformer import CONFIGS, BertForTask, BertModel, VarLen
from weights import (
    CheckpointError,
    from_pretrained,
    is_run_folder,
    load_encoder_weights,
    read_checkpoint,
    read_config,
    resolve_model_dir,
    write_safetensors,
)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# Data: --glue-dir / --imdb-dir, else $SKIMBERT_DATA/{glue,imdb}, else the download cache
DATA = os.environ.get("SKIMBERT_DATA")


# ----------------------------------------------------------------------------------------------
# Timing and printing

TABLES = []  # every table printed, as {"title", "header", "rows"}: what --json writes


def no_sync() -> None:
    """A CPU computes before it returns: nothing to wait for."""


def synchronizer(device: torch.device):
    """What a timer must call before it reads the clock: a CUDA call only queues work, so without
    torch.cuda.synchronize() a timer would measure the launch, not the computation."""
    return torch.cuda.synchronize if device.type == "cuda" else no_sync


def where(device: torch.device) -> str:
    """Where the timings ran, for the tables' titles."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    return f"{torch.get_num_threads()} threads"


def interleaved(settings: dict, inputs: list, rounds: int, sync=no_sync) -> dict[str, float]:
    """Median over `rounds` of the seconds each setting spends on all `inputs`.

    settings: name -> function(input). Within a round each input goes through every setting
    before the next input, starting from a different setting each time, so neither drift nor a
    neighbour's burst of work favours one setting. One untimed warm-up call each comes first.
    sync: waits for the device (see `synchronizer`), before the clock starts and before it stops."""
    for fn in settings.values():
        fn(inputs[0])
    names = list(settings)
    totals = {name: [] for name in names}
    for r in range(rounds):
        spent = dict.fromkeys(names, 0.0)
        for j, x in enumerate(inputs):
            shift = (r + j) % len(names)
            for name in names[shift:] + names[:shift]:
                sync()
                start = time.perf_counter()
                settings[name](x)
                sync()
                spent[name] += time.perf_counter() - start
        for name in names:
            totals[name].append(spent[name])
    return {name: statistics.median(t) for name, t in totals.items()}


def print_table(title: str, header: list[str], rows: list[list], meta: dict | None = None) -> None:
    """Print a table and keep it for --json; meta: what it measured, for a program to read
    (benchmarks/gpu.py reads the data set, batch size and kind of each skim table)."""
    TABLES.append({"title": title, "header": header, "rows": rows, "meta": meta or {}})
    print(f"\n{title}")
    cells = [header] + [
        [c if isinstance(c, str) else f"{c:,.0f}" if c >= 100 else f"{c:.2f}" for c in row]
        for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, row in enumerate(cells):
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            )
        )
        if k == 0:
            print("  ".join("-" * w for w in widths))


# ----------------------------------------------------------------------------------------------
# 1. encoder: ours against transformers, same weights


def model_pair(size: str, folder: Path, minilm: str = MINILM):
    """(ours, theirs) with the same weights: the released MiniLM (hub name or folder), or a random
    bert-base-size model that transformers initialises and our loader reads back from a
    safetensors folder."""
    import transformers

    if size == "bert-base":
        theirs = transformers.BertModel(
            transformers.BertConfig()
        )  # random, bert-base-uncased shape
        write_safetensors(theirs.state_dict(), folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps(CONFIGS["bert-base-uncased"].to_dict()))
    else:
        folder = resolve_model_dir(minilm)
        theirs = transformers.BertModel.from_pretrained(str(folder))
    return from_pretrained(folder).eval(), theirs.eval()


def bench_encoder(args) -> None:
    rows, device = [], args.device
    for size in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            ours, theirs = model_pair(size, Path(tmp), args.model)
        ours, theirs = ours.to(device), theirs.to(device)
        for B, T in ((32, 128), (1, 128)):
            ids = torch.randint(
                1000, ours.config.vocab_size, (B, T), generator=torch.Generator().manual_seed(0)
            ).to(device)
            mask = torch.ones_like(ids)
            settings = {
                "ours": lambda _: ours(ids, mask),
                "theirs": lambda _: theirs(input_ids=ids, attention_mask=mask).last_hidden_state,
            }
            torch.testing.assert_close(
                settings["ours"](0), settings["theirs"](0), atol=SAME[device.type], rtol=0
            )
            calls = 32 // B  # every round covers 32×128 tokens per setting, whatever the shape
            secs = interleaved(settings, [0] * calls, args.rounds, synchronizer(device))
            tps = {k: calls * B * T / s for k, s in secs.items()}
            rows.append([size, f"{B}×{T}", tps["ours"], tps["theirs"], tps["ours"] / tps["theirs"]])
    print_table(
        f"encoder throughput (tokens/s), fp32, {where(device)}, median of {args.rounds} rounds",
        ["model", "batch×length", "ours", "transformers", "ours/theirs"],
        rows,
    )


# ----------------------------------------------------------------------------------------------
# 2. skim: real pruning, wall clock against FLOPs


def keep_top(score: torch.Tensor, alive: torch.Tensor, fraction: float) -> torch.Tensor:
    """In each sequence, the ⌈fraction·n⌉ of its n alive tokens with the highest score, [CLS]
    (position 0) among them: the loop keeps it anyway, so it takes one of the places.

    score, alive: (B, T), alive 1 = present. Returns keep (B, T) bool, never True where not alive
    (absent tokens rank last, and k ≤ n)."""
    if fraction >= 1:
        return alive.bool()
    # counted in float32: in bf16 a count above 256 rounds (alive is in the states' dtype)
    k = torch.ceil(alive.float().sum(1, keepdim=True) * fraction).long()  # (B, 1)
    score = score.masked_fill(alive == 0, float("-inf"))
    score[:, 0] = float("inf")
    top = score.topk(int(k.max()), 1).indices  # (B, k_max): each sequence's best first
    take = torch.arange(top.shape[1], device=k.device) < k  # (B, k_max): its own k of them
    return torch.zeros_like(alive, dtype=torch.bool).scatter_(1, top, take)


def keep_pattern(text: str, layers: tuple[int, ...]) -> dict[int, float]:
    """'0.75' -> every layer in `layers` keeps 0.75 of the tokens reaching it;
    '1,0.3,1,1,1,1' -> one share per layer in `layers`, in order."""
    try:
        shares = [float(v) for v in text.split(",")]
    except ValueError:
        raise SystemExit(
            f"keep pattern {text!r}: expected numbers separated by commas, e.g. 0.75 or 1,0.3"
        )
    if len(shares) == 1:
        shares *= len(layers)
    if len(shares) != len(layers) or not all(0 < v <= 1 for v in shares):
        raise SystemExit(
            f"keep pattern {text!r}: give one share in (0, 1], or one per layer "
            f"{','.join(map(str, layers))} ({len(layers)} values)"
        )
    return dict(zip(layers, shares))


def pattern_name(pattern: dict[int, float]) -> str:
    shares = set(pattern.values())
    if len(shares) == 1:
        return f"keep {shares.pop():g} at layers {','.join(map(str, pattern))}"
    return (
        "keep "
        + ", ".join(f"{v:g} at {i}" for i, v in pattern.items() if v < 1)
        + ", all elsewhere"
    )


class FixedTranskimmer(Transkimmer):
    """Benchmark only: the real skim predictors run (their cost is paid), but instead of the
    keep-vs-skip argmax each layer keeps a fixed share of the tokens reaching it, ranked by the
    predictor's keep-minus-skip logit. Decisions are then as aggressive as asked and repeatable."""

    def __init__(self, cfg, pattern: str):
        super().__init__(cfg)
        self.pattern = keep_pattern(pattern, self.layers)

    def decide(self, i, h, alive, ctx):
        return keep_top(self.keep_score(i, h, alive), alive, self.pattern[i])


class FixedTRBert(TRBertPolicy):
    """Benchmark only: the real policy networks run; each keeps a fixed share, by π(Select)."""

    def __init__(self, cfg, pattern: str):
        super().__init__(cfg, PolicyConfig())
        self.pattern = keep_pattern(pattern, self.layers)

    def decide(self, i, h, alive, ctx):
        return keep_top(on_present_tokens(self.nets[str(i)], h, alive, 0.0), alive, self.pattern[i])


def evenly_spaced(items: list, n: int) -> list:
    """n items spread over the whole list (IMDB files are sorted by label): a fixed, fair subset."""
    return items if n <= 0 or n >= len(items) else [items[k * len(items) // n] for k in range(n)]


def load_run(run: str, cfg, methods: list[str] = ()):
    """(row name, model, strategy) of a train.py run folder, with its trained decisions. A run
    of a file or module method loads only with that method among `methods` (--method): a run
    folder never chooses the code that runs."""
    recorded = runs.read_run_config(Path(run))["method"]
    mine = [m for m in methods if _names(m, recorded, Path(run))]
    model, strategy, saved = runs.load_run(Path(run), mine[0] if mine else None)
    if not strategy.layers:
        raise SystemExit(
            f"error: --checkpoint {runs.shown(run)}: a {runs.shown(saved['method'])} run makes no "
            "skim decisions to time; give the run of a method that skims"
        )
    if model.bert.config.to_dict() != cfg.to_dict():
        shape = lambda c: f"{c.num_hidden_layers} layers of width {c.hidden_size}"  # noqa: E731
        raise SystemExit(f"error: --checkpoint {runs.shown(run)} holds a model of "
                         f"{shape(model.bert.config)}, --model one of {shape(cfg)} (or another "
                         "vocabulary or length): time it beside its own encoder, --model "
                         f"{runs.shown(Path(run) / 'ckpt')}")  # fmt: skip
    name = f"{saved['method'].rpartition('/')[2]}, trained ({Path(run).name})"
    return runs.shown(name), model, strategy  # quoted if a folder's name would forge a line


def _names(method: str, recorded, run: Path) -> bool:
    """Whether --method `method` is the method a run recorded (runs.method_of_run's rule)."""
    try:
        runs.method_of_run(recorded, method, run / "config.json")
        return True
    except ValueError:
        return False


def bench_skim(args) -> None:
    import transformers

    device, sync, dtype = args.device, synchronizer(args.device), DTYPES[args.dtype]
    folder = resolve_model_dir(args.model)
    tokenizer = data.load_tokenizer(folder)  # a random model reads the same uncased vocabulary
    torch.manual_seed(0)  # the classifier head is random: only its cost matters here
    if args.random_model:  # only speed is measured: random weights, shared with transformers
        cfg = CONFIGS[args.random_model]
        theirs = transformers.BertModel(transformers.BertConfig(**cfg.to_dict())).eval()
        model = BertForTask(cfg).eval()
        load_encoder_weights(model.bert, theirs.state_dict(), f"a random {args.random_model}")
    else:
        try:  # a damaged folder is one line naming the file, as train.py --model says it
            cfg = read_config(folder, links=True)
            model = BertForTask(cfg).eval()
            state = read_checkpoint(folder)
            load_encoder_weights(model.bert, state, str(folder), run_folder=is_run_folder(folder))
        except CheckpointError as e:
            raise SystemExit(f"error: --model {args.model}: {e}") from None
        # its report of the keys it leaves (a run's skim.*) would print the folder's name raw
        transformers.logging.set_verbosity_error()
        theirs = transformers.BertModel.from_pretrained(str(folder)).eval()
    model, theirs = model.to(device), theirs.to(device)
    strategies = {}  # name -> (model, strategy)
    for pattern in args.transkimmer_keep or default_patterns(cfg)[0]:
        strategy = FixedTranskimmer(cfg, pattern).eval().to(device)
        strategies[f"transkimmer, {pattern_name(strategy.pattern)}"] = (model, strategy)
    for pattern in args.trbert_keep or default_patterns(cfg)[1]:
        strategy = FixedTRBert(cfg, pattern).eval().to(device)
        strategies[f"trbert, {pattern_name(strategy.pattern)}"] = (model, strategy)
    for run in args.checkpoint:
        name, run_model, strategy = load_run(run, cfg, args.method)
        strategies[name] = (run_model.to(device), strategy.to(device))
    # name -> (model, strategy, layout): each strategy in each layout asked, named by it if several
    methods = {
        name if len(args.layouts) == 1 else f"{name} ({layout})": (m, s, layout)
        for name, (m, s) in strategies.items()
        for layout in args.layouts
    }
    cast = [
        model,
        theirs,
        *(m for m, _, _ in methods.values()),
        *(s for _, s, _ in methods.values()),
    ]
    sets = {
        "sst2": ("dev", args.glue_dir, args.sst2_examples),
        "imdb": ("test", args.imdb_dir, args.imdb_examples),
    }
    for task in args.sets:
        split, data_dir, n = sets[task]
        examples = evenly_spaced(data.load_examples(task, split, data_dir), n)
        features = data.encode(task, examples, tokenizer)
        for B in args.batch_sizes:
            batches = [  # on the device before any timing: the copy is not what is measured
                {k: v.to(device) for k, v in data.collate(features[i : i + B], "batch").items()}
                for i in range(0, len(features), B)
            ]
            settings = {
                "baseline, padded": lambda b: model(
                    b["input_ids"], b["attention_mask"], b["token_type_ids"]
                ),
                "baseline, packed": lambda b: skim_forward(model, None, b, prune="packed"),
                "baseline, grid": lambda b: skim_forward(model, None, b, prune="grid"),
                "transformers, padded": lambda b: theirs(
                    input_ids=b["input_ids"],
                    attention_mask=b["attention_mask"],
                    token_type_ids=b["token_type_ids"],
                ),
            }
            for name, (m, s, layout) in methods.items():
                settings[name] = lambda b, m=m, s=s, layout=layout: skim_forward(
                    m, s, b, prune=True if layout == "auto" else layout
                )
            for module in cast:  # checked in float32, the reference's precision, then timed
                module.float()
            check_same_numbers(model, theirs, batches[-1], SAME[device.type])
            for module in cast:
                module.to(dtype)
            secs = interleaved(settings, batches, args.rounds, sync)
            title = f"{task} {split}, {args.dtype}, {chosen(batches, device)}"
            meta = {"set": task, "model": args.random_model or str(folder), "dtype": args.dtype}
            report(title, B, batches, secs, methods, cfg, args.rounds, where(device), meta)
            time_split(title, B, batches, secs, model, methods, cfg, sync, meta)
    layer_cost(model.bert, args.rounds, device, dtype)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_patterns(cfg) -> tuple[list[str], list[str]]:
    """Two shapes of pattern per method: gradual (every deciding layer drops a share; ~2.3x FLOPs
    on IMDB with MiniLM) and early (one cut at layer 1, the shape our trained models learn; sized
    to ~2.1x on MiniLM: just past the 2x the speed target asks for, as less pruning leaves the
    fewest small layers at batch 1). Early Transkimmer names every layer: it follows the depth."""
    early = ",".join(["1", "0.35"] + ["1"] * (cfg.num_hidden_layers - 2))
    policies = len(TRBertPolicy(cfg, PolicyConfig()).layers)  # two on MiniLM; fewer if shallower
    return ["0.75", early], ["0.5", ",".join(["0.4"] + ["1"] * (policies - 1))]


def chosen(batches: list, device: torch.device) -> str:
    """Which layout `skim.inference_layout` picks for these batches: what an evaluation runs."""
    picks = [
        inference_layout(device, b["attention_mask"].sum(1).tolist(), b["input_ids"].shape[1])
        for b in batches
    ]
    counts = {layout: picks.count(layout) for layout in sorted(set(picks))}
    return "the layout rule picks " + " and ".join(
        f"{k} for {n} batches" for k, n in counts.items()
    )


# How close ours and transformers must be (hidden states) for their times to compare. On a GPU the
# kernels (cuBLAS, fused attention) choose their blocking by shape and sum in other orders; 1e-3
# there is still far below what a wrong mask or weight would cost (differences of order 0.1).
SAME = {"cpu": 1e-4, "cuda": 1e-3}


def check_same_numbers(model, theirs, batch, atol: float = 1e-4) -> None:
    """The four baselines compute the same hidden states at real tokens, so their times compare."""
    valid = batch["attention_mask"].bool()
    padded = model.bert(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    packed = skim_forward(model, None, batch, prune="packed").hidden
    grid = skim_forward(model, None, batch, prune="grid").hidden
    ref = theirs(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        token_type_ids=batch["token_type_ids"],
    ).last_hidden_state
    torch.testing.assert_close(packed[valid], padded[valid], atol=atol, rtol=0)
    torch.testing.assert_close(grid[valid], padded[valid], atol=atol, rtol=0)
    torch.testing.assert_close(ref[valid], padded[valid], atol=atol, rtol=0)


def report(title, B, batches, secs, methods, cfg, rounds, on=None, meta=None) -> None:
    """One table: tokens/s, wall-clock and FLOPs speedups and ratio vs the packed baseline."""
    L = cfg.num_hidden_layers
    lengths = [n for b in batches for n in b["attention_mask"].sum(1).tolist()]
    padded_lengths = [b["input_ids"].shape[1] for b in batches for _ in range(len(b["input_ids"]))]
    # FLOPs of the plain encoder on every position it computes: real tokens only, or padded batches
    packed_flops = sum(flops.encoder_flops(cfg, [n] * L) for n in lengths)
    padded_flops = sum(flops.encoder_flops(cfg, [n] * L) for n in padded_lengths)
    flops_of = {
        "baseline, padded": padded_flops,
        "baseline, packed": packed_flops,
        "baseline, grid": padded_flops,
        "transformers, padded": padded_flops,
    }
    kept = dict.fromkeys(flops_of, 1.0)
    # a method's FLOPs are its real tokens' (flops.py, no padding), in either layout: the grid's
    # pads are the layout's cost, which the wall-clock column shows
    for name, (m, strategy, _) in methods.items():
        tokens = [
            t
            for b in batches
            for t in skim_forward(m, strategy, b, prune=True).tokens_per_layer.tolist()
        ]
        flops_of[name] = sum(
            flops.example_flops(cfg, n, t, strategy) for n, t in zip(lengths, tokens)
        )
        kept[name] = sum(map(sum, tokens)) / (L * sum(lengths))
    rows = []
    for name, s in secs.items():
        wall, flops_x = secs["baseline, packed"] / s, packed_flops / flops_of[name]
        rows.append(
            [
                name,
                kept[name],
                sum(lengths) / s,
                secs["baseline, padded"] / s,
                wall,
                flops_x,
                wall / flops_x,
            ]
        )
    print_table(
        f"{title}: {len(lengths)} examples, {sum(lengths) / len(lengths):.0f} tokens on average "
        f"(max {max(lengths)}), batch {B}, {on or where(torch.device('cpu'))}, "
        f"median of {rounds} rounds; "
        f"speedups are time (or FLOPs) of the baseline / that of the row",
        [
            "setting",
            "kept",
            "tokens/s",
            "wall× vs padded",
            "wall× vs packed",
            "FLOPs× vs packed",
            "wall/FLOPs",
        ],
        rows,
        {**(meta or {}), "batch": B, "table": "speed"},
    )


def time_split(title, B, batches, secs, model, methods, cfg, sync=no_sync, meta=None) -> None:
    """Where each setting's time goes: in the encoder layers, in the strategy's `decide` (predictor
    or policy network, and ranking its scores) and elsewhere (embeddings, head, moving the tokens
    that leave). The shares come from one extra pass that times those calls, applied to the median
    times above; the layers' own wall-clock speedup is then set beside their own FLOPs speedup,
    which tells the cost of small layers apart from the cost of everything around them.
    On a GPU (sync) every timed call waits for the device, which adds a little to each share."""
    rows, base = [], None
    for name, (m, strategy, layout) in {
        "baseline, packed": (model, None, "packed"),
        **methods,
    }.items():
        spent = {"layers": 0.0, "deciding": 0.0}

        def timed(part, fn):
            def call(*args, **kwargs):
                sync()
                began = time.perf_counter()
                result = fn(*args, **kwargs)
                sync()
                spent[part] += time.perf_counter() - began
                return result

            return call

        for (
            layer
        ) in m.bert.layers:  # an instance attribute shadows the class's forward until deleted
            layer.forward = timed("layers", layer.forward)
        if strategy is not None:
            strategy.decide = timed("deciding", strategy.decide)
        try:
            sync()
            began = time.perf_counter()
            layout = True if layout == "auto" else layout  # True: the rule's layout
            tokens = [skim_forward(m, strategy, b, prune=layout).tokens_per_layer for b in batches]
            sync()
            total = time.perf_counter() - began
        finally:
            for layer in m.bert.layers:
                del layer.forward
            if strategy is not None:
                del strategy.decide
        layer_flops = sum(flops.encoder_flops(cfg, t) for b in tokens for t in b.tolist())
        layers = (
            secs[name] * spent["layers"] / total
        )  # seconds in the layers, on the scale of the medians
        base = base or (layers, layer_flops)
        wall, flops_x = base[0] / layers, base[1] / layer_flops
        rows.append(
            [
                name,
                spent["layers"] / total,
                spent["deciding"] / total,
                1 - (spent["layers"] + spent["deciding"]) / total,
                wall,
                flops_x,
                wall / flops_x,
            ]
        )
    print_table(
        f"{title}, batch {B}: share of each setting's time in its layers, in deciding and "
        "elsewhere; "
        f"the layers' own speedups against the baseline's layers",
        [
            "setting",
            "layers",
            "deciding",
            "elsewhere",
            "layers wall×",
            "layers FLOPs×",
            "wall/FLOPs",
        ],
        rows,
        {**(meta or {}), "batch": B, "table": "split"},
    )


def layer_cost(bert: BertModel, rounds: int, device=torch.device("cpu"), dtype=torch.float32):
    """Why batch 1 gains less than its FLOPs: a layer's time against the tokens it sees.

    FLOPs fall in proportion to the tokens, time does not: every layer reads all its weights
    (7 MB for MiniLM) for however few rows, and small matmuls run far below peak. The layers run
    in turn, as in the model, so each one's weights have left the cache when it comes again."""
    C = bert.config.hidden_size
    sizes = (512, 256, 128, 64, 32, 16)
    inputs = {
        n: (torch.randn(n, C, device=device, dtype=dtype), VarLen(torch.tensor([n], device=device)))
        for n in sizes
    }
    settings = {
        n: lambda _, n=n: [layer(inputs[n][0], varlen=inputs[n][1]) for layer in bert.layers]
        for n in sizes
    }
    secs = interleaved(settings, [0] * 4, rounds, synchronizer(device))
    per_layer = {n: s / (4 * len(bert.layers)) for n, s in secs.items()}
    layer_flops = {n: sum(flops.layer_flops(bert.config, n).values()) for n in sizes}
    rows = [
        [
            str(n),
            per_layer[n] * 1e3,
            per_layer[n] / n * 1e6,
            layer_flops[n] / layer_flops[256],
            per_layer[n] / per_layer[256],
        ]
        for n in sizes
    ]
    print_table(
        f"one layer at batch 1, {str(dtype).removeprefix('torch.')}, {where(device)}, "
        f"median of {rounds} rounds",
        ["tokens", "ms per layer", "µs per token", "FLOPs vs 256 tokens", "time vs 256 tokens"],
        rows,
    )


# ----------------------------------------------------------------------------------------------
# Command line


def comma_list(kind, allowed: set | None = None):
    """An argparse type: 'a,b' -> [kind(a), kind(b)], each positive (numbers) or in `allowed`."""

    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected {kind.__name__} values separated by commas"
            )
        bad = [v for v in values if (v not in allowed if allowed else v <= 0)]
        if bad:
            need = f"one of {', '.join(sorted(allowed))}" if allowed else "positive"
            raise argparse.ArgumentTypeError(f"{text!r}: {bad[0]!r} is not {need}")
        return values

    return parse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("bench", choices=("encoder", "skim"))
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    parser.add_argument(
        "--device", default="cpu", help="cpu, or cuda / cuda:N: models and inputs on that GPU"
    )
    parser.add_argument("--json", help="also write every table to this JSON file")
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="timed rounds, tables show medians (default: 5 for encoder, 3 for skim)",
    )
    parser.add_argument(
        "--model",
        default=MINILM,
        help="all-MiniLM-L6-v2's folder or hub name (skim: any model's)",
    )
    parser.add_argument(
        "--random-model",
        choices=("all-MiniLM-L6-v2", "bert-base-uncased"),
        help="skim: time a model of this shape with random weights (speed only; --model still "
        "gives the tokenizer), e.g. bert-base-uncased, where a layer has more arithmetic to save",
    )
    parser.add_argument(
        "--dtype",
        choices=tuple(DTYPES),
        default="fp32",
        help="skim: the models' weights and states in this precision (checked against "
        "transformers in fp32 first)",
    )
    parser.add_argument(
        "--layouts",
        type=comma_list(str, {"auto", "packed", "grid"}),
        default="auto",
        help="skim: pruning's layouts to time each method in, comma-separated: auto (the rule of "
        "skim.inference_layout, as evaluation runs), packed, grid",
    )
    parser.add_argument(
        "--models",
        type=comma_list(str, {"MiniLM-L6", "bert-base"}),
        default="MiniLM-L6,bert-base",
        help="encoder: which models, comma-separated (MiniLM-L6: --model; bert-base: random)",
    )
    parser.add_argument(
        "--glue-dir",
        default=DATA and str(Path(DATA) / "glue"),
        help="folder holding SST-2/dev.tsv (default $SKIMBERT_DATA/glue, else the download cache)",
    )
    parser.add_argument(
        "--imdb-dir",
        default=DATA and str(Path(DATA) / "imdb"),
        help="folder holding aclImdb_test.tar.gz (default $SKIMBERT_DATA/imdb, else the cache)",
    )
    parser.add_argument(
        "--sets",
        type=comma_list(str, {"sst2", "imdb"}),
        default="sst2,imdb",
        help="skim: which dev sets to time, comma-separated (sst2, imdb)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=comma_list(int),
        default="1,32",
        help="skim: batch sizes, comma-separated",
    )
    parser.add_argument(
        "--sst2-examples", type=int, default=128, help="evenly spaced SST-2 dev sentences (0 = all)"
    )
    parser.add_argument(
        "--imdb-examples", type=int, default=64, help="evenly spaced IMDB test reviews (0 = all)"
    )
    parser.add_argument(
        "--transkimmer-keep",
        action="append",
        default=None,
        help="decision pattern: share of the tokens reaching each layer that it keeps, one "
        "value for every layer or one per layer (repeatable; default: 0.75 and 1,0.35,1,...,1: "
        "0.35 before layer 1)",
    )
    parser.add_argument(
        "--trbert-keep",
        action="append",
        default=None,
        help="the same at each policy layer (default: 0.5 and 0.4,1)",
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        help="also time the trained decisions of a train.py run folder (repeatable)",
    )
    parser.add_argument(
        "--method",
        action="append",
        default=[],
        help="the file.py:Class or module:Class of a --checkpoint run whose method is not built "
        "in: code is never loaded from what a run folder names (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        args.device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r}: expected cpu, cuda or cuda:N")
    if args.device.type not in ("cpu", "cuda"):
        parser.error(f"--device {args.device}: expected cpu, cuda or cuda:N")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}, but torch sees no CUDA GPU; use --device cpu")
    if args.random_model and args.checkpoint:
        parser.error("--checkpoint times a trained run with its own weights; leave out "
                     "--random-model, or time the random model without --checkpoint")  # fmt: skip
    args.rounds = args.rounds or (5 if args.bench == "encoder" else 3)
    if args.device.type == "cpu":  # on a GPU the CPU only launches work: torch's default
        torch.set_num_threads(args.threads)
    # each argument quoted where it would forge a line (a run folder's name, from a glob)
    command = "python bench.py " + " ".join(map(runs.shown, sys.argv[1:] if argv is None else argv))
    print(command)
    print(f"torch {torch.__version__}, {where(args.device)}, {args.dtype}, eval, no_grad")
    TABLES.clear()
    with torch.no_grad():
        bench_encoder(args) if args.bench == "encoder" else bench_skim(args)
    if args.json:
        cuda = args.device.type == "cuda"
        record = {
            "command": command,
            "bench": args.bench,
            "device": str(args.device),
            "device_name": torch.cuda.get_device_name(args.device) if cuda else "cpu",
            "threads": None if cuda else torch.get_num_threads(),
            "torch": torch.__version__,
            "rounds": args.rounds,
            "dtype": args.dtype,
            "tables": TABLES,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
