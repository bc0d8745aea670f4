"""`dsdeploy finetune` through the real CLI: bad input refused in one line with nothing left
behind, and a real run on a tiny Llama (SmolLM2's tokenizer and template, random weights)
that trains, converts with llama.cpp's converter, stores, resumes after a kill, and is
served beside its base by one engine, selected by model name."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dsdeploy.paths import Dirs
from tests.conftest import DSDEPLOY, SHARED_CACHE, dsdeploy_env, run_cli, start_server
from tests.tiny_llama import tiny_llama_gguf

FIXTURES = Path(__file__).parent / "fixtures" / "finetune"
DATA = str(FIXTURES / "answer_format.jsonl")
FAST = ["--steps", "6", "--batch", "4", "--seq-len", "64", "--eval-every", "2", "--lr", "0.02"]


def left_behind(home: Path, name: str) -> list[Path]:
    """Anything a refused run would have written: outputs, a manifest."""
    data = home / "data"
    found = [data / "finetune" / name, data / "models" / "manifests" / f"{name}.json"]
    return [p for p in found if p.exists()]


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory: pytest.TempPathFactory, smollm2_bytes: bytes) -> Path:
    home = tmp_path_factory.mktemp("finetune-home")
    work = tmp_path_factory.mktemp("tiny")
    (work / "smollm2.gguf").write_bytes(smollm2_bytes)
    dirs = Dirs(home / "data", SHARED_CACHE, home / "config")
    gguf = tiny_llama_gguf(work / "smollm2.gguf", dirs, work)
    done = run_cli(home, "pull", str(gguf), "--name", "tiny")
    assert done.returncode == 0, done.stderr[-2000:]
    return home


def test_malformed_data_is_refused_line_by_line_before_any_model_loads(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = run_cli(home, "finetune", "smollm2", "--data", str(FIXTURES / "malformed.jsonl"))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "line 2: not JSON" in lines[0] and "line 5: message 0 has role 'robot'" in lines[0]
    assert left_behind(home, "smollm2-malformed") == []
    assert not (home / "data" / "models").exists()  # nothing pulled, nothing loaded


def test_an_empty_training_set_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    done = run_cli(tmp_path / "home", "finetune", "smollm2", "--data", str(empty))
    assert done.returncode == 1
    assert "holds no conversation" in done.stderr


@pytest.mark.engine
def test_a_model_without_the_target_modules_is_refused_with_its_linear_layers(
    tiny_home: Path,
) -> None:
    done = run_cli(
        tiny_home, "finetune", "tiny", "--data", DATA, "--name", "nope",
        "--target-modules", "c_attn",
    )  # fmt: skip
    assert done.returncode == 1
    assert "has no c_attn layers" in done.stderr and "q_proj" in done.stderr
    assert left_behind(tiny_home, "nope") == []


@pytest.mark.engine
def test_a_run_that_does_not_fit_names_the_nearest_that_does(tiny_home: Path) -> None:
    done = run_cli(
        tiny_home, "finetune", "tiny", "--data", DATA, "--name", "toobig", "--memory-limit", "800M"
    )
    assert done.returncode == 1
    assert "training needs" in done.stderr
    assert re.search(r"try --batch \d+ --seq-len \d+ \(\d+ MiB\)", done.stderr)
    assert left_behind(tiny_home, "toobig") == []


@pytest.mark.engine
def test_an_adapter_is_trained_stored_and_served_beside_its_base(
    tiny_home: Path, tmp_path: Path
) -> None:
    done = run_cli(tiny_home, "finetune", "tiny", "--data", DATA, "--name", "tiny-fmt", *FAST)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((tiny_home / "data/models/manifests/tiny-fmt.json").read_text())
    assert manifest["base"] == "tiny"
    assert manifest["files"][0]["path"] == "adapter.gguf"
    out = tiny_home / "data" / "finetune" / "tiny-fmt"
    report = json.loads((out / "report.json").read_text())
    assert len(report["history"]["validation"]) == 3
    assert report["peak_rss_bytes"] > 0 and report["planned_bytes"]["total"] > 0
    assert (out / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert not list((tiny_home / "data" / "finetune" / "work").iterdir())

    server = start_server(tiny_home, tmp_path / "serve.log", "tiny-fmt", "--threads", "1")
    try:
        client = server.api_client
        assert {m.id for m in client.models.list()} == {"tiny", "tiny-fmt"}

        def reply(model: str) -> str:
            answer = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "What is 2 plus 2?"}],
                max_tokens=8,
                temperature=0,
            )
            return answer.choices[0].message.content or ""

        base = reply("tiny")
        assert reply("tiny-fmt") != base
        assert reply("tiny") == base  # a slot that ran the adapter does not keep it on
        engines = server.log.read_text().count("loaded tiny")
        assert engines == 1
    finally:
        server.stop()


@pytest.mark.engine
def test_a_killed_run_resumes_from_its_checkpoint(tiny_home: Path) -> None:
    args = ["--name", "tiny-resumed", "--steps", "40", "--batch", "2", "--seq-len", "32"]
    args += ["--eval-every", "2", "--patience", "100"]
    command = [*DSDEPLOY, "finetune", "tiny", "--data", DATA, *args]
    process = subprocess.Popen(
        command, env=dsdeploy_env(tiny_home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    work = tiny_home / "data" / "finetune" / "work"
    deadline = time.monotonic() + 600
    while not list(work.glob("tiny-resumed-*/checkpoint.pt")) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert left_behind(tiny_home, "tiny-resumed") == []

    done = run_cli(tiny_home, "finetune", "tiny", "--data", DATA, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tiny_home / "data/finetune/tiny-resumed/report.json").read_text())
    assert report["resumed_from_step"] >= 2
    assert report["history"]["train"][-1][0] == 40


@pytest.mark.engine
def test_a_search_keeps_its_best_trial_and_merge_stores_a_gguf_model(tiny_home: Path) -> None:
    done = run_cli(
        tiny_home, "finetune", "tiny", "--data", DATA, "--name", "tiny-search", *FAST,
        "--search", "2", "--merge",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tiny_home / "data/finetune/tiny-search/report.json").read_text())
    trials = report["search"]
    assert [t["trial"] for t in trials] == [0, 1]
    best = min(trials, key=lambda t: t["val_loss"])
    assert report["hyper"]["rank"] == best["rank"]
    assert report["history"]["best_loss"] == pytest.approx(best["val_loss"])
    assert "search: best validation loss per trial" in done.stdout + done.stderr
    merged = json.loads((tiny_home / "data/models/manifests/tiny-search-merged.json").read_text())
    assert merged["base"] is None and merged["files"][0]["path"] == "merged.gguf"
