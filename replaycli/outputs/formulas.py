"""The formulas every report uses (summary.json, inspect, compare, plot): one place each.

`acc` is an accuracy matrix: row i = accuracy on each test experience after training row i.
`origins[i]` is the test experience row i trained on: i itself for a split stream (the default),
the experience an online piece was cut from (`benchmark.experience_size`), so that "right after
training experience j" is the last row of origin j.
"""

from __future__ import annotations


def _last_rows(acc: list[list[float]], origins: list[int] | None) -> dict[int, int]:
    """Test experience j -> the last row that trained on it, for the j trained before the last row's."""
    origins = list(range(len(acc))) if origins is None else origins
    if not acc:
        return {}
    final, n = origins[len(acc) - 1], len(acc[-1])
    last = {o: i for i, o in enumerate(origins[: len(acc)])}
    return {j: last[j] for j in sorted(last) if j < final and j < n}


def forgetting_of(acc: list[list[float]], j: int, origins: list[int] | None = None) -> float:
    """Best accuracy on experience j before the last row, minus its final accuracy (0 for the
    last trained experience and for a single row)."""
    if j not in _last_rows(acc, origins):
        return 0.0
    return max(row[j] for row in acc[:-1]) - acc[-1][j]


def forgetting(acc: list[list[float]], origins: list[int] | None = None) -> float:
    """Mean over the experiences trained before the last of (best earlier accuracy - final accuracy)."""
    drops = [forgetting_of(acc, j, origins) for j in _last_rows(acc, origins)]
    return sum(drops) / len(drops) if drops else 0.0


def bwt(acc: list[list[float]], origins: list[int] | None = None) -> float:
    """Backward transfer: mean over j < last of (final accuracy on j - accuracy on j right after j)."""
    rows = _last_rows(acc, origins)
    return sum(acc[-1][j] - acc[r][j] for j, r in rows.items()) / len(rows) if rows else 0.0


def seen(acc: list[list[float]], origins: list[int] | None = None) -> list[float]:
    """After each row, the mean accuracy on the test experiences trained so far (0..origin)."""
    origins = list(range(len(acc))) if origins is None else origins
    return [mean(row[: min(o, len(row) - 1) + 1]) for row, o in zip(acc, origins, strict=True)]


def average_incremental_accuracy(acc: list[list[float]], origins: list[int] | None = None) -> float | None:
    """The mean over rows of the accuracy on the experiences seen so far (Rebuffi et al.'s average
    incremental accuracy: each row's accuracy on all the classes learned until then)."""
    return mean(seen(acc, origins)) if acc else None


def auc(acc: list[list[float]], samples: list[int], origins: list[int] | None = None) -> float | None:
    """Area under the seen-so-far accuracy curve against the training samples seen (trapezoids),
    divided by the samples of the whole stream: in [0, 1]. `samples[i]`: row i's samples. The
    online metric of Koh et al. (ICLR 2022): a run that is accurate early scores higher."""
    if not acc or len(samples) != len(acc) or sum(samples) <= 0:
        return None
    ys, xs, total = seen(acc, origins), [0.0], 0.0
    for n in samples:
        total += n
        xs.append(total)
    ys = [ys[0], *ys]  # before the first piece: as after it (no evaluation at 0 samples)
    return sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(acc))) / total


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0
