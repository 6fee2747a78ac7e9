"""Drawing a genotype's two cells (PNG): networkx holds each cell as a graph, matplotlib draws it.

Layout as in the paper's figures: the two inputs c_{k-2} and c_{k-1} on the left, the
intermediate nodes in a column in the middle, the output c_{k} on the right; every edge is
labelled with its op.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from edgenas.darts.genotypes import Genotype, Pair

_INPUT_NAMES = ("c_{k-2}", "c_{k-1}")


def cell_graph(pairs: tuple[Pair, ...], concat: tuple[int, ...]) -> nx.MultiDiGraph:
    """The cell as a graph: nodes 'c_{k-2}', 'c_{k-1}', '0'.., 'c_{k}'; edges carry `op`."""
    graph = nx.MultiDiGraph()
    graph.add_node(_INPUT_NAMES[0], kind="input")
    graph.add_node(_INPUT_NAMES[1], kind="input")
    steps = len(pairs) // 2
    for i in range(steps):
        graph.add_node(str(i), kind="node")
    graph.add_node("c_{k}", kind="output")

    def name(j: int) -> str:
        return _INPUT_NAMES[j] if j < 2 else str(j - 2)

    for index, (op, j) in enumerate(pairs):
        graph.add_edge(name(j), str(index // 2), op=op)
    for j in concat:
        graph.add_edge(name(j), "c_{k}", op="")
    return graph


def _positions(graph: nx.MultiDiGraph, steps: int) -> dict[str, tuple[float, float]]:
    pos = {_INPUT_NAMES[0]: (0.0, 0.75 * (steps - 1)), _INPUT_NAMES[1]: (0.0, 0.25 * (steps - 1))}
    for i in range(steps):
        # Intermediate nodes step right and down, so that edges between them stay visible.
        pos[str(i)] = (1.2 + 0.9 * i, float(steps - 1 - i))
    pos["c_{k}"] = (1.8 + 0.9 * steps, 0.5 * (steps - 1))
    return pos


def draw_genotype(genotype: Genotype, path: str | Path, title: str | None = None) -> Path:
    """Write a PNG with the normal cell above the reduction cell; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 10))
    colours = {"input": "#9ecae1", "node": "#fdd0a2", "output": "#a1d99b"}
    for ax, (label, reduction) in zip(axes, (("normal cell", False), ("reduction cell", True))):
        graph = cell_graph(genotype.cell(reduction), genotype.concat)
        pos = _positions(graph, genotype.steps)
        nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=1500, node_shape="s",
                               node_color=[colours[graph.nodes[n]["kind"]] for n in graph.nodes])
        nx.draw_networkx_labels(graph, pos, ax=ax, labels={n: f"${n}$" if "_" in n else n for n in graph.nodes},
                                font_size=10)
        for k, (u, v, data) in enumerate(graph.edges(data=True)):
            rad = 0.15 if (k % 2) else -0.15
            nx.draw_networkx_edges(graph, pos, edgelist=[(u, v)], ax=ax, node_size=1500,
                                   connectionstyle=f"arc3,rad={rad}", arrows=True, arrowsize=14,
                                   edge_color="#555555" if data["op"] else "#bbbbbb")
            if data["op"]:
                (x0, y0), (x1, y1) = pos[u], pos[v]
                mx, my = (x0 + x1) / 2, (y0 + y1) / 2
                # The middle of matplotlib's arc3 curve (a quadratic Bezier; equal aspect below).
                ax.text(mx + rad * (y1 - y0) / 2, my - rad * (x1 - x0) / 2, data["op"], fontsize=8,
                        ha="center", va="center",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
        ax.set_title(label)
        ax.set_aspect("equal")
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
