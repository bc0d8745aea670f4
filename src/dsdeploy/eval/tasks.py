"""The question sets shipped with dsdeploy (data/tasks, see data/README.md), how each item
is asked through the chat API, and how a reply is scored."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from dsdeploy.data.corpus import DATA
from dsdeploy.errors import EvalError

TASKS = DATA / "tasks"
LETTERS = "ABCD"
FIRST_LETTER = re.compile(r"\b([A-D])\b")
NUMBER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Item:
    question: str
    answer: str
    choices: tuple[str, ...] = ()

    @property
    def multiple_choice(self) -> bool:
        return bool(self.choices)

    def prompt(self) -> str:
        if not self.multiple_choice:
            return f"{self.question}\nAnswer with the number only."
        options = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(self.choices))
        return f"{self.question}\n{options}\nAnswer with the letter of the correct choice only."

    def correct(self, reply: str) -> bool:
        """Multiple choice: the first standalone letter, or else the one choice whose text
        the reply names. Short answer: the last number in the reply (small models restate
        the question first: '4 + 17 = 21')."""
        if not self.multiple_choice:
            numbers = NUMBER.findall(reply)
            return bool(numbers) and numbers[-1] == self.answer
        letter = FIRST_LETTER.search(reply)
        if letter is not None:
            return letter.group(1) == self.answer
        named = [i for i, text in enumerate(self.choices) if text.lower() in reply.lower()]
        return len(named) == 1 and LETTERS[named[0]] == self.answer


@dataclass(frozen=True)
class TaskSet:
    name: str
    items: tuple[Item, ...]


def known_sets() -> list[str]:
    return sorted(path.stem for path in TASKS.glob("*.jsonl"))


def load_sets(names: list[str]) -> list[TaskSet]:
    """The named sets (all of them when none is named); an unknown name is one error."""
    known = known_sets()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise EvalError(f"unknown task set {', '.join(unknown)}; known sets: {', '.join(known)}")
    sets = []
    for name in names or known:
        lines = (TASKS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        items = []
        for line in lines:
            raw = json.loads(line)
            items.append(Item(raw["question"], raw["answer"], tuple(raw.get("choices", ()))))
        sets.append(TaskSet(name, tuple(items)))
    return sets
