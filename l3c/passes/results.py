"""Walking a result tree: None, a leaf, or ("tuple" | "list", [tree]) / ("dict", [(key, tree)]).

`Program.results` is such a tree of `ResultRef`s (docs/ir.md); a plan holds the same tree of arena
views and a run builds it of arrays. These three functions are the only code that knows the
tree's shape: the passes list its leaves, code generation and the execution stage map and build it.
"""
from __future__ import annotations

from typing import Any

RESULT_KINDS = ("tuple", "list", "dict")


def _is_node(tree: Any) -> bool:
    return isinstance(tree, tuple) and len(tree) == 2 and tree[0] in RESULT_KINDS


def map_results(tree: Any, leaf: Any) -> Any:
    """The same tree with every leaf replaced by `leaf(it)` (None stays None)."""
    if tree is None:
        return None
    if not _is_node(tree):
        return leaf(tree)
    kind, items = tree
    if kind == "dict":
        return (kind, [(key, map_results(sub, leaf)) for key, sub in items])
    return (kind, [map_results(sub, leaf) for sub in items])


def build_results(tree: Any, leaf: Any) -> Any:
    """The Python value a tree stands for: tuples, lists and dicts around `leaf(it)` of each leaf."""
    if tree is None:
        return None
    if not _is_node(tree):
        return leaf(tree)
    kind, items = tree
    if kind == "dict":
        return {key: build_results(sub, leaf) for key, sub in items}
    out = [build_results(sub, leaf) for sub in items]
    return tuple(out) if kind == "tuple" else out


def result_refs(tree: Any) -> list[Any]:
    """Every leaf of a result tree (its `ResultRef`s in the IR), in order."""
    out: list[Any] = []
    map_results(tree, out.append)
    return out
