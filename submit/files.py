"""File edges of the submit stage: class files, image lists, ground-truth CSVs, predictions (Parquet or the Kaggle
CSV) and atomic output.

Predictions are returned as one DataFrame with the columns ``ImageID, LabelName, Score, XMin, YMin, XMax, YMax``;
``ImageID`` and ``LabelName`` are pandas categoricals (tens of millions of rows share a few hundred thousand
strings), the numbers float32 (Parquet) or float64 (CSV).
"""
from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_prep import formats
from submit.parse import LINE_OK, line_problem, parse_submission_bytes

PREDICTION_COLUMNS = ["ImageID", "LabelName", "Score", "XMin", "YMin", "XMax", "YMax"]
SUBMISSION_HEADER = "ImageId,PredictionString"
BOX_COLUMNS = ["ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax", "IsGroupOf"]
LABEL_COLUMNS = ["ImageID", "LabelName", "Confidence"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator:
    """A binary file object writing to a temporary file beside ``path``, renamed onto ``path`` only when the block
    succeeds. A ``.gz`` path is gzip-compressed (level 3: a quarter of level 6's time for ~12% more bytes on
    submissions) with a fixed header (no name, mtime 0), so reruns give identical bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            if path.suffix == ".gz":
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=3, mtime=0) as gz:
                    yield gz
            else:
                yield raw
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_bytes(path: str | Path) -> bytes:
    """The whole file, gunzipped when it starts with the gzip magic bytes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: not a valid gzip file ({e})") from None
    return data


def read_classes(path: str | Path) -> pd.DataFrame:
    """The class file (no header, ``MID,DisplayName``; row order = class order) as columns MID, DisplayName."""
    return pd.DataFrame(formats.read_classes(Path(path)), columns=["MID", "DisplayName"])


def read_image_ids(path: str | Path) -> list[str]:
    """Image ids, sorted and unique, from an image folder (file stems), ``sample_submission.csv`` (its ImageId
    column) or a text list (one id per line; a trailing image suffix is removed)."""
    path = Path(path)
    if path.is_dir():
        ids = [p.stem for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if not ids:
            raise ValueError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return sorted(set(ids))
    lines = read_bytes(path).decode("utf-8", errors="replace").splitlines()
    if lines and lines[0].strip().startswith("ImageId,"):
        ids = [line.split(",", 1)[0].strip() for line in lines[1:]]
    else:
        ids = [line.strip() for line in lines]
        ids = [i[: -len(s)] if (s := next((s for s in IMAGE_SUFFIXES if i.lower().endswith(s)), "")) else i
               for i in ids]
    ids = [i for i in ids if i]
    if not ids:
        raise ValueError(f"{path}: no image ids in this file")
    return sorted(set(ids))


def _read_csv_columns(path: str | Path, columns: list[str], dtypes: dict) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    header = pd.read_csv(path, nrows=0).columns
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
    try:
        return pd.read_csv(path, usecols=columns, dtype=dtypes, keep_default_na=False)[columns]
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def read_gt_boxes(path: str | Path) -> pd.DataFrame:
    """A box CSV (validation 7-column or train 13-column layout) reduced to ImageID, LabelName, XMin, XMax, YMin,
    YMax, IsGroupOf."""
    return _read_csv_columns(path, BOX_COLUMNS, {"ImageID": str, "LabelName": str, "XMin": np.float64,
                                                 "XMax": np.float64, "YMin": np.float64, "YMax": np.float64,
                                                 "IsGroupOf": np.int8})


def read_gt_labels(path: str | Path) -> pd.DataFrame:
    """An image-label CSV reduced to ImageID, LabelName, Confidence."""
    return _read_csv_columns(path, LABEL_COLUMNS, {"ImageID": str, "LabelName": str, "Confidence": np.int8})


def load_predictions(path: str | Path) -> pd.DataFrame:
    """Predictions from a Parquet file, a folder of Parquet shards, or a Kaggle submission CSV (plain or .gz)."""
    path = Path(path)
    if path.is_dir():
        shards = sorted(path.glob("*.parquet"))
        if not shards:
            raise FileNotFoundError(f"{path}: no .parquet files in this folder")
        return _predictions_frame(pa.concat_tables([_read_parquet(p) for p in shards]))
    if not path.is_file():
        raise FileNotFoundError(f"predictions not found: {path}")
    if path.suffix == ".parquet":
        return _predictions_frame(_read_parquet(path))
    return parse_submission(path)


def _read_parquet(path: Path) -> pa.Table:
    schema = pq.read_schema(path)
    missing = [c for c in PREDICTION_COLUMNS if c not in schema.names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    # strings read as dictionaries: no per-row Python strings, and several times faster
    return pq.read_table(path, columns=PREDICTION_COLUMNS, read_dictionary=["ImageID", "LabelName"])


def _predictions_frame(table: pa.Table) -> pd.DataFrame:
    columns = {}
    for name in PREDICTION_COLUMNS:
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
    ymax``, single-space separated) into a predictions DataFrame. The first problem found is raised; run
    ``python -m submit.validate`` for the full list."""
    path = Path(path)
    parsed = parse_submission_bytes(read_bytes(path))
    hint = "; run python -m submit.validate for the full list"
    if parsed.header != SUBMISSION_HEADER:
        raise ValueError(f"{path}, line 1: header must be {SUBMISSION_HEADER!r}, found {parsed.header[:60]!r}")
    bad = np.flatnonzero(parsed.status != LINE_OK)
    if len(bad):
        raise ValueError(f"{path}, line {parsed.line_number[bad[0]]}: {line_problem(parsed, bad[0])} "
                         f"({len(bad)} such lines){hint}")
    bad = np.flatnonzero(~parsed.well_formed.all(axis=1))
    if len(bad):
        fields = parsed.box_fields(bad[0])
        raise ValueError(f"{path}, line {parsed.line_number[parsed.box_line[bad[0]]]}: {' '.join(fields)[:100]!r} "
                         f"holds a field that is not a number ({len(bad)} such boxes){hint}")
    image_codes, image_ids = pd.factorize(parsed.image_id)
    frame = pd.DataFrame(parsed.values, columns=PREDICTION_COLUMNS[2:], copy=False)  # one block, no copy
    frame.insert(0, "LabelName", pd.Categorical.from_codes(parsed.mid_code, categories=parsed.mids))
    frame.insert(0, "ImageID", pd.Categorical.from_codes(image_codes[parsed.box_line], categories=image_ids))
    return frame
