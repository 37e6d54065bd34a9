"""server/validation.py: each kind of field, normalisation, and properties over any input."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import FormData

from server.accounts import ROLE_LABELS
from server.areas import LEVELS
from server.i18n import gettext as _
from server.validation import Field, Schema, ValidationError, clean_field, holds_nul

NAME = Field("name", "user.display_name", required=True, max_length=10)
NOTE = Field("note", "problem.description", max_length=50, multiline=True)
CODE = Field("code", "area.code", max_length=20, pattern=r"[0-9A-Za-z_-]+")
DAYS = Field(
    "days", "category.time_limit_days", kind="int", required=True, min_value=1, max_value=365
)
OPTIONAL_INT = Field("count", "category.time_limit_days", kind="int")
FLAG = Field("active", "common.active", kind="bool")
LEVEL = Field("level", "area.level", kind="choice", required=True, choices=LEVELS)
ROLES = Field("roles", "user.roles", kind="choices", required=True, choices=ROLE_LABELS)
OPTIONAL_ROLES = Field("roles", "user.roles", kind="choices", choices=ROLE_LABELS)
PHONE = Field("phone", "user.phone", kind="phone")
PASSWORD = Field(
    "password", "user.password", kind="password", required=True, min_length=8, max_length=128
)


def message_of(field: Field, value) -> str:
    with pytest.raises(ValueError) as raised:
        clean_field(field, value)
    return str(raised.value)


# text ---------------------------------------------------------------------


def test_text_is_stripped():
    assert clean_field(NAME, "  张三 ") == "张三"


def test_text_whitespace_runs_fold_to_one_space():
    assert clean_field(NAME, "张\t\n  三\u3000丰") == "张 三 丰"


def test_text_is_nfc_normalised():
    decomposed = "Jose\u0301"
    assert clean_field(NAME, decomposed) == "Jos\u00e9"
    assert unicodedata.is_normalized("NFC", clean_field(NAME, decomposed))


def test_multiline_text_keeps_newlines_but_strips_ends():
    assert clean_field(NOTE, "  第一行\n第二行\r\n\t第三行  ") == "第一行\n第二行\r\n\t第三行"


def test_text_required_missing():
    label = _("user.display_name")
    for empty in (None, "", "   ", "\u3000"):
        assert message_of(NAME, empty) == _("validation.required", label=label)


def test_optional_text_missing_is_empty_string():
    assert clean_field(NOTE, None) == ""
    assert clean_field(CODE, "  ") == ""


def test_text_too_long():
    assert clean_field(NAME, "张" * 10) == "张" * 10
    assert message_of(NAME, "张" * 11) == _(
        "validation.too_long", label=_("user.display_name"), max=10
    )


def test_length_is_counted_after_folding_whitespace():
    assert clean_field(NAME, "张    三    丰    四") == "张 三 丰 四"


def test_text_pattern():
    assert clean_field(CODE, "370102_a-1") == "370102_a-1"
    for bad in ("3701 02", "东城", "a/b"):
        assert message_of(CODE, bad) == _("validation.pattern", label=_("area.code"))


@pytest.mark.parametrize("bad", ["a\x07b", "a\x1bb", "a\x7fb", "a\x08b"])
def test_control_characters_are_refused(bad):
    assert message_of(NAME, bad) == _("validation.control_chars", label=_("user.display_name"))


@pytest.mark.parametrize("bad", ["a\x0bb", "a\x0cb"])
def test_control_characters_are_refused_in_multiline_text(bad):
    assert message_of(NOTE, bad) == _("validation.control_chars", label=_("problem.description"))


@pytest.mark.parametrize("field", [NAME, NOTE, PASSWORD, CODE])
@pytest.mark.parametrize("bad", ["a\x00b", "\x00", "  \x00  "])
def test_nul_is_refused_with_its_own_message_in_every_kind_of_text(field, bad):
    assert message_of(field, bad) == _("validation.nul", label=field.label_text())


def test_nul_is_refused_in_choices_flags_and_numbers():
    for field, value in [(ROLES, ["field", "field\x00"]), (ROLES, "field\x00"),
                         (FLAG, "1\x00"), (DAYS, "3\x00"), (LEVEL, "3\x00"), (PHONE, "1\x00")]:
        assert message_of(field, value) == _("validation.nul", label=field.label_text())


def test_holds_nul_looks_into_texts_and_lists_of_texts():
    assert holds_nul("a\x00") and holds_nul(["a", "\x00"])
    assert not holds_nul("a") and not holds_nul(["a"]) and not holds_nul(None)
    assert not holds_nul(0) and not holds_nul(["a", 1])


def test_c1_control_characters_are_refused():
    for bad in ("a\x80b", "a\x9bb", "a\x9fb"):
        assert message_of(NAME, bad) == _("validation.control_chars", label=_("user.display_name"))


def test_non_string_values_become_text():
    assert clean_field(NAME, 12345) == "12345"


# int ----------------------------------------------------------------------


def test_int_is_parsed():
    assert clean_field(DAYS, " 15 ") == 15
    assert clean_field(DAYS, 15) == 15


def test_int_bounds_are_inclusive():
    assert clean_field(DAYS, "1") == 1
    assert clean_field(DAYS, "365") == 365


@pytest.mark.parametrize("value", ["0", "366", "-1", "999999999999"])
def test_int_out_of_range(value):
    assert message_of(DAYS, value) == _(
        "validation.range", label=_("category.time_limit_days"), min=1, max=365
    )


@pytest.mark.parametrize("value", ["abc", "1.5", "1e3", "0x10", "1 000", "9999999999999", "--1"])
def test_int_not_an_integer(value):
    assert message_of(DAYS, value) == _("validation.integer", label=_("category.time_limit_days"))


def test_int_required_and_optional_missing():
    assert message_of(DAYS, "") == _("validation.required", label=_("category.time_limit_days"))
    assert clean_field(OPTIONAL_INT, "") is None


def test_int_without_bounds_accepts_negative():
    assert clean_field(OPTIONAL_INT, "-7") == -7


# bool ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "on", "yes", "是", " on "])
def test_bool_true(value):
    assert clean_field(FLAG, value) is True


@pytest.mark.parametrize("value", [None, "", "0", "false", "off", "no", "否", "2"])
def test_bool_false(value):
    assert clean_field(FLAG, value) is False


# choice -------------------------------------------------------------------


def test_choice_accepts_code_or_label():
    assert clean_field(LEVEL, "2") == "2"
    assert clean_field(LEVEL, _("area.level_2")) == "2"
    assert clean_field(LEVEL, " 网格 ") == "5"


def test_choice_unknown():
    assert message_of(LEVEL, "6") == _("validation.choice", label=_("area.level"), value="6")


def test_choice_unknown_value_is_cut_short_in_message():
    message = message_of(LEVEL, "x" * 100)
    assert "x" * 40 in message and "x" * 41 not in message


def test_choice_required():
    assert message_of(LEVEL, "") == _("validation.required", label=_("area.level"))


# choices ------------------------------------------------------------------


def test_choices_from_list():
    assert clean_field(ROLES, ["field", "office"]) == ["field", "office"]


def test_choices_accepts_labels_with_chinese_separators():
    assert clean_field(ROLES, "走访干部、台账管理员") == ["field", "office"]
    assert clean_field(ROLES, "走访干部，领导;admin") == ["field", "leader", "admin"]


def test_choices_drops_repeats_and_blanks():
    assert clean_field(ROLES, ["field", " ", "走访干部", "field"]) == ["field"]


def test_choices_unknown():
    assert message_of(ROLES, ["field", "root"]) == _(
        "validation.choice", label=_("user.roles"), value="root"
    )


def test_choices_required_and_optional():
    assert message_of(ROLES, []) == _("validation.required", label=_("user.roles"))
    assert message_of(ROLES, "、 ,") == _("validation.required", label=_("user.roles"))
    assert clean_field(OPTIONAL_ROLES, None) == []


def test_choices_read_every_value_of_a_form():
    form = FormData([("roles", "field"), ("roles", "handler")])
    assert Schema(ROLES).clean(form) == {"roles": ["field", "handler"]}
    assert Schema(ROLES).clean(FormData([("roles", "office")])) == {"roles": ["office"]}


# phone --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["13800000000", "0531-1234567", "+86 138 0000 0000", "(0531)1234567"]
)
def test_phone_valid(value):
    assert clean_field(PHONE, value) == value


@pytest.mark.parametrize("value", ["1234", "电话13800000000", "138.0000.0000", "1" * 21, "call me"])
def test_phone_invalid(value):
    assert message_of(PHONE, value) == _("validation.phone", label=_("user.phone"))


def test_phone_optional():
    assert clean_field(PHONE, "") == ""


# password -----------------------------------------------------------------


def test_password_is_kept_exactly():
    assert clean_field(PASSWORD, "  pass word  ") == "  pass word  "
    assert clean_field(PASSWORD, "Jose\u0301-123") == "Jose\u0301-123"


def test_password_too_short_and_too_long():
    label = _("user.password")
    assert message_of(PASSWORD, "1234567") == _("validation.too_short", label=label, min=8)
    assert message_of(PASSWORD, "x" * 129) == _("validation.too_long", label=label, max=128)


def test_password_required_and_control_characters():
    label = _("user.password")
    assert message_of(PASSWORD, None) == _("validation.required", label=label)
    assert message_of(PASSWORD, "password\x01") == _("validation.control_chars", label=label)
    assert message_of(PASSWORD, "password\x00") == _("validation.nul", label=label)


# Schema -------------------------------------------------------------------


def test_schema_cleans_every_field():
    schema = Schema(NAME, DAYS, FLAG, ROLES)
    data = schema.clean({"name": " 张三 ", "days": "3", "active": "on", "roles": "领导"})
    assert data == {"name": "张三", "days": 3, "active": True, "roles": ["leader"]}


def test_schema_reports_every_invalid_field_at_once():
    schema = Schema(NAME, DAYS, FLAG, ROLES, PHONE)
    with pytest.raises(ValidationError) as raised:
        schema.clean({"name": "", "days": "0", "roles": "x", "phone": "abc"})
    assert set(raised.value.errors) == {"name", "days", "roles", "phone"}
    assert raised.value.errors["days"] == _(
        "validation.range", label=_("category.time_limit_days"), min=1, max=365
    )
    assert "name" in str(raised.value)


def test_schema_only_cleans_named_fields():
    schema = Schema(NAME, DAYS)
    assert schema.clean({"days": "4"}, only={"days"}) == {"days": 4}


def test_schema_ignores_unknown_keys():
    assert Schema(NAME).clean({"name": "张三", "is_admin": "1"}) == {"name": "张三"}


# Properties ---------------------------------------------------------------

TEXT_FIELDS = [
    NAME,
    NOTE,
    CODE,
    PHONE,
    Field(
        "x",
        "user.username",
        required=True,
        min_length=3,
        max_length=32,
        pattern=r"[A-Za-z0-9_.\-]+",
    ),
]
ALL_FIELDS = [*TEXT_FIELDS, DAYS, OPTIONAL_INT, FLAG, LEVEL, ROLES, PASSWORD]
# Everything a person might paste, with extra weight on the awkward characters.
AWKWARD = st.sampled_from(
    list(
        "\x00\x07\x0b\x0c\x1b\x1f\x7f\x80\x85\x9f\t\n\r \u3000\u00a0"
        "\u2028\u200b\ufeff\u0301e1-、,，走访干部网格０١²"
    )
)
INPUT = st.text(st.one_of(st.characters(), AWKWARD), max_size=60) | st.sampled_from(
    ["", " ", "0", "1", "365", "366", "-1", "１５", "走访干部、领导"]
)


def is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


def is_chinese_message(message: str) -> bool:
    return bool(message) and re.search(r"[\u4e00-\u9fff]", message) is not None


def check_clean_value(field: Field, value) -> None:
    if field.kind == "bool":
        assert isinstance(value, bool)
    elif field.kind == "choices":
        assert isinstance(value, list)
        assert all(code in field.choices for code in value)
        assert len(set(value)) == len(value)
        assert value or not field.required
    elif field.kind == "int":
        if value is None:
            assert not field.required
            return
        assert isinstance(value, int)
        if field.min_value is not None:
            assert value >= field.min_value
        if field.max_value is not None:
            assert value <= field.max_value
    elif field.kind == "choice":
        assert value is None and not field.required or value in field.choices
    else:
        assert isinstance(value, str)
        assert len(value) <= field.max_length
        allowed = "\t\n\r" if field.multiline or field.kind == "password" else ""
        assert not [c for c in value if is_control(c) and c not in allowed], repr(value)
        if not value:
            assert not field.required
            return
        assert len(value) >= field.min_length
        if field.kind != "password":
            assert value == value.strip()
            assert unicodedata.is_normalized("NFC", value)
            if not field.multiline:
                assert value == " ".join(value.split())
        if field.pattern:
            assert re.fullmatch(field.pattern, value)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(ALL_FIELDS), raw=INPUT)
def test_clean_field_returns_a_valid_value_or_a_chinese_message(field, raw):
    try:
        value = clean_field(field, raw)
    except ValueError as error:
        assert type(error) is ValueError
        assert is_chinese_message(str(error)), repr(str(error))
        return
    check_clean_value(field, value)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(TEXT_FIELDS + [DAYS, LEVEL]), raw=INPUT)
def test_cleaning_a_clean_value_changes_nothing(field, raw):
    try:
        value = clean_field(field, raw)
    except ValueError:
        return
    if value is not None:
        assert clean_field(field, str(value)) == value


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(raw=st.lists(INPUT, max_size=6))
def test_clean_field_on_a_list_of_choices_never_crashes(raw):
    try:
        value = clean_field(ROLES, raw)
    except ValueError as error:
        assert is_chinese_message(str(error))
        return
    check_clean_value(ROLES, value)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(values=st.fixed_dictionaries({field.name: INPUT for field in ALL_FIELDS}))
def test_schema_reports_exactly_the_fields_that_fail_alone(values):
    schema = Schema(*ALL_FIELDS)
    failing = set()
    for field in schema.fields:
        try:
            clean_field(field, values.get(field.name))
        except ValueError:
            failing.add(field.name)
    if failing:
        with pytest.raises(ValidationError) as raised:
            schema.clean(values)
        assert set(raised.value.errors) == failing
        assert all(is_chinese_message(m) for m in raised.value.errors.values())
    else:
        assert set(schema.clean(values)) == set(schema.by_name)
