"""weights.py: loading released and run checkpoints, our safetensors reader and writer against the
`safetensors` package (the independent reference), config.json checks, finding and downloading a
model, and the errors for each kind of bad input."""

import dataclasses
import http.server
import json
import struct
import threading
from pathlib import Path

import pytest
import torch
from test_transformer import TINY, reference_tiny, save_as_folder

from transformer import CONFIGS, BertModel
from weights import (
    CheckpointError,
    from_pretrained,
    read_config,
    read_safetensors,
    released_name,
    resolve_model_dir,
    write_safetensors,
)

# ----------------------------------------------------------------------------------------------
# Released checkpoints


def test_pytorch_bin_with_bert_prefix_and_gamma_beta_loads_identically(tmp_path):
    ref = reference_tiny()
    a = from_pretrained(save_as_folder(ref, tmp_path / "st"))
    b = from_pretrained(save_as_folder(ref, tmp_path / "bin", fmt="bin"))
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb), na


def test_minilm_config_preset_matches_released_config(minilm_dir):
    ours = from_pretrained(minilm_dir).config
    assert dataclasses.asdict(ours) == dataclasses.asdict(CONFIGS["all-MiniLM-L6-v2"])


def test_name_table_maps_every_parameter_to_a_released_name():
    names = {released_name(n) for n in BertModel(TINY).state_dict()}
    assert "encoder.layer.1.attention.output.LayerNorm.weight" in names
    assert "embeddings.word_embeddings.weight" in names
    assert len(names) == len(BertModel(TINY).state_dict())


# ----------------------------------------------------------------------------------------------
# Bad input


def run_folder(tmp_path: Path, extras: dict[str, torch.Tensor], ref=None) -> Path:
    """A folder shaped like train.py's ckpt/: config.json with a "skimbert" section, the encoder's
    tensors (those of `ref`) under `bert.`, and `extras` (a head, a strategy's tensors) beside."""
    ref = ref if ref is not None else reference_tiny()
    folder = tmp_path / "run"
    folder.mkdir()
    meta = {**TINY.to_dict(), "num_labels": 2, "skimbert": {"method": "mine", "task": "synthetic"}}
    (folder / "config.json").write_text(json.dumps(meta))
    tensors = {f"bert.{k}": v.contiguous() for k, v in ref.state_dict().items()}
    write_safetensors({**tensors, **extras}, folder / "model.safetensors")
    return folder


def test_run_folder_skips_every_non_encoder_tensor_whatever_its_prefix(tmp_path):
    extras = {
        "classifier.weight": torch.zeros(2, TINY.hidden_size),
        "skim.0.weight": torch.zeros(3),
        "my_strategy.gate.bias": torch.zeros(4),  # a prefix no code of ours knows
        "temperature": torch.tensor(1.5),  # no prefix at all, and 0-d
    }
    ref = reference_tiny()
    model = from_pretrained(run_folder(tmp_path, extras, ref))
    for ours, tensor in model.state_dict().items():
        assert torch.equal(tensor, ref.state_dict()[released_name(ours)]), ours  # pooler too


def test_run_folder_encoder_tensors_stay_strict(tmp_path):
    folder = run_folder(tmp_path, {"bert.encoder.layer.0.mystery.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match="mystery"):
        from_pretrained(folder)


def test_two_spellings_of_one_tensor_are_refused(tmp_path):
    folder = save_as_folder(reference_tiny(), tmp_path / "m")
    state = read_safetensors(folder / "model.safetensors")
    state["bert.pooler.dense.weight"] = torch.zeros_like(state["pooler.dense.weight"])
    write_safetensors(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="pooler.dense.weight and bert.pooler.dense.weight"):
        from_pretrained(folder)


def test_released_checkpoint_refuses_a_strategy_prefix(tmp_path):
    """Without a "skimbert" section, `policy.*` is a tensor nobody claimed, as any other."""
    folder = save_as_folder(reference_tiny(), tmp_path / "m")
    state = read_safetensors(folder / "model.safetensors")
    write_safetensors({**state, "policy.w": torch.zeros(2)}, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="policy.w is not part of BERT"):
        from_pretrained(folder)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        from_pretrained(tmp_path)


def test_truncated_safetensors_names_the_file(tmp_path):
    folder = save_as_folder(reference_tiny(), tmp_path / "m")
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated"):
        from_pretrained(folder)


def test_corrupt_safetensors_header_is_refused(tmp_path):
    folder = save_as_folder(reference_tiny(), tmp_path / "m")
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:12] = b"\xff\xfe{{"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_safetensors(path)


@pytest.mark.parametrize(
    "change, says",
    [
        ({"num_attention_heads": 0}, "num_attention_heads must be a positive integer, got 0"),
        ({"num_attention_heads": -4}, "num_attention_heads must be a positive integer, got -4"),
        ({"num_attention_heads": 5}, "hidden_size 32 is not divisible by num_attention_heads 5"),
        ({"hidden_size": 32.0}, "hidden_size must be a positive integer, got 32.0"),
        ({"num_hidden_layers": "2"}, "num_hidden_layers must be a positive integer, got '2'"),
        ({"vocab_size": True}, "vocab_size must be a positive integer, got True"),
        ({"hidden_dropout_prob": 1.0}, r"hidden_dropout_prob must be a probability in \[0, 1\)"),
        ({"attention_probs_dropout_prob": -0.1}, "attention_probs_dropout_prob must be a prob"),
        ({"hidden_act": "relu"}, "hidden_act 'relu' is not implemented"),
        ({"pad_token_id": 99}, r"pad_token_id must be an id of the vocabulary \(0..98\)"),
        ({"layer_norm_eps": 0}, "layer_norm_eps must be in"),
    ],
)
def test_bad_config_value_names_the_file_and_the_field(tmp_path, change, says):
    folder = save_as_folder(reference_tiny(), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(CheckpointError, match=rf"m/config\.json: not a valid BERT config: {says}"):
        from_pretrained(folder)


@pytest.mark.parametrize(
    "text, says",
    [
        ("[1, 2]", "holds a JSON list, not an object of model fields"),
        ('"bert"', "holds a JSON str, not an object"),
        ("{'hidden_size': 32}", "not valid JSON"),
    ],
)
def test_config_that_is_not_a_json_object_names_the_file(tmp_path, text, says):
    folder = save_as_folder(reference_tiny(), tmp_path / "m")
    (folder / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=rf"m/config\.json: {says}"):
        read_config(folder)


def test_bert_config_itself_refuses_bad_values():
    """Built in code rather than from a file, a bad shape is a ValueError naming the field."""
    with pytest.raises(ValueError, match="intermediate_size must be a positive integer"):
        dataclasses.replace(TINY, intermediate_size=0)
    with pytest.raises(ValueError, match="attn_impl must be 'sdpa' or 'eager'"):
        dataclasses.replace(TINY, attn_impl="flash")


def test_checkpoint_of_another_size_names_tensor_and_shapes(tmp_path):
    folder = save_as_folder(reference_tiny(), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["intermediate_size"] = 41  # config says one size, the tensors another
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError, match=r"intermediate.dense.weight has shape \(37, 32\).*\(41, 32\)"
    ):
        from_pretrained(folder)


def test_unknown_tensor_is_not_silently_dropped(tmp_path):
    ref = reference_tiny()
    folder = save_as_folder(ref, tmp_path / "m")
    state = read_safetensors(folder / "model.safetensors")
    state["encoder.layer.0.mystery.weight"] = torch.zeros(3)
    write_safetensors(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="mystery"):
        from_pretrained(folder)


def test_not_a_local_folder_and_no_network_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIMBERT_CACHE", str(tmp_path))
    monkeypatch.setenv("SKIMBERT_HUB", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(RuntimeError, match="could not download") as caught:
        resolve_model_dir("someone/some-bert")
    message = str(caught.value)
    for needed in ("config.json", "vocab.txt", "model.safetensors", "pytorch_model.bin"):
        assert needed in message, f"the offline error does not name {needed}: {message}"
    assert str(tmp_path / "models" / "someone--some-bert") in message, "where to put them"
    assert "pass a local folder" in message
    assert not list(tmp_path.rglob("*.partial")), "a failed download left a partial file"


# ----------------------------------------------------------------------------------------------
# The safetensors format, against the `safetensors` package


def every_kind_of_tensor() -> dict[str, torch.Tensor]:
    return {
        "scalar": torch.tensor(3.25),  # 0-d: shape []
        "empty": torch.zeros(0, 4),
        "f16": torch.randn(3, 5).half(),
        "bf16": torch.randn(2, 2).bfloat16(),
        "f64": torch.randn(7, dtype=torch.float64),
        "i64": torch.arange(6).reshape(2, 3),
        "mask": torch.tensor([True, False, True]),
        "transposed": torch.randn(4, 3).t(),  # not contiguous
    }


def test_safetensors_round_trip_including_0d_tensors(tmp_path):
    tensors = every_kind_of_tensor()
    write_safetensors(tensors, tmp_path / "a.safetensors")
    back = read_safetensors(tmp_path / "a.safetensors")
    assert back.keys() == tensors.keys()
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape, name
        assert torch.equal(back[name], t), name
    assert back["scalar"].shape == torch.Size([])


def test_our_files_and_the_safetensors_package_read_each_other(tmp_path):
    from safetensors.torch import load_file, save_file

    tensors = every_kind_of_tensor()
    write_safetensors(tensors, tmp_path / "ours.safetensors")
    theirs = load_file(tmp_path / "ours.safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp_path / "theirs.safetensors")
    ours = read_safetensors(tmp_path / "theirs.safetensors")
    for name, t in tensors.items():
        assert torch.equal(theirs[name], t) and theirs[name].shape == t.shape, name
        assert torch.equal(ours[name], t) and ours[name].shape == t.shape, name


def test_writer_refuses_a_dtype_the_format_lacks_and_the_reserved_name(tmp_path):
    with pytest.raises(ValueError, match="'z' of dtype torch.complex64"):
        write_safetensors({"z": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "z.safetensors")
    with pytest.raises(ValueError, match="__metadata__ is reserved"):
        write_safetensors({"__metadata__": torch.zeros(2)}, tmp_path / "m.safetensors")
    assert not list(tmp_path.iterdir()), "a refused write left a file"


def blob(header=None, data=b"", raw=None, n=None) -> bytes:
    """A hand-made safetensors file: length prefix (`n`, else the true length), header, data."""
    head = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(head) if n is None else n) + head + data


def F32x4(begin: int, end: int) -> dict:
    """The header entry of a 4-element float32 tensor (16 bytes) at [begin, end]."""
    return {"dtype": "F32", "shape": [4], "data_offsets": [begin, end]}


# name -> (file bytes, what the message must say)
HOSTILE = {
    "overlap, equal offsets": (
        blob({"query": F32x4(0, 16), "key": F32x4(0, 16)}, bytes(16)),
        r"'key' \(bytes 0\.\.16\) overlaps tensor 'query'",
    ),
    "overlap, partial": (
        blob({"a": F32x4(0, 16), "b": F32x4(8, 24)}, bytes(24)),
        r"'b' \(bytes 8\.\.24\) overlaps tensor 'a'",
    ),
    "gap": (
        blob({"a": F32x4(0, 16), "b": F32x4(20, 36)}, bytes(36)),
        r"'b' starts at byte 20 .* 4 bytes belong to no tensor",
    ),
    "first tensor not at 0": (blob({"a": F32x4(4, 20)}, bytes(20)), r"'a' starts at byte 4"),
    "trailing bytes": (blob({"a": F32x4(0, 16)}, bytes(20)), r"4 trailing bytes after tensor 'a'"),
    "negative offset": (blob({"a": F32x4(-4, 12)}, bytes(16)), r"'a'.*need 0 <= begin <= end"),
    "begin after end": (
        blob({"a": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}}, bytes(16)),
        r"'a'.*need 0 <= begin <= end",
    ),
    "missing data_offsets": (
        blob({"a": {"dtype": "F32", "shape": [4]}}, bytes(16)),
        r"'a'.*no 'data_offsets'",
    ),
    "three offsets": (
        blob({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8, 16]}}, bytes(16)),
        r"'a'.*not a pair \[begin, end\] of integers",
    ),
    "float offsets": (
        blob({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0.0, 16.0]}}, bytes(16)),
        r"'a'.*not a pair \[begin, end\] of integers",
    ),
    "string shape": (
        blob({"a": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}}, bytes(16)),
        r"'a': shape '4' is not a list of non-negative integers",
    ),
    "negative dimension": (
        blob({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, bytes(16)),
        r"'a': shape \[-4\] is not a list of non-negative integers",
    ),
    "list header": (blob(raw=b"[1, 2]"), r"header is a JSON list, not an object"),
    "entry not an object": (blob({"a": [0, 16]}, bytes(16)), r"'a': entry is \[0, 16\]"),
    "wrong size": (blob({"a": F32x4(0, 12)}, bytes(12)), r"'a'.*needs 16 bytes.*hold 12"),
    "unknown dtype": (
        blob({"a": {"dtype": "F12", "shape": [4], "data_offsets": [0, 16]}}, bytes(16)),
        r"'a': unknown dtype 'F12'",
    ),
    "metadata not strings": (
        blob({"__metadata__": {"format": 1}, "a": F32x4(0, 16)}, bytes(16)),
        r"__metadata__ must map strings to strings",
    ),
    "duplicate name": (
        blob(
            raw=b'{"a": '
            + json.dumps(F32x4(0, 16)).encode()
            + b', "a": '
            + json.dumps(F32x4(0, 16)).encode()
            + b"}",
            data=bytes(16),
        ),
        r"names 'a' twice",
    ),
    "tensor past the end": (blob({"a": F32x4(0, 16)}, bytes(8)), r"'a'.*past the end.*truncated"),
    "header length past EOF": (
        blob({"a": F32x4(0, 16)}, bytes(16), n=10**6),
        r"header says 1000000 bytes but the file has \d+",
    ),
    "shorter than the length": (b"\x10\x00\x00", r"3 bytes, too short"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_safetensors_file_is_refused_naming_file_tensor_and_rule(tmp_path, case):
    from safetensors.torch import load_file

    data, says = HOSTILE[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=rf"bad\.safetensors: .*{says}"):
        read_safetensors(path)
    if case != "duplicate name":  # the reference keeps one of the two; we refuse the ambiguity
        with pytest.raises(Exception):  # the reference refuses it too: the same rules
            load_file(path)


def test_the_overlap_of_the_issue_no_longer_loads_query_as_key(tmp_path):
    """Two tensors pointing at the same bytes used to load silently, equal to each other."""
    good = tmp_path / "good.safetensors"
    write_safetensors({"query": torch.ones(4), "key": torch.full((4,), 2.0)}, good)
    data = good.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["key"]["data_offsets"] = header["query"]["data_offsets"]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(blob(header, data[8 + n :]))
    with pytest.raises(CheckpointError, match="'key'.*overlaps tensor 'query'"):
        read_safetensors(bad)


# ----------------------------------------------------------------------------------------------
# Download from a model hub (a local HTTP server on 127.0.0.1 plays the hub)


class _Hub(http.server.SimpleHTTPRequestHandler):
    """Serves <root>/<org>/<name>/resolve/main/<file> from <root>/<org>/<name>/<file>."""

    requests: list = []
    truncate: set = set()

    def translate_path(self, path):
        return super().translate_path(path.replace("/resolve/main/", "/"))

    def do_GET(self):
        _Hub.requests.append(self.path)
        name = self.path.rsplit("/", 1)[-1]
        if name in _Hub.truncate:  # announce the full size, send half, hang up
            data = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.close()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(tmp_path, monkeypatch):
    root = tmp_path / "hub"
    save_as_folder(reference_tiny(), root / "org" / "tiny-bert")
    handler = lambda *a, **k: _Hub(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SKIMBERT_HUB", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("SKIMBERT_CACHE", str(tmp_path / "cache"))
    _Hub.requests, _Hub.truncate = [], set()
    yield root
    server.shutdown()


def test_hub_name_is_downloaded_once_into_the_cache(hub, tmp_path):
    model = from_pretrained("org/tiny-bert")
    folder = tmp_path / "cache" / "models" / "org--tiny-bert"
    assert (folder / "model.safetensors").is_file() and (folder / "vocab.txt").is_file()
    first = len(_Hub.requests)
    again = from_pretrained("org/tiny-bert")
    assert len(_Hub.requests) == first, "the cached checkpoint was downloaded again"
    for a, b in zip(model.parameters(), again.parameters()):
        assert torch.equal(a, b)


def test_interrupted_download_never_looks_complete(hub, tmp_path):
    _Hub.truncate = {"model.safetensors"}
    with pytest.raises(RuntimeError, match="could not download"):
        resolve_model_dir("org/tiny-bert")
    folder = tmp_path / "cache" / "models" / "org--tiny-bert"
    assert not (folder / "model.safetensors").exists()
    assert not list(folder.glob("*.partial"))
    _Hub.truncate = set()
    from_pretrained("org/tiny-bert")  # the next try completes


def test_hub_without_the_model_says_so(hub):
    with pytest.raises(CheckpointError, match="no config.json"):
        resolve_model_dir("org/not-there")


# ----------------------------------------------------------------------------------------------
# Found by the second review: --model DIR reads the header first, within a budget, no link


def _header_with(path: Path, name: str, numbers: int) -> None:
    """Add a float32 tensor of `numbers` to a safetensors file's header, its bytes a hole (a
    sparse file: no disk, and no memory unless read)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header, body = json.loads(raw[8 : 8 + n]), raw[8 + n :]
    header[name] = {"dtype": "F32", "shape": [numbers],
                    "data_offsets": [len(body), len(body) + 4 * numbers]}  # fmt: skip
    head = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little") + head + body)
        f.truncate(8 + len(head) + len(body) + 4 * numbers)


def test_model_weights_past_what_the_config_needs_are_refused_before_reading(tmp_path):
    from weights import read_checkpoint

    folder = run_folder(tmp_path, {})
    _header_with(folder / "model.safetensors", "skim.huge", 20_000_000)  # 80 MB, a tiny model
    with pytest.raises(CheckpointError, match="more than the model of its config.json can need"):
        read_checkpoint(folder)


def test_a_run_folder_s_weights_are_regular_files_never_a_pickle(tmp_path):
    from weights import read_checkpoint

    folder = run_folder(tmp_path, {})
    (folder / "model.safetensors").rename(tmp_path / "elsewhere.safetensors")
    (folder / "model.safetensors").symlink_to(tmp_path / "elsewhere.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors is a symbolic link"):
        read_checkpoint(folder)
    (folder / "model.safetensors").unlink()
    torch.save({"bert.pooler.dense.bias": torch.zeros(3)}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"run: no model.safetensors$"):
        read_checkpoint(folder)


class _Runs:
    def __reduce__(self):
        return (print, ("code from a pickle ran",))


def test_a_pickle_of_code_is_one_line_without_torch_s_advice(tmp_path, capsys):
    from weights import read_checkpoint

    folder = save_as_folder(reference_tiny(), tmp_path / "bin", fmt="bin")
    torch.save({"w": _Runs()}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(folder)
    assert "never loaded" in str(e.value) and "\n" not in str(e.value)
    assert "weights_only=False" not in str(e.value) and "ran" not in capsys.readouterr().out


def test_a_tensor_name_with_a_newline_forges_no_line(tmp_path):
    folder = save_as_folder(reference_tiny(), tmp_path / "m")
    state = read_safetensors(folder / "model.safetensors")
    write_safetensors({**state, "x\nfinal | ok": torch.zeros(2)}, folder / "model.safetensors")
    with pytest.raises(CheckpointError) as e:
        from_pretrained(folder)
    assert "'x\\nfinal | ok' is not part of BERT" in str(e.value) and "\n" not in str(e.value)
