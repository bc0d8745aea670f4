"""``/openapi.json`` from the models that check the requests.

The pipeline reads bodies itself (a capped read, the original bytes forwarded), so FastAPI
cannot see them; each endpoint's operation is described from its pydantic model instead
(``openapi_extra``): the request body, the answer (``text/event-stream`` too where it may
stream) and its API's error shape. Nested models are moved to ``components/schemas``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel
from starlette.responses import Response

from dsdeploy.gateway.errors import ApiError
from dsdeploy.gateway.pipeline import Endpoint, run
from dsdeploy.gateway.schemas import StreamableRequest

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_CASES = {
    400: "the body is not valid, or the model does not serve this endpoint",
    401: "no valid API key",
    404: "no such model",
    413: "the body is larger than the server's limit",
    503: "the model's engine is loading, restarting or out of memory budget; retry",
}


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(ref_template=REF_TEMPLATE)


def operation_docs(endpoint: Endpoint) -> dict[str, Any]:
    answer: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if issubclass(endpoint.schema, StreamableRequest):
        answer["text/event-stream"] = {"schema": {"type": "string"}}
    shape = endpoint.shape
    errors = {
        str(shape.status(ApiError(status, ""))): {
            "description": why,
            "content": {"application/json": {"schema": json_schema(shape.body_model)}},
        }
        for status, why in ERROR_CASES.items()
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": json_schema(endpoint.schema)}},
        },
        "responses": {"200": {"description": "the engine's answer", "content": answer}, **errors},
    }


def add_endpoint(router: APIRouter, paths: list[str], endpoint: Endpoint) -> None:
    """Route POSTs on ``paths`` through the pipeline, documented from ``endpoint``."""

    async def handle(request: Request) -> Response:
        return await run(request, endpoint)

    handle.__doc__ = endpoint.schema.__doc__
    for path in paths:
        router.add_api_route(
            path,
            handle,
            methods=["POST"],
            name=endpoint.name,
            openapi_extra=operation_docs(endpoint),
        )


def media_types(operation: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from operation.get("requestBody", {}).get("content", {}).values()
    for answer in operation.get("responses", {}).values():
        yield from answer.get("content", {}).values()


class DocumentedApp(FastAPI):
    """FastAPI with nested request models moved where their references point."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            document = copy.deepcopy(super().openapi())  # shares dicts with the routes
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for item in document.get("paths", {}).values():
                for operation in item.values():
                    for media in media_types(operation):
                        schemas.update(media.get("schema", {}).pop("$defs", {}))
            self.openapi_schema = document
        return self.openapi_schema
