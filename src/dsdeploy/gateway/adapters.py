"""Several LoRA adapters over one loaded base, chosen by the request's model name.

llama-server loads every adapter of a base at start (``--lora``, all at scale 0) and applies
the ones a request lists in its ``lora`` field, per slot. A slot keeps the adapters of its
last request when the next one lists none, so this hook sets the field on *every* request
to such an engine: the adapter's own index at scale 1 for an adapter's name, all at 0 for
the base's."""

from __future__ import annotations

import json
from collections.abc import Mapping

from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.schemas import ModelRequest


class AdapterSelection(Hook):
    def __init__(self, selections: Mapping[str, tuple[int, int | None]]) -> None:
        """``selections``: model name -> (adapters its engine loads, this name's index or
        None for the base itself); names of engines without adapters are absent."""
        self.selections = dict(selections)

    async def forward(self, ctx: RequestContext, body: ModelRequest, raw: bytes) -> bytes:
        selection = self.selections.get(body.model)
        if selection is None:
            return raw
        count, index = selection
        request = json.loads(raw)
        request["lora"] = [{"id": i, "scale": 1.0 if i == index else 0.0} for i in range(count)]
        return json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode()

    def reads_events_of(self, ctx: RequestContext) -> bool:
        return False


def adapter_selections(
    adapters_of: Mapping[str, tuple[str, ...]],
) -> dict[str, tuple[int, int | None]]:
    """From each base's adapter names (in the order its engine loads them)."""
    selections: dict[str, tuple[int, int | None]] = {}
    for base, adapters in adapters_of.items():
        if not adapters:
            continue
        selections[base] = (len(adapters), None)
        for index, adapter in enumerate(adapters):
            selections[adapter] = (len(adapters), index)
    return selections
