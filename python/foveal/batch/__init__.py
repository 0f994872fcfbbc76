"""Resumable batch scoring: many creatives into Parquet and CSV tables, exactly once each, in one process or on Ray.

>>> from foveal import Engine
>>> from foveal.batch import BatchOptions, read_inputs, run_batch
>>> items = read_inputs("creatives/")                 # a folder, a list file, or a Parquet/CSV table
>>> summary = run_batch(items, "out/", Engine(), BatchOptions(maps=True))
>>> summary.scored, summary.failed                    # failures are in out/errors.parquet, never raised

:func:`foveal.batch.on_ray.run_batch_on_ray` runs the same batch on a Ray cluster (``pip install "foveal[ray]"``).
"""
from .inputs import BatchItem, is_batch_input, list_images, read_inputs
from .run import BatchSummary, run_batch
from .scorer import BatchOptions, CreativeResult, Scored, Scorer
from .store import CREATIVE_COLUMNS, CSV_HEADER, ELEMENT_COLUMNS, ERROR_COLUMNS, BatchStore

__all__ = ["BatchItem", "BatchOptions", "BatchStore", "BatchSummary", "CreativeResult", "Scored", "Scorer", "read_inputs",
           "list_images", "is_batch_input", "run_batch", "CSV_HEADER", "ELEMENT_COLUMNS", "CREATIVE_COLUMNS",
           "ERROR_COLUMNS"]
