"""The formulas every report uses (summary.json, inspect, compare, plot): one place each.

`acc` is an accuracy matrix: row i = accuracy on each test experience after training row i.
`origins[i]` is the test experience row i trained on: i itself for a split stream (the default),
the experience an online piece was cut from (`benchmark.experience_size`), so that "right after
training experience j" is the last row of origin j.
"""

from __future__ import annotations

from typing import Any


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


def anytime_curve(records: list[dict]) -> list[tuple[int, int, list[float]]]:
    """(test experience trained on, cumulative step, accuracy on each seen test experience) of every
    anytime point of `records` (run/anytime.py), in order: a record's steps count on from the end of
    the one before (its last point is its end)."""
    curve, offset = [], 0
    for r in records:
        origin = r.get("origin_experience", r.get("experience", 0))
        points = r.get("anytime") or []
        for step, acc in points:
            curve.append((int(origin), offset + int(step), [float(a) for a in acc]))
        offset += int(points[-1][0]) if points else 0
    return curve


def anytime(records: list[dict]) -> dict[str, float | list[float] | None]:
    """The measures of an anytime curve (`anytime_curve`), as De Lange et al. (ICLR 2023) and Koh et
    al. (ICLR 2022) define them:
    - anytime_accuracy: the mean over the points of the accuracy on the seen test experiences;
    - min_accuracy (min-ACC): over each test experience j before the last trained, the lowest
      accuracy on j at any point after j was trained on, averaged over j;
    - worst_case_accuracy (WC-ACC): 1/k of the last point's accuracy on the last experience plus
      (1 - 1/k) of min-ACC, k the experiences trained;
    - stability_gaps: at each switch to experience o, the mean over j < o of the accuracy on j at
      the last point before the switch minus its lowest during o; stability_gap: their mean.
    None where a measure needs a second experience."""
    curve = anytime_curve(records)
    if not curve:
        return {}
    last = curve[-1][0]
    out: dict[str, float | list[float] | None] = {
        "anytime_accuracy": sum(sum(a) / len(a) for _, _, a in curve) / len(curve),
        "min_accuracy": None,
        "worst_case_accuracy": None,
        "stability_gaps": [],
        "stability_gap": None,
    }
    if last > 0:
        lows = [min(a[j] for o, _, a in curve if o > j) for j in range(last)]
        low, k = sum(lows) / len(lows), last + 1
        out["min_accuracy"] = low
        out["worst_case_accuracy"] = curve[-1][2][last] / k + (1 - 1 / k) * low
    gaps = []
    for o in sorted({o for o, _, _ in curve if o > 0}):
        before = [a for p, _, a in curve if p == o - 1]
        during = [a for p, _, a in curve if p == o]
        if before and during:
            gaps.append(sum(before[-1][j] - min(a[j] for a in during) for j in range(o)) / o)
    out["stability_gaps"] = gaps
    out["stability_gap"] = sum(gaps) / len(gaps) if gaps else None
    return out


def spending(records: list[dict]) -> dict[str, Any]:
    """What the experiences of `records` spent (`metrics: [cost]`, run/cost.py): `cost`, the totals
    of their steps, forward and backward sample passes and FLOPs; `flops_per_step`; with a budget
    or realtime, `skipped` (incoming batches not trained on); with realtime, `online_accuracy`
    (each batch predicted before it was trained on, over all of them)."""
    out: dict[str, Any] = {}
    parts = [r["cost"] for r in records if "cost" in r]
    if parts:
        total = {k: sum(p[k] for p in parts) for k in ("steps", "forward", "backward", "flops")}
        out["cost"] = total
        out["flops_per_step"] = total["flops"] / total["steps"] if total["steps"] else None
    if any("skipped" in r for r in records):
        out["skipped"] = sum(r.get("skipped", 0) for r in records)
    seen = [(r["online_accuracy"], r["online_samples"]) for r in records if r.get("online_samples")]
    if seen:
        out["online_accuracy"] = sum(a * n for a, n in seen) / sum(n for _, n in seen)
    return out
