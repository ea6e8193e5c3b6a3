"""The calendar tool: create an event in the bot's calendar and invite people."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any, Self

from pydantic import Field, model_validator

from larkbot.agent.i18n import translate
from larkbot.agent.timezone import FALLBACK_TIMEZONE
from larkbot.agent.tools._common import ToolInput, idempotency_key, path_segment
from larkbot.agent.tools.base import Tool, ToolContext, ToolError, ToolResult

__all__ = ["CreateCalendarEvent", "CreateCalendarEventInput"]

PRIMARY_ROUTE = "calendar/v4/calendars/primary"
EVENTS_ROUTE = "calendar/v4/calendars/{calendar_id}/events"
ATTENDEES_ROUTE = "calendar/v4/calendars/{calendar_id}/events/{event_id}/attendees"

_DEFAULT_DURATION = timedelta(hours=1)


class CreateCalendarEventInput(ToolInput):
    """Arguments of ``create_calendar_event``."""

    summary: str = Field(min_length=1, max_length=1000, description="The event title.")
    start: datetime = Field(
        description="Start, ISO 8601 (e.g. 2025-01-15T15:00:00+09:00). Without an offset it is "
        "taken in the workspace time zone (the one the current time is given in)."
    )
    end: datetime | None = Field(
        None, description="End, same format as start. Defaults to one hour after start."
    )
    attendee_open_ids: list[str] = Field(
        default_factory=list, description="open_ids (ou_...) of the people to invite."
    )
    description: str = Field("", max_length=8000, description="Details shown in the event.")

    @model_validator(mode="after")
    def _end_after_start(self) -> Self:
        # Both naive or both with an offset compare the same in any zone; a mix is rare
        # enough to be placed in the fallback zone for this check.
        if self.end is not None and (
            _aware(self.end, FALLBACK_TIMEZONE) <= _aware(self.start, FALLBACK_TIMEZONE)
        ):
            raise ValueError("end must be after start")
        return self


def _aware(value: datetime, tz: tzinfo) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=tz)


class CreateCalendarEvent(
    Tool[CreateCalendarEventInput],
    name="create_calendar_event",
    description=(
        "Create a calendar event (a meeting, an appointment, a reminder slot) and invite people. "
        "Use it when the user asks to schedule or book something. The event is created in the "
        "bot's calendar; the user who asked is always invited, plus the attendee_open_ids. Times "
        "are ISO 8601; without an offset they are taken in the workspace time zone (the one the "
        "current time is given in). The end defaults to one hour after the start."
    ),
    write=True,
    # One event per idempotency_key; an attendee already invited is not added again.
    idempotent=True,
    scopes=("calendar:calendar",),
):
    """Put an event in a calendar and invite people."""

    async def run(self, ctx: ToolContext, args: CreateCalendarEventInput) -> ToolResult:
        """Find the bot's primary calendar, create the event, then add the attendees."""
        tz = ctx.timezone
        start = _aware(args.start, tz)
        end = _aware(args.end, tz) if args.end is not None else start + _DEFAULT_DURATION
        primary = await ctx.client.request("POST", PRIMARY_ROUTE, route=PRIMARY_ROUTE)
        calendar_id = next(
            (
                str(entry["calendar"]["calendar_id"])
                for entry in primary.get("calendars") or []
                if (entry.get("calendar") or {}).get("calendar_id")
            ),
            None,
        )
        if calendar_id is None:
            raise ToolError(translate("no_primary_calendar", ctx.language))
        events_path = f"calendar/v4/calendars/{path_segment(calendar_id)}/events"
        created = await ctx.client.request(
            "POST",
            events_path,
            route=EVENTS_ROUTE,
            params={"idempotency_key": idempotency_key(ctx, self.name, args)},
            json={
                "summary": args.summary,
                "description": args.description,
                "need_notification": True,
                "start_time": {"timestamp": str(int(start.timestamp()))},
                "end_time": {"timestamp": str(int(end.timestamp()))},
                "attendee_ability": "can_see_others",
            },
            write=True,
        )
        event: dict[str, Any] = created.get("event") or {}
        event_id = str(event.get("event_id", ""))
        attendees = list(dict.fromkeys(a.strip() for a in args.attendee_open_ids if a.strip()))
        if ctx.user_open_id and ctx.user_open_id not in attendees:
            attendees.insert(0, ctx.user_open_id)
        if attendees and event_id:
            await ctx.client.request(
                "POST",
                f"{events_path}/{path_segment(event_id)}/attendees",
                route=ATTENDEES_ROUTE,
                params={"user_id_type": "open_id"},
                json={
                    "attendees": [{"type": "user", "user_id": a} for a in attendees],
                    "need_notification": True,
                },
                write=True,
            )
        local_start, local_end = start.astimezone(tz), end.astimezone(tz)
        end_format = "%H:%M" if local_end.date() == local_start.date() else "%Y-%m-%d %H:%M"
        when = f"{local_start:%Y-%m-%d %H:%M}–{local_end.strftime(end_format)} ({tz})"
        lines = [translate("event_created", ctx.language, summary=args.summary, when=when)]
        if attendees:
            lines.append(translate("event_attendees", ctx.language, names=", ".join(attendees)))
        return ToolResult(
            ok=True,
            data={
                "calendar_id": calendar_id,
                "event_id": event_id,
                "summary": args.summary,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "attendees": attendees,
                "url": event.get("app_link", ""),
            },
            text="\n".join(lines),
        )
