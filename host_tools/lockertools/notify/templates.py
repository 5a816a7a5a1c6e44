"""What a message says: the town's Jinja2 templates, one file per language and kind (LANG/KIND.txt),
each with three blocks: `subject`, `body` (the e-mail's text, its HTML part and the letter) and `sms`.

The shipped templates are package data; a directory in the configuration (messages.templates) holds
the town's own, file by file. `Templates.load` checks every file when the service starts: a syntax
error, a field no message has, a missing block or a `loaded` message without the code is refused
with a TemplateError naming the file and the line.

A paragraph of `body` that is the code alone is shown in large digits (HTML part, letter).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes

LANGUAGES = ("nl", "fr", "en")
KINDS = ("loaded", "reminder", "picked_up")
BLOCKS = ("subject", "body", "sms")
# The fields every message has; a `loaded` message has the code too.
FIELDS = frozenset(
    {"town", "help_phone", "help_hours", "address", "hours", "item", "greeting", "name", "deadline", "deadline_time"}
)
CODE_FIELD = "code"
_JINJA_NAMES = frozenset({"loop", "range", "super", "self", "varargs", "kwargs", "caller", "true", "false", "none"})


class TemplateError(ValueError):
    """A template the service refuses; the text names the file and the line."""


@dataclass(frozen=True)
class Rendered:
    """One message in one language: what each channel takes from it."""

    language: str
    subject: str
    body: str  # paragraphs separated by blank lines
    sms: str
    code: str | None  # the grouped code, as the body shows it (None: a message without the code)

    def paragraphs(self) -> list[str]:
        return [p.strip() for p in self.body.split("\n\n") if p.strip()]

    def __repr__(self) -> str:
        return f"Rendered(language={self.language!r}, subject=...)"


def fields_of(kind: str) -> frozenset[str]:
    return FIELDS | {CODE_FIELD} if kind == "loaded" else FIELDS


def _names_loaded(node: nodes.Node) -> list[nodes.Name]:
    stored = {n.name for n in node.find_all(nodes.Name) if n.ctx in ("store", "param")}
    return [n for n in node.find_all(nodes.Name) if n.ctx == "load" and n.name not in stored | _JINJA_NAMES]


class Templates:
    """Every language's and kind's template, checked."""

    def __init__(self, templates: dict[tuple[str, str], jinja2.Template], origins: dict[tuple[str, str], str]):
        self._templates = templates
        self.origins = origins  # (language, kind) -> the file it came from

    @classmethod
    def load(cls, override: Path | None = None) -> Templates:
        """The shipped templates, each replaced by `override`/LANG/KIND.txt where the town has one."""
        if override is not None and not override.is_dir():
            raise TemplateError(f"{override}: the templates directory does not exist")
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
        shipped = resources.files("lockertools.notify") / "templates"
        templates: dict[tuple[str, str], jinja2.Template] = {}
        origins: dict[tuple[str, str], str] = {}
        for language in LANGUAGES:
            for kind in KINDS:
                own = override / language / f"{kind}.txt" if override is not None else None
                if own is not None and own.is_file():
                    where = str(own)
                    try:
                        source = own.read_text(encoding="utf-8")
                    except (OSError, UnicodeDecodeError) as exc:
                        raise TemplateError(f"{where}: cannot read it: {exc}") from None
                else:
                    where = f"(shipped) {language}/{kind}.txt"
                    source = (shipped / language / f"{kind}.txt").read_text(encoding="utf-8")
                templates[(language, kind)] = check(env, source, where, kind)
                origins[(language, kind)] = where
        return cls(templates, origins)

    def render(self, kind: str, language: str, context: dict[str, Any]) -> Rendered:
        template = self._templates[(language, kind)]
        ctx = template.new_context(context)
        parts = {name: "".join(template.blocks[name](ctx)).strip() for name in BLOCKS}
        return Rendered(
            language=language,
            subject=" ".join(parts["subject"].split()),
            body="\n\n".join(_paragraphs(parts["body"])),
            sms=" ".join(parts["sms"].split()),
            code=context.get(CODE_FIELD),
        )


def _paragraphs(text: str) -> list[str]:
    out: list[str] = []
    for block in text.split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines()]
        if any(lines):
            out.append("\n".join(line for line in lines if line))
    return out


def check(env: jinja2.Environment, source: str, where: str, kind: str) -> jinja2.Template:
    """Parse and check one template (TemplateError naming `where` and the line), then compile it."""
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{where}:{exc.lineno}: {exc.message}") from None
    known = fields_of(kind)
    for name in _names_loaded(tree):
        if name.name not in known:
            hint = " (only a `loaded` message has the code)" if name.name == CODE_FIELD else ""
            raise TemplateError(
                f"{where}:{name.lineno}: unknown field {name.name!r}{hint}; the fields: {', '.join(sorted(known))}"
            )
    blocks = {b.name: b for b in tree.find_all(nodes.Block)}
    for block_name in BLOCKS:
        if block_name not in blocks:
            raise TemplateError(f"{where}:1: no {{% block {block_name} %}} (each template has {', '.join(BLOCKS)})")
    if kind == "loaded":
        for block_name in ("body", "sms"):
            block = blocks[block_name]
            if CODE_FIELD not in {n.name for n in _names_loaded(block)}:
                raise TemplateError(f"{where}:{block.lineno}: the {block_name} block never shows {{{{ code }}}}")
    if meta.find_referenced_templates(tree):
        for ref in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
            raise TemplateError(f"{where}:{ref.lineno}: a message template stands alone (no extends, include, import)")
    return env.from_string(source)
