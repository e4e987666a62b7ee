"""Pure geometry of the trade-off figures: Pareto fronts and label placement."""
from __future__ import annotations


def pareto(points: dict[str, tuple[float, float]], cost_lower: bool) -> list[str]:
    """Variants no other variant beats on both cost and accuracy (higher accuracy is better;
    the cost is better lower when cost_lower, else higher), in cost order."""
    sign = 1 if cost_lower else -1
    front = [v for v, (c, a) in points.items() if not any(
        (sign * c2 <= sign * c and a2 >= a) and (c2, a2) != (c, a) for c2, a2 in points.values())]
    return sorted(front, key=lambda v: points[v][0])


def place_labels(points: list[tuple[float, float]], texts: list[str], char_w: float = 0.0075,
                 line_h: float = 0.04, marker: float = 0.012, drop: bool = False) -> list[str | None]:
    """A plotly textposition per point (axis-normalized coordinates, 0..1) so that no two label
    boxes overlap and no label covers another marker, where one of eight places allows it (else
    the place with the fewest collisions, or None with `drop`: a figure whose legend names every
    point leaves that label out). A box is estimated from the text's length (char_w per
    character, line_h high); markers are `marker` in half-size. Greedy: the points with most
    neighbours choose first."""
    boxes: list[tuple[float, float, float, float]] = []

    def collisions(box, own):
        x0, y0, x1, y1 = box
        e = 0.004   # boxes that only touch do not collide
        labels = sum(x0 < b[2] - e and b[0] < x1 - e and y0 < b[3] - e and b[1] < y1 - e for b in boxes)
        markers = sum(x0 - marker < px < x1 + marker and y0 - marker < py < y1 + marker
                      for px, py in points if abs(px - own[0]) > marker or abs(py - own[1]) > marker)
        outside = x0 < 0 or y0 < 0 or x1 > 1 or y1 > 1
        return labels + markers + 2 * outside

    def crowd(i):
        return sum(abs(points[i][0] - x) < 0.15 and abs(points[i][1] - y) < 0.1 for x, y in points)

    out: list[str | None] = ["middle right"] * len(points)
    for i in sorted(range(len(points)), key=lambda i: -crowd(i)):
        (x, y), w, h, m = points[i], char_w * len(texts[i]), line_h, marker
        across = {"right": (x + m, x + m + w), "left": (x - m - w, x - m), "center": (x - w / 2, x + w / 2)}
        up = {"middle": (y - h / 2, y + h / 2), "top": (y + m, y + m + h), "bottom": (y - m - h, y - m)}
        cands = [(f"{v} {a}", (across[a][0], up[v][0], across[a][1], up[v][1])) for v, a in
                 (("middle", "right"), ("middle", "left"), ("top", "center"), ("bottom", "center"),
                  ("top", "right"), ("bottom", "right"), ("top", "left"), ("bottom", "left"))]
        scored = [(collisions(box, points[i]), k, pos, box) for k, (pos, box) in enumerate(cands)]
        hits, _, pos, box = min(scored)
        if hits and drop:
            out[i] = None   # no free place: the caller leaves this label out (its legend names it)
            continue
        out[i] = pos
        boxes.append(box)
    return out


def merge_colocated(points: list[tuple[float, float]], texts: list[str], marker: float = 0.012) -> list[str]:
    """Texts with the points that sit on one another (closer than a marker) labelled once:
    the first of each group carries every name (`a = b`), the others none."""
    out = list(texts)
    for i, (x, y) in enumerate(points):
        if not out[i]:
            continue
        group = [j for j in range(i + 1, len(points))
                 if out[j] and abs(points[j][0] - x) < marker and abs(points[j][1] - y) < marker]
        if group:
            out[i] = " = ".join([texts[i]] + [texts[j] for j in group])
            for j in group:
                out[j] = ""
    return out
