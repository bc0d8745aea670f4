"""The training file is checked whole before anything loads: every bad line is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsdeploy.errors import DataError
from dsdeploy.finetune.data import read_conversations, split

FIXTURES = Path(__file__).parent / "fixtures" / "finetune"


def test_every_bad_line_is_reported_with_its_number_and_what_is_wrong() -> None:
    with pytest.raises(DataError) as caught:
        read_conversations(FIXTURES / "malformed.jsonl")
    message = str(caught.value)
    assert "4 bad line(s)" in message
    assert "line 2: not JSON" in message
    assert 'line 3: not an object with a non-empty "messages" list' in message
    assert "line 4: the last message is not the assistant's" in message
    assert "line 5: message 0 has role 'robot'" in message
    assert "line 1" not in message


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="holds no conversation"):
        read_conversations(empty)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such training file"):
        read_conversations(tmp_path / "absent.jsonl")


def test_the_shipped_set_reads_whole() -> None:
    chats = read_conversations(FIXTURES / "answer_format.jsonl")
    assert len(chats) == 76
    assert all(c[-1].content.startswith("ANSWER: ") for c in chats)


def test_the_split_is_seeded_and_keeps_one_of_each() -> None:
    chats = read_conversations(FIXTURES / "answer_format.jsonl")
    first = split(chats, 0.1, seed=3)
    assert first == split(chats, 0.1, seed=3)
    assert first != split(chats, 0.1, seed=4)
    train, validation = first
    assert len(validation) == 8 and len(train) == 68
    assert split(chats[:2], 0.5, seed=0)[1] != []
    with pytest.raises(DataError, match="at least 2"):
        split(chats[:1], 0.1, seed=0)
