"""The channels a message goes by: e-mail over SMTP and text messages through an HTTP gateway (the
printed letter: letter.py). Each send either returns (the server or gateway accepted the message) or
raises ChannelError, whose text never holds the code: it names the server's status only."""

from __future__ import annotations

import html
import re
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formataddr, formatdate

import jinja2

from lockertools.config import EmailSettings, SmsSettings
from lockertools.notify.templates import Rendered


class ChannelError(Exception):
    """A send failed; the text says why, without the message's content."""


def scrubbed(text: str, code: str | None) -> str:
    """An error text with the code taken out, whatever a server echoed back (as sent: in groups of
    four, "1234 5678"; or with other separators); one line, bounded."""
    text = " ".join(text.split())
    if code:
        digits = code.replace(" ", "")
        text = re.sub(r"[\s.\-]?".join(re.escape(d) for d in digits), "[code]", text)
    return text[:300]


# --- e-mail -----------------------------------------------------------------------------------------


def html_part(rendered: Rendered) -> str:
    """The HTML part: the body's paragraphs, the code in large, spaced digits."""
    out = [
        f'<!doctype html><html lang="{rendered.language}"><head><meta charset="utf-8">'
        f"<title>{html.escape(rendered.subject)}</title></head>",
        '<body style="font-family:Arial,Helvetica,sans-serif;font-size:18px;line-height:1.5;max-width:40em">',
    ]
    for paragraph in rendered.paragraphs():
        if rendered.code is not None and paragraph == rendered.code:
            out.append(
                '<p style="font-family:Consolas,Menlo,monospace;font-size:40px;font-weight:bold;'
                f'letter-spacing:6px;margin:16px 0">{html.escape(paragraph)}</p>'
            )
        else:
            out.append("<p>" + "<br>".join(html.escape(line) for line in paragraph.splitlines()) + "</p>")
    out.append("</body></html>")
    return "\n".join(out)


def compose_email(rendered: Rendered, to: str, ref: str, sender: str, town: str, reply_to: str | None) -> EmailMessage:
    """One resident's e-mail: a plain-text and an HTML part, in their language, with the message's
    stable Message-ID (the same on every attempt)."""
    message = EmailMessage()
    message["From"] = formataddr((town, sender))
    message["To"] = to
    message["Subject"] = rendered.subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = ref
    message["Auto-Submitted"] = "auto-generated"
    if reply_to:
        message["Reply-To"] = reply_to
    message.set_content(rendered.body + "\n")
    message.add_alternative(html_part(rendered), subtype="html")
    message["Content-Language"] = rendered.language  # after the parts: set_content drops Content-* headers
    return message


class EmailChannel:
    """SMTP with STARTTLS (port 587), implicit TLS (465) or none (a relay on loopback), and
    authentication when a user is set. One connection per batch of messages."""

    def __init__(self, settings: EmailSettings) -> None:
        if settings.host is None or settings.sender is None:
            raise ValueError("the e-mail channel needs email.host and email.sender")
        self.settings = settings
        self.sender = settings.sender

    def _tls(self) -> ssl.SSLContext:
        ca = self.settings.ca_file
        return ssl.create_default_context(cafile=str(ca) if ca is not None else None)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        assert s.host is not None
        smtp: smtplib.SMTP
        if s.security == "tls":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=self._tls())
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
            if s.security == "starttls":
                smtp.starttls(context=self._tls())
        if s.user is not None:
            smtp.login(s.user, s.password.value if s.password is not None else "")
        return smtp

    def send_many(self, messages: list[tuple[EmailMessage, str | None]]) -> list[str | None]:
        """Send each (message, its code); per message None (accepted) or the error (code scrubbed)."""
        results: list[str | None] = []
        try:
            smtp = self._connect()
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            error = f"SMTP server {self.settings.host}:{self.settings.port}: {_smtp_reason(exc)}"
            return [error] * len(messages)
        try:
            for message, code in messages:
                try:
                    refused = smtp.send_message(message)
                    results.append(f"SMTP refused {', '.join(refused)}" if refused else None)
                except smtplib.SMTPServerDisconnected as exc:
                    results.append(scrubbed(f"SMTP: {_smtp_reason(exc)}", code))
                    break
                except (OSError, smtplib.SMTPException) as exc:
                    results.append(scrubbed(f"SMTP: {_smtp_reason(exc)}", code))
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        results.extend(["SMTP: the connection ended before this message"] * (len(messages) - len(results)))
        return results


def _smtp_reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {text}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "recipient refused"
    return f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"


# --- text messages ----------------------------------------------------------------------------------


class SmsChannel:
    """One HTTP request per text message, as the town configured it (docs/notifications.md): the URL,
    headers and body are Jinja2 templates of `to`, `text`, `sender`, `reference` and `token`; the
    gateway accepted the message when the status matches `success_status` and the response holds
    `success_body` (when set)."""

    def __init__(self, settings: SmsSettings) -> None:
        if not settings.url:
            raise ValueError("the sms channel needs sms.url")
        self.settings = settings
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
        try:
            self._url = env.from_string(settings.url)
            self._body = env.from_string(settings.body)
            self._headers = [
                (name.strip(), env.from_string(value.strip()))
                for name, _, value in (h.partition(":") for h in settings.headers)
            ]
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"sms: a template in url, headers or body: line {exc.lineno}: {exc.message}") from None
        statuses = settings.success_status.replace(" ", "")
        self._statuses = None if statuses == "2xx" else {int(s) for s in statuses.split(",")}

    def _accepted(self, status: int) -> bool:
        return 200 <= status < 300 if self._statuses is None else status in self._statuses

    def send(self, to: str, text: str, reference: str, code: str | None) -> None:
        s = self.settings
        fields = {
            "to": to,
            "text": text,
            "sender": s.sender or "",
            "reference": reference,
            "token": s.token.value if s.token is not None else "",
        }
        try:
            url = self._url.render(fields)
            body = self._body.render(fields).encode() if s.body else None
            headers = {name: value.render(fields) for name, value in self._headers}
        except jinja2.TemplateError as exc:
            raise ChannelError(f"sms: the request's template: {type(exc).__name__}") from None
        if body is not None:
            headers.setdefault("Content-Type", s.content_type)
        request = urllib.request.Request(url, data=body, method=s.method, headers=headers)
        where = url.split("?")[0]
        try:
            with urllib.request.urlopen(request, timeout=s.timeout_s) as response:
                status, answer = int(response.status), response.read(65536)
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, b""
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ChannelError(scrubbed(f"SMS gateway {where} unreachable: {reason}", code)) from None
        if not self._accepted(status):
            raise ChannelError(f"HTTP {status} from the SMS gateway {where}")
        if s.success_body and s.success_body not in answer.decode(errors="replace"):
            raise ChannelError(f"the SMS gateway {where} answered {status} without {s.success_body!r}")
