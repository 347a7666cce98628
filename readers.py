"""Dataset files -> Examples: where each task's files are, and one reader per file layout.

The published layouts of Transkimmer Table 2's tasks and TR-BERT's long-text set: GLUE's TSV
files, IMDB's and 20 Newsgroups' folders of text files (or their archives), Yelp's CSV and SQuAD
v2.0's JSON. A task's files are looked for under --data-dir, else in the cache, else downloaded
into it once (`locate`). Every reader reads a file as hostile input: a malformed file is one
ValueError naming the file, the line and the fix. data.load_examples is the entry point (the
synthetic tasks are built in code: synthetic.py). Tests: tests/test_data.py.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from weights import download


@dataclass
class Example:
    """One labelled input as read from a file."""

    text_a: str  # the sentence, or the question (SQuAD)
    text_b: str | None  # the second sentence of a pair, or the context (SQuAD)
    label: int | float  # class id, score (regression), or 1 = has an answer (SQuAD)
    uid: str  # "file:line", the file name, or the SQuAD question id
    answers: tuple[tuple[str, int], ...] = ()  # SQuAD: (text, character start in text_b)
    keywords: tuple[bool, ...] | None = None  # synthetic tasks: per word, does it decide the label


def cache_root() -> Path:
    """Where downloaded datasets go: $SKIMBERT_CACHE/data, default ~/.cache/skimbert/data."""
    return (
        Path(os.environ.get("SKIMBERT_CACHE", Path.home() / ".cache" / "skimbert")).expanduser()
        / "data"
    )


def _layouts(task, split: str) -> list[str]:
    """Paths, relative to a data folder, that hold `split` in a published layout; the first found
    wins."""
    return {
        "glue": [f"{task.folder}/{split}.tsv"],
        "imdb": [f"aclImdb/{split}", f"aclImdb_{split}.tar.gz", "aclImdb_v1.tar.gz"],
        "yelp": [f"yelp_review_full_csv/{split}.csv"],
        "20news": [f"20news-bydate-{split}", "20news-bydate.tar.gz"],
        "squad2": [f"{split}-v2.0.json"],
    }[task.reader]


def _find(task, split: str, roots: list[Path]) -> Path | None:
    for root in roots:
        for rel in map(PurePosixPath, _layouts(task, split)):
            candidates = [root / rel]
            if (
                len(rel.parts) > 1 and root.name == rel.parts[0]
            ):  # data_dir is the task's own folder
                candidates.append(root.joinpath(*rel.parts[1:]))
            for path in candidates:
                if path.exists():
                    return path
    return None


def locate(task, split: str, data_dir: str | Path | None, fetch: bool) -> Path:
    """The file or folder holding `split`: under data_dir (or data_dir/<reader>), else in the cache,
    else downloaded there once from the task's public source (when `fetch`)."""
    cache = cache_root() / task.reader
    roots = (
        [Path(data_dir).expanduser() / task.reader, Path(data_dir).expanduser()] if data_dir else []
    ) + [cache]
    if (path := _find(task, split, roots)) is not None:
        return path
    url, expected = task.url.format(split=split), _layouts(task, split)[0]
    problem = (
        f"{task.name} {split}: not found (looked for {', '.join(str(r / expected) for r in roots)})"
    )
    if task.name == "mrpc":
        problem += (
            "; GLUE's MRPC download may hold only msr_paraphrase_{train,test}.txt: GLUE's "
            "download_glue_data.py splits them into train.tsv and dev.tsv with mrpc_dev_ids.tsv"
        )
    if not fetch:
        raise FileNotFoundError(problem)
    try:
        archive = download(url, cache / url.rsplit("/", 1)[1], desc=f"{task.name} data")
    except (RuntimeError, FileNotFoundError) as e:
        raise FileNotFoundError(
            f"{problem}; {e}. Then pass --data-dir FOLDER such that FOLDER/{expected} "
            f"exists (unpack a .zip or .tgz download first)"
        ) from None
    if archive.suffix == ".zip":  # GLUE: SST-2.zip holds SST-2/train.tsv, SST-2/dev.tsv, ...
        with zipfile.ZipFile(archive) as z:
            z.extractall(cache)
    elif archive.name == "yelp_review_full_csv.tgz":  # large and read often: unpack once
        with tarfile.open(archive) as t:
            t.extractall(cache, filter="data")
    if (path := _find(task, split, [cache])) is None:
        raise FileNotFoundError(f"{problem}; {url} did not provide it")
    if archive.suffix in (".zip", ".tgz"):
        archive.unlink()
    return path


def _label(task, value: str, where: str) -> int | float:
    if task.kind == "regression":
        try:
            score = float(value)
        except ValueError:
            raise ValueError(f"{where}: score {value!r} is not a number") from None
        if not math.isfinite(score):  # float() takes "nan" and "inf": no score to learn
            raise ValueError(f"{where}: score {value!r} is not a finite number")
        return score
    if value not in task.labels:
        raise ValueError(f"{where}: label {value!r} is not one of {task.labels}")
    return task.labels.index(value)


# Hostile input. Every reader turns the three ways a real file goes wrong into an error that names
# the file, the line and the fix, instead of a bare traceback from deep inside csv or a codec:
# * bytes that are not the expected encoding (a file saved as Latin-1 or Windows-1252);
# * an over-long field: the csv module refuses fields over csv.field_size_limit() characters
#   (131,072 by default). No text of these tasks comes near it (the longest GLUE line in
#   shared/data has 1,439 characters, reviews run to a few thousand), so we keep the limit (it is
#   process-wide, too): a longer field means a broken file (a quote left open in the Yelp CSV
#   swallows the lines after it; a TSV without line breaks is one huge line);
# * blank lines: editors and `echo >> file` leave one at the end, which is harmless and skipped;
#   a blank line with rows after it is more likely a damaged file and stays an error.


def _decode(raw: bytes, encoding: str, where: str) -> str:
    """`raw` decoded; else a ValueError naming `where`, the line and the offset of the first bad
    byte."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        before = raw[: e.start]
        # lines end at \n, \r or \r\n, as for the csv module's line numbers (open(newline=""))
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        name = "UTF-8" if encoding.startswith("utf-8") else encoding
        raise ValueError(
            f"{where}:{line}: byte {e.start} (0x{raw[e.start]:02x}) is not valid {name} "
            f"({e.reason}); save the file as {name}, e.g. `iconv -f cp1252 -t utf-8 OLD > NEW` "
            f"if it was written as Windows-1252"
        ) from None


def _rows(path: Path, encoding: str, **csv_options) -> Iterator[tuple[int, list[str]]]:
    """(line, row) for each record of a CSV or TSV file; `line` is where the record starts (a
    quoted field may run over several lines). Trailing blank lines are skipped; see above for what
    else is refused."""
    with open(path, encoding=encoding, newline="") as f:
        reader = csv.reader(f, **csv_options)
        end, blank = 0, None  # the line the last record ended on; the first blank line since
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return  # blank lines at the end of the file: fine
            except UnicodeDecodeError:  # find the bad byte's line and offset in the raw bytes
                _decode(path.read_bytes(), encoding, str(path))
                raise  # not reached: the same bytes fail again
            except csv.Error as e:
                where, span = f"{path}:{end + 1}", ""
                if reader.line_num > end + 1:
                    span = f" (the record runs on to line {reader.line_num})"
                if "field larger than field limit" not in str(e):
                    raise ValueError(f"{where}: {e}{span}") from None
                raise ValueError(
                    f"{where}: a field longer than {csv.field_size_limit():,} characters{span}, "
                    f"far longer than any text of this task: the file is damaged or not in the "
                    f"expected format (a quote left open? a file without line breaks?)"
                ) from None
            start, end = end + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):  # an empty or all-space line
                blank = blank or start
                continue
            if blank is not None:
                raise ValueError(
                    f"{path}:{blank}: blank line before more rows (line {start}); only blank "
                    f"lines at the end of a file are skipped: delete it"
                )
            yield start, row


def read_glue(task, split: str, path: Path) -> list[Example]:
    # quoting off: GLUE rows hold literal '"' characters (the reference readers do the same);
    # utf-8-sig drops MRPC's byte-order mark and changes nothing elsewhere
    rows = _rows(path, "utf-8-sig", delimiter="\t", quoting=csv.QUOTE_NONE)
    if isinstance(task.label_column, int):  # CoLA: no header, 4 columns
        width, columns = 4, [*task.text_columns, task.label_column]
    else:
        line, header = next(rows, (0, None))
        if header is None:
            raise ValueError(f"{path}: empty file (no header line)")
        missing = [c for c in (*task.text_columns, task.label_column) if c not in header]
        if missing:
            raise ValueError(f"{path}:{line}: header {header} lacks the columns {missing}")
        width = len(header)
        columns = [header.index(c) for c in (*task.text_columns, task.label_column)]
    examples = []
    for line, row in rows:
        where = f"{path}:{line}"
        if len(row) != width:
            raise ValueError(f"{where}: expected {width} tab-separated columns, got {len(row)}")
        texts = [row[c] for c in columns[:-1]]
        examples.append(
            Example(
                texts[0],
                texts[1] if len(texts) > 1 else None,
                _label(task, row[columns[-1]], where),
                f"{path.name}:{line}",
            )
        )
    return examples


def read_folders(task, split: str, path: Path) -> list[Example]:
    """IMDB and 20News: one text per file, <split folder>/<label>/<file>, from a folder or a
    tarball."""
    split_dir = split if task.reader == "imdb" else f"20news-bydate-{split}"
    encoding = "utf-8" if task.reader == "imdb" else "latin-1"  # 20News posts predate UTF-8

    def wanted(name: str) -> bool:  # skips IMDB's unlabelled train/unsup and the README files
        parts = PurePosixPath(name).parts
        return len(parts) >= 3 and parts[-3] == split_dir and parts[-2] in task.labels

    if path.is_dir():
        files = [
            (p.as_posix(), p.read_bytes(), str(p))
            for p in path.rglob("*")
            if p.is_file() and wanted(p.as_posix())
        ]
    else:
        with tarfile.open(path) as tar:  # streamed in archive order, sorted below
            files = [
                (m.name, tar.extractfile(m).read(), f"{path} member {m.name}")
                for m in tar
                if m.isfile() and wanted(m.name)
            ]
    files.sort()
    # Latin-1 decodes any byte, so only IMDB can fail here; each file is one text, so neither
    # long lines nor blank lines are a problem
    return [
        Example(
            _decode(raw, encoding, where),
            None,
            task.labels.index(PurePosixPath(name).parts[-2]),
            "/".join(PurePosixPath(name).parts[-3:]),
        )
        for name, raw, where in files
    ]


def read_yelp(task, split: str, path: Path) -> list[Example]:
    examples = []
    for line, row in _rows(path, "utf-8"):  # a quoted CSV: "label","text"
        where = f"{path}:{line}"
        if len(row) != 2:
            raise ValueError(f"{where}: expected 2 columns (label, text), got {len(row)}")
        # the CSV writes a review's line breaks as the two characters \n
        examples.append(
            Example(
                row[1].replace("\\n", "\n"),
                None,
                _label(task, row[0], where),
                f"{path.name}:{line}",
            )
        )
    return examples


def read_squad(task, split: str, path: Path) -> list[Example]:
    # JSON allows whitespace (blank lines included) around the value and has no field limit
    text = _decode(path.read_bytes(), "utf-8", str(path))
    try:
        articles = json.loads(text)["data"]
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
    except (KeyError, TypeError):
        raise ValueError(f'{path}: not a SQuAD json file (no top-level "data" list)') from None
    try:
        return [
            Example(
                qa["question"],
                p["context"],
                int(not qa.get("is_impossible", False)),
                qa["id"],
                tuple((a["text"], a["answer_start"]) for a in qa["answers"]),
            )
            for article in articles
            for p in article["paragraphs"]
            for qa in p["qas"]
        ]
    except (KeyError, TypeError) as e:
        raise ValueError(
            f"{path}: not a SQuAD v2 json file: an entry lacks the field {e} (each article needs "
            f"paragraphs, each paragraph context and qas, each question id, question, answers)"
        ) from None


# which reader reads each Task.reader
READERS = {
    "glue": read_glue,
    "imdb": read_folders,
    "20news": read_folders,
    "yelp": read_yelp,
    "squad2": read_squad,
}
