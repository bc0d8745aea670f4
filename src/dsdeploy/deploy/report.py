"""A deployment report in Markdown, in the manner of a model card: what runs (model and the
sha256 of every file), how (the plan and each choice's reason), how well (the measured
quantization quality), how it is protected (keys, network, TLS, audit, weights at rest)
and what the doctor found on the machine. Regulated operators file it with the deployment."""

from __future__ import annotations

from dsdeploy.deploy.report_facts import ReportFacts, SecurityFacts
from dsdeploy.planner.memory import GIB

COUNTS = {"kv_pool_tokens", "kv_bytes_per_token"}


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def model_section(facts: ReportFacts) -> list[str]:
    entry, manifest = facts.entry, facts.manifest
    lines = ["## Model", "", f"- **Name**: {facts.name}", f"- **Description**: {entry.description}"]
    if entry.source:
        lines.append(f"- **Catalog source**: `{entry.source}` ({entry.provenance})")
    if manifest is None:
        return [*lines, "- **Files**: not in this machine's store (`dsdeploy pull` it)", ""]
    lines += [
        f"- **Pulled from**: `{manifest.source}` on {manifest.pulled_at}",
        f"- **Format**: {manifest.format}, architecture {manifest.info.architecture}",
        "",
    ]
    rows: list[tuple[object, ...]] = [
        (f"`{f.path}`", f"{f.size:,}", f"`{f.sha256}`", "yes" if f.encrypted else "no")
        for f in manifest.files
    ]
    return lines + table(("file", "bytes", "sha256 (as stored)", "encrypted"), rows) + [""]


def plan_section(facts: ReportFacts) -> list[str]:
    plan = facts.plan
    status = "fits" if plan.fits else f"does not fit (short by {plan.shortfall / GIB:.1f} GiB)"
    lines = ["## Plan", "", f"{plan.engine}: {status}.", ""]
    lines += table(("choice", "value", "why"), [(c.what, c.value, c.why) for c in plan.choices])
    memory = [
        f"{name} {value:,}" if name in COUNTS else f"{name} {value / GIB:.2f} GiB"
        for name, value in plan.memory.items()
    ]
    lines += ["", f"Memory: {', '.join(memory)}.", ""]
    lines += [f"- warning: {w}" for w in plan.warnings] + [f"- note: {n}" for n in plan.notes]
    return [*lines, ""] if plan.warnings or plan.notes else lines


def quality_section(facts: ReportFacts) -> list[str]:
    result = facts.quant_eval
    lines = ["## Quantization quality", ""]
    if result is None:
        return [*lines, f"Not measured here: run `dsdeploy eval quant {facts.name}`.", ""]
    lines += [
        f"Measured {result.created} with {result.engine_version} on {result.text} "
        f"({result.ctx}-token windows); reference: {result.reference.description}, "
        f"perplexity {result.reference.perplexity:.4f}.",
        "",
    ]
    rows: list[tuple[object, ...]] = [
        (
            r.file_type,
            f"{r.bits_per_weight:.2f}",
            f"{r.perplexity:.4f}",
            f"{r.perplexity_delta:+.4f}",
            f"{r.mean_kld:.5f}",
            f"{r.same_top_p:.1f}%",
        )
        for r in result.rows
    ]
    header = ("quant", "bits/weight", "perplexity", "Δ perplexity", "mean KLD", "same top-1")
    return [*lines, *table(header, rows), "", f"Recommendation: {result.recommendation}", ""]


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


def security_rows(s: SecurityFacts) -> list[tuple[object, ...]]:
    return [
        ("active API keys", f"{s.active_keys} ({s.admin_keys} admin)"),
        ("key database", s.key_database),
        ("keys required", yes(s.require_keys)),
        ("client address allowlist", ", ".join(s.allow_ips) or "none (any address)"),
        ("trusted proxies", ", ".join(s.trusted_proxies) or "none"),
        ("TLS", "on" if s.tls else "off (put a TLS proxy in front)"),
        ("audit log", f"on, prompt content {s.audit_content}" if s.audit else "off"),
        ("weights encrypted at rest", yes(s.weights_encrypted)),
        ("/metrics bearer token", yes(s.metrics_token)),
        ("rate limits shared (Redis)", yes(s.shared_limits)),
    ]


def doctor_section(facts: ReportFacts) -> list[str]:
    rows: list[tuple[object, ...]] = [
        (f.status, f.check, f.found, f.fix or "") for f in facts.findings
    ]
    counts = {s: sum(f.status == s for f in facts.findings) for s in ("ok", "warn", "fail")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    return ["## Doctor", "", f"{summary}.", "", *table(("status", "check", "found", "fix"), rows)]


def render_report(facts: ReportFacts) -> str:
    lines = [
        f"# Deployment report: {facts.name}",
        "",
        f"Made by dsdeploy {facts.version} on {facts.created}.",
        "",
        *model_section(facts),
        *plan_section(facts),
        *quality_section(facts),
        "## Security configuration",
        "",
        *table(("setting", "value"), security_rows(facts.security)),
        "",
        *doctor_section(facts),
    ]
    return "\n".join(lines) + "\n"
