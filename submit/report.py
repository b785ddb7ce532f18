"""The evaluation report of ``python -m submit.score --report DIR``: ``DIR/index.html``, one self-contained page.

The page holds the mAP and what was evaluated, the settings, AP against ground-truth count (class frequency), AP
by level of the hierarchy (each parent class against its leaves: the metric expands ground truth, not
predictions, so missing ancestor copies show up here), drawn examples of the worst classes (``submit.show``, when
an image folder is given) and the per-class table (the ``--per-class`` CSV's values, as HTML rows that an inline
script sorts). Every file it uses is written inside DIR (plots as PNG, examples under ``DIR/examples``); nothing
is fetched. Reruns with the same inputs write the same bytes.
"""
from __future__ import annotations

import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from contracts.files import atomic_output
from contracts.hierarchy import Hierarchy
from contracts.metric import IOU_THRESHOLD, MAX_DETECTIONS_PER_CLASS, EvalResult
from submit import show

WORST_CLASSES = 5
IMAGES_PER_CLASS = 3
EXAMPLES = "examples"
COLUMNS = (("DisplayName", "class"), ("MID", "MID"), ("AP", "AP"), ("num_gt", "ground-truth boxes"),
           ("num_dets", "detections"), ("level", "level"))

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1300px;padding:0 1.5em;color:#222}
h1{margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ccc}
.map{font-size:2.4em;font-weight:600;margin:.1em 0}
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left}td.n,th.n{text-align:right}
.summary td:first-child,.settings td:first-child{color:#555;white-space:nowrap;vertical-align:top}
table.rows tbody tr:nth-child(even){background:#f4f4f4}
table.rows th{background:#e8e8e8;position:sticky;top:0}
#per-class th{cursor:pointer;user-select:none}#per-class th:hover{background:#d6d6d6}
.warn{background:#fff4d6;border-left:4px solid #e0a800;padding:.5em 1em}
.pictures{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;width:400px}
figure img{width:100%;border:1px solid #ccc}
figcaption{font-size:12px;color:#444}
.plot{max-width:100%}
.note{color:#555;font-size:13px}
"""

SORT_SCRIPT = """
document.querySelectorAll('#per-class th').forEach(function (th, col) {
  th.title = 'sort';
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var up = th.dataset.dir !== 'asc';
    th.closest('tr').querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = up ? 'asc' : 'desc';
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      if (th.classList.contains('n')) {
        if (x === '' || y === '') { return (x === '') - (y === ''); }
        return up ? x - y : y - x;
      }
      return up ? x.localeCompare(y) : y.localeCompare(x);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


@dataclass(frozen=True)
class Examples:
    """Drawn pictures of the worst classes: the inputs of ``submit.show`` and its settings."""

    evaluated: show.Evaluated
    images: Path
    score_thr: float = show.SCORE_THR
    max_boxes: int = show.MAX_BOXES


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """The per-class table as the strings the ``--per-class`` CSV holds (AP with 6 decimals, empty where NaN)."""
    out = table.astype(str)
    out["AP"] = [f"{v:.6f}" if np.isfinite(v) else "" for v in table["AP"]]
    return out


def class_levels(mids: Sequence[str], hierarchy: Hierarchy) -> pd.DataFrame:
    """Per class: leaf (bool) and depth (1 = directly under the root; the longest path for multi-parent classes;
    classes absent from the hierarchy count as depth-1 leaves)."""
    depth: dict[str, int] = {}

    def depth_of(mid: str) -> int:
        if mid not in depth:
            depth[mid] = 1 + max((depth_of(p) for p in hierarchy.parents(mid)), default=0)
        return depth[mid]

    known = [m in hierarchy for m in mids]
    return pd.DataFrame({"MID": list(mids),
                         "leaf": [not k or hierarchy.is_leaf(m) for m, k in zip(mids, known)],
                         "depth": [depth_of(m) if k else 1 for m, k in zip(mids, known)]})


def parents_against_leaves(table: pd.DataFrame, hierarchy: Hierarchy) -> pd.DataFrame:
    """Each non-leaf class with ground truth: its AP and detections against the mean AP and summed detections of
    its leaf descendants with ground truth; the largest shortfall first."""
    rows = table.set_index("MID")
    out = []
    for mid, row in rows.iterrows():
        if mid not in hierarchy or hierarchy.is_leaf(mid) or row["num_gt"] == 0:
            continue
        leaves = [d for d in hierarchy.descendants(mid) if d in rows.index and hierarchy.is_leaf(d)
                  and rows.at[d, "num_gt"] > 0]
        if leaves:
            out.append({"MID": mid, "DisplayName": row["DisplayName"], "AP": row["AP"],
                        "leaves_AP": float(rows.loc[leaves, "AP"].mean()), "leaves": len(leaves),
                        "num_dets": int(row["num_dets"]), "leaves_dets": int(rows.loc[leaves, "num_dets"].sum())})
    frame = pd.DataFrame(out, columns=["MID", "DisplayName", "AP", "leaves_AP", "leaves", "num_dets", "leaves_dets"])
    frame["gap"] = frame["AP"] - frame["leaves_AP"]
    return frame.sort_values("gap", kind="stable").reset_index(drop=True)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    with atomic_output(path) as f:
        f.write(png.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _annotate(ax, xs: Sequence[float], ys: Sequence[float], names: Sequence[str]) -> None:
    """Name points, each label beside its point where it covers no earlier label; a point without such a place
    stays unnamed (axes limits and scales must be final)."""
    offsets = ((4, 3, "left"), (4, -10, "left"), (-4, 3, "right"), (-4, -10, "right"), (4, 12, "left"))
    placed: list[tuple[float, float, str]] = []
    for x, y, name in zip(xs, ys, names):
        px, py = ax.transData.transform((x, y))
        width = 4.2 * len(name) + 4  # ~7 pt text at 100 dpi

        def clear(dx, dy, ha):
            left = px + dx - (width if ha == "right" else 0)
            return all(abs(py + dy - qy) > 10 or left + width < qx or left > qx + w for qx, qy, w in placed)

        spot = next((o for o in offsets if clear(*o)), None)
        if spot is None:
            continue
        dx, dy, ha = spot
        placed.append((px + dx - (width if ha == "right" else 0), py + dy, width))
        ax.annotate(name, (x, y), fontsize=7, xytext=(dx, dy), textcoords="offset points", ha=ha)


def plot_frequency(table: pd.DataFrame, mean_ap: float, path: Path, annotate: int = 8) -> None:
    """AP against ground-truth count (log scale), leaves and parent classes apart, with the mean AP per frequency
    bin and the worst classes named."""
    plt = _pyplot()
    from matplotlib import ticker

    scored = table[table["num_gt"] > 0]
    fig, ax = plt.subplots(figsize=(11, 4.8))
    for leaf, colour, label in ((True, "tab:blue", "leaf class"), (False, "tab:orange", "parent class")):
        part = scored[scored["leaf"] == leaf]
        ax.scatter(part["num_gt"], part["AP"], s=22, color=colour, alpha=0.8, label=f"{label} ({len(part)})",
                   marker="o" if leaf else "s", zorder=3)
    edges = np.unique(np.geomspace(1, max(2, scored["num_gt"].max() + 1), 9).round())
    bins = np.digitize(scored["num_gt"], edges[1:-1])
    centres, means = [], []
    for b in np.unique(bins):
        part = scored[bins == b]
        centres.append(float(np.exp(np.log(part["num_gt"]).mean())))
        means.append(float(part["AP"].mean()))
    ax.plot(centres, means, color="black", linewidth=1.2, marker="D", markersize=3, alpha=0.6, zorder=2,
            label="mean AP per bin")
    ax.axhline(mean_ap, color="tab:red", linewidth=1, linestyle="--", label=f"mAP {mean_ap:.4f}")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("ground-truth boxes of the class (after hierarchy expansion, log scale)")
    ax.set_ylabel("AP")
    ax.set_title("AP by class frequency")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    worst = scored.sort_values("AP", kind="stable").head(annotate)
    _annotate(ax, worst["num_gt"], worst["AP"], worst["DisplayName"])
    _save(fig, path)


def plot_levels(table: pd.DataFrame, parents: pd.DataFrame, path: Path, annotate: int = 10) -> None:
    """Left: mean AP per hierarchy depth, leaves and parent classes apart. Right: each parent class's AP against
    the mean AP of its leaves (below the diagonal: the parent does worse than its leaves)."""
    plt = _pyplot()
    scored = table[table["num_gt"] > 0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    depths = sorted(scored["depth"].unique())
    for k, (leaf, colour, label) in enumerate(((True, "tab:blue", "leaf"), (False, "tab:orange", "parent"))):
        part = scored[scored["leaf"] == leaf].groupby("depth")["AP"].agg(["mean", "size"]).reindex(depths)
        x = np.arange(len(depths)) + (k - 0.5) * 0.38
        bars = left.bar(x, part["mean"].fillna(0), width=0.38, color=colour, label=f"{label} classes")
        for bar, n in zip(bars, part["size"]):
            if n == n:  # not NaN: the depth has classes of this kind
                left.annotate(f"{int(n)}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                              va="bottom", fontsize=7)
    left.set_xticks(np.arange(len(depths)), [str(d) for d in depths])
    left.set_xlabel("depth in the hierarchy (1 = top level; number on a bar = classes)")
    left.set_ylabel("mean AP")
    left.set_ylim(0, 1.05)
    left.set_title("mean AP by hierarchy level")
    left.legend(fontsize=8)
    right.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--")
    if len(parents):
        right.scatter(parents["leaves_AP"], parents["AP"], s=26, color="tab:orange")
    else:
        right.text(0.5, 0.5, "no parent class with ground truth", ha="center", va="center")
    right.set_xlim(-0.03, 1.03)
    right.set_ylim(-0.03, 1.03)
    right.set_xlabel("mean AP of the class's leaf descendants")
    right.set_ylabel("AP of the parent class")
    right.set_title("parents against their leaves (below the line: parent worse)")
    right.grid(alpha=0.3)
    fig.tight_layout()
    named = parents.head(annotate)
    _annotate(right, named["leaves_AP"], named["AP"], named["DisplayName"])
    _save(fig, path)


def _slug(mid: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in mid.strip("/"))


def draw_examples(out: Path, worst: pd.DataFrame, examples: Examples) -> list[tuple[pd.Series, list]]:
    """Pictures of the images where each worst class loses most (only that class drawn), as JPEG under
    ``out/examples``; files left there by an earlier report and not redrawn are removed."""
    folder = out / EXAMPLES
    drawn, written = [], set()
    for _, row in worst.iterrows():
        ev = examples.evaluated
        ids = show.pick_images(ev, IMAGES_PER_CLASS, examples.score_thr, row["MID"])
        pictures = show.render(show.scenes(ev, ids, examples.score_thr, examples.max_boxes, row["MID"]),
                               examples.images, folder, "jpg", f"{_slug(row['MID'])}-")
        written |= {p.file for p in pictures}
        drawn.append((row, pictures))
    if folder.is_dir():
        for stale in folder.glob("*.jpg"):
            if stale.name not in written:
                stale.unlink()
    return drawn


def _rows(frame: pd.DataFrame, numeric: Sequence[str]) -> str:
    return "\n".join("<tr>" + "".join(f"<td class=n>{html.escape(str(v))}</td>" if c in numeric else
                                      f"<td>{html.escape(str(v))}</td>" for c, v in row.items()) + "</tr>"
                     for _, row in frame.iterrows())


def _examples_html(drawn: list[tuple[pd.Series, list]], examples: Examples) -> str:
    if not drawn:
        return "<p class=note>No class with ground truth.</p>"
    parts = [f"<p class=note>The images where each class loses most, only that class drawn (predictions scored "
             f">= {examples.score_thr:g}).</p>", show.legend_html()]
    for row, pictures in drawn:
        ap = f"{row['AP']:.4f}" if np.isfinite(row["AP"]) else ""
        parts.append(f"<h3>{html.escape(str(row['DisplayName']))} <span class=note>{html.escape(row['MID'])}, AP "
                     f"{ap}, {row['num_gt']} ground-truth boxes, {row['num_dets']} detections</span></h3>")
        if not pictures:
            parts.append("<p class=note>No image loses anything on this class.</p>")
        parts.append("<div class=pictures>" + "".join(
            f'<figure><img src="{EXAMPLES}/{html.escape(p.file)}" alt="{html.escape(p.scene.image_id)}">'
            f"<figcaption>{show.caption(p.scene, examples.score_thr, True)}</figcaption></figure>"
            for p in pictures) + "</div>")
    return "\n".join(parts)


def write_report(out: str | Path, table: pd.DataFrame, result: EvalResult, hierarchy: Hierarchy,
                 settings: Sequence[tuple[str, str]], examples: Examples | None = None) -> Path:
    """Write ``out/index.html`` (and its plots and example pictures) for the per-class ``table`` (MID,
    DisplayName, AP, num_gt, num_dets: ``submit.score.per_class_table``) of ``result``; returns the page's path.
    ``settings`` are (name, value) rows shown as given."""
    out = Path(out)
    table = table.merge(class_levels(list(table["MID"]), hierarchy), on="MID", how="left", sort=False)
    scored = table[table["num_gt"] > 0]
    parents = parents_against_leaves(table, hierarchy)
    plot_frequency(table, result.map, out / "ap_by_frequency.png")
    plot_levels(table, parents, out / "ap_by_level.png")
    worst = scored.sort_values("AP", kind="stable").head(WORST_CLASSES)
    drawn = draw_examples(out, worst, examples) if examples is not None else []

    shown = format_table(table[["DisplayName", "MID", "AP", "num_gt", "num_dets"]])
    shown["level"] = [("leaf" if leaf else "parent") + f", depth {d}" for leaf, d in zip(table["leaf"],
                                                                                        table["depth"])]
    order = table.assign(no_gt=table["num_gt"] == 0).sort_values(["no_gt", "AP"], kind="stable").index
    numeric = ("AP", "num_gt", "num_dets")
    head = "".join(f"<th{' class=n' if c in numeric else ''}>{html.escape(t)}</th>" for c, t in COLUMNS)

    few_copies = parents[parents["num_dets"] < parents["leaves_dets"] / 2]
    warning = (f'<p class=warn>{len(few_copies)} of {len(parents)} parent classes have fewer than half the '
               f"detections of their leaves ({html.escape(', '.join(few_copies['DisplayName'].head(8)))}"
               f"{', ...' if len(few_copies) > 8 else ''}): the predictions probably lack ancestor copies, which "
               f"the metric does not add (python -m ensemble copies every box to its ancestor classes).</p>"
               if len(few_copies) else "")
    parent_rows = parents.assign(
        AP=[f"{v:.4f}" for v in parents["AP"]], leaves_AP=[f"{v:.4f}" for v in parents["leaves_AP"]],
        gap=[f"{v:+.4f}" for v in parents["gap"]])[["DisplayName", "MID", "AP", "leaves_AP", "gap", "leaves",
                                                     "num_dets", "leaves_dets"]]
    summary = [("images evaluated", f"{result.num_images:,}"),
               ("classes evaluated (with ground truth)", f"{len(scored):,} of {len(table):,}"),
               ("detections evaluated (verified classes)", f"{result.num_detections:,}")]
    page = f"""<!DOCTYPE html>
<html lang=en><head><meta charset=utf-8><title>Evaluation report: mAP {result.map:.6f}</title>
<style>{STYLE}</style></head><body>
<h1>Evaluation report</h1>
<p class=map>mAP {result.map:.6f}</p>
<table class=summary>{"".join(f"<tr><td>{html.escape(k)}</td><td class=n>{html.escape(v)}</td></tr>"
                              for k, v in summary)}</table>
<p class=note>Sections: <a href="#settings">settings</a> &middot; <a href="#frequency">AP by class frequency</a>
&middot; <a href="#hierarchy">AP by hierarchy level</a> &middot; <a href="#worst">worst classes</a> &middot;
<a href="#classes">per-class results</a></p>
<h2 id=settings>Settings</h2>
<table class=settings>{"".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                               for k, v in settings)}
<tr><td>metric</td><td>Open Images Challenge 2019: ground truth expanded through the hierarchy (predictions as
given), verified classes only, IoU &ge; {IOU_THRESHOLD} to an unmatched non-group-of box, IoA &ge; {IOU_THRESHOLD}
group-of matching (one TP per group-of box), at most {MAX_DETECTIONS_PER_CLASS:,} detections per class and image,
PASCAL VOC 2010 AP, mean over classes with ground truth</td></tr></table>
<h2 id=frequency>AP by class frequency</h2>
<p class=note>One point per class with ground truth, rare classes on the left; the black line is the mean AP
of the classes in each frequency bin.</p>
<img class=plot src="ap_by_frequency.png" alt="AP against ground-truth count">
<h2 id=hierarchy>AP by level of the hierarchy</h2>
<p class=note>The metric copies every ground-truth box to its ancestor classes but takes predictions as given, so a
parent class is found only where the predictions carry ancestor copies. gap = the parent's AP minus the mean AP of
its leaf descendants.</p>
{warning}
<img class=plot src="ap_by_level.png" alt="AP by hierarchy level and parents against their leaves">
<table class=rows><thead><tr><th>parent class</th><th>MID</th><th class=n>AP</th><th class=n>leaves' mean AP</th>
<th class=n>gap</th><th class=n>leaves</th><th class=n>detections</th><th class=n>leaves' detections</th></tr>
</thead><tbody>
{_rows(parent_rows, ("AP", "leaves_AP", "gap", "leaves", "num_dets", "leaves_dets"))}
</tbody></table>
<h2 id=worst>Worst {len(worst)} classes</h2>
{_examples_html(drawn, examples) if examples is not None else
 "<p class=note>No pictures: pass --images DIR to python -m submit.score to draw the worst classes.</p>"}
<h2 id=classes>Per-class results</h2>
<p class=note>Worst first (classes without ground truth last); click a column to sort. The values are the
--per-class CSV's.</p>
<table id=per-class class=rows><thead><tr>{head}</tr></thead><tbody>
{_rows(shown.loc[order], numeric)}
</tbody></table>
<script>{SORT_SCRIPT}</script>
</body></html>
"""
    path = out / "index.html"
    with atomic_output(path) as f:
        f.write(page.encode())
    return path
