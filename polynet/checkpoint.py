"""Checkpoints: a model's weights and how to rebuild it, in one safetensors file.

A checkpoint is a `safetensors <https://huggingface.co/docs/safetensors>`_ file (no pickle:
loading one never runs code). Its tensors are the model's ``state_dict`` (on CPU, contiguous);
its metadata header holds JSON strings:

==================  =========================================================================
key                 value
==================  =========================================================================
``polynet_format``  the format version, an integer (this polynet writes and reads 1)
``architecture``    the builder's name (``"SLNN"``, ``"HybridNet"``, ``"ConvSLNN"``)
``config``          the builder's arguments, so :func:`polynet.nets.build` rebuilds the model
``sha256``          SHA-256 of the tensors (names, dtypes, shapes and bytes), to catch damage
anything else       the caller's metadata (data set, standardizers, history, metrics), JSON
==================  =========================================================================

Examples
--------
>>> import tempfile, torch
>>> from polynet import SLNN
>>> net = SLNN(3, [4], 2).eval()
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = save(net, f"{tmp}/model.safetensors", metadata={"note": "demo"})
...     ckpt = load_checkpoint(path)
>>> ckpt.metadata, ckpt.architecture
({'note': 'demo'}, 'SLNN')
>>> x = torch.randn(5, 3)
>>> torch.equal(ckpt.model(x), net(x))
True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import nn

from polynet.atomic import write_bytes_atomic
from polynet.errors import CheckpointError
from polynet.nets import ARCHITECTURES, build

__all__ = [
    "Checkpoint",
    "save",
    "load",
    "load_checkpoint",
    "read_metadata",
    "check_saveable",
    "describe_file",
    "FORMAT_VERSION",
]

logger = logging.getLogger(__name__)

#: The format version this polynet writes; it reads every version up to this one.
FORMAT_VERSION = 1

#: The file name ``training.fit`` and the CLI use inside an output directory.
DEFAULT_NAME = "model.safetensors"

_RESERVED = ("polynet_format", "architecture", "config", "sha256", "header_sha256")

# Upgrades from version v to v + 1, applied in turn: {v: f(header, tensors) -> (header, tensors)}.
_UPGRADES: dict[int, Any] = {}


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint.

    Attributes
    ----------
    model : nn.Module
        The rebuilt model, weights loaded, in evaluation mode.
    metadata : dict
        The caller's metadata, JSON-decoded (data set, standardizers, history, metrics, ...).
    path : Path
        The file it was read from.
    architecture : str
        The builder's name.
    config : dict
        The builder's arguments.
    format_version : int
        The format version of the file (before any upgrade).
    """

    model: nn.Module
    metadata: dict[str, Any]
    path: Path
    architecture: str
    config: dict[str, Any]
    format_version: int


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (Path, torch.device, torch.dtype)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _to_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"cannot store {what} in a checkpoint: {exc}; metadata values must be JSON values "
            "(numbers, strings, lists, dicts; numpy arrays and tensors are converted)."
        ) from exc


def _tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _header_digest(header: dict[str, str]) -> str:
    """SHA-256 of the header's entries (config, metadata) but its own: the tensors' digest
    does not cover a damaged standardiser or data set name."""
    entries = sorted((k, v) for k, v in header.items() if k != "header_sha256")
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def _check_header(path: Path, header: dict[str, str]) -> None:
    if "header_sha256" not in header:  # written before the header had a digest
        return
    try:
        stored = json.loads(header["header_sha256"])
    except json.JSONDecodeError:
        stored = None
    if stored != _header_digest(header):
        raise CheckpointError(
            f"{str(path)!r} is damaged or was modified after it was written: its config and "
            "metadata do not match the SHA-256 in its header. Restore the file or train the "
            "model again."
        )


def _layout_mismatch(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]
) -> list[str]:
    problems = []
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    for name in sorted(set(expected) & set(found)):
        a, b = tuple(expected[name].shape), tuple(found[name].shape)
        if a != b:
            problems.append(f"{name} has shape {b} but the config gives {a}")
    return problems


def check_saveable(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """The model's ``(architecture, config)``, or a :class:`CheckpointError` if it has none.

    ``training.fit`` calls this before training, so a run with ``out=`` cannot end unsaved.
    """
    architecture = getattr(model, "architecture", None)
    config = getattr(model, "config", None)
    if architecture not in ARCHITECTURES or not isinstance(config, dict):
        raise CheckpointError(
            f"cannot save a {type(model).__name__}: a checkpoint rebuilds the model from its "
            "builder's config, and this model has none. Build it with a polynet builder (SLNN, "
            "HybridNet, ConvSLNN), or save its weights alone with "
            "safetensors.torch.save_file(model.state_dict(), path)."
        )
    return architecture, config


def save(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and ``metadata`` to a safetensors checkpoint, atomically.

    The file is written to a temporary file in the same directory, flushed to disk and renamed
    over ``path``, so a crash never leaves a partial checkpoint under the real name. Parent
    directories are created.

    Parameters
    ----------
    model : nn.Module
        A model made by a polynet builder (:class:`~polynet.SLNN`, :class:`~polynet.HybridNet`,
        :class:`~polynet.ConvSLNN`), on any device.
    path : str or path-like
        Where to write (conventionally ``*.safetensors``).
    metadata : dict, optional
        JSON-serialisable values stored under their keys (numpy values are converted).

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    CheckpointError
        For a model without a polynet ``config``, a model changed after it was built, metadata
        that is not JSON, a reserved metadata key, or a write that fails.
    """
    architecture, config = check_saveable(model)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # Rebuild from the config (on CPU: the meta device's first random init costs seconds) so
    # a model edited after it was built is refused now, not when someone tries to load it.
    reference = build(architecture, config).state_dict()
    problems = _layout_mismatch(reference, tensors)
    if problems:
        raise CheckpointError(
            f"the {architecture} no longer matches its config ({'; '.join(problems)}): it was "
            "changed after it was built, so it could not be rebuilt from the checkpoint. Build "
            "the changed model with a builder, or save its state_dict with safetensors."
        )
    user = dict(metadata or {})
    reserved = sorted(set(user) & set(_RESERVED))
    if reserved:
        raise CheckpointError(
            f"metadata keys {reserved} are reserved for the checkpoint format; rename them."
        )
    header = {
        "polynet_format": str(FORMAT_VERSION),
        "architecture": architecture,
        "config": _to_json(config, "the model config"),
        "sha256": _tensor_digest(tensors),
    }
    for key, value in user.items():
        if not isinstance(key, str):
            raise CheckpointError(f"metadata keys must be strings, got {key!r}.")
        header[key] = _to_json(value, f"metadata[{key!r}]")
    # A JSON string, so a polynet without this check reads it as one more metadata entry.
    header["header_sha256"] = json.dumps(_header_digest(header))
    blob = safetensors.torch.save(tensors, metadata=header)
    path = Path(path)
    _write_atomic(path, blob)
    logger.info("saved %s checkpoint to %s (%d bytes)", architecture, path, len(blob))
    return path


def _write_atomic(path: Path, blob: bytes) -> None:
    try:
        write_bytes_atomic(path, blob)
    except OSError as exc:
        raise CheckpointError(
            f"cannot write checkpoint {str(path)!r}: {exc.strerror or exc}; nothing was "
            "written (any earlier file there is unchanged). Check that the directory is "
            "writable and has space."
        ) from exc
    # Make the rename itself durable (POSIX); not possible everywhere, and not essential.
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _resolve_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.is_dir() and (path / DEFAULT_NAME).is_file():
        return path / DEFAULT_NAME
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {str(path)!r}; check the path, or train one with "
            f"`polynet train ... --out DIR`, which writes DIR/{DEFAULT_NAME}."
        )
    return path


def _read_header(path: Path, blob: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors blob (already validated by safetensors)."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    return header.get("__metadata__") or {}


def _format_version(path: Path, header: dict[str, str]) -> int:
    if "polynet_format" not in header:
        raise CheckpointError(
            f"{str(path)!r} is a safetensors file but not a polynet checkpoint (its metadata "
            "has no 'polynet_format'); load plain weights with safetensors.torch.load_file() "
            "and model.load_state_dict()."
        )
    raw = header["polynet_format"]
    try:
        version = int(raw)
    except ValueError:
        raise CheckpointError(
            f"{str(path)!r} has format version {raw!r}, which is not an integer; the header was "
            "damaged or edited. This polynet reads format versions 1 to "
            f"{FORMAT_VERSION}."
        ) from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint format version {version}, newer than this polynet "
            f"reads (version {FORMAT_VERSION}); upgrade polynet (pip install -U polynet)."
        )
    if version < 1:
        raise CheckpointError(
            f"{str(path)!r} has unknown checkpoint format version {version}; this polynet "
            f"reads format versions 1 to {FORMAT_VERSION}."
        )
    return version


def _decode_user(path: Path, header: dict[str, str]) -> dict[str, Any]:
    user = {}
    for key, raw in header.items():
        if key in _RESERVED:
            continue
        try:
            user[key] = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CheckpointError(
                f"{str(path)!r}: metadata entry {key!r} is not valid JSON ({exc}); the header "
                "was damaged or edited."
            ) from exc
    return user


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The caller's metadata of a checkpoint, without loading the model.

    Parameters
    ----------
    path : str or path-like
        The checkpoint file, or a directory holding ``model.safetensors``.

    Raises
    ------
    CheckpointError
        When the file is missing, not a polynet checkpoint, or its header is damaged.
    """
    path = _resolve_path(path)
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
    except (safetensors.SafetensorError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from exc
    _check_header(path, header)
    _format_version(path, header)
    return _decode_user(path, header)


def describe_file(path: str | os.PathLike[str]) -> str | None:
    """What a file that is not a polynet checkpoint is, and what to do with it; None if unknown.

    Recognises ``torch.save`` files (zip or legacy pickle), ``torch.export`` archives, ONNX
    files and plain safetensors files.
    """
    import zipfile

    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    name = repr(str(path))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.endswith("data.pkl") for n in names):
            return (
                f"{name} is a torch.save file (a pickled state_dict or model), not a polynet "
                "checkpoint. Give polynet your class and this file: on the command line "
                "`polynet expand mymodule:Net --state-dict FILE --init-args '{...}'`; in Python "
                "build the model, load_state_dict(torch.load(FILE, weights_only=True)), and call "
                "polynet.expand(model), or polynet.save(model, 'model.pt2', example_input) to "
                "get a file every polynet command reads."
            )
        if any("/models/" in n or n.startswith("models/") for n in names):
            return f"{name} is a torch.export archive; name it with the suffix .pt2."
        return None
    if head[:1] == b"\x80":
        return (
            f"{name} is a Python pickle (torch.save of the legacy format), not a polynet "
            "checkpoint; polynet does not unpickle files. Load it into your class and re-save it "
            "with polynet.save(model, 'model.pt2', example_input), or pass your class on the "
            "command line: `polynet expand mymodule:Net --state-dict FILE`."
        )
    if len(head) >= 8 and head[8:9] == b"{":
        return None  # safetensors: checkpoint.py explains a plain one
    if head[:2] == b"\x08" or path.suffix == ".onnx":
        return f"{name} looks like an ONNX model; name it with the suffix .onnx."
    return None


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    other = describe_file(path)
    if other is not None:
        return CheckpointError(other)
    return CheckpointError(
        f"{str(path)!r} is not a readable safetensors checkpoint ({exc}); the file is "
        "truncated, damaged or of another format. Re-save the model, or restore the file."
    )


def load_checkpoint(
    path: str | os.PathLike[str], device: torch.device | str | None = None
) -> Checkpoint:
    """Read a checkpoint: rebuild its model, load the weights, decode the metadata.

    Parameters
    ----------
    path : str or path-like
        The checkpoint file, or a directory holding ``model.safetensors``.
    device : torch.device or str or None, default=None
        Where to put the model; None means CPU. A checkpoint saved from CUDA loads on CPU.

    Returns
    -------
    Checkpoint
        The model (in evaluation mode, in the dtype it was saved in) and its metadata.

    Raises
    ------
    CheckpointError
        When the file is missing, truncated, damaged or tampered with, of a newer format, or
        its weights do not fit its config.
    """
    path = _resolve_path(path)
    if device is None:
        target = torch.device("cpu")
    else:
        from polynet.training import resolve_device

        target = resolve_device(device)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r}: {exc.strerror or exc}. Check its "
            "permissions, or restore the file."
        ) from exc
    try:
        tensors = safetensors.torch.load(blob)
    except (safetensors.SafetensorError, ValueError, RuntimeError) as exc:
        raise _unreadable(path, exc) from exc
    header = _read_header(path, blob)
    _check_header(path, header)
    version = _format_version(path, header)
    for v in range(version, FORMAT_VERSION):
        header, tensors = _UPGRADES[v](header, tensors)
    if header.get("sha256") != _tensor_digest(tensors):
        raise CheckpointError(
            f"{str(path)!r} is damaged or was modified after it was written: its tensors do "
            "not match the SHA-256 in its header. Restore the file or train the model again."
        )
    architecture = header.get("architecture")
    if architecture not in ARCHITECTURES:
        raise CheckpointError(
            f"{str(path)!r} holds an unknown architecture {architecture!r}; this polynet "
            f"builds {sorted(ARCHITECTURES)}. Upgrade polynet or check the file."
        )
    try:
        config = json.loads(header.get("config", ""))
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{str(path)!r}: its config is not valid JSON ({exc}); the header was damaged or "
            "edited."
        ) from exc
    floats = [t.dtype for t in tensors.values() if t.is_floating_point()]
    dtype = floats[0] if floats else None
    try:
        model = build(architecture, config, device="cpu", dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{str(path)!r}: its {architecture} config cannot be built ({exc}); the header was "
            "damaged or edited, or it comes from another polynet version."
        ) from exc
    problems = _layout_mismatch(model.state_dict(), tensors)
    if problems:
        raise CheckpointError(
            f"{str(path)!r}: the weights do not match the {architecture} config "
            f"({'; '.join(problems)}). The file was written by something other than "
            "polynet.save, or edited; re-save the model with polynet.save."
        )
    model.load_state_dict(tensors, strict=True)
    model.eval().to(target)
    return Checkpoint(
        model=model,
        metadata=_decode_user(path, header),
        path=path,
        architecture=architecture,
        config=config,
        format_version=version,
    )


def load(path: str | os.PathLike[str], device: torch.device | str | None = None) -> nn.Module:
    """Load a model from a checkpoint, in evaluation mode, ready to use.

    This is ``polynet.load``; :func:`load_checkpoint` also returns the metadata.

    Parameters
    ----------
    path : str or path-like
        The checkpoint file, or a directory holding ``model.safetensors``.
    device : torch.device or str or None, default=None
        Where to put the model; None means CPU.

    Raises
    ------
    CheckpointError
        When the file is missing, damaged, of a newer format, or does not fit its config.
    """
    return load_checkpoint(path, device).model
