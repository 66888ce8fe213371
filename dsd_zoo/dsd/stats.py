"""Paired comparisons over seeds: the mean difference with its Student-t interval, and a sign test.

Pure Python (no SciPy), so that the demonstrations report their statistics with nothing beyond
dsd-zoo's own requirements. The t quantile comes from the regularized incomplete beta function
(a continued fraction, as in Press et al., *Numerical Recipes*, section 6.4), inverted by
bisection: deterministic, and accurate to far more digits than an error rate is reported with.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any, Optional

__all__ = ["paired_difference", "sign_test_p", "student_t_cdf", "student_t_quantile"]


def _incomplete_beta_fraction(a: float, b: float, x: float) -> float:
    # Lentz's method for the continued fraction of I_x(a, b); converges fast for x < (a+1)/(a+b+2).
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta I_{x}({a}, {b}) did not converge")


def _regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _incomplete_beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _incomplete_beta_fraction(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t distribution with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    tail = 0.5 * _regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The ``t`` with ``P(T <= t) = p`` (e.g. ``p = 0.975``, ``df = 19`` gives 2.0930)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if student_t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


def sign_test_p(differences: Sequence[float]) -> float:
    """Exact two-sided sign test of "a difference is as likely negative as positive"; zeros are dropped.

    ``min(1, 2 * P(X <= min(k, n - k)))`` for ``X ~ Binomial(n, 1/2)``, ``n`` the non-zero
    differences, ``k`` the negative ones. 1.0 when every difference is zero.
    """
    negative = sum(d < 0 for d in differences)
    n = negative + sum(d > 0 for d in differences)
    tail = sum(math.comb(n, i) for i in range(min(negative, n - negative) + 1))
    return min(1.0, 2.0 * tail / 2**n)


def paired_difference(differences: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Mean of per-seed differences with its two-sided Student-t interval, and the sign test.

    Returns ``{"n", "mean", "std", "level", "t", "ci_low", "ci_high", "sign_test_p"}``; the
    interval is ``None`` below two differences (no spread to estimate).
    """
    n = len(differences)
    if n == 0:
        raise ValueError("no differences to summarise")
    mean = statistics.fmean(differences)
    std = statistics.stdev(differences) if n > 1 else 0.0
    t: Optional[float] = student_t_quantile(0.5 + level / 2.0, n - 1) if n > 1 else None
    half = t * std / math.sqrt(n) if t is not None else None
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "level": level,
        "t": t,
        "ci_low": mean - half if half is not None else None,
        "ci_high": mean + half if half is not None else None,
        "sign_test_p": sign_test_p(differences),
    }
