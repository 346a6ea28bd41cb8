"""Two agents, or one agent with two settings, on one sample: is B better than A?

The answer is a pull request's paired gate with A as the one baseline run and B as the run
judged (`verdict.judge`): B is `better` when B's resolves are significantly more than A's on
the instances both judged (one-sided, at alpha), `worse` when the gate calls a regression, and
otherwise no difference shown, with what the comparison could have detected. Each direction is
tested as a pull request's first run is (at 0.8 alpha): a claim either way is a false alarm at
most 1.6 x alpha of the time.
"""

from __future__ import annotations

from dataclasses import dataclass

from ci_eval.contracts.report import Report
from ci_eval.errors import InputError
from ci_eval.report.aggregate import Aggregated, judged
from ci_eval.report.markdown import code
from ci_eval.report.verdict import Gate

EXIT_CODES = {"better": 0, "worse": 1, "no difference shown": 3}


@dataclass(frozen=True)
class Answer:
    word: str  # better, worse or no difference shown
    a: Report
    judged: Aggregated  # B judged against A

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.word]

    @property
    def summary(self) -> str:
        """The answer's headline over the pull-request summary of B against A."""
        c = self.judged.comparison
        sign = {"better": "✅ yes", "worse": "❌ no, worse", "no difference shown": "· no difference shown"}[self.word]
        rates = f"{c.base_rate:.1%} → {c.new_rate:.1%} on {c.compared} instances" if c and c.compared else \
            "nothing compared"
        inner = "\n".join("#" + line if line.startswith("#") else line for line in self.judged.summary.splitlines())
        return (f"## Is B better than A? {sign} — {rates}\n\nA: {label(self.a)} · B: {label(self.judged.report)}"
                "\n\nBelow, B judged against A as a pull request's run is against its baseline: its verdict asks "
                "whether B is worse; \"significantly more resolved\" is B better.\n\n" + inner + "\n")


def label(report: Report) -> str:
    ident = report.identity
    return f"{code(ident.get('agent') or 'ci-eval agent')} with {code(ident.get('model'))}, config " \
        f"{code(ident.get('config_hash'))}"


def ab(a: Report, b: Report, alpha: float = 0.05) -> Answer:
    """B judged against A, both on the same instances."""
    if set(a.instances) != set(b.instances):
        raise InputError("A and B ran on different instances: run both from one plan (ci-eval plan --output, then "
                         "ci-eval shard --plan for each)")
    result = judged([a], b, Gate(alpha=alpha))
    v = result.verdict
    word = "worse" if v.regression else "better" if v.better else "no difference shown"
    return Answer(word, a, result)
