"""The single-process batch: score creatives with one Engine, committing chunks to a :class:`BatchStore`."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import InputError, checked_count
from ..fileio import checked_path
from ..progress import progress
from ..scoring.elements import ELEMENT_FILE_SUFFIXES
from .inputs import BatchItem, check_creative_id
from .scorer import BatchOptions, CreativeResult, Scorer, absolute_options
from .store import CSV_NAME, ERRORS_NAME, BatchStore, batch_settings, engine_identity

COMMIT_EVERY, COMMIT_SECONDS = 256, 30.0


@dataclass
class BatchSummary:
    """What a batch run did: creatives scored now, skipped (done by an earlier run), failed (see ``errors``)."""

    out: Path
    scored: int = 0
    skipped: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    norms_warning: str | None = None
    #: Seconds per stage, summed over workers: decode, predict, score (see :attr:`Scorer.seconds`) and commit
    #: (writing the tables); wall is the run's elapsed time; on Ray, startup is the time to the first result
    #: (joining or starting the cluster, starting the actors, their first batch).
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return len(self.errors)


def run_batch(items: Sequence[BatchItem], out: str | Path, engine, options: BatchOptions = BatchOptions(), *,
              batch_size: int = 16, commit_every: int = COMMIT_EVERY, show_progress: bool = False) -> BatchSummary:
    """Score ``items`` into the folder ``out`` (layout: :mod:`foveal.batch.store`), resuming an earlier run there.

    Failed creatives are recorded in the errors table (and ``summary.errors``), never raised; a rerun retries them.
    Results are committed every ``commit_every`` creatives (or 30 s), so a crash loses at most that much work.
    """
    out = Path(checked_path(out, "out"))
    if not isinstance(options, BatchOptions):
        raise InputError(f"options: expected a BatchOptions, got {type(options).__name__}")
    check_items(items, out, options.elements_dir)
    batch_size = checked_count(batch_size, "batch_size")  # before the output folder is made
    commit_every = checked_count(commit_every, "commit_every")
    if not all(hasattr(engine, a) for a in ("graph", "predict_batch")):
        raise InputError(f"engine: expected a foveal.Engine, got {type(engine).__name__}")
    options = absolute_options(options)  # as recorded with Ray: reports and errors name the same files
    start = time.perf_counter()
    scorer = Scorer(engine, options, out, batch_size)
    try:
        with BatchStore(out, batch_settings(engine_identity(engine), options, items)) as store:
            todo = store.todo(items)
            summary = BatchSummary(out, skipped=len(items) - len(todo), norms_warning=scorer.norms_warning)
            chunks = (scorer.score(todo[i:i + batch_size]) for i in range(0, len(todo), batch_size))
            commit = commit_all(store, (r for chunk in chunks for r in chunk), len(todo), commit_every,
                                show_progress)
            summary.scored = len(store.committed)
    finally:
        scorer.close()
    summary.errors = store.errors
    summary.seconds = {**scorer.seconds, "commit": commit, "wall": time.perf_counter() - start}
    return summary


def commit_all(store: BatchStore, results: Iterator[CreativeResult], total: int, commit_every: int,
               show_progress: bool) -> float:
    """Commit a stream of results to ``store`` in chunks (:func:`commit_chunks`); returns the seconds spent
    committing."""
    seconds = 0.0
    for chunk in commit_chunks(progress(results, total=total, label="score", enabled=show_progress), commit_every):
        t = time.perf_counter()
        store.commit(chunk)
        seconds += time.perf_counter() - t
    return seconds


def commit_chunks(results: Iterator[CreativeResult] | Any, commit_every: int,
                  seconds: float = COMMIT_SECONDS) -> Iterator[list[CreativeResult]]:
    """Group a stream of results into commits of ``commit_every`` creatives, or fewer after ``seconds``."""
    if commit_every < 1:
        raise InputError(f"commit_every must be at least 1, got {commit_every}")
    chunk: list[CreativeResult] = []
    since = time.monotonic()
    for r in results:
        chunk.append(r)
        if len(chunk) >= commit_every or time.monotonic() - since >= seconds:
            yield chunk
            chunk, since = [], time.monotonic()
    if chunk:
        yield chunk


def own_tables(out: Path) -> set[str]:
    """The real paths of the tables a batch in ``out`` rewrites (its scores and errors)."""
    # realpath, not Path.resolve: a link loop among the inputs fails as that creative, not as the whole batch
    return {os.path.realpath(out / name) for name in (CSV_NAME, f"{ERRORS_NAME}.csv", f"{ERRORS_NAME}.parquet")}


def check_items(items: Sequence[BatchItem], out: Path, elements_dir: str | None = None) -> None:
    """Refuse an empty batch, duplicate ids, and inputs that are the batch's own output files: element files found by
    name (in ``elements_dir``, else beside the image) too, though a rerun never opens a done creative's."""
    if isinstance(items, (str, bytes, Path)) or not isinstance(items, Sequence) or not items:  # a generator too
        raise InputError("a batch needs a non-empty sequence (a list) of BatchItem (see foveal.batch.read_inputs)")
    seen: set[str] = set()
    own = own_tables(out)
    for item in items:
        if not isinstance(item, BatchItem):
            raise InputError(f"a batch item must be a BatchItem, got {type(item).__name__}; read_inputs(folder, list "
                             "file or table) gives them, or BatchItem(creative_id, image_path)")
        check_creative_id(item.creative_id, "batch")
        if item.creative_id in seen:
            raise InputError(f"creative id {item.creative_id!r} appears twice in the batch; ids must be unique")
        seen.add(item.creative_id)
        paths = [item.image] + ([item.elements] if item.elements and item.elements[0] not in "[{" else [])
        if item.elements is None:  # the files find_element_file would look at (errors.png's errors.csv...)
            folder = elements_dir or os.path.dirname(item.image)
            paths += [os.path.join(folder, Path(item.image).stem + suffix) for suffix in ELEMENT_FILE_SUFFIXES]
        if any(os.path.realpath(p) in own for p in paths):
            raise InputError(f"{item.image}: an input is one of the batch's output files in {out}; "
                             "use another output folder")
