"""Serializers compiled once, for the API's hot endpoints (consume, entitlement check, usage).

A DRF serializer built per request deep-copies its declared fields and runs a field machinery
that costs more than the rest of a cached entitlement check. These read the same serializer
classes once, at import, and then only do the checks they name:

- `parser(Input)(data)` returns what `Input(data=data).validated_data` would, for input every
  field accepts: the same types, strips, defaults, and each field's own validators (lengths,
  bounds, slugs, NUL checks, custom validators) and the serializer's `validate`. Whenever anything
  looks wrong, it hands the input to the serializer itself, which raises its usual error. So the
  error contract (field, reason, stable code) is DRF's by construction, and the published schema
  is unchanged: views still declare `Input` and the output serializer.
- `renderer(Output)(obj, context)` returns what `Output(obj, context=context).data` would, for
  serializers made of plain fields (integers, strings, booleans, UUIDs, datetimes, dicts, nested
  ones, `get_<field>` methods that read only `self.context`); anything else is rendered by DRF.

`tests/teams/test_fastio.py` compares both with DRF on generated inputs.
"""

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from rest_framework import fields as drf
from rest_framework import serializers
from rest_framework.fields import empty

from teams.api_fields import Input


class _Defer(Exception):
    """The compiled check is not sure: let the serializer decide (and explain)."""


def _run_validators(field, value) -> None:
    for validator in field.validators:
        try:
            if getattr(validator, "requires_context", False):
                raise _Defer
            validator(value)
        except (serializers.ValidationError, DjangoValidationError):
            raise _Defer from None


def _text(field):
    trim, allow_blank = field.trim_whitespace, field.allow_blank

    def check(value):
        if type(value) is not str:
            raise _Defer
        if trim:
            value = value.strip()
        if value == "":
            if not allow_blank:
                raise _Defer
            return ""
        _run_validators(field, value)
        return value

    return check


def _integer(field):
    limit = field.MAX_STRING_LENGTH

    def check(value):
        if type(value) is not int or len(str(value)) > limit:
            raise _Defer
        _run_validators(field, value)
        return value

    return check


def _boolean(field):
    def check(value):
        if type(value) is not bool:
            raise _Defer
        _run_validators(field, value)
        return value

    return check


def _dict(field):
    if not isinstance(field.child, drf._UnvalidatedField):
        return None

    def check(value):
        if type(value) is not dict:
            raise _Defer
        value = {str(k): v for k, v in value.items()}
        _run_validators(field, value)
        return value

    return check


def _json_list(field):
    child = field.child
    if not isinstance(child, drf.JSONField) or child.binary or child.validators or not child.allow_null:
        return None
    allow_empty = field.allow_empty

    def check(value):
        # Parsed JSON: every item is already JSON, which is all the child would verify.
        if type(value) is not list or (not allow_empty and not value):
            raise _Defer
        _run_validators(field, value)
        return value

    return check


def _field_check(field) -> Callable | None:
    if isinstance(field, drf.SlugField | drf.CharField) and not isinstance(
        field, drf.URLField | drf.EmailField | drf.RegexField | drf.IPAddressField
    ):
        return _text(field)
    if isinstance(field, drf.IntegerField):
        return _integer(field)
    if isinstance(field, drf.BooleanField):
        return _boolean(field)
    if isinstance(field, drf.DictField):
        return _dict(field)
    if isinstance(field, drf.ListField):
        return _json_list(field)
    return None


def parser(serializer_class: type[serializers.Serializer]) -> Callable[[Any], dict]:
    """A function: request data -> the serializer's validated data (or its ValidationError)."""
    instance = serializer_class()
    plan = []
    compilable = type(instance).to_internal_value in (
        serializers.Serializer.to_internal_value,
        Input.to_internal_value,
    )
    for name, field in instance.fields.items() if compilable else ():
        if field.read_only:
            continue
        check = _field_check(field)
        if check is None or field.source != name or hasattr(instance, f"validate_{name}"):
            compilable = False
            break
        has_default = field.default is not empty
        plan.append((name, check, field.required, has_default, field, field.allow_null))
    names = frozenset(name for name, *_ in plan)
    overridden = type(instance).validate is not serializers.Serializer.validate
    validate = type(instance).validate

    def slow(data) -> dict:
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    if not compilable:
        return slow

    def parse(data) -> dict:
        try:
            if type(data) is not dict or not names.issuperset(data):
                raise _Defer
            out = {}
            for name, check, required, has_default, field, allow_null in plan:
                value = data.get(name, empty)
                if value is empty:
                    if required:
                        raise _Defer
                    if has_default:
                        out[name] = field.get_default()
                    continue
                if value is None:
                    if not allow_null:
                        raise _Defer
                    out[name] = None
                    continue
                out[name] = check(value)
            if overridden:
                try:
                    # `validate` of these inputs reads only its argument.
                    out = validate(instance, out)
                except serializers.ValidationError:
                    raise _Defer from None
            return out
        except _Defer:
            return slow(data)

    return parse


# --- Output ---------------------------------------------------------------------------------


def _datetime(value):
    if not value:
        return None
    value = timezone.localtime(value) if timezone.is_aware(value) else value
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_PLAIN: list[tuple[type, Callable]] = [
    (drf.BooleanField, bool),
    (drf.IntegerField, int),
    (drf.UUIDField, str),
    (drf.DateTimeField, _datetime),
    (drf.CharField, str),
    (drf.DictField, lambda v: {str(k): item for k, item in v.items()}),
]


def _output_plan(serializer: serializers.Serializer):
    plan = []
    for name, field in serializer.fields.items():
        if field.write_only:
            continue
        if isinstance(field, drf.SerializerMethodField):
            plan.append((name, None, getattr(type(serializer), field.method_name)))
            continue
        if isinstance(field, serializers.Serializer) and not getattr(field, "many", False):
            nested = _output_plan(field)
            if nested is None:
                return None
            render_nested = _render_with(nested)

            def convert(value, render_nested=render_nested):
                return render_nested(value)

        else:
            # Exactly these classes (or subclasses keeping their rendering): a ChoiceField, a
            # method field or a typed dict child renders through DRF.
            cls, convert = next(((c, fn) for c, fn in _PLAIN if isinstance(field, c)), (None, None))
            if convert is None or type(field).to_representation is not cls.to_representation:
                return None
            if isinstance(field, drf.ChoiceField):
                return None
            if isinstance(field, drf.DictField) and not isinstance(field.child, drf._UnvalidatedField):
                return None
            if isinstance(field, drf.DateTimeField) and getattr(field, "format", empty) is not empty:
                return None
        plan.append((name, tuple(field.source_attrs), convert))
    return plan


class _Context:
    """What a serializer's `get_<field>` method may read of its serializer: the context."""

    def __init__(self, context):
        self.context = context


def _render_with(plan) -> Callable[..., dict | None]:
    def render(obj, context=None) -> dict | None:
        out = {}
        for name, attrs, convert in plan:
            if attrs is None:  # a method field: the serializer's own method
                out[name] = convert(_Context(context or {}), obj)
                continue
            value = obj
            for attr in attrs:
                value = value[attr] if isinstance(value, Mapping) else getattr(value, attr)
                if value is None:
                    break
                if inspect.ismethod(value) or inspect.isfunction(value):
                    value = value()
            out[name] = None if value is None else convert(value)
        return out

    return render


def renderer(serializer_class: type[serializers.Serializer]) -> Callable[[Any], dict]:
    """A function: object -> the serializer's `.data` for it."""
    plan = _output_plan(serializer_class())
    if plan is None:
        return lambda obj, context=None: serializer_class(obj, context=context or {}).data
    return _render_with(plan)
