"""``dsdeploy report``: a Markdown deployment report that states the stored files' hashes,
the plan, the measured quantization quality, the security configuration as it is (keys
counted in the real key database) and the doctor's findings, each from its real source."""

from __future__ import annotations

import json
from pathlib import Path

from dsdeploy.eval.quant_results import QuantEval, QuantRow, Reference, save_quant_eval
from dsdeploy.settings import Settings
from dsdeploy.store import Store
from tests.conftest import run_cli


def measured(model: str) -> QuantEval:
    row = {
        "file_type": "Q8_0",
        "size_bytes": 1000,
        "bits_per_weight": 8.5,
        "perplexity": 27.5,
        "perplexity_delta": 0.0123,
        "mean_kld": 0.00042,
        "mean_kld_error": 0.00001,
        "kld_p99": 0.01,
        "same_top_p": 99.1,
    }
    return QuantEval(
        model=model,
        model_sha256="0" * 64,
        engine_version="llama.cpp b1",
        created="2026-01-02T03:04:05+00:00",
        text="Hamlet act 1",
        ctx=512,
        chunks=None,
        reference=Reference(
            description="F16 reference", size_bytes=1, bits_per_weight=16.0, perplexity=27.49
        ),
        rows=[QuantRow.model_validate(row)],
        recommended="Q8_0",
        recommendation="Q8_0: within every bound",
    )


def test_report_states_hashes_plan_quality_security_and_doctor(
    tmp_path: Path, smollm2_bytes: bytes
) -> None:
    home = tmp_path / "home"
    gguf = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(smollm2_bytes)
    assert run_cli(home, "pull", str(gguf), "--name", "tiny").returncode == 0
    assert run_cli(home, "keys", "create", "--name", "ops", "--admin").returncode == 0
    assert run_cli(home, "keys", "create", "--name", "app").returncode == 0
    save_quant_eval(Settings(home=home).dirs, measured("tiny"))
    out = tmp_path / "report.md"

    done = run_cli(home, "report", "tiny", "--ram", "8G", "--out", str(out))

    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for stored in Store(home / "data" / "models").get("tiny").files:
        assert f"`{stored.sha256}`" in text
    assert "| engine | llama.cpp |" in text
    assert "| Q8_0 | 8.50 | 27.5000 | +0.0123 | 0.00042 | 99.1% |" in text
    assert "| active API keys | 2 (1 admin) |" in text
    assert "| keys required | yes |" in text
    doctor = run_cli(home, "doctor", "--json")
    for finding in json.loads(doctor.stdout):
        assert f"| {finding['status']} | {finding['check']} |" in text


def test_report_of_a_model_not_pulled_says_so_and_lists_no_keys(tmp_path: Path) -> None:
    done = run_cli(tmp_path / "home", "report", "smollm2", "--ram", "8G")
    assert done.returncode == 0, done.stderr
    assert "not in this machine's store" in done.stdout
    assert "Not measured here: run `dsdeploy eval quant smollm2`" in done.stdout
    assert "| active API keys | 0 (0 admin) |" in done.stdout
    assert not (tmp_path / "home" / "data" / "security.db").exists()
