"""The transformers engine's process: one safetensors checkpoint loaded with transformers,
answering OpenAI chat completions on a Unix socket, with transformers' own continuous
batching where the architecture allows it (``transformers_generation``).

``transformers serve`` (5.23) was the first choice and is not used: it binds only a TCP host
and port, and with ``--continuous-batching`` it fixes temperature and sampling for all
requests from the first one and ignores ``stop``. This keeps its engine (the same
``ContinuousBatchingManager``) and puts the socket, the per-request sampling and the stop
strings around it. Run as ``python -m dsdeploy.engines.transformers_server``; the model is
loaded before the socket opens, so ``/health`` answers only once requests can be served.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from dsdeploy.engines.transformers_chat import (
    BadRequest,
    Completion,
    answer,
    read_request,
    stream_answer,
)
from dsdeploy.engines.transformers_generation import (
    BatchShape,
    ContinuousGenerator,
    Generator,
    SequentialGenerator,
)
from dsdeploy.errors import StoreError
from dsdeploy.model.chat_render import render

log = logging.getLogger("dsdeploy.transformers")


@dataclass
class Load:
    """Requests in the engine, for ``/metrics``: as many as the batch holds run (one for
    ``generate()``), the rest wait in the engine's queue."""

    batch: int
    requests: int = 0

    def exposition(self) -> str:
        running = min(self.requests, self.batch)
        return (
            "# TYPE transformers:requests_running gauge\n"
            f"transformers:requests_running {running}\n"
            "# TYPE transformers:requests_waiting gauge\n"
            f"transformers:requests_waiting {self.requests - running}\n"
        )


@dataclass(frozen=True)
class Loaded:
    alias: str
    tokenizer: Any
    template: str
    eos: frozenset[int]
    generator: Generator
    max_model_len: int
    load: Load


def error(status: int, message: str, code: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code or status}}
    return JSONResponse(body, status_code=status)


def prompt_tokens(
    loaded: Loaded, messages: list[dict[str, Any]], options: dict[str, Any]
) -> list[int]:
    tokenizer = loaded.tokenizer
    text = render(
        loaded.template, messages, tokenizer.bos_token or "", tokenizer.eos_token or "", options
    )
    # The template writes the special tokens (BOS) itself.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


async def counted(
    load: Load, tokens: AsyncGenerator[list[int], None]
) -> AsyncGenerator[list[int], None]:
    load.requests += 1
    try:
        async for grown in tokens:
            yield grown
    finally:
        load.requests -= 1
        await tokens.aclose()


def chat_route(loaded: Loaded) -> Route:
    async def chat(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            chat = read_request(body, loaded.max_model_len)
            prompt = prompt_tokens(loaded, chat.messages, chat.template_options)
        except (ValueError, BadRequest) as exc:
            return error(400, str(exc) or "the body is not JSON")
        except StoreError as exc:  # the template refused the conversation
            return error(400, str(exc))
        if len(prompt) + chat.sampling.max_tokens > loaded.max_model_len:
            return error(
                400,
                f"This model's maximum context length is {loaded.max_model_len} tokens; the "
                f"request has {len(prompt)} prompt tokens and asks for "
                f"{chat.sampling.max_tokens} more",
                "context_length_exceeded",
            )
        completion = Completion(
            lambda ids: loaded.tokenizer.decode(ids, skip_special_tokens=False),
            loaded.eos,
            chat.stop,
            chat.sampling.max_tokens,
        )
        tokens = counted(loaded.load, loaded.generator.stream(prompt, chat.sampling))
        if chat.stream:
            events = stream_answer(
                loaded.alias, completion, len(prompt), chat.include_usage, tokens
            )
            return StreamingResponse(events, media_type="text/event-stream")
        try:
            async for grown in tokens:
                completion.update(grown)
                if completion.stopped:
                    break
        except RuntimeError as exc:
            return error(500, f"generation failed: {str(exc)[:500]}")
        finally:
            await tokens.aclose()
        return JSONResponse(answer(loaded.alias, completion, len(prompt)))

    return Route("/v1/chat/completions", chat, methods=["POST"])


def create_app(loaded: Loaded) -> Starlette:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def models(request: Request) -> Response:
        model = {"id": loaded.alias, "object": "model", "owned_by": "dsdeploy"}
        return JSONResponse({"object": "list", "data": [model]})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        loaded.generator.close()

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(loaded.load.exposition())

    routes = [
        Route("/health", health),
        Route("/v1/models", models),
        Route("/metrics", metrics),
        chat_route(loaded),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """The model's end-of-sequence tokens and the tokenizer's: checkpoints whose config was
    written apart from their tokenizer disagree, and either one ends the answer."""
    found = model.generation_config.eos_token_id
    ids = [found] if isinstance(found, int) else list(found or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def load(options: argparse.Namespace) -> Loaded:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(options.threads)
    tokenizer = AutoTokenizer.from_pretrained(options.model, local_files_only=True)
    if not tokenizer.chat_template:
        raise SystemExit(f"{options.model} has no chat template (tokenizer_config.json)")
    dtype = "auto" if options.dtype == "auto" else getattr(torch, options.dtype)
    model = AutoModelForCausalLM.from_pretrained(
        options.model, local_files_only=True, dtype=dtype, trust_remote_code=False
    )
    model = model.to(options.device).eval()
    eos = eos_ids(model, tokenizer)
    shape = BatchShape(options.kv_tokens, options.max_batch_tokens, options.max_seqs)
    generator: Generator = (
        ContinuousGenerator(model, eos, shape)
        if options.batching == "continuous"
        else SequentialGenerator(model, eos)
    )
    batch = options.max_seqs if options.batching == "continuous" else 1
    log.warning(
        "transformers engine: %s on %s (%s), %s batching, up to %d sequences",
        model.config.model_type,
        options.device,
        model.dtype,
        options.batching,
        batch,
    )
    return Loaded(
        options.alias,
        tokenizer,
        tokenizer.chat_template,
        frozenset(eos),
        generator,
        options.max_model_len,
        Load(batch),
    )


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dsdeploy.engines.transformers_server")
    parser.add_argument("--model", required=True, help="checkpoint folder")
    parser.add_argument("--alias", required=True, help="the model's name in answers")
    parser.add_argument("--uds", required=True, help="Unix socket to listen on")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"]
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batching", default="continuous", choices=["continuous", "sequential"])
    parser.add_argument("--max-model-len", type=int, required=True)
    parser.add_argument("--max-seqs", type=int, default=1)
    parser.add_argument("--kv-tokens", type=int, required=True)
    parser.add_argument("--max-batch-tokens", type=int, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    options = parse(sys.argv[1:] if argv is None else argv)
    loaded = load(options)
    # Access logs off: request lines are the gateway's to log.
    uvicorn.run(create_app(loaded), uds=options.uds, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
