"""Repeated figures: a median with its min-max, and ratios taken pair by pair."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Spread:
    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Spread | None:
        """The spread of the values that are there; None when none is."""
        found = sorted(v for v in values if v is not None)
        if not found:
            return None
        return cls(statistics.median(found), found[0], found[-1], len(found))

    @property
    def width(self) -> float:
        """(max - min) / median: how far the repeats lie apart, as a share of the median."""
        return (self.high - self.low) / self.median if self.median else float("inf")

    def text(self, form: str = "{:,.0f}") -> str:
        """'median (min-max)', or the median alone for a single value."""
        if self.count == 1:
            return form.format(self.median)
        return f"{form.format(self.median)} ({form.format(self.low)}-{form.format(self.high)})"


def paired(numerators: Sequence[float | None], denominators: Sequence[float | None]) -> list[float]:
    """Ratios repeat by repeat: the n-th of one system over the n-th of the other, measured
    back to back, so that a machine drifting between repeats moves both sides of each ratio."""
    return [a / b for a, b in zip(numerators, denominators, strict=False) if a is not None and b]


def agreement(medians: Sequence[float]) -> float:
    """How far the largest of several runs' medians lies above the smallest, as a share of it."""
    if not medians or min(medians) <= 0:
        return float("inf")
    return max(medians) / min(medians) - 1
