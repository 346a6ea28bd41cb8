"""The statistics a report needs: an interval, pass@k, a paired test, the regression gate and its
power, and the stratified estimate of a full-set change."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default); sound at 0 and n, unlike Wald."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (newly failing / resolved)."""
    n = b + c
    if n == 0:
        return 1.0
    tail: float = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


# --- The regression gate: an exact test against a baseline history, and its power -------------
#
# Instance i was resolved in r_i of n_i baseline tries. Its resolve probability p_i gets a Beta
# prior fitted to the whole history (empirical Bayes), so an instance resolved 1 of 2 times is a
# coin, and one never resolved in many tries is close to 0. Under "nothing changed", this run's
# k_i of m_i tries is beta-binomial with the posterior Beta(a + r_i, b + n_i - r_i); the count
# T = sum k_i over the compared instances has the exact distribution of their convolution (for one
# try each, a Poisson-binomial over the posterior means). A one-sided p-value P(T <= t) flags
# a regression; P(T >= t) an improvement. Under a relative drop delta every p_i becomes
# (1 - delta) p_i, so the test's power is exact too, without simulation.

Prior = tuple[float, float]
FLAT_ONE_RUN = 0.5  # rho when the history cannot show overdispersion (one try per instance)


def beta_prior(tries: Sequence[tuple[int, int]]) -> Prior:
    """Beta(a, b) for the instances' resolve probabilities, by the method of moments over their
    frequencies r of n (Kleinman's estimator of the beta-binomial's mean and intra-class rho)."""
    seen = [(r, n) for r, n in tries if n > 0]
    total = sum(n for _, n in seen)
    if not seen:
        return (0.5, 0.5)  # Jeffreys: nothing to fit
    half = 0.5 / total
    mean = min(max(sum(r for r, _ in seen) / total, half), 1 - half)
    inverse = sum(1 / n for _, n in seen) / len(seen)
    if inverse >= 1:  # one try each: overdispersion cannot be seen, take a wide prior
        rho = FLAT_ONE_RUN
    else:
        spread = sum((r / n - mean) ** 2 for r, n in seen) / len(seen)
        rho = (spread / (mean * (1 - mean)) - inverse) / (1 - inverse)
    rho = min(max(rho, 0.01), 0.95)
    weight = 1 / rho - 1  # a + b
    return (mean * weight, (1 - mean) * weight)


def predictive(a: float, b: float, m: int, scale: float = 1.0) -> np.ndarray:
    """P(k of m tries resolve) when p ~ Beta(a, b), times `scale`: from the Beta's moments."""
    if m == 1:  # the common case: one try is Bernoulli of the scaled mean
        q = scale * a / (a + b)
        return np.array([1 - q, q])
    moments = [1.0]
    for t in range(m):
        moments.append(moments[-1] * (a + t) / (a + b + t))
    pmf = np.array([math.comb(m, k) * sum(math.comb(m - k, j) * (-1) ** j * scale ** (k + j) * moments[k + j]
                                          for j in range(m - k + 1)) for k in range(m + 1)])
    pmf = np.clip(pmf, 0.0, None)
    normed: np.ndarray = pmf / pmf.sum()
    return normed


def convolve(pmfs: Sequence[np.ndarray]) -> np.ndarray:
    """The distribution of a sum of independent counts."""
    total = np.array([1.0])
    for pmf in pmfs:
        total = np.convolve(total, pmf)
    return total


@dataclass(frozen=True)
class Gate:
    """The exact test of one run's resolves on the compared instances against their history."""

    posteriors: tuple[Prior, ...]
    tries: tuple[int, ...]  # this run's tries of each compared instance
    alpha: float

    @cached_property
    def null(self) -> np.ndarray:
        return self.under(0.0)

    def under(self, drop: float) -> np.ndarray:
        """The distribution of the resolves when every p_i is (1 - drop) p_i."""
        return convolve([predictive(a, b, m, 1 - drop) for (a, b), m in zip(self.posteriors, self.tries, strict=True)])

    @property
    def expected(self) -> float:
        return sum(m * a / (a + b) for (a, b), m in zip(self.posteriors, self.tries, strict=True))

    def p_worse(self, resolved: int) -> float:
        return float(min(1.0, self.null[: resolved + 1].sum()))

    def p_better(self, resolved: int) -> float:
        return float(min(1.0, self.null[resolved:].sum()))

    @cached_property
    def critical(self) -> int:
        """The most resolves that still count as a regression at alpha (-1: none can)."""
        below = np.nonzero(np.cumsum(self.null) <= self.alpha)[0]
        return int(below[-1]) if below.size else -1

    def power(self, drop: float) -> float:
        """The chance that a relative drop of `drop` in every instance's p is flagged."""
        c = self.critical
        return float(self.under(drop)[: c + 1].sum()) if c >= 0 else 0.0

    def detectable(self, power: float = 0.8) -> float | None:
        """The smallest relative drop flagged with `power` (None: not even losing every resolve)."""
        if self.power(1.0) < power:
            return None
        low, high = 0.0, 1.0
        for _ in range(14):  # to 1e-4 of a relative drop
            mid = (low + high) / 2
            low, high = (low, mid) if self.power(mid) >= power else (mid, high)
        return high


def stratified(strata: Sequence[tuple[int, Sequence[float], float]]) -> tuple[float, float]:
    """The stratified estimate of a population mean and its standard error, from strata of
    (population N_h, the sampled values, a floor of their variance): sum W_h mean_h, with variance
    sum W_h^2 s_h^2 / n_h (1 - n_h / N_h)."""
    population = sum(n for n, _, _ in strata)
    mean = variance = 0.0
    for size, values, floor in strata:
        if not values or not population:
            continue
        weight = size / population
        m = sum(values) / len(values)
        s2 = sum((v - m) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
        mean += weight * m
        variance += weight**2 * max(s2, floor) / len(values) * max(0.0, 1 - len(values) / size)
    return mean, math.sqrt(variance)
