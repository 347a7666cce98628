"""Tests for data.py: the tokeniser against the reference BERT tokenisers, the task registry against
Transkimmer Table 2, the readers on the real files (published counts) and on hand-made bad input,
downloads from a local HTTP server, batching, the synthetic tasks, SQuAD windows and scoring, and
the metrics against scikit-learn / scipy.

No network: downloads go to 127.0.0.1 only, and every test writes only under tmp_path.
"""

import csv
import dataclasses
import http.server
import io
import json
import re
import socket
import tarfile
import threading
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics
import torch

import data
import metrics
import synthetic

# ----------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """No test reads or fills the user's ~/.cache; urllib must not send 127.0.0.1 to a proxy."""
    monkeypatch.setenv("SKIMBERT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "*")
    return tmp_path / "cache" / "data"


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return data.load_tokenizer(minilm_dir)


@pytest.fixture
def http_server(tmp_path):
    """A file server on 127.0.0.1 serving tmp_path/www; `hits` records the requested paths."""
    root, hits = tmp_path / "www", []
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{server.server_address[1]}", hits=hits)
    server.shutdown()
    server.server_close()


def write_tsv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(row) + "\n" for row in rows), "utf-8")
    return path


WNLI_HEADER = ["index", "sentence1", "sentence2", "label"]

# ----------------------------------------------------------------------------------------------
# Tokeniser

TEXTS = [
    "Héllo, wörld! Ça va? naïve café résumé",  # accents are stripped by the uncased model
    "你好世界 and 日本語テキスト",  # CJK characters become single tokens
    "3.14159 costs $1,000,000 (approx.) on 2021-05-24",  # digits and punctuation
    "a" * 150 + " then pneumonoultramicroscopicsilicovolcanoconiosis",  # > 100 characters -> [UNK]
    "tab\tnew\nline \x00control \u200b zero-width",  # control characters are cleaned
    "[SEP] and [MASK] written in the text",  # special tokens inside a text
    "Ünïcödé ÅÆØ ß ﬁ — “quotes” … emoji 😀",
    "hide new secretions from the parental units ",  # SST-2's trailing space
    "",
]
PAIRS = [
    (TEXTS[0], TEXTS[1]),
    (TEXTS[2], TEXTS[6]),
    ("Is it?", "Yes, it is: " * 20),
    (TEXTS[3], "ok"),
]


def python_reference(minilm_dir):
    """The pure-Python BERT tokeniser: an implementation independent of the `tokenizers` library."""
    try:  # transformers 5 keeps it as BertTokenizerLegacy; in transformers 4 it is BertTokenizer
        from transformers.models.bert.tokenization_bert_legacy import (
            BertTokenizerLegacy as PythonBert,
        )
    except ImportError:
        from transformers import BertTokenizer as PythonBert
    return PythonBert.from_pretrained(minilm_dir)


def test_tokenizer_matches_both_reference_tokenizers_on_varied_text(tokenizer, minilm_dir):
    from transformers import BertTokenizerFast

    references = [BertTokenizerFast.from_pretrained(minilm_dir), python_reference(minilm_dir)]
    assert tokenizer.get_vocab(with_added_tokens=True) == references[1].vocab
    for ref in references:
        for text in TEXTS:
            assert tokenizer.encode(text).ids == ref(text)["input_ids"], text
        for a, b in PAIRS:
            ours, theirs = tokenizer.encode(a, b), ref(a, b, return_token_type_ids=True)
            assert ours.ids == theirs["input_ids"], (a, b)
            assert ours.type_ids == theirs["token_type_ids"], (a, b)


@pytest.mark.parametrize("max_length", [5, 8, 11, 16, 40])
def test_truncation_matches_the_reference_for_singles_and_pairs(minilm_dir, max_length):
    from transformers import BertTokenizerFast

    ref = BertTokenizerFast.from_pretrained(minilm_dir)
    tokenizer = data.load_tokenizer(minilm_dir, max_length)
    for text in TEXTS:
        ours = tokenizer.encode(text).ids
        assert ours == ref(text, truncation=True, max_length=max_length)["input_ids"]
        assert len(ours) <= max_length
    for a, b in PAIRS:
        ours = tokenizer.encode(a, b)
        theirs = ref(a, b, truncation="longest_first", max_length=max_length)
        assert (ours.ids, ours.type_ids) == (theirs["input_ids"], theirs["token_type_ids"])


def test_missing_vocab_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"vocab\.txt.*checkpoint folder"):
        data.load_tokenizer(tmp_path / "nowhere")


def test_tokenizer_config_can_turn_lower_casing_off(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join([*data.SPECIAL_TOKENS, "Hello", "hello"]) + "\n")
    assert data.load_tokenizer(tmp_path).encode("Hello").ids == [2, 6, 3]  # default: uncased
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    assert data.load_tokenizer(tmp_path).encode("Hello").ids == [2, 5, 3]


# ----------------------------------------------------------------------------------------------
# Task registry

# Transkimmer Table 2: input sequence length and harmony coefficient λ
TABLE_2 = {
    "cola": (64, 0.3),
    "rte": (256, 0.8),
    "qqp": (128, 0.2),
    "mrpc": (128, 0.5),
    "sst2": (64, 0.3),
    "mnli": (128, 0.2),
    "wnli": (128, 0.5),
    "qnli": (128, 0.1),
    "stsb": (64, 0.3),
    "squad2": (384, 0.8),
    "imdb": (512, 0.5),
    "yelp": (512, 0.5),
    "20news": (512, 0.5),
}


def test_registry_holds_the_lengths_and_harmony_coefficients_of_table_2():
    assert {
        name: (data.TASKS[name].max_length, data.TASKS[name].skim_weight) for name in TABLE_2
    } == TABLE_2
    assert set(data.TASKS) == set(TABLE_2) | {"synthetic", "synthetic-hard", "synthetic-negation"}
    sizes = {name: task.num_labels for name, task in data.TASKS.items()}
    assert sizes == {
        "cola": 2,
        "sst2": 2,
        "mrpc": 2,
        "qqp": 2,
        "stsb": 1,
        "mnli": 3,
        "qnli": 2,
        "rte": 2,
        "wnli": 2,
        "imdb": 2,
        "yelp": 5,
        "20news": 20,
        "squad2": 2,
        "synthetic": 2,
        "synthetic-hard": 2,
        "synthetic-negation": 2,
    }
    for task in data.TASKS.values():
        assert task.main_metric in task.metrics


def test_task_names_accept_the_glue_spellings_and_unknown_ones_list_the_known():
    assert data.get_task("SST-2") is data.TASKS["sst2"]
    assert data.get_task("STS-B") is data.TASKS["stsb"]
    for spelling in ("synthetic-hard", "synthetic_hard", "SyntheticHard"):
        assert data.get_task(spelling) is data.TASKS["synthetic-hard"]
    with pytest.raises(KeyError, match="unknown task 'sst3'.*cola.*synthetic"):
        data.get_task("sst3")


# ----------------------------------------------------------------------------------------------
# Readers on the real files (../shared/data): the published counts

# (train, dev) counts and label counts, from shared/data/README.md
GLUE_COUNTS = {
    "sst2": {"train": [29780, 37569], "dev": [428, 444]},
    "cola": {"train": [2528, 6023], "dev": [322, 721]},
    "mrpc": {"train": [1194, 2474], "dev": [129, 279]},
    "rte": {"train": [1249, 1241], "dev": [146, 131]},
    "wnli": {"train": [323, 312], "dev": [40, 31]},
    "qnli": {"dev": [2702, 2761]},
    "stsb": {"train": 5749, "dev": 1500},
}


@pytest.mark.parametrize("name", GLUE_COUNTS)
def test_glue_tasks_load_the_published_counts(shared_data, name):
    for split, expected in GLUE_COUNTS[name].items():
        examples = data.load_examples(name, split, shared_data / "glue", fetch=False)
        labels = np.array([e.label for e in examples])
        if name == "stsb":
            assert len(examples) == expected and labels.min() >= 0.0 and labels.max() <= 5.0
        else:
            assert np.bincount(labels).tolist() == expected, split
        pair = name not in ("sst2", "cola")
        assert all((e.text_b is not None) == pair and e.text_a for e in examples)


def test_glue_reads_the_task_folder_itself_and_keeps_text_as_written(shared_data):
    examples = data.load_examples("sst2", "dev", shared_data / "glue" / "SST-2", fetch=False)
    assert (
        examples[0].text_a == "it 's a charming and often affecting journey . "
    )  # trailing space kept
    mrpc = data.load_examples(
        "mrpc", "train", shared_data, fetch=False
    )  # data_dir/glue/MRPC works too
    assert mrpc[0].text_a.startswith("Amrozi accused his brother")  # the byte-order mark is gone


def test_imdb_tarballs_load_25000_reviews_per_split_half_positive(shared_data):
    for split in ("train", "test"):
        examples = data.load_examples("imdb", split, shared_data / "imdb", fetch=False)
        assert len(examples) == 25_000 and sum(e.label for e in examples) == 12_500
        assert examples[0].uid.startswith(f"{split}/neg/0_") and examples[-1].uid.startswith(
            f"{split}/pos/"
        )
        assert [e.uid for e in examples] == sorted(e.uid for e in examples)  # sorted: deterministic


# ----------------------------------------------------------------------------------------------
# Readers on hand-made files: layouts and bad input


def test_folder_and_tarball_layouts_give_the_same_examples(tmp_path):
    files = {
        "aclImdb/train/pos/1_7.txt": "Great<br />film",
        "aclImdb/train/neg/0_2.txt": "Dull.",
        "aclImdb/train/unsup/9_0.txt": "unlabelled",
        "aclImdb/test/pos/0_9.txt": "Fine",
        "aclImdb/README": "readme",
        "20news-bydate-train/sci.space/61": "Orbit caf\xe9",
        "20news-bydate-train/alt.atheism/49": "Hello",
        "20news-bydate-test/sci.med/7": "Doctor",
    }
    folder, archives = tmp_path / "folder", tmp_path / "archives"
    archives.mkdir()
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(text.encode("latin-1" if "20news" in name else "utf-8"))
    for archive, prefix in (("aclImdb_v1.tar.gz", "aclImdb"), ("20news-bydate.tar.gz", "20news")):
        with tarfile.open(archives / archive, "w:gz") as tar:
            for name in sorted(files, reverse=True):  # archive order must not matter
                if name.startswith(prefix):
                    tar.add(folder / name, arcname=name)
    imdb = data.load_examples("imdb", "train", folder, fetch=False)
    assert [(e.text_a, e.label, e.uid) for e in imdb] == [
        ("Dull.", 0, "train/neg/0_2.txt"),
        ("Great<br />film", 1, "train/pos/1_7.txt"),
    ]
    assert imdb == data.load_examples("imdb", "train", archives, fetch=False)
    assert imdb == data.load_examples("imdb", "train", folder / "aclImdb", fetch=False)
    news = data.load_examples("20news", "train", folder, fetch=False)
    assert [(e.text_a, data.NEWSGROUPS[e.label]) for e in news] == [
        ("Hello", "alt.atheism"),
        ("Orbit café", "sci.space"),
    ]
    assert news == data.load_examples("20news", "train", archives, fetch=False)


def test_yelp_csv_interprets_quotes_and_line_breaks(tmp_path):
    path = tmp_path / "yelp_review_full_csv" / "test.csv"
    path.parent.mkdir()
    with open(path, "w", newline="") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL).writerows(
            [["5", 'Say "wow", twice.\\nYes'], ["1", "Bad"]]
        )
    examples = data.load_examples("yelp", "test", tmp_path, fetch=False)
    assert [(e.text_a, e.label) for e in examples] == [('Say "wow", twice.\nYes', 4), ("Bad", 0)]


def test_squad_json_reader_keeps_every_gold_answer(tmp_path):
    squad = {
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": "Paris is in France.",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "Where?",
                                "answers": [
                                    {"text": "France", "answer_start": 12},
                                    {"text": "in France", "answer_start": 9},
                                ],
                            },
                            {"id": "q2", "question": "Who?", "answers": [], "is_impossible": True},
                        ],
                    }
                ],
            }
        ]
    }
    (tmp_path / "dev-v2.0.json").write_text(json.dumps(squad))
    q1, q2 = data.load_examples("squad2", "dev", tmp_path, fetch=False)
    assert (q1.uid, q1.label, q1.answers, q1.text_b) == (
        "q1",
        1,
        (("France", 12), ("in France", 9)),
        "Paris is in France.",
    )
    assert (q2.uid, q2.label, q2.answers) == ("q2", 0, ())


BAD_FILES = {
    "a row with a missing column": (
        [WNLI_HEADER, ["0", "a", "b", "1"], ["1", "a", "1"]],
        r"train\.tsv:3: expected 4 tab-separated columns, got 3",
    ),
    "a label outside the label set": (
        [WNLI_HEADER, ["0", "a", "b", "2"]],
        r"train\.tsv:2: label '2' is not one of \('0', '1'\)",
    ),
    "a header without the label column": (
        [["index", "sentence1", "sentence2", "gold"]],
        r"train\.tsv:1: header .* lacks the columns \['label'\]",
    ),
    "an empty file": ([], r"train\.tsv: empty file"),
    "a header and no rows": ([WNLI_HEADER], r"train\.tsv: no train examples"),
}


@pytest.mark.parametrize("problem", BAD_FILES)
def test_bad_input_is_reported_with_file_line_and_problem(tmp_path, problem):
    rows, message = BAD_FILES[problem]
    write_tsv(tmp_path / "WNLI" / "train.tsv", rows)
    with pytest.raises(ValueError, match=message):
        data.load_examples("wnli", "train", tmp_path, fetch=False)


def test_a_bad_score_and_a_cola_row_are_reported_with_their_line(tmp_path):
    write_tsv(
        tmp_path / "STS-B" / "dev.tsv", [["sentence1", "sentence2", "score"], ["a", "b", "high"]]
    )
    with pytest.raises(ValueError, match=r"dev\.tsv:2: score 'high' is not a number"):
        data.load_examples("stsb", "dev", tmp_path, fetch=False)
    write_tsv(tmp_path / "CoLA" / "dev.tsv", [["gj04", "1", "", "Fine."], ["gj04", "0", "*"]])
    with pytest.raises(ValueError, match=r"dev\.tsv:2: expected 4"):
        data.load_examples("cola", "dev", tmp_path, fetch=False)


WNLI_ROWS = "index\tsentence1\tsentence2\tlabel\n0\tA cat.\tAn animal.\t1\n"


def write_bytes(path, raw):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("ending", ["\n", "\n\n", "\n \n\n", "\r\n\r\n"])
def test_blank_lines_at_the_end_of_a_file_are_skipped(tmp_path, ending):
    write_bytes(tmp_path / "WNLI" / "train.tsv", WNLI_ROWS.rstrip("\n").encode() + ending.encode())
    examples = data.load_examples("wnli", "train", tmp_path, fetch=False)
    assert [(e.text_a, e.label, e.uid) for e in examples] == [("A cat.", 1, "train.tsv:2")]
    write_bytes(tmp_path / "yelp_review_full_csv" / "test.csv", f'"3","So so."{ending}'.encode())
    assert len(data.load_examples("yelp", "test", tmp_path, fetch=False)) == 1


def test_a_blank_line_before_more_rows_is_reported_with_its_line(tmp_path):
    write_bytes(tmp_path / "WNLI" / "train.tsv", (WNLI_ROWS + "\n1\tB.\tC.\t0\n").encode())
    with pytest.raises(ValueError, match=r"train\.tsv:3: blank line before more rows \(line 4\)"):
        data.load_examples("wnli", "train", tmp_path, fetch=False)
    write_bytes(tmp_path / "yelp_review_full_csv" / "test.csv", b'"3","So so."\n\n"1","Bad."\n')
    with pytest.raises(ValueError, match=r"test\.csv:2: blank line before more rows"):
        data.load_examples("yelp", "test", tmp_path, fetch=False)


def test_a_field_too_long_for_the_csv_module_names_its_file_and_line(tmp_path):
    long = "x" * 200_000  # over csv.field_size_limit(): 131,072 characters
    write_bytes(tmp_path / "WNLI" / "train.tsv", f"{WNLI_ROWS}1\t{long}\tb\t0\n".encode())
    with pytest.raises(ValueError, match=r"train\.tsv:3: a field longer than 131,072 characters"):
        data.load_examples("wnli", "train", tmp_path, fetch=False)
    # in a quoted CSV a field may span lines: the error names the line the record starts on
    yelp = write_bytes(
        tmp_path / "yelp_review_full_csv" / "test.csv",
        ('"3","So so."\n"1","' + "word\n" * 30_000 + '"\n').encode(),
    )
    with pytest.raises(ValueError, match=r"test\.csv:2: a field .* runs on to line \d+"):
        data.load_examples("yelp", "test", tmp_path, fetch=False)
    yelp.write_text(f'"3","{long}"\n')
    with pytest.raises(ValueError, match=r"test\.csv:1: a field longer than"):
        data.load_examples("yelp", "test", tmp_path, fetch=False)


def squad_json(context):
    qa = {"id": "q", "question": "?", "answers": []}
    return json.dumps({"data": [{"paragraphs": [{"context": context, "qas": [qa]}]}]}, indent=1)


def test_bytes_that_are_not_utf8_are_reported_with_file_line_and_offset(tmp_path):
    bad = b"caf\xe9"  # "café" written as Latin-1 / Windows-1252
    cases = {  # (task, split, file, its bytes, where the message points)
        "glue": (
            "wnli",
            "train",
            "WNLI/train.tsv",
            WNLI_ROWS.encode() + b"1\t" + bad + b"\tb\t0\n",
        ),
        "yelp": (
            "yelp",
            "test",
            "yelp_review_full_csv/test.csv",
            b'"3","ok"\r\n"1","' + bad + b'"',
        ),
        "imdb": ("imdb", "train", "aclImdb/train/pos/1_7.txt", b"Fine.\n" + bad),
        "squad": ("squad2", "dev", "dev-v2.0.json", squad_json("x").encode().replace(b"x", bad)),
    }
    for name, (task, split, file, raw) in cases.items():
        folder = tmp_path / name
        write_bytes(folder / file, raw)
        offset, line = raw.index(b"\xe9"), raw[: raw.index(b"\xe9")].count(b"\n") + 1
        where = re.escape(f"{folder / file}:{line}: byte {offset} (0xe9) is not valid UTF-8")
        with pytest.raises(ValueError, match=where + ".*iconv"):
            data.load_examples(task, split, folder, fetch=False)
    (tmp_path / "tarball").mkdir()
    with tarfile.open(tmp_path / "tarball" / "aclImdb_v1.tar.gz", "w:gz") as tar:  # a member, too
        tar.add(tmp_path / "imdb" / "aclImdb", arcname="aclImdb")
    with pytest.raises(ValueError, match=r"tar\.gz member aclImdb/train/pos/1_7\.txt:2: byte 9 "):
        data.load_examples("imdb", "train", tmp_path / "tarball", fetch=False)


def test_a_broken_squad_file_names_its_line_or_the_missing_field(tmp_path):
    path = tmp_path / "dev-v2.0.json"
    path.write_text(squad_json("x").replace('"answers"', "answers"))
    with pytest.raises(ValueError, match=r"dev-v2\.0\.json:\d+: not valid JSON \(Expecting"):
        data.load_examples("squad2", "dev", tmp_path, fetch=False)
    path.write_text(squad_json("x").replace('"question"', '"query"'))
    with pytest.raises(ValueError, match=r"dev-v2\.0\.json: .* lacks the field 'question'"):
        data.load_examples("squad2", "dev", tmp_path, fetch=False)
    path.write_text(squad_json("x") + "\n\n\n")  # blank lines after the JSON value are fine
    assert len(data.load_examples("squad2", "dev", tmp_path, fetch=False)) == 1


def test_missing_split_names_the_expected_path_and_unknown_splits_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"rte train: not found .*RTE/train\.tsv"):
        data.load_examples("rte", "train", tmp_path, fetch=False)
    with pytest.raises(ValueError, match=r"splits \('train', 'dev'\), not 'test'"):
        data.load_examples("sst2", "test", tmp_path)


# ----------------------------------------------------------------------------------------------
# Downloads, from a server on 127.0.0.1


def serve_wnli(root):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for split in ("train", "dev"):
            z.writestr(f"WNLI/{split}.tsv", "\t".join(WNLI_HEADER) + "\n0\tA cat.\tAn animal.\t1\n")
    (root / "WNLI.zip").write_bytes(buffer.getvalue())
    return "WNLI.zip"


def serve_yelp(root):
    folder = root / "src" / "yelp_review_full_csv"
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        (folder / f"{split}.csv").write_text('"3","So so."\n')
    with tarfile.open(root / "yelp_review_full_csv.tgz", "w:gz") as tar:
        tar.add(folder, arcname="yelp_review_full_csv")
    return "yelp_review_full_csv.tgz"


def serve_squad(root):
    squad = {
        "data": [
            {"paragraphs": [{"context": "x", "qas": [{"id": "q", "question": "?", "answers": []}]}]}
        ]
    }
    (root / "train-v2.0.json").write_text(json.dumps(squad))
    return "{split}-v2.0.json"


@pytest.mark.parametrize(
    "name, serve", [("wnli", serve_wnli), ("yelp", serve_yelp), ("squad2", serve_squad)]
)
def test_a_missing_dataset_is_downloaded_once_then_read_from_the_cache(
    http_server, monkeypatch, isolated_cache, tmp_path, name, serve
):
    url = f"{http_server.url}/{serve(http_server.root)}"
    monkeypatch.setitem(data.TASKS, name, dataclasses.replace(data.TASKS[name], url=url))
    first = data.load_examples(name, "train", tmp_path / "empty")
    assert len(first) == 1 and len(http_server.hits) == 1
    assert (
        data.load_examples(name, "train") == first and len(http_server.hits) == 1
    )  # the cache serves it
    assert not list(isolated_cache.rglob("*.zip")) and not list(isolated_cache.rglob("*.partial"))


def test_a_failed_download_names_the_url_and_the_data_dir_flag(http_server, monkeypatch):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/RTE.zip"
    for url in (closed, f"{http_server.url}/RTE.zip"):  # refused, then 404
        monkeypatch.setitem(data.TASKS, "rte", dataclasses.replace(data.TASKS["rte"], url=url))
        with pytest.raises(FileNotFoundError, match=rf"rte dev: not found .*{url}.*--data-dir"):
            data.load_examples("rte", "dev")


# ----------------------------------------------------------------------------------------------
# Features and batches


def test_features_hold_the_tokeniser_ids_types_and_labels(tokenizer):
    examples = [
        data.Example("A cat.", "An animal sat.", 1, "x:1"),
        data.Example("Dog?", "No.", 0, "x:2"),
    ]
    features = data.encode("rte", examples, tokenizer)
    for i, (f, e) in enumerate(zip(features, examples)):
        reference = tokenizer.encode(e.text_a, e.text_b)
        assert (
            f.input_ids.tolist() == reference.ids
            and f.token_type_ids.tolist() == reference.type_ids
        )
        assert (f.label, f.example_index, f.feature_index) == (e.label, i, i)
    long = [data.Example("word " * 600, None, 1, "x:3")]
    assert len(data.encode("imdb", long, tokenizer)[0]) == 512  # the task's length ...
    assert (
        len(data.encode("imdb", long, tokenizer, max_length=100)[0]) == 100
    )  # ... unless overridden
    assert tokenizer.truncation["max_length"] == 512  # the tokeniser is left as it was


def test_the_three_padding_settings_shape_the_batch(tokenizer):
    texts = ["short", "a somewhat longer sentence here", "mid length one"]
    features = data.encode(
        "sst2", [data.Example(t, None, i % 2, "x") for i, t in enumerate(texts)], tokenizer
    )
    real = [len(f) for f in features]
    batches = {p: data.collate(features, p, max_length=64) for p in data.PADDINGS}
    assert batches["sequence"]["input_ids"].shape == (3, 64)
    assert batches["batch"]["input_ids"].shape == (3, max(real))
    for key, value in batches["batch"].items():  # "none" pads for compute, counts at `lengths`
        assert torch.equal(value, batches["none"][key]), key
    for batch in batches.values():
        assert batch["lengths"].tolist() == real
        assert batch["attention_mask"].sum(1).tolist() == real
        assert all(v.dtype == torch.long for v in batch.values())
        first = batch["input_ids"][0]
        assert (
            first[: real[0]].tolist() == features[0].input_ids.tolist()
            and not first[real[0] :].any()
        )
    with pytest.raises(ValueError, match="padding must be one of"):
        data.collate(features, "max")


def test_regression_labels_are_float(tokenizer):
    features = data.encode(
        "stsb", [data.Example("a", "b", 3.8, "x"), data.Example("c", "d", 0.0, "y")], tokenizer
    )
    labels = data.collate(features)["labels"]
    assert labels.dtype == torch.float32
    torch.testing.assert_close(labels, torch.tensor([3.8, 0.0]), rtol=0, atol=1e-6)


def test_batch_order_is_a_pure_function_of_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(5, 500, 1003).tolist()
    order = dict(shuffle=True, seed=3, epoch=1)
    batches = data.batch_indices(lengths, 32, **order)
    assert batches == data.batch_indices(lengths, 32, **order)
    assert batches != data.batch_indices(lengths, 32, shuffle=True, seed=3, epoch=2)
    assert sorted(sum(batches, [])) == list(range(1003)) and len(batches[-1]) == 1003 % 32
    assert data.batch_indices(lengths, 32) == [
        list(range(i, min(i + 32, 1003))) for i in range(0, 1003, 32)
    ]

    def padded(batches):
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    bucketed = data.batch_indices(lengths, 32, bucket=True, **order)
    assert sorted(sum(bucketed, [])) == list(range(1003))
    assert padded(bucketed) < 0.7 * padded(batches)  # bucketing removes most of the padding


def test_batch_indices_and_collate_give_the_seeded_batches_as_train_py_builds_them(tokenizer):
    features = data.encode("synthetic", synthetic.synthetic_examples(10, seed=1), tokenizer)
    indices = data.batch_indices([len(f) for f in features], 4, shuffle=True, seed=5)
    batches = [data.collate([features[i] for i in idx], "batch") for idx in indices]
    assert [len(idx) for idx in indices] == [4, 4, 2] and sorted(sum(indices, [])) == list(
        range(10)
    )
    for idx, batch in zip(indices, batches):
        assert batch["feature_index"].tolist() == idx
        assert batch["input_ids"].shape[1] == max(len(features[i]) for i in idx)
        assert batch["labels"].tolist() == [features[i].label for i in idx]


# ----------------------------------------------------------------------------------------------
# The synthetic tasks


def test_synthetic_task_runs_offline_with_its_own_vocabulary_and_marks_its_keywords(tmp_path):
    tokenizer = data.load_tokenizer(data.write_synthetic_vocab(tmp_path))
    assert tokenizer.get_vocab_size() == 99 and tokenizer.token_to_id("[PAD]") == 0
    train = data.load_examples("synthetic", "train")
    assert len(train) == 2000 and len(data.load_examples("synthetic", "dev")) == 500
    assert train == synthetic.synthetic_examples(2000, seed=0)  # the same every time
    assert 900 < sum(e.label for e in train) < 1100  # balanced
    features = data.encode("synthetic", train, tokenizer)
    assert (
        min(map(len, features)) == 10 and max(map(len, features)) == 62
    )  # 8..60 words + [CLS] [SEP]
    positive = {tokenizer.token_to_id(w) for w in synthetic.POSITIVE}
    keywords = positive | {tokenizer.token_to_id(w) for w in synthetic.NEGATIVE}
    for f in features:
        assert tokenizer.token_to_id("[UNK]") not in f.input_ids
        marked = f.input_ids[f.keyword_mask == 1]
        assert set(marked) <= keywords and np.isin(f.input_ids, list(keywords)).sum() == len(marked)
        assert len(marked) in (1, 3) and f.label == int(
            2 * np.isin(marked, list(positive)).sum() > len(marked)
        )
    # the marks are for measuring: no batch carries them, so a method's loss cannot train on them
    assert "keyword_mask" not in data.collate(features[:5], "sequence", max_length=64)


def test_a_draw_written_as_sentences_reads_back_without_its_keywords(tmp_path):
    """How assignment 6's grader hands a training its draw of keywords: the sentences and labels
    only, so nothing in the training process says which words decide."""
    drawn = data.get_task("synthetic", 4242)
    for split in ("train", "dev"):
        data.write_synthetic_split(tmp_path, split, drawn)
        read = data.load_examples("synthetic", split, tmp_path)
        made = data.load_examples(drawn, split)
        assert [(e.text_a, e.label) for e in read] == [(e.text_a, e.label) for e in made]
        assert all(e.keywords is None for e in read) and made[0].keywords is not None
    tokenizer = data.load_tokenizer(data.write_synthetic_vocab(tmp_path / "vocab"))
    features = data.encode("synthetic", data.load_examples("synthetic", "dev", tmp_path), tokenizer)
    assert all(f.keyword_mask is None for f in features)
    with pytest.raises(ValueError, match="holds the sentences already: drop --word-roles"):
        data.load_examples(drawn, "dev", tmp_path)
    (tmp_path / "synthetic" / "train.tsv").unlink()  # one split read and one built: refused
    with pytest.raises(ValueError, match="holds no train.tsv: write every split there"):
        data.load_examples("synthetic", "train", tmp_path)
    (tmp_path / "synthetic" / "dev.tsv").write_text("text\tlabel\nawful good\tmaybe\n")
    with pytest.raises(ValueError, match="dev.tsv:2: label 'maybe' is not one of"):
        data.load_examples("synthetic", "dev", tmp_path)


def test_word_roles_deal_the_same_words_out_again_and_the_rule_follows_them(tmp_path):
    """--word-roles N: other words decide, drawn from the same vocabulary (so the same tokenizer
    reads them), as many of each kind, the same for the same N; 0 is the published roles."""
    assert synthetic.word_roles(0) == (synthetic.POSITIVE, synthetic.NEGATIVE, synthetic.FILLER)
    positive, negative, filler = synthetic.word_roles(12345)
    assert synthetic.word_roles(12345) == (positive, negative, filler)
    assert synthetic.word_roles(12346) != (positive, negative, filler)
    published = synthetic.POSITIVE + synthetic.NEGATIVE + synthetic.FILLER
    assert sorted(positive + negative + filler) == sorted(published)
    assert len(positive) == len(synthetic.POSITIVE) and len(negative) == len(synthetic.NEGATIVE)
    assert set(positive + negative) != set(synthetic.POSITIVE + synthetic.NEGATIVE)
    task = data.get_task("synthetic", 12345)
    assert task.word_roles == 12345 and data.get_task("synthetic").word_roles == 0
    tokenizer = data.load_tokenizer(data.write_synthetic_vocab(tmp_path))
    dev = data.load_examples(task, "dev")
    features = data.encode(task, dev, tokenizer)
    ids = lambda words: [tokenizer.token_to_id(w) for w in words]  # noqa: E731
    for f in features:  # the rule, written again: the majority of the marked words votes
        assert tokenizer.token_to_id("[UNK]") not in f.input_ids
        marked = f.input_ids[f.keyword_mask == 1]
        assert np.isin(f.input_ids, ids(positive + negative)).sum() == len(marked) in (1, 3)
        assert f.label == int(2 * np.isin(marked, ids(positive)).sum() > len(marked))
    assert dev != data.load_examples("synthetic", "dev")
    with pytest.raises(ValueError, match="--word-roles deals out the words of the synthetic task"):
        data.get_task("sst2", 3)


def hard_label(words):
    """synthetic-hard's rule written again, independently: the first word's aspect votes."""
    positive, negative = synthetic.ASPECTS[words[0]]
    votes = sum(w in positive for w in words) - sum(w in negative for w in words)
    return None if votes == 0 else int(votes > 0)


def test_synthetic_hard_rule_on_hand_built_reviews():
    review = "the soup was tasty and fresh but the waiter rude and slow".split()
    food, deciding = synthetic.synthetic_hard_rule(["food", *review])
    assert food == 1  # tasty, fresh: the rude, slow service does not count
    assert [w for w, d in zip(["food", *review], deciding) if d] == ["food", "tasty", "fresh"]
    service, deciding = synthetic.synthetic_hard_rule(["service", *review])
    assert service == 0  # the same words, asked about the service
    assert [w for w, d in zip(["service", *review], deciding) if d] == ["service", "rude", "slow"]
    tie = synthetic.synthetic_hard_rule("food bland but crisp".split())
    assert tie == (None, (True, True, False, True))
    assert synthetic.synthetic_hard_rule("service the food".split()) == (None, (True, False, False))
    with pytest.raises(ValueError, match="starts with one of \\('food', 'service'\\)"):
        synthetic.synthetic_hard_rule("the food was tasty".split())


def test_synthetic_hard_is_deterministic_balanced_and_labelled_by_its_rule():
    train = data.load_examples("synthetic-hard", "train")
    dev = data.load_examples("synthetic-hard", "dev")
    assert len(train) == 8000 and len(dev) == 1000
    assert train == synthetic.synthetic_hard_examples(8000, seed=0)  # the same every time
    assert dev == synthetic.synthetic_hard_examples(1000, seed=1) and dev != train[:1000]
    assert synthetic.synthetic_hard_examples(30, seed=7) == synthetic.synthetic_hard_examples(
        30, seed=7
    )
    counted_all = 0  # a model that counts every keyword, whatever the aspect
    every_positive = {w for positive, _ in synthetic.ASPECTS.values() for w in positive}
    every_negative = {w for _, negative in synthetic.ASPECTS.values() for w in negative}
    for e in train:
        words = e.text_a.split()
        positive, negative = synthetic.ASPECTS[words[0]]
        assert 17 <= len(words) <= 49 and e.label == hard_label(words)
        assert e.keywords == tuple(j == 0 or w in positive + negative for j, w in enumerate(words))
        for keys in synthetic.ASPECTS.values():  # 1, 3 or 5 keywords per aspect
            assert sum(w in keys[0] + keys[1] for w in words) in (1, 3, 5)
        votes = sum(w in every_positive for w in words) - sum(w in every_negative for w in words)
        counted_all += 0.5 if votes == 0 else int(votes > 0) == e.label  # a tie: a coin flip
    assert 3800 < sum(e.label for e in train) < 4200  # balanced
    assert 3800 < sum(e.text_a.startswith("food ") for e in train) < 4200
    assert 0.7 < counted_all / len(train) < 0.8  # without the aspect word: wrong 1 time in 4
    # the docstring's shares: ~4 of ~33 words decide (12%, the aspect word counted as one of
    # them), 7 are aspect words or keywords, 1.7 times as many
    hard_words = set(synthetic.HARD_WORDS)
    deciding = sum(sum(e.keywords) for e in train) / len(train)
    looks_so = sum(sum(w in hard_words for w in e.text_a.split()) for e in train) / len(train)
    words = sum(len(e.text_a.split()) for e in train) / len(train)
    assert 32 < words < 34 and 0.11 < deciding / words < 0.13 and 6.5 < looks_so < 7.5
    assert 1.6 < looks_so / deciding < 1.8


def test_the_synthetic_hard_vocabulary_covers_its_words_and_marks_its_deciding_tokens(tmp_path):
    tokenizer = data.load_tokenizer(data.write_synthetic_vocab(tmp_path, "synthetic-hard"))
    assert tokenizer.get_vocab_size() == 113  # synthetic's 99 tokens, with the same ids, then 14
    first = data.SPECIAL_TOKENS + synthetic.POSITIVE + synthetic.NEGATIVE + synthetic.FILLER
    assert [tokenizer.token_to_id(w) for w in first] == list(range(99))
    with pytest.raises(ValueError, match="sst2 is not a synthetic task"):
        data.write_synthetic_vocab(tmp_path, "sst2")
    synthetic_only = data.load_tokenizer(data.write_synthetic_vocab(tmp_path / "synthetic"))
    with pytest.raises(ValueError, match=r"the word '(food|service)' is not in .*'synthetic-hard'"):
        data.encode("synthetic-hard", synthetic.synthetic_hard_examples(3), synthetic_only)
    examples = data.load_examples("synthetic-hard", "dev")
    features = data.encode("synthetic-hard", examples, tokenizer)
    unk = tokenizer.token_to_id("[UNK]")
    for e, f in zip(examples, features):
        assert unk not in f.input_ids and len(f) == len(e.text_a.split()) + 2  # a token a word
        assert f.keyword_mask.tolist() == [0, *e.keywords, 0]  # [CLS] and [SEP] are not marked
        assert tokenizer.decode(f.input_ids[f.keyword_mask == 1].tolist()).split() == [
            w for w, k in zip(e.text_a.split(), e.keywords) if k
        ]
    assert max(map(len, features)) <= data.get_task("synthetic-hard").max_length
    assert "keyword_mask" not in data.collate(features[:4], "sequence", max_length=64)


def test_synthetic_negation_rule_on_hand_built_reviews():
    rule = synthetic.synthetic_negation_rule
    words = "the soup was good but not bad".split()
    assert rule(words) == (1, (False, False, False, True, False, True, True))
    assert rule("not good and bad".split())[0] == 0
    assert rule("good and bad".split())[0] is None  # a tie
    assert rule("bad not".split()) == (0, (True, False))  # a "not" after it negates nothing
    assert rule("not not good".split()) == (0, (False, True, True))  # only the one just before
    assert rule("not the good".split()) == (1, (False, False, True))  # a word between: no


def test_synthetic_negation_is_balanced_and_its_bag_of_words_says_nothing():
    train = data.load_examples("synthetic-negation", "train")
    dev = data.load_examples("synthetic-negation", "dev")
    assert len(train) == 4000 and len(dev) == 1000
    assert train == synthetic.synthetic_negation_examples(4000, seed=0)  # the same every time
    assert dev == synthetic.synthetic_negation_examples(1000, seed=1) and dev != train[:1000]
    assert 1900 < sum(e.label for e in train) < 2100  # balanced
    keyword_words = set(synthetic.POSITIVE + synthetic.NEGATIVE)
    for e in train:
        words = e.text_a.split()
        assert 27 <= len(words) <= 59
        # the same kinds of words in every review, whatever its label: one "not", one positive
        # and one negative keyword; so the label is in their order alone
        assert words.count("not") == 1 and sum(w in synthetic.POSITIVE for w in words) == 1
        assert sum(w in synthetic.NEGATIVE for w in words) == 1
        after_not = words[words.index("not") + 1]
        assert after_not in keyword_words and e.label == (after_not in synthetic.NEGATIVE)
        assert e.label == synthetic.synthetic_negation_rule(words)[0]
        assert [w for w, k in zip(words, e.keywords) if k] == [
            w for w in words if w in keyword_words or w == "not"
        ]


def test_synthetic_negation_reads_with_its_vocabulary_and_a_pretrained_one(tmp_path, minilm_dir):
    examples = data.load_examples("synthetic-negation", "dev")[:50]
    own = data.load_tokenizer(data.write_synthetic_vocab(tmp_path, "synthetic-negation"))
    assert own.get_vocab_size() == 100 and own.token_to_id("not") == 99  # synthetic's 99, "not"
    for tokenizer in (own, data.load_tokenizer(minilm_dir)):  # MiniLM: a token a word, too
        features = data.encode("synthetic-negation", examples, tokenizer)
        for e, f in zip(examples, features):
            assert len(f) == len(e.text_a.split()) + 2
            assert f.keyword_mask.tolist() == [0, *e.keywords, 0]


# ----------------------------------------------------------------------------------------------
# SQuAD v2: windows, post-processing, the official scorer

CONTEXT = " ".join(f"Sentence number {i} tells of the year {1900 + i}." for i in range(40))


def squad_examples():
    start = CONTEXT.index("year 1933")
    return [
        data.Example(
            "Which year does sentence 33 tell of?", CONTEXT, 1, "q1", (("1933", start + 5),)
        ),
        data.Example("What is the capital of Mars?", CONTEXT, 0, "q2"),
    ]


def test_squad_windows_cover_the_context_and_mark_the_answer_where_it_lies(tokenizer):
    examples = squad_examples()
    context_tokens = len(tokenizer.encode(CONTEXT, add_special_tokens=False).ids)
    for stride in (24, 500):  # a stride longer than a window must not skip tokens
        features = data.encode("squad2", examples, tokenizer, max_length=64, doc_stride=stride)
        for i in range(2):
            windows = [f for f in features if f.example_index == i]
            assert len(windows) > 5 and all(len(f) <= 64 for f in windows)
            covered = set()
            for f in windows:
                inside = f.offsets[:, 0] >= 0
                assert (f.token_type_ids[inside] == 1).all() and f.input_ids[
                    0
                ] == tokenizer.token_to_id("[CLS]")
                covered |= {tuple(o) for o in f.offsets[inside]}
            assert len(covered) == context_tokens
    features = data.encode("squad2", examples, tokenizer, max_length=64, doc_stride=24)
    answer_start = CONTEXT.index("1933")
    for f in features:
        inside = f.offsets[:, 0] >= 0
        holds_answer = (
            f.example_index == 0
            and f.offsets[inside, 0].min() <= answer_start < f.offsets[inside, 1].max()
        )
        if holds_answer:
            assert CONTEXT[f.offsets[f.start_position, 0] : f.offsets[f.end_position, 1]] == "1933"
        else:  # windows without the answer, and the unanswerable question, point at [CLS]
            assert f.start_position == f.end_position == 0
    assert sum(f.start_position > 0 for f in features) >= 2  # overlapping windows both hold it


def test_post_processing_turns_logits_back_into_answer_text_or_no_answer(tokenizer):
    examples = squad_examples()
    features = data.encode("squad2", examples, tokenizer, max_length=64, doc_stride=24)
    starts, ends = np.zeros((len(features), 64)), np.zeros((len(features), 64))
    target = next(f for f in features if f.start_position > 0)
    starts[target.feature_index, target.start_position] = ends[
        target.feature_index, target.end_position
    ] = 5.0
    for f in features:  # a weaker null everywhere: the span (10.0) beats the [CLS] score (2 + 2)
        starts[f.feature_index, 0] = ends[f.feature_index, 0] = 2.0
    predictions = data.squad_predictions(examples, features, starts, ends)
    assert predictions == {"q1": "1933", "q2": ""}
    # no answer when null − best span > threshold: here 4 − 10 = −6
    assert (
        data.squad_predictions(examples, features, starts, ends, null_threshold=-5.0)["q1"]
        == "1933"
    )
    assert data.squad_predictions(examples, features, starts, ends, null_threshold=-7.0)["q1"] == ""
    ends[target.feature_index, target.end_position] = 0.0
    ends[target.feature_index, target.start_position - 1] = (
        9.0  # an end before the start is ignored
    )
    assert (
        data.squad_predictions(examples, features, starts, ends, null_threshold=-100)["q1"]
        != "1933"
    )


def test_normalize_answer_follows_the_official_rules():
    assert metrics.normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert metrics.normalize_answer("an apple a day; THE end") == "apple day end"
    assert metrics.normalize_answer("theater") == "theater"  # articles are whole words only


def test_official_scorer_on_a_hand_worked_dataset():
    gold = {
        "q1": ["the Eiffel Tower", "Eiffel Tower"],  # several gold answers: the best counts
        "q2": ["Paris, France"],
        "q3": [],  # unanswerable
        "q4": [],
        "q5": ["1990", "in 1990"],
        "q6": ["a cat sat on the mat", "the big dog"],
        "q7": ["The"],
    }  # normalises to nothing: counts as unanswerable
    predictions = {
        "q1": "eiffel tower!",
        "q2": "in Paris",
        "q3": "",
        "q4": "London",
        "q5": "",
        "q6": "big cat",
        "q7": "",
    }
    # exact: q1, q3, q7 -> 3/7. F1: q1 1; q2 "in paris" vs "paris france": P = R = 1/2 -> 1/2; q3 1;
    # q4 0; q5 0; q6 best of 2·(1/2·1/4)/(3/4) = 1/3 and 1/2 -> 1/2; q7 1. Sum 4 -> 4/7.
    scores = metrics.squad_scores(predictions, gold)
    assert scores == pytest.approx({"exact": 3 / 7, "f1": 4 / 7}, abs=1e-12)
    assert data.compute_metrics("squad2", predictions, gold)["main"] == pytest.approx(
        4 / 7, abs=1e-12
    )
    with pytest.raises(ValueError, match="no prediction for 1 questions"):
        metrics.squad_scores({"q1": "x"}, {"q1": ["x"], "q2": []})


# ----------------------------------------------------------------------------------------------
# Metrics


def test_metrics_agree_with_scikit_learn_and_scipy_on_random_data():
    rng = np.random.default_rng(0)
    for _ in range(5):
        labels, predictions = rng.integers(0, 2, 301), rng.integers(0, 2, 301)
        assert metrics.accuracy(predictions, labels) == pytest.approx(
            sklearn.metrics.accuracy_score(labels, predictions), abs=1e-6
        )
        assert metrics.f1_binary(predictions, labels) == pytest.approx(
            sklearn.metrics.f1_score(labels, predictions), abs=1e-6
        )
        assert metrics.matthews(predictions, labels) == pytest.approx(
            sklearn.metrics.matthews_corrcoef(labels, predictions), abs=1e-6
        )
        three, three_true = rng.integers(0, 3, 301), rng.integers(0, 3, 301)
        assert metrics.matthews(three, three_true) == pytest.approx(
            sklearn.metrics.matthews_corrcoef(three_true, three), abs=1e-6
        )
        x, y = rng.normal(size=301), rng.normal(size=301) + 0.5 * np.arange(301) / 301
        assert metrics.pearson(x, y) == pytest.approx(scipy.stats.pearsonr(x, y)[0], abs=1e-6)
        ties_x, ties_y = rng.integers(0, 6, 301), rng.integers(0, 6, 301) * 0.2  # many ties
        assert metrics.spearman(ties_x, ties_y) == pytest.approx(
            scipy.stats.spearmanr(ties_x, ties_y)[0], abs=1e-6
        )
        assert metrics.average_ranks(ties_x) == pytest.approx(
            scipy.stats.rankdata(ties_x), abs=1e-12
        )


def test_metrics_on_hand_worked_examples():
    predictions, labels = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]  # TP 2, FP 1, FN 1, TN 1
    assert metrics.accuracy(predictions, labels) == pytest.approx(3 / 5, abs=1e-12)
    assert metrics.f1_binary(predictions, labels) == pytest.approx(
        2 / 3, abs=1e-12
    )  # 2·2 / (2·2 + 1 + 1)
    assert metrics.matthews(predictions, labels) == pytest.approx(
        1 / 6, abs=1e-12
    )  # (2·1 − 1·1)/√(3·3·2·2)
    assert metrics.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(
        15 / np.sqrt(228), abs=1e-12
    )  # 5/√(2·114/9)
    assert metrics.average_ranks([10, 20, 20, 30]).tolist() == [1, 2.5, 2.5, 4]
    assert metrics.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(
        0.8, abs=1e-12
    )  # 1 − 6·2/(4·15)


def test_degenerate_inputs_give_zero_not_nan():
    assert metrics.matthews([1, 1, 1, 1], [0, 1, 0, 1]) == 0.0  # constant predictions
    assert metrics.matthews([0, 1, 0, 1], [1, 1, 1, 1]) == 0.0  # constant labels
    assert metrics.f1_binary([0, 0, 0], [0, 0, 0]) == 0.0  # no positive anywhere
    assert metrics.pearson([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0
    assert metrics.spearman([1, 2, 3], [5, 5, 5]) == 0.0


def test_compute_metrics_reads_logits_and_names_the_main_metric():
    logits = np.array([[2.0, -1.0], [0.0, 3.0], [1.0, 0.5], [-1.0, 1.0]])  # -> 0, 1, 0, 1
    scores = data.compute_metrics("mrpc", logits, [0, 1, 1, 1])
    assert scores == pytest.approx({"f1": 0.8, "accuracy": 0.75, "main": 0.8}, abs=1e-12)
    assert data.compute_metrics("cola", [0, 1], [0, 1]) == {"matthews": 1.0, "main": 1.0}
    stsb = data.compute_metrics("stsb", np.array([[0.5], [2.0], [4.0]]), [1.0, 2.0, 3.0])
    assert stsb["main"] == stsb["pearson"] and stsb["spearman"] == pytest.approx(1.0, abs=1e-12)
    assert data.compute_metrics("mnli", [2, 1, 0], [2, 1, 1])["main"] == pytest.approx(
        2 / 3, abs=1e-12
    )
