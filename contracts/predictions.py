"""The predictions table, the common currency of infer, ensemble, submission and evaluation.

Columns ``ImageID string, LabelName string (MID), Score float32, XMin, YMin, XMax, YMax float32`` (normalised to
[0, 1]), in Parquet, possibly split in shard files ``shard-{k:03d}-of-{N:03d}.parquet``. Read into pandas, the
strings are categoricals (tens of millions of rows share a few hundred thousand strings); a Kaggle submission CSV
reads into the same frame.
"""
from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.files import DataError, atomic_output, read_bytes
from contracts.submission_csv import LINE_OK, SUBMISSION_HEADER, line_problem, parse_submission_bytes

COLUMNS = ["ImageID", "LabelName", "Score", "XMin", "YMin", "XMax", "YMax"]
BOX_COLUMNS = COLUMNS[3:]
SCHEMA = pa.schema([("ImageID", pa.string()), ("LabelName", pa.string()), ("Score", pa.float32())]
                   + [(name, pa.float32()) for name in BOX_COLUMNS])
_SHARD = re.compile(r"shard-(\d+)-of-(\d+)\.parquet$")


def predictions_table(image_ids: Sequence[str], boxes: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                      labels: Sequence[np.ndarray], mids: Sequence[str]) -> pa.Table:
    """Per-image detections (boxes (K, 4) normalised x1 y1 x2 y2, scores (K,), class indices (K,) into ``mids``)
    as one predictions table, images in the given order."""
    counts = [len(s) for s in scores]
    xyxy = np.concatenate([np.zeros((0, 4), np.float32)] + [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes])
    label = np.concatenate([np.zeros(0, np.int64)] + [np.asarray(x).astype(np.int64) for x in labels])
    if len(label) and (label.min() < 0 or label.max() >= len(mids)):
        raise ValueError(f"class index {int(label.max())} out of range: the class list has {len(mids)} classes")
    columns = [pa.array(np.repeat(np.asarray(image_ids, dtype=object), counts), pa.string()),
               pa.array(np.asarray(mids, dtype=object)[label], pa.string()),
               pa.array(np.concatenate([np.zeros(0, np.float32)] + [np.asarray(s, np.float32) for s in scores]))]
    columns += [pa.array(np.ascontiguousarray(xyxy[:, k])) for k in range(4)]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def write_predictions(table: pa.Table, path: str | Path) -> None:
    """Write a predictions table atomically (temporary file, then rename): readers never see half a file."""
    with atomic_output(path) as f:
        pq.write_table(table.select(COLUMNS).cast(SCHEMA).combine_chunks(), f)


def check_columns(path: str | Path, names: Sequence[str]) -> None:
    """Raise unless a Parquet file's columns include the predictions columns."""
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (predictions need {', '.join(COLUMNS)})")


def input_files(pattern: str | Path) -> list[Path]:
    """The Parquet files of one predictions input: a file, the ``*.parquet`` files of a folder, or a glob's
    matches, sorted. A set of ``shard-K-of-N.parquet`` files must be complete."""
    pattern = str(pattern)
    path = Path(pattern)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(path.glob("*.parquet"))
    else:
        files = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
    if not files:
        raise FileNotFoundError(f"no Parquet files at {pattern}")
    shards = [m for m in (_SHARD.search(f.name) for f in files) if m]
    if shards:
        totals = {int(m.group(2)) for m in shards}
        found = {int(m.group(1)) for m in shards}
        if len(totals) != 1 or found != set(range(totals.pop())):
            raise FileNotFoundError(f"{pattern}: incomplete or mixed shard set "
                                    f"({', '.join(m.group(0) for m in shards)})")
    return files


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Predictions from a Parquet file, a folder of shards or a glob (see ``input_files``), or a Kaggle
    submission CSV (plain or .gz)."""
    path = Path(path)
    if path.is_file() and path.suffix != ".parquet":
        return parse_submission(path)
    return to_frame(pa.concat_tables([_read_parquet(p) for p in input_files(path)]))


def _read_parquet(path: Path) -> pa.Table:
    check_columns(path, pq.read_schema(path).names)
    # strings read as dictionaries: no per-row Python strings, and several times faster
    return pq.read_table(path, columns=COLUMNS, read_dictionary=["ImageID", "LabelName"])


def to_frame(table: pa.Table) -> pd.DataFrame:
    """A predictions table as a pandas frame: categorical ImageID and LabelName, numeric columns as stored."""
    columns = {}
    for name in COLUMNS:
        col = table.column(name)
        if name in ("ImageID", "LabelName"):
            if not pa.types.is_dictionary(col.type):
                col = col.dictionary_encode()
            columns[name] = pd.Categorical(col.to_pandas())
        else:
            columns[name] = col.to_numpy()
    return pd.DataFrame(columns)


def parse_submission(path: str | Path) -> pd.DataFrame:
    """Read a Kaggle submission CSV (``ImageId,PredictionString``; the string repeats ``MID score xmin ymin xmax
    ymax``, single-space separated) into a predictions frame (float64 numbers). The first problem found is
    raised; run ``python -m submit.validate`` for the full list."""
    path = Path(path)
    parsed = parse_submission_bytes(read_bytes(path))
    hint = "; run python -m submit.validate for the full list"
    if parsed.header != SUBMISSION_HEADER:
        raise DataError(f"{path}, line 1: header must be {SUBMISSION_HEADER!r}, found {parsed.header[:60]!r}")
    bad = np.flatnonzero(parsed.status != LINE_OK)
    if len(bad):
        raise DataError(f"{path}, line {parsed.line_number[bad[0]]}: {line_problem(parsed, bad[0])} "
                        f"({len(bad)} such lines){hint}")
    bad = np.flatnonzero(~parsed.well_formed.all(axis=1))
    if len(bad):
        fields = parsed.box_fields(bad[0])
        raise DataError(f"{path}, line {parsed.line_number[parsed.box_line[bad[0]]]}: {' '.join(fields)[:100]!r} "
                        f"holds a field that is not a number ({len(bad)} such boxes){hint}")
    image_codes, image_ids = pd.factorize(parsed.image_id)
    frame = pd.DataFrame(parsed.values, columns=COLUMNS[2:], copy=False)  # one block, no copy
    frame.insert(0, "LabelName", pd.Categorical.from_codes(parsed.mid_code, categories=parsed.mids))
    frame.insert(0, "ImageID", pd.Categorical.from_codes(image_codes[parsed.box_line], categories=image_ids))
    return frame
