"""Benchmark a saliency model on an eye-tracking dataset: per-image and mean metrics (``foveal eval``).

Every metric is computed per image at the image's own resolution (:mod:`foveal.metrics`) and averaged over
images, the MIT benchmark's convention.  Fixation metrics use the dataset's fixations; CC, KLD and SIM use its
fixation density maps; IG is measured against the fitted centre-bias baseline; shuffled AUC takes its negatives
from the fixations on the other images of the evaluated split, scaled to each image's size.

Models predict fixation densities, so by default each metric scores its own map of that density
(:func:`foveal.metrics.metric_map`, the MIT/Tübingen protocol of Kümmerer et al. 2018); ``maps="raw"`` scores the
density itself with every metric, as a benchmark of classic (non-probabilistic) saliency maps would.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from . import metrics as M
from ._version import __version__
from .errors import FovealError, InputError, ModelError, prefixed, real_number
from .imageio import DEFAULT_MAX_PIXELS
from .progress import progress as progress_bar

__all__ = ["CENTRE_BIAS_MODEL", "HUMAN_MODEL", "HUMAN_METRICS", "MAPS", "EvalResult", "evaluate",
           "check_metrics", "default_metrics", "human_consistency"]

CENTRE_BIAS_MODEL = "centre-bias"
HUMAN_MODEL = "human"
# Metrics with a meaning for a half's empirical density map; IG and sAUC need a model's full density (log p).
HUMAN_METRICS = ("AUC-Judd", "AUC-Borji", "NSS", "CC", "SIM")
MAPS = ("metric", "raw")
_FIXATION_METRICS = ("AUC-Judd", "AUC-Borji", "sAUC", "NSS", "IG")
_LOWER_IS_BETTER = ("KLD",)
#: Most bootstrap resamples confidence_intervals draws, and how many image picks it holds in memory at once.
MAX_BOOT = 1_000_000
BOOT_PICKS_PER_BLOCK = 1 << 22


@dataclass
class EvalResult:
    """Metrics of one model on one dataset split.

    ``per_image[metric]`` holds one value per image, in ``images`` order; :attr:`aggregate` is their mean.
    """

    model: str
    dataset: str
    images: list[str]
    fixations: list[int]
    per_image: dict[str, np.ndarray]
    provenance: dict[str, Any] = field(default_factory=dict)
    maps: str = "metric"

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.per_image)

    @property
    def aggregate(self) -> dict[str, float]:
        """Mean of each metric over the images."""
        return {name: float(values.mean()) for name, values in self.per_image.items()}

    def confidence_intervals(self, level: float = 0.95, n_boot: int = 2000, seed: int = 0
                             ) -> dict[str, tuple[float, float]]:
        """Percentile-bootstrap interval of each mean, resampling images (seeded: the same result every call).

        A split of 50-70 images measures a model with an uncertainty of the order of the differences between
        good models; these intervals say how much.
        """
        number = real_number(level)
        if number is None or not 0 < number < 1:
            raise InputError(f"level must be a number between 0 and 1 (0.95 for 95 %), got {level!r}")
        _check_whole(n_boot, "n_boot", 1)
        if n_boot > MAX_BOOT:
            raise InputError(f"n_boot must be at most {MAX_BOOT:,} (2000 resamples pin a 95 % interval to about "
                             f"0.1 of its width), got {n_boot:,}")
        check_seed(seed)
        n = len(self.images)
        gen = np.random.default_rng(seed)
        means: dict[str, list[np.ndarray]] = {name: [] for name in self.per_image}
        # Resamples drawn a block at a time: memory bounded for any number of images (one block, and so one draw,
        # up to BOOT_PICKS_PER_BLOCK picks).
        step = max(1, BOOT_PICKS_PER_BLOCK // n)
        for start in range(0, n_boot, step):
            picks = gen.integers(0, n, (min(step, n_boot - start), n))
            for name, values in self.per_image.items():
                means[name].append(values[picks].mean(axis=1))
        tail = (1 - float(number)) / 2 * 100
        return {name: tuple(float(q) for q in np.percentile(np.concatenate(parts), [tail, 100 - tail]))
                for name, parts in means.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: model, dataset, the means, and every image's values."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            "n_images": len(self.images),
            "n_fixations": int(sum(self.fixations)),
            "metrics": self.aggregate,
            "ci95": {m: list(ci) for m, ci in self.confidence_intervals().items()},
            "lower_is_better": [m for m in self.metrics if m in _LOWER_IS_BETTER],
            "conventions": {
                "average": "mean over images of per-image values (MIT benchmark)",
                "fixation_pixel": "(floor(y), floor(x)) of 0-based float coordinates",
                "eps": M.EPS,
                "IG": "bits per fixation over the centre-bias baseline (foveal.metrics.CENTRE_BIAS)",
                "AUC-Borji": "100 splits of uniform pixels, seeded per image",
                "sAUC": "negatives: fixations on the other images of this split, scaled to the image",
                "maps": self.maps,
                "ci95": "percentile bootstrap over images, 2000 resamples, seed 0",
            },
            "provenance": self.provenance,
            "per_image": [
                {"image": name, "fixations": n, **{m: float(v[k]) for m, v in self.per_image.items()}}
                for k, (name, n) in enumerate(zip(self.images, self.fixations))
            ],
        }

    def to_markdown(self) -> str:
        """A Markdown table of the means and their 95 % bootstrap intervals (KLD: lower is better)."""
        names = list(self.metrics)
        head = "| model | dataset | images | " + " | ".join(
            f"{m} ↓" if m in _LOWER_IS_BETTER else m for m in names) + " |"
        rule = "|---|---|---:|" + "---:|" * len(names)
        # round(.., 4) + 0.0 turns a rounded -0.0 (IG of the baseline itself, ~-1e-16) into 0.0
        row = f"| {self.model} | {self.dataset} | {len(self.images)} | " + " | ".join(
            f"{round(self.aggregate[m], 4) + 0.0:.4f}" for m in names) + " |"
        ci = self.confidence_intervals()
        spread = "| (95 % interval) | | | " + " | ".join(
            f"{round(ci[m][0], 3) + 0.0:.3f}–{round(ci[m][1], 3) + 0.0:.3f}" for m in names) + " |"
        return "\n".join((head, rule, row, spread)) + "\n"


def default_metrics(dataset: Any) -> tuple[str, ...]:
    """Every metric the dataset supports: all of them with fixations (sAUC needs two images), else CC/KLD/SIM."""
    if not getattr(dataset, "has_fixations", True):
        return tuple(m for m in M.METRICS if m not in _FIXATION_METRICS)
    if len(dataset) < 2:
        return tuple(m for m in M.METRICS if m != "sAUC")
    return M.METRICS


def evaluate(model: Any, dataset: Any, split: str | None = "test", metrics: Sequence[str] | None = None,
             progress: bool = True, batch_size: int = 8, seed: int = 0, maps: str = "metric") -> EvalResult:
    """Run ``model`` over a dataset split and score every image.

    Args:
        model: a :class:`foveal.Engine`, a model name or ``.onnx`` path (run on the CPU), or ``"centre-bias"``
            for the fitted centre-bias baseline.
        dataset: a :class:`foveal.datasets.Dataset` or a path :func:`foveal.datasets.load_dataset` accepts.
        split: ``"train"``, ``"val"``, ``"test"``, or None for every image.
        metrics: names from :data:`foveal.metrics.METRICS`; default :func:`default_metrics`.
        progress: draw a progress bar on stderr.
        batch_size: images per network batch.
        seed: seeds AUC-Borji's draws (per image, so values do not depend on batching).
        maps: ``"metric"``: each metric scores its own map of the predicted density (CC/KLD/SIM the density
            blurred like the dataset's density maps, sAUC its ratio to the centre bias); ``"raw"``: the density.
    """
    dataset = _split_of(dataset, split, getattr(model, "max_pixels", DEFAULT_MAX_PIXELS))
    names = _check_metrics(metrics, dataset)
    _check_whole(batch_size, "batch_size", 1)
    check_seed(seed)
    if maps not in MAPS:
        raise InputError(f"maps must be one of {', '.join(MAPS)}, got {maps!r}")
    predict, model_name, provenance = _predictor(model)

    fixations = [dataset.fixations(i) for i in range(len(dataset))] if dataset.has_fixations else None
    if fixations is not None:
        _check_inside(dataset, fixations)
        empty = [dataset.ids[i] for i, f in enumerate(fixations) if len(f) == 0]
        if empty and any(m in _FIXATION_METRICS for m in names):
            raise InputError(f"image {empty[0]!r} of {dataset.name} has no fixations; fixation metrics need some "
                             f"(drop the image or choose metrics among CC, KLD and SIM)")
        if "AUC-Judd" in names:
            full = next((i for i, f in enumerate(fixations) if _every_pixel_fixated(f, dataset.shape(i))), None)
            if full is not None:
                raise InputError(f"image {dataset.ids[full]!r} of {dataset.name} has every pixel fixated, so "
                                 "AUC-Judd has no unfixated pixel to rank against (drop the image or leave AUC-Judd "
                                 "out of the metrics)")
    shuffled = _ShuffledNegatives(dataset, fixations) if "sAUC" in names else None

    def predictions():
        for start in range(0, len(dataset), batch_size):
            batch = range(start, min(start + batch_size, len(dataset)))
            for i, prob in zip(batch, predict([dataset.path(i) for i in batch], [dataset.shape(i) for i in batch])):
                if isinstance(prob, FovealError):  # one that names no file gets its image's name
                    raise prob if str(dataset.path(i)) in str(prob) else prefixed(
                        prob, f"image {dataset.ids[i]!r} of {dataset.name}") from None
                yield i, prob

    values = {m: np.empty(len(dataset)) for m in names}
    bar = progress_bar(predictions(), total=len(dataset), label=f"eval {model_name} on {dataset.name}",
                       enabled=progress)
    for i, prob in bar:
        if prob.shape != tuple(dataset.shape(i)):
            (h, w), (dh, dw) = dataset.file_shape(i), dataset.shape(i)
            if prob.shape != (h, w):
                raise ModelError(f"{model_name} returned a {prob.shape} map for the {(h, w)} image "
                                 f"{dataset.ids[i]!r}; maps must have their image's size")
            raise InputError(f"image {dataset.ids[i]!r} of {dataset.name} is {w}x{h}, but the dataset's fixations "
                             f"are on a {dw}x{dh} image; put back the stimulus file that belongs to them (was it "
                             "replaced or resized?)")
        item = _Item(fixations[i] if fixations is not None else None,
                     dataset.density(i) if {"CC", "KLD", "SIM"} & set(names) else None,
                     shuffled(i) if shuffled else None, np.random.default_rng([seed, i]))
        try:
            for m, smap in _maps_for(prob, names, dataset.sigma(i), maps).items():
                values[m][i] = _SCORERS[m](smap, item)
        except InputError as exc:  # a model's map that no metric takes: say whose and of which image
            raise InputError(f"{model_name}'s map of image {dataset.ids[i]!r} of {dataset.name}: {exc}") from None
    counts = [len(f) for f in fixations] if fixations is not None else [0] * len(dataset)
    provenance = {**provenance, "foveal_version": __version__, "seed": seed}
    return EvalResult(model_name, dataset.name, list(dataset.ids), counts, values, provenance, maps)


def _check_inside(dataset: Any, fixations: Sequence[Any]) -> None:
    """A fixation off its image is the dataset's fault (a Dataset built in code; the loaders check theirs): say so
    before any model's map is blamed for it."""
    from .datasets import check_fixations

    for i, fix in enumerate(fixations):
        check_fixations(fix, dataset.shape(i), f"image {dataset.ids[i]!r} of {dataset.name}")


def _every_pixel_fixated(fix: Any, shape: Sequence[int]) -> bool:
    """Whether ``fix`` hits every pixel of an image of ``shape`` (only tiny images can be)."""
    height, width = shape[:2]
    if len(fix) < height * width:
        return False
    row, col = M.pixel_indices(fix.x, fix.y, (height, width))
    return np.unique(row * width + col).size == height * width


def human_consistency(dataset: Any, split: str | None = "test", metrics: Sequence[str] | None = None,
                      repeats: int = 4, seed: int = 0, progress: bool = True) -> EvalResult:
    """Split-half inter-observer consistency: how well half of the viewers predict the other half.

    Per image and repeat, the viewers are split at random into two halves (sizes ``n // 2`` and the rest); the
    density map of one half (the dataset's Gaussian) predicts the other half's fixations and density map, and
    the other way round.  Each image's score is the mean over both directions and ``repeats`` splits.  Maps are
    raw: a half's density map is already the kind of map the metrics compare with.  It is the ceiling a model
    can approach on the same data, underestimated because each map rests on half the viewers (more so where
    viewers are few: a model can score above it on NUS Scene).
    """
    from .datasets import Fixations, gaussian_density

    dataset = _split_of(dataset, split)
    if not dataset.has_fixations:
        raise InputError(f"dataset {dataset.name!r} has density maps only; human consistency needs fixations")
    names = HUMAN_METRICS if metrics is None else _metric_names(metrics)
    unsupported = [m for m in names if m not in HUMAN_METRICS]
    if unsupported or not names:
        raise InputError(f"human consistency scores {', '.join(HUMAN_METRICS)}; got "
                         f"{unsupported[0] if unsupported else '(none)'!r}")
    _check_whole(repeats, "repeats", 1)
    check_seed(seed)
    _check_inside(dataset, [dataset.fixations(i) for i in range(len(dataset))])
    values = {m: np.empty(len(dataset)) for m in names}
    counts = []
    for i in progress_bar(range(len(dataset)), total=len(dataset), label=f"eval {HUMAN_MODEL} on {dataset.name}",
                          enabled=progress):
        fix, shape, sigma = dataset.fixations(i), dataset.shape(i), dataset.sigma(i)
        viewers = np.unique(fix.subject)
        if len(viewers) < 2:
            raise InputError(f"image {dataset.ids[i]!r} of {dataset.name} has fixations of {len(viewers)} viewer(s); "
                             f"human consistency needs two or more (a subject column)")
        # Two streams: the halves must not depend on whether AUC-Borji, which draws too, was asked for.
        splits, draws = np.random.default_rng([seed, i]), np.random.default_rng([seed, i, 1])
        scores: dict[str, list[float]] = {m: [] for m in names}
        for _ in range(repeats):
            first = np.isin(fix.subject, splits.permutation(viewers)[:len(viewers) // 2])
            halves = [Fixations(fix.x[k], fix.y[k], fix.subject[k]) for k in (first, ~first)]
            maps = [gaussian_density(half, shape, sigma) for half in halves]
            for a, b in ((0, 1), (1, 0)):
                item = _Item(halves[b], maps[b], None, draws)
                for m in names:
                    try:
                        scores[m].append(_SCORERS[m](maps[a], item))
                    except InputError as exc:  # a half no metric takes (tiny images): say which image, what to do
                        raise InputError(f"image {dataset.ids[i]!r} of {dataset.name}: {exc} (drop the image or "
                                         f"leave {m} out of the metrics)") from None
        for m in names:
            values[m][i] = float(np.mean(scores[m]))
        counts.append(len(fix))
    provenance = {"model": HUMAN_MODEL, "protocol": "split-half viewers, both directions, raw density maps",
                  "repeats": repeats, "foveal_version": __version__, "seed": seed}
    return EvalResult(HUMAN_MODEL, dataset.name, list(dataset.ids), counts, values, provenance, "raw")


def _split_of(dataset: Any, split: str | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """The dataset (a path is loaded, refusing images over ``max_pixels``) cut to ``split``; an empty result is an
    error."""
    from .datasets import load_dataset

    if isinstance(dataset, (str, os.PathLike)):
        dataset = load_dataset(dataset, max_pixels=max_pixels)
    if split is not None:
        whole, dataset = dataset, dataset.split(split)
        if len(dataset) == 0 < len(whole):
            raise InputError(f"dataset {whole.name!r} has {len(whole)} images, too few for a {split} split "
                             f"(80/10/10 %); evaluate every image (split=None) or add images")
    if len(dataset) == 0:
        raise InputError(f"dataset {dataset.name!r} has no images to evaluate")
    return dataset


def check_seed(seed: Any) -> None:
    """InputError unless ``seed`` is a whole number >= 0: NumPy's generators take nothing else, and would refuse it
    with a traceback at the first resample instead of up front."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}")


def _check_whole(value: Any, name: str, minimum: int) -> None:
    """InputError unless ``value`` is a whole number >= ``minimum``: a float or None reached range() or NumPy as a
    TypeError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be a whole number >= {minimum}, got {value!r}")


def _maps_for(prob: np.ndarray, names: Sequence[str], sigma: float, maps: str) -> dict[str, np.ndarray]:
    """The map each metric scores: the density itself (``raw``) or its metric-specific map, blurred only once."""
    if maps == "raw":
        return dict.fromkeys(names, prob)
    out: dict[str, np.ndarray] = {}
    blurred = None  # CC, KLD and SIM share one map
    for m in names:
        if m in ("CC", "KLD", "SIM"):
            blurred = M.metric_map(m, prob, sigma) if blurred is None else blurred
            out[m] = blurred
        else:
            out[m] = M.metric_map(m, prob, sigma)
    return out


def _metric_names(metrics: Sequence[str]) -> tuple[str, ...]:
    """``metrics`` as a tuple of names, each named once; a lone string is refused, not split into letters."""
    if isinstance(metrics, str):  # "NSS" was read letter by letter: unknown metric 'N'
        raise InputError(f"metrics: expected a list of metric names, got {metrics!r}; pass [{metrics!r}]")
    names = tuple(metrics)
    twice = next((m for i, m in enumerate(names) if m in names[:i]), None)
    if twice is not None:  # the result holds one column per name: the repeat was computed, then dropped
        raise InputError(f"metrics: {twice!r} is named twice; name each metric once")
    return names


def check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    """``metrics`` as a tuple of names from :data:`foveal.metrics.METRICS`, at least one, each named once; else
    InputError (``foveal eval --metrics`` checks its list with it)."""
    names = _metric_names(metrics)
    unknown = [m for m in names if m not in M.METRICS]
    if unknown or not names:
        raise InputError(f"unknown metric {unknown[0] if unknown else '(none given)'!r}; "
                         f"choose from {', '.join(M.METRICS)}")
    return names


def _check_metrics(metrics: Sequence[str] | None, dataset: Any) -> tuple[str, ...]:
    if metrics is None:
        return default_metrics(dataset)
    names = check_metrics(metrics)
    if not dataset.has_fixations and set(names) & set(_FIXATION_METRICS):
        wanting = sorted(set(names) & set(_FIXATION_METRICS))
        raise InputError(f"dataset {dataset.name!r} has density maps only; {', '.join(wanting)} "
                         f"{'needs' if len(wanting) == 1 else 'need'} fixations")
    if "sAUC" in names and len(dataset) < 2:
        raise InputError("sAUC takes its negatives from other images' fixations, so it needs at least two images")
    return names


def _predictor(model: Any):
    """(predict(paths, shapes) -> a probability map or the FovealError that stopped it per image, model name,
    provenance) for what ``evaluate`` got."""
    if isinstance(model, str) and model == CENTRE_BIAS_MODEL:
        def centre_bias(paths, shapes):
            return [np.exp(M.centre_bias_log_density(shape)) for shape in shapes]
        return centre_bias, CENTRE_BIAS_MODEL, {"model": CENTRE_BIAS_MODEL, "parameters": M.CENTRE_BIAS}
    if isinstance(model, (str, os.PathLike)):
        from .engine import Engine

        model = Engine(model)
    if not hasattr(model, "predict_batch"):
        raise InputError(f"model must be an Engine, a model name, an .onnx path or {CENTRE_BIAS_MODEL!r}, "
                         f"got {type(model).__name__}")

    def network(paths, shapes):
        return [getattr(result, "prob", result)
                for result in model.predict_batch(paths, batch_size=len(paths), errors="return")]
    card = model.model
    return network, card.name, {"model": card.name, "model_version": card.version, "model_sha256": card.sha256,
                                "graph_sha256": getattr(model, "graph_sha256", card.sha256), "backend": model.backend,
                                "precision": getattr(model, "precision", "fp32")}


class _ShuffledNegatives:
    """Every image's fixations, to hand image i all the others scaled to its size."""

    def __init__(self, dataset: Any, fixations: list) -> None:
        xs, ys, ws, hs, owner = [], [], [], [], []
        for i, f in enumerate(fixations):
            h, w = dataset.shape(i)
            # Clip into the image first so that scaling cannot push a border fixation out of the target image.
            xs.append(np.clip(f.x, 0, np.nextafter(w, 0)))
            ys.append(np.clip(f.y, 0, np.nextafter(h, 0)))
            ws.append(np.full(len(f), float(w)))
            hs.append(np.full(len(f), float(h)))
            owner.append(np.full(len(f), i))
        self._x, self._y = np.concatenate(xs), np.concatenate(ys)
        self._w, self._h, self._owner = np.concatenate(ws), np.concatenate(hs), np.concatenate(owner)
        self._shape = dataset.shape

    def __call__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = self._shape(i)
        other = self._owner != i
        # x * (w / w_j), not x / w_j * w: between images of one size the factor is exactly 1 (as in pysaliency).
        return self._x[other] * (w / self._w[other]), self._y[other] * (h / self._h[other])


@dataclass(frozen=True)
class _Item:
    """What the metrics of one image need besides the map."""

    fix: Any
    density: np.ndarray | None
    negatives: tuple[np.ndarray, np.ndarray] | None
    rng: np.random.Generator


_SCORERS = {
    "AUC-Judd": lambda s, t: M.auc_judd(s, t.fix.x, t.fix.y),
    "AUC-Borji": lambda s, t: M.auc_borji(s, t.fix.x, t.fix.y, rng=t.rng),
    "sAUC": lambda s, t: M.auc_shuffled(s, t.fix.x, t.fix.y, *t.negatives),
    "NSS": lambda s, t: M.nss(s, t.fix.x, t.fix.y),
    "CC": lambda s, t: M.cc(s, t.density),
    "KLD": lambda s, t: M.kld(s, t.density),
    "SIM": lambda s, t: M.sim(s, t.density),
    "IG": lambda s, t: M.information_gain(s, M.centre_bias_log_density(s.shape), t.fix.x, t.fix.y),
}
