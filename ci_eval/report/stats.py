"""The statistics of a comparison: the regression gate and its power, and the stratified estimate
of a full-set change (a report's own interval and pass@k are `build.py`'s)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

# --- The regression gate: runs as exchangeable units -------------------------------------------
#
# The unit is the run. Instance i was run by n_i baseline runs; run j resolved the share y_ij of
# its epochs there (0 or 1 with one epoch), and this run the share x_i. Under "nothing changed"
# the n_i + 1 runs are exchangeable, so given the multiset of their values, x_i is any one of them
# with equal chance (with one baseline run this is McNemar's exact test). No prior is fitted to
# the data the test judges, and the epochs of one run are one observation, never k tries: the
# null holds at any history depth, from one run up. An informative sample chose its instances by
# those same baseline values ("resolved at least once", "never resolved"), which breaks the
# symmetry: the null is conditioned on the choice too, so an instance chosen for its one
# baseline resolve cannot hand that resolve to this run. The statistic sums this run's values on
# the compared instances, each weighed against a relative drop (Neyman-Pearson, by a function of
# all n + 1 values together, so the null stays exact); its null is a convolution of discrete
# uniforms on a lattice. Where the history's runs vary together more than independent instances
# allow (a run's speed, a repository's environment), the null widens by that ratio
# (`overdispersion`).

# Lattice steps of the largest weight. The statistic is the rounded one and its null is computed
# for it exactly, so rounding costs no false alarm, only a little of the weights' power; a fine
# lattice costs time (each distinct draw of the stated power convolves on it).
LATTICE = 24
DESIGN_DROP = 0.5  # the relative drop the weights are most powerful against
EVER, NEVER = "ever", "never"  # what an informative sample chose an instance for


@dataclass(frozen=True)
class Paired:
    """One compared instance: each baseline run's share resolved, this run's, its weight, and what
    it was chosen for ("" for none: a random sample or the whole set)."""

    base: tuple[float, ...]
    new: float
    weight: float = 1.0
    chosen_for: str = ""

    @classmethod
    def weighed(cls, base: tuple[float, ...], new: float, chosen_for: str = "") -> Paired:
        """Weighed against a relative drop (Neyman-Pearson): a failure where the runs resolved most
        says more than one where they rarely did. The weight is a function of all n + 1 values
        together (their Jeffreys-smoothed mean), never of which run holds which, so the null stays exact."""
        smooth = (sum(base) + new + 0.5) / (len(base) + 2)
        return cls(base, new, -math.log((1 - DESIGN_DROP) * (1 - smooth) / (1 - (1 - DESIGN_DROP) * smooth)),
                   chosen_for)

    @property
    def scale(self) -> float:
        """How much this run's value moves D, the baseline mean moving with it."""
        return self.weight * (len(self.base) + 1) / len(self.base)

    @property
    def values(self) -> tuple[float, ...]:
        """What this run's value could have been under the null: any of the runs' values, except
        that the baseline part must still be what the sample chose the instance for."""
        every = (*self.base, self.new)
        if not self.chosen_for:
            return every
        rest = [every[:k] + every[k + 1:] for k in range(len(every))]
        fits = [v for v, others in zip(every, rest, strict=True)
                if (any(o > 0 for o in others) if self.chosen_for == EVER else not any(o > 0 for o in others))]
        return tuple(fits) or (self.new,)


SHOWN = 0.2  # the chance of a spread this large among independent runs, under which it widens the null


@dataclass(frozen=True)
class Spread:
    """How much more a history's runs vary together than independent outcomes allow (phi >= 1),
    the degrees of freedom of that estimate, and the chance of a disagreement this large when
    runs are independent."""

    phi: float = 1.0
    df: float = math.inf
    p_disagree: float = 1.0


def overdispersion(runs: Sequence[dict[str, float]], weights: dict[str, float]) -> Spread:
    """phi = sum_j Z_j^2 / sum_i w_i^2 sum_j (y_ij - ybar_i)^2, Z_j = sum_i w_i (y_ij - ybar_i),
    over the instances every run judged: 1 in expectation when instances vary independently from
    run to run, more when a run's outcomes move together; phi (n - 1) is about chi-square with
    n - 1 degrees of freedom then. Fewer than two runs cannot show it."""
    from scipy.special import chdtrc  # the chi-square upper tail

    common = [i for i in weights if all(i in r for r in runs)]
    if len(runs) < 2 or not common:
        return Spread()
    y = np.array([[r[i] for i in common] for r in runs])  # runs x instances
    w = np.array([weights[i] for i in common])
    dev = y - y.mean(axis=0)
    within = float((w**2 * (dev**2).sum(axis=0)).sum())
    if within <= 0:
        return Spread()
    phi = float(((dev @ w) ** 2).sum()) / within
    df = len(runs) - 1
    shown = float(chdtrc(df, phi * df))
    # Widen only where the history shows it: a few runs' phi is noisy, and widening by noise
    # costs the independent case its power for nothing.
    return Spread(phi=max(phi, 1.0) if shown <= SHOWN else 1.0, df=df, p_disagree=shown)


@dataclass(frozen=True)
class Sum:
    """A distribution on the lattice offset + step * k: P(offset + step * k) = pmf[k]."""

    offset: int
    step: int
    pmf: np.ndarray

    def at_most(self, value: int) -> float:
        return float(min(1.0, self.pmf[: max((value - self.offset) // self.step + 1, 0)].sum()))

    def moments(self) -> tuple[float, float]:
        k = self.offset + self.step * np.arange(self.pmf.size)
        mean = float(self.pmf @ k)
        return mean, float(self.pmf @ (k - mean) ** 2)


def uniform_sum(pieces: Sequence[tuple[tuple[int, ...], int]]) -> Sum:
    """The distribution of a sum of independent variables, `count` of each uniform over its
    lattice `steps`. A piece with one value only shifts the sum; the steps' common divisor is
    taken out, so that 0/1 outcomes cost a few cells, not LATTICE of them."""
    offset = sum(min(steps) * count for steps, count in pieces)
    moving = [([s - min(steps) for s in steps], count) for steps, count in pieces if len(set(steps)) > 1]
    step = math.gcd(*(s for rel, _ in moving for s in rel)) or 1
    total = np.ones(1)
    for rel, count in moving:
        cells = [s // step for s in rel]
        for _ in range(count):
            grown = np.zeros(total.size + max(cells))
            for s in cells:
                grown[s: s + total.size] += total
            total = grown / len(cells)
    return Sum(offset, step, total)


@dataclass(frozen=True)
class RunTest:
    """The exact conditional test of this run's values against the baseline runs', widened by `spread`."""

    items: tuple[Paired, ...]
    alpha: float
    spread: Spread = Spread()

    @cached_property
    def unit(self) -> float:
        return max((p.scale for p in self.items), default=1.0) / LATTICE

    def steps(self, scale: float, values: Sequence[float]) -> tuple[int, ...]:
        return tuple(sorted(round(scale * v / self.unit) for v in values))

    @cached_property
    def _null(self) -> Sum:
        """S = sum_i scale_i * (this run's value) on the lattice, under exchangeable runs."""
        pieces: dict[tuple[int, ...], int] = {}
        for p in self.items:
            key = self.steps(p.scale, p.values)
            pieces[key] = pieces.get(key, 0) + 1
        return uniform_sum(list(pieces.items()))

    @cached_property
    def observed(self) -> int:
        return sum(self.steps(p.scale, (p.new,))[0] for p in self.items)

    @cached_property
    def p_worse(self) -> float:
        """P(this low a value or lower | nothing changed)."""
        return lower_tail(self._null, self.observed, self.spread)

    @cached_property
    def p_better(self) -> float:
        """P(this high a value or higher | nothing changed)."""
        return 1 - lower_tail(self._null, self.observed - 1, self.spread, upper=True)


def lower_tail(null: Sum, observed: int, spread: Spread, upper: bool = False) -> float:
    """P(S <= observed) under the exact null, or under the same null widened by phi where that
    says less (the larger p-value, for `upper` the smaller): its variance phi times its own, with
    Welch-Satterthwaite degrees of freedom (the excess over 1 is estimated from the history's few
    runs), a continuity correction of half a lattice step."""
    exact = null.at_most(observed)
    if spread.phi <= 1:
        return exact
    from scipy.special import stdtr  # Student's t distribution function

    mean, var = null.moments()
    if var <= 0:
        return exact
    dof = spread.phi**2 * spread.df / (spread.phi - 1) ** 2
    widened = float(stdtr(min(dof, 1e6), (observed + null.step / 2 - mean) / math.sqrt(var * spread.phi)))
    return min(exact, widened) if upper else max(exact, widened)


@dataclass(frozen=True)
class Power:
    """The chance the gate flags a relative drop, for a history like this one: each instance's p
    drawn from a Beta posterior (a prior with the history's first two moments, the run as the
    unit), this run's share drawn under the drop, and the exact test applied to each draw, as the
    gate applies it. Instances with the same baseline values and weight are exchangeable, so a
    draw is the count of each value in each such group, and each distinct draw is tested once.
    Common random numbers make power grow with the drop."""

    items: tuple[Paired, ...]
    moments: tuple[float, float]  # E[p] and E[p^2] over the instances
    epochs: int
    alpha: float
    spread: Spread = Spread()
    draws: int = 1000
    seed: int = 0

    @cached_property
    def _draws(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        m1, m2 = self.moments
        m1 = min(max(m1, 1e-3), 1 - 1e-3)
        var = min(max(m2 - m1 * m1, 1e-4), m1 * (1 - m1) * 0.98)
        strength = m1 * (1 - m1) / var - 1
        a = m1 * strength + np.array([sum(p.base) for p in self.items])
        b = (1 - m1) * strength + np.array([len(p.base) - sum(p.base) for p in self.items])
        p = rng.beta(a, b, size=(self.draws, len(self.items)))
        u = rng.random(size=(self.draws, len(self.items), self.epochs))
        return p, u

    @cached_property
    def _groups(self) -> list[tuple[Paired, np.ndarray]]:
        """The exchangeable groups: one member, and the indices of all."""
        keyed: dict[tuple[tuple[float, ...], str], list[int]] = {}
        for n, p in enumerate(self.items):
            keyed.setdefault((tuple(sorted(p.base)), p.chosen_for), []).append(n)
        return [(self.items[idx[0]], np.array(idx)) for idx in keyed.values()]

    @cached_property
    def _test(self) -> RunTest:
        return RunTest(self.items, self.alpha, self.spread)

    @cached_property
    def _flagged(self) -> dict[bytes, bool]:
        return {}

    def __call__(self, drop: float) -> float:
        if not self.items:
            return 0.0
        p, u = self._draws
        hits = (u < ((1 - drop) * p)[:, :, None]).sum(axis=2)  # each instance's resolved epochs
        levels = range(self.epochs + 1)
        counts = np.stack([(hits[:, idx] == k).sum(axis=1) for _, idx in self._groups for k in levels], axis=1)
        rows, inverse = np.unique(counts, axis=0, return_inverse=True)
        flagged = np.array([self._flags(row) for row in rows])
        return float(flagged[inverse.ravel()].mean())

    def _flags(self, row: np.ndarray) -> bool:
        key = row.tobytes()
        if key not in self._flagged:
            self._flagged[key] = self._p_worse(row) <= self.alpha
        return self._flagged[key]

    @cached_property
    def _cells(self) -> list[tuple[tuple[int, ...], int]]:
        """For each group and each share this run can take there: the null's lattice values and
        the observed one, in the order of a draw's counts."""
        test, n = self._test, self.epochs
        out = []
        for member, _ in self._groups:
            for k in range(n + 1):
                drawn = Paired.weighed(member.base, k / n, member.chosen_for)
                out.append((test.steps(drawn.scale, drawn.values), test.steps(drawn.scale, (k / n,))[0]))
        return out

    def _p_worse(self, row: np.ndarray) -> float:
        counts = [int(c) for c in row]
        pieces = [(steps, c) for (steps, _), c in zip(self._cells, counts, strict=True) if c]
        observed = sum(c * seen for (_, seen), c in zip(self._cells, counts, strict=True))
        return lower_tail(uniform_sum(pieces), observed, self.spread)

    def detectable(self, power: float = 0.8) -> float | None:
        """The smallest relative drop flagged with `power` (None: not even losing every resolve)."""
        if self(1.0) < power:
            return None
        low, high = 0.0, 1.0
        for _ in range(10):  # to 1e-3 of a relative drop
            mid = (low + high) / 2
            low, high = (low, mid) if self(mid) >= power else (mid, high)
        return high


def spent(alpha: float, push: int) -> float:
    """The alpha the push-th run of one pull request may spend: 0.8 alpha on its first, then
    0.2 alpha 6 / (pi^2 (k - 1)^2) on the k-th, a sum of alpha over every push, so that re-testing
    a pull request on each push keeps its false alarms at alpha; the first run, which most pull
    requests only have, keeps most of the power."""
    if push <= 1:
        return alpha * FIRST_PUSH
    return alpha * (1 - FIRST_PUSH) * 6 / (math.pi**2 * (push - 1) ** 2)


FIRST_PUSH = 0.8


def stratified(strata: Sequence[tuple[int, Sequence[float], float]]) -> tuple[float, float]:
    """The stratified estimate of a population mean and its standard error, from strata of
    (population N_h, the sampled values, a floor of their variance): sum W_h mean_h, with variance
    sum W_h^2 s_h^2 / n_h (1 - n_h / N_h)."""
    population = sum(n for n, values, _ in strata if values)  # normalised over the strata with values
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
