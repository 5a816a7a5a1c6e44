"""The host's configuration file: one TOML file of typed sections (docs/configuration.md).

`load(path)` reads it into `Settings`, or raises ConfigError listing every problem as
`FILE: section.field: what is wrong`. A section is a frozen dataclass whose field types say what the
file may hold (str, int, float, bool, Path, list[str], Secret, each optionally `| None`); a field
whose metadata has `PORT` must be a TCP port. To add a section, write its dataclass and add a field
of that type to `Settings`: the loader, `lockerctl config check` and the masked print follow.

Secrets never sit in the file: a Secret field `password` is given as `password_file = "..."` (a
file readable by its owner only) or `password_env = "NAME"` (an environment variable). Relative
paths are relative to the file's directory.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_VAR = "LOCKERTOOLS_CONFIG"
PORT = {"port": True}
_SECRET_FROM = ("_file", "_env")
DESK_LANGUAGES = ("nl", "fr", "en")
_FROM_FILE, _FROM_ENV = "file ", "environment variable "  # a Secret's source


class ConfigError(ValueError):
    """The file's problems, one a line, each naming the file and the field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Secret:
    """A secret's value and where it came from; printing it shows the source only."""

    value: str = field(repr=False)
    source: str

    def __str__(self) -> str:
        return f"****** ({self.source})"

    @property
    def origin(self) -> tuple[str, str]:
        """("file", its path) or ("env", the variable's name): where the value was read."""
        for kind, prefix in (("file", _FROM_FILE), ("env", _FROM_ENV)):
            if self.source.startswith(prefix):
                return kind, self.source[len(prefix) :]
        return "other", self.source


@dataclass(frozen=True)
class ServiceSettings:
    """`lockerctl service run`, and the database every staff command opens."""

    db: str | None = None  # the fleet database, as --db takes it (relative: to the current directory)
    broker_host: str = "127.0.0.1"
    broker_port: int = field(default=8883, metadata=PORT)
    user: str = "host"
    password: Secret | None = None
    tls_ca: Path | None = None
    plain: bool = False
    client_id: str = "host"
    verbose: bool = False


@dataclass(frozen=True)
class BrokerSettings:
    """`lockerctl broker init` (and the set-up directory of add-locker, add-host, run)."""

    directory: Path | None = None
    host: str = "127.0.0.1"
    tls_port: int | None = field(default=None, metadata=PORT)
    port: int | None = field(default=None, metadata=PORT)
    names: list[str] = field(default_factory=list)
    plain: bool = False
    tls: bool = False


@dataclass(frozen=True)
class NotifySettings:
    """The notification hook (service run, codes issue, returns issue): a command or a URL."""

    command: str | None = None
    url: str | None = None


# --- telling residents (lockertools/notify, docs/notifications.md) -----------------------------------


@dataclass(frozen=True)
class TownSettings:
    """The town the lockers belong to, as residents are told of it."""

    name: str = "Gemeente"
    help_phone: str | None = None  # whom to call when the locker does not open
    help_hours: str | None = None  # when that number answers, as people read it ("ma-vr 9-17 uur")
    # The desk residents are sent to: while it is open (these intervals, in `timezone`) the lockers'
    # help line says to ask there, otherwise it gives help_phone (lockertools.helpline).
    desk_hours: list[str] = field(default_factory=list)  # "mon-fri 09:00-12:30", "sat 10:00-12:00", ...
    timezone: str = "Europe/Brussels"


@dataclass(frozen=True)
class MessagesSettings:
    """Residents' messages: which channels the town uses (besides the printed letter, always there),
    its own templates, retries, and how long contact details are kept."""

    channels: list[str] = field(default_factory=list)  # "email", "sms"; empty: no messages (the hook only)
    templates: Path | None = None  # a directory whose LANG/KIND.txt files replace the shipped ones
    thank_you: bool = False  # a "picked up, thank you" message
    retry_min_s: float = 30.0  # a failed send waits this long, doubling up to retry_max_s
    retry_max_s: float = 3600.0
    contact_retention_days: float = 30.0  # contact details deleted this long after a delivery ends


@dataclass(frozen=True)
class EmailSettings:
    """The SMTP server residents' e-mail goes through."""

    host: str | None = None
    port: int = field(default=587, metadata=PORT)
    security: str = "starttls"  # starttls, tls (implicit, port 465), none (a relay on loopback only)
    user: str | None = None
    password: Secret | None = None
    sender: str | None = None  # the From: address
    reply_to: str | None = None
    ca_file: Path | None = None  # the server's CA, if not a public one
    timeout_s: float = 20.0


@dataclass(frozen=True)
class SmsSettings:
    """An HTTP SMS gateway: one request per text message (docs/notifications.md has a provider's)."""

    url: str | None = None  # a Jinja2 template too: {{ to }}, {{ sender }}, ...
    method: str = "POST"
    headers: list[str] = field(default_factory=list)  # "Name: value", value a template ({{ token }})
    token: Secret | None = None  # the gateway's credential, for headers and body
    body: str = ""  # a Jinja2 template: {{ to }}, {{ text }}, {{ sender }}, {{ reference }}, {{ token }}
    content_type: str = "application/json"
    success_status: str = "2xx"  # "2xx", or statuses separated by commas ("200,201")
    success_body: str | None = None  # a text the response must contain, besides the status
    sender: str | None = None  # the sender name or number the gateway shows
    timeout_s: float = 10.0


@dataclass(frozen=True)
class IncidentSettings:
    """Incidents the service opens by itself (`lockerctl service run`)."""

    offline_after_min: float = 30.0  # a locker offline this long (since last seen) opens an incident


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP API for the town's systems (`lockerctl api serve`) and its webhooks (`service run`)."""

    host: str = "127.0.0.1"
    port: int = field(default=8470, metadata=PORT)
    idempotency_hours: float = 24.0
    webhook_timeout_s: float = 10.0
    webhook_retry_min_s: float = 30.0
    webhook_retry_max_s: float = 3600.0
    webhook_attempts: int = 12


@dataclass(frozen=True)
class DeskSettings:
    """`lockerctl desk run`: the staff desk (docs/desk.md); its database is [service] db."""

    host: str = "127.0.0.1"  # loopback: production puts a TLS reverse proxy in front (docs/deployment.md)
    port: int = field(default=8070, metadata=PORT)
    language: str = "nl"  # the default language of the pages: nl, fr or en
    idle_minutes: int = 30  # a session unused this long is over
    trusted_proxies: list[str] = field(default_factory=list)  # addresses whose X-Forwarded-For is believed
    https: bool = False  # served over HTTPS (by the proxy): cookies are Secure


@dataclass(frozen=True)
class AlertSettings:
    """Staff alerts of incidents (`service run`, docs/notifications.md "Staff alerts"): the contacts of
    a locker that has none of its own (`lockerctl incidents alerts set`), the batch window, retries."""

    default_email: list[str] = field(default_factory=list)  # staff e-mail addresses
    default_sms: list[str] = field(default_factory=list)  # staff phone numbers
    window_min: float = 5.0  # a contact's alerts are gathered this long into one message
    desk_url: str | None = None  # the desk's public URL ("https://balie.gent.example"): links to incidents
    retry_min_s: float = 30.0  # a failed send waits this long, doubling up to retry_max_s
    retry_max_s: float = 3600.0


@dataclass(frozen=True)
class Settings:
    """The whole file. `path` is None when no file was given (every section at its defaults)."""

    path: Path | None = None
    service: ServiceSettings = field(default_factory=ServiceSettings)
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    incidents: IncidentSettings = field(default_factory=IncidentSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    desk: DeskSettings = field(default_factory=DeskSettings)
    town: TownSettings = field(default_factory=TownSettings)
    messages: MessagesSettings = field(default_factory=MessagesSettings)
    email: EmailSettings = field(default_factory=EmailSettings)
    sms: SmsSettings = field(default_factory=SmsSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)


def sections() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings) if f.name != "path"}


def config_path(given: Path | None) -> Path | None:
    """The file named on the command line, else $LOCKERTOOLS_CONFIG, else none."""
    if given is not None:
        return given
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else None


def load(path: Path) -> Settings:
    """Read and check the file; ConfigError names every problem found."""
    where = str(path)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError([f"{where}: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{where}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: not valid TOML: {exc}"]) from None
    problems: list[str] = []
    known = sections()
    built: dict[str, Any] = {}
    for name, value in doc.items():
        if name not in known:
            problems.append(f"{where}: {name}: unknown section (known: {', '.join(known)})")
        elif not isinstance(value, dict):
            problems.append(f"{where}: {name}: a section ([{name}]), not a {_toml_type(value)}")
        else:
            built[name] = _section(known[name], name, value, path.resolve().parent, f"{where}: {name}", problems)
    if problems:
        raise ConfigError(problems)
    settings = Settings(path=path, **built)
    _cross_checks(settings, where, problems)
    if problems:
        raise ConfigError(problems)
    return settings


def _section(cls: type[Any], name: str, table: dict[str, Any], base: Path, at: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    secrets = {n for n in fields if _is_secret(hints[n])}
    for key, raw in table.items():
        stem, _, source = key.rpartition("_")
        suffix = f"_{source}"
        if stem in secrets and suffix in _SECRET_FROM:
            if stem in values:
                problems.append(f"{at}.{key}: give one of {stem}_file and {stem}_env")
                continue
            secret = _secret(raw, suffix, base, f"{at}.{key}", problems)
            if secret is not None:
                values[stem] = secret
            continue
        if key in secrets:
            problems.append(f"{at}.{key}: a secret is not written in the file: use {key}_file or {key}_env")
            continue
        if key not in fields:
            problems.append(f"{at}.{key}: unknown key (known: {', '.join(_keys(fields, secrets))})")
            continue
        checked = _value(hints[key], raw, base, f"{at}.{key}", problems)
        if checked is not _BAD:
            if fields[key].metadata.get("port") and checked is not None and not 1 <= checked <= 65535:
                problems.append(f"{at}.{key}: port {checked} is out of range (1-65535)")
                continue
            values[key] = checked
    return cls(**values)


def _keys(fields: dict[str, dataclasses.Field[Any]], secrets: set[str]) -> list[str]:
    out: list[str] = []
    for name in fields:
        out.extend([f"{name}_file", f"{name}_env"] if name in secrets else [name])
    return out


_BAD = object()


def _is_secret(hint: Any) -> bool:
    return hint is Secret or Secret in typing.get_args(hint)


def _value(hint: Any, raw: Any, base: Path, at: str, problems: list[str]) -> Any:
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    want = next(a for a in args if a is not type(None)) if optional else hint
    if typing.get_origin(want) is list:
        if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            return list(raw)
        problems.append(f"{at}: a list of strings, not {_shown(raw)}")
        return _BAD
    if want is Path:
        if isinstance(raw, str) and raw:
            return base / Path(raw).expanduser()
        problems.append(f"{at}: a path (a string), not {_shown(raw)}")
        return _BAD
    ok = isinstance(raw, want) and not (want is int and isinstance(raw, bool))
    if want is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if not ok:
        problems.append(f"{at}: {_type_name(want)}, not {_shown(raw)}")
        return _BAD
    return raw


def _secret(raw: Any, suffix: str, base: Path, at: str, problems: list[str]) -> Secret | None:
    if not isinstance(raw, str) or not raw:
        problems.append(f"{at}: {'a path' if suffix == '_file' else 'the name of an environment variable'},"
                        f" not {_shown(raw)}")  # fmt: skip
        return None
    if suffix == "_env":
        value = os.environ.get(raw)
        if not value:
            problems.append(f"{at}: the environment variable {raw} is not set")
            return None
        return Secret(value.strip(), _FROM_ENV + raw)
    path = base / Path(raw).expanduser()
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        problems.append(f"{at}: {path}: {exc.strerror or exc}")
        return None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        problems.append(f"{at}: {path} is readable by every user (mode {stat.S_IMODE(mode):o}): chmod 600 it")
        return None
    if not text.strip():
        problems.append(f"{at}: {path} is empty")
        return None
    return Secret(text.strip(), f"{_FROM_FILE}{path}")


def _cross_checks(settings: Settings, where: str, problems: list[str]) -> None:
    """What the commands would refuse, said with the file's field names."""
    service = settings.service
    if service.tls_ca is not None and service.plain:
        problems.append(f"{where}: service.plain: plain = true and tls_ca: choose one")
    notify = settings.notify
    if notify.command and notify.url:
        problems.append(f"{where}: notify: command and url: choose one")
    if notify.url is not None and not notify.url.startswith(("http://", "https://")):
        problems.append(f"{where}: notify.url: must start with http:// or https://")
    if not settings.incidents.offline_after_min > 0:
        problems.append(f"{where}: incidents.offline_after_min: a number of minutes above 0")
    api = settings.api
    if not api.idempotency_hours > 0:
        problems.append(f"{where}: api.idempotency_hours: a number of hours above 0")
    if not 0 < api.webhook_retry_min_s <= api.webhook_retry_max_s:
        problems.append(f"{where}: api.webhook_retry_min_s: above 0 and at most webhook_retry_max_s")
    if api.webhook_attempts < 1:
        problems.append(f"{where}: api.webhook_attempts: at least 1")
    if not api.webhook_timeout_s > 0:
        problems.append(f"{where}: api.webhook_timeout_s: above 0")
    desk = settings.desk
    if desk.language not in DESK_LANGUAGES:
        problems.append(f"{where}: desk.language: one of {', '.join(DESK_LANGUAGES)}, not {desk.language!r}")
    if desk.idle_minutes < 1:
        problems.append(f"{where}: desk.idle_minutes: at least 1, not {desk.idle_minutes}")
    _messages_checks(settings, where, problems)
    from lockertools import helpline

    town = settings.town
    for problem in helpline.check(town.help_phone, town.desk_hours, town.timezone):
        problems.append(f"{where}: town.{problem}")
    _alerts_checks(settings, where, problems)
    broker = settings.broker
    if broker.port is not None and not broker.plain:
        problems.append(f"{where}: broker.port: the plain MQTT port needs plain = true (TLS: tls_port)")


def _messages_checks(settings: Settings, where: str, problems: list[str]) -> None:
    messages, email, sms = settings.messages, settings.email, settings.sms
    for channel in messages.channels:
        if channel not in ("email", "sms", "letter"):
            problems.append(f"{where}: messages.channels: {channel!r} is not a channel (email, sms, letter)")
    if "email" in messages.channels and (email.host is None or email.sender is None):
        problems.append(f"{where}: email: the e-mail channel needs host and sender")
    if email.security not in ("starttls", "tls", "none"):
        problems.append(f"{where}: email.security: starttls, tls or none, not {email.security!r}")
    if email.password is not None and email.user is None:
        problems.append(f"{where}: email.password: give the user too")
    if "sms" in messages.channels and not sms.url:
        problems.append(f"{where}: sms: the sms channel needs url (and body)")
    if sms.url and not sms.url.startswith(("http://", "https://")):
        problems.append(f"{where}: sms.url: must start with http:// or https://")
    if sms.method not in ("POST", "PUT", "GET"):
        problems.append(f"{where}: sms.method: POST, PUT or GET, not {sms.method!r}")
    for header in sms.headers:
        if ":" not in header:
            problems.append(f"{where}: sms.headers: {header!r} is not 'Name: value'")
    statuses = sms.success_status.replace(" ", "")
    if statuses != "2xx" and not all(part.isdigit() for part in statuses.split(",")):
        problems.append(f'{where}: sms.success_status: "2xx" or statuses like "200,201"')
    if not 0 < messages.retry_min_s <= messages.retry_max_s:
        problems.append(f"{where}: messages.retry_min_s: positive, at most retry_max_s")
    if not messages.contact_retention_days >= 0:
        problems.append(f"{where}: messages.contact_retention_days: zero or more days")


def _alerts_checks(settings: Settings, where: str, problems: list[str]) -> None:
    # The addresses and numbers themselves are checked when the service starts (notify/alerts.py).
    alerts = settings.alerts
    if alerts.default_email and (settings.email.host is None or settings.email.sender is None):
        problems.append(f"{where}: email: staff alerts by e-mail need host and sender")
    if alerts.default_sms and not settings.sms.url:
        problems.append(f"{where}: sms: staff alerts by SMS need url (and body)")
    if not alerts.window_min >= 0:
        problems.append(f"{where}: alerts.window_min: zero or more minutes")
    if alerts.desk_url is not None and not alerts.desk_url.startswith(("http://", "https://")):
        problems.append(f"{where}: alerts.desk_url: must start with http:// or https://")
    if not 0 < alerts.retry_min_s <= alerts.retry_max_s:
        problems.append(f"{where}: alerts.retry_min_s: positive, at most retry_max_s")


def _type_name(t: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(t, str(t))


def _toml_type(v: Any) -> str:
    for t, name in ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"), (list, "array")):
        if isinstance(v, t):
            return name
    return type(v).__name__


def _shown(v: Any) -> str:
    return f"the {_toml_type(v)} {v!r}" if not isinstance(v, dict) else "a table"


def masked_url(url: str) -> str:
    """`url` with its query starred: a gateway's or a receiver's key often rides there."""
    return url.split("?")[0] + ("?******" if "?" in url else "")


def effective(settings: Settings) -> list[tuple[str, list[tuple[str, Any]]]]:
    """Each section's (field, value) pairs in effect, in `Settings`' order, with what must not be
    shown masked: a Secret stays a Secret (its str and `origin` name its source only), a URL's
    query is starred (it may carry a key: the notification hook's, the SMS gateway's)."""
    out: list[tuple[str, list[tuple[str, Any]]]] = []
    for name in sections():
        section = getattr(settings, name)
        values: list[tuple[str, Any]] = []
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if f.name == "url" and isinstance(value, str):
                value = masked_url(value)
            values.append((f.name, value))
        out.append((name, values))
    return out


def describe(settings: Settings) -> list[str]:
    """The effective settings as TOML-like lines, secrets masked (their source shown)."""
    lines: list[str] = []
    for name, values in effective(settings):
        lines.append(f"[{name}]")
        for key, value in values:
            lines.append(f"{key} = {value if isinstance(value, Secret) else _toml(value)}")
        lines.append("")
    return lines


def _toml(value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
