"""Residents' messages at the desk (docs/notifications.md): a delivery's printed letter, the letters
waiting to be printed (one PDF, then marked printed), and the messages whose last try failed, with a
retry. A delivery's page shows its messages (deliveries.py reads them with `delivery_messages`).

The letter is the one place the desk puts a resident's code after the answer that prepared it: its
PDF goes only to a desk account (the role that prepares deliveries), is never cached
(`Cache-Control: no-store`, as every answer of the desk) and each one is in the audit trail
(`letter.print`, per delivery). The pages themselves never hold a code: a message's error had it
taken out by the outbox."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lockertools.desk.base import (
    SETTINGS,
    add_nav,
    audit_action,
    flash,
    page,
    render,
    requires,
    run_db,
    safe_next,
    translate,
)
from lockertools.service import db

if TYPE_CHECKING:
    from lockertools.notify import MessageView, Templates

MAX_LETTERS = 500  # one batch PDF (docs/benchmarks.md: 500 letters as one PDF under 30 s)
_TEMPLATES: web.AppKey[list[Templates]] = web.AppKey("desk_message_templates")


def setup(app: web.Application) -> None:
    app.router.add_get("/deliveries/{number:\\d{1,10}}/letter", delivery_letter, name="delivery_letter")
    app.router.add_get("/messages/letters", letters_page, name="letters")
    app.router.add_get("/messages/letters.pdf", letters_pdf, name="letters_pdf")
    app.router.add_post("/messages/letters/printed", letters_printed, name="letters_printed")
    app.router.add_get("/messages/failed", failed_page, name="messages_failed")
    app.router.add_post("/messages/failed/retry", retry, name="message_retry")
    app[_TEMPLATES] = []
    add_nav(app, "letters", "Letters to print", "desk", badge=_letters_badge)
    add_nav(app, "messages_failed", "Failed messages", "desk", badge=_failed_badge)


def _letters_badge(conn: db.Connection) -> int:
    from lockertools import notify

    return int(notify.letters_count(conn))


def _failed_badge(conn: db.Connection) -> int:
    from lockertools import notify

    return int(notify.failed_count(conn))


# --- texts chosen at run time (literal here, so the translations' scan finds them) -----------------


def channel_labels(_: Callable[..., str]) -> dict[str, str]:
    return {
        "email": _("e-mail"),
        "sms": _("text message"),
        "letter": _("letter"),
        "hook": _("notification hook"),
        "none": _("no channel"),
    }


def kind_labels(_: Callable[..., str]) -> dict[str, str]:
    return {
        "loaded": _("new code"),
        "code": _("new code"),
        "reminder": _("reminder"),
        "picked_up": _("thank you"),
        "returned": _("returned (to staff)"),
        "taken_back": _("taken back (to staff)"),
    }


def state_labels(_: Callable[..., str]) -> dict[str, str]:
    return {
        "pending": _("waiting"),
        "sending": _("sending"),
        "sent": _("sent"),
        "failed": _("failed"),
        "to_print": _("letter to print"),
        "printed": _("printed"),
        "skipped": _("not sent"),
    }


def labels(_: Callable[..., str]) -> dict[str, dict[str, str]]:
    return {"channels": channel_labels(_), "kinds": kind_labels(_), "states": state_labels(_)}


# --- a delivery's messages (its page, deliveries.py) ------------------------------------------------


def delivery_messages(conn: db.Connection, request: web.Request, number: int) -> dict[str, Any]:
    """What a delivery's page shows of its messages: each one (the residents' channels, then the
    hook's), the channels that reach the resident, and the letter to hand over (None: none)."""
    from lockertools import notify

    settings = request.app[SETTINGS]
    messages = notify.messages_of_delivery(conn, number) + notify.hook_messages_of_delivery(conn, number)
    letter = next((m for m in messages if m.hand_over_letter), None)
    uses_messages = bool(settings.messages.channels) or any(m.channel != "hook" for m in messages)
    reach = notify.delivery_reach(conn, settings, number) if uses_messages else []
    return {
        "messages": messages,
        "reach": reach,
        "letter": letter,
        # no e-mail or phone the town uses: the letter is the only way (once the item is loaded)
        "letter_only": reach == ["letter"],
    }


# --- letters -------------------------------------------------------------------------------------------


def _templates(request: web.Request) -> Templates:
    """The residents' templates, loaded (and checked) once per desk process."""
    from lockertools import notify

    cache = request.app[_TEMPLATES]
    if not cache:
        cache.append(notify.Templates.load(request.app[SETTINGS].messages.templates))
    return cache[0]


def _pdf_response(pdf: bytes, filename: str) -> web.Response:
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{filename}"', "Cache-Control": "no-store"},
    )


async def _no_letter(request: web.Request, text: str) -> web.Response:
    _ = translate(request)
    return await render(request, "error.html", {"title": _("No letter to print"), "message": text}, status=404)


@requires("desk")
async def delivery_letter(request: web.Request) -> web.StreamResponse:
    """The delivery's printed letter (with its code), as a PDF; the access is audited."""
    from lockertools import notify

    _ = translate(request)
    number = int(request.match_info["number"])
    settings, templates = request.app[SETTINGS], _templates(request)

    def make(conn: db.Connection) -> bytes | None:
        letter = next((m for m in notify.messages_of_delivery(conn, number) if m.channel == "letter"), None)
        if letter is None:
            return None
        pdf = notify.letter_pdf(conn, settings, [letter.id], templates)
        audit_action(request, conn, "letter.print", str(number), {"locker": letter.locker_id, "letter": letter.id})
        return bytes(pdf)

    try:
        pdf = await run_db(request, make)
    except notify.OutboxError:
        return await _no_letter(
            request, _("The letter of delivery {number} can no longer be printed: its code is gone.", number=number)
        )
    if pdf is None:
        text = _("Delivery {number} has no letter: only one no e-mail or SMS reaches, once loaded.", number=number)
        return await _no_letter(request, text)
    return _pdf_response(pdf, f"letter-{number}.pdf")


def _locker_filter(request: web.Request) -> str | None:
    return request.query.get("locker", "").strip()[:64] or None


def _lockers(conn: db.Connection) -> list[str]:
    return [str(r["id"]) for r in conn.execute("SELECT id FROM lockers ORDER BY id").fetchall()]


@page("desk", "letters.html")
async def letters_page(request: web.Request) -> dict[str, Any]:
    from lockertools import notify

    _ = translate(request)
    locker = _locker_filter(request)

    def read(conn: db.Connection) -> tuple[list[MessageView], dict[int, dict[str, Any]], list[str]]:
        letters = notify.letters_to_print(conn, locker)[:MAX_LETTERS]
        return letters, _deliveries(conn, [m.delivery for m in letters]), _lockers(conn)

    letters, deliveries, lockers = await run_db(request, read)
    return {
        "title": _("Letters to print"),
        "letters": letters,
        "deliveries": deliveries,
        "lockers": lockers,
        "locker": locker or "",
        "limit": MAX_LETTERS,
        **labels(_),
    }


def _deliveries(conn: db.Connection, numbers: list[int]) -> dict[int, dict[str, Any]]:
    """The resident's name and the case of each delivery (what staff find the envelope by)."""
    out: dict[int, dict[str, Any]] = {}
    for start in range(0, len(numbers), 100):
        chunk = numbers[start : start + 100]
        marks = ", ".join("?" for _ in chunk)
        for row in conn.execute(
            f"SELECT code_id, resident_name, case_ref FROM delivery_details WHERE code_id IN ({marks})", chunk
        ).fetchall():
            out[int(row["code_id"])] = {"name": row["resident_name"], "case": row["case_ref"]}
    return out


@requires("desk")
async def letters_pdf(request: web.Request) -> web.StreamResponse:
    """Every letter waiting (of one locker: ?locker=) as one PDF, a page each; each delivery's letter
    in the audit trail. Nothing is marked printed: the letters page does that once they are out."""
    from lockertools import notify

    _ = translate(request)
    locker = _locker_filter(request)
    settings, templates = request.app[SETTINGS], _templates(request)

    def make(conn: db.Connection) -> bytes | None:
        letters = notify.letters_to_print(conn, locker)[:MAX_LETTERS]
        if not letters:
            return None
        pdf = notify.letter_pdf(conn, settings, [m.id for m in letters], templates)
        with db.transaction(conn):
            for m in letters:
                audit_action(
                    request, conn, "letter.print", str(m.delivery),
                    {"locker": m.locker_id, "letter": m.id, "batch": len(letters)},
                )  # fmt: skip
        return bytes(pdf)

    try:
        pdf = await run_db(request, make)
    except notify.OutboxError as exc:
        # a delivery ended between the list and the PDF: its letter is dropped by the service soon
        return await _no_letter(request, _("Not printed: {reason}", reason=str(exc)))
    if pdf is None:
        return await _no_letter(request, _("No letters are waiting to be printed."))
    return _pdf_response(pdf, "letters.pdf")


@requires("desk")
async def letters_printed(request: web.Request) -> web.StreamResponse:
    """The letters given (`letter` fields: the ones the page listed, so a letter that came since is
    not marked unprinted) went out: marked printed, which lets their codes go."""
    from lockertools import notify

    _ = translate(request)
    posted = await request.post()
    back = safe_next(str(posted.get("next", "")) or "/messages/letters")
    given = [str(v) for v in posted.getall("letter", [])]
    if not given or not all(v.isdigit() and len(v) <= 18 for v in given):
        flash(request, _("No letters were marked: none was given."))
        raise web.HTTPSeeOther(back)
    ids = sorted({int(v) for v in given})

    def mark(conn: db.Connection) -> int:
        with db.transaction(conn):
            waiting = {m.id: m for m in notify.letters_to_print(conn) if m.id in ids}
            count = notify.mark_letters_printed(conn, list(waiting), hook=_hook_on(conn, request))
            for m in waiting.values():
                audit_action(request, conn, "letter.printed", str(m.delivery), {"locker": m.locker_id, "letter": m.id})
        return int(count)

    count = await run_db(request, mark)
    flash(request, _("{n} letter(s) marked printed.", n=count))
    raise web.HTTPSeeOther(back)


def _hook_on(conn: db.Connection, request: web.Request) -> bool:
    """Whether the service has a notification hook (the plain code then waits for it too): the
    configuration's [notify], else what `lockerctl service` recorded in the database."""
    hook = request.app[SETTINGS].notify
    if hook.command or hook.url:
        return True
    return bool(db.get_setting(conn, "notify_command") or db.get_setting(conn, "notify_url"))


# --- failed messages ------------------------------------------------------------------------------------


@page("desk", "messages_failed.html")
async def failed_page(request: web.Request) -> dict[str, Any]:
    from lockertools import notify

    _ = translate(request)
    locker = _locker_filter(request)

    def read(conn: db.Connection) -> tuple[list[MessageView], list[str]]:
        failed = notify.failed_messages(conn, locker) + notify.failed_hook_messages(conn, locker)
        failed.sort(key=lambda m: (m.next_at or 0.0, m.channel, m.id))
        return failed, _lockers(conn)

    failed, lockers = await run_db(request, read)
    return {"title": _("Failed messages"), "failed": failed, "lockers": lockers, "locker": locker or "", **labels(_)}


@requires("desk")
async def retry(request: web.Request) -> web.StreamResponse:
    """Send a failed message again at the service's next round (audited: `message.retry`)."""
    from lockertools import notify

    _ = translate(request)
    posted = await request.post()
    channel, given = str(posted.get("channel", "")), str(posted.get("message", ""))
    back = safe_next(str(posted.get("next", "")) or "/messages/failed")
    if channel not in ("email", "sms", "hook") or not given.isdigit() or len(given) > 18:
        flash(request, _("No such failed message."))
        raise web.HTTPSeeOther(back)
    at = time.time()  # the service's clock, which its next round compares with

    def do(conn: db.Connection) -> MessageView | None:
        with db.transaction(conn):
            done = notify.retry_now(conn, channel, int(given), at)
            if done is not None:
                audit_action(
                    request, conn, "message.retry", str(done.delivery) if done.delivery else None,
                    {"locker": done.locker_id, "channel": channel, "message": done.id, "kind": done.kind},
                )  # fmt: skip
        return done

    done = await run_db(request, do)
    if done is None:
        flash(request, _("That message is not failed any more: nothing to retry."))
    else:
        flash(request, _("The message will be sent again in a moment."))
    raise web.HTTPSeeOther(back)
