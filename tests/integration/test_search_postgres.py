"""/find on PostgreSQL: whole words in titles, descriptions, places and comments, found through
the full-text GIN indexes of migration 0010 (the query's expressions must be theirs)."""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from db import requests as q
from db.models import Comment, Request, User


def _seed(pg: Engine) -> dict[str, int]:
    with Session(pg) as s:
        author = User(telegram_id=1001, role="resident", language="en")
        s.add(author)
        s.flush()
        made = {
            name: Request(author_id=author.id, title=title, description=body, location=place)
            for name, title, body, place in (
                ("light", "Light broken", "Dark since Monday", "Room 101"),
                ("flicker", "Light flickers", "On and off", "Room 202"),
                ("leak", "Leak", "Water under the sink", "Квартира 7"),
                ("lighter", "Lighter smell", "Gas?", "Kitchen"),
            )
        }
        s.add_all(made.values())
        s.flush()
        s.add(Comment(request_id=made["leak"].id, author_id=author.id, text="Сантехник в пятницу"))
        s.commit()
        return {name: r.id for name, r in made.items()}


def _found(pg: Engine, query: str) -> list[int]:
    with Session(pg) as s:
        return [r.id for r in q.search_requests(s, query, 0, 50).rows]


def test_find_matches_whole_words_anywhere_in_a_request_or_its_comments(pg: Engine) -> None:
    ids = _seed(pg)
    assert _found(pg, "light 101") == [ids["light"]]
    assert _found(pg, "LIGHT") == [ids["flicker"], ids["light"]]  # newest first; not "Lighter"
    assert _found(pg, "квартира") == [ids["leak"]]
    assert _found(pg, "сантехник") == [ids["leak"]]  # in a comment
    assert _found(pg, "ceiling") == []
    assert _found(pg, "!!! & | :*") == []  # plain text, never tsquery syntax


def test_find_uses_the_full_text_indexes(pg: Engine) -> None:
    _seed(pg)
    with Session(pg) as s:
        s.execute(text("SET LOCAL enable_seqscan = off"))  # a tiny table: make it choose
        stmt = q.search_query(s, "light 101")
        sql = stmt.compile(dialect=pg.dialect, compile_kwargs={"literal_binds": True})
        plan = "\n".join(row[0] for row in s.execute(text(f"EXPLAIN {sql}")))
    assert "ix_requests_search" in plan and "ix_comments_search" in plan, plan
