"""The statistics a report needs: an interval, pass@k, the regression gate and its power, and the
stratified estimate of a full-set change."""

from __future__ import annotations

import math
from collections import Counter
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


# --- The regression gate: an exact test against a baseline history, and its power -------------
#
# Instance i was resolved in r_i of n_i baseline tries. Its resolve probability p_i gets a prior
# fitted to the whole history (empirical Bayes, `fit_prior`), so an instance resolved 1 of 2
# times is a coin and one never resolved in many tries is close to 0; its posterior mean is q_i. The
# alternative that matters is a relative drop: every p_i becomes (1 - delta) p_i. Against it the
# most powerful statistic (Neyman-Pearson) counts this run's failures, each weighted by
# w_i = log[(1 - (1 - d) q_i) / ((1 - q_i)(1 - d))] at a design drop d: losing an instance the
# history always resolved weighs more than losing a coin, and a never-resolved one adds nothing
# uncertain. Under "nothing changed" each instance's failures are binomial mixed over its
# posterior (for one try, Bernoulli of 1 - q_i), so the weighted sum's exact distribution is a
# convolution on a fine lattice of the weights. A regression is P(D >= d_obs) <= alpha; an
# improvement the other tail. Under a relative drop the same convolution gives the power exactly.

Prior = np.ndarray  # probability weights over GRID: a resolve probability's distribution
GRID = np.linspace(0.0, 1.0, 41)
DESIGN_DROP = 0.5  # the relative drop the weights are most powerful against
LATTICE = 200  # lattice steps of the largest weight: rounding moves no weight by more than 0.25%
EM_ROUNDS = 400
DISCOUNT = 0.85  # how much a baseline try counts in an instance's posterior, against the prior
SMOOTHING = 0.05  # pseudo-instances spread evenly over the grid, as a share of the instances


def fit_prior(tries: Sequence[tuple[int, int]]) -> Prior:
    """The distribution of resolve probabilities over the instances, fitted to their frequencies
    r of n: the nonparametric maximum-likelihood mixing distribution on a grid (EM, with pseudo-
    instances, SMOOTHING of the real ones, spread evenly so that no value is ruled out). A weak model's history is a
    mix of never, sometimes and nearly always, which no single Beta fits: a Beta fitted to it
    promised 0.9 for instances resolved 3 of 3 times that resolve 0.83 of the time, and the gate
    cried wolf too often (benchmarks/gate_calibration.py). With one try per instance how spread
    the probabilities are cannot be seen: then a wide Beta of the right mean (a + b = 1), so an
    instance resolved once is a coin, not a certainty."""
    seen = [(r, n) for r, n in tries if n > 0]
    if not seen:
        return np.full(GRID.size, 1 / GRID.size)
    mean = sum(r for r, _ in seen) / sum(n for _, n in seen)
    if max(n for _, n in seen) == 1:
        return _beta_on_grid(min(max(mean, 0.01), 0.99), 1.0)
    counts = Counter(seen)
    pairs = list(counts)
    likelihood = np.array([math.comb(n, r) * GRID**r * (1 - GRID) ** (n - r) for r, n in pairs])
    many = np.array([counts[p] for p in pairs], dtype=float)
    weights = np.full(GRID.size, 1 / GRID.size)
    for _ in range(EM_ROUNDS):
        share = likelihood * weights
        share /= share.sum(axis=1, keepdims=True)
        weights = (many @ share + SMOOTHING * many.sum() / GRID.size) / (many.sum() * (1 + SMOOTHING))
    return weights


def _beta_on_grid(mean: float, strength: float) -> Prior:
    inner = GRID[1:-1]
    density = inner ** (mean * strength - 1) * (1 - inner) ** ((1 - mean) * strength - 1)
    weights = np.concatenate([[0.0], density, [0.0]])
    normed: Prior = weights / weights.sum()
    return normed


def posterior(prior: Prior, resolved: int, tries: int) -> Prior:
    """The prior after `resolved` of `tries` baseline tries, their likelihood discounted (a power
    prior, Ibrahim and Chen 2000): the prior itself is an estimate, and a posterior that trusts
    the history fully made the gate cry wolf a little more often than alpha."""
    weights = prior * (GRID**resolved * (1 - GRID) ** (tries - resolved)) ** DISCOUNT
    total = weights.sum()
    return weights / total if total > 0 else prior


def mean_of(belief: Prior) -> float:
    return float(belief @ GRID)


def predictive(belief: Prior, m: int, scale: float = 1.0) -> np.ndarray:
    """P(k of m tries resolve) when p has the distribution `belief`, times `scale`."""
    p = scale * GRID
    pmf = np.array([math.comb(m, k) * float(belief @ (p**k * (1 - p) ** (m - k))) for k in range(m + 1)])
    normed: np.ndarray = pmf / pmf.sum()
    return normed


def weight(q: float, drop: float = DESIGN_DROP) -> float:
    """How much one failure of an instance with posterior mean q says for a relative drop."""
    return math.log((1 - (1 - drop) * q) / ((1 - q) * (1 - drop)))


@dataclass(frozen=True)
class WeightedTest:
    """The exact weighted test of one run's outcomes on the compared instances against their history."""

    posteriors: tuple[Prior, ...]
    tries: tuple[int, ...]  # this run's tries of each compared instance
    alpha: float

    @cached_property
    def means(self) -> tuple[float, ...]:
        return tuple(mean_of(b) for b in self.posteriors)

    @cached_property
    def steps(self) -> tuple[int, ...]:
        """Each instance's weight per failure, in lattice steps (at least 1)."""
        weights = [weight(min(q, 0.999)) for q in self.means]
        unit = max(weights, default=1.0) / LATTICE
        return tuple(max(1, round(w / unit)) for w in weights)

    def statistic(self, resolved: Sequence[int]) -> int:
        """The weighted failures of outcomes `resolved` (each instance's resolves), in lattice steps."""
        return sum((m - k) * u for m, k, u in zip(self.tries, resolved, self.steps, strict=True))

    def under(self, drop: float) -> np.ndarray:
        """The distribution of the weighted failures when every p_i is (1 - drop) p_i."""
        total = np.zeros(sum(m * u for m, u in zip(self.tries, self.steps, strict=True)) + 1)
        total[0], top = 1.0, 0
        for belief, m, u in zip(self.posteriors, self.tries, self.steps, strict=True):
            failures = predictive(belief, m, 1 - drop)[::-1]  # P(f of m tries fail)
            grown = np.zeros_like(total)
            for f, chance in enumerate(failures):
                grown[f * u: top + f * u + 1] += chance * total[: top + 1]
            total, top = grown, top + m * u
        return total

    @cached_property
    def null(self) -> np.ndarray:
        return self.under(0.0)

    @property
    def expected(self) -> float:
        """The resolves the history predicts if nothing changed."""
        return sum(m * q for q, m in zip(self.means, self.tries, strict=True))

    def p_worse(self, resolved: Sequence[int]) -> float:
        """P(this many weighted failures or more | nothing changed)."""
        return float(min(1.0, self.null[self.statistic(resolved):].sum()))

    def p_better(self, resolved: Sequence[int]) -> float:
        return float(min(1.0, self.null[: self.statistic(resolved) + 1].sum()))

    @cached_property
    def critical(self) -> int:
        """The fewest weighted failures that count as a regression at alpha (past the end: none can)."""
        tail = np.cumsum(self.null[::-1])[::-1]  # tail[d] = P(D >= d)
        inside = np.nonzero(tail <= self.alpha)[0]
        return int(inside[0]) if inside.size else self.null.size

    def power(self, drop: float) -> float:
        """The chance that a relative drop of `drop` in every instance's p is flagged."""
        return float(self.under(drop)[self.critical:].sum())

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
