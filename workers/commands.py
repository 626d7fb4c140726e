"""The registry of command handlers: which service applies each command of core.commands.

Tasks are registered from it by `workers.command_tasks`, under the commands' stable names; the
name's prefix routes each to its queue (`privacy.*`: export and erasure on `privacy`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core import commands as c
from workers import welcome
from workers.broadcasts import handlers as broadcasts
from workers.desk import areas
from workers.desk import handlers as desk
from workers.privacy import handlers as privacy
from workers.reports import handlers as reports

HANDLERS: dict[type[Any], Callable[..., None]] = {
    c.RegisterUser: welcome.register_user,
    c.CreateRequest: desk.create_request,
    c.ShowMyRequests: desk.show_my_requests,
    c.ShowQueue: desk.show_queue,
    c.FindRequests: desk.find_requests,
    c.ShowMine: desk.show_mine,
    c.ShowRequest: desk.show_request,
    c.TransitionRequest: desk.transition_request,
    c.ShowAssignees: desk.show_assignees,
    c.AddComment: desk.add_comment,
    c.ChangePriority: desk.change_priority,
    c.RateRequest: desk.rate_request,
    c.SetRole: desk.set_role,
    c.ListStaff: desk.list_staff,
    c.ShowAreas: areas.show_areas,
    c.ToggleArea: areas.toggle_area,
    c.DefineArea: areas.define_area,
    c.BeginBroadcast: broadcasts.begin_broadcast,
    c.StartBroadcast: broadcasts.start_broadcast,
    c.ConfirmBroadcast: broadcasts.confirm_broadcast,
    c.CancelBroadcast: broadcasts.cancel_broadcast,
    c.ShowReport: reports.show_report,
    c.ExportMyData: privacy.export_my_data,
    c.EraseMe: privacy.erase_me,
}
