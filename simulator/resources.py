"""Twilio's REST JSON for calls, conferences and participants, list pages and errors.

The shapes follow api.twilio.com closely enough for the real ``twilio`` client to
parse every answer (tests/simulator/test_testing.py holds them to it): snake_case keys, RFC 2822
dates, list pages with exactly one non-meta key, and the legacy error body
(``code``, ``message``, ``more_info``, ``status``) that yields TwilioRestException.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from simulator.model import Call, Conference, JoinSpec, Participant
from simulator.wire import API_VERSION, rfc2822

JSON = dict[str, Any]


def account_path(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}"


def error(status: int, code: int, message: str) -> JSON:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def call_json(call: Call) -> JSON:
    base = f"{account_path(call.account_sid)}/Calls/{call.sid}"
    to = call.to.split("?", 1)[0]
    duration = None
    if call.end_time is not None and call.start_time is not None:
        duration = str(max(0, int((call.end_time - call.start_time).total_seconds())))
    return {
        "sid": call.sid,
        "date_created": rfc2822(call.created),
        "date_updated": rfc2822(call.updated),
        "parent_call_sid": call.parent_call_sid,
        "account_sid": call.account_sid,
        "to": to,
        "to_formatted": to,
        "from": call.from_,
        "from_formatted": call.from_,
        "phone_number_sid": None,
        "status": call.status,
        "start_time": rfc2822(call.start_time) if call.start_time else None,
        "end_time": rfc2822(call.end_time) if call.end_time else None,
        "duration": duration,
        "price": None,
        "price_unit": "USD",
        "direction": call.direction,
        "answered_by": call.answered_by,
        "api_version": API_VERSION,
        "forwarded_from": None,
        "group_sid": None,
        "caller_name": None,
        "queue_time": "0",
        "trunk_sid": None,
        "uri": f"{base}.json",
        "subresource_uris": {
            "notifications": f"{base}/Notifications.json",
            "recordings": f"{base}/Recordings.json",
            "payments": f"{base}/Payments.json",
            "events": f"{base}/Events.json",
            "siprec": f"{base}/Siprec.json",
            "streams": f"{base}/Streams.json",
            "transcriptions": f"{base}/Transcriptions.json",
            "user_defined_message_subscriptions": f"{base}/UserDefinedMessageSubscriptions.json",
            "user_defined_messages": f"{base}/UserDefinedMessages.json",
        },
    }


def conference_json(conference: Conference) -> JSON:
    base = f"{account_path(conference.account_sid)}/Conferences/{conference.sid}"
    return {
        "account_sid": conference.account_sid,
        "date_created": rfc2822(conference.created),
        "date_updated": rfc2822(conference.updated),
        "api_version": API_VERSION,
        "friendly_name": conference.friendly_name,
        "region": "us1",
        "sid": conference.sid,
        "status": conference.status,
        "uri": f"{base}.json",
        "subresource_uris": {
            "participants": f"{base}/Participants.json",
            "recordings": f"{base}/Recordings.json",
        },
        "reason_conference_ended": conference.reason_ended,
        "call_sid_ending_conference": conference.call_sid_ending,
    }


def participant_json(account_sid: str, participant: Participant) -> JSON:
    sid, conf = participant.call_sid, participant.conference_sid
    return {
        "account_sid": account_sid,
        "call_sid": sid,
        "label": participant.label,
        "call_sid_to_coach": participant.call_sid_to_coach,
        "coaching": participant.coaching,
        "conference_sid": conf,
        "date_created": rfc2822(participant.created),
        "date_updated": rfc2822(participant.updated),
        "end_conference_on_exit": participant.end_on_exit,
        "muted": participant.muted,
        "hold": participant.hold,
        "start_conference_on_enter": participant.spec.start_on_enter,
        "status": participant.status,
        "queue_time": "0",
        "uri": f"{account_path(account_sid)}/Conferences/{conf}/Participants/{sid}.json",
    }


def pending_participant(account_sid: str, conference_sid: str, call: Call, spec: JoinSpec) -> JSON:
    """A Participants-API add before it is answered: status ``queued``."""
    placeholder = Participant(
        call.sid,
        conference_sid,
        spec,
        muted=spec.muted,
        coaching=spec.coaching,
        call_sid_to_coach=spec.call_sid_to_coach,
        end_on_exit=spec.end_on_exit,
        status="queued",
    )
    return participant_json(account_sid, placeholder)


def page(path: str, query: dict[str, str], key: str, items: list[JSON]) -> JSON:
    """One list page with Twilio's meta keys; ``next_page_uri`` null on the last page."""
    try:
        size = max(1, min(int(query.get("PageSize", 50)), 1000))
        number = max(0, int(query.get("Page", 0)))
    except ValueError:
        size, number = 50, 0
    start = number * size
    chunk = items[start : start + size]
    kept = {k: v for k, v in query.items() if k not in ("Page", "PageToken", "PageSize")}

    def uri(n: int) -> str:
        return f"{path}?{urlencode({**kept, 'PageSize': str(size), 'Page': str(n)})}"

    more = start + size < len(items)
    return {
        key: chunk,
        "first_page_uri": uri(0),
        "next_page_uri": f"{uri(number + 1)}&PageToken=PA{number + 1}" if more else None,
        "previous_page_uri": uri(number - 1) if number > 0 else None,
        "page": number,
        "page_size": size,
        "start": start,
        "end": start + max(len(chunk) - 1, 0),
        "uri": uri(number),
    }
