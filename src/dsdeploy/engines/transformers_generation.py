"""Token generation inside the transformers engine process, two ways behind one interface.

- ``ContinuousGenerator``: transformers' own continuous batching
  (``model.init_continuous_batching()``, a ``ContinuousBatchingManager``): requests join and
  leave one running batch between decode steps, their KV cache in pages.
- ``SequentialGenerator``: ``model.generate()`` one request at a time, for architectures
  whose attention the paged cache cannot hold (``transformers_support.batching_for``).

Both hand each request's tokens so far (a growing list) to an asyncio queue, ending with
``Finished``; this module runs only in the engine's process (it imports torch).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

GREEDY_TEMPERATURE = 1e-6
"""Continuous batching samples every request of a batch (``do_sample`` is the manager's, not
the request's); temperature 0 is this, which puts all the probability on the top token."""


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float
    seed: int | None


@dataclass(frozen=True)
class Finished:
    """The end of a request's tokens; ``error`` set when generation failed."""

    error: str | None = None


Event = list[int] | Finished


@dataclass(frozen=True)
class BatchShape:
    """The planned continuous batch: KV cache tokens in all, tokens per forward pass, and
    sequences decoded together."""

    kv_tokens: int
    max_batch_tokens: int
    max_seqs: int


class Generator(Protocol):
    def stream(self, prompt: list[int], sampling: Sampling) -> AsyncGenerator[list[int], None]:
        """The request's generated tokens so far, each time they grow; stops early (and the
        request is cancelled) when the caller stops iterating. Raises ``RuntimeError``
        when generation fails."""
        ...

    def close(self) -> None: ...


async def drain(queue: asyncio.Queue[Event]) -> AsyncIterator[list[int]]:
    while True:
        event = await queue.get()
        if isinstance(event, Finished):
            if event.error is not None:
                raise RuntimeError(event.error)
            return
        yield event


class ContinuousGenerator:
    def __init__(self, model: Any, eos: list[int], batch: BatchShape) -> None:
        from transformers import ContinuousBatchingConfig, GenerationConfig

        config = GenerationConfig(  # type: ignore[no-untyped-call]
            do_sample=True,
            # A temperature other than 1 makes the manager build its per-request warper.
            temperature=0.7,
            top_k=None,
            top_p=None,
            eos_token_id=eos,
            max_new_tokens=256,
        )
        page = ContinuousBatchingConfig.page_size
        batching = ContinuousBatchingConfig(
            # The planned KV cache, in pages (of every layer) of page_size tokens.
            num_blocks=-(-batch.kv_tokens // page),
            max_batch_tokens=batch.max_batch_tokens,
            max_requests_per_batch=batch.max_seqs,
            per_request_processors=True,
        )
        self.manager = model.init_continuous_batching(
            generation_config=config, continuous_batching_config=batching
        )
        self.manager.start()
        self.counter = 0

    async def stream(
        self, prompt: list[int], sampling: Sampling
    ) -> AsyncGenerator[list[int], None]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self.counter += 1
        request_id = f"r{self.counter}"

        def on_output(output: Any) -> None:
            queue.put_nowait(list(output.generated_tokens))
            if output.is_finished():
                queue.put_nowait(Finished(output.error))

        self.manager.register_result_handler(request_id, on_output)
        added = self.manager.add_request(
            prompt,
            request_id=request_id,
            max_new_tokens=sampling.max_tokens,
            streaming=True,
            temperature=sampling.temperature or GREEDY_TEMPERATURE,
        )
        if added is None:
            raise RuntimeError("the continuous batching manager is not accepting requests")
        finished = False
        try:
            async for tokens in drain(queue):
                yield tokens
            finished = True
        finally:
            if not finished:
                self.manager.cancel_request(request_id)

    def close(self) -> None:
        self.manager.stop(block=True, timeout=5)


class SequentialGenerator:
    def __init__(self, model: Any, eos: list[int]) -> None:
        self.model = model
        self.eos = eos
        # One thread: requests take turns, and torch's own threads do the matrix math.
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="generate")

    async def stream(
        self, prompt: list[int], sampling: Sampling
    ) -> AsyncGenerator[list[int], None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()
        cancelled = threading.Event()
        future = loop.run_in_executor(
            self.worker, self.generate, prompt, sampling, loop, queue, cancelled
        )
        finished = False
        try:
            async for tokens in drain(queue):
                yield tokens
            finished = True
        finally:
            cancelled.set()
            if finished:
                await future
            else:
                future.add_done_callback(lambda done: done.exception())

    def generate(
        self,
        prompt: list[int],
        sampling: Sampling,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[Event],
        cancelled: threading.Event,
    ) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        tokens: list[int] = []

        class Relay(BaseStreamer):
            """Hands each new token to the event loop; the prompt comes first and is skipped."""

            def __init__(self) -> None:
                self.prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:
                    self.prompt_seen = True
                    return
                tokens.extend(int(t) for t in value.reshape(-1).tolist())
                loop.call_soon_threadsafe(queue.put_nowait, list(tokens))

            def end(self) -> None:
                pass

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool)

        error = None
        try:
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            ids = torch.tensor([prompt], device=self.model.device)
            sample = sampling.temperature > 0
            self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=sampling.max_tokens,
                do_sample=sample,
                temperature=sampling.temperature if sample else None,
                top_p=None,
                top_k=None,
                eos_token_id=self.eos,
                pad_token_id=self.eos[0],
                streamer=Relay(),
                stopping_criteria=StoppingCriteriaList([Cancelled()]),
            )
        except Exception as exc:  # the request fails, the engine serves on
            error = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(RuntimeError):  # the loop may be closing
            loop.call_soon_threadsafe(queue.put_nowait, Finished(error))

    def close(self) -> None:
        self.worker.shutdown(wait=False, cancel_futures=True)
