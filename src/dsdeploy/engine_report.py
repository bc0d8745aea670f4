"""``dsdeploy engine list``: each engine found, whether it ran here, how fast its build is,
and how that compares with the decode ceiling this machine's memory sets."""

from __future__ import annotations

from rich.table import Table

from dsdeploy.engines.llamacpp_install import InstalledEngine
from dsdeploy.engines.llamacpp_locate import proven_here
from dsdeploy.memory_bandwidth import measure_read_bandwidth
from dsdeploy.modelfile import gguf_bytes_read_per_token
from dsdeploy.paths import Dirs
from dsdeploy.planner.memory import decode_tokens_per_s_bound
from dsdeploy.settings import DEFAULT_MODEL
from dsdeploy.store import Store


def engine_table(
    dirs: Dirs, candidates: list[InstalledEngine], active: InstalledEngine | None
) -> Table:
    table = Table("engine", "version", "origin", "instruction set")
    table.add_column("runs here", no_wrap=True)
    table.add_column("pp tok/s")
    table.add_column("tg tok/s")
    table.add_column("used by serve")
    table.add_column("binary", overflow="fold")  # a path is worth reading whole
    for found in candidates:
        bench = found.info.get("bench") or {}
        table.add_row(
            "llama.cpp",
            found.version,
            found.origin,
            found.info.get("isa", {}).get("tag", "-"),
            "yes" if proven_here(dirs, found) else "not checked yet",
            f"{bench['pp_tokens_per_s']:.1f}" if bench else "-",
            f"{bench['tg_tokens_per_s']:.1f}" if bench else "-",
            "yes" if found == active else "",
            str(found.binary),
        )
    return table


def decode_ceiling_line(dirs: Dirs, engine: InstalledEngine | None) -> str | None:
    """The default model's decode ceiling here, beside the build's measured tg speed."""
    store = Store(dirs.models)
    manifest = store.manifest(DEFAULT_MODEL)
    bench = engine.info.get("bench") if engine else None
    if manifest is None or not bench or manifest.weights.encrypted is not None:
        return None  # nothing to say without plaintext weights to read
    per_token = gguf_bytes_read_per_token(store.weights_path(manifest))
    bandwidth = measure_read_bandwidth(int(bench["threads"]))
    ceiling = decode_tokens_per_s_bound(bandwidth, per_token)
    measured = float(bench["tg_tokens_per_s"])
    return (
        f"decode ceiling for {DEFAULT_MODEL} here: {ceiling:.0f} tok/s "
        f"({bandwidth / 1e9:.1f} GB/s read with {bench['threads']} threads ÷ "
        f"{per_token / 2**20:.1f} MiB per token); the build's tg{bench['gen_tokens']}: "
        f"{measured:.1f} tok/s = {measured / ceiling:.2f} of it"
    )
