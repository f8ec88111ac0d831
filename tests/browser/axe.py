"""axe-core (vendored under vendor/axe-core, MPL-2.0) run on the page a test has open: no
serious or critical violation, and nothing wider than the window."""

from functools import cache
from pathlib import Path

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


@cache
def _source() -> str:
    return AXE.read_text()


def violations(page) -> list[dict]:
    """axe's serious and critical violations on the page, each with the nodes it names.

    The script is evaluated through the browser's debugging protocol, which the page's
    Content-Security-Policy does not govern (an injected <script> tag would be refused)."""
    page.wait_for_load_state("networkidle")
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(_source())
    found = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in found
        if v["impact"] in BLOCKING
    ]


def assert_accessible(page, name: str) -> None:
    found = violations(page)
    assert found == [], f"{name}: {found}"
    width, window = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= window, f"{name} is {width}px wide in a {window}px window: {page.evaluate(WIDEST)}"


# The innermost elements that reach past the window's right edge, to say what overflows.
WIDEST = """() => [...document.querySelectorAll('body *')]
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
  .filter((e) => ![...e.children].some((c) => c.getBoundingClientRect().right > window.innerWidth + 1))
  .slice(0, 5)
  .map((e) => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}.${[...e.classList].join('.')}`)"""
