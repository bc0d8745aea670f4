"""``dsdeploy pull``: resolve a name or source, show whether it fits, bring its files in,
record a manifest."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Protocol

from dsdeploy import catalog
from dsdeploy.catalog import CatalogEntry
from dsdeploy.errors import ModelFileRejected, SourceError, StoreError
from dsdeploy.fit import Fit, assess
from dsdeploy.hardware import probe
from dsdeploy.model.architecture import Architecture
from dsdeploy.model.gguf_check import check_gguf_files
from dsdeploy.model.remote_code import custom_code, describe
from dsdeploy.model.safetensors_check import check_safetensors
from dsdeploy.modelfile import ModelInfo, read_config_info, read_gguf_info
from dsdeploy.progress import ProgressBar, ProgressHook
from dsdeploy.settings import HubSettings
from dsdeploy.sources import PullOptions, RemoteFile, is_source_spec, open_source
from dsdeploy.sources.select import model_format
from dsdeploy.store import (
    Manifest,
    Store,
    StoredFile,
    check_model_name,
    utc_now,
    weights_bytes,
    weights_file,
)

Announce = Callable[[str], None]


class PullTarget(Protocol):
    """What a pull needs to know: a catalog entry, or a source given on the command line."""

    @property
    def name(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def format(self) -> str:
        """'gguf', 'safetensors', or '' to tell from the files."""
        ...

    @property
    def architecture(self) -> Architecture | None:
        """Known before download for catalog models: the fit check estimates from it."""
        ...


@dataclass(frozen=True)
class SourceTarget:
    name: str
    source: str
    format: str = ""
    architecture: Architecture | None = None


def name_for(spec: str, quant: str | None) -> str:
    """A store name from a source: ``hf:Org/Model-GGUF`` + Q4_K_M -> ``model-gguf-q4_k_m``."""
    base = spec.rstrip("/").rsplit("/", 1)[-1].split("@")[0].split(":")[-1]
    base = base.removesuffix(".gguf").removesuffix(".safetensors")
    if quant:
        base = f"{base}-{quant}"
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-._")
    return check_model_name(cleaned[:64] or "model")


def catalog_quant(entry: CatalogEntry, quant: str, name: str | None) -> SourceTarget:
    """One published quantization of a catalog model, stored as ``<model>-<quant>``."""
    if entry.format != "gguf":
        raise SourceError(
            f"{entry.name} has no published GGUF that this llama.cpp loads; pull it without "
            f"--quant to fetch its checkpoint ({entry.source}) and convert that with llama.cpp's "
            "convert_hf_to_gguf.py"
        )
    known = {q.upper(): q for q in entry.quants}
    chosen = known.get(quant.upper())
    if chosen is None:
        raise SourceError(
            f"{entry.name} is published as {', '.join(entry.quants)}, not {quant}; "
            "pick one of those with --quant"
        )
    if not (entry.gguf_file and entry.gguf_repos):  # one published file: its source says it
        return SourceTarget(
            check_model_name(name or entry.name), entry.source, entry.format, entry.architecture
        )
    source = f"hf:{entry.gguf_repos[0]}:{entry.gguf_file.format(quant=chosen)}"
    chosen_name = check_model_name(name or f"{entry.name}-{chosen.lower()}")
    return SourceTarget(chosen_name, source, "gguf", entry.architecture)


def target(model: str, name: str | None, quant: str | None) -> PullTarget:
    """A catalog name (``--quant`` picks one of its published files), or a source spec pulled
    under ``name`` (derived from it if not given)."""
    if is_source_spec(model):
        return SourceTarget(check_model_name(name) if name else name_for(model, quant), model)
    entry = catalog.get(check_model_name(model.lower()))
    if quant is not None:
        return catalog_quant(entry, quant, name)
    if name:
        return SourceTarget(check_model_name(name), entry.source, entry.format, entry.architecture)
    return entry


def offset(progress: ProgressHook, before: int, overall: int) -> ProgressHook:
    """One bar for a many-file pull: each file's progress shifted by the files before it."""

    def update(done: int, total: int) -> None:
        del total
        progress(before + done, overall)

    return update


def read_info(store: Store, files: list[StoredFile], fmt: str) -> ModelInfo:
    """From the GGUF (part 1 of a split one: it carries the metadata) or config.json."""
    weights = weights_file(files, fmt)
    if fmt == "gguf":
        return read_gguf_info(store.blob_path(weights.sha256))
    config = next((f for f in files if f.path == "config.json"), None)
    if config is None:
        raise StoreError("the checkpoint has no config.json, so its architecture is unknown")
    tokenizer = next((f for f in files if f.path == "tokenizer_config.json"), None)
    tokenizer_path = store.blob_path(tokenizer.sha256) if tokenizer is not None else None
    return read_config_info(store.blob_path(config.sha256), tokenizer_path)


def check_files(store: Store, files: list[StoredFile], fmt: str, announce: Announce) -> None:
    """The structure checks at the door: a malformed weights file is moved to the quarantine
    and no manifest is written, so nothing names it and ``gc`` takes the rest."""
    weights = sorted((f for f in files if f.path.endswith(f".{fmt}")), key=lambda f: f.path)
    try:
        if fmt == "gguf":
            paths = [store.blob_path(f.sha256) for f in weights]
            check_gguf_files(paths, [f.path for f in weights])
        elif fmt == "safetensors":
            for stored in weights:
                check_safetensors(store.blob_path(stored.sha256), stored.path)
    except ModelFileRejected as exc:
        bad = next((f for f in weights if f.path == exc.file), None)
        if bad is not None and bad.sha256 not in store.referenced_blobs():
            store.quarantine_file(store.blob_path(bad.sha256), bad.path)
        raise
    found = custom_code({f.path: store.blob_path(f.sha256) for f in files})
    if found:
        announce(
            f"warning: {describe(found)}; dsdeploy never runs a checkpoint's own code "
            "(trust_remote_code stays off) and will not convert this one to GGUF"
        )


def check_fit(
    files: list[RemoteFile], store: Store, announce: Announce, architecture: Architecture | None
) -> Fit:
    missing = sum(
        f.size or 0
        for f in files
        if not (f.sha256 and f.size is not None and store.has_blob(f.sha256, f.size))
    )
    fit = assess(missing, weights_bytes(files), store.root, probe().ram_available, architecture)
    announce(fit.summary())
    if not fit.disk_ok:
        raise StoreError(
            f"not enough disk space: {fit.summary()}; free some space (`dsdeploy models gc`) "
            "or set DSDEPLOY_HOME to a bigger disk"
        )
    return fit


def pull(
    entry: PullTarget,
    store: Store,
    hub: HubSettings,
    bar: ProgressBar,
    options: PullOptions | None = None,
    announce: Announce = lambda line: None,
) -> Manifest:
    """Bring a model's files into the store; blobs already present are not fetched again.
    The listing and the fit check come first, so a refusal shows no progress bar."""
    check_model_name(entry.name)
    with (
        store.pulling(),
        closing(open_source(entry.source, options or PullOptions(), hub)) as source,
    ):
        remotes = source.files()
        check_fit(remotes, store, announce, entry.architecture)
        total = sum(f.size or 0 for f in remotes)
        files: list[StoredFile] = []
        with bar(f"pulling {entry.name}") as progress:
            for remote in remotes:
                before = sum(f.size for f in files)
                files.append(source.fetch(remote, store, offset(progress, before, total)))
        fmt = entry.format or model_format(remotes)
        check_files(store, files, fmt, announce)
        manifest = Manifest(
            name=entry.name,
            source=entry.source,
            format=fmt,
            files=files,
            info=read_info(store, files, fmt),
            pulled_at=utc_now(),
        )
        store.write_manifest(manifest)
    return manifest
