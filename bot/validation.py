"""Validated, frozen option tables: the configuration's models and the publisher plugins' options.

A model is a class deriving from ``Model`` with annotated fields; it becomes a frozen, keyword-only
dataclass. ``Model.model_validate(mapping)`` checks a parsed TOML table against it and returns an
instance, or raises ``ValidationError`` listing every problem with its location::

    class Feed(Model):
        name: str = Field(pattern=r"^[a-z]+$")
        every: Annotated[float, Before(parse_duration)] = 600.0
        kinds: tuple[Literal["rss", "json"], ...] = ("rss",)

        @field_validator("name")
        @classmethod
        def _lower(cls, value: str) -> str:
            return value.lower()

Types understood: ``str``, ``int`` (not ``bool``), ``float`` (an ``int`` is widened), ``bool``,
``Path`` (from a string), ``Literal[...]``, ``X | None``, ``tuple[X, ...]``, ``dict[str, X]`` /
``Mapping[str, X]``, ``Any``, nested ``Model`` classes, and ``Annotated[X, Before(fn) | Rules(...)]``.
Nothing is coerced silently: ``"5"`` is not an ``int``, ``1`` is not a ``bool``. Unknown keys are
errors (a misspelt key must not be ignored). Messages never repeat a string value: a token pasted
where a variable *name* belongs (``token_env = "123:AA…"``) must not reach the logs. Numbers and
booleans are shown.

Why not pydantic: the service keeps its models for its whole life, and pydantic with the
schemas of these models costs ~8 MiB of resident memory, a tenth of the service's budget
(docs/performance.md). The method names (``model_validate``, ``model_copy``, ``model_fields``,
``model_fields_set``, ``model_dump``) are pydantic's, for the subset used here.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypedDict, TypeVar, Union, dataclass_transform

M = TypeVar("M", bound="Model")
_MISSING: Any = dataclasses.MISSING


class ErrorDetail(TypedDict):
    loc: tuple[int | str, ...]
    """Where: field names and list indexes from the validated table down."""
    msg: str
    type: str
    """``missing``, ``extra_forbidden``, ``type_error`` or ``value_error``."""


class ValidationError(ValueError):
    """Every problem found in one ``model_validate`` call, in the table's order."""

    def __init__(self, errors: list[ErrorDetail]) -> None:
        self._errors = errors
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or "(table)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{where}: {first['msg']}{more}")

    def errors(self) -> list[ErrorDetail]:
        return list(self._errors)


@dataclasses.dataclass(frozen=True, slots=True)
class Rules:
    """Constraints on a value, checked after its type: ``Field(...)`` keywords, or ``Annotated`` metadata."""

    pattern: str | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    min_length: int | None = None

    def check(self, value: Any) -> str | None:
        """The problem with ``value``, or None."""
        if self.pattern is not None and isinstance(value, str) and not re.search(self.pattern, value):
            return f"must match {self.pattern}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.ge is not None and value < self.ge:
                return f"must be at least {_num(self.ge)} (got {_num(value)})"
            if self.gt is not None and value <= self.gt:
                return f"must be greater than {_num(self.gt)} (got {_num(value)})"
            if self.le is not None and value > self.le:
                return f"must be at most {_num(self.le)} (got {_num(value)})"
        if self.min_length is not None and isinstance(value, str | tuple) and len(value) < self.min_length:
            if self.min_length == 1:
                return "must not be empty"
            return f"must have at least {self.min_length} {'characters' if isinstance(value, str) else 'items'}"
        return None


def _num(value: float) -> str:
    """A number for an error message: short and never raising, whatever its size (10**5000, 1e308, nan)."""
    if isinstance(value, int):
        if abs(value) >= 10**24:
            return f"a number of about {int(value.bit_length() * math.log10(2))} digits"
        return str(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


@dataclasses.dataclass(frozen=True, slots=True)
class Before:
    """``Annotated`` metadata: ``fn`` turns the raw value into one of the annotated type first
    (``ValueError`` → a validation error with its message)."""

    fn: Callable[[Any], Any]


def Field(
    default: Any = _MISSING, *, default_factory: Callable[[], Any] | None = None, pattern: str | None = None,
    ge: float | None = None, gt: float | None = None, le: float | None = None, min_length: int | None = None,
) -> Any:
    """A field with constraints and/or a default."""
    rules = Rules(pattern=pattern, ge=ge, gt=gt, le=le, min_length=min_length)
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={"rules": rules})
    return dataclasses.field(default=default, metadata={"rules": rules})


@dataclasses.dataclass(frozen=True, slots=True)
class _FieldCheck:
    fields: tuple[str, ...]
    mode: Literal["before", "after"]
    method: Any  # the classmethod object


def field_validator(*fields: str, mode: Literal["before", "after"] = "after") -> Callable[[Any], Any]:
    """Decorate a classmethod ``(cls, value) -> value`` that checks or normalises these fields
    (``mode="before"``: on the raw value, before its type is checked). Raise ``ValueError`` to reject."""

    def mark(method: Any) -> _FieldCheck:
        return _FieldCheck(fields, mode, method)

    return mark


@dataclasses.dataclass(frozen=True, slots=True)
class _ModelCheck:
    method: Callable[[Any], Any]


def model_validator(*, mode: Literal["after"]) -> Callable[[Any], Any]:
    """Decorate a method ``(self) -> self`` run on the built instance (cross-field rules)."""

    def mark(method: Callable[[Any], Any]) -> _ModelCheck:
        return _ModelCheck(method)

    return mark


@dataclasses.dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    hint: Any
    rules: Rules | None
    required: bool


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(Field,))
class Model:
    """Base of every validated table (see the module docstring)."""

    model_fields: ClassVar[dict[str, dataclasses.Field[Any]]] = {}
    _specs: ClassVar[tuple[_Spec, ...] | None] = None
    _field_checks: ClassVar[tuple[_FieldCheck, ...]] = ()
    _model_checks: ClassVar[tuple[_ModelCheck, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        field_checks: dict[str, _FieldCheck] = {}
        model_checks: dict[str, _ModelCheck] = {}
        for klass in reversed(cls.__mro__):  # a subclass's validator replaces a base's of the same name
            for attr, value in list(vars(klass).items()):
                if isinstance(value, _FieldCheck):
                    field_checks[attr] = value
                elif isinstance(value, _ModelCheck):
                    model_checks[attr] = value
        dataclasses.dataclass(frozen=True, kw_only=True)(cls)
        cls._field_checks = tuple(field_checks.values())
        cls._model_checks = tuple(model_checks.values())
        cls.model_fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        cls._specs = None  # type hints are resolved on first use (the names must all be importable then)

    # -- the pydantic-named API ----------------------------------------------------------------

    @classmethod
    def model_validate(cls: type[M], data: object) -> M:
        errors: list[ErrorDetail] = []
        result = _validate_model(cls, data, (), errors)
        if errors:
            raise ValidationError(errors)
        return typing.cast(M, result)

    def model_copy(self: M, *, update: Mapping[str, Any] | None = None) -> M:
        """A copy with some fields replaced (not validated again, as in pydantic)."""
        changes = dict(update or {})
        copy = dataclasses.replace(self, **changes)  # type: ignore[type-var]
        object.__setattr__(copy, "_fields_set", self.model_fields_set | frozenset(changes))
        return copy

    def model_dump(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields}

    @property
    def model_fields_set(self) -> frozenset[str]:
        """The fields the validated table set explicitly (the others took their defaults)."""
        fields_set: frozenset[str] | None = self.__dict__.get("_fields_set")
        return frozenset(self.model_fields) if fields_set is None else fields_set


def _specs(cls: type[Model]) -> tuple[_Spec, ...]:
    specs = cls.__dict__.get("_specs")
    if specs is None:
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except NameError as exc:  # a plugin's model naming a type imported only under TYPE_CHECKING
            raise TypeError(f"{cls.__module__}.{cls.__qualname__}: cannot resolve a field's type ({exc}); "
                            "import the types its fields use at module level") from None
        specs = tuple(
            _Spec(f.name, hints[f.name], f.metadata.get("rules"),
                  f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        cls._specs = specs
    return specs


def _validate_model(cls: type[Model], data: object, loc: tuple[int | str, ...], errors: list[ErrorDetail]) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        errors.append({"loc": loc, "msg": f"must be a table, not {_describe(data)}", "type": "type_error"})
        return None
    specs = _specs(cls)
    known = {s.name for s in specs}
    before = len(errors)
    for key in data:
        if key not in known:
            errors.append({"loc": (*loc, str(key)), "msg": "unknown key", "type": "extra_forbidden"})
    values: dict[str, Any] = {}
    for spec in specs:
        where = (*loc, spec.name)
        if spec.name not in data:
            if spec.required:
                errors.append({"loc": where, "msg": "required key is missing", "type": "missing"})
            continue
        ok, value = _field(cls, spec, data[spec.name], where, errors)
        if ok:
            values[spec.name] = value
    if len(errors) > before:
        return None
    instance = cls(**values)
    object.__setattr__(instance, "_fields_set", frozenset(values))
    for check in cls._model_checks:
        try:
            instance = check.method(instance)
        except ValueError as exc:
            errors.append({"loc": loc, "msg": str(exc), "type": "value_error"})
            return None
    return instance


def _field(cls: type[Model], spec: _Spec, raw: Any, loc: tuple[int | str, ...],
           errors: list[ErrorDetail]) -> tuple[bool, Any]:
    checks = [c for c in cls._field_checks if spec.name in c.fields]
    try:
        value = _apply(cls, checks, "before", raw)
    except ValueError as exc:
        errors.append({"loc": loc, "msg": str(exc), "type": "value_error"})
        return False, None
    before = len(errors)
    value = _coerce(spec.hint, value, loc, errors)
    if len(errors) > before:
        return False, None
    problem = spec.rules.check(value) if spec.rules is not None and value is not None else None
    if problem is not None:
        errors.append({"loc": loc, "msg": problem, "type": "value_error"})
        return False, None
    try:
        value = _apply(cls, checks, "after", value)
    except ValueError as exc:
        errors.append({"loc": loc, "msg": str(exc), "type": "value_error"})
        return False, None
    return True, value


def _apply(cls: type[Model], checks: list[_FieldCheck], mode: str, value: Any) -> Any:
    """Run the field's ``mode`` ("before"/"after") validators in order, each on the last one's result."""
    for check in checks:
        if check.mode == mode:
            value = check.method.__get__(None, cls)(value)
    return value


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", Path: "a path"}


def _describe(value: object) -> str:
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


def _type_error(what: str, value: object, loc: tuple[int | str, ...], errors: list[ErrorDetail]) -> None:
    errors.append({"loc": loc, "msg": f"must be {what}, not {_describe(value)}", "type": "type_error"})


def _coerce(hint: Any, value: Any, loc: tuple[int | str, ...], errors: list[ErrorDetail]) -> Any:
    """``value`` as ``hint`` (appending to ``errors`` and returning None when it is not one)."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *meta = typing.get_args(hint)
        for item in meta:
            if isinstance(item, Before):
                try:
                    value = item.fn(value)
                except ValueError as exc:
                    errors.append({"loc": loc, "msg": str(exc), "type": "value_error"})
                    return None
        before = len(errors)
        value = _coerce(base, value, loc, errors)
        if len(errors) == before:
            for item in meta:
                problem = item.check(value) if isinstance(item, Rules) else None
                if problem is not None:
                    errors.append({"loc": loc, "msg": problem, "type": "value_error"})
                    return None
        return value
    if hint is Any or hint is object:
        return value
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        if len(options) != 1:
            raise TypeError(f"unsupported union {hint!r}")  # a programming error in a model, not bad input
        return _coerce(options[0], value, loc, errors)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if isinstance(value, bool) or value not in allowed:
            choices = " or ".join(repr(a) for a in allowed) if len(allowed) <= 2 else \
                "one of " + ", ".join(repr(a) for a in allowed)
            got = "" if isinstance(value, str) else f", not {_describe(value)}"
            errors.append({"loc": loc, "msg": f"must be {choices}{got}", "type": "value_error"})
            return None
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"unsupported tuple type {hint!r} (use tuple[X, ...])")
        if not isinstance(value, list | tuple):
            _type_error("an array", value, loc, errors)
            return None
        return tuple(_coerce(args[0], item, (*loc, i), errors) for i, item in enumerate(value))
    if origin in (dict, Mapping):
        key_type, value_type = typing.get_args(hint) or (str, Any)
        if not isinstance(value, Mapping):
            _type_error("a table", value, loc, errors)
            return None
        out = {}
        for key, item in value.items():
            if key_type is str and not isinstance(key, str):
                _type_error("a string key", key, (*loc, str(key)), errors)
                continue
            out[key] = _coerce(value_type, item, (*loc, key), errors)
        return out
    if isinstance(hint, type) and issubclass(hint, Model):
        return _validate_model(hint, value, loc, errors)
    if hint is bool:
        if not isinstance(value, bool):
            _type_error(_NAMES[bool], value, loc, errors)
            return None
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _type_error(_NAMES[int], value, loc, errors)
            return None
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _type_error(_NAMES[float], value, loc, errors)
            return None
        number = float(value) if isinstance(value, float) or abs(value) < 2**1000 else math.inf
        if not math.isfinite(number):
            errors.append({"loc": loc, "msg": f"must be a finite number (got {_num(value)})", "type": "value_error"})
            return None
        return number
    if hint is str:
        if not isinstance(value, str):
            _type_error(_NAMES[str], value, loc, errors)
            return None
        return value
    if hint is Path:
        if isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value:
            _type_error(_NAMES[Path], value, loc, errors)
            return None
        return Path(value)
    if isinstance(hint, type):  # any other class (e.g. a plugin's own value type): instances only
        if not isinstance(value, hint):
            _type_error(f"a {hint.__name__}", value, loc, errors)
            return None
        return value
    raise TypeError(f"unsupported field type {hint!r}")
