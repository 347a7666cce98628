"""Print one results-table row per train.py run folder, read from its results.json.

python benchmarks/summarize.py runs/sst2-minilm-*
python benchmarks/summarize.py --seeds runs/hard-*     one row per method: mean ± standard
                                                       deviation over runs named <name>-s<seed>
                                                       (of one task, method and depth)
python benchmarks/summarize.py --glue runs/glue-minilm-*
                                                       one row per run: the task's metric and the
                                                       FLOPs speedup under all three paddings
python benchmarks/summarize.py --pareto runs/pareto-*  the accuracy-against-speedup fronts of
                                                       benchmarks/pareto.sh: tables, figure and
                                                       records (benchmarks/fronts.py); the runs'
                                                       records are merged into those already in
                                                       benchmarks/results/pareto.json, whose
                                                       other runs keep theirs (a record is
                                                       named by its folder: two of one name
                                                       are refused); --short: the
                                                       README's form; --write PAGE...: into the
                                                       pages' <!-- pareto --> blocks too
python benchmarks/summarize.py --check docs/results.md which table rows no longer match their
                                                       runs' results.json (stale numbers), and
                                                       whether the fronts between the page's
                                                       <!-- pareto --> markers and the figure
                                                       match benchmarks/results/pareto.json; also
                                                       assignments/instructor/README.md

A run folder is data that anyone could have written: a results.json is read only if a regular
file, and refused in one line naming it unless its names can go into Markdown (no newline, none
of | < > [ ] `) and its numbers are possible (report.results_problem, which report.py and the
fronts share). The files --pareto writes are written atomically.
"""

import glob
import json
import os
import re
import stat
import statistics
import sys
from collections import defaultdict
from pathlib import Path

# report.py, at the repository's root: the one check of a run's names and numbers, which the
# pictures, these tables and the fronts' records share (standard library only, as this script)
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
import report  # noqa: E402

MAX_BYTES = 64 << 20  # a results.json is kB; weights.MAX_JSON_BYTES, the same cap


def read_capped(path: Path) -> bytes:
    """PATH's bytes, or one line naming the file and the fault: read only if a regular file (no
    link followed, no FIFO or device waited on) of at most MAX_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        raise SystemExit(f"error: {path}: cannot be read ({e.strerror}; a link is not followed)")
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
            raise SystemExit(f"error: {path} is not a regular file of at most {MAX_BYTES} bytes")
        return f.read(MAX_BYTES + 1)


def read_results(folder: Path) -> dict:
    """FOLDER/results.json as train.py writes it, or one line naming the file and the fault: read
    as read_capped reads, UTF-8 JSON, with the fields the tables use. (weights.read_json does the
    same for the rest of the project; this script keeps to the standard library, so it starts
    at once.)"""
    path = Path(folder) / "results.json"
    data = read_capped(path)
    try:
        r = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SystemExit(f"error: {path} is not UTF-8 JSON ({str(e)[:100]})") from None
    problem = _problem(r)
    if problem:
        raise SystemExit(f"error: {path}: {problem}; the file is not what train.py writes")
    return r


def _problem(r) -> str | None:
    """What is wrong with a results.json for the tables, or None: the fields they print are
    there, then report.results_problem, the check report.py and the fronts share: names fit for
    Markdown, shares in [0, 1], scores fractions in [0, 1] (correlations in [-1, 1]), speedups
    finite and possible (at least 0.5)."""
    if not isinstance(r, dict):
        return "not a JSON object"
    metrics, f = r.get("metrics"), r.get("flops")
    if not isinstance(metrics, dict) or "main" not in metrics:
        return "metrics has no main"
    paddings = ("none", "batch", "sequence")
    if not isinstance(f, dict) or not all(isinstance(f.get(p), dict) for p in paddings):
        return "flops lacks none, batch and sequence"
    if not all("speedup" in f[p] for p in paddings):
        return "a flops speedup is missing"
    problem = report.number_problem("flops.none.method_gflops", f["none"].get("method_gflops"),
                                    0, 1e6)  # fmt: skip
    if problem:
        return problem
    if not isinstance(r.get("method"), str) or "wall_time_s" not in r:
        return "wall_time_s (a number) or method (text) is missing"
    return (report.number_problem("wall_time_s", r["wall_time_s"], 0, 3e7)  # no run takes a year
            or report.results_problem(r))  # fmt: skip


def _cell(text: str) -> str:
    """A run's name as a table prints it: refused, in one line, unless fit for Markdown
    (report.plain): a newline in a folder's name would start a row of its own."""
    if not report.plain(text):
        what = f"a run's name that a table prints is {report.NOT_PLAIN}; rename the folder"
        raise SystemExit(f"error: {text[:200]!r}: {what}")
    return text


def _has_results(folder: Path) -> bool:
    """Whether FOLDER/results.json is there at all: a link or FIFO in its place counts (reading
    it then says what is wrong), rather than being skipped in silence."""
    return os.path.lexists(folder / "results.json")


def row(folder: Path) -> str:
    r = read_results(folder)
    flops = r["flops"]
    kept = " / ".join(f"{k:.2f}" for k in r["kept_per_layer"])
    return (
        f"| {_cell(folder.name)} | {100 * r['metrics']['main']:.2f} | "
        f"{flops['none']['method_gflops']:.3f} | "
        f"{flops['none']['speedup']:.2f}× | {flops['sequence']['speedup']:.2f}× | {kept} | "
        f"{r['wall_time_s'] / 60:.0f} min |"
    )


def _mean_sd(xs: list[float], unit: str = "") -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.2f} ± {sd:.2f}{unit}"


def seed_rows(folders: list[Path]) -> None:
    """Runs named <name>-s<seed> grouped by name: mean ± sd of the main metric, the FLOPs
    speedup without padding and the share of tokens per layer. The first cell is the group's
    glob, which --check reads back."""
    groups = defaultdict(list)
    for folder in folders:
        name = folder.parent / re.sub(r"-s\d+$", "", folder.name)
        groups[name].append(read_results(folder))
        _same_kind(groups[name], folder, name)
    print("| runs | seeds | dev (mean ± sd) | speedup, no padding | share of tokens per layer |")
    print("|---|---:|---:|---:|---|")
    for name, rs in groups.items():
        dev = _mean_sd([100 * r["metrics"]["main"] for r in rs])
        speed = _mean_sd([r["flops"]["none"]["speedup"] for r in rs], "×")
        layers = zip(*(r["kept_per_layer"] for r in rs))
        kept = " / ".join(f"{statistics.mean(k):.2f}" for k in layers)
        print(f"| `{_cell(str(name))}-s*` | {len(rs)} | {dev} | {speed} | {kept} |")


def _same_kind(rs: list[dict], folder: Path, name: Path) -> None:
    """The runs of one seed group (rs, `folder` the last) are seeds of one run: the same task,
    method and number of layers. Else their mean is of nothing (and zip would drop the layers
    one run lacks)."""
    first, last = rs[0], rs[-1]
    for what, of in (("task", lambda r: r["task"]), ("method", lambda r: r["method"]),
                     ("number of layers", lambda r: len(r["kept_per_layer"]))):  # fmt: skip
        if of(first) != of(last):
            raise SystemExit(f"error: {_shown(folder)}: its {what} is {of(last)}, not "
                             f"{of(first)} as the group's first: the runs {_shown(name)}-s* are "
                             "not seeds of one run (rename one)")  # fmt: skip


def glue_rows(folders: list[Path]) -> None:
    """One row per run: task, method, the task's main metric, the FLOPs speedup without padding,
    with batch padding and with sequence padding, the share of tokens per layer."""
    print("| run | task | method | metric | dev | speedup, no padding | batch padding | "
          "sequence padding | share of tokens per layer |")  # fmt: skip
    print("|---|---|---|---|---:|---:|---:|---:|---|")
    for folder in folders:
        r = read_results(folder)
        metrics = r["metrics"]  # the main one under its own name too (f1, pearson, ...)
        main = next((k for k, v in metrics.items() if k != "main" and v == metrics["main"]), "main")
        f = r["flops"]
        kept = " / ".join(f"{k:.2f}" for k in r["kept_per_layer"])
        speedups = " | ".join(f"{f[p]['speedup']:.2f}×" for p in ("none", "batch", "sequence"))
        print(f"| `{_cell(str(folder))}` | {r['task']} | {r['method']} | {main} | "
              f"{100 * r['metrics']['main']:.2f} | {speedups} | {kept} |")  # fmt: skip


def _shares(rs: list[dict]) -> str:
    """The share of tokens per layer as the tables write it: each layer's mean over the runs,
    or "all 1.00" where nothing was skimmed."""
    layers = [statistics.mean(k) for k in zip(*(r["kept_per_layer"] for r in rs))]
    return " / ".join(f"{k:.2f}" for k in layers)


def pareto(args: list[str]) -> None:
    """--pareto: records from run folders and records files, merged into those already in
    benchmarks/results/pareto.json, then the tables, figure, records; with --write PAGE..., the
    tables also replace those between each page's pareto markers. Every file is written
    atomically, and a link at its name is replaced, not written through."""
    import fronts

    pages = args[args.index("--write") + 1 :] if "--write" in args else []
    args = args[: args.index("--write")] if "--write" in args else args
    records = pareto_records([a for a in args if a != "--short"])
    short = "--short" in args  # the README's form: the best accuracies, no table of points
    pts = fronts.points(records)
    # everything is built before anything is written: a failure leaves every file as it was
    texts = {page: read_capped(page).decode("utf-8") for page in map(Path, pages)}
    figure = fronts.figure(pts)
    tables = {every: fronts.markdown(pts, every_point=every) for every in (True, False)}
    for page, text in texts.items():
        for marker, every in (("<!-- pareto -->", True), ("<!-- pareto short -->", False)):
            pattern = re.escape(marker) + r"\n.*?(?=<!-- /pareto -->)"
            text = re.sub(pattern, lambda m: f"{marker}\n{tables[every]}", text, flags=re.S)
        texts[page] = text
    write_atomically(fronts.RECORDS, json.dumps(records, indent=1, ensure_ascii=False) + "\n")
    write_atomically(fronts.FIGURE, figure)
    print(tables[not short], end="")
    print(f"wrote {fronts.FIGURE} and {fronts.RECORDS} ({len(records)} runs)", file=sys.stderr)
    for page, text in texts.items():
        write_atomically(page, text)
        print(f"wrote the fronts into {page}", file=sys.stderr)


def pareto_records(args: list[str]) -> list[dict]:
    """The records --pareto writes, sorted by run: of each run folder given; else of the first
    records file given that holds the run; else of benchmarks/results/pareto.json as it stands,
    so that runs not given keep their records (how many is said on stderr)."""
    import fronts

    def records_of(path: Path) -> dict:
        return {d["run"]: d for d in reversed(fronts.parse_records(read_capped(path), path))}

    kept = records_of(fronts.RECORDS) if os.path.lexists(fronts.RECORDS) else {}
    given = {}
    where = {}  # a record is named by its run's folder: two folders of one name would be one
    for arg in map(Path, args):
        if _has_results(arg):
            if arg.name in where:
                raise SystemExit(f"error: {_shown(where[arg.name])} and {_shown(arg)} have one "
                                 "name, which names a run's record: give one, or rename "
                                 "it")  # fmt: skip
            where[arg.name] = arg
            given[arg.name] = fronts.record(arg.name, read_results(arg))
        elif arg.suffix == ".json" and not arg.is_dir():
            given = {**records_of(arg), **given}  # a run folder, or an earlier file, wins
        else:
            print(f"skipped {_shown(arg)}: no results.json and not a records file", file=sys.stderr)
    if not given and not kept:
        raise SystemExit("error: --pareto found no finished run (results.json) and no records")
    old = sorted(kept.keys() - given.keys())
    if old:
        print(f"kept the records of {len(old)} runs not given, from {fronts.RECORDS} (to drop "
              "one, delete its record there)", file=sys.stderr)  # fmt: skip
    by_name = {**kept, **given}
    return [by_name[k] for k in sorted(by_name)]


def write_atomically(path: Path, text: str) -> None:
    """PATH replaced by TEXT in one step, or one line saying why not: weights.atomic_write, the
    project's write (a temporary file, then a rename; a link at PATH is replaced, its target left
    alone). Imported here: weights.py brings torch, which only --pareto's writes need."""
    from weights import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text.encode("utf-8"))
    except OSError as e:
        raise SystemExit(f"error: cannot write {path} ({e.strerror or e})") from None


def _shown(path: Path) -> str:
    """A path for one line of a message: as it is when printable, else quoted (\\n, not a
    line of its own)."""
    return str(path) if str(path).isprintable() else repr(str(path))


def check_pareto(page: Path) -> int:
    """The fronts between <!-- pareto --> (or <!-- pareto short -->) and <!-- /pareto --> in
    PAGE, and the figure, against benchmarks/results/pareto.json. Returns 1 if stale, else 0."""
    import fronts

    text = page.read_text()
    blocks = re.findall(r"<!-- pareto( short)? -->\n(.*?)<!-- /pareto -->", text, re.S)
    if not blocks:
        return 0
    pts = fronts.points(fronts.parse_records(read_capped(fronts.RECORDS), fronts.RECORDS))
    stale = 0
    for short, block in blocks:
        if block.strip() != fronts.markdown(pts, every_point=not short).strip():
            print(f"stale: {page.name}: the fronts do not match {fronts.RECORDS} (python "
                  "benchmarks/summarize.py --pareto runs/pareto-* benchmarks/results/pareto.json"
                  f" --write {page})")  # fmt: skip
            stale = 1
    if not fronts.FIGURE.exists() or fronts.FIGURE.read_text() != fronts.figure(pts):
        print(f"stale: {fronts.FIGURE.name} does not match {fronts.RECORDS.name}")
        stale = 1
    if not stale:
        print(f"ok: the fronts of {page.name} and {fronts.FIGURE.name}")
    return stale


def check(readme: Path) -> int:
    """Compare each table row of a markdown file whose command names a run (`sst2_minilm.sh NAME`
    -> runs/sst2-minilm-NAME, `--out-dir RUN`, or a `runs/...` cell, a glob of seeds) with that
    run's results.json: the dev cell, the speedup cells and the share of tokens per layer.
    Returns the number of stale rows."""
    header, stale = None, 0
    for line in readme.read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
            continue
        # the row's runs: `sst2_minilm.sh NAME`, `--out-dir RUN`, or a `runs/...` cell (a glob:
        # several runs are checked as mean ± sd, as --seeds prints them)
        found = (re.search(r"sst2_minilm\.sh ([\w-]+)", line)
                 or re.search(r"--out-dir (\S+?)`", line)
                 or re.search(r"`(runs/\S+?)`", line))  # fmt: skip
        value = next((k for k in ("dev acc.", "dev", "dev (mean ± sd)") if k in header), None)
        if not found or value is None:
            continue
        pattern = (f"runs/sst2-minilm-{found.group(1)}" if "sst2_minilm" in found.group(0)
                   else found.group(1))  # fmt: skip
        runs = [Path(p) for p in sorted(glob.glob(pattern)) if _has_results(Path(p))]
        if not runs:
            print(f"unchecked: {cells[0]}: no {pattern}/results.json (run the row's command)")
            continue
        rs = [read_results(run) for run in runs]
        dev = [100 * r["metrics"]["main"] for r in rs]
        speed = [r["flops"]["none"]["speedup"] for r in rs]
        if value == "dev (mean ± sd)":
            theirs = {value: _mean_sd(dev), "speedup, no padding": _mean_sd(speed, "×")}
        else:
            theirs = {value: f"{dev[0]:.2f}", "speedup, no padding": f"{speed[0]:.2f}×"}
            for column, padding in [("batch padding", "batch"), ("sequence padding", "sequence")]:
                theirs[column] = f"{rs[0]['flops'][padding]['speedup']:.2f}×"
        theirs["share of tokens per layer"] = _shares(rs)
        ours = {k: cells[header.index(k)] for k in theirs if k in header}
        if ours.get("share of tokens per layer") == "all 1.00":  # the tables' short form
            ours["share of tokens per layer"] = " / ".join(["1.00"] * len(rs[0]["kept_per_layer"]))
        if all(ours[k] == theirs[k] for k in ours):
            print(f"ok: {cells[0]}")
        else:
            stale += 1
            print(f"stale: {cells[0]}: {readme.name} {ours}, {pattern}/results.json {theirs}")
    return stale


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if len(sys.argv) > 1 else 2)
    if sys.argv[1] == "--check":  # one page or several
        if len(sys.argv) < 3:
            raise SystemExit("error: --check PAGE...: name the pages to check (docs/results.md)")
        stale = sum(check(Path(page)) + check_pareto(Path(page)) for page in sys.argv[2:])
        raise SystemExit(1 if stale else 0)
    known = ("--pareto", "--glue", "--seeds")
    if sys.argv[1].startswith("-") and sys.argv[1] not in known:
        raise SystemExit(f"error: no option {sys.argv[1]}; the options: {', '.join(known)}, "
                         "--check (--help says what each does)")  # fmt: skip
    if sys.argv[1] == "--pareto":
        pareto(sys.argv[2:])
        raise SystemExit(0)
    if sys.argv[1] == "--glue":
        glue_rows([Path(f) for f in sys.argv[2:] if _has_results(Path(f))])
        raise SystemExit(0)
    if sys.argv[1] == "--seeds":
        seed_rows([Path(f) for f in sys.argv[2:] if _has_results(Path(f))])
        raise SystemExit(0)
    print(
        "| run | dev | GFLOPs / example (no padding) | speedup, no padding | "
        "speedup, sequence padding | "
        "share of tokens per layer | wall time |"
    )
    print("|---|---:|---:|---:|---:|---|---:|")
    for name in sys.argv[1:]:
        folder = Path(name)
        if not _has_results(folder):
            print(
                f"skipped {_shown(folder)}: no results.json (not a train.py run folder, or not "
                "finished)",
                file=sys.stderr,
            )
            continue
        print(row(folder))
