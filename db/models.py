"""SQLAlchemy 2 models. Alembic migrations are the schema's source of truth; these must agree
with them (a test runs `alembic check` on PostgreSQL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    func,
)
from sqlalchemy import (
    text as sql_text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only autoincrements INTEGER PRIMARY KEY, so big ids become plain integers there.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")
Timestamp = DateTime(timezone=True)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('resident', 'staff', 'admin')", name="role"),
        # One holder per name, as Telegram compares them: case-insensitively.
        Index("uq_users_lower_username", sql_text("lower(username)"), unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # NULL once erased: the row may stay for statistics, unlinked from any identity.
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    username: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str | None] = mapped_column(String(128))
    last_name: Mapped[str | None] = mapped_column(String(128))
    language: Mapped[str] = mapped_column(String(8), default="en")
    role: Mapped[str] = mapped_column(String(16), default="resident", index=True)
    reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        Timestamp, server_default=func.now(), onupdate=func.now()
    )
    erased_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Request(Base):
    __tablename__ = "requests"
    __table_args__ = (
        Index(None, "status", "priority", "created_at"),
        # Reports select by period on each of these.
        Index(None, "created_at"),
        Index(None, "accepted_at"),
        Index(None, "done_at"),
        # A user's requests in id order: the list, the export, an erasure's steps.
        Index("ix_requests_author_id", "author_id", "id"),
        # /find on PostgreSQL (migration 0010 creates it there only; db.requests.search_query).
        Index(
            "ix_requests_search",
            # As alembic reads it back (the migration's shorter text builds the same index).
            sql_text(
                "to_tsvector('simple'::regconfig, (((title::text || ' '::text) || description)"
                " || ' '::text) || location::text)"
            ),
            postgresql_using="gin",
        ),
        CheckConstraint(
            "status IN ('new', 'accepted', 'in_progress', 'done', 'rejected', 'cancelled',"
            " 'reopened', 'closed')",
            name="status",
        ),
        CheckConstraint("priority IN ('low', 'normal', 'high', 'urgent')", name="priority"),
        CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="rating"),
        CheckConstraint("version >= 1", name="version"),
    )

    # The id is the number users see as #N.
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    location: Mapped[str] = mapped_column(String(200))
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    status: Mapped[str] = mapped_column(String(16), default="new")
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        Timestamp, server_default=func.now(), onupdate=func.now()
    )
    accepted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    done_at: Mapped[datetime | None] = mapped_column(Timestamp)
    closed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    escalated_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's API

    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="request", cascade="all, delete-orphan", order_by="Attachment.id"
    )


class Attachment(Base):
    __tablename__ = "attachments"
    __table_args__ = (CheckConstraint("kind IN ('photo', 'document')", name="kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("requests.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # photo | document
    file_id: Mapped[str] = mapped_column(String(255))
    file_unique_id: Mapped[str | None] = mapped_column(String(64))
    file_name: Mapped[str | None] = mapped_column(String(255))
    mime_type: Mapped[str | None] = mapped_column(String(128))
    size: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    request: Mapped[Request] = relationship(back_populates="attachments")


class Comment(Base):
    __tablename__ = "comments"
    # /find on PostgreSQL (migration 0010 creates it there only).
    __table_args__ = (
        Index(
            "ix_comments_search",
            sql_text("to_tsvector('simple'::regconfig, text)"),
            postgresql_using="gin",
        ),
        # A user's comments in id order (an export streams them; migration 0016).
        Index("ix_comments_author_id", "author_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("requests.id", ondelete="CASCADE"), index=True
    )
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    file_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class RequestEvent(Base):
    """History: who did what to a request, when, with what note."""

    __tablename__ = "request_events"
    __table_args__ = (
        # Reports count transitions by period and kind.
        Index(None, "created_at", "action"),
        # An erasure clears the notes its user wrote, a few among all their events.
        Index(
            "ix_request_events_actor_id_noted",
            "actor_id",
            postgresql_where=sql_text("note IS NOT NULL"),
            sqlite_where=sql_text("note IS NOT NULL"),
        ),
        # A user's events in id order (an export streams them; migration 0016).
        Index("ix_request_events_actor_id", "actor_id", "id"),
        # A request's events in id order; the consistency check reads each request's last
        # transition from the index alone (migration 0017).
        Index(
            "ix_request_events_request_id",
            "request_id",
            "id",
            postgresql_include=["action", "to_status"],
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class Outbox(Base):
    """Every message to Telegram: written in the command's transaction, delivered after commit."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(None, "state", "next_attempt_at"),
        # A drain claims its broadcast's rows in id order (migration 0013).
        Index(None, "batch_id", "state", "id"),
        CheckConstraint(
            "state IN ('pending', 'sending', 'sent', 'failed', 'dead', 'cancelled')", name="state"
        ),
        CheckConstraint("attempts >= 0", name="attempts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, index=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    method: Mapped[str] = mapped_column(String(32))  # Bot API method, e.g. sendMessage
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # A broadcast's rows drain together and report progress.
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    # The request a notification is about: staff see when it did not reach its recipient.
    request_id: Mapped[int | None] = mapped_column(
        ForeignKey("requests.id", ondelete="SET NULL"), index=True
    )
    # Whose action wrote it (its text may quote them): erasure finds the rows by it.
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )


class Broadcast(Base):
    """An admin's message to many users, fanned out as outbox rows."""

    __tablename__ = "broadcasts"
    __table_args__ = (
        CheckConstraint("state IN ('draft', 'sending', 'done', 'cancelled')", name="state"),
        CheckConstraint("audience IN ('residents', 'staff', 'everyone')", name="audience"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    audience: Mapped[str] = mapped_column(String(16))  # residents | staff | everyone
    text: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="draft")  # draft|sending|done|cancelled
    total: Mapped[int] = mapped_column(Integer, default=0)
    # Where the author watches progress: their chat and the message edited as it goes.
    progress_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    progress_message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # Set by each drain slice: a broadcast left "sending" without one is restarted by the relay.
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # When its outbox rows were written (the notifications.fan_out task, after Confirm): until
    # then "no rows left" does not mean done.
    fanned_out_at: Mapped[datetime | None] = mapped_column(Timestamp)


class ProcessedCommand(Base):
    """Idempotency keys: a redelivered command finds its key and changes nothing."""

    __tablename__ = "processed_commands"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    task_name: Mapped[str] = mapped_column(String(64))
    # A hash of the command: the same key with another command is a new action, not a retry.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now(), index=True)


class GeneratedFile(Base):
    """A file a worker made (a report's chart or CSV, an export), kept here until Telegram has
    it: any worker on any host can send it, the first send uploads it, later sends use the
    file_id Telegram gave back."""

    __tablename__ = "generated_files"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    file_name: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    telegram_file_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now(), index=True)


class RoleChange(Base):
    """Who granted or revoked which role, and when: /staff shows the latest, a user's export
    holds their own."""

    __tablename__ = "role_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    changed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    from_role: Mapped[str] = mapped_column(String(16))
    to_role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now(), index=True)


class Area(Base):
    """A group of places (a building, an entrance): a new request whose place starts with one
    of `places` (compared case-insensitively) notifies the staff subscribed to the area."""

    __tablename__ = "areas"
    __table_args__ = (Index("uq_areas_lower_name", sql_text("lower(name)"), unique=True),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    places: Mapped[list[str]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class AreaStaff(Base):
    """A staff member's subscription to an area (`/areas`)."""

    __tablename__ = "area_staff"

    area_id: Mapped[int] = mapped_column(
        ForeignKey("areas.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class JobRun(Base):
    """Each scheduled job's last run, one row per job (bounded, however often it runs): what
    `zavhoz status` and ops look at."""

    __tablename__ = "job_runs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    duration_s: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16))  # ok | failed | skipped
    counts: Mapped[dict[str, Any]] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    # Where an incremental job got to (the consistency check's watermark); None: start afresh.
    cursor: Mapped[dict[str, Any] | None] = mapped_column(Json)


class ErasureAudit(Base):
    """That an erasure ran, when, and how many rows it touched; no personal data once finished.

    An erasure unlinks the identity at once (`erased_at`), then scrubs what is left in short
    steps (workers.privacy.erasure): until `finished_at`, `pending` holds what those steps need
    (the names to look for, the chat to tell, how far they got) and nothing after."""

    __tablename__ = "erasure_audit"
    __table_args__ = (
        CheckConstraint("reason IN ('self', 'admin')", name="reason"),
        CheckConstraint("mode IN ('anonymize', 'delete')", name="mode"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Indexed: every command asks for the latest (see db.users.upsert_user).
    erased_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now(), index=True)
    reason: Mapped[str] = mapped_column(String(16), default="self")  # self | admin
    mode: Mapped[str] = mapped_column(String(16), default="anonymize")
    counts: Mapped[dict[str, int]] = mapped_column(Json)
    # The anonymous profile whose rows are being scrubbed (no identifier of anyone).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # The last step's commit: an unfinished erasure left without progress is resumed.
    progress_at: Mapped[datetime | None] = mapped_column(Timestamp)
    pending: Mapped[dict[str, Any] | None] = mapped_column(Json)


class DeadLetter(Base):
    """A command that failed for its own reasons (not an outage): kept to inspect and replay
    (`zavhoz commands replay`)."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_name: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    command: Mapped[dict[str, Any]] = mapped_column(Json)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now(), index=True)
    replayed_at: Mapped[datetime | None] = mapped_column(Timestamp)
