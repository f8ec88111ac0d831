"""Validators shared by the apps' models and the catalog file."""

from django.core.exceptions import ValidationError

BULLETS_MAX = 6
BULLET_MAX_CHARS = 80


def bullets_problem(value) -> str | None:
    """Why `value` is not a short list of marketing bullets (None when it is one)."""
    if not isinstance(value, list):
        return "must be a list of short texts"
    if len(value) > BULLETS_MAX:
        return f"at most {BULLETS_MAX} bullets"
    for i, bullet in enumerate(value):
        if not isinstance(bullet, str) or not bullet.strip():
            return f"bullet {i + 1} must be some text"
        if len(bullet) > BULLET_MAX_CHARS:
            return f"bullet {i + 1} is longer than {BULLET_MAX_CHARS} characters"
    return None


def validate_bullets(value) -> None:
    problem = bullets_problem(value)
    if problem:
        raise ValidationError(f"Bullets: {problem}.", code="invalid_bullets")
