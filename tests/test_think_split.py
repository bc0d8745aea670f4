"""However a model's text is cut into stream chunks, the reasoning and the answer that come
out, joined, are exactly those of the whole text, and nothing is held back but what could
still be a tag."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsdeploy.gateway.think import CLOSE, OPEN, ThinkSplitter, split_text

R1 = "<think>\nLet me add 2 and 3.\n</think>\n\nThe answer is 5."
R1_OPENED_IN_PROMPT = "Let me add 2 and 3.\n</think>\n\nThe answer is 5."
CUT_OFF = "<think>\nLet me add 2 and 3. First, 2 is"
CUT_OFF_OPENED_IN_PROMPT = "Let me add 2 and 3. First, 2 is </thi"
NO_THINK = "The answer is 5."
UNICODE = "<think>\n先算 2+3。🙂\n</think>\n\n答案是 5。"
SAMPLES = [R1, R1_OPENED_IN_PROMPT, CUT_OFF, CUT_OFF_OPENED_IN_PROMPT, NO_THINK, UNICODE]


def expected(text: str, open_at_start: bool) -> tuple[str, str]:
    """What the whole text means, worked out without the splitter."""
    stripped = text.lstrip()
    if stripped.startswith(OPEN):
        body = stripped[len(OPEN) :]
    elif open_at_start:
        body = stripped
    else:
        return "", stripped
    reasoning, found, answer = body.partition(CLOSE)
    return (reasoning.lstrip(), answer.lstrip()) if found else (body.lstrip(), "")


def streamed(chunks: list[str], open_at_start: bool) -> tuple[str, str]:
    splitter = ThinkSplitter(open_at_start)
    reasoning = answer = ""
    for chunk in [*chunks, None]:
        cut, text = splitter.finish() if chunk is None else splitter.feed(chunk)
        reasoning, answer = reasoning + cut, answer + text
    return reasoning, answer


def cut_at(text: str, points: list[int]) -> list[str]:
    edges = [0, *sorted(points), len(text)]
    return [text[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def test_the_samples_mean_what_r1_means() -> None:
    reasoning, answer = "Let me add 2 and 3.\n", "The answer is 5."
    assert split_text(R1, open_at_start=True) == (reasoning, answer)
    assert split_text(R1_OPENED_IN_PROMPT, open_at_start=True) == (reasoning, answer)
    assert split_text(CUT_OFF, True) == ("Let me add 2 and 3. First, 2 is", "")
    assert split_text(CUT_OFF_OPENED_IN_PROMPT, True) == (CUT_OFF_OPENED_IN_PROMPT, "")
    assert split_text(NO_THINK, open_at_start=False) == ("", NO_THINK)
    assert split_text(NO_THINK, open_at_start=True) == (NO_THINK, "")  # cut off, or no block
    assert split_text(" <think>a</think> b<think>c</think>", False) == ("a", "b<think>c</think>")


@pytest.mark.parametrize("open_at_start", [True, False])
@pytest.mark.parametrize("text", SAMPLES)
def test_every_single_and_double_cut_gives_the_whole_texts_meaning(
    text: str, open_at_start: bool
) -> None:
    want = expected(text, open_at_start)
    for first in range(len(text) + 1):
        assert streamed(cut_at(text, [first]), open_at_start) == want, first
        for second in range(first, len(text) + 1):
            assert streamed(cut_at(text, [first, second]), open_at_start) == want


@pytest.mark.parametrize("open_at_start", [True, False])
@pytest.mark.parametrize("text", SAMPLES)
def test_one_character_at_a_time_gives_the_whole_texts_meaning(
    text: str, open_at_start: bool
) -> None:
    assert streamed(list(text), open_at_start) == expected(text, open_at_start)


PIECES = st.sampled_from(
    ["<", "/", "think", ">", OPEN, CLOSE, "<thi", "</th", "nk>", "a", "5", " ", "\n", "思"]
)
TEXTS = st.lists(PIECES, max_size=24).map("".join)


@given(text=TEXTS | st.sampled_from(SAMPLES), data=st.data(), open_at_start=st.booleans())
def test_any_chunking_of_any_text_gives_the_whole_texts_meaning(
    text: str, data: st.DataObject, open_at_start: bool
) -> None:
    points = data.draw(st.lists(st.integers(0, len(text)), max_size=12))
    assert streamed(cut_at(text, points), open_at_start) == expected(text, open_at_start)


@given(text=TEXTS | st.sampled_from(SAMPLES), open_at_start=st.booleans())
def test_only_a_possible_tag_is_held_back(text: str, open_at_start: bool) -> None:
    """After each character, what has not come out is the start of a tag: ``</think>``'s,
    or at the very start whitespace and ``<think>``'s, never more."""
    splitter = ThinkSplitter(open_at_start)
    shown = 0
    for end in range(1, len(text) + 1):
        cut, answer = splitter.feed(text[end - 1])
        shown += len(cut) + len(answer)
        seen = text[:end]
        held = sum(map(len, split_text(seen, open_at_start))) - shown
        tail = seen[len(seen) - held :]
        at_start = OPEN.startswith(seen.lstrip())
        assert (at_start and held <= len(seen)) or (held < len(CLOSE) and CLOSE.startswith(tail))
