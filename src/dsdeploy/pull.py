"""``dsdeploy pull``: resolve a name to a source, bring its files in, record a manifest."""

from __future__ import annotations

from dsdeploy import catalog, sources
from dsdeploy.catalog import CatalogEntry
from dsdeploy.errors import ModelNotFound
from dsdeploy.modelfile import read_gguf_info
from dsdeploy.progress import ProgressHook
from dsdeploy.store import Manifest, Store, check_model_name, utc_now, weights_file


def resolve(name: str) -> CatalogEntry:
    """The catalog entry for a name, checked before any progress is shown or byte fetched."""
    entry = catalog.find(check_model_name(name))
    if entry is None:
        raise ModelNotFound(name, catalog.names())
    return entry


def pull(entry: CatalogEntry, store: Store, progress: ProgressHook) -> Manifest:
    """Bring a model's files into the store; blobs already present are not fetched again."""
    files = sources.fetch(entry.source, store, progress)
    weights = weights_file(files, entry.format)
    manifest = Manifest(
        name=entry.name,
        source=entry.source,
        format=entry.format,
        files=files,
        info=read_gguf_info(store.blob_path(weights.sha256)),
        pulled_at=utc_now(),
    )
    store.write_manifest(manifest)
    return manifest
