"""The printed letter: rendered as an A4 PDF, read back with pdftotext (the code, the deadline and
the steps in the resident's language), its first page saved as a PNG under build/notify/ for a person
to look at (pdftoppm)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lockertools.notify import Templates, words
from lockertools.notify.letter import Letter, letters_pdf

REPO = Path(__file__).resolve().parents[2]
STEPS = {
    "nl": ("Typ de code.", "Druk op #.", "De deur gaat open."),
    "fr": ("Tapez le code.", "Appuyez sur #.", "La porte s'ouvre."),
    "en": ("Type the code.", "Press #.", "The door opens."),
}
EXPIRES = 1_800_000_000


def _letter(language: str, code: str = "12345678") -> Letter:
    context = {
        "town": "Gent",
        "help_phone": "09 210 10 10",
        "help_hours": "ma-vr 9-17 uur",
        "address": "Botermarkt 1, 9000 Gent",
        "hours": words.OPEN_ALWAYS[language],
        "item": words.item_words("document", language),
        "name": "Élise Dupont",
        "greeting": f"{words.DEAR[language]} Élise Dupont,",
        "deadline": words.date_words(EXPIRES, language),
        "deadline_time": words.time_words(EXPIRES),
        "code": words.grouped(code),
    }
    rendered = Templates.load().render("loaded", language, context)
    return Letter(rendered, "Gent", "Élise Dupont", "123456", words.date_words(EXPIRES - 86400, language))


def _pdftotext(pdf: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext is missing: apt-get install poppler-utils (the Makefile's SYSTEM_PACKAGES)")
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, check=True, text=True).stdout


@pytest.mark.parametrize("language", ["nl", "fr", "en"])
def test_the_letter_reads_back_with_code_deadline_and_steps(language: str, tmp_path: Path) -> None:
    pdf = tmp_path / f"letter-{language}.pdf"
    pdf.write_bytes(letters_pdf([_letter(language)]))
    text = _pdftotext(pdf)
    assert "1234 5678" in text
    assert words.date_words(EXPIRES, language) in " ".join(text.split())
    for step in STEPS[language]:
        assert step in text
    for other, steps in STEPS.items():
        if other != language:
            assert steps[0] not in text
    assert "Élise Dupont" in text and "09 210 10 10" in text
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, check=True, text=True).stdout
    assert re.search(r"^Pages:\s+1$", info, re.M) and "595.28 x 841.89 pts (A4)" in info


def test_a_batch_is_one_pdf_a_page_each_and_the_first_page_is_saved_as_png(tmp_path: Path) -> None:
    letters = [_letter("fr", "11112222"), _letter("nl", "33334444"), _letter("en", "55556666")]
    pdf = tmp_path / "batch.pdf"
    pdf.write_bytes(letters_pdf(letters))
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, check=True, text=True).stdout
    assert re.search(r"^Pages:\s+3$", info, re.M)
    pages = _pdftotext(pdf).split("\f")
    assert "1111 2222" in pages[0] and "3333 4444" in pages[1] and "5555 6666" in pages[2]
    out = REPO / "build" / "notify"
    out.mkdir(parents=True, exist_ok=True)
    first_page = ["-f", "1", "-l", "1", "-singlefile"]
    subprocess.run(["pdftoppm", "-png", "-r", "60", *first_page, str(pdf), str(out / "letter-fr")], check=True)
    assert (out / "letter-fr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
