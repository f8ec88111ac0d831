"""A finalized invoice as a small, valid PDF (``invoice_pdf``): one page of Helvetica text written
by hand (catalog, page, font, content stream, cross-reference table), no dependency."""

import datetime as dt
from typing import Any

from stripe_sim.store import Store

_PAGE_HEIGHT = 842  # A4 in points
_LEFT = 56


def _text(value: str) -> str:
    """A PDF literal string: Latin-1 only (the standard fonts' encoding), specials escaped."""
    safe = value.encode("latin-1", "replace").decode("latin-1")
    return "(" + safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _money(amount: int, currency: str) -> str:
    sign = "-" if amount < 0 else ""
    units, cents = divmod(abs(amount), 100)
    return f"{sign}{units:,}.{cents:02d} {currency.upper()}"


def _day(ts: int | None) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%d %b %Y") if ts else "-"


def invoice_lines(store: Store, invoice: dict[str, Any]) -> list[tuple[int, str]]:
    """What the page says, as (font size, line of text), top to bottom."""
    customer = store.find("customer", invoice["customer"]) or {}
    address = customer.get("address") or {}
    rows: list[tuple[int, str]] = [
        (18, f"Invoice {invoice['number']}"),
        (10, f"Date {_day(invoice['effective_at'] or invoice['created'])}"),
        (10, f"Status {invoice['status']}"),
        (10, ""),
        (10, "Bill to"),
    ]
    for part in (
        customer.get("name"),
        customer.get("email"),
        address.get("line1"),
        address.get("line2"),
        " ".join(p for p in (address.get("postal_code"), address.get("city")) if p),
        address.get("country"),
    ):
        if part:
            rows.append((10, str(part)))
    rows.append((10, ""))
    for line in invoice["_lines"]:
        period = line.get("period") or {}
        span = f"  ({_day(period.get('start'))} - {_day(period.get('end'))})" if period.get("start") else ""
        rows.append((10, f"{line['description'] or ''}{span}"))
        rows.append((10, f"    {_money(line['amount'], invoice['currency'])}"))
    rows.append((10, ""))
    rows.append((12, f"Total {_money(invoice['total'], invoice['currency'])}"))
    rows.append((12, f"Amount due {_money(invoice['amount_due'], invoice['currency'])}"))
    rows.append((12, f"Amount paid {_money(invoice['amount_paid'], invoice['currency'])}"))
    return rows


def write(rows: list[tuple[int, str]], *, title: str) -> bytes:
    """A one-page PDF 1.4 document showing ``rows``."""
    y = _PAGE_HEIGHT - 72
    ops = ["BT"]
    for size, line in rows:
        ops.append(f"/F1 {size} Tf 1 0 0 1 {_LEFT} {y} Tm {_text(line)} Tj")
        y -= size + 6
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 {_PAGE_HEIGHT}] "
        "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        f"<< /Title {_text(title)} /Producer (stripe_sim) >>".encode("latin-1"),
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\n" % (len(objects) + 1, len(objects))
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def invoice_pdf(store: Store, invoice_id: str) -> bytes | None:
    """The PDF of a finalized invoice; ``None`` for a draft or an unknown id."""
    invoice = store.find("invoice", invoice_id)
    if invoice is None or invoice["status"] == "draft":
        return None
    return write(invoice_lines(store, invoice), title=f"Invoice {invoice['number']}")
