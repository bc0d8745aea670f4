"""`dsdeploy keygen-weights`, `encrypt` and `decrypt`: model weights encrypted at rest."""

from __future__ import annotations

from typing import Annotated

import typer

from dsdeploy.cli.admin_audit import admin_audit
from dsdeploy.cli.common import console, describe, fail, load_settings
from dsdeploy.errors import DsdeployError
from dsdeploy.model.file_checks import ModelChecks
from dsdeploy.security.weights_key import create_key_file, key_file, load_kek
from dsdeploy.security.weights_store import Converted, decrypt_models, encrypt_models
from dsdeploy.settings import Settings
from dsdeploy.store import Store

Models = Annotated[list[str], typer.Argument(help="Model names in the store.")]
KeyFile = Annotated[str | None, typer.Option(help=describe("weights_key_file"))]


def report(done: list[Converted], verb: str) -> None:
    for item in done:
        console.print(
            f"{item.model}: {item.path} {verb} (blob {item.before[:12]} -> {item.after[:12]})",
            highlight=False,
        )
    if not done:
        console.print(f"nothing to do: no file left to {verb.removesuffix('ed')}")


def keygen_weights(weights_key_file: KeyFile = None) -> None:
    """Create the key that encrypts model weights at rest, in a new file of mode 0600.

    Back it up apart from the models: without it, encrypted weights are lost."""
    settings = load_settings(weights_key_file=weights_key_file)
    path = key_file(settings.security, settings.dirs.config)
    try:
        with admin_audit(settings) as note:
            kek = create_key_file(path)
            note("weights.key_created", kek.id)
    except DsdeployError as exc:
        raise fail(exc) from None
    console.print(
        f"weights key {kek.id} written to {path} (mode 0600); back it up", highlight=False
    )


def convert(settings: Settings, models: list[str], encrypting: bool) -> list[Converted]:
    kek = load_kek(settings.security, settings.dirs.config)
    store = Store(settings.dirs.models)
    if encrypting:
        # Serving trusts decrypted weights because they passed the checks in the clear.
        checks = ModelChecks(settings.dirs.model_checks)
        for name in models:
            manifest = store.get(name)
            if manifest.weights.encrypted is None:
                checks.require(store.materialize(manifest).entry)
    with admin_audit(settings) as note:
        done = (encrypt_models if encrypting else decrypt_models)(store, models, kek)
        action = "weights.encrypted" if encrypting else "weights.decrypted"
        for model in dict.fromkeys(item.model for item in done):
            note(action, f"{model} (weights key {kek.id})")
    return done


def encrypt(models: Models, weights_key_file: KeyFile = None) -> None:
    """Encrypt stored models' weight files with the weights key; the plaintext blobs are
    deleted. `dsdeploy serve` decrypts them into memory only."""
    settings = load_settings(weights_key_file=weights_key_file)
    try:
        report(convert(settings, models, encrypting=True), "encrypted")
    except DsdeployError as exc:
        raise fail(exc) from None


def decrypt(models: Models, weights_key_file: KeyFile = None) -> None:
    """Put stored models' encrypted weight files back in the clear."""
    settings = load_settings(weights_key_file=weights_key_file)
    try:
        report(convert(settings, models, encrypting=False), "decrypted")
    except DsdeployError as exc:
        raise fail(exc) from None
