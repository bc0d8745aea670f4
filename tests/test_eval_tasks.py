"""``dsdeploy eval tasks``: replies are scored as a reader would, a real deployment is
scored through its API, and bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsdeploy.eval.tasks import Item, known_sets, load_sets
from tests.conftest import Server, free_port, run_cli

CAPITAL = Item("What is the capital of France?", "B", ("Rome", "Paris", "Lima", "Oslo"))
SUM = Item("What is 4 plus 17?", "21")


@pytest.mark.parametrize(
    ("reply", "right"),
    [
        ("B", True),
        ("B. Paris", True),
        ("The answer is B", True),
        ("A", False),
        ("Paris", True),  # no letter, but it names exactly one choice
        ("Paris or Rome", False),
        ("I do not know", False),
    ],
)
def test_multiple_choice_reply_is_scored_by_letter_or_named_choice(reply: str, right: bool) -> None:
    assert CAPITAL.correct(reply) is right


@pytest.mark.parametrize(
    ("reply", "right"),
    [("21", True), ("4 + 17 = 21", True), ("4 + 17 = 22", False), ("twenty-one", False)],
)
def test_short_answer_is_the_last_number_of_the_reply(reply: str, right: bool) -> None:
    assert SUM.correct(reply) is right


def test_shipped_sets_are_well_formed() -> None:
    sets = load_sets([])
    assert [s.name for s in sets] == known_sets() == ["arithmetic", "capitals", "science"]
    for task_set in sets:
        for item in task_set.items:
            if item.multiple_choice:
                assert len(item.choices) == 4 and item.answer in "ABCD"
            else:
                assert item.answer.lstrip("-").isdigit()


@pytest.mark.engine
def test_a_running_deployment_is_scored_through_its_api(shared_server: Server) -> None:
    target = f"smollm2={shared_server.base_url}"
    done = run_cli(shared_server.home, "eval", "tasks", "--target", target, "--set", "science")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "science" in done.stdout
    written = Path(done.stderr.strip().splitlines()[-1].removeprefix("wrote "))
    (score,) = json.loads(written.read_text())["scores"]
    assert score["target"] == "smollm2" and score["task_set"] == "science"
    assert score["total"] == 20 and score["errors"] == 0
    assert 0 <= score["correct"] <= 20


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "nope"), "unknown task set nope; known sets: arithmetic, capitals, science"),
        ((), "nothing to evaluate"),
        (("--gguf", "/no/such.gguf"), "no such GGUF file"),
        (("--target", f"down=http://127.0.0.1:{free_port()}"), "unreachable"),
    ],
)
def test_bad_eval_tasks_input_is_one_line(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = run_cli(tmp_path, "eval", "tasks", *args)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert message in done.stderr
