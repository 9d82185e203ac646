"""The base of bsjax's input errors: one message per problem, all reported at once."""

from __future__ import annotations

from collections.abc import Sequence


class ProblemsError(ValueError):
    """Bad input found before anything is compiled or written.

    ``problems`` holds one message per problem, each naming what is wrong and
    what would be right. Subclasses with a ``heading`` print the problems as a
    list under it; without one, ``str(err)`` joins them with "; ".
    """

    heading: str = ""

    def __init__(self, problems: str | Sequence[str]):
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        if self.heading:
            message = self.heading + ":\n" + "\n".join(f"  - {p}" for p in self.problems)
        else:
            message = "; ".join(self.problems)
        super().__init__(message)
