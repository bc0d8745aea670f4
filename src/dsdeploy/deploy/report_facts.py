"""What a deployment report states, gathered once: the model and its files' hashes, the
plan, the measured quantization quality, the security configuration, the doctor's findings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from dsdeploy import __version__, catalog
from dsdeploy.catalog import CatalogEntry
from dsdeploy.cpu_isa import read_cpu_answers
from dsdeploy.doctor.checks import Ground, run_checks
from dsdeploy.doctor.finding import Finding
from dsdeploy.errors import StoreError
from dsdeploy.eval.quant_results import QuantEval, load_quant_eval
from dsdeploy.planner.plan import Plan
from dsdeploy.planning import WhatIf, plan_for
from dsdeploy.security.keys import DEFAULT_DB_NAME, KeyStore
from dsdeploy.settings import Settings
from dsdeploy.store import Manifest, Store, utc_now


@dataclass(frozen=True)
class SecurityFacts:
    active_keys: int
    admin_keys: int
    key_database: str
    require_keys: bool
    allow_ips: tuple[str, ...]
    trusted_proxies: tuple[str, ...]
    tls: bool
    audit: bool
    audit_content: str
    weights_encrypted: bool
    metrics_token: bool
    shared_limits: bool


@dataclass(frozen=True)
class ReportFacts:
    name: str
    entry: CatalogEntry
    plan: Plan
    manifest: Manifest | None
    quant_eval: QuantEval | None
    security: SecurityFacts
    findings: list[Finding] = field(default_factory=list)
    created: str = ""
    version: str = ""


def security_facts(settings: Settings, manifest: Manifest | None) -> SecurityFacts:
    """The key counts come from the key database; a SQLite file never made means none
    (and the report does not make one)."""
    security = settings.security
    sqlite = settings.dirs.data / DEFAULT_DB_NAME
    active = admins = 0
    if security.db_url or sqlite.is_file():
        store = KeyStore.open(security, settings.dirs.data)
        try:
            now = time.time()
            keys = [key for key in store.list() if key.active(now)]
        finally:
            store.close()
        active, admins = len(keys), sum(key.is_admin for key in keys)
    encrypted = manifest is not None and any(f.encrypted for f in manifest.files)
    return SecurityFacts(
        active_keys=active,
        admin_keys=admins,
        key_database="PostgreSQL (db_url)" if security.db_url else f"SQLite {sqlite}",
        require_keys=security.require_keys or active > 0,
        allow_ips=tuple(security.allow_ips),
        trusted_proxies=tuple(security.trusted_proxies),
        tls=security.tls_cert is not None,
        audit=security.audit,
        audit_content=security.audit_content,
        weights_encrypted=encrypted,
        metrics_token=security.metrics_token is not None,
        shared_limits=security.redis_url is not None,
    )


def stored_manifest(store: Store, model: str) -> Manifest | None:
    try:
        return store.manifest(model)
    except StoreError:  # not a store name (a file or folder to plan)
        return None


def gather(
    settings: Settings, model: str, what_if: WhatIf, library_path: tuple[Path, ...]
) -> ReportFacts:
    """The facts for ``model``: a catalog name, a model in the store, or a file to plan."""
    store = Store(settings.dirs.models)
    manifest = stored_manifest(store, model)
    subject = model
    if manifest is not None and catalog.find(model) is None:
        subject = str(store.materialize(manifest).entry)  # plan the stored files themselves
    entry, _, plan = plan_for(settings, subject, what_if)
    return ReportFacts(
        name=model,
        entry=entry,
        plan=plan,
        manifest=manifest,
        quant_eval=load_quant_eval(settings.dirs, model),
        security=security_facts(settings, manifest),
        findings=run_checks(Ground(settings, read_cpu_answers(), library_path)),
        created=utc_now(),
        version=__version__,
    )
