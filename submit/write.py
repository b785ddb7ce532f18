"""Kaggle submission writer: predictions -> ``ImageId,PredictionString`` CSV (plain or .gz).

Format choices:
- one row per listed image, in sorted ImageId order; an image without boxes gets an empty PredictionString;
- within a row, boxes by descending score (ties: MID, then input order);
- each box is ``MID score xmin ymin xmax ymax``; coordinates are clipped to [0, 1] and printed with 4 decimals,
  scores with 5 significant digits (at most 12 decimals, no exponent), both without trailing zeros
  (``0.5``, ``1``, ``0``, ``0.000123``);
- a box that is empty or inverted after rounding (xmin >= xmax or ymin >= ymax) is left out and counted.
The bytes are built by a numba kernel (no per-box Python), a chunk of rows at a time.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import pandas as pd
from tqdm import tqdm

from contracts.arrays import grouped_order, positions
from contracts.files import atomic_output
from contracts.submission_csv import SUBMISSION_HEADER

COORD_DECIMALS = 4
SCORE_DIGITS = 5
MAX_SCORE_DECIMALS = 12
MAX_ABS_SCORE = 1e15
_MAX_BOX_CHARS = 2 + 31 + 4 * 7  # separators, score (sign, 16 + 12 digits, point), "0.1234 " x 4; plus the MID
BOXES_PER_CHUNK = 500_000


@dataclass(frozen=True)
class WriteStats:
    images: int
    images_with_boxes: int
    boxes: int
    dropped_empty: int


@numba.njit(cache=True, inline="always")
def _put_fixed(buf, pos, q, decimals):
    """Write the non-negative integer ``q`` scaled by 10**-decimals (``q=1230, decimals=4`` -> ``0.123``) at
    ``pos``; returns the position after it."""
    scale = np.int64(1)
    for _ in range(decimals):
        scale *= 10
    whole, frac = q // scale, q % scale
    n = 1
    t = whole
    while t >= 10:
        t //= 10
        n += 1
    for k in range(n - 1, -1, -1):
        buf[pos + k] = 48 + whole % 10
        whole //= 10
    pos += n
    if frac:
        while frac % 10 == 0:
            frac //= 10
            decimals -= 1
        buf[pos] = 46  # "."
        for k in range(decimals, 0, -1):
            buf[pos + k] = 48 + frac % 10
            frac //= 10
        pos += decimals + 1
    return pos


@numba.njit(cache=True, inline="always")
def _put_score(buf, pos, value):
    if value < 0:
        buf[pos] = 45  # "-"
        pos += 1
        value = -value
    decimals = 0
    if value > 0:
        decimals = SCORE_DIGITS - 1 - int(np.floor(np.log10(value)))
        decimals = min(max(decimals, 0), MAX_SCORE_DECIMALS)
    return _put_fixed(buf, pos, np.int64(np.rint(value * 10.0 ** decimals)), decimals)


@numba.njit(cache=True)
def _write_rows(row_start, row_end, image_bytes, image_offsets, mid_bytes, mid_offsets, box_mid, box_score,
                box_coords, buf):
    """Format rows ``r`` (boxes ``row_start[r]:row_end[r]``) as ``ImageId,MID score x0 y0 x1 y1 ...\\n`` into
    ``buf``; ``box_coords`` (N, 4) holds xmin, ymin, xmax, ymax as integers in 1e-4 units. Returns bytes used."""
    pos = 0
    for r in range(len(row_start)):
        for k in range(image_offsets[r], image_offsets[r + 1]):
            buf[pos] = image_bytes[k]
            pos += 1
        buf[pos] = 44  # ","
        pos += 1
        for b in range(row_start[r], row_end[r]):
            if b > row_start[r]:
                buf[pos] = 32
                pos += 1
            m = box_mid[b]
            for k in range(mid_offsets[m], mid_offsets[m + 1]):
                buf[pos] = mid_bytes[k]
                pos += 1
            buf[pos] = 32
            pos = _put_score(buf, pos + 1, box_score[b])
            for j in range(4):
                buf[pos] = 32
                pos = _put_fixed(buf, pos + 1, box_coords[b, j], COORD_DECIMALS)
        buf[pos] = 10  # "\n"
        pos += 1
    return pos


def _packed(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """ASCII strings as one uint8 buffer plus offsets (len + 1)."""
    encoded = [s.encode("ascii") for s in strings]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), np.uint8), offsets


def _check_tokens(values: Sequence[str], what: str) -> None:
    for v in values:
        if not isinstance(v, str) or not v or not v.isascii() or any(ch in v for ch in ", \t\r\n\""):
            raise ValueError(f"{what} {v!r} cannot be written to a submission (empty, non-ASCII, or holds a "
                             "comma, quote or whitespace)")


@numba.njit(cache=True)
def _quantise(x0, y0, x1, y1, out):
    """Clip to [0, 1] and round to 1e-4 units into ``out`` (N, 4) int32; returns the first row holding a
    non-finite coordinate, or -1."""
    scale = 10.0 ** COORD_DECIMALS
    for i in range(len(x0)):
        for j, v in enumerate((float(x0[i]), float(y0[i]), float(x1[i]), float(y1[i]))):
            if not np.isfinite(v):
                return i
            out[i, j] = np.int32(np.rint(min(max(v, 0.0), 1.0) * scale))
    return -1


def quantised_boxes(predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) int32 xmin, ymin, xmax, ymax in 1e-4 units after clipping to [0, 1], and the mask of boxes that stay
    non-empty."""
    q = np.empty((len(predictions), 4), np.int32)
    bad = _quantise(*(predictions[c].to_numpy() for c in ("XMin", "YMin", "XMax", "YMax")), q)
    if bad >= 0:
        raise ValueError(f"predictions have non-finite coordinates (first: row {bad}, "
                         f"{predictions.iloc[bad].to_dict()})")
    return q, (q[:, 0] < q[:, 2]) & (q[:, 1] < q[:, 3])


def write_submission(predictions: pd.DataFrame, image_ids: Sequence[str], out: str | Path,
                     progress: bool = False) -> WriteStats:
    """Write the Kaggle CSV for ``predictions`` (ImageID, LabelName, Score, XMin, YMin, XMax, YMax; normalised)
    with one row per id of ``image_ids``; atomic, gzipped when ``out`` ends in .gz."""
    ids = np.array(sorted(set(image_ids)), dtype=object)
    _check_tokens(ids, "ImageId")
    row = positions(predictions["ImageID"], pd.Index(ids))
    if (row < 0).any():
        unknown = pd.unique(np.asarray(predictions["ImageID"], dtype=object)[row < 0])
        raise ValueError(f"{len(unknown)} predicted ImageIDs are not in the image list, e.g. "
                         f"{', '.join(map(str, unknown[:5]))}")
    score = predictions["Score"].to_numpy(dtype=np.float64)
    bad = ~(np.abs(score) < MAX_ABS_SCORE)
    if bad.any():
        raise ValueError(f"{bad.sum()} predictions have a non-finite or huge score (first: row "
                         f"{int(np.flatnonzero(bad)[0])}, {score[bad][0]})")
    mids = np.array(sorted(pd.unique(predictions["LabelName"]), key=str), dtype=object)
    _check_tokens(mids, "LabelName")
    mid = positions(predictions["LabelName"], pd.Index(mids))
    coords, non_empty = quantised_boxes(predictions)

    keep = np.flatnonzero(non_empty)
    keep = keep[grouped_order(row[keep], len(ids), -score[keep], mid[keep])]
    row_end = np.cumsum(np.bincount(row[keep], minlength=len(ids)))
    row_start = row_end - np.bincount(row[keep], minlength=len(ids))
    box_mid, box_score, box_coords = mid[keep], score[keep], np.ascontiguousarray(coords[keep])
    image_bytes, image_offsets = _packed(ids)
    mid_bytes, mid_offsets = _packed(mids)

    # chunks of whole rows holding about BOXES_PER_CHUNK boxes each
    cuts = np.unique(np.r_[0, np.searchsorted(row_end, np.arange(BOXES_PER_CHUNK, len(keep), BOXES_PER_CHUNK)),
                           len(ids)])
    with atomic_output(out) as f, tqdm(total=len(ids), desc="writing", unit="img", disable=not progress) as bar:
        f.write((SUBMISSION_HEADER + "\n").encode())
        for a, b in zip(cuts[:-1], cuts[1:]):
            n_boxes = int(row_end[b - 1] - row_start[a])
            size = (int(image_offsets[b] - image_offsets[a]) + 2 * (b - a)
                    + n_boxes * (int(np.diff(mid_offsets).max(initial=0)) + _MAX_BOX_CHARS))
            buf = np.empty(size, np.uint8)
            used = _write_rows(row_start[a:b], row_end[a:b], image_bytes, image_offsets[a:b + 1], mid_bytes,
                               mid_offsets, box_mid, box_score, box_coords, buf)
            f.write(buf[:used].tobytes())
            bar.update(b - a)
    return WriteStats(len(ids), int((row_end > row_start).sum()), len(keep), int((~non_empty).sum()))
