"""A small layered graph laid out for inline SVG: lineage from data to deployments.

Nodes sit in columns (``dataset`` -> ``run`` -> ``model version`` -> ``deployment``);
edges run left to right. Within a column, nodes are ordered by the mean position of
their neighbours in the previous column (one barycentre pass), which keeps most edges
from crossing. The template draws each node as a linked box and each edge as a curve.

Example:
    >>> g = LineageGraph()
    >>> g.node("d", "dataset", "churn@2", "/datasets/churn?version=2")
    >>> g.node("r", "run", "swift-heron-274", "/runs/abc")
    >>> g.edge("d", "r")
    >>> layout = g.layout()
    >>> [n.label for n in layout.nodes], len(layout.edges)
    (['churn@2', 'swift-heron-274'], 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The columns, left to right, and their headings.
COLUMNS = ("dataset", "run", "version", "deployment")
HEADINGS = {
    "dataset": "dataset versions",
    "run": "runs",
    "version": "model versions",
    "deployment": "deployments",
}
NODE_W, NODE_H = 200, 40
COL_GAP, ROW_GAP = 96, 14
TOP = 28
#: Characters of a label shown in its box; the whole label is in the box's tooltip.
LABEL_CHARS = 26


@dataclass
class Node:
    """A box: its id, column, label, link, optional second line and its position."""

    id: str
    column: str
    label: str
    href: str | None
    sub: str = ""
    x: int = 0
    y: int = 0

    @property
    def short(self) -> str:
        """The label cut to fit the box."""
        return self.label if len(self.label) <= LABEL_CHARS else self.label[: LABEL_CHARS - 1] + "…"


@dataclass(frozen=True)
class Edge:
    """A curve from the right side of one box to the left side of another."""

    source: str
    target: str
    label: str = ""
    dashed: bool = False
    path: str = ""
    label_x: int = 0
    label_y: int = 0


@dataclass
class Layout:
    """Positioned nodes and edges, and the size of the drawing."""

    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int
    headings: list[tuple[int, str]] = field(default_factory=list)


class LineageGraph:
    """Collects nodes and edges (duplicates ignored), then lays them out."""

    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}
        self._edges: dict[tuple[str, str], Edge] = {}

    def node(self, node_id: str, column: str, label: str, href: str | None, sub: str = "") -> None:
        """Add a node once; a second call with the same id changes nothing."""
        if column not in COLUMNS:
            raise ValueError(f"unknown column {column!r}")
        self._nodes.setdefault(node_id, Node(node_id, column, label, href, sub))

    def edge(self, source: str, target: str, label: str = "", dashed: bool = False) -> None:
        """Add an edge once; a solid edge wins over a dashed one between the same nodes."""
        key = (source, target)
        old = self._edges.get(key)
        if old is None or (old.dashed and not dashed):
            self._edges[key] = Edge(source, target, label, dashed)

    def __len__(self) -> int:
        return len(self._nodes)

    def layout(self) -> Layout:
        """Place the nodes in their columns and route the edges."""
        used = [c for c in COLUMNS if any(n.column == c for n in self._nodes.values())]
        order: dict[str, float] = {}
        rows = 0
        for ci, column in enumerate(used):
            members = [n for n in self._nodes.values() if n.column == column]
            if ci > 0:
                members.sort(key=lambda n: self._barycentre(n.id, order))
            for row, n in enumerate(members):
                order[n.id] = row
                n.x = ci * (NODE_W + COL_GAP) + 4
                n.y = TOP + row * (NODE_H + ROW_GAP)
            rows = max(rows, len(members))
        placed = [e for e in self._edges.values() if self._placed(e)]
        edges = [self._route(e, placed) for e in placed]
        width = max(1, len(used)) * (NODE_W + COL_GAP) - COL_GAP + 8
        height = TOP + max(1, rows) * (NODE_H + ROW_GAP)
        headings = [(i * (NODE_W + COL_GAP) + 4, HEADINGS[c]) for i, c in enumerate(used)]
        return Layout(list(self._nodes.values()), edges, width, height, headings)

    def _barycentre(self, node_id: str, order: dict[str, float]) -> float:
        rows = [
            order[e.source]
            for e in self._edges.values()
            if e.target == node_id and e.source in order
        ]
        return sum(rows) / len(rows) if rows else float("inf")

    def _placed(self, e: Edge) -> bool:
        return e.source in self._nodes and e.target in self._nodes

    def _port(self, node: Node, mine: Edge, edges: list[Edge], incoming: bool) -> int:
        """The y where ``mine`` meets ``node``: a node's edges spread down its side, in the
        order of the nodes at their other ends, so that they neither merge nor cross there."""
        if incoming:
            group = sorted(
                (e for e in edges if e.target == node.id), key=lambda e: self._nodes[e.source].y
            )
        else:
            group = sorted(
                (e for e in edges if e.source == node.id), key=lambda e: self._nodes[e.target].y
            )
        i = next(n for n, e in enumerate(group) if e is mine)
        return node.y + NODE_H * (i + 1) // (len(group) + 1)

    def _route(self, e: Edge, edges: list[Edge]) -> Edge:
        a, b = self._nodes[e.source], self._nodes[e.target]
        x1, y1 = a.x + NODE_W, self._port(a, e, edges, incoming=False)
        x2, y2 = b.x, self._port(b, e, edges, incoming=True)
        mid = (x1 + x2) // 2
        path = f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 6},{y2}"
        # The label sits above the start of its edge: edges leave different boxes or
        # different ports, so labels never overlap each other.
        return Edge(e.source, e.target, e.label, e.dashed, path, x1 + 6, y1 - 5)
