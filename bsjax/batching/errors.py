"""The one error type the batching package raises for bad input."""
from __future__ import annotations


class BatchConfigError(ValueError):
    """Bad batch-size input: a schedule spec, a bucket request or a coupling rule.

    ``problems`` holds one message per problem found, so that config validation
    can report every problem at once; ``str(err)`` joins them.
    """

    def __init__(self, problems: str | list[str]):
        if isinstance(problems, str):
            problems = [problems]
        self.problems: list[str] = list(problems)
        super().__init__("; ".join(self.problems))
