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
from sqlalchemy import Engine, delete, text, update

SCHEME = "zavhoz-sqla"
_ROW = "zavhoz_row_id"  # the message's row, carried in its properties until it is acked


class Channel(SQLAlchemyChannel):
    # The same rule as the Redis broker's (workers.timing): every task ends well before.
    visibility_timeout_s = 60.0
    restore_every_s = 5.0
    _restored_at = 0.0

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        obj = self._get_or_create(queue)  # type: ignore[attr-defined]
        message_cls = self.message_cls
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
            payload: dict[str, Any] = loads(bytes_to_str(msg.payload))
            payload.setdefault("properties", {})[_ROW] = msg.id
            return payload
        finally:
            self.session.commit()

    def _restore_expired(self) -> None:
        """Messages fetched by a worker that never acknowledged them are visible again."""
        if time.monotonic() - self._restored_at < self.restore_every_s:
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
    polling_interval = 0.1


def _now() -> datetime:
    # The transport's own convention for this column (its onupdate): naive local time.
    return datetime.now()


def register() -> None:
    """Make `zavhoz-sqla+sqlite:///...` broker URLs resolve to this transport."""
    TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
