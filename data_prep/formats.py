"""Raw Open Images files: discovery by official name, header detection, fast typed readers and row validation.

Box and image-label CSVs are read with pyarrow's streaming CSV reader (typed float32 coordinates, dictionary-encoded
strings), so a 1 GB box file never becomes Python objects per row. Every row-level check is vectorised; a row that
fails one is dropped and counted by reason, or, with ``strict``, raises :class:`RowError` naming file, line and value.
Line numbers are 1-based with the header on line 1.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

from contracts.files import IMAGE_SUFFIXES, DataError, image_files, open_text

SPLITS = ("train", "validation")

BOX_HEADERS = {
    "13 columns": ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,"
                   "IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside").split(","),
    "7 columns": "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf".split(","),
    "21 columns": ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,"
                   "IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside,"
                   "XClick1X,XClick2X,XClick3X,XClick4X,XClick1Y,XClick2Y,XClick3Y,XClick4Y").split(","),
}
LABEL_HEADERS = {
    "4 columns": "ImageID,Source,LabelName,Confidence".split(","),
    "3 columns": "ImageID,LabelName,Confidence".split(","),
}
POLYGON_HEADER = ["ImageID", "BoxRow", "Polygon"]
COORDS = ("XMin", "XMax", "YMin", "YMax")
FLAGS = ("IsGroupOf", "IsOccluded", "IsTruncated", "IsDepiction", "IsInside")

# Official names, most specific first; each may also be gzipped (".gz").
CLASS_FILES = ("challenge-2019-classes-description-500.csv", "class-descriptions-boxable.csv")
HIERARCHY_FILES = ("challenge-2019-label500-hierarchy.json", "bbox_labels_600_hierarchy.json")
BOX_FILES = {
    "train": ("challenge-2019-train-detection-bbox.csv", "oidv6-train-annotations-bbox.csv",
              "train-annotations-bbox.csv"),
    "validation": ("challenge-2019-validation-detection-bbox.csv", "validation-annotations-bbox.csv"),
}
LABEL_FILES = {
    "train": ("challenge-2019-train-detection-human-imagelabels.csv",
              "train-annotations-human-imagelabels-boxable.csv",
              "oidv6-train-annotations-human-imagelabels.csv",
              "train-annotations-human-imagelabels.csv"),
    "validation": ("challenge-2019-validation-detection-human-imagelabels.csv",
                   "validation-annotations-human-imagelabels-boxable.csv",
                   "validation-annotations-human-imagelabels.csv"),
}
POLYGON_FILES = {split: (f"mini-{split}-polygons.csv",) for split in SPLITS}

# Row-level drop reasons, in the order they are checked (a row counts under its first failing reason).
UNKNOWN_MID = "unknown MID"
NAN_COORD = "NaN coordinate"
OUT_OF_RANGE = "coordinate outside [0,1]"
INVERTED = "inverted box (min >= max)"
BAD_CONFIDENCE = "Confidence not 0 or 1"
DUPLICATE = "duplicate row"
MISSING_IMAGE = "missing image"
BOX_REASONS = (UNKNOWN_MID, NAN_COORD, OUT_OF_RANGE, INVERTED, MISSING_IMAGE, DUPLICATE)
LABEL_REASONS = (UNKNOWN_MID, BAD_CONFIDENCE, MISSING_IMAGE, DUPLICATE)
EXAMPLE_LINES = 5


class RowError(DataError):
    """A row-level problem found with ``strict``: names the file, the line and the offending value."""


# ----------------------------------------------------------------------------------------------- discovery


@dataclass
class SplitFiles:
    boxes: Path
    labels: Path | None = None
    polygons: Path | None = None


@dataclass
class DataFiles:
    classes: Path
    hierarchy: Path
    splits: dict[str, SplitFiles]
    notes: list[str] = field(default_factory=list)


def find_file(data_dir: Path, names: Sequence[str]) -> tuple[Path | None, list[Path]]:
    """The first of ``names`` (plain or ``.gz``) present in ``data_dir``, and every candidate that is present."""
    found = [data_dir / n for name in names for n in (name, name + ".gz") if (data_dir / n).is_file()]
    return (found[0] if found else None), found


def discover(data_dir: str | Path, splits: Sequence[str] = SPLITS) -> DataFiles:
    """Locate the class file, hierarchy and the box / image-label / polygon files of ``splits`` by their official
    names; a split without its box file is an error."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data directory not found: {data_dir}")
    notes: list[str] = []

    def required(names: Sequence[str], what: str) -> Path:
        path, found = find_file(data_dir, names)
        if path is None:
            raise DataError(f"{data_dir}: no {what} found; expected one of: {', '.join(names)} (plain or .gz)")
        if len(found) > 1:
            notes.append(f"{what}: using {path.name} (also present: {', '.join(p.name for p in found[1:])})")
        return path

    classes = required(CLASS_FILES, "class file")
    hierarchy = required(HIERARCHY_FILES, "hierarchy file")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise DataError(f"unknown split(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SPLITS)}")
    found_splits: dict[str, SplitFiles] = {}
    for split in splits:
        boxes, found = find_file(data_dir, BOX_FILES[split])
        if boxes is None:
            raise DataError(f"{data_dir}: no {split} box file found; expected one of: {', '.join(BOX_FILES[split])} "
                            f"(plain or .gz); --splits names the splits to prepare")
        if len(found) > 1:
            notes.append(f"{split}: using {boxes.name} (also present: {', '.join(p.name for p in found[1:])})")
        labels, _ = find_file(data_dir, LABEL_FILES[split])
        if labels is None:
            notes.append(f"{split}: no image-label file: the split has no image labels")
        polygons, _ = find_file(data_dir, POLYGON_FILES[split])
        found_splits[split] = SplitFiles(boxes, labels, polygons)
    return DataFiles(classes, hierarchy, found_splits, notes)


# ----------------------------------------------------------------------------------------------- small files


def read_header(path: Path) -> list[str]:
    """The first line of a CSV file split on commas; an empty file is an error."""
    with open_text(path) as f:
        try:
            first = next(csv.reader(f), None)
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot read the header ({e})") from None
    if not first:
        raise DataError(f"{path}: empty file (no header line)")
    return [c.strip() for c in first]


def detect_format(path: Path, headers: dict[str, list[str]], what: str) -> str:
    """The name of the header in ``headers`` that ``path`` starts with; otherwise an error quoting both."""
    header = read_header(path)
    for name, expected in headers.items():
        if header == expected:
            return name
    expected = "; ".join(f"{name}: {','.join(cols)}" for name, cols in headers.items())
    raise DataError(f"{path}: line 1: unexpected {what} header {','.join(header)!r}; expected one of: {expected}")


def list_images(folder: Path) -> pa.Array:
    """ImageIDs of the image files in ``folder`` (the project's rule, ``contracts.files.image_files``)."""
    return pa.array(list(image_files(folder)), pa.string())


def read_expert_groups(path: str | Path, mids: Sequence[str]) -> dict[str, list[str]]:
    """Class groups for expert models: a CSV of ``group,MID`` rows (optional header) or a YAML mapping
    ``{group: [MID, ...]}``. Groups keep first-appearance order; MIDs are returned in class-file order."""
    path = Path(path)
    known = {mid: i for i, mid in enumerate(mids)}
    groups: dict[str, list[str]] = {}
    where: list[tuple[str, str, str]] = []  # (group, MID, location) for error messages
    if path.suffix in (".yaml", ".yml"):
        import yaml

        with open_text(path) as f:
            try:
                tree = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise DataError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(tree, dict) or not all(isinstance(v, list) for v in tree.values()):
            raise DataError(f"{path}: expected a mapping {{group: [MID, ...]}}")
        where = [(str(g), str(m), f"group {g}") for g, members in tree.items() for m in members]
    else:
        with open_text(path) as f:
            for line, row in enumerate(csv.reader(f), start=1):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if line == 1 and [c.strip().lower() for c in row] in (["group", "mid"], ["group", "labelname"]):
                    continue
                if len(row) != 2:
                    raise DataError(f"{path}: line {line}: expected 'group,MID', got {','.join(row)!r}")
                where.append((row[0].strip(), row[1].strip(), f"line {line}"))
    for group, mid, loc in where:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", group):
            raise DataError(f"{path}: {loc}: group name {group!r} is not a valid folder name "
                            "(letters, digits, '_', '.', '-')")
        if mid not in known:
            raise DataError(f"{path}: {loc}: unknown MID {mid!r} (not in the class file)")
        members = groups.setdefault(group, [])
        if mid not in members:
            members.append(mid)
    if not groups:
        raise DataError(f"{path}: no groups")
    return {g: sorted(members, key=known.__getitem__) for g, members in groups.items()}


# ----------------------------------------------------------------------------------------------- big CSVs


@dataclass
class Codes:
    """A string column as integer codes into ``values`` (one concatenated dictionary per file)."""
    codes: np.ndarray  # int32, one per row
    values: pa.Array   # strings; may repeat (one dictionary per parsed block)

    def unique_codes(self) -> tuple[pa.Array, np.ndarray]:
        """The distinct strings and, per row, the position of its string among them."""
        uniq = pc.unique(self.values)
        pos = pc.index_in(self.values, value_set=uniq).to_numpy(zero_copy_only=False).astype(np.int32)
        return uniq, pos[self.codes] if len(self.codes) else np.zeros(0, np.int32)


@dataclass
class RawTable:
    """A parsed box or image-label file: string columns as :class:`Codes`, the rest as numpy arrays."""
    path: Path
    format: str
    strings: dict[str, Codes]
    numbers: dict[str, np.ndarray]  # float32 coordinates
    small: dict[str, np.ndarray]    # int8 flags / Confidence (-1 = not 0/1)

    def __len__(self) -> int:
        return len(self.strings["ImageID"].codes)


def _zero_one(values: pa.Array) -> np.ndarray:
    """Map the distinct strings of a flag column to 0/1, anything else (empty, -1, text) to -1."""
    out = np.full(len(values), -1, np.int8)
    for i, v in enumerate(values.to_pylist()):
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if f in (0.0, 1.0):
            out[i] = int(f)
    return out


def read_table(path: Path, header: list[str], fmt: str, string_cols: Sequence[str], float_cols: Sequence[str],
               flag_cols: Sequence[str], progress: bool = True) -> RawTable:
    """Stream-parse a CSV whose header was checked: string columns dictionary-encoded, floats as float32, flags
    as dictionary strings mapped to int8. Malformed rows (column count, non-numeric coordinate) raise
    :class:`DataError` naming file, line and value."""
    types = {c: pa.dictionary(pa.int32(), pa.string()) for c in (*string_cols, *flag_cols)}
    types.update({c: pa.float32() for c in float_cols})
    read_opts = pacsv.ReadOptions(column_names=header, skip_rows=1, block_size=1 << 24)
    convert = pacsv.ConvertOptions(column_types=types, include_columns=[*string_cols, *float_cols, *flag_cols],
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    chunks: dict[str, list] = {c: [] for c in (*string_cols, *float_cols, *flag_cols)}
    with tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"reading {path.name}",
              disable=not progress, leave=False) as bar, pa.OSFile(str(path), "rb") as raw:
        stream = pa.CompressedInputStream(raw, "gzip") if path.name.endswith(".gz") else raw
        try:
            for batch in pacsv.open_csv(stream, read_options=read_opts, convert_options=convert):
                for c in chunks:
                    chunks[c].append(batch.column(c))
                bar.update(raw.tell() - bar.n)
        except (pa.ArrowInvalid, OSError, EOFError) as e:
            raise _diagnose(path, header, float_cols, e) from None

    strings = {}
    for c in string_cols:
        offsets = np.cumsum([0] + [len(a.dictionary) for a in chunks[c]])
        codes = [a.indices.to_numpy(zero_copy_only=False) + off for a, off in zip(chunks[c], offsets)]
        values = pa.concat_arrays([a.dictionary for a in chunks[c]]) if chunks[c] else pa.array([], pa.string())
        strings[c] = Codes(np.concatenate(codes).astype(np.int32) if codes else np.zeros(0, np.int32), values)
    numbers = {c: (np.concatenate([a.to_numpy(zero_copy_only=False) for a in chunks[c]]).astype(np.float32)
                   if chunks[c] else np.zeros(0, np.float32)) for c in float_cols}
    small = {}
    for c in flag_cols:
        parts = [_zero_one(a.dictionary)[a.indices.to_numpy(zero_copy_only=False)] for a in chunks[c]]
        small[c] = np.concatenate(parts) if parts else np.zeros(0, np.int8)
    return RawTable(path, fmt, strings, numbers, small)


def _diagnose(path: Path, header: list[str], float_cols: Sequence[str], error: Exception) -> DataError:
    """Find the first malformed line with the stdlib csv module (only on the error path) and describe it."""
    where = {c: header.index(c) for c in float_cols}
    try:
        with open_text(path) as f:
            rows = csv.reader(f)
            next(rows, None)
            for line, row in enumerate(rows, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    return DataError(f"{path}: line {line}: expected {len(header)} columns, got {len(row)}: "
                                     f"{','.join(row)!r}")
                for c, i in where.items():
                    value = row[i].strip()
                    if value:
                        try:
                            float(value)
                        except ValueError:
                            return DataError(f"{path}: line {line}: {c} is not a number: {row[i]!r}")
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        return DataError(f"{path}: unreadable ({e})")
    return DataError(f"{path}: cannot parse ({error})")


def read_boxes(path: Path, progress: bool = True) -> RawTable:
    """A box file of any supported format; flags absent from the format are -1 (unknown)."""
    fmt = detect_format(path, BOX_HEADERS, "box file")
    header = BOX_HEADERS[fmt]
    flags = [c for c in FLAGS if c in header]
    table = read_table(path, header, fmt, ("ImageID", "LabelName"), COORDS, flags, progress)
    for c in FLAGS:
        table.small.setdefault(c, np.full(len(table), -1, np.int8))
    if not len(table):
        raise DataError(f"{path}: no data rows after the header")
    return table


def read_image_labels(path: Path, progress: bool = True) -> RawTable:
    """An image-label file (4 or 3 columns); Confidence other than 0/1 becomes -1."""
    fmt = detect_format(path, LABEL_HEADERS, "image-label file")
    return read_table(path, LABEL_HEADERS[fmt], fmt, ("ImageID", "LabelName"), (), ("Confidence",), progress)


def read_polygons(path: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """Instance polygons (``ImageID,BoxRow,Polygon``): box rows (int64), ImageIDs and polygon strings."""
    if read_header(path) != POLYGON_HEADER:
        raise DataError(f"{path}: line 1: expected the header {','.join(POLYGON_HEADER)}")
    rows, ids, polys = [], [], []
    with open_text(path) as f:
        reader = csv.reader(f)
        next(reader)
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 3 or not row[1].strip().isdigit():
                raise DataError(f"{path}: line {line}: expected 'ImageID,BoxRow,Polygon' with an integer BoxRow, "
                                f"got {','.join(row)!r}")
            numbers = row[2].split()
            try:
                ok = len(numbers) >= 6 and len(numbers) % 2 == 0 and all(0 <= float(v) <= 1 for v in numbers)
            except ValueError:
                ok = False
            if not ok:
                raise DataError(f"{path}: line {line}: Polygon must be an even count (>= 6) of numbers in [0,1], "
                                f"got {row[2]!r}")
            rows.append(int(row[1]))
            ids.append(row[0].strip())
            polys.append(row[2])
    return np.asarray(rows, np.int64), ids, polys


# ----------------------------------------------------------------------------------------------- validation


@dataclass
class Checked:
    """Rows of a raw table that passed every check, with per-reason drop counts and example lines."""
    keep: np.ndarray                 # bool per raw row
    image_pos: np.ndarray            # int32 per raw row: index into ``image_ids``
    image_ids: pa.Array              # the distinct ImageIDs of the file
    labels: np.ndarray               # int16 per raw row: class index (-1 unknown)
    dropped: dict[str, dict]         # reason -> {"count": n, "lines": [...]}


def _first_true_per_reason(reason: np.ndarray, names: Sequence[str]) -> dict[str, dict]:
    out = {}
    for code, name in enumerate(names, start=1):
        rows = np.flatnonzero(reason == code)
        if len(rows):
            out[name] = {"count": int(len(rows)), "lines": [int(r) + 2 for r in rows[:EXAMPLE_LINES]]}
    return out


def _mix(h: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (splitmix64) applied element-wise."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _duplicates(keys: Sequence[np.ndarray], candidates: np.ndarray) -> np.ndarray:
    """Boolean mask of ``candidates`` rows equal (on every key column) to an earlier candidate row.

    Rows are sorted (stably) by the first key (an image position) and a hash of the others, so equal rows end up
    next to each other in file order; every row of a run of equal sort keys is then compared exactly with the
    run's first row, and the rare run holding a hash collision is resolved exactly row by row."""
    idx = np.flatnonzero(candidates)
    dup = np.zeros(len(candidates), bool)
    if len(idx) < 2:
        return dup
    cols = [k[idx] for k in keys]
    h = np.zeros(len(idx), np.uint64)
    with np.errstate(over="ignore"):
        for c in cols[1:]:
            h = _mix(h ^ c.astype(np.int64).view(np.uint64))
    group = cols[0].astype(np.int64).view(np.uint64)
    bits = max(1, int(group.max()).bit_length())
    sort_key = (group << np.uint64(64 - bits)) | (h >> np.uint64(bits))
    order = np.argsort(sort_key, kind="stable")
    sort_key = sort_key[order]
    start = np.ones(len(idx), bool)
    start[1:] = sort_key[1:] != sort_key[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(len(idx)), 0))
    same = ~start
    sorted_cols = [c[order] for c in cols]
    for c in sorted_cols:
        same &= c == c[first]
    for run in np.unique(first[~start & ~same]):  # a hash collision inside the run: resolve it exactly
        stop = run + 1
        while stop < len(idx) and not start[stop]:
            stop += 1
        seen: set[tuple] = set()
        for p in range(run, stop):
            row = tuple(c[p].item() for c in sorted_cols)
            same[p] = row in seen
            seen.add(row)
    dup[idx[order[same]]] = True
    return dup


def check_rows(table: RawTable, class_index: dict[str, int], images: pa.Array | None, strict: bool,
               is_boxes: bool) -> Checked:
    """Apply the row-level checks (vectorised) and return what to keep; ``images`` is the listing of the split's
    image folder, or None to skip the missing-image check."""
    n = len(table)
    image_ids, image_pos = table.strings["ImageID"].unique_codes()
    label_codes = table.strings["LabelName"]
    lut = np.array([class_index.get(m, -1) for m in label_codes.values.to_pylist()], np.int16)
    labels = lut[label_codes.codes] if n else np.zeros(0, np.int16)
    names = BOX_REASONS if is_boxes else LABEL_REASONS
    reason = np.zeros(n, np.uint8)

    def flag(name: str, mask: np.ndarray) -> None:
        reason[(reason == 0) & mask] = names.index(name) + 1

    flag(UNKNOWN_MID, labels < 0)
    if is_boxes:
        x0, x1, y0, y1 = (table.numbers[c] for c in COORDS)
        with np.errstate(invalid="ignore"):
            flag(NAN_COORD, np.isnan(x0) | np.isnan(x1) | np.isnan(y0) | np.isnan(y1))
            flag(OUT_OF_RANGE, np.logical_or.reduce([(v < 0) | (v > 1) for v in (x0, x1, y0, y1)]))
            flag(INVERTED, (x0 >= x1) | (y0 >= y1))
    else:
        flag(BAD_CONFIDENCE, table.small["Confidence"] < 0)
    if images is not None:
        present = pc.is_in(image_ids, value_set=images).to_numpy(zero_copy_only=False)
        flag(MISSING_IMAGE, ~present[image_pos])
    if is_boxes:
        keys = [image_pos, labels] + [table.numbers[c].view(np.uint32) for c in COORDS]
    else:
        keys = [image_pos, labels, table.small["Confidence"]]
    flag(DUPLICATE, _duplicates(keys, reason == 0))

    if strict and reason.any():
        row = int(np.flatnonzero(reason)[0])
        raise RowError(_describe_row(table, row, names[reason[row] - 1], image_ids, image_pos, keys))
    return Checked(reason == 0, image_pos, image_ids, labels, _first_true_per_reason(reason, names))


def _describe_row(table: RawTable, row: int, why: str, image_ids: pa.Array, image_pos: np.ndarray,
                  keys: list[np.ndarray]) -> str:
    """The strict-mode message for one bad row: file, line, reason and value."""
    line = row + 2
    image = image_ids[int(image_pos[row])].as_py()
    mid = table.strings["LabelName"].values[int(table.strings["LabelName"].codes[row])].as_py()
    if why == UNKNOWN_MID:
        value = f"LabelName {mid!r}"
    elif why in (NAN_COORD, OUT_OF_RANGE, INVERTED):
        value = ", ".join(f"{c}={float(table.numbers[c][row]):g}" for c in COORDS)
    elif why == BAD_CONFIDENCE:
        value = f"Confidence of {mid} not 0/1"
    elif why == MISSING_IMAGE:
        value = f"ImageID {image!r} has no image file ({image}{'/'.join(IMAGE_SUFFIXES)}) in the split's folder"
    else:
        same = np.ones(row, bool)
        for k in keys:
            same &= k[:row] == k[row]
        value = f"same as line {int(np.flatnonzero(same)[0]) + 2} ({image}, {mid})"
    return f"{table.path}: line {line}: {why}: {value}"

