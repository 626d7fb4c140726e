"""/new: the dialog that collects a request and enqueues CreateRequest on Submit.

Steps (states of `NewRequest`): title → description → location (recent ones offered as inline
buttons) → priority (inline buttons) → attachments (photos and documents; an album arrives as
one message per item) → a summary with Submit / Cancel. The draft lives in the Dispatcher's FSM
storage as JSON-serializable data (attachments as plain dicts), so it survives a bot restart on
Redis. Only Submit produces a command; the worker answers "Request #N created".

How input is treated:
- Every invalid input (empty or too long text, a sticker/photo/voice where text is expected,
  text where a button or a file is expected, an 11th file, a file over the size limit) gets a
  short explanation followed by the same question again. Nothing is sent. Text is normalised
  first (`core.user_input`): control characters are dropped, and only invisible characters
  (zero-width spaces, direction marks) count as empty.
- Commands mid-dialog: no step handler takes a message starting with "/". /start, /help and the
  help menu button are answered by the start router (it runs first) and the draft stays at its
  step, so the next answer continues it. /cancel drops the draft (outside a dialog it says there
  is nothing to cancel; in another feature's dialog it is left to that feature). /new or the
  "New request" menu button starts a fresh draft. Any other command falls through to the later
  routers (the fallback says it did not understand) and the draft is kept.
- Every inline button carries the draft's random token: a press from an older draft, a second
  press (e.g. Submit twice), a press in another step or forged data is answered with "this draft
  is no longer active" and changes nothing.
- Albums: each item is handled as it arrives, but the album gets one reply (with every refusal
  in it) shortly after its last item, so an album of ten does not trip flood control.
- Skip and Continue both go to the summary, keeping the files collected so far: Skip is shown
  while there are none, Continue once there is at least one.
- Recent locations: see `bot.dialogs.memory` (also `forget_user` for erasure).

The package: `states` (the steps, the buttons' callback data), `view` (questions, keyboards,
the summary), `album` (one reply per album), `handlers` (the steps' handlers and the router).
"""

from __future__ import annotations

from bot.routers.new_request.album import drain_album_replies
from bot.routers.new_request.handlers import create_router
from bot.routers.new_request.states import CALLBACK_PREFIX, Act, DraftCb, NewRequest

# Telegram delivers an album's items within a fraction of a second. Read by `album` at call
# time, so setting it here (as the tests do) takes effect.
ALBUM_REPLY_DELAY_S = 1.0

__all__ = [
    "ALBUM_REPLY_DELAY_S",
    "CALLBACK_PREFIX",
    "Act",
    "DraftCb",
    "NewRequest",
    "create_router",
    "drain_album_replies",
]
