"""Data for the experiments, the entry point: tokeniser, task registry, examples, features, batches.

The tasks are those of Transkimmer Table 2 (Guan et al., ACL 2022, https://arxiv.org/abs/2205.07324)
and TR-BERT's long-text set (Ye et al., NAACL 2021, https://arxiv.org/abs/2105.11618): GLUE, IMDB,
Yelp review full, 20 Newsgroups and SQuAD v2.0, plus three tasks of ours that are built in code,
run offline and know which tokens decide the label (synthetic.py).

Flow: `load_tokenizer` -> `load_examples` (the files through readers.py: local folder, else cache,
else one download; or synthetic.py) -> `encode` (fixed-length features; SQuAD contexts cut into
overlapping windows) -> `batch_indices` + `collate` (three padding settings: "sequence", "batch",
"none") -> model -> `compute_metrics` (metrics.py; for SQuAD `squad_predictions` first). Texts are
kept exactly as in the files (the trailing space of SST-2 included: the tokeniser drops
whitespace). Checked by tests/test_data.py.

Shapes: B batch, T padded tokens, N examples or features.
"""

from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

import metrics
import readers
import synthetic
from readers import Example  # noqa: F401 (data.Example: what a reader returns, as before)
from weights import read_json

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
    vocab = _read_vocab(Path(model_dir) / "vocab.txt")
    config = _tokenizer_settings(Path(model_dir) / "tokenizer_config.json")
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


def _read_vocab(vocab_file: Path) -> dict[str, int]:
    """vocab.txt: one token a line, its id the line's number; BERT's specials must be there."""
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
    return vocab


def _tokenizer_settings(config_file: Path) -> dict:
    """tokenizer_config.json's settings, if the folder has one (else {}), checked: read as any
    folder's file is (weights.read_json: bounded, one error naming it)."""
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
    return config


# ----------------------------------------------------------------------------------------------
# Tasks by name


@dataclass(frozen=True, kw_only=True)
class Task:
    """One task: what to read, how long its inputs are and how it is scored."""

    name: str
    kind: str = "classification"  # "classification" | "regression" | "span"
    labels: tuple[str, ...]  # label strings as written in the files; class id = position
    max_length: int  # tokens per input, specials included (Transkimmer Table 2)
    skim_weight: float  # harmony coefficient λ of Transkimmer Eq. (7), from its Table 2
    metrics: tuple[str, ...] = ("accuracy",)  # metrics.py's names
    main_metric: str = "accuracy"  # the one a run reports first
    text_columns: tuple[str | int, ...]  # header names (or indices, CoLA has no header)
    label_column: str | int
    reader: str  # which reader: glue, imdb, yelp, 20news, squad2 (readers.py), synthetic
    splits: tuple[str, ...] = ("train", "dev")  # the ones after "train" are evaluation splits
    folder: str = ""  # GLUE task folder (SST-2, ...)
    url: str = ""  # public source; "{split}" is filled in for SQuAD
    word_roles: int = 0  # `synthetic`: which words decide (synthetic.word_roles; 0 = published)

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
_BINARY, _NLI = ("0", "1"), ("entailment", "not_entailment")
_PAIR = ("sentence1", "sentence2")


def _glue(folder: str, **fields) -> Task:
    """A GLUE task, read from <folder>/{train,dev}.tsv of GLUE's download."""
    return Task(reader="glue", folder=folder, url=GLUE_URL.format(folder), **fields)


TASKS: dict[str, Task] = {t.name: t for t in [  # max_length and skim_weight (λ): Table 2
    _glue("CoLA", name="cola", text_columns=(3,), label_column=1, labels=_BINARY, max_length=64,
          skim_weight=0.3, metrics=("matthews",), main_metric="matthews"),
    _glue("SST-2", name="sst2", text_columns=("sentence",), label_column="label", labels=_BINARY,
          max_length=64, skim_weight=0.3),
    # MRPC and QQP report F1 and accuracy; Transkimmer Table 3 shows F1 for MRPC, accuracy for QQP
    _glue("MRPC", name="mrpc", text_columns=("#1 String", "#2 String"), label_column="Quality",
          labels=_BINARY, max_length=128, skim_weight=0.5, metrics=("f1", "accuracy"),
          main_metric="f1"),
    _glue("QQP", name="qqp", text_columns=("question1", "question2"), label_column="is_duplicate",
          labels=_BINARY, max_length=128, skim_weight=0.2, metrics=("f1", "accuracy")),
    _glue("STS-B", name="stsb", kind="regression", text_columns=_PAIR, label_column="score",
          labels=(), max_length=64, skim_weight=0.3, metrics=("pearson", "spearman"),
          main_metric="pearson"),
    _glue("MNLI", name="mnli", text_columns=_PAIR, label_column="gold_label",
          labels=("entailment", "neutral", "contradiction"), max_length=128, skim_weight=0.2,
          splits=("train", "dev_matched", "dev_mismatched")),
    _glue("QNLI", name="qnli", text_columns=("question", "sentence"), label_column="label",
          labels=_NLI, max_length=128, skim_weight=0.1),
    _glue("RTE", name="rte", text_columns=_PAIR, label_column="label", labels=_NLI,
          max_length=256, skim_weight=0.8),
    _glue("WNLI", name="wnli", text_columns=_PAIR, label_column="label", labels=_BINARY,
          max_length=128, skim_weight=0.5),
    # IMDB, Yelp and 20News have no dev set: the papers evaluate on test
    Task(name="imdb", reader="imdb", text_columns=("text",), label_column="folder",
         labels=("neg", "pos"), max_length=512, skim_weight=0.5, splits=("train", "test"),
         url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"),
    Task(name="yelp", reader="yelp", text_columns=(1,), label_column=0,
         labels=("1", "2", "3", "4", "5"), max_length=512, skim_weight=0.5,
         splits=("train", "test"),
         url="https://s3.amazonaws.com/fast-ai-nlp/yelp_review_full_csv.tgz"),
    Task(name="20news", reader="20news", text_columns=("text",), label_column="folder",
         labels=NEWSGROUPS, max_length=512, skim_weight=0.5, splits=("train", "test"),
         url="http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz"),
    Task(name="squad2", kind="span", reader="squad2", text_columns=("question", "context"),
         label_column="answers", labels=(), max_length=384, skim_weight=0.8,
         metrics=("exact", "f1"), main_metric="f1",
         url="https://rajpurkar.github.io/SQuAD-explorer/dataset/{split}-v2.0.json"),
    # ours, not the papers': λ 0.5 like the middle of Table 2, and 64 tokens, which cover the
    # longest input of each: synthetic 62, synthetic-hard 51 (49 words + [CLS] [SEP]),
    # synthetic-negation 61. Which words decide: synthetic.py
    *(Task(name=name, reader="synthetic", text_columns=("text",), label_column="keywords",
           labels=("negative", "positive"), max_length=64, skim_weight=0.5)
      for name in ("synthetic", "synthetic-hard", "synthetic-negation")),
]}  # fmt: skip


def get_task(name: str | Task, word_roles: int = 0) -> Task:
    """The registered task `name` ("SST-2", "sst2" and "sst_2" all work, as do "synthetic-hard"
    and "synthetic_hard"); `word_roles` deals the words of `synthetic` out again, so that other
    words decide (synthetic.word_roles; 0 = the published keywords)."""
    if word_roles:
        task = get_task(name)
        if task.name != "synthetic":
            raise ValueError(
                f"--word-roles deals out the words of the synthetic task, not of {task.name}: "
                "drop it, or use --task synthetic (the smoke preset's)"
            )
        return dataclasses.replace(task, word_roles=word_roles)
    if isinstance(name, Task):
        return name

    def key(name: str) -> str:
        return name.lower().replace("-", "").replace("_", "")

    found = [task for task in TASKS.values() if key(task.name) == key(name)]
    if not found:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return found[0]


# ----------------------------------------------------------------------------------------------
# Examples: read from the task's files (readers.py: data_dir, else the cache, else one download
# into the cache), or built in code (synthetic.py)


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

    A synthetic task is built in code (synthetic.py), unless data_dir holds its sentences as
    NAME/SPLIT.tsv (columns text and label): write_synthetic_split writes them. Read from there,
    no example marks its keywords, so nothing in the training process says which words decide
    (how assignment 6's grader hands a training its draw of keywords).
    """
    task = get_task(task)
    if split not in task.splits:
        raise ValueError(f"{task.name} has splits {task.splits}, not {split!r}")
    written = Path(data_dir) / task.name / f"{split}.tsv" if data_dir else None
    # one split read and another built would not be one task's: all from the folder, or none
    if task.reader == "synthetic" and written and written.parent.is_dir() and not written.is_file():
        raise ValueError(f"{written.parent} holds no {split}.tsv: write every split there "
                         "(data.write_synthetic_split), or remove the folder to build the task "
                         "in code")  # fmt: skip
    if task.reader == "synthetic" and not (written and written.is_file()):
        make, sizes = synthetic.SYNTHETIC[task.name]
        roles = {"roles": task.word_roles} if task.word_roles else {}
        return make(sizes[split], seed=task.splits.index(split), **roles)
    if task.reader == "synthetic":  # its sentences, written by write_synthetic_split
        if task.word_roles:
            raise ValueError(f"{written} holds the sentences already: drop --word-roles")
        path = written
        examples = readers.read_glue(dataclasses.replace(task, label_column="label"), split, path)
    else:
        path = readers.locate(task, split, data_dir, fetch)
        examples = readers.READERS[task.reader](task, split, path)
    if not examples:
        raise ValueError(f"{path}: no {split} examples in it (empty file or folder?)")
    return examples


def write_synthetic_split(folder: str | Path, split: str, task: str | Task = "synthetic") -> Path:
    """Write a synthetic task's `split` (its word roles included) as folder/NAME/SPLIT.tsv, the
    sentences and labels without the keyword marks, which load_examples(data_dir=folder) reads."""
    task = get_task(task)
    path = Path(folder) / task.name / f"{split}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{e.text_a}\t{task.labels[e.label]}\n" for e in load_examples(task, split)]
    path.write_text("text\tlabel\n" + "".join(rows))
    return path


def write_synthetic_vocab(folder: str | Path, task: str | Task = "synthetic") -> Path:
    """Write the vocab.txt of a synthetic task into `folder` ([PAD] = 0); returns `folder`.
    `load_tokenizer(folder)` then works offline, with one token per synthetic word (the words:
    synthetic.vocabulary)."""
    task = get_task(task)
    if task.reader != "synthetic":
        raise ValueError(
            f"write_synthetic_vocab: {task.name} is not a synthetic task; use a checkpoint's "
            f"vocab.txt (--model) for it"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = SPECIAL_TOKENS + synthetic.vocabulary(task.name)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", "utf-8")
    return folder


def compute_metrics(task: str | Task, predictions, labels) -> dict[str, float]:
    """The task's metrics and "main" (its headline metric): metrics.compute_metrics for the
    task named `task`."""
    return metrics.compute_metrics(get_task(task), predictions, labels)


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
    if task.reader == "synthetic":
        _check_synthetic_words(task, examples, encodings, tokenizer.token_to_id("[UNK]"))
    features = []
    for i, (ex, enc) in enumerate(zip(examples, encodings)):
        keyword_mask = None
        if ex.keywords is not None:  # word_ids: which word a token came from (None for specials)
            keyword_mask = np.array(
                [w is not None and ex.keywords[w] for w in enc.word_ids], np.int8
            )
        features.append(
            Feature(
                input_ids=np.array(enc.ids, np.int32),
                token_type_ids=np.array(enc.type_ids, np.int8),
                label=ex.label,
                example_index=i,
                feature_index=i,
                keyword_mask=keyword_mask,
            )
        )
    return features


def _check_synthetic_words(task: Task, examples, encodings, unk: int) -> None:
    """Every word of a synthetic task is in the vocabulary that write_synthetic_vocab writes; an
    [UNK] means another task's was used, and the deciding words would all be [UNK]: a model
    would train to chance without saying why."""
    for ex, enc in zip(examples, encodings):
        if unk in enc.ids:
            word = ex.text_a.split()[enc.word_ids[enc.ids.index(unk)]]
            raise ValueError(
                f"{task.name} example {ex.uid}: the word {word!r} is not in the tokeniser's "
                f"vocabulary; write it with data.write_synthetic_vocab(folder, {task.name!r})"
            )


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
        answer = _answer_tokens(ex, c_offsets)
        start = 0
        while True:
            end = min(start + room, len(c.ids))
            head = len(q_ids) + 2  # token position of the window's first context token
            offsets = np.full((head + end - start + 1, 2), -1, np.int32)  # (T, 2)
            offsets[head:-1] = c_offsets[start:end]
            s = e = 0
            if answer is not None and start <= answer[0] and answer[1] < end:
                s, e = head + answer[0] - start, head + answer[1] - start
            ids = [cls_id, *q_ids, sep_id, *c.ids[start:end], sep_id]
            types = [0] * head + [1] * (end - start + 1)
            feature = Feature(input_ids=np.array(ids, np.int32),
                              token_type_ids=np.array(types, np.int8), label=ex.label,
                              example_index=i, feature_index=len(features), start_position=s,
                              end_position=e, offsets=offsets)  # fmt: skip
            features.append(feature)
            if end == len(c.ids):
                break
            start += min(doc_stride, room)  # a stride longer than a window would skip tokens
    return features


def _answer_tokens(ex: Example, c_offsets: np.ndarray) -> tuple[int, int] | None:
    """(first, last) context token of the example's first gold answer (the training target),
    from the context's character offsets (n, 2); None without an answer."""
    if not ex.answers:
        return None
    text, char_start = ex.answers[0]
    char_end = char_start + len(text)
    inside = np.flatnonzero((c_offsets[:, 1] > char_start) & (c_offsets[:, 0] < char_end))
    return (inside[0], inside[-1]) if len(inside) else None


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
    start_positions, end_positions (B,) long (0 = [CLS] = no answer). A synthetic task's
    keyword_mask stays on its features, out of every batch: it is an oracle no real task has, and
    a method's loss, which sees the batch, must learn the deciding words, not read them
    (evaluation counts the keywords kept from the features).
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
    label_type = np.float32 if isinstance(features[0].label, float) else np.int64
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
             "lengths": lengths, "labels": np.array([f.label for f in features], label_type),
             "example_index": [f.example_index for f in features],
             "feature_index": [f.feature_index for f in features]}  # fmt: skip
    if features[0].offsets is not None:
        batch["start_positions"] = [f.start_position for f in features]
        batch["end_positions"] = [f.end_position for f in features]
    return {k: torch.as_tensor(np.asarray(v)) for k, v in batch.items()}


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
