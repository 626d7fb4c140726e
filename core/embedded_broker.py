"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, for one machine.

The stock transport polls every second, marks a fetched message invisible for ever and never
deletes it: a worker killed after fetching a command loses it (acks_late does nothing), and the
table keeps every message ever sent. This one polls often enough for interactive replies,
deletes a message when it is acknowledged, and hands a fetched message out again when its
fetcher has not acknowledged it within VISIBILITY_TIMEOUT_S (the worker died), as Redis does.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Channel as SQLAlchemyChannel
from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport
from kombu.transport.virtual import Empty
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from sqlalchemy import Engine, delete, select, text, update

from core.queues import INTERACTIVE

SCHEME = "zavhoz-sqla"
_ROW = "zavhoz_row_id"  # the message's row, carried in its properties until it is acked


class Channel(SQLAlchemyChannel):
    # The same rule as the Redis broker's (workers.timing): every task ends well before.
    visibility_timeout_s = 60.0
    restore_every_s = 5.0
    _restored_at = 0.0

    def _open(self) -> Any:
        engine, session_maker = super()._open()
        if engine not in _INDEXED:
            # kombu indexes `visible` alone: its poll then sorts every visible message.
            # IF NOT EXISTS: the bot, beat and the worker open the same file at once.
            table = self.message_cls.__table__.name
            with engine.begin() as conn:
                conn.execute(
                    text(
                        f"CREATE INDEX IF NOT EXISTS ix_zavhoz_message_poll"
                        f" ON {table} (queue_id, visible, timestamp, id)"
                    )
                )
            _INDEXED.add(engine)
        return engine, session_maker

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        obj = self._get_or_create(queue)  # type: ignore[attr-defined]
        message_cls = self.message_cls
        # Idle polls read the index only and take no write lock: a worker polling its five
        # queues costs next to nothing (the restore of expired messages still runs on time).
        waiting = self._waiting(obj.id)
        self.session.commit()  # the read's transaction ends before the write lock's begins
        if not waiting and not self._restore_due():
            raise Empty()
        if self.session.get_bind().dialect.name == "sqlite":
            self.session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            self._restore_expired()
            msg = (
                self.session.query(message_cls)
                .with_for_update()
                .filter(message_cls.queue_id == obj.id)
                .filter(message_cls.visible.is_(True))
                .order_by(message_cls.sent_at, message_cls.id)
                .limit(1)
                .first()
            )
            if msg is None:
                raise Empty()
            # Invisible from now on: the timestamp now says when it was handed out.
            msg.visible, msg.sent_at = False, _now()
            if queue == INTERACTIVE:  # people (the relay's every 30 s is not a conversation)
                self.connection.active_at = time.monotonic()  # type: ignore[attr-defined]
            payload: dict[str, Any] = loads(bytes_to_str(msg.payload))
            payload.setdefault("properties", {})[_ROW] = msg.id
            return payload
        finally:
            self.session.commit()

    def _waiting(self, queue_id: int) -> bool:
        m = self.message_cls
        waiting = select(m.id).where(m.queue_id == queue_id, m.visible.is_(True)).limit(1)
        return self.session.execute(waiting).first() is not None

    def _restore_due(self) -> bool:
        return time.monotonic() - self._restored_at >= self.restore_every_s

    def _restore_expired(self) -> None:
        """Messages fetched by a worker that never acknowledged them are visible again."""
        if not self._restore_due():
            return
        self._restored_at = time.monotonic()
        expired = _now() - timedelta(seconds=self.visibility_timeout_s)
        self.session.execute(
            update(self.message_cls)
            .where(self.message_cls.visible.is_(False), self.message_cls.sent_at < expired)
            .values(visible=True)
        )

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        row = self._row_of(delivery_tag)
        super().basic_ack(delivery_tag, multiple)
        self._delete_row(row)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        row = self._row_of(delivery_tag)
        super().basic_reject(delivery_tag, requeue)  # a requeue writes a new row
        self._delete_row(row)

    def _restore(self, message: Any) -> None:
        # Unacked messages given back at shutdown: a new row each, the fetched one goes.
        row = message.properties.pop(_ROW, None)
        super()._restore(message)
        self._delete_row(row)

    def _row_of(self, delivery_tag: Any) -> int | None:
        try:
            row = self.qos.get(delivery_tag).properties.get(_ROW)
        except KeyError:
            return None
        return row if isinstance(row, int) else None

    def _delete_row(self, row: int | None) -> None:
        if row is None:
            return
        # Its own connection: acks may come from the worker's pool threads.
        engine = self.session.get_bind()
        assert isinstance(engine, Engine)
        with engine.begin() as conn:
            conn.execute(delete(self.message_cls).where(self.message_cls.id == row))


class Transport(SQLAlchemyTransport):
    Channel = Channel
    active_at = 0.0  # when a message was last handed out

    @property
    def polling_interval(self) -> float:  # type: ignore[override]
        # Quick while people talk to the bot; a quiet system polls five times less often (the
        # first command after a quiet spell waits half a second at most).
        return 0.1 if time.monotonic() - self.active_at < QUICK_FOR_S else 0.5


# How long after a command the broker keeps polling every 0.1 s.
QUICK_FOR_S = 60.0
_INDEXED: set[Engine] = set()


def _now() -> datetime:
    # The transport's own convention for this column (its onupdate): naive local time.
    return datetime.now()


def register() -> None:
    """Make `zavhoz-sqla+sqlite:///...` broker URLs resolve to this transport."""
    TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
