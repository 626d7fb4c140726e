"""Texts of the /new dialog (bot side)."""

EN: dict[str, str] = {}

RU: dict[str, str] = {}
