"""The statistics behind every interval: Wilson, Newcombe, Jeffreys-smoothed variances.

Pure Python and the standard library; no I/O, no LangGraph, no OpenTelemetry. The report,
the planner and the renderers use these; :class:`Estimate` and ``wilson_interval`` are
public (``coordgap.Estimate``, ``coordgap.wilson_interval``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from .errors import ConfigurationError

__all__ = [
    "Estimate",
    "jeffreys",
    "log_variance",
    "newcombe",
    "proportion_variance",
    "wilson_interval",
    "z",
]


def z(confidence: float) -> float:
    """Return the two-sided normal quantile of ``confidence`` (1.96 at 0.95).

    Example::

        >>> round(z(0.95), 2)
        1.96
    """
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, int | float)
        or not 0.0 < confidence < 1.0
    ):
        raise ConfigurationError(
            f"confidence must be between 0 and 1 (got {confidence!r}); use e.g. 0.95"
        )
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Return the Wilson score interval for a binomial proportion.

    Wilson keeps its stated coverage near 0 and 1, where reliabilities live and
    where the textbook (Wald) interval collapses to a point. The counts may be
    fractional (``0 <= successes <= n``): the bounds are smooth in them, so the
    interval at a rate ``p`` after ``m`` runs is ``wilson_interval(p * m, m)``.

    Example::

        >>> low, high = wilson_interval(97, 100)
        >>> round(low, 3), round(high, 3)
        (0.915, 0.99)
    """
    if n <= 0:
        return (0.0, 1.0)
    zz = z(confidence)
    p = successes / n
    z2n = zz * zz / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = zz / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    # Exact bounds at the edges: floating error must not put 1.0 outside [low, high].
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def newcombe(
    s_old: int, n_old: int, s_new: int, n_new: int, confidence: float
) -> tuple[float, float]:
    """Return the interval of p_new - p_old (Newcombe's hybrid score method, two Wilsons).

    Example::

        >>> lo, hi = newcombe(95, 100, 80, 100, 0.95)
        >>> hi < 0
        True
    """
    p1, p2 = s_old / n_old, s_new / n_new
    l1, u1 = wilson_interval(s_old, n_old, confidence)
    l2, u2 = wilson_interval(s_new, n_new, confidence)
    d = p2 - p1
    return (d - math.hypot(p2 - l2, u1 - p1), d + math.hypot(u2 - p2, p1 - l1))


def jeffreys(successes: float, n: float) -> float:
    """Return the Jeffreys posterior mean (s + ½) / (n + 1): a proportion never exactly 0 or 1.

    Example::

        >>> jeffreys(10, 10)
        0.9545454545454546
    """
    return (successes + 0.5) / (n + 1.0)


def log_variance(successes: float, n: float) -> float:
    """Return Var(log r̂) ≈ (1 - p) / (n·p) with p Jeffreys-smoothed (0 when n is 0).

    Smoothing keeps a component that has not failed yet uncertain instead of exact.

    Example::

        >>> round(log_variance(99, 100), 6)
        0.000151
    """
    if n <= 0:
        return 0.0
    p = jeffreys(successes, n)
    return (1.0 - p) / (n * p)


def proportion_variance(successes: float, n: float) -> float:
    """Return Var(r̂) ≈ p(1 - p)/n with p Jeffreys-smoothed (0 when n is 0).

    Example::

        >>> round(proportion_variance(99, 100), 6)
        0.000146
    """
    if n <= 0:
        return 0.0
    p = jeffreys(successes, n)
    return p * (1.0 - p) / n


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with its interval.

    ``value`` is None when there is no data. ``method`` says how the interval
    was made: ``wilson`` (a proportion), ``delta-log`` (predicted end to end:
    the delta method on the logarithm of the chain's solution), ``given`` (an
    audit input, no uncertainty) or ``none``.
    """

    value: float | None
    low: float
    high: float
    method: str = "wilson"

    def __float__(self) -> float:
        if self.value is None:
            return math.nan
        return self.value

    def contains(self, x: float) -> bool:
        """Return True when ``x`` lies in the interval (bounds included)."""
        return self.low <= x <= self.high

    @classmethod
    def proportion(cls, successes: int, n: int, confidence: float) -> Estimate:
        """Return successes / n with its Wilson interval (value None when n is 0)."""
        low, high = wilson_interval(successes, n, confidence)
        return cls(None if n <= 0 else successes / n, low, high, "wilson")
