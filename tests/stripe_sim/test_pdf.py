"""Every finalized invoice has a real PDF (`invoice_pdf`), checked by parsing its structure."""

import re

import requests

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim


def parse(document: bytes) -> dict[int, bytes]:
    """Objects by number, found through the cross-reference table the trailer points to."""
    assert document.startswith(b"%PDF-1.")
    assert document.rstrip().endswith(b"%%EOF")
    start = int(re.search(rb"startxref\s+(\d+)\s+%%EOF", document).group(1))
    assert document[start:].startswith(b"xref")
    header = re.match(rb"xref\s+0 (\d+)\s+", document[start:])
    count = int(header.group(1))
    entries = document[start + header.end() :].split(b"\n")[:count]
    assert entries[0].startswith(b"0000000000 65535 f")
    objects = {}
    for number, entry in enumerate(entries[1:], start=1):
        offset = int(entry[:10])
        body = document[offset:]
        assert body.startswith(b"%d 0 obj" % number), (number, body[:20])
        objects[number] = body[: body.index(b"endobj")]
    trailer = document[document.index(b"trailer") :]
    root = int(re.search(rb"/Root (\d+) 0 R", trailer).group(1))
    assert b"/Type /Catalog" in objects[root]
    return objects


def shown_text(objects: dict[int, bytes]) -> str:
    """The strings the content streams show, each stream's /Length checked."""
    shown = []
    for body in objects.values():
        match = re.search(rb"/Length (\d+) >>\nstream\n", body)
        if not match:
            continue
        stream = body[match.end() : match.end() + int(match.group(1))]
        assert body[match.end() + int(match.group(1)) :].startswith(b"\nendstream")
        for literal in re.findall(rb"\(((?:\\.|[^\\)])*)\) Tj", stream):
            shown.append(re.sub(rb"\\(.)", rb"\1", literal).decode("latin-1"))
    return "\n".join(shown)


def test_a_finalized_invoice_has_a_pdf_with_its_number_and_total(client, sim: Sim) -> None:
    price = helpers.price(client, amount=12345)
    cus = helpers.customer(client)
    client.v1.customers.update(
        cus.id,
        {
            "name": "Acme (Europe)",
            "address": {
                "line1": "1 Rue de la Paix",
                "city": "Paris",
                "postal_code": "75002",
                "country": "FR",
            },
        },
    )
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.invoice_pdf == f"{sim.url}/i/{invoice.id}/pdf"

    response = requests.get(invoice.invoice_pdf, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pdf"
    assert len(response.content) < 4000
    objects = parse(response.content)
    assert any(b"/Type /Page " in body for body in objects.values())
    text = shown_text(objects)
    assert f"Invoice {invoice.number}" in text
    assert "Total 123.45 USD" in text and "Amount paid 123.45 USD" in text
    assert "Acme (Europe)" in text and "1 Rue de la Paix" in text and "75002 Paris" in text


def test_a_draft_has_no_pdf(client, sim: Sim) -> None:
    cus = helpers.customer(client)
    client.v1.invoice_items.create({"customer": cus.id, "amount": 500, "currency": "usd"})
    draft = client.v1.invoices.create({"customer": cus.id, "pending_invoice_items_behavior": "include"})
    assert draft.invoice_pdf is None
    assert requests.get(f"{sim.url}/i/{draft.id}/pdf", timeout=30).status_code == 404
