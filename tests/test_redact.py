"""The redactor replaces personal data and validates numbers instead of matching shapes:
a resident ID needs its check digit and birth date, a card its Luhn sum, an address must
parse; names are found in Chinese and English text."""

from __future__ import annotations

import pytest

from dsdeploy.security.redact import Redactor, default_redactor, luhn_valid, resident_id_valid


@pytest.fixture(scope="module")
def redact() -> Redactor:
    return default_redactor()


def test_resident_ids_need_the_mod_11_2_check_digit_and_a_birth_date() -> None:
    assert resident_id_valid("11010519491231002X")
    assert not resident_id_valid("110105194912310021")  # wrong check digit
    assert not resident_id_valid("110105194913310028")  # month 13


def test_cards_need_the_luhn_sum() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("身份证号11010519491231002X。", "身份证号[ID]。"),
        ("订单110105194912310021已发货", "订单110105194912310021已发货"),
        ("call +86 139 1234 5678 now", "call [PHONE] now"),
        ("手机13912345678", "手机[PHONE]"),
        ("UK office +44 20 7946 0958.", "UK office [PHONE]."),
        ("mail li.na+x@corp.example.cn today", "mail [EMAIL] today"),
        ("card 4111-1111-1111-1111 ok", "card [CARD] ok"),
        ("card 4111 1111 1111 1112 declined", "card 4111 1111 1111 1112 declined"),
        ("from 203.0.113.7 and 2001:db8::1", "from [IP] and [IP]"),
        ("version 1.20.3 and 999.1.1.1", "version 1.20.3 and 999.1.1.1"),
        ("请转告王小明明天开会", "请转告[NAME]明天开会"),
        ("Ask Mary Walker or Dr. Okafor.", "Ask [NAME] or Dr. [NAME]."),
        ("The meeting is on Monday in Paris.", "The meeting is on Monday in Paris."),
    ],
)
def test_personal_data_is_replaced_and_look_alikes_are_kept(
    redact: Redactor, text: str, expected: str
) -> None:
    assert redact(text) == expected
