"""Walking an exception's causes: the bot and the workers both ask "was this an outage?"."""

from __future__ import annotations

from collections.abc import Iterator


def cause_chain(error: BaseException) -> Iterator[BaseException]:
    """The error, then what caused it (`raise ... from`) or what it interrupted, in turn."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:  # a chain may loop back
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
