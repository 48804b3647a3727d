"""The base of every validated table, on pydantic v2: the configuration's models and the plugins' options.

Plugin authors declare a channel's options with this module's names, which are pydantic's own
(``Field``, ``field_validator``, ``model_validator``) plus the ``Model`` base::

    class DiscordOptions(ChannelOptions):
        webhook_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")

        @field_validator("webhook_env")
        @classmethod
        def _trimmed(cls, value: str) -> str:
            return value.strip()

What ``Model`` adds to pydantic's ``BaseModel``:

* the configuration's rules for every subclass: frozen, unknown keys rejected, and nothing coerced
  silently (``"5"`` is not an ``int``, ``1`` is not a ``bool``, NaN and infinities are not numbers);
  a TOML array is accepted where a ``tuple`` is declared and a non-empty string where a ``Path`` is
  (pydantic's strict mode takes only a tuple and a ``Path`` object there);
* ``model_validate`` raises this module's ``ValidationError``, whose messages are plain
  (``must be at most 30 (got 99)``) and never repeat a string value: a token pasted where a
  variable *name* belongs (``token_env = "123:AA…"``) must not reach the logs, and pydantic's own
  message shows the input. Numbers and booleans are shown.

Why pydantic (and not msgspec, nor the hand-written engine this module was): docs/architecture.md,
"Why these libraries".
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, TypedDict

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["ErrorDetail", "Field", "Model", "ValidationError", "field_validator", "model_validator", "problems"]


class ErrorDetail(TypedDict):
    loc: tuple[int | str, ...]
    """Where: field names and array indexes from the validated table down."""
    msg: str
    type: str
    """``missing``, ``extra_forbidden``, ``type_error`` or ``value_error``."""


class ValidationError(ValueError):
    """Every problem found in one ``model_validate`` call: unknown keys first, then in the fields' order."""

    def __init__(self, errors: list[ErrorDetail]) -> None:
        self._errors = errors
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or "(table)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{where}: {first['msg']}{more}")

    def errors(self) -> list[ErrorDetail]:
        return list(self._errors)


class Model(BaseModel):
    """Base of every validated table (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False,
                              hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _toml_shapes(cls, data: Any) -> Any:
        """TOML arrays where tuples are declared, text where a ``Path`` is (strict mode takes neither)."""
        if not isinstance(data, Mapping):
            return data
        shapes = _shapes(cls)
        if not shapes:
            return data
        out = dict(data)
        for name, shape in shapes.items():
            value = out.get(name)
            if shape is tuple and isinstance(value, list):
                out[name] = tuple(value)
            elif shape is Path and isinstance(value, str) and value:
                out[name] = Path(value)
        return out

    @classmethod
    def model_validate(cls, obj: Any, *, strict: bool | None = None, extra: Any = None,
                       from_attributes: bool | None = None, context: Any | None = None,
                       by_alias: bool | None = None, by_name: bool | None = None) -> Self:
        """``obj`` (a parsed TOML table) as this model, or ``ValidationError`` listing every problem."""
        try:
            return super().model_validate(obj, strict=strict, extra=extra, from_attributes=from_attributes,
                                          context=context, by_alias=by_alias, by_name=by_name)
        except pydantic.ValidationError as exc:
            raise ValidationError(problems(exc, obj)) from None


_SHAPES: dict[type[BaseModel], dict[str, type]] = {}


def _shapes(cls: type[BaseModel]) -> dict[str, type]:
    """The fields of ``cls`` declared as a tuple (→ ``tuple``) or a path (→ ``Path``), also ``| None``."""
    found = _SHAPES.get(cls)
    if found is None:
        found = {}
        for name, info in cls.model_fields.items():
            hint = info.annotation
            if typing.get_origin(hint) in (typing.Union, types.UnionType):
                options = [a for a in typing.get_args(hint) if a is not type(None)]
                hint = options[0] if len(options) == 1 else None
            if typing.get_origin(hint) is tuple or hint is tuple:
                found[name] = tuple
            elif hint is Path:
                found[name] = Path
        _SHAPES[cls] = found
    return found


# -- pydantic's errors, in the configuration's words ----------------------------------------------------

_TYPE_NAMES = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "float_type": "a number", "float_parsing": "a number",
    "string_type": "a string", "path_type": "a path",
    "tuple_type": "an array", "list_type": "an array", "iterable_type": "an array",
    "dict_type": "a table", "model_type": "a table", "model_attributes_type": "a table", "dataclass_type": "a table",
}
_ABSENT = object()


def problems(exc: pydantic.ValidationError, data: object) -> list[ErrorDetail]:
    """pydantic's errors for ``data`` as ``ErrorDetail``s: plain words, the input never quoted when it is text."""
    details = [_detail(err, data) for err in exc.errors(include_url=False, include_input=False)]
    return sorted(details, key=lambda d: d["type"] != "extra_forbidden")  # unknown keys first (stable)


def _detail(err: Any, data: object) -> ErrorDetail:
    loc = tuple(err["loc"])
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    value = _at(data, loc)
    if kind == "missing":
        return {"loc": loc, "msg": "required key is missing", "type": "missing"}
    if kind == "extra_forbidden":
        return {"loc": loc, "msg": "unknown key", "type": "extra_forbidden"}
    if kind == "finite_number" or (kind == "float_type" and isinstance(value, int) and not isinstance(value, bool)):
        return _value(loc, f"must be a finite number (got {_num(value)})")
    if kind in _TYPE_NAMES:
        return {"loc": loc, "msg": f"must be {_TYPE_NAMES[kind]}, not {_describe(value)}", "type": "type_error"}
    if kind == "is_instance_of":
        name = str(ctx.get("class", "value of its type"))
        what = "a path" if name.endswith("Path") else f"a {name}"
        return {"loc": loc, "msg": f"must be {what}, not {_describe(value)}", "type": "type_error"}
    if kind == "literal_error":
        return _value(loc, f"must be {_choices(str(ctx.get('expected', '')))}"
                           + ("" if isinstance(value, str) or value is _ABSENT else f", not {_describe(value)}"))
    return _value(loc, _reason(kind, ctx, value, str(err["msg"])))


def _reason(kind: str, ctx: dict[str, Any], value: object, fallback: str) -> str:
    if kind == "greater_than_equal":
        return f"must be at least {_num(ctx['ge'])} (got {_num(value)})"
    if kind == "greater_than":
        return f"must be greater than {_num(ctx['gt'])} (got {_num(value)})"
    if kind == "less_than_equal":
        return f"must be at most {_num(ctx['le'])} (got {_num(value)})"
    if kind == "less_than":
        return f"must be less than {_num(ctx['lt'])} (got {_num(value)})"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']}"
    if kind in ("too_short", "string_too_short"):
        least = int(ctx.get("min_length", 1))
        if least == 1:
            return "must not be empty"
        return f"must have at least {least} {'characters' if kind == 'string_too_short' else 'items'}"
    if kind in ("too_long", "string_too_long"):
        return f"must have at most {ctx.get('max_length')} {'characters' if kind == 'string_too_long' else 'items'}"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])  # the model's own validator: its words, as written
    return fallback.removeprefix("Input ").replace("should", "must", 1)  # pydantic's words carry no input


def _value(loc: tuple[int | str, ...], msg: str) -> ErrorDetail:
    return {"loc": loc, "msg": msg, "type": "value_error"}


def _choices(expected: str) -> str:
    """pydantic's ``'a', 'b' or 'c'`` → ``one of 'a', 'b', 'c'`` (two stay ``'a' or 'b'``)."""
    if "," not in expected:
        return expected
    head, _, last = expected.rpartition(" or ")
    return f"one of {head}, {last}"


def _at(data: object, loc: tuple[int | str, ...]) -> object:
    """The input at ``loc`` (for describing its type), or ``_ABSENT``."""
    for part in loc:
        in_array = isinstance(data, list | tuple) and isinstance(part, int) and -len(data) <= part < len(data)
        if not (in_array or (isinstance(data, Mapping) and part in data)):
            return _ABSENT
        data = data[part]  # type: ignore[index]
    return data


def _num(value: object) -> str:
    """A number for an error message: short and never raising, whatever its size (10**5000, 1e308, nan)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _describe(value)
    if isinstance(value, int):
        if abs(value) >= 10**24:
            return f"a number of about {int(value.bit_length() * math.log10(2))} digits"
        return str(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


def _describe(value: object) -> str:
    """What a value is, without quoting text (it may be a secret)."""
    if value is _ABSENT:
        return "that"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {_num(value)}"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__
