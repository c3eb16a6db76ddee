"""The page in its languages (without a browser): choosing the language, the catalogs,
amounts as people type them, and links shared with tracking parameters."""

from __future__ import annotations

import re
from decimal import Decimal
from html import unescape

import pytest
from aiohttp.test_utils import TestClient
from babel.messages.pofile import read_po

from publish import i18n
from publish.amounts import OtherCurrency, UnreadableAmount, read_amount
from publish.page import Text

# --- choosing the language ---------------------------------------------------------------------


@pytest.mark.parametrize(("asked", "header", "expected"), [
    (None, None, "en"),
    (None, "", "en"),
    ("es", None, "es"),
    ("es-MX", "fr", "es"),  # ?lang= first; a regional tag is its language
    ("ES_mx", None, "es"),
    ("xx", "ru", "ru"),  # an unknown ?lang= falls back to the header
    (None, "fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", "fr"),
    (None, "de, sw;q=0.2, ar;q=0.4", "ar"),  # by q-value, not by order
    (None, "hi;q=0.5, pt-BR;q=0.5", "hi"),  # equal q: the header's order
    (None, "pt-BR;q=0, ru", "ru"),  # q=0: not acceptable
    (None, "fil-PH", "tl"),  # Filipino is the page's Tagalog
    (None, "de, it", "en"),
    (None, "es;q=abc, fr", "fr"),  # a malformed q-value is no preference
    (None, "*", "en"),
])
def test_the_language_is_asked_then_accepted_then_english(
        asked: str | None, header: str | None, expected: str) -> None:
    assert i18n.negotiate(asked, header) == expected


# --- the catalogs ------------------------------------------------------------------------------


def test_every_language_translates_every_message_of_the_page() -> None:
    template = i18n.extract_messages()
    wanted = {m.id for m in template if m.id}
    # messages.pot is the sources' (python -m publish.i18n writes it after a change).
    with (i18n.LOCALE_DIR / "messages.pot").open("rb") as f:
        assert {m.id for m in read_po(f) if m.id} == wanted
    placeholder = re.compile(r"%\(\w+\)s")
    for lang in i18n.LANGUAGES[1:]:
        path = i18n.LOCALE_DIR / lang.code / "LC_MESSAGES" / "messages.po"
        with path.open("rb") as f:
            catalog = read_po(f, locale=lang.babel)
        assert not catalog.fuzzy, lang.code  # gettext would skip a fuzzy header's catalog
        found = {m.id: m for m in catalog if m.id}
        assert set(found) == wanted, (lang.code, wanted ^ set(found))
        for m in found.values():
            strings = [str(x) for x in (m.string if isinstance(m.string, (tuple, list))
                                        else (m.string,))]
            assert all(strings), (lang.code, m.id)
            assert not m.fuzzy, (lang.code, m.id)
            # Machine-made translations stay marked until a person has read them.
            assert i18n.MACHINE_NOTE in m.user_comments, (lang.code, m.id)
            plural = isinstance(m.id, (tuple, list))
            source = str(m.id[1] if plural else m.id)
            # A plural message has one string per plural form of the language.
            assert len(strings) == (catalog.num_plurals if plural else 1), (lang.code, m.id)
            for s in strings:
                assert set(placeholder.findall(s)) == set(placeholder.findall(source)), (
                    lang.code, m.id, s)


def test_the_plural_follows_the_languages_rules() -> None:
    singular, plural = ("%(fast)s of %(total)s provider delivers within an hour",
                        "%(fast)s of %(total)s providers deliver within an hour")
    assert Text("en").plural(singular, plural, 1, fast=1, total=1) == (
        "1 of 1 provider delivers within an hour")
    ru = Text("ru")
    # Russian: 21 провайдера (one), 3 провайдеров... each count its own form.
    assert "из 21 провайдера" in ru.plural(singular, plural, 21, fast=2, total=21)
    assert "из 5 провайдеров" in ru.plural(singular, plural, 5, fast=2, total=5)


def test_cldr_formats_money_numbers_and_dates_in_the_language() -> None:
    assert i18n.money(Decimal("345"), "EUR", "en") == "€345.00"
    assert i18n.money(Decimal("345"), "EUR", "fr") == "345,00\u00a0€"
    assert i18n.money(Decimal("1000"), "TRY", "en") == "TRY\u00a01,000.00"  # CLDR spacing
    assert i18n.number(123456.5, "hi") == "1,23,456.50"  # Indian grouping
    assert i18n.percent(5.234, "fr") == "5,23\u00a0%"
    assert i18n.country("SN", "Senegal", "fr") == "Sénégal"
    assert i18n.country("SN", "Senegal", "ar") == "السنغال"
    assert i18n.direction("ar") == "rtl" and i18n.direction("en") == "ltr"


# --- amounts as people type them ---------------------------------------------------------------

EUR = frozenset({"EUR", "€"})
USD = frozenset({"USD", "$", "US$"})


@pytest.mark.parametrize(("typed", "currency", "amount"), [
    ("200", EUR, "200"),
    ("200,50", EUR, "200.50"),
    ("200.50", USD, "200.50"),
    ("1 000", EUR, "1000"),
    ("1\u00a0000", EUR, "1000"),  # a no-break space, as French writes it
    ("1\u202f000,50 €", EUR, "1000.50"),  # the narrow one CLDR's French uses
    ("1.000,50", EUR, "1000.50"),
    ("1,000.50", USD, "1000.50"),
    ("1.000", EUR, "1000"),  # three digits after one mark: thousands, in every language
    ("1,000", USD, "1000"),
    ("0,500", EUR, "0.500"),  # ... unless nothing but a zero stands before it
    ("1.000.000", EUR, "1000000"),
    ("1,00,000", USD, "100000"),  # Indian grouping
    ("1'000", EUR, "1000"),
    ("500€", EUR, "500"),
    ("€ 500", EUR, "500"),
    ("$200", USD, "200"),
    ("200 USD", USD, "200"),
    ("200 euros", EUR, "200"),
    ("200.", EUR, "200"),
    ("٢٠٠٫٥", EUR, "200.5"),  # Arabic-Indic digits and decimal mark
    ("२००", EUR, "200"),  # Devanagari digits
    ("２００", EUR, "200"),  # full-width digits
    ("$200", frozenset(), "200"),  # the currency not known yet: any is taken
])
def test_amounts_are_read_as_people_type_them(typed: str, currency: frozenset[str],
                                              amount: str) -> None:
    assert read_amount(typed, currency) == Decimal(amount)


@pytest.mark.parametrize(("typed", "error"), [
    ("abc", UnreadableAmount), ("", UnreadableAmount), ("2o0", UnreadableAmount),
    ("1..000", UnreadableAmount), ("1.000.50", UnreadableAmount), (".5", UnreadableAmount),
    ("200 300 x 4", UnreadableAmount), ("$200 EUR", UnreadableAmount),
    ("$200", OtherCurrency), ("200 USD", OtherCurrency), ("£200", OtherCurrency),
])
def test_what_is_not_an_amount_in_euros_is_refused(typed: str, error: type) -> None:
    with pytest.raises(error):
        read_amount(typed, EUR)


def heading(page: str) -> str:
    found = re.search(r'<h2 id="result-title">(.*?)</h2>', page)
    assert found, page[-3000:]
    return unescape(found.group(1))


async def test_the_page_reads_the_amount_in_its_language(api: TestClient) -> None:
    # Italy → China (EUR): 345 is a surveyed amount, so each way of typing it gives the
    # heading of 345.
    expected = {}
    for lang in ("en", "fr", "es"):
        resp = await api.get("/", params={"from": "ITA", "to": "CHN", "amount": "345",
                                          "lang": lang})
        expected[lang] = heading(await resp.text())
    assert expected["en"] == "Prices for €345.00 from Italy to China"
    assert expected["fr"] == "Prix pour 345,00\u00a0€, envoi de : Italie, vers : Chine"
    for typed, lang in (("345,00", "fr"), ("345.00 €", "en"), ("€345", "es"), ("345 EUR", "fr"),
                        ("٣٤٥", "en")):
        resp = await api.get("/", params={"from": "ITA", "to": "CHN", "amount": typed,
                                          "lang": lang})
        assert resp.status == 200, (typed, await resp.text())
        assert heading(await resp.text()) == expected[lang], typed
    # USA → MEX (USD): "$200" and "1,000.50" are dollars.
    for typed in ("$200", "200 USD", "1,000.50"):
        resp = await api.get("/", params={"from": "USA", "to": "MEX", "amount": typed})
        assert resp.status == 200 and 'id="ranked"' in await resp.text(), typed


async def test_a_link_naming_the_corridor_alone_prices_the_forms_amount(
        api: TestClient) -> None:
    # A corridor feed's link (and one shared by hand) has no amount: the form's 200, as
    # shown in the box; a box emptied and sent is asked for.
    resp = await api.get("/", params={"from": "USA", "to": "MEX"})
    assert resp.status == 200, await resp.text()
    assert heading(await resp.text()) == "Prices for $200.00 from United States to Mexico"
    emptied = await api.get("/", params={"from": "USA", "to": "MEX", "amount": ""})
    assert emptied.status == 400
    assert "Type the amount you want to send" in await emptied.text()


@pytest.mark.parametrize("lang", [x.code for x in i18n.LANGUAGES])
async def test_an_unreadable_amount_is_a_sentence_in_the_pages_language(
        api: TestClient, lang: str) -> None:
    t = Text(lang)
    resp = await api.get("/", params={"from": "ITA", "to": "CHN", "amount": "two hundred",
                                      "lang": lang})
    assert resp.status == 400 and resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-store"
    page = await resp.text()
    said = re.search(r'<p class="error" role="alert" id="error">(.*?)</p>', page)
    assert said, page
    example = t("for example %(whole)s or %(decimal)s", whole=i18n.number(200, lang, 0),
                decimal=t.number(Decimal("200.50")))
    assert unescape(said.group(1)) == t(
        "We could not read the amount “%(typed)s”. Type only the number, %(example)s.",
        typed="two hundred", example=example)
    # The box is marked invalid and described by the sentence (screen readers read both).
    assert 'aria-describedby="amount-currency error" aria-invalid="true"' in page
    # Not the API's problem+json: a page, in the reader's language, with the form kept.
    assert f'<html lang="{lang}" dir="{i18n.direction(lang)}">' in page
    assert 'value="two hundred"' in page
    # An amount in another currency than the sending country's is said so, not misread.
    resp = await api.get("/", params={"from": "ITA", "to": "CHN", "amount": "$200",
                                      "lang": lang})
    assert resp.status == 422
    assert "EUR" in unescape(await resp.text())


async def test_the_language_is_chosen_and_switched_by_plain_links(
        api: TestClient) -> None:
    resp = await api.get("/?from=USA&to=MEX&amount=200",
                         headers={"Accept-Language": "de-DE, ar;q=0.9, en;q=0.5"})
    page = await resp.text()
    assert resp.status == 200 and '<html lang="ar" dir="rtl">' in page
    assert resp.headers["Content-Language"] == "ar"
    assert "Accept-Language" in resp.headers["Vary"]
    assert Text("ar")("What does it cost to send money home?") in page
    assert "المكسيك" in page  # Mexico, in Arabic (CLDR)
    # The switch: a link per language keeping the question, the current one not a link.
    links = re.findall(r'<a href="([^"]+)" lang="(\w+)" hreflang="\w+" dir="\w+">', page)
    assert {code for _, code in links} == {x.code for x in i18n.LANGUAGES} - {"ar"}
    assert all(unescape(h).startswith("/?from=USA&to=MEX&amount=200&lang=") for h, _ in links)
    assert '<span aria-current="true" lang="ar" dir="rtl">العربية</span>' in page
    # ?lang= wins over the header, and the form keeps it when submitted again.
    page = await (await api.get("/?from=USA&to=MEX&amount=200&lang=sw",
                                headers={"Accept-Language": "ar"})).text()
    assert '<html lang="sw" dir="ltr">' in page
    assert '<input type="hidden" name="lang" value="sw">' in page
    assert "Marekani (USA) – USD" in page  # the United States, in Swahili
    # Without ?lang= the form sends none: the browser's language decides again.
    page = await (await api.get("/", headers={"Accept-Language": "es"})).text()
    assert '<html lang="es" dir="ltr">' in page and 'name="lang"' not in page
    # The API is not translated.
    body = await (await api.get("/v1/compare?from=USA&to=MEX&amount=200",
                                headers={"Accept-Language": "es"})).json()
    assert body["to"]["name"] == "Mexico"


# --- links shared with tracking parameters ----------------------------------------------------


async def test_a_shared_link_opens_as_shared(api: TestClient) -> None:
    clean = await (await api.get("/?from=USA&to=MEX&amount=200&lang=fr")).text()
    tracked = await api.get(
        "/?from=USA&to=MEX&amount=200&lang=fr&fbclid=IwAR0abc&utm_source=facebook"
        "&utm_medium=social&utm_campaign=x&gclid=Cj0KCQ&mc_eid=1")
    assert tracked.status == 200
    page = await tracked.text()
    assert heading(page) == heading(clean)
    # It names the link without them, and the language switch drops them too.
    assert '<link rel="canonical" href="/?from=USA&amp;to=MEX&amp;amount=200&amp;lang=fr">' \
        in page
    assert "fbclid" not in page.split("</head>")[1] and "utm_" not in page
    # The API stays strict: an unknown parameter is a 400 naming it.
    resp = await api.get("/v1/compare?from=USA&to=MEX&amount=200&fbclid=IwAR0abc")
    assert resp.status == 400 and (await resp.json())["parameter"] == "fbclid"
    # Any other unknown parameter on the page is said in the page's language.
    resp = await api.get("/?from=USA&to=MEX&amount=200&lang=es&colour=blue")
    assert resp.status == 400
    assert "Este enlace tiene algo que no podemos leer (colour)" in await resp.text()


def test_names_from_the_data_are_escaped_and_isolated_on_a_right_to_left_page() -> None:
    from publish.page import render_result

    service = {"rank": 1, "provider": "Ria <b>", "product": "Cash to cash", "flags": [],
               "amount_received": 3412.5, "fee_paid_on_top": False, "fee": 5.0,
               "fee_currency": "USD", "receive_currency": "MXN",
               "amount_received_if_fee_deducted": None, "amount_received_if_fee_on_top": None,
               "effective_cost_pct": 4.0, "total_cost_pct": 4.0, "speed": "same_day",
               "pay_in": "cash", "access_point": "agent", "pay_out": "cash",
               "collected_at": "2014-05-12T00:00:00Z", "data_kind": "survey"}
    doc = {"from": {"alpha2": "US", "alpha3": "USA", "name": "United States"},
           "to": {"alpha2": "MX", "alpha3": "MEX", "name": "Mexico"}, "currency": "USD",
           "amount": 200.0,
           "priced_amount": 200.0, "approximate": False, "period": "2014Q2",
           "corridor": {"average": 4.0, "points_above_3": 1.0, "points_above_5": -1.0},
           "ranked_by": "total_cost_pct", "flags_explained": {}, "services": [service],
           "non_transparent": [{**service, "provider": "Delgado & <i>Travel</i>"}]}
    html = render_result(doc, "ar")
    assert "<bdi>Ria &lt;b&gt;</bdi>" in html
    assert "<bdi>Delgado &amp; &lt;i&gt;Travel&lt;/i&gt;</bdi>" in html
    assert '<bdi class="note">Cash to cash</bdi>' in html
    assert "من الولايات المتحدة إلى المكسيك" in html  # the countries, in Arabic
    assert "<b>" not in html and "<i>" not in html
    # "Watch this corridor", in Arabic, gives the corridor's feed (docs/alerts.md).
    assert '<a href="/v1/feeds/corridor/USA-MEX.atom" type="application/atom+xml">' \
           "تابِع هذا الممر</a>" in html
