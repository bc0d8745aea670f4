"""Task accuracy as a table (one row per deployment, one column per set) and as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dsdeploy.eval.tasks_run import SetScore


def print_scores(scores: list[SetScore], console: Console) -> None:
    set_names = list(dict.fromkeys(score.task_set for score in scores))
    table = Table("deployment", title="accuracy on dsdeploy's question sets (greedy decoding)")
    for name in set_names:
        table.add_column(name, justify="right")
    table.add_column("errors", justify="right")
    for target in dict.fromkeys(score.target for score in scores):
        mine = {s.task_set: s for s in scores if s.target == target}
        cells = [f"{mine[n].accuracy:.0%} ({mine[n].correct}/{mine[n].total})" for n in set_names]
        table.add_row(target, *cells, str(sum(s.errors for s in mine.values())))
    console.print(table)


def write_scores(scores: list[SetScore], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [asdict(score) | {"accuracy": score.accuracy} for score in scores]
    path.write_text(json.dumps({"scores": rows}, indent=2))
