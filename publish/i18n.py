"""The page's languages: which one a request gets, its gettext catalog, and CLDR formatting.

A request's language is ``?lang=`` when it names one of ``LANGUAGES`` (``es-MX`` is Spanish),
else the first of ``Accept-Language`` by q-value that does, else English. The catalogs are
``publish/locale/<lang>/LC_MESSAGES/messages.po``, read with Babel when first needed (no
compile step, so a plain ``pip install -e .`` serves every language); English is the source
language and needs none. Numbers, money, percentages, dates and country names come from
Babel's CLDR data in the page's language.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
DEFAULT = "en"


@dataclass(frozen=True)
class Language:
    code: str  # the page's ?lang= value and <html lang>
    autonym: str  # the language's name in itself, for the language switch
    babel: str  # Babel's locale for CLDR data


#: The page's languages, in the order the switch lists them. Tagalog's CLDR data is
#: Filipino's (``fil``), the standardised form of Tagalog that Babel ships.
LANGUAGES: tuple[Language, ...] = (
    Language("en", "English", "en"),
    Language("es", "Español", "es"),
    Language("fr", "Français", "fr"),
    Language("pt", "Português", "pt"),
    Language("ar", "العربية", "ar"),
    Language("hi", "हिन्दी", "hi"),
    Language("tl", "Tagalog", "fil"),
    Language("ru", "Русский", "ru"),
    Language("sw", "Kiswahili", "sw"),
)
BY_CODE = {lang.code: lang for lang in LANGUAGES}
#: Tags a browser may send for one of the languages under another name.
_ALIASES = {"fil": "tl"}


def _match(tag: str) -> str | None:
    """The page's language for one language tag (``es-MX`` → ``es``), or None."""
    tag = tag.strip().replace("_", "-").lower()
    primary = tag.split("-", 1)[0]
    primary = _ALIASES.get(primary, primary)
    return primary if primary in BY_CODE else None


def accept_language(header: str) -> list[str]:
    """The tags of an ``Accept-Language`` header, most wanted first (RFC 9110 §12.5.4):
    by q-value, in the header's order at equal q; ``q=0`` (not acceptable) and malformed
    q-values are left out, as is ``*``."""
    weighted: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if 0 < q <= 1:
            weighted.append((-q, i, tag))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(asked: str | None, header: str | None) -> str:
    """The page's language: ``asked`` (``?lang=``) when it names one, else the best of the
    ``Accept-Language`` header that does, else English."""
    if asked and (found := _match(asked)):
        return found
    for tag in accept_language(header or ""):
        if found := _match(tag):
            return found
    return DEFAULT


@functools.cache
def translations(code: str) -> NullTranslations:
    """The gettext catalog of a language, read from its ``.po`` once (English: none)."""
    path = LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"
    if code == DEFAULT:
        return NullTranslations()
    with path.open("rb") as f:
        catalog = read_po(f, locale=BY_CODE[code].babel, domain=DOMAIN)
    buf = io.BytesIO()
    # Every entry counts, machine-made ones too: Babel's write_mo leaves out fuzzy ones, and
    # the catalogs mark theirs for review with a comment instead.
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


@functools.cache
def locale(code: str) -> Locale:
    return Locale.parse(BY_CODE[code].babel)


@functools.cache
def direction(code: str) -> str:
    """``rtl`` or ``ltr``, as CLDR gives the script's direction."""
    return locale(code).text_direction


def number(value: float | Decimal, code: str, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals by the language's number pattern (its separators,
    and its grouping: Hindi's is 1,00,000)."""
    pattern = locale(code).decimal_formats[None].pattern.split(";")[0]
    pattern = pattern.replace(".###", "." + "0" * digits if digits else "")
    return format_decimal(value, format=pattern, locale=locale(code))


def money(value: float | Decimal, currency: str, code: str) -> str:
    """An amount of ``currency`` as the language writes money (``€345.00``, ``345,00 €``),
    always with the pattern's two decimals (a yen's fee is still shown to the cent it was
    computed to)."""
    text = format_currency(value, currency, locale=locale(code), currency_digits=False)
    # CLDR's currency spacing, which Babel leaves out: a symbol of letters ("TRY", "Rs")
    # stands a no-break space away from the digits ("TRY 1,000.00", not "TRY1,000.00").
    return _LETTER_DIGIT.sub("\u00a0", text)


_LETTER_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")


def percent(value: float, code: str, digits: int = 2) -> str:
    """A percentage (``5.23`` → ``5.23%``, ``5,23 %``) by the language's percent pattern,
    with ``digits`` decimals."""
    pattern = locale(code).percent_formats[None].pattern.split(";")[0]
    if digits:
        pattern = pattern.replace("0", "0." + "0" * digits, 1)
    return format_decimal(value / 100, format=pattern, locale=locale(code))


def collation_key(text: str) -> str:
    """A key that sorts names as a reader expects them in a list: case and accents not
    first (``Égypte`` among the E's). Python has no CLDR collation; this is its base level
    for the Latin, Cyrillic, Arabic and Devanagari names the page lists."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def date(value: dt.date, code: str) -> str:
    """A date as the language writes it in its medium form (``Jun 30, 2014``)."""
    from babel.dates import format_date

    return format_date(value, format="medium", locale=locale(code))


def country(alpha2: str | None, fallback: str, code: str) -> str:
    """A country's name in the language (CLDR), else ``fallback``."""
    if alpha2:
        name = locale(code).territories.get(alpha2)
        if name:
            return str(name)
    return fallback


# --- the catalogs' upkeep ------------------------------------------------------------------

#: The note every machine-made translation carries in the catalogs until a person has read
#: it: a translator comment (``# machine translation, to be reviewed``), which ``pybabel
#: update``, ``msgmerge`` and ``update_catalogs`` keep (an extracted ``#.`` comment would be
#: replaced by the sources'), and not ``#, fuzzy``, which would make gettext skip the entry.
MACHINE_NOTE = "machine translation, to be reviewed"


def extract_messages() -> Catalog:
    """Every message the page shows: those marked in ``publish/page.py`` (``_``, ``N_``,
    ``t(...)``), those of its templates, and the caveat explanations of
    ``publish.data.CAVEATS``."""
    from babel.messages.extract import extract

    from publish.data import CAVEATS

    here = Path(__file__).parent
    catalog = Catalog(project="sendcost", version="0.1.0", domain=DOMAIN, charset="utf-8",
                      copyright_holder="the sendcost authors", fuzzy=False)
    keywords = {"_": None, "N_": None, "t": None,
                "plural": (1, 2), "ngettext": (1, 2), "gettext": None}
    sources: list[tuple[str, Path]] = [("python", here / "page.py")]
    sources += [("jinja2.ext:babel_extract", path)
                for path in sorted((here / "templates").glob("*.html"))]
    for method, path in sources:
        with path.open("rb") as f:
            for lineno, message, comments, _context in extract(
                    method, f, keywords=keywords,
                    options={"trimmed": "true", "extensions": "jinja2.ext.i18n"}):
                catalog.add(message, locations=[(path.relative_to(here.parent).as_posix(),
                                                 lineno)], auto_comments=comments)
    for text in CAVEATS.values():
        catalog.add(text, locations=[("publish/data.py", 0)])
    return catalog


def update_catalogs() -> None:
    """Write ``messages.pot`` from the sources and bring each language's ``.po`` up to it
    (new messages empty, gone ones dropped), as ``pybabel update`` would."""
    from babel.messages.pofile import write_po

    template = extract_messages()
    with (LOCALE_DIR / f"{DOMAIN}.pot").open("wb") as f:
        write_po(f, template, width=100, omit_header=False, sort_output=True)
    for lang in LANGUAGES:
        if lang.code == DEFAULT:
            continue
        path = LOCALE_DIR / lang.code / "LC_MESSAGES" / f"{DOMAIN}.po"
        with path.open("rb") as f:
            catalog = read_po(f, locale=lang.babel, domain=DOMAIN)
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        with path.open("wb") as f:
            write_po(f, catalog, width=100, sort_output=True)


if __name__ == "__main__":  # python -m publish.i18n: after changing the page's messages
    update_catalogs()
