"""ci-eval: SWE-bench Verified for a bash-only agent, sharded over CI runners."""

import logging

__version__ = "0.1.0"

# ci-eval's own lines (what it decided, what it warns of) go through logging: quiet when used as
# a library, one stderr handler when run as the CLI (cli.main).
logging.getLogger("ci_eval").addHandler(logging.NullHandler())
