"""Data for the experiments: tokeniser, task registry, dataset readers, batching, metrics, SQuAD v2.

The tasks are those of Transkimmer Table 2 (Guan et al., ACL 2022, https://arxiv.org/abs/2205.07324)
and TR-BERT's long-text set (Ye et al., NAACL 2021, https://arxiv.org/abs/2105.11618): GLUE, IMDB,
Yelp review full, 20 Newsgroups and SQuAD v2.0, plus three tasks of ours that are built in code,
run offline and know which tokens decide the label: `synthetic`, where each keyword decides on its
own; `synthetic-hard`, where whether a keyword decides depends on the review's first word, so a
skimmer must read context to keep the right tokens; and `synthetic-negation`, where "not" before a
keyword turns its vote, so the answer cannot be read from the bag of words (for a pre-trained
checkpoint: a tiny random BERT does not learn it).

Flow: `load_tokenizer` -> `load_examples` (local folder, else cache, else one download) -> `encode`
(fixed-length features; SQuAD contexts cut into overlapping windows) -> `batch_indices` + `collate`
(three padding settings: "sequence", "batch", "none") -> model -> `compute_metrics` (or
`squad_predictions` then `compute_metrics` for SQuAD). Texts are kept exactly as in the files (the
trailing space of SST-2 included: the tokeniser drops whitespace). Checked by tests/test_data.py.

Shapes: B batch, T padded tokens, N examples or features.
"""

from __future__ import annotations

import collections
import csv
import json
import math
import os
import random
import re
import string
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from weights import download, read_json

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PADDINGS = ("sequence", "batch", "none")


# ----------------------------------------------------------------------------------------------
# Tokeniser: BERT's uncased WordPiece, built from vocab.txt with the `tokenizers` library


def load_tokenizer(model_dir: str | Path, max_length: int = 512) -> Tokenizer:
    """BERT's tokeniser from `model_dir/vocab.txt` (and `tokenizer_config.json` when present).

    Normalise (clean control characters, space out CJK characters, lower-case and strip accents as
    the config says) -> split on whitespace and punctuation -> WordPiece (greedy longest match,
    words over 100 characters become [UNK]) -> add [CLS] a [SEP] (b [SEP]) with token types 0 (a),
    1 (b).
    Encodings are truncated to `max_length` tokens, specials included (`encode` uses the task's).
    """
    vocab_file = Path(model_dir) / "vocab.txt"
    if not vocab_file.is_file():
        raise FileNotFoundError(
            f"{vocab_file} not found: load_tokenizer needs a BERT checkpoint folder "
            f"holding vocab.txt (one token a line), or one made by write_synthetic_vocab"
        )
    try:
        with open(vocab_file, encoding="utf-8") as f:
            vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
    except UnicodeDecodeError as e:
        raise ValueError(f"{vocab_file}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    missing = [t for t in SPECIAL_TOKENS[1:4] if t not in vocab]
    if missing:
        raise ValueError(f"{vocab_file} lacks the special tokens {missing}")
    config_file = vocab_file.with_name("tokenizer_config.json")
    # read as any folder's file is (weights.read_json: bounded, one error naming it)
    config = read_json(config_file, links=True) if config_file.is_file() else {}
    flags = {"do_lower_case": (bool,), "tokenize_chinese_chars": (bool,),
             "strip_accents": (bool, type(None))}  # fmt: skip
    if not isinstance(config, dict) or not all(
        isinstance(config[k], kinds) for k, kinds in flags.items() if k in config
    ):
        raise ValueError(
            f"{config_file}: not a JSON object of tokenizer settings (do_lower_case and "
            "tokenize_chinese_chars true or false, strip_accents also null)"
        )
    lower = config.get("do_lower_case", True)  # all our checkpoints are uncased
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    # strip_accents=None means "strip when lower-casing", as in BERT's BasicTokenizer
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"),
        lowercase=lower,
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = ("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[cls, sep],
    )
    # a literal "[SEP]" in a text maps to the special token, as in the reference tokenisers
    tok.add_special_tokens([t for t in SPECIAL_TOKENS if t in vocab])
    # pairs lose tokens from the longer text first; an odd last token goes to the longer one, as in
    # BertTokenizerFast (Google's _truncate_seq_pair gives it to the first text)
    tok.enable_truncation(max_length, strategy="longest_first")
    return tok


# ----------------------------------------------------------------------------------------------
# Tasks by name


@dataclass(frozen=True)
class Task:
    """One task: what to read, how long its inputs are and how it is scored."""

    name: str
    kind: str  # "classification" | "regression" | "span"
    labels: tuple[str, ...]  # label strings as written in the files; class id = position
    max_length: int  # tokens per input, specials included (Transkimmer Table 2)
    skim_weight: float  # harmony coefficient λ of Transkimmer Eq. (7), from its Table 2
    metrics: tuple[str, ...]
    main_metric: str
    text_columns: tuple[str | int, ...]  # header names (or indices, CoLA has no header)
    label_column: str | int
    reader: str  # which reader below: glue, imdb, yelp, 20news, squad2, synthetic
    splits: tuple[str, ...] = ("train", "dev")  # the ones after "train" are evaluation splits
    folder: str = ""  # GLUE task folder (SST-2, ...)
    url: str = ""  # public source; "{split}" is filled in for SQuAD

    @property
    def num_labels(self) -> int:
        """Output width: classes, 1 for regression, 2 (start, end) for spans."""
        return {"regression": 1, "span": 2}.get(self.kind, len(self.labels))


GLUE_URL = "https://dl.fbaipublicfiles.com/glue/data/{}.zip"
NEWSGROUPS = tuple(
    """alt.atheism comp.graphics comp.os.ms-windows.misc comp.sys.ibm.pc.hardware
comp.sys.mac.hardware comp.windows.x misc.forsale rec.autos rec.motorcycles rec.sport.baseball
rec.sport.hockey sci.crypt sci.electronics sci.med sci.space soc.religion.christian
talk.politics.guns talk.politics.mideast talk.politics.misc talk.religion.misc""".split()
)  # the 20 folders, sorted
_NLI = ("entailment", "not_entailment")
_ACC, _F1_ACC = ("accuracy",), ("f1", "accuracy")


def _glue(
    name,
    folder,
    texts,
    label,
    labels,
    max_length,
    skim_weight,
    metrics=_ACC,
    main="accuracy",
    kind="classification",
    splits=("train", "dev"),
):
    return Task(
        name,
        kind,
        labels,
        max_length,
        skim_weight,
        metrics,
        main,
        texts,
        label,
        "glue",
        splits,
        folder,
        GLUE_URL.format(folder),
    )


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        _glue("cola", "CoLA", (3,), 1, ("0", "1"), 64, 0.3, ("matthews",), "matthews"),
        _glue("sst2", "SST-2", ("sentence",), "label", ("0", "1"), 64, 0.3),
        # MRPC and QQP report F1 and accuracy; Transkimmer Table 3 shows F1 for MRPC, accuracy
        # for QQP
        _glue(
            "mrpc",
            "MRPC",
            ("#1 String", "#2 String"),
            "Quality",
            ("0", "1"),
            128,
            0.5,
            _F1_ACC,
            "f1",
        ),
        _glue(
            "qqp", "QQP", ("question1", "question2"), "is_duplicate", ("0", "1"), 128, 0.2, _F1_ACC
        ),
        _glue(
            "stsb",
            "STS-B",
            ("sentence1", "sentence2"),
            "score",
            (),
            64,
            0.3,
            ("pearson", "spearman"),
            "pearson",
            kind="regression",
        ),
        _glue(
            "mnli",
            "MNLI",
            ("sentence1", "sentence2"),
            "gold_label",
            ("entailment", "neutral", "contradiction"),
            128,
            0.2,
            splits=("train", "dev_matched", "dev_mismatched"),
        ),
        _glue("qnli", "QNLI", ("question", "sentence"), "label", _NLI, 128, 0.1),
        _glue("rte", "RTE", ("sentence1", "sentence2"), "label", _NLI, 256, 0.8),
        _glue("wnli", "WNLI", ("sentence1", "sentence2"), "label", ("0", "1"), 128, 0.5),
        # IMDB, Yelp and 20News have no dev set: the papers evaluate on test
        Task(
            "imdb",
            "classification",
            ("neg", "pos"),
            512,
            0.5,
            _ACC,
            "accuracy",
            ("text",),
            "folder",
            "imdb",
            ("train", "test"),
            url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
        ),
        Task(
            "yelp",
            "classification",
            ("1", "2", "3", "4", "5"),
            512,
            0.5,
            _ACC,
            "accuracy",
            (1,),
            0,
            "yelp",
            ("train", "test"),
            url="https://s3.amazonaws.com/fast-ai-nlp/yelp_review_full_csv.tgz",
        ),
        Task(
            "20news",
            "classification",
            NEWSGROUPS,
            512,
            0.5,
            _ACC,
            "accuracy",
            ("text",),
            "folder",
            "20news",
            ("train", "test"),
            url="http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz",
        ),
        Task(
            "squad2",
            "span",
            (),
            384,
            0.8,
            ("exact", "f1"),
            "f1",
            ("question", "context"),
            "answers",
            "squad2",
            url="https://rajpurkar.github.io/SQuAD-explorer/dataset/{split}-v2.0.json",
        ),
        # ours, not the papers': λ 0.5 like the middle of Table 2, and 64 tokens, which cover the
        # longest input of each: synthetic 62, synthetic-hard 51 (49 words + [CLS] [SEP]),
        # synthetic-negation 61. Which words decide: synthetic_hard_rule, synthetic_negation_rule
        *(
            Task(
                name,
                "classification",
                ("negative", "positive"),
                64,
                0.5,
                _ACC,
                "accuracy",
                ("text",),
                "keywords",
                "synthetic",
            )
            for name in ("synthetic", "synthetic-hard", "synthetic-negation")
        ),
    ]
}


def get_task(name: str | Task) -> Task:
    """The registered task `name` ("SST-2", "sst2" and "sst_2" all work, as do "synthetic-hard"
    and "synthetic_hard")."""
    if isinstance(name, Task):
        return name

    def key(name: str) -> str:
        return name.lower().replace("-", "").replace("_", "")

    found = [task for task in TASKS.values() if key(task.name) == key(name)]
    if not found:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return found[0]


# ----------------------------------------------------------------------------------------------
# Examples and where they come from: data_dir, else the cache, else one download into the cache


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


def _layouts(task: Task, split: str) -> list[str]:
    """Paths, relative to a data folder, that hold `split` in a published layout; the first found
    wins."""
    return {
        "glue": [f"{task.folder}/{split}.tsv"],
        "imdb": [f"aclImdb/{split}", f"aclImdb_{split}.tar.gz", "aclImdb_v1.tar.gz"],
        "yelp": [f"yelp_review_full_csv/{split}.csv"],
        "20news": [f"20news-bydate-{split}", "20news-bydate.tar.gz"],
        "squad2": [f"{split}-v2.0.json"],
    }[task.reader]


def _find(task: Task, split: str, roots: list[Path]) -> Path | None:
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


def _locate(task: Task, split: str, data_dir: str | Path | None, fetch: bool) -> Path:
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


def load_examples(
    task: str | Task, split: str, data_dir: str | Path | None = None, *, fetch: bool = True
) -> list[Example]:
    """All examples of `split`, in file order (folders and archives: sorted by path).

    data_dir may hold the published layout (glue/SST-2/train.tsv, SST-2/train.tsv, or be SST-2/
    itself; imdb/aclImdb_train.tar.gz, aclImdb/, ...). What is not there comes from the cache, or is
    downloaded into it once (unless `fetch` is False).

    Malformed input stops with an error naming the file, the line and the problem: a row with the
    wrong number of columns, a label outside the task's label set, an empty file, bytes that are
    not UTF-8 (with their offset), a field too long for the csv module, a blank line before more
    rows (blank lines at the end of a file are skipped).
    """
    task = get_task(task)
    if split not in task.splits:
        raise ValueError(f"{task.name} has splits {task.splits}, not {split!r}")
    if task.reader == "synthetic":
        make, sizes = SYNTHETIC[task.name]
        return make(sizes[split], seed=task.splits.index(split))
    path = _locate(task, split, data_dir, fetch)
    examples = {
        "glue": _read_glue,
        "imdb": _read_folders,
        "20news": _read_folders,
        "yelp": _read_yelp,
        "squad2": _read_squad,
    }[task.reader](task, split, path)
    if not examples:
        raise ValueError(f"{path}: no {split} examples in it (empty file or folder?)")
    return examples


def _label(task: Task, value: str, where: str) -> int | float:
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


def _read_glue(task: Task, split: str, path: Path) -> list[Example]:
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


def _read_folders(task: Task, split: str, path: Path) -> list[Example]:
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


def _read_yelp(task: Task, split: str, path: Path) -> list[Example]:
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


def _read_squad(task: Task, split: str, path: Path) -> list[Example]:
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


# ----------------------------------------------------------------------------------------------
# The synthetic tasks: filler words with a few keywords hidden among them; the keywords decide.
# `synthetic`: whether a word decides can be read from the word alone, so every learned skimmer
# reaches the best kept set ([CLS] + keywords). `synthetic-hard`: whether a keyword decides
# depends on the review's first word, so skimmers can differ (see synthetic_hard_rule).


POSITIVE = ("good", "great", "nice", "fine", "happy", "superb")
NEGATIVE = ("bad", "awful", "poor", "sad", "ugly", "dull")
FILLER = tuple(
    """the a an of to in on at by for with from and or but as is was are were be been it
this that these those he she they we you i my your his her our their there here then now when where
which who what how all some any each few more most other such only own same so than too very can
will just also into over under after before about again once up down out off if""".split()
)
# synthetic-hard: a review judges two aspects of a restaurant, each with its own keywords
ASPECTS = {
    "food": (("tasty", "fresh", "crisp"), ("bland", "stale", "soggy")),
    "service": (("friendly", "quick", "polite"), ("rude", "slow", "careless")),
}
HARD_WORDS = tuple(ASPECTS) + tuple(w for keys in ASPECTS.values() for half in keys for w in half)
# synthetic-negation: "not" directly before a keyword turns its vote around
NEGATOR = "not"


def write_synthetic_vocab(folder: str | Path, task: str | Task = "synthetic") -> Path:
    """Write the vocab.txt of a synthetic task into `folder` ([PAD] = 0); returns `folder`.
    `load_tokenizer(folder)` then works offline, with one token per synthetic word.

    `synthetic` has 99 tokens; `synthetic-hard` adds its 14 words (HARD_WORDS) at the end, so the
    first 99 ids are the same in both. They are kept apart because a random model's embedding
    table has a row per token: more rows would change the random initialisation, and so the
    results, of every `synthetic` run (the smoke preset's included).
    """
    task = get_task(task)
    if task.reader != "synthetic":
        raise ValueError(
            f"write_synthetic_vocab: {task.name} is not a synthetic task; use a checkpoint's "
            f"vocab.txt (--model) for it"
        )
    words = SPECIAL_TOKENS + POSITIVE + NEGATIVE + FILLER
    if task.name == "synthetic-hard":
        words += HARD_WORDS
    if task.name == "synthetic-negation":
        words += (NEGATOR,)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", "utf-8")
    return folder


def synthetic_examples(n: int, seed: int = 0) -> list[Example]:
    """`n` sentences of 8 to 60 filler words hiding 1 or 3 keywords; label 1 iff most are positive.

    Labels are balanced in expectation; `Example.keywords` marks the words that decide the label,
    so a test can check that skimming keeps them.
    """
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(8, 60))]
        label = rng.randint(0, 1)
        winners, losers = (POSITIVE, NEGATIVE) if label else (NEGATIVE, POSITIVE)
        # an odd number of keywords, so there is never a tie
        keys = [rng.choice(winners)] + rng.choice(
            [[], [rng.choice(winners), rng.choice(winners + losers)]]
        )
        places = rng.sample(range(len(words)), len(keys))
        for place, key in zip(places, keys):
            words[place] = key
        examples.append(
            Example(
                " ".join(words),
                None,
                label,
                f"synthetic:{seed}:{i}",
                keywords=tuple(j in places for j in range(len(words))),
            )
        )
    return examples


def synthetic_hard_rule(words: Sequence[str]) -> tuple[int | None, tuple[bool, ...]]:
    """The rule of `synthetic-hard`: (label, deciding) for a list of words; label None on a tie.

    The first word names the aspect asked about ("food" or "service", ASPECTS). Each keyword of
    that aspect votes +1 (positive) or -1 (negative); keywords of the other aspect do not vote.
    The label is 1 iff the votes sum to more than 0. `deciding` marks, per word, the aspect word
    and the keywords of its aspect: the label is a function of those words alone, and keeping
    [CLS] and them is the best kept set. Whether a keyword decides is not a property of the
    keyword: "rude" decides in a review asked about the service and is noise in one asked about
    the food, so a skimmer must read the aspect word to know.
    """
    if not words or words[0] not in ASPECTS:
        raise ValueError(f"a synthetic-hard text starts with one of {tuple(ASPECTS)}: {words[:3]}")
    positive, negative = ASPECTS[words[0]]
    votes = sum((w in positive) - (w in negative) for w in words)
    deciding = tuple(j == 0 or w in positive or w in negative for j, w in enumerate(words))
    return (None if votes == 0 else int(votes > 0)), deciding


def synthetic_hard_examples(n: int, seed: int = 0) -> list[Example]:
    """`n` reviews for `synthetic-hard`: an aspect word, then 16 to 48 words; see the rule.

    Each aspect gets 1, 3 or 5 keywords with a majority, its verdict; the asked aspect's verdict
    is the label (balanced), the other's is drawn independently, so a model that counts every
    keyword is right only 3 times in 4 (0.75 on these sets) and must learn to read the aspect
    word. Keywords sit at random places among filler words. On average 4 of ~33 words decide
    (12%), and 7 are aspect words or keywords: a skimmer that judges each token alone keeps about
    1.7 times the best kept set. `Example.keywords` marks the deciding words.

    Measured: a random BERT of shape "tiny4" (4 layers, width 32) fine-tuned by train.py (baseline,
    all 8000 examples, 5 epochs, batch 16, lr 1e-3, one CPU thread) reaches dev accuracy 1.0 in
    about a minute (lr 3e-3, the smoke preset's, is unstable at 4 layers). On that model, before
    layer 0 or 1, keeping [CLS] and the deciding words (14% of the tokens) gives 0.99 or more, as
    many random tokens 0.60, every aspect word and keyword (23%) 0.999.

    Why an aspect word and not negation ("not good" flips "good", a context of one neighbour):
    a tiny random BERT learns a relation between words by their content in a few hundred steps,
    but a relation between neighbours must come from its learned position embeddings, and in our
    runs (4 layers, width 32 or 64, one CPU thread, up to 100 s) it stayed near the accuracy of
    ignoring the negators (0.70 to 0.80), nor did it learn that a keyword directly followed by
    "but" does not count (0.85, no better than counting it). Negation is `synthetic-negation`,
    for a pre-trained checkpoint. The price of the aspect word: it is one word the first layer's
    [CLS] can read with the keywords, so this task's answer can be gathered in one layer.
    """
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        asked, label = rng.choice(tuple(ASPECTS)), rng.randint(0, 1)
        words = [rng.choice(FILLER) for _ in range(rng.randint(16, 48))]
        keys = []
        for aspect in ASPECTS:
            verdict = label if aspect == asked else rng.randint(0, 1)
            winners, losers = ASPECTS[aspect][::-1] if verdict == 0 else ASPECTS[aspect]
            # 1, 3 or 5 keywords, more than half of them winners, so there is never a tie
            count = rng.choice((1, 3, 5))
            keys += [rng.choice(winners) for _ in range(count // 2 + 1)]
            keys += [rng.choice(winners + losers) for _ in range(count // 2)]
        for place, key in zip(rng.sample(range(len(words)), len(keys)), keys):
            words[place] = key
        words = [asked] + words
        got, deciding = synthetic_hard_rule(words)
        assert got == label, (words, label)  # the rule and the draw agree by construction
        examples.append(
            Example(" ".join(words), None, label, f"synthetic-hard:{seed}:{i}", keywords=deciding)
        )
    return examples


def synthetic_negation_rule(words: Sequence[str]) -> tuple[int | None, tuple[bool, ...]]:
    """The rule of `synthetic-negation`: (label, deciding) for a list of words; None on a tie.

    Each keyword votes +1 (POSITIVE) or -1 (NEGATIVE), and NEGATOR ("not") directly before it
    turns the vote around: "not bad" votes +1. The label is 1 iff the votes sum to more than 0.
    `deciding` marks the keywords and every "not" that directly precedes one.
    """
    votes, deciding = 0, [False] * len(words)
    for j, w in enumerate(words):
        if w in POSITIVE or w in NEGATIVE:
            negated = j > 0 and words[j - 1] == NEGATOR
            votes += (1 if w in POSITIVE else -1) * (-1 if negated else 1)
            deciding[j] = True
            if negated:
                deciding[j - 1] = True
    return (None if votes == 0 else int(votes > 0)), tuple(deciding)


def synthetic_negation_examples(n: int, seed: int = 0) -> list[Example]:
    """`n` reviews for `synthetic-negation`: 24 to 56 filler words hiding one positive and one
    negative keyword, exactly one of them negated ("good ... not bad" is positive, "not good ...
    bad" negative); the label is the rule's (synthetic_negation_rule).

    Every review holds the same kinds of words (one "not", one positive and one negative
    keyword, fillers), drawn whatever the label, so the bag of words says nothing about the label:
    only which keyword the "not" stands before does. One attention layer reads a weighted sum of
    the words (plus their positions), which loses that pairing, so [CLS] cannot gather the answer
    in the first layer; a word must first read its neighbour (is "not" before me?), and then
    [CLS] must read that word. A skimmer that drops the keywords after the first layer leaves
    nothing to read.

    A random model has no reason to start looking at neighbours (no signal in the bag of words):
    `train.py --method baseline --task synthetic-negation --model random-tiny4 --epochs 5
    --batch-size 16 --lr 1e-3` ends at dev accuracy 0.501. So the task is for a pre-trained
    checkpoint, which reads "not bad" from the start: the `negation` preset of train.py
    (all-MiniLM-L6-v2, one epoch, dev accuracy 1.0 in about 3 minutes on one CPU core).
    """
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        label, words = rng.randint(0, 1), [rng.choice(FILLER) for _ in range(rng.randint(24, 56))]
        kept = [rng.choice(POSITIVE if label else NEGATIVE)]  # the keyword that is not negated
        negated = [NEGATOR, rng.choice(NEGATIVE if label else POSITIVE)]
        units = [kept, negated]
        rng.shuffle(units)
        # two places among the fillers (the second after the first), the units go in there
        first, second = sorted(rng.sample(range(len(words) + 1), 2))
        words = words[:first] + units[0] + words[first:second] + units[1] + words[second:]
        got, deciding = synthetic_negation_rule(words)
        assert got == label, (words, label)  # the rule and the draw agree by construction
        examples.append(
            Example(
                " ".join(words), None, label, f"synthetic-negation:{seed}:{i}", keywords=deciding
            )
        )
    return examples


# the tasks built in code: generator and examples per split (the seed is the split's position)
SYNTHETIC = {
    "synthetic": (synthetic_examples, {"train": 2000, "dev": 500}),
    "synthetic-hard": (synthetic_hard_examples, {"train": 8000, "dev": 1000}),
    "synthetic-negation": (synthetic_negation_examples, {"train": 4000, "dev": 1000}),
}


# ----------------------------------------------------------------------------------------------
# Features: token ids per input; SQuAD contexts cut into overlapping windows


@dataclass(eq=False)
class Feature:
    """One model input. Arrays are (T,) with T ≤ the task's max length, specials included."""

    input_ids: np.ndarray  # int32
    token_type_ids: np.ndarray  # int8: 0 first text, 1 second
    label: int | float
    example_index: int  # which Example this came from (SQuAD: several windows per example)
    feature_index: int = 0  # position in the list `encode` returned
    start_position: int = 0  # SQuAD: answer tokens in this window; 0 = [CLS] = no answer here
    end_position: int = 0
    offsets: np.ndarray | None = None  # SQuAD: (T, 2) character span in the context, -1 elsewhere
    keyword_mask: np.ndarray | None = None  # synthetic tasks: (T,) int8, 1 = a deciding word

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(
    task: str | Task,
    examples: Sequence[Example],
    tokenizer: Tokenizer,
    max_length: int | None = None,
    doc_stride: int = 128,
    max_query_length: int = 64,
) -> list[Feature]:
    """Tokenise `examples` into features of at most `max_length` tokens (default: the task's).
    For SQuAD, see `_encode_spans`. The tokeniser's own truncation setting is restored
    afterwards."""
    task, previous = get_task(task), tokenizer.truncation
    try:
        if task.kind == "span":
            tokenizer.no_truncation()
            return _encode_spans(
                examples, tokenizer, max_length or task.max_length, doc_stride, max_query_length
            )
        tokenizer.enable_truncation(max_length or task.max_length, strategy="longest_first")
        encodings = tokenizer.encode_batch(
            [e.text_a if e.text_b is None else (e.text_a, e.text_b) for e in examples]
        )
    finally:
        if previous:
            tokenizer.enable_truncation(**previous)
        else:
            tokenizer.no_truncation()
    if task.reader == "synthetic":  # every word is in the vocabulary that write_synthetic_vocab
        # writes; an [UNK] means another task's was used, and the deciding words would all be
        # [UNK]: a model would train to chance without saying why
        unk = tokenizer.token_to_id("[UNK]")
        for ex, enc in zip(examples, encodings):
            if unk in enc.ids:
                word = ex.text_a.split()[enc.word_ids[enc.ids.index(unk)]]
                raise ValueError(
                    f"{task.name} example {ex.uid}: the word {word!r} is not in the tokeniser's "
                    f"vocabulary; write it with data.write_synthetic_vocab(folder, {task.name!r})"
                )
    features = []
    for i, (ex, enc) in enumerate(zip(examples, encodings)):
        keyword_mask = None
        if ex.keywords is not None:  # word_ids: which word a token came from (None for specials)
            keyword_mask = np.array(
                [w is not None and ex.keywords[w] for w in enc.word_ids], np.int8
            )
        features.append(
            Feature(
                np.array(enc.ids, np.int32),
                np.array(enc.type_ids, np.int8),
                ex.label,
                i,
                i,
                keyword_mask=keyword_mask,
            )
        )
    return features


def _encode_spans(
    examples: Sequence[Example],
    tokenizer: Tokenizer,
    max_length: int,
    doc_stride: int,
    max_query_length: int,
) -> list[Feature]:
    """[CLS] question [SEP] window of the context [SEP], one feature per window.

    Windows start every `doc_stride` context tokens (as in BERT's run_squad.py: a step, not an
    overlap) until one reaches the end.
    The answer is marked where it lies wholly inside a window; elsewhere, and for unanswerable
    questions, start = end = 0, the [CLS] token (TR-BERT App. A: "a span of [0, 0]").
    """
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    questions = tokenizer.encode_batch([e.text_a for e in examples], add_special_tokens=False)
    contexts = tokenizer.encode_batch([e.text_b for e in examples], add_special_tokens=False)
    features = []
    for i, (ex, q, c) in enumerate(zip(examples, questions, contexts)):
        q_ids, c_offsets = q.ids[:max_query_length], np.array(c.offsets, np.int32).reshape(-1, 2)
        room = max_length - len(q_ids) - 3  # context tokens per window
        assert room > 0, f"max_length {max_length} leaves no room for the context"
        answer = None
        if ex.answers:  # the first gold answer is the training target
            text, char_start = ex.answers[0]
            char_end = char_start + len(text)
            inside = np.flatnonzero((c_offsets[:, 1] > char_start) & (c_offsets[:, 0] < char_end))
            answer = (inside[0], inside[-1]) if len(inside) else None
        start = 0
        while True:
            end = min(start + room, len(c.ids))
            head = len(q_ids) + 2  # token position of the window's first context token
            offsets = np.full((head + end - start + 1, 2), -1, np.int32)  # (T, 2)
            offsets[head:-1] = c_offsets[start:end]
            s = e = 0
            if answer is not None and start <= answer[0] and answer[1] < end:
                s, e = head + answer[0] - start, head + answer[1] - start
            features.append(
                Feature(
                    np.array([cls_id, *q_ids, sep_id, *c.ids[start:end], sep_id], np.int32),
                    np.array([0] * head + [1] * (end - start + 1), np.int8),
                    ex.label,
                    i,
                    len(features),
                    s,
                    e,
                    offsets,
                )
            )
            if end == len(c.ids):
                break
            start += min(doc_stride, room)  # a stride longer than a window would skip tokens
    return features


def load_features(task: Task, tokenizer, max_length: int, data_dir=None, train_subset: int = 0,
                  eval_subset: int = 0):  # fmt: skip
    """(train features, dev examples, dev features) of `task` (dev: its first evaluation split,
    e.g. SST-2 dev, IMDB test): the first `train_subset` of a fixed shuffle (0 = all), the first
    `eval_subset` dev examples. Raises ValueError (KeyError, RuntimeError from the readers) with
    what is wrong."""
    try:
        train_ex = load_examples(task, "train", data_dir)
        dev_ex = load_examples(task, task.splits[1], data_dir)
    except OSError as e:  # a file that is a folder, unreadable, ...; the readers' own say it all
        where = f"cannot read {e.filename}: {e.strerror}" if e.filename else str(e)
        raise ValueError(f"{where} (the {task.name} data; --data-dir names its folder)") from None
    # "the first N" of fewer than N would quietly be all of them
    for flag, n, have, split in (
        ("--train-subset", train_subset, train_ex, "train"),
        ("--eval-subset", eval_subset, dev_ex, task.splits[1]),
    ):
        if n > len(have):
            raise ValueError(
                f"{flag} {n} exceeds the {len(have)} {split} examples of "
                f"{task.name}: give at most {len(have)}, or 0 for all"
            )
    if train_subset:  # a fixed shuffle, so a subset is a fair sample of the classes
        order = np.random.default_rng(0).permutation(len(train_ex))[:train_subset]
        train_ex = [train_ex[i] for i in sorted(order)]
    dev_ex = dev_ex[: eval_subset or None]
    train_feats = encode(task, train_ex, tokenizer=tokenizer, max_length=max_length)
    return train_feats, dev_ex, encode(task, dev_ex, tokenizer=tokenizer, max_length=max_length)


# ----------------------------------------------------------------------------------------------
# Batches: order as a pure function of (seed, epoch), then padding in one of three settings


def batch_indices(
    lengths: Sequence[int],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    epoch: int = 0,
    bucket: bool = False,
) -> list[list[int]]:
    """Feature indices grouped into batches; the same arguments always give the same batches, so a
    resumed run replays the order. `bucket` sorts by length inside chunks of 50 batches, so a
    batch holds similar lengths (less padding) while the data still mixes across epochs."""
    order = np.arange(len(lengths))
    rng = np.random.default_rng([seed, epoch])
    if shuffle:
        order = rng.permutation(order)
    if bucket:
        lengths, chunk = np.asarray(lengths), 50 * batch_size
        order = np.concatenate(
            [
                c[np.argsort(lengths[c], kind="stable")]
                for c in np.split(order, range(chunk, len(order), chunk))
            ]
        )
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    if shuffle and bucket:  # else the batches of a chunk would come shortest first
        batches = [batches[j] for j in rng.permutation(len(batches))]
    return batches


def collate(
    features: Sequence[Feature],
    padding: str = "batch",
    max_length: int | None = None,
    pad_id: int = 0,
) -> dict[str, torch.Tensor]:
    """Pad features into one batch of tensors.

    padding: "sequence" pads to `max_length` (the task's fixed length, Transkimmer Table 2);
    "batch" pads to the batch's longest; "none" gives the same tensors as "batch" (a GPU needs a
    rectangle), but means FLOPs are to be counted at `lengths`, the real token counts.
    Returns input_ids, attention_mask (1 = real token), token_type_ids: long (B, T); lengths,
    example_index, feature_index: long (B,); labels (B,): long, float for regression; for SQuAD
    start_positions, end_positions (B,) long (0 = [CLS] = no answer); for the synthetic tasks
    keyword_mask (B, T), 1 = a word that decides the label.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    lengths = [len(f) for f in features]
    if padding == "sequence":
        if max_length is None or max(lengths) > max_length:
            raise ValueError(
                f"padding='sequence' needs max_length ≥ the longest feature ({max(lengths)})"
            )
        T = max_length
    else:
        T = max(lengths)
    ids = np.full((len(features), T), pad_id, np.int64)  # (B, T)
    types, mask = np.zeros_like(ids), np.zeros_like(ids)
    for b, f in enumerate(features):
        ids[b, : len(f)], types[b, : len(f)], mask[b, : len(f)] = f.input_ids, f.token_type_ids, 1
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "lengths": lengths,
        "labels": np.array(
            [f.label for f in features],
            np.float32 if isinstance(features[0].label, float) else np.int64,
        ),
        "example_index": [f.example_index for f in features],
        "feature_index": [f.feature_index for f in features],
    }
    if features[0].offsets is not None:
        batch["start_positions"] = [f.start_position for f in features]
        batch["end_positions"] = [f.end_position for f in features]
    if features[0].keyword_mask is not None:
        batch["keyword_mask"] = np.zeros_like(ids)
        for b, f in enumerate(features):
            batch["keyword_mask"][b, : len(f)] = f.keyword_mask
    return {k: torch.as_tensor(np.asarray(v)) for k, v in batch.items()}


# ----------------------------------------------------------------------------------------------
# Metrics: pure functions of numpy predictions and labels


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of predictions equal to the label."""
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def f1_binary(predictions: np.ndarray, labels: np.ndarray) -> float:
    """F1 of the positive class 1: 2·TP / (2·TP + FP + FN); 0.0 when there is no positive at all."""
    p, y = np.asarray(predictions) == 1, np.asarray(labels) == 1
    tp, wrong = np.sum(p & y), np.sum(p != y)
    return float(2 * tp / (2 * tp + wrong)) if tp + wrong else 0.0


def matthews(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation from the confusion matrix (any number of classes; 0.0 if undefined).

    MCC = (c·s − Σ_k p_k·t_k) / sqrt((s² − Σ_k p_k²)(s² − Σ_k t_k²)), c correct, s total,
    p_k predicted and t_k true counts of class k. Constant predictions make the root 0: we return 0.
    """
    classes, inverse = np.unique(np.concatenate([predictions, labels]), return_inverse=True)
    p, y = inverse[: len(predictions)], inverse[len(predictions) :]
    counts = np.zeros((len(classes), len(classes)))
    np.add.at(counts, (y, p), 1)
    t, q, c, s = counts.sum(1), counts.sum(0), np.trace(counts), counts.sum()
    denominator = np.sqrt((s * s - q @ q) * (s * s - t @ t))
    return float((c * s - q @ t) / denominator) if denominator > 0 else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either side is constant (undefined, not NaN), but NaN when
    either holds a NaN or an infinity: a diverged model's scores must not read as "no
    correlation"."""
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    x, y = np.asarray(x, np.float64) - np.mean(x), np.asarray(y, np.float64) - np.mean(y)
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denominator) if denominator > 0 else 0.0


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..N, tied values sharing the mean of their ranks ([10, 20, 20] -> [1, 2.5, 2.5])."""
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation: Pearson of the average ranks (NaN if either side is not finite:
    ranks would place a NaN last, as if it were the highest score)."""
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    return pearson(average_ranks(x), average_ranks(y))


def compute_metrics(task: str | Task, predictions, labels) -> dict[str, float]:
    """The task's metrics and "main" (its headline metric), as fractions in [0, 1] (or −1..1).

    Classification: predictions are class ids (N,) or logits (N, C); labels (N,). Regression:
    scores (N,) or (N, 1). SQuAD: predictions {question id: text}, labels {question id: gold texts}.
    A prediction or label that is not finite makes every metric NaN (never a score).
    """
    task = get_task(task)
    if task.kind == "span":
        scores = squad_scores(predictions, labels)
        return {**scores, "main": scores[task.main_metric]}
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if not (np.isfinite(predictions).all() and np.isfinite(labels).all()):
        # a NaN logit's argmax is a class like any other: every metric would look like a score
        return {**{name: float("nan") for name in task.metrics}, "main": float("nan")}
    if task.kind == "classification" and predictions.ndim == 2:
        predictions = predictions.argmax(-1)
    predictions = predictions.reshape(len(labels))
    functions = {
        "accuracy": accuracy,
        "f1": f1_binary,
        "matthews": matthews,
        "pearson": pearson,
        "spearman": spearman,
    }
    scores = {name: functions[name](predictions, labels) for name in task.metrics}
    return {**scores, "main": scores[task.main_metric]}


# ----------------------------------------------------------------------------------------------
# SQuAD v2: from start/end logits back to text, and the official scorer (evaluate-v2.0.py)


def squad_predictions(
    examples: Sequence[Example],
    features: Sequence[Feature],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best: int = 20,
    max_answer_length: int = 30,
    null_threshold: float = 0.0,
) -> dict[str, str]:
    """Answer text per question id ("" = no answer), from logits (N_features, T) in feature order.

    Per window: the n_best starts × n_best ends that lie in the context, start ≤ end, at most
    max_answer_length tokens; a span scores start + end logit. Null score: the lowest [CLS] start +
    end over the windows. No answer when null score − best span score > null_threshold.
    """
    # DEVIATION: BERT's run_squad.py also drops starts that have more context in another window;
    # with doc_stride 128 that rarely changes the argmax, and we leave it out.
    windows = collections.defaultdict(list)
    for f in features:
        windows[f.example_index].append(f.feature_index)
    predictions = {}
    for i, ex in enumerate(examples):
        null, best, text = np.inf, -np.inf, ""
        for j in windows[i]:
            offsets = features[j].offsets
            s, e = (
                np.asarray(start_logits[j])[: len(offsets)],
                np.asarray(end_logits[j])[: len(offsets)],
            )
            null = min(null, s[0] + e[0])
            for a in np.argsort(s)[::-1][:n_best]:
                for b in np.argsort(e)[::-1][:n_best]:
                    if (
                        offsets[a, 0] < 0
                        or offsets[b, 0] < 0
                        or b < a
                        or b - a + 1 > max_answer_length
                    ):
                        continue
                    if s[a] + e[b] > best:
                        best, text = s[a] + e[b], ex.text_b[offsets[a, 0] : offsets[b, 1]]
        predictions[ex.uid] = "" if null - best > null_threshold else text
    return predictions


_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace (official)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def squad_f1(prediction: str, gold: str) -> float:
    """Token F1 of normalised answers; if either is empty, 1.0 iff both are."""
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    same = sum((collections.Counter(p) & collections.Counter(g)).values())
    return 0.0 if same == 0 else 2 * same / (len(p) + len(g))


def squad_scores(predictions: dict[str, str], gold: dict[str, Sequence[str]]) -> dict[str, float]:
    """Official SQuAD v2 exact match and F1 (fractions), each the max over a question's gold
    answers. An unanswerable question (no gold answers) scores 1 iff the prediction is empty."""
    missing = gold.keys() - predictions.keys()
    if missing:
        raise ValueError(f"no prediction for {len(missing)} questions, e.g. {sorted(missing)[:3]}")
    exact, f1 = [], []
    for qid, answers in gold.items():
        # gold answers that normalise to nothing count as "no answer", as in evaluate-v2.0.py
        answers = [a for a in answers if normalize_answer(a)] or [""]
        exact.append(
            max(float(normalize_answer(predictions[qid]) == normalize_answer(a)) for a in answers)
        )
        f1.append(max(squad_f1(predictions[qid], a) for a in answers))
    return {"exact": float(np.mean(exact)), "f1": float(np.mean(f1))}
