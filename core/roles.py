"""User roles; admins are bootstrapped from ADMIN_IDS and grant the others."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    RESIDENT = "resident"
    STAFF = "staff"
    ADMIN = "admin"
