"""Pure geometry of the trade-off figures: Pareto fronts and label placement."""
from __future__ import annotations


def pareto(points: dict[str, tuple[float, float]], cost_lower: bool) -> list[str]:
    """Variants no other variant beats on both cost and accuracy (higher accuracy is better;
    the cost is better lower when cost_lower, else higher), in cost order."""
    sign = 1 if cost_lower else -1
    front = [v for v, (c, a) in points.items() if not any(
        (sign * c2 <= sign * c and a2 >= a) and (c2, a2) != (c, a) for c2, a2 in points.values())]
    return sorted(front, key=lambda v: points[v][0])


def label_positions(points: list[tuple[float, float]], near=(0.12, 0.08)) -> list[str]:
    """Text position per point (axis-normalized coordinates): right of the marker, or
    above/below, left/right of a close neighbour so two labels never cover each other."""
    pos = ["middle right"] * len(points)
    for i, (xi, yi) in enumerate(points):
        for j, (xj, yj) in enumerate(points):
            dx, dy = xi - xj, yi - yj
            if i == j or abs(dx) >= near[0] or abs(dy) >= near[1]:
                continue
            if abs(dy) * near[0] > abs(dx) * near[1]:
                pos[i] = "top center" if dy > 0 else "bottom center"
            else:
                pos[i] = "middle right" if dx > 0 or (dx == 0 and i > j) else "middle left"
    return pos
