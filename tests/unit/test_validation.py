"""bot.validation: the models behind the configuration and every plugin's channel options (pydantic v2,
with the configuration's rules and messages)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BeforeValidator

from bot.config_bounds import Span, between
from bot.settings import Config, parse_duration
from bot.validation import Field, Model, ValidationError, field_validator, model_validator


class Inner(Model):
    level: int = Field(default=1, ge=1, le=9)


class Sample(Model):
    name: str = Field(pattern=r"^[a-z]+$")
    count: int = Field(default=3, ge=0, le=10)
    ratio: float = Field(default=0.5, gt=0)
    every: Annotated[float, BeforeValidator(parse_duration)] = 60.0
    kinds: tuple[Literal["rss", "json"], ...] = ("rss",)
    limits: dict[str, str] = Field(default_factory=dict)
    inner: Inner = Inner()
    inners: tuple[Inner, ...] = ()
    path: Path | None = None
    note: str | None = None
    enabled: bool = True
    ids: tuple[Annotated[int, Field(gt=0)], ...] = ()
    tags: tuple[str, ...] = Field(default=("a",), min_length=1)


def errors_of(data: dict[str, Any], model: type[Model] = Sample) -> list[tuple[tuple[int | str, ...], str, str]]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return [(e["loc"], e["type"], e["msg"]) for e in info.value.errors()]


def test_a_valid_table_becomes_a_frozen_instance_with_defaults_and_conversions() -> None:
    s = Sample.model_validate({"name": "feed", "ratio": 2, "every": "1h30m", "kinds": ["json", "rss"],
                               "inner": {"level": 4}, "inners": [{}, {"level": 9}], "path": "data/x.db",
                               "ids": [5, 6]})
    assert s.ratio == 2.0 and isinstance(s.ratio, float)  # an int is widened to float
    assert s.every == 5400.0
    assert s.kinds == ("json", "rss") and isinstance(s.kinds, tuple)
    assert s.inner == Inner(level=4) and s.inners == (Inner(level=1), Inner(level=9))
    assert s.path == Path("data/x.db") and s.note is None and s.count == 3 and s.ids == (5, 6)
    assert s.model_fields_set == {"name", "ratio", "every", "kinds", "inner", "inners", "path", "ids"}
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        s.name = "other"  # type: ignore[misc]


def test_unknown_and_missing_keys_are_named() -> None:
    assert errors_of({"nmae": "x"}) == [
        (("nmae",), "extra_forbidden", "unknown key"),
        (("name",), "missing", "required key is missing"),
    ]


@pytest.mark.parametrize(("data", "loc", "msg"), [
    ({"count": "5"}, ("count",), "must be an integer, not a string"),
    ({"count": True}, ("count",), "must be an integer, not the boolean true"),
    ({"enabled": 1}, ("enabled",), "must be true or false, not the number 1"),
    ({"ratio": "fast"}, ("ratio",), "must be a number, not a string"),
    ({"note": 7}, ("note",), "must be a string, not the number 7"),
    ({"kinds": "rss"}, ("kinds",), "must be an array, not a string"),
    ({"kinds": ["rss", "atom"]}, ("kinds", 1), "must be 'rss' or 'json'"),
    ({"limits": {"x": 5}}, ("limits", "x"), "must be a string, not the number 5"),
    ({"inner": {"level": 0}}, ("inner", "level"), "must be at least 1 (got 0)"),
    ({"inner": {"levels": 2}}, ("inner", "levels"), "unknown key"),
    ({"inner": 3}, ("inner",), "must be a table, not the number 3"),
    ({"inners": [{}, {"level": 10}]}, ("inners", 1, "level"), "must be at most 9 (got 10)"),
    ({"count": 11}, ("count",), "must be at most 10 (got 11)"),
    ({"ratio": 0}, ("ratio",), "must be greater than 0 (got 0)"),
    ({"every": "soon"}, ("every",), "'soon' is not a duration (use e.g. '30s', '10m', '1h30m')"),
    ({"every": -5}, ("every",), "must be longer than zero"),
    ({"ids": [3, 0]}, ("ids", 1), "must be greater than 0 (got 0)"),
    ({"tags": []}, ("tags",), "must not be empty"),
    ({"path": ""}, ("path",), "must be a path, not an empty string"),
])
def test_each_bad_value_is_one_error_at_its_place(data: dict[str, Any], loc: tuple[Any, ...], msg: str) -> None:
    assert [(where, why) for where, _, why in errors_of({"name": "ok", **data})] == [(loc, msg)]


def test_errors_say_whether_the_type_or_the_value_is_wrong() -> None:
    assert [kind for _, kind, _ in errors_of({"name": "ok", "count": "5"})] == ["type_error"]
    assert [kind for _, kind, _ in errors_of({"name": "ok", "count": 50})] == ["value_error"]


def test_a_pattern_mismatch_shows_the_value_and_the_pattern() -> None:
    assert errors_of({"name": "Feed 1"}) == [(("name",), "value_error", "must match ^[a-z]+$")]


def test_no_message_repeats_a_string_value() -> None:
    """A bot token pasted where an environment variable's NAME belongs must not reach the logs."""
    token = "123456789:AAE-secret-token-value"

    class Channel(Model):
        token_env: str = Field(default="TG_BOT_TOKEN", pattern=r"^[A-Z_][A-Z0-9_]*$")
        port: int = 0
        mode: Literal["polling", "webhook"] = "polling"
        extra: tuple[str, ...] = ()

    for data in ({"token_env": token}, {"port": token}, {"mode": token}, {"extra": token}):
        with pytest.raises(ValidationError) as info:
            Channel.model_validate(data)
        assert token not in str(info.value) and all(token not in e["msg"] for e in info.value.errors())


def test_every_problem_is_reported_in_table_order() -> None:
    found = errors_of({"name": "ok", "count": -1, "bogus": 1, "enabled": "yes"})
    assert [loc for loc, _, _ in found] == [("bogus",), ("count",), ("enabled",)]
    with pytest.raises(ValidationError, match=r"^bogus: unknown key \(and 2 more\)$"):
        Sample.model_validate({"name": "ok", "count": -1, "bogus": 1, "enabled": "yes"})


def test_a_table_is_required() -> None:
    assert errors_of([1, 2]) == [((), "type_error", "must be a table, not an array")]  # type: ignore[arg-type]


class Base(Model):
    url: str
    chat: str = "@main"

    @field_validator("url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("chat", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Child(Base):
    other: str | None = None

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL")
        return value

    @model_validator(mode="after")
    def _not_both(self) -> Child:
        if self.other is not None and "chat" in self.model_fields_set:
            raise ValueError("set chat or other, not both")
        return self


def test_validators_run_before_and_after_the_type_check_and_are_inherited() -> None:
    c = Child.model_validate({"url": "https://a.example/", "chat": -100123})
    assert c.url == "https://a.example" and c.chat == "-100123"
    assert errors_of({"url": "http://a.example"}, Child) == [(("url",), "value_error", "must be an https:// URL")]
    assert errors_of({"url": "https://a", "chat": 1, "other": "x"}, Child) == [
        ((), "value_error", "set chat or other, not both")]
    assert Child.model_validate({"url": "https://a", "other": "x"}).other == "x"  # chat defaulted: allowed


def test_copy_and_dump_keep_what_was_set() -> None:
    c = Child.model_validate({"url": "https://a"})
    moved = c.model_copy(update={"chat": "-100999"})
    assert moved.chat == "-100999" and c.chat == "@main"
    assert moved.model_fields_set == {"url", "chat"}
    assert moved.model_dump() == {"url": "https://a", "chat": "-100999", "other": None}
    assert list(Child.model_fields) == ["url", "chat", "other"]


def test_the_whole_config_model_validates_a_real_table() -> None:
    cfg = Config.model_validate({"http": {"timeout": "30s"}, "sources": [{"name": "a", "url": "https://a/feed"}],
                                 "subscriptions": [{"tag": "MEK", "channels": ["tg"]}]})
    assert cfg.http.timeout == 30.0 and cfg.sources[0].interval == 600.0
    assert cfg.subscriptions[0].channels == ("tg",)


@given(value=st.integers(-1000, 1000), low=st.integers(-100, 100), span=st.integers(0, 200))
def test_bounds_accept_exactly_the_closed_interval(value: int, low: int, span: int) -> None:
    closed = pydantic.create_model("Closed", __base__=Model, n=(Annotated[int, between(Span(low, low + span))], 0))
    above = pydantic.create_model("Above", __base__=Model, n=(Annotated[int, Field(gt=low)], low + 1))
    for model, inside in ((closed, low <= value <= low + span), (above, value > low)):
        if inside:
            assert model.model_validate({"n": value}).n == value  # type: ignore[attr-defined]
        else:
            with pytest.raises(ValidationError) as info:
                model.model_validate({"n": value})
            assert info.value.errors()[0]["type"] == "value_error"


@given(st.one_of(st.booleans(), st.floats(allow_nan=False), st.text(max_size=5), st.none(),
                 st.lists(st.integers(), max_size=2)))
def test_only_true_integers_pass_as_integers(value: object) -> None:
    class Counted(Model):
        n: int

    with pytest.raises(ValidationError):
        Counted.model_validate({"n": value})
