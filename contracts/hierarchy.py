"""The Open Images label hierarchy: ancestors and descendants of each class, as every stage uses them.

The hierarchy JSON is a tree of ``{"LabelName": MID, "Subcategory": [...], "Part": [...]}`` nodes under the root
``/m/0bl9f`` ("Entity"), which is not a class. Only ``Subcategory`` means "is a"; ``Part`` ("has part") is ignored,
as the official tools do. A class may appear under several parents (Tomato, Teddy bear, ...): the file is a DAG
written as a tree, so ancestors and descendants are kept as sets.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

ROOT_MID = "/m/0bl9f"


class Hierarchy:
    """Parent and child sets of every class of one hierarchy file (the root is not a class)."""

    def __init__(self, parents: dict[str, set[str]], root: str = ROOT_MID):
        self.root = root
        self._parents = {mid: frozenset(p) for mid, p in parents.items()}
        children: dict[str, set[str]] = {mid: set() for mid in self._parents}
        for mid, ps in self._parents.items():
            for p in ps:
                children[p].add(mid)
        self._children = {mid: frozenset(c) for mid, c in children.items()}
        self._ancestors: dict[str, frozenset[str]] = {}
        self._descendants: dict[str, frozenset[str]] = {}

    @classmethod
    def from_json(cls, path_or_tree: str | Path | dict) -> Hierarchy:
        """Read a hierarchy JSON file (or its already-parsed tree)."""
        if isinstance(path_or_tree, dict):
            tree, source = path_or_tree, "<tree>"
        else:
            source = str(path_or_tree)
            try:
                with open(path_or_tree, encoding="utf-8") as f:
                    tree = json.load(f)
            except FileNotFoundError:
                raise FileNotFoundError(f"hierarchy file not found: {source}") from None
            except json.JSONDecodeError as e:
                raise ValueError(f"{source}: not valid JSON ({e})") from None
        if not isinstance(tree, dict) or "LabelName" not in tree:
            raise ValueError(f"{source}: the top-level object has no 'LabelName'")
        root = tree["LabelName"]
        parents: dict[str, set[str]] = {}
        stack = [(tree, None)]
        while stack:
            node, parent = stack.pop()
            mid = node.get("LabelName")
            if not isinstance(mid, str):
                raise ValueError(f"{source}: a node under {parent or 'the root'} has no string 'LabelName'")
            if mid != root:
                parents.setdefault(mid, set())
                if parent is not None and parent != root:
                    parents[mid].add(parent)
            stack.extend((child, mid) for child in reversed(node.get("Subcategory", [])))
        return cls(parents, root=root)

    @property
    def mids(self) -> frozenset[str]:
        """Every class in the hierarchy (root excluded)."""
        return frozenset(self._parents)

    def __contains__(self, mid: str) -> bool:
        return mid in self._parents

    def _check(self, mid: str) -> None:
        if mid not in self._parents:
            raise KeyError(f"unknown MID {mid!r}: not in the hierarchy")

    def parents(self, mid: str) -> frozenset[str]:
        self._check(mid)
        return self._parents[mid]

    def children(self, mid: str) -> frozenset[str]:
        self._check(mid)
        return self._children[mid]

    def is_leaf(self, mid: str) -> bool:
        return not self.children(mid)

    def ancestors(self, mid: str) -> frozenset[str]:
        """All strict ancestors of ``mid`` through every parent (root excluded)."""
        self._check(mid)
        if mid not in self._ancestors:
            out: set[str] = set()
            for p in self._parents[mid]:
                out.add(p)
                out |= self.ancestors(p)
            self._ancestors[mid] = frozenset(out)
        return self._ancestors[mid]

    def descendants(self, mid: str) -> frozenset[str]:
        """All strict descendants of ``mid``."""
        self._check(mid)
        if mid not in self._descendants:
            out: set[str] = set()
            for c in self._children[mid]:
                out.add(c)
                out |= self.descendants(c)
            self._descendants[mid] = frozenset(out)
        return self._descendants[mid]

    def restricted_tree(self, keep: Iterable[str]) -> dict:
        """The hierarchy JSON tree restricted to ``keep``: each kept class hangs under its nearest kept ancestors
        (under every one of them, as the official files write multi-parent classes), or under the root."""
        keep = set(keep)
        for mid in keep:
            self._check(mid)

        def kept_parents(mid: str) -> set[str]:
            out: set[str] = set()
            for p in self._parents[mid]:
                out |= {p} if p in keep else kept_parents(p)
            return out

        kids: dict[str, list[str]] = {self.root: []}
        for mid in sorted(keep):
            for p in sorted(kept_parents(mid)) or [self.root]:
                kids.setdefault(p, []).append(mid)

        def node(mid: str) -> dict:
            out: dict = {"LabelName": mid}
            if kids.get(mid):
                out["Subcategory"] = [node(c) for c in kids[mid]]
            return out

        return node(self.root)
