"""The handler kit every worker module uses: the actor's context, replies, role checks and
inline keyboards. Command handlers, scheduled jobs and privacy tasks build on it."""

from workers.kit.context import Ctx, require_admin, require_staff, viewer_for
from workers.kit.keyboards import Keyboard, button, inline

__all__ = ["Ctx", "Keyboard", "button", "inline", "require_admin", "require_staff", "viewer_for"]
