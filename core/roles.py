"""User roles (admins are bootstrapped from ADMIN_IDS and grant the others), and the
audiences of broadcasts by role."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    RESIDENT = "resident"
    STAFF = "staff"
    ADMIN = "admin"


class Audience(StrEnum):
    """Whom a broadcast goes to."""

    RESIDENTS = "residents"
    STAFF = "staff"
    EVERYONE = "everyone"


# The roles each audience reaches: the one definition (the broadcast engine selects by it).
AUDIENCE_ROLES: dict[Audience, frozenset[Role]] = {
    Audience.RESIDENTS: frozenset({Role.RESIDENT}),
    Audience.STAFF: frozenset({Role.STAFF, Role.ADMIN}),
    Audience.EVERYONE: frozenset(Role),
}
