"""Model cards and the registry of models shipped in ``foveal/models/``.

A model is an ONNX file obeying docs/MODEL_CONTRACT.md plus a JSON card describing its input policy, output stride,
provenance and measured metrics. Shipped models are addressed by name; a user's ONNX file by path, with its card
read from ``<file>.json`` beside it when present, else from the defaults below plus overrides.
"""
from __future__ import annotations

import json
import math
import os
import reprlib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from .cpu import MAX_BLUR_SIGMA
from .errors import InputError, ModelError
from .fileio import read_input, stream_sha256

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = "foveal-lite0"
# Reduced-precision graphs a card may list beside its fp32 graph (engine/quantize.py makes them).
VARIANTS = ("fp16", "int8")
# Cards are small JSON files (the shipped ones are a few KiB with their metrics); more is not a card.
MAX_CARD_BYTES = 16 << 20
# What Engine(precision=...) accepts: "auto" picks each backend's fastest graph.
PRECISIONS = ("auto", "fp32", *VARIANTS)
# What precision="auto" runs on each backend that has a faster graph than fp32 (others run fp32).
AUTO_PRECISIONS = {"onnxruntime": "int8", "tensorrt": "fp16"}
# Graphs too coarse for decisions taken at compare's 0.5 pp material-change threshold (compare verdicts, what-if
# searches and their recommendations): foveal-lite0's int8 graph changed 20 of 340 A/B verdicts and 113 of 1,835
# per-element calls against its fp32 graph; the fp16 graph 3 and 6, all within 0.03 pp of the threshold
# (benchmarks/decision_agreement.py, docs/MODEL.md).  For decisions "auto" runs fp32 instead of these, and a
# decision made on one says so.
COARSE_FOR_DECISIONS = ("int8",)

# The input a card may describe but foveal feeds only one way (RGB, NCHW float32, edge padding): a card asking for
# another is refused, for it would be ignored and the network fed what it does not expect.
FIXED_INPUT = {"layout": "NCHW", "dtype": "float32", "color": "RGB", "pad_mode": "edge"}

# What a bare user ONNX file is assumed to be when it comes without a card (documented in MODEL_CONTRACT.md).
_BARE_ONNX_CARD: dict[str, Any] = {
    "version": "unknown",
    "input": {"name": "image", "layout": "NCHW", "dtype": "float32", "color": "RGB", "working_size": 384,
              "pad_multiple": 32, "pad_mode": "edge", "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0]},
    "output": {"name": "log_density", "stride": 8},
    "postprocess": {"blur_sigma": 0.0},
}


@dataclass(frozen=True)
class InputSpec:
    name: str
    working_size: int
    pad_multiple: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class ModelCard:
    """A model's identity and contract: what to feed it and how to read what it returns."""

    name: str
    version: str
    onnx_path: Path
    sha256: str
    input: InputSpec
    output_name: str
    stride: int
    blur_sigma: float
    raw: dict = field(repr=False, compare=False, hash=False)
    precision: str = "fp32"
    card_path: Path | None = None  # the JSON card read; None for a bare ONNX file (defaults assumed)

    @property
    def shipped(self) -> bool:
        """Whether foveal ships this card (in its models folder), rather than a user's."""
        return _shipped(self.card_path)

    @property
    def weights_sha256(self) -> str | None:
        """The sha256 the card records for its ``.safetensors`` weights (``foveal finetune`` writes it), if any."""
        weights = self.raw.get("weights")
        return weights.get("sha256") if isinstance(weights, dict) else None

    def check_unchanged(self) -> None:
        """ModelError unless the graph file is still the one this card was loaded with: sessions made later (the
        lanes of a first batch, a forked child's) read the file again, and one swapped since ran under the old sha256
        in every map's provenance."""
        try:
            sha = file_sha256(self.onnx_path)
        except OSError as exc:
            raise ModelError(f"{self.onnx_path}: {exc.strerror or exc}; the model file was there when it was loaded: "
                             "restore it, or make a new Engine") from None
        if sha != self.sha256:
            raise ModelError(f"{self.onnx_path.name}: changed since it was loaded (sha256 now {sha[:12]}…, loaded "
                             f"{self.sha256[:12]}…); make a new Engine to run it")

    @property
    def precisions(self) -> tuple[str, ...]:
        """Graphs shipped for this model: ``"fp32"``, plus ``"fp16"`` and ``"int8"`` where the card lists them."""
        return ("fp32", *(p for p in VARIANTS if isinstance(self.raw.get(p), dict)))

    def variant(self, precision: str) -> "ModelCard":
        """This model as the graph of ``precision``: the same card, pointing at that graph's file and sha256.

        Variants share the model's name and contract; only the weights' arithmetic differs (docs/PERFORMANCE.md).
        """
        if precision == self.precision:
            return self
        entry = self.raw.get(precision) if precision in VARIANTS else None
        if not isinstance(entry, dict) or not isinstance(entry.get("onnx"), str):
            raise ModelError(f"model {self.name!r} ships no {precision} graph (it has: {', '.join(self.precisions)})")
        path = self.onnx_path.parent / entry["onnx"]
        sha = _checked_sha256(path, entry.get("sha256"), self.card_path, f"{precision}.sha256")
        return replace(self, onnx_path=path, sha256=sha, precision=precision)


def available_models() -> list[str]:
    """Names of the models shipped inside the package."""
    return sorted(p.stem for p in MODELS_DIR.glob("*.json") if (MODELS_DIR / f"{p.stem}.onnx").is_file())


def load_card(model: str | os.PathLike = "default") -> ModelCard:
    """Resolve ``"default"``, a shipped model's name, a path to an ``.onnx`` (or its ``.json`` card), or a model folder
    holding one card beside its graph (what ``foveal finetune`` writes)."""
    if not isinstance(model, (str, os.PathLike)):
        raise ModelError(f"model: expected a model name or a path to an .onnx file, got {type(model).__name__}")
    text = os.fspath(model)
    if not isinstance(text, str) or "\0" in text:
        raise ModelError(f"model: expected a model name or a path to an .onnx file, got {text!r}")
    if not text.strip():
        raise ModelError(f"model: no model named; use one of {', '.join(_known_models())} or a path to an .onnx file")
    if text == "default":
        text = DEFAULT_MODEL
    if text in available_models():
        return _load_shipped(text)
    path = Path(text).absolute()  # sessions made later (lanes, a forked child's) read it from any working folder
    if path.is_dir():
        path = _card_in_folder(path)
    if path.suffix == ".json" and os.path.lexists(path):
        raw = _read_json(path)
        onnx = raw.get("onnx", path.with_suffix(".onnx").name)
        if not isinstance(onnx, str):
            raise ModelError(f"model card {path}: \"onnx\" must be a file name, got {onnx!r}")
        return _card_from(raw, path.parent / onnx, card_path=path)
    if path.suffix in (".onnx", ".json") or path.exists():
        if not path.exists():
            raise ModelError(f"model file not found: {text}")
        if not path.is_file():
            raise ModelError(f"model {text} is not a regular file; pass a model's .onnx or .json file, or its name")
        card_path = path.with_suffix(".json")
        if os.path.lexists(card_path):  # whatever it is: a card that cannot be read is an error, not "no card"
            return _card_from(_read_json(card_path), path, card_path=card_path)
        _refuse_variant(path)
        return _card_from({**_BARE_ONNX_CARD, "name": path.stem}, path)
    raise ModelError(f"unknown model {text!r}: use one of {', '.join(_known_models())} or a path to an .onnx file")


def _known_models() -> list[str]:
    return available_models() or ["(none shipped)"]


def _card_in_folder(folder: Path) -> Path:
    """The one card (``<name>.json`` beside ``<name>.onnx``) of a model folder, as ``foveal finetune`` writes."""
    cards = sorted(p for p in folder.glob("*.json") if p.with_suffix(".onnx").is_file())
    if len(cards) != 1:
        raise ModelError(f"model folder {folder}: expected one <name>.json card beside its <name>.onnx, found "
                         f"{len(cards)}; pass the .onnx or .json path instead")
    return cards[0]


def _refuse_variant(path: Path) -> None:
    """A ModelError when a card in ``path``'s folder lists it as its int8 or fp16 graph: loaded as a bare ONNX file
    it would get the bare defaults' preprocessing and no identity, not its card's."""
    for card_path in sorted(path.parent.glob("*.json")):
        if not card_path.with_suffix(".onnx").is_file():  # a model's card sits beside its fp32 graph
            continue
        try:
            raw = _read_json(card_path)
        except ModelError:  # not a card this file could belong to
            continue
        for precision in VARIANTS:
            entry = raw.get(precision)
            if isinstance(entry, dict) and entry.get("onnx") == path.name:
                model = card_path.stem if card_path.resolve().parent == MODELS_DIR else str(card_path)
                raise ModelError(f"{path.name} is the {precision} graph of the model {model!r}, not a model of its "
                                 f"own: load {model!r} with precision={precision!r} (CLI: --model {model} "
                                 f"--precision {precision})")


@lru_cache(maxsize=None)
def _load_shipped(name: str) -> ModelCard:
    card_path = MODELS_DIR / f"{name}.json"
    raw = _read_json(card_path)
    return _card_from(raw, MODELS_DIR / raw.get("onnx", f"{name}.onnx"), card_path=card_path)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return stream_sha256(fh)


def _read_json(path: Path) -> dict:
    try:
        raw = json.loads(read_input(path, MAX_CARD_BYTES, "model card").decode("utf-8"))
    except InputError as exc:
        raise ModelError(str(exc)) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ModelError(f"cannot read model card {path}: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(raw, dict):
        raise ModelError(f"model card {path}: expected a JSON object, got {type(raw).__name__}")
    return raw


def _checked_sha256(path: Path, expected: object, card_path: Path | None, field: str = "sha256") -> str:
    """The file's sha256; a ModelError when it is missing or differs from the sha256 its card states in ``field``.

    Every graph whose card states a sha256 is checked, shipped or not: a fine-tuned folder's graph swapped for
    another would otherwise run under the card's name, version and preprocessing.  The file is hashed anyway (its
    sha256 is in every map's provenance), so the check costs nothing more.
    """
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    sha = file_sha256(path)
    if expected is None or (isinstance(expected, str) and expected.lower() == sha):  # hex in either case
        return sha
    where = f"{card_path.name} {field}" if card_path is not None else field
    mismatch = f"{path.name}: sha256 {sha[:12]}… does not match its card ({where}: {str(expected)[:12]}…)"
    if _shipped(card_path):  # the card, not the graph: a user's card may link a shipped graph
        raise ModelError(f"{mismatch}; the package is damaged: reinstall foveal")
    raise ModelError(f"{mismatch}; the file changed after its card was written (swapped or damaged): restore it, or "
                     f"if the change was intended set the card's {field} to {sha} or remove it")


def _shipped(card_path: Path | None) -> bool:
    return card_path is not None and card_path.resolve().parent == MODELS_DIR


def _section(raw: dict, key: str, required: bool = True) -> dict:
    """``raw[key]`` as a JSON object ({} when optional and absent); a KeyError or TypeError names the key."""
    if key not in raw and not required:
        return {}
    value = raw[key]
    if not isinstance(value, dict):
        raise TypeError(f'"{key}" must be a JSON object, got {type(value).__name__}')
    return value


def _card_from(raw: dict, onnx_path: Path, card_path: Path | None = None) -> ModelCard:
    sha = _checked_sha256(onnx_path, raw.get("sha256"), card_path)
    try:
        spec, output = _section(raw, "input"), _section(raw, "output")
        for key, fed in FIXED_INPUT.items():
            if spec.get(key, fed) != fed:
                raise ValueError(f"input.{key} must be {_shown(fed)}, the only one foveal feeds, got "
                                 f"{_shown(spec[key])}")
        mean, std = _three(spec["mean"], "input.mean"), _three(spec["std"], "input.std")
        if min(std) <= 0:
            raise ValueError(f"input.std must be > 0, got {list(std)}")
        blur_sigma = _real(_section(raw, "postprocess", required=False).get("blur_sigma", 0.0),
                           "postprocess.blur_sigma")
        if not 0.0 <= blur_sigma <= MAX_BLUR_SIGMA:
            raise ValueError(f"postprocess.blur_sigma must be in [0, {MAX_BLUR_SIGMA:g}], got {blur_sigma}")
        card = ModelCard(
            name=_text(raw.get("name", onnx_path.stem), "name"),
            version=_text(raw.get("version", "unknown"), "version"),
            onnx_path=onnx_path,
            sha256=sha,
            input=InputSpec(_text(spec.get("name", "image"), "input.name"), _whole(spec["working_size"], "input.working_size"),
                            _whole(spec["pad_multiple"], "input.pad_multiple"), mean, std),
            output_name=_text(output.get("name", "log_density"), "output.name"),
            stride=_whole(output["stride"], "output.stride"),
            blur_sigma=blur_sigma,
            raw=raw,
            card_path=card_path,
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ModelError(f"model card for {onnx_path.name} is malformed ({type(exc).__name__}: {exc}); "
                         "see docs/MODEL_CONTRACT.md") from None
    if card.input.working_size > MAX_WORKING_SIZE:
        raise ModelError(f"model card for {onnx_path.name}: input.working_size {card.input.working_size} is over "
                         f"{MAX_WORKING_SIZE} pixels; a network input that large cannot be allocated in practice")
    if (card.input.pad_multiple <= 0 or card.input.working_size < card.input.pad_multiple or card.stride <= 0
            or card.input.pad_multiple % card.stride):
        raise ModelError(f"model card for {onnx_path.name}: need working_size >= pad_multiple > 0 and pad_multiple "
                         f"divisible by stride > 0, got {card.input.working_size}/{card.input.pad_multiple}/"
                         f"{card.stride}")
    if card.input.working_size == card.stride:  # then pad_multiple is too: every image is one cell, a uniform map
        raise ModelError(f"model card for {onnx_path.name}: working_size, pad_multiple and stride are all "
                         f"{card.stride}, so every image gets a 1x1 output grid (a uniform map); raise working_size "
                         "to several strides")
    return card


#: The longest network input side a card may ask for: 8192² float32 RGB is already 768 MiB per image.
MAX_WORKING_SIZE = 8192


def _real(value: object, field: str) -> float:
    """A card's number: a finite JSON number (true, "2" or null are refused, not converted)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be a number, got {_shown(value)}")
    number = float(value)  # an integer too large for a float is an OverflowError
    if not math.isfinite(number):
        raise ValueError(f"{field} must be finite, got {number}")
    return number


def _three(value: object, field: str) -> tuple[float, float, float]:
    """A card's per-channel numbers: a JSON list of 3 numbers (a string such as "255" is not 3 numbers)."""
    if not isinstance(value, list) or len(value) != 3:
        raise TypeError(f"{field} must be a list of 3 numbers, got {_shown(value)}")
    return _real(value[0], field), _real(value[1], field), _real(value[2], field)


def _text(value: object, field: str) -> str:
    """A card's name, version or tensor name: non-empty text (null would otherwise name a model 'None')."""
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"{field} must be non-empty text, got {_shown(value)}")
    return value


def _shown(value: object) -> str:
    """``value`` as a card error quotes it, kept short: a card may hold anything."""
    if isinstance(value, (list, dict)):
        return reprlib.repr(value)
    text = json.dumps(value)  # as the card spells it: "255", true, null
    return text if len(text) <= 40 else text[:40] + "…"


def _whole(value: object, field: str) -> int:
    """A card's size field: a JSON integer (a float such as 8.5 or a string is refused, not truncated)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be a whole number, got {_shown(value)}")
    if not 0 < value <= 1 << 16:
        raise ValueError(f"{field} must be a size between 1 and 65536, got {value}")
    return value
