"""The one error type the data package raises for bad input or bad data."""
from __future__ import annotations


class DataError(ValueError):
    """Bad data input: a config key, a tokenizer file, a corpus folder or a split.

    ``problems`` holds one message per problem found, so that config validation
    can report every problem at once; ``str(err)`` joins them.
    """

    def __init__(self, problems: str | list[str]):
        if isinstance(problems, str):
            problems = [problems]
        self.problems: list[str] = list(problems)
        super().__init__("; ".join(self.problems))
