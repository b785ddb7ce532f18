"""The Kaggle submission CSV: its header and a one-pass parser, shared by the predictions reader
(``contracts.predictions.parse_submission``) and the validator.

The file is scanned as bytes by a numba kernel: lines, the ImageId before the single comma, the single-space
separated PredictionString fields in groups of six (MID score xmin ymin xmax ymax), and the numbers themselves.
Numbers take the exact fast path (at most 18 significant digits, mantissa < 2**53 and a power of ten <= 22: one
correctly rounded multiplication or division, so the value equals Python's ``float(text)``); the rare others
(long mantissas, large exponents) are converted by Python's ``float``.

Shapes: L = data lines (the header excluded), B = boxes of the well-formed lines, K = distinct MID strings.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

SUBMISSION_HEADER = "ImageId,PredictionString"
LINE_OK, LINE_EMPTY, LINE_FIELDS, LINE_BLANK_FIELD, LINE_FIELD_COUNT, LINE_NON_ASCII = range(6)
_POW10 = np.array([10.0 ** k for k in range(23)])  # exact doubles


@dataclass(frozen=True)
class ParsedSubmission:
    """header: the first line. Per data line: line_number (1-based in the file), status (LINE_*), detail (field
    count for LINE_FIELDS / LINE_FIELD_COUNT, 1-based position of the first empty field for LINE_BLANK_FIELD),
    image_id ('' where the line has no single comma). Per box: box_line (index into the lines), mid_code (into
    mids), values (B, 5) score, xmin, ymin, xmax, ymax (NaN where not a number), well_formed (B, 5)."""

    header: str
    line_number: np.ndarray
    status: np.ndarray
    detail: np.ndarray
    image_id: np.ndarray
    box_line: np.ndarray
    mid_code: np.ndarray
    mids: np.ndarray
    values: np.ndarray
    well_formed: np.ndarray
    _buf: np.ndarray
    _box_span: np.ndarray

    def box_fields(self, b: int) -> list[str]:
        """The six fields of box ``b`` as written."""
        s, e = self._box_span[b]
        return self._buf[s:e].tobytes().decode("ascii", errors="replace").split(" ")


@numba.njit(cache=True, inline="always")
def _parse_number(buf, s, e):
    """Parse buf[s:e] as a decimal number. Returns (value, well_formed, exact): exact is False when the fast path
    does not apply (the caller converts those with Python)."""
    i = s
    negative = False
    if i < e and (buf[i] == 45 or buf[i] == 43):  # "-" "+"
        negative = buf[i] == 45
        i += 1
    mantissa = 0
    digits = 0
    exp10 = 0
    seen = False
    dropped = False
    while i < e and 48 <= buf[i] <= 57:
        seen = True
        d = np.int64(buf[i]) - 48
        if mantissa == 0 and d == 0:
            pass
        elif digits < 18:
            mantissa = mantissa * 10 + d
            digits += 1
        else:
            exp10 += 1
            dropped = dropped or d != 0
        i += 1
    if i < e and buf[i] == 46:  # "."
        i += 1
        while i < e and 48 <= buf[i] <= 57:
            seen = True
            d = np.int64(buf[i]) - 48
            if mantissa == 0 and d == 0:
                exp10 -= 1
            elif digits < 18:
                mantissa = mantissa * 10 + d
                digits += 1
                exp10 -= 1
            else:
                dropped = dropped or d != 0
            i += 1
    if not seen:
        return np.nan, False, True
    if i < e and (buf[i] == 101 or buf[i] == 69):  # "e" "E"
        i += 1
        exp_negative = False
        if i < e and (buf[i] == 45 or buf[i] == 43):
            exp_negative = buf[i] == 45
            i += 1
        if i == e:
            return np.nan, False, True
        exponent = 0
        while i < e and 48 <= buf[i] <= 57:
            if exponent < 100000:
                exponent = exponent * 10 + (buf[i] - 48)
            i += 1
        exp10 += -exponent if exp_negative else exponent
    if i != e:
        return np.nan, False, True
    if mantissa == 0:
        return -0.0 if negative else 0.0, True, True
    if dropped or mantissa >= 2 ** 53 or exp10 > 22 or exp10 < -22:
        return np.nan, True, False
    value = float(mantissa)
    value = value * _POW10[exp10] if exp10 >= 0 else value / _POW10[-exp10]
    return -value if negative else value, True, True


@numba.njit(cache=True)
def _scan(buf, line_start, line_end, status, detail, comma, box_line, box_span, mid_hash, values, well_formed,
          exact):
    """Scan every line; fills the per-line and per-box arrays and returns the number of boxes."""
    n_box = 0
    for i in range(len(line_start)):
        s, e = line_start[i], line_end[i]
        if s == e:
            status[i] = LINE_EMPTY
            continue
        commas = 0
        ascii_only = True
        for k in range(s, e):
            if buf[k] == 44:
                commas += 1
                if comma[i] < 0:
                    comma[i] = k
            elif buf[k] >= 128:
                ascii_only = False
        if not ascii_only:
            status[i] = LINE_NON_ASCII
            continue
        if commas != 1:
            status[i] = LINE_FIELDS
            detail[i] = commas + 1
            continue
        p = comma[i] + 1
        if p == e:
            continue
        n_fields = 0
        token = p
        for k in range(p, e + 1):
            if k == e or buf[k] == 32:
                n_fields += 1
                if k == token and status[i] == LINE_OK:
                    status[i] = LINE_BLANK_FIELD
                    detail[i] = n_fields
                token = k + 1
        if status[i] != LINE_OK:
            continue
        if n_fields % 6:
            status[i] = LINE_FIELD_COUNT
            detail[i] = n_fields
            continue
        token = p
        field = 0
        for k in range(p, e + 1):
            if k == e or buf[k] == 32:
                if field == 0:
                    box_line[n_box] = i
                    box_span[n_box, 0] = token
                    h = np.uint64(14695981039346656037)  # FNV-1a
                    for q in range(token, k):
                        h = (h ^ np.uint64(buf[q])) * np.uint64(1099511628211)
                    mid_hash[n_box] = h
                else:
                    v, good, ok = _parse_number(buf, token, k)
                    values[n_box, field - 1] = v
                    well_formed[n_box, field - 1] = good
                    exact[n_box, field - 1] = ok
                if field == 5:
                    box_span[n_box, 1] = k
                    n_box += 1
                field = (field + 1) % 6
                token = k + 1
    return n_box


@numba.njit(cache=True)
def _same_mids(buf, box_span, codes, first):
    """True when every box's MID bytes equal those of the first box with the same code (no hash collision)."""
    for b in range(len(codes)):
        r = first[codes[b]]
        s, e = box_span[b, 0], box_span[b, 0]
        while buf[e] != 32:
            e += 1
        rs, re_ = box_span[r, 0], box_span[r, 0]
        while buf[re_] != 32:
            re_ += 1
        if e - s != re_ - rs:
            return False
        for k in range(e - s):
            if buf[s + k] != buf[rs + k]:
                return False
    return True


@numba.njit(cache=True)
def _lines(buf):
    """Start and end (without the line ending, LF or CRLF) of every line, and the number of spaces."""
    n_lines, n_spaces = 0, 0
    for b in buf:
        n_lines += b == 10
        n_spaces += b == 32
    if len(buf) and buf[-1] != 10:
        n_lines += 1  # a last line without a final newline
    start = np.empty(max(n_lines, 1), np.int64)
    end = np.empty(max(n_lines, 1), np.int64)
    start[0], end[0] = 0, 0
    line = 0
    for k in range(len(buf)):
        if buf[k] == 10:
            end[line] = k - 1 if k > start[line] and buf[k - 1] == 13 else k
            line += 1
            if line < n_lines:
                start[line] = k + 1
    if line < n_lines:
        end[line] = len(buf) - 1 if len(buf) > start[line] and buf[-1] == 13 else len(buf)
    return start, end, n_spaces


def parse_submission_bytes(data: bytes) -> ParsedSubmission:
    """Parse the bytes of a submission CSV (already decompressed)."""
    buf = np.frombuffer(data, np.uint8)
    starts, ends, n_spaces = _lines(buf)
    header = buf[starts[0]:ends[0]].tobytes().decode("utf-8", errors="replace")
    line_start, line_end = starts[1:], ends[1:]
    n_lines = len(line_start)

    status = np.zeros(n_lines, np.int8)
    detail = np.zeros(n_lines, np.int64)
    comma = np.full(n_lines, -1, np.int64)
    capacity = (n_spaces + n_lines) // 6 + 1
    box_line = np.empty(capacity, np.int32)
    box_span = np.empty((capacity, 2), np.int64)
    mid_hash = np.empty(capacity, np.uint64)
    values = np.empty((capacity, 5), np.float64)
    well_formed = np.empty((capacity, 5), np.bool_)
    exact = np.empty((capacity, 5), np.bool_)
    n = _scan(buf, line_start, line_end, status, detail, comma, box_line, box_span, mid_hash, values, well_formed,
              exact) if n_lines else 0
    box_line, box_span, mid_hash = box_line[:n], box_span[:n], mid_hash[:n]
    values, well_formed, exact = values[:n], well_formed[:n], exact[:n]

    for b, j in zip(*np.nonzero(~exact)):  # long mantissas or big exponents: Python's float
        span = box_span[b]
        values[b, j] = float(buf[span[0]:span[1]].tobytes().split(b" ")[j + 1])

    codes, uniques = pd.factorize(mid_hash)
    first = np.full(len(uniques), -1, np.int64)
    first[codes[::-1]] = np.arange(n - 1, -1, -1)
    mid_text = lambda b: buf[box_span[b, 0]:box_span[b, 1]].tobytes().split(b" ")[0].decode("ascii")  # noqa: E731
    if n and not _same_mids(buf, box_span, codes, first):  # a 64-bit hash collision: factorize the strings
        codes, uniques = pd.factorize(np.array([mid_text(b) for b in range(n)], dtype=object))
        first = np.full(len(uniques), -1, np.int64)
        first[codes[::-1]] = np.arange(n - 1, -1, -1)
    mids = np.array([mid_text(b) for b in first], dtype=object)

    has_id = comma >= 0
    image_id = np.full(n_lines, "", dtype=object)
    image_id[has_id] = [buf[s:c].tobytes().decode("ascii", errors="replace")
                        for s, c in zip(line_start[has_id], comma[has_id])]
    image_id[(status == LINE_FIELDS) | (status == LINE_NON_ASCII)] = ""
    return ParsedSubmission(header, np.arange(2, n_lines + 2), status, detail, image_id, box_line,
                            codes.astype(np.int64), mids, values, well_formed, buf, box_span)


def line_problem(parsed: ParsedSubmission, i: int) -> str:
    """What is wrong with data line ``i`` (whose status is not LINE_OK)."""
    status, detail = parsed.status[i], parsed.detail[i]
    if status == LINE_EMPTY:
        return "empty line"
    if status == LINE_FIELDS:
        return f"expected 2 comma-separated fields (ImageId,PredictionString), found {detail}"
    if status == LINE_BLANK_FIELD:
        return f"empty field {detail} in PredictionString (double, leading or trailing space)"
    if status == LINE_FIELD_COUNT:
        return f"{detail} fields in PredictionString, not a multiple of 6 (MID score xmin ymin xmax ymax per box)"
    return "non-ASCII character"
