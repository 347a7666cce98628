"""transformer.py against transformers.BertModel (the independent reference), and its loader's errors."""

import dataclasses
import http.server
import json
import threading
from pathlib import Path

import pytest
import torch
import transformers

from transformer import (
    CONFIGS,
    BertConfig,
    BertModel,
    CheckpointError,
    VarLen,
    read_safetensors,
    released_name,
    resolve_model_dir,
    write_safetensors,
)

TINY = CONFIGS["tiny"]


def reference_tiny(cfg: BertConfig = TINY) -> transformers.BertModel:
    """A randomly initialised reference BERT of the same shape (no download)."""
    hf_cfg = transformers.BertConfig(
        **{k: v for k, v in cfg.to_dict().items() if k not in ("architectures",)}
    )
    ref = transformers.BertModel(hf_cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases, so a mix-up cannot hide
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return ref


def save_as_folder(ref: transformers.BertModel, folder: Path, fmt: str = "safetensors") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(ref.config.to_dict()))
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    if fmt == "safetensors":
        write_safetensors(state, folder / "model.safetensors")
    else:  # the original bert-base-uncased pickle: `bert.` prefix, LayerNorm gamma/beta
        renamed = {
            "bert."
            + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta"
            ): v
            for k, v in state.items()
        }
        renamed["cls.predictions.bias"] = torch.zeros(ref.config.vocab_size)
        torch.save(renamed, folder / "pytorch_model.bin")
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    return folder


def batch(cfg: BertConfig, B=3, T=7):
    ids = torch.randint(5, cfg.vocab_size, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    types = torch.zeros(B, T, dtype=torch.long)
    types[:, 4:] = 1
    return ids, mask, types


# ----------------------------------------------------------------------------------------------
# Parity with the reference


@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
def test_tiny_model_matches_reference_layer_by_layer(tmp_path, attn_impl):
    ref = reference_tiny()
    ours = BertModel.from_pretrained(save_as_folder(ref, tmp_path / "tiny"))
    ours.config.attn_impl = attn_impl
    for layer in ours.layers:
        layer.attn.impl = attn_impl
    ids, mask, types = batch(TINY)
    with torch.no_grad():
        theirs = ref(ids, mask, types, output_hidden_states=True).hidden_states
        mine = ours(ids, mask, types, all_layers=True)
    valid = mask.bool()
    for i, (a, b) in enumerate(zip(mine, theirs)):
        torch.testing.assert_close(a[valid], b[valid], atol=1e-5, rtol=0, msg=f"state {i} differs")


def test_pytorch_bin_with_bert_prefix_and_gamma_beta_loads_identically(tmp_path):
    ref = reference_tiny()
    a = BertModel.from_pretrained(save_as_folder(ref, tmp_path / "st"))
    b = BertModel.from_pretrained(save_as_folder(ref, tmp_path / "bin", fmt="bin"))
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb), na


def test_released_minilm_matches_reference_on_real_sentences(minilm_dir):
    ours = BertModel.from_pretrained(minilm_dir)
    ref = transformers.BertModel.from_pretrained(str(minilm_dir)).eval()
    tok = transformers.BertTokenizerFast.from_pretrained(str(minilm_dir))
    cases = [
        tok(["The quick brown fox jumps over the lazy dog."], return_tensors="pt"),
        tok(
            ["A man is playing a guitar."],
            ["Someone plays an instrument on stage."],
            return_tensors="pt",
        ),
        tok(
            [
                "short",
                "a considerably longer sentence, with punctuation; and a clause!",
                "it's 3.14 — naïve café",
            ],
            padding=True,
            return_tensors="pt",
        ),  # right-padded batch
    ]
    for enc in cases:
        with torch.no_grad():
            mine = ours(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
            theirs = ref(**enc).last_hidden_state
        valid = enc["attention_mask"].bool()
        torch.testing.assert_close(mine[valid], theirs[valid], atol=1e-4, rtol=0)


def test_minilm_config_preset_matches_released_config(minilm_dir):
    ours = BertModel.from_pretrained(minilm_dir).config
    assert dataclasses.asdict(ours) == dataclasses.asdict(CONFIGS["all-MiniLM-L6-v2"])


def test_name_table_maps_every_parameter_to_a_released_name():
    names = {released_name(n) for n in BertModel(TINY).state_dict()}
    assert "encoder.layer.1.attention.output.LayerNorm.weight" in names
    assert "embeddings.word_embeddings.weight" in names
    assert len(names) == len(BertModel(TINY).state_dict())


# ----------------------------------------------------------------------------------------------
# The hooks skimming uses


@pytest.mark.parametrize(
    "attn_impl", ["sdpa", "eager"]
)  # CPU sdpa: per sequence; eager: padded grid
def test_packed_varlen_layer_equals_padded_layer_at_real_tokens(attn_impl):
    model = BertModel(dataclasses.replace(TINY, attn_impl=attn_impl)).eval()
    ids, mask, types = batch(TINY)
    lengths = mask.sum(1)
    with torch.no_grad():
        h = model.embed(ids, types)
        padded = model.layers[0](h, mask)
        varlen = VarLen(lengths)
        packed = model.layers[0](h[mask.bool()], varlen=varlen)  # (N, C)
    torch.testing.assert_close(packed, padded[mask.bool()], atol=1e-6, rtol=0)
    torch.testing.assert_close(varlen.pad(packed)[mask.bool()], packed, atol=0, rtol=0)


def test_float_key_mask_with_gradient_equals_removing_the_masked_tokens():
    cfg = TINY
    model = BertModel(cfg).eval()
    h = torch.randn(2, 7, cfg.hidden_size)
    keep = torch.tensor([[1, 0, 1, 1, 0, 1, 1], [1, 1, 0, 0, 1, 0, 0]], dtype=torch.float32)
    soft = torch.full_like(keep, 0.5, requires_grad=True)
    key_mask = keep + (soft - soft.detach())  # exactly `keep` in value, differentiable
    out = model.layers[0](h, key_mask)
    for b in range(2):
        kept = keep[b].bool()
        alone = model.layers[0](h[b : b + 1, kept])
        torch.testing.assert_close(out[b, kept], alone[0], atol=1e-5, rtol=0)
    out[:, 0].sum().backward()
    assert soft.grad.abs().sum() > 0, "no gradient reached the key mask"


def test_sequence_longer_than_positions_is_refused_with_advice():
    with pytest.raises(ValueError, match="longer than the model's 64 positions"):
        BertModel(TINY)(torch.zeros(1, 65, dtype=torch.long))


# ----------------------------------------------------------------------------------------------
# Bad input


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        BertModel.from_pretrained(tmp_path)


def test_truncated_safetensors_names_the_file(tmp_path):
    folder = save_as_folder(reference_tiny(), tmp_path / "m")
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated"):
        BertModel.from_pretrained(folder)


def test_corrupt_safetensors_header_is_refused(tmp_path):
    folder = save_as_folder(reference_tiny(), tmp_path / "m")
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:12] = b"\xff\xfe{{"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_safetensors(path)


def test_checkpoint_of_another_size_names_tensor_and_shapes(tmp_path):
    folder = save_as_folder(reference_tiny(), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["intermediate_size"] = 41  # config says one size, the tensors another
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError, match=r"intermediate.dense.weight has shape \(37, 32\).*\(41, 32\)"
    ):
        BertModel.from_pretrained(folder)


def test_unknown_tensor_is_not_silently_dropped(tmp_path):
    ref = reference_tiny()
    folder = save_as_folder(ref, tmp_path / "m")
    state = read_safetensors(folder / "model.safetensors")
    state["encoder.layer.0.mystery.weight"] = torch.zeros(3)
    write_safetensors(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="mystery"):
        BertModel.from_pretrained(folder)


def test_not_a_local_folder_and_no_network_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIMBERT_CACHE", str(tmp_path))
    monkeypatch.setenv("SKIMBERT_HUB", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(RuntimeError, match="pass the local folder"):
        resolve_model_dir("someone/some-bert")
    assert not list(tmp_path.rglob("*.partial")), "a failed download left a partial file"


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
    model = BertModel.from_pretrained("org/tiny-bert")
    folder = tmp_path / "cache" / "models" / "org--tiny-bert"
    assert (folder / "model.safetensors").is_file() and (folder / "vocab.txt").is_file()
    first = len(_Hub.requests)
    again = BertModel.from_pretrained("org/tiny-bert")
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
    BertModel.from_pretrained("org/tiny-bert")  # the next try completes


def test_hub_without_the_model_says_so(hub):
    with pytest.raises(CheckpointError, match="no config.json"):
        resolve_model_dir("org/not-there")
