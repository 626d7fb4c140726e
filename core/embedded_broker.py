"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, for one machine.

It polls; the stock transport polls every second and forwards every transport option to
create_engine (so `polling_interval` cannot be set there). This subclass polls often enough
for interactive replies.
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport

SCHEME = "zavhoz-sqla"


class Transport(SQLAlchemyTransport):
    polling_interval = 0.1


def register() -> None:
    """Make `zavhoz-sqla+sqlite:///...` broker URLs resolve to this transport."""
    TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
