"""Serializer fields for JSON request bodies that take the type the schema promises, nothing else.

DRF's fields coerce: a CharField takes 0 as "0", an IntegerField takes "5" and 5.0. That suits
form posts and query strings, where everything is text, but in a JSON body it accepts input
the published schema calls invalid, so a client's type mistake slips through unnoticed.
"""

from collections.abc import Mapping

from rest_framework import serializers


class _StringOnly:
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


_STRING_ERRORS = {"not_a_string": "Must be a string."}


class CharField(_StringOnly, serializers.CharField):
    default_error_messages = _STRING_ERRORS


class SlugField(_StringOnly, serializers.SlugField):
    default_error_messages = _STRING_ERRORS


class URLField(_StringOnly, serializers.URLField):
    default_error_messages = _STRING_ERRORS


class IntegerField(serializers.IntegerField):
    default_error_messages = {"not_an_integer": "Must be a whole number."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("not_an_integer")
        return super().to_internal_value(data)


class BooleanField(serializers.BooleanField):
    default_error_messages = {"not_a_boolean": "Must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("not_a_boolean")
        return data


# A JSON request body. A property it does not know is refused, so a misspelt field (`ammount`)
# is an error instead of silently ignored; the schema says so with `additionalProperties: false`.
# (A comment, not a docstring: the schema would show it as every body's description.)
class Input(serializers.Serializer):
    def to_internal_value(self, data):
        names = sorted(str(n) for n in set(data) - set(self.fields)) if isinstance(data, Mapping) else []
        unknown = {name: ["Unknown field."] for name in names}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as error:
            # Reported together with the other fields' errors.
            if unknown and isinstance(error.detail, dict):
                raise serializers.ValidationError({**error.detail, **unknown}) from None
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value
