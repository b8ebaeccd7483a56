"""The API's parameter readers: each rejection names the parameter; page sizes are capped."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from app.web.params import (
    ParamError,
    bool_param,
    check_known,
    choice_param,
    int_param,
    limit_param,
    list_param,
    parse_time,
    tag_params,
    text_param,
    time_param,
)

NOW = 1_700_000_000_000


def q(*pairs: tuple[str, str]) -> MultiDict[str]:
    return MultiDict(pairs)


def test_parse_time__every_documented_form() -> None:
    assert parse_time("now", now_ms=NOW) == NOW
    assert parse_time("1714731300000", now_ms=NOW) == 1714731300000
    assert parse_time("15m", now_ms=NOW) == NOW - 900_000
    assert parse_time("-2h", now_ms=NOW) == NOW - 7_200_000
    assert parse_time("2024-05-03T10:15:00Z", now_ms=NOW) == 1714731300000
    assert parse_time("2024-05-03T10:15:00", now_ms=NOW) == 1714731300000  # no zone: UTC
    assert parse_time("2024-05-03T12:15:00+02:00", now_ms=NOW) == 1714731300000


@pytest.mark.parametrize("text", ["yesterday", "", "2024-13-45", "5 parsecs", "12 o clock"])
def test_parse_time__refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text, now_ms=NOW)


def test_time_param__names_the_parameter() -> None:
    with pytest.raises(ParamError) as err:
        time_param(q(("since", "soon")), "since", default=0, now_ms=NOW)
    assert err.value.parameter == "since"
    assert "not a time" in str(err.value)


def test_limit_param__caps_instead_of_refusing() -> None:
    assert limit_param(q(("limit", "1000000")), default=100, cap=1000) == 1000
    assert limit_param(q(), default=100, cap=1000) == 100
    for bad in ("0", "-5", "many"):
        with pytest.raises(ParamError, match="limit"):
            limit_param(q(("limit", bad)), default=100, cap=1000)


def test_int_param__bounds() -> None:
    assert int_param(q(("offset", "5")), "offset", 0, minimum=0) == 5
    with pytest.raises(ParamError, match="at least 0"):
        int_param(q(("offset", "-1")), "offset", 0, minimum=0)
    with pytest.raises(ParamError, match="at most 10"):
        int_param(q(("offset", "11")), "offset", 0, maximum=10)


def test_list_param__repeated_and_comma_separated() -> None:
    assert list_param(q(("state", "CRITICAL,WARNING"), ("state", "OK")), "state") == ["CRITICAL", "WARNING", "OK"]
    with pytest.raises(ParamError):
        list_param(q(*[("state", "OK")] * 51), "state")


def test_tag_params__key_equals_glob() -> None:
    assert tag_params(q(("tag", "role=db"), ("tag", "env=prod*"))) == {"role": "db", "env": "prod*"}
    with pytest.raises(ParamError, match="KEY=GLOB"):
        tag_params(q(("tag", "role")))


def test_text_bool_and_choice_params() -> None:
    assert text_param(q(("subject", "")), "subject", "*") == "*"
    with pytest.raises(ParamError, match="longer"):
        text_param(q(("subject", "x" * 2000)), "subject")
    with pytest.raises(ParamError, match="NUL"):
        text_param(q(("subject", "a\x00b")), "subject")
    assert bool_param(q(("all", "yes")), "all") is True
    with pytest.raises(ParamError, match="true or false"):
        bool_param(q(("all", "maybe")), "all")
    assert choice_param(q(("source", "workers")), "source", ("index", "workers")) == "workers"
    with pytest.raises(ParamError, match="use one of"):
        choice_param(q(("source", "disk")), "source", ("index", "workers"))


def test_check_known__a_typo_is_refused() -> None:
    check_known(q(("state", "OK")), ("state",))
    with pytest.raises(ParamError) as err:
        check_known(q(("stat", "OK")), ("state", "subject"))
    assert err.value.parameter == "stat"
