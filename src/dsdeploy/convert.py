"""``dsdeploy convert``: a Hugging Face checkpoint folder, through llama.cpp's converter and
``llama-quantize``, into the store as a GGUF model that ``dsdeploy serve NAME`` serves.

Everything that can be checked without running a tool is checked first (files, custom
code, the chat template in the sandbox, what the converter and engine can handle), so a bad
checkpoint fails in one line before minutes of work. The converter writes BF16 (DeepSeek's
released precision; FP8 weights are dequantized to it) into a work folder beside the blobs,
so the quantized file is moved into the store, not copied.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsdeploy.chat_template import check_folder_templates
from dsdeploy.engines.llamacpp_convert import OUTTYPES, convert_to_gguf
from dsdeploy.engines.llamacpp_convert_limits import check_convertible, converter_architectures
from dsdeploy.engines.llamacpp_install import source_tree
from dsdeploy.engines.llamacpp_tools import tool_path
from dsdeploy.eval.quantize import check_types, known_types, quantize
from dsdeploy.model.checkpoint_files import check_checkpoint_files, read_json
from dsdeploy.model.remote_code import refuse_custom_code
from dsdeploy.progress import ProgressBar, ProgressHook
from dsdeploy.pull import Announce, check_files, read_info
from dsdeploy.settings import Settings
from dsdeploy.store import Manifest, Store, StoredFile, check_model_name, file_sha256, utc_now

CONVERTER_PERCENT = re.compile(r"(\d+)%\|")
QUANTIZE_TENSOR = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]")
INTERMEDIATE = "bf16"


@dataclass(frozen=True)
class Conversion:
    checkpoint: Path
    name: str
    quant: str
    """A llama-quantize file type (Q4_K_M …) or one the converter writes itself (F16, Q8_0)."""


def preflight(settings: Settings, checkpoint: Path) -> str:
    """The checkpoint's architecture, once nothing stands in the way of converting it."""
    config = check_checkpoint_files(checkpoint)
    has_settings = (checkpoint / "tokenizer_config.json").is_file()
    tokenizer_config = read_json(checkpoint, "tokenizer_config.json") if has_settings else {}
    refuse_custom_code(checkpoint)
    check_folder_templates(checkpoint, tokenizer_config)
    known = converter_architectures(source_tree(settings.dirs))
    return check_convertible(config, tokenizer_config, known)


def converter_progress(progress: ProgressHook) -> Callable[[str], None]:
    """The converter's own tqdm bar (``Writing:  45%|…``), as percent done."""

    def on_output(piece: str) -> None:
        found = CONVERTER_PERCENT.search(piece)
        if found:
            progress(int(found.group(1)), 100)

    return on_output


def quantize_progress(progress: ProgressHook) -> Callable[[str], None]:
    """llama-quantize's line per tensor (``[  12/ 340] blk.1.ffn_up.weight …``)."""

    def on_output(piece: str) -> None:
        found = QUANTIZE_TENSOR.match(piece.strip())
        if found:
            progress(int(found.group(1)), int(found.group(2)))

    return on_output


def quantizer(settings: Settings, quant: str) -> tuple[Path, str] | None:
    """llama-quantize and the file type to give it; None when the converter writes ``quant``
    itself. Looked up before the long conversion starts, so a bad type fails at once."""
    if quant.lower() in OUTTYPES:
        return None
    binary = tool_path(settings, "llama-quantize")
    return binary, check_types([quant], known_types(binary))[0]


def make_gguf(settings: Settings, job: Conversion, work: Path, bar: ProgressBar) -> Path:
    """The converted (and, unless the converter wrote the type itself, quantized) GGUF."""
    tool = quantizer(settings, job.quant)
    outtype = INTERMEDIATE if tool else job.quant.lower()
    converted = work / f"{job.name}-{outtype}.gguf"
    with bar(f"converting {job.checkpoint.name}") as progress:
        convert_to_gguf(
            settings.dirs, job.checkpoint, converted, outtype, converter_progress(progress)
        )
    if tool is None:
        return converted
    binary, file_type = tool
    out = work / f"{job.name}.gguf"
    threads = settings.engine.threads or os.cpu_count() or 1
    with bar(f"quantizing to {file_type}") as progress:
        quantize(binary, converted, out, file_type, threads, quantize_progress(progress))
    converted.unlink()
    return out


def convert(settings: Settings, job: Conversion, bar: ProgressBar, announce: Announce) -> Manifest:
    """Convert, quantize and store ``job.checkpoint`` under ``job.name``."""
    check_model_name(job.name)
    architecture = preflight(settings, job.checkpoint)
    announce(f"{job.checkpoint.name}: {architecture}, converting with llama.cpp's converter")
    store = Store(settings.dirs.models)
    store.partial.mkdir(parents=True, exist_ok=True)
    with store.pulling(), tempfile.TemporaryDirectory(dir=store.partial) as tmp:
        gguf = make_gguf(settings, job, Path(tmp), bar)
        size, sha256 = gguf.stat().st_size, file_sha256(gguf)
        store.commit_blob(gguf, sha256, None, gguf.name)
        files = [StoredFile(path=f"{job.name}.gguf", sha256=sha256, size=size)]
        check_files(store, files, "gguf", announce)
        manifest = Manifest(
            name=job.name,
            source=f"converted from {job.checkpoint.resolve()} ({job.quant.upper()})",
            format="gguf",
            files=files,
            info=read_info(store, files, "gguf"),
            pulled_at=utc_now(),
        )
        store.write_manifest(manifest)
    return manifest
