"""The printed letter: an A4 PDF the desk prints for a resident with no e-mail or phone (or any
resident, on request), one page each; many letters make one printable PDF."""

from __future__ import annotations

from dataclasses import dataclass

from fpdf import FPDF

from lockertools.notify.templates import Rendered

_MARGIN_MM = 22
_STEP = ("1.", "2.", "3.")


@dataclass(frozen=True)
class Letter:
    rendered: Rendered
    town: str
    recipient: str | None  # the resident's name, for the address block
    reference: str  # the delivery's number and the case, for the desk (no personal data)
    dated: str  # the letter's date, in the resident's language

    def __repr__(self) -> str:
        return f"Letter(reference={self.reference!r})"


def _latin1(text: str) -> str:
    # The PDF's built-in fonts are Latin-1 (Dutch, French and English fit); anything else shows as "?".
    return text.replace("\u2019", "'").replace("\u2013", "-").encode("latin-1", "replace").decode("latin-1")


def _page(pdf: FPDF, letter: Letter) -> None:
    pdf.add_page()
    width = pdf.w - 2 * _MARGIN_MM
    pdf.set_font("Helvetica", "B", 20)
    pdf.cell(width, 10, _latin1(letter.town), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    pdf.cell(width, 6, _latin1(f"{letter.dated}    {letter.reference}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(8)
    if letter.recipient:
        pdf.set_font("Helvetica", "", 12)
        pdf.cell(width, 7, _latin1(letter.recipient), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(6)
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(width, 8, _latin1(letter.rendered.subject), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    rendered = letter.rendered
    for paragraph in rendered.paragraphs():
        if rendered.code is not None and paragraph == rendered.code:
            pdf.set_font("Courier", "B", 44)
            pdf.set_fill_color(235, 235, 235)
            pdf.cell(width, 22, paragraph, align="C", fill=True, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(5)
            continue
        for line in paragraph.splitlines():
            step = line[:2] in _STEP
            pdf.set_font("Helvetica", "B" if step else "", 14 if step else 12)
            pdf.multi_cell(width, 8 if step else 6.5, _latin1(line), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3.5)


def letters_pdf(letters: list[Letter]) -> bytes:
    """One PDF, a page per letter (A4, portrait)."""
    if not letters:
        raise ValueError("no letters to print")
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_margins(_MARGIN_MM, _MARGIN_MM, _MARGIN_MM)
    pdf.set_auto_page_break(True, margin=_MARGIN_MM)
    pdf.set_title(_latin1(letters[0].town))
    pdf.set_creator("lockertools")
    for letter in letters:
        _page(pdf, letter)
    return bytes(pdf.output())
