"""The formulas every report uses (summary.json, inspect, compare, plot): one place each.

`acc` is an accuracy matrix: row i = accuracy on each test experience after training experience i.
"""
from __future__ import annotations


def forgetting_of(acc: list[list[float]], j: int) -> float:
    """Best accuracy on experience j before the last row, minus its final accuracy (0 for the
    last trained experience and for a single row)."""
    if j >= len(acc) - 1:
        return 0.0
    return max(row[j] for row in acc[:-1]) - acc[-1][j]


def forgetting(acc: list[list[float]]) -> float:
    """Mean over the experiences trained before the last of (best earlier accuracy - final accuracy)."""
    if len(acc) < 2:
        return 0.0
    cols = range(min(len(acc), len(acc[-1])) - 1)  # experiences trained before the last one
    drops = [forgetting_of(acc, j) for j in cols]
    return sum(drops) / len(drops) if drops else 0.0


def bwt(acc: list[list[float]]) -> float:
    """Backward transfer: mean over j < last of (final accuracy on j - accuracy on j right after j)."""
    k = min(len(acc), len(acc[-1])) if acc else 0
    if k < 2:
        return 0.0
    return sum(acc[-1][j] - acc[j][j] for j in range(k - 1)) / (k - 1)


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0
