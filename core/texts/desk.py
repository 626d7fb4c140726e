"""Texts of the request desk (worker side): cards, lists, notifications, refusals."""

EN: dict[str, str] = {}

RU: dict[str, str] = {}
