"""A deterministic stand-in for an AI model: the same model and prompt give the same result.

It needs no network and costs nothing, yet behaves like the real thing where billing cares:
every call produces an output and a token count that later issues price in credits.
"""

import hashlib
from dataclasses import dataclass
from html import escape

from projects.models import AiModel

_WORDS = (  # noqa: SIM905 (a sentence reads better than forty quoted words)
    "ledger invoice quota seat credit meter plan tier renewal proration balance grant usage period "
    "customer subscription entitlement webhook refund checkout portal trial upgrade forecast margin "
    "cohort churn signal pipeline draft summary insight outline"
).split()


@dataclass(frozen=True)
class Output:
    text: str
    tokens: int


def _digest(model: str, prompt: str) -> bytes:
    return hashlib.sha256(f"{model}\x00{prompt.strip()}".encode()).digest()


def _tokens(text: str) -> int:
    # Models count roughly four tokens for every three English words.
    return max(1, (len(text.split()) * 4 + 2) // 3)


def _text(digest: bytes, prompt: str) -> str:
    sentences = []
    for i in range(0, 24, 6):
        words = [_WORDS[b % len(_WORDS)] for b in digest[i : i + 6]]
        sentences.append(" ".join(words).capitalize() + ".")
    topic = " ".join(prompt.split()[:6])
    return f"On “{topic}”: " + " ".join(sentences)


def _image(digest: bytes) -> str:
    shapes = []
    for i in range(0, 30, 5):
        x, y, r = digest[i] % 200 + 20, digest[i + 1] % 120 + 20, digest[i + 2] % 40 + 10
        colour = f"#{digest[i + 3]:02x}{digest[i + 4]:02x}{digest[(i + 5) % 32]:02x}"
        shapes.append(f'<circle cx="{x}" cy="{y}" r="{r}" fill="{escape(colour)}" opacity=".8"/>')
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 240 160" role="img">'
        '<rect width="240" height="160" fill="#f4f1ea"/>' + "".join(shapes) + "</svg>"
    )


def generate(*, model: str, prompt: str) -> Output:
    if model not in AiModel.values:
        raise ValueError(f"unknown model {model!r}")
    digest = _digest(model, prompt)
    if model == AiModel.IMAGE:
        return Output(text=_image(digest), tokens=_tokens(prompt) + 258)
    text = _text(digest, prompt)
    return Output(text=text, tokens=_tokens(prompt) + _tokens(text))
