"""ci-eval: SWE-bench Verified for a bash-only agent, sharded over CI runners."""

__version__ = "0.1.0"
