"""``/openapi.json`` from the models that check the requests.

The pipeline reads bodies itself (a capped read, the original bytes forwarded), so FastAPI
cannot see them; each endpoint's operation is described from its pydantic model instead
(``openapi_extra``): the request body, the answer (``text/event-stream`` too where it may
stream) and its API's error shape. Nested models are moved to ``components/schemas``.

Every operation also lists what the middlewares in front of the routes may answer instead
(network guard, API keys: ``network.ANSWERS``, ``auth.answers``), in its path's error
shape, so a client generated from the document knows every status it can meet.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import Response

from dsdeploy.gateway import auth, network
from dsdeploy.gateway.errors import ApiError, ErrorShape, shape_for_path
from dsdeploy.gateway.pipeline import Endpoint, run
from dsdeploy.gateway.schemas import StreamableRequest

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_CASES = {
    400: "the body is not valid, asks for more than the server's caps, or the model does "
    "not serve this endpoint",
    404: "no such model, or one this API key may not use",
    408: "the body did not arrive within the server's time limit",
    413: "the body is larger than the server's limit",
    429: "the API key's requests or tokens per minute, or its requests at once, are used "
    "up; see Retry-After and x-ratelimit-*",
    503: "the model's engine is loading, restarting or out of memory budget, the gateway "
    "holds as many requests as it may, or the limits store is not answering; retry",
}
"""What the pipeline itself answers besides 200, on every API route."""


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(ref_template=REF_TEMPLATE)


def add_errors(responses: dict[str, Any], shape: ErrorShape, cases: dict[int, str]) -> None:
    """Each case as an answer with the shape's error body (under the status the shape
    uses: Anthropic's 529 for 503); a status listed already gains the description."""
    for status, why in cases.items():
        entry = responses.setdefault(str(shape.status(ApiError(status, ""))), {})
        described = entry.get("description")
        if not described:
            entry["description"] = why
        elif why not in described:
            entry["description"] = f"{described}; {why}"
        entry.setdefault("content", {"application/json": {"schema": json_schema(shape.body_model)}})


def operation_docs(endpoint: Endpoint) -> dict[str, Any]:
    answer: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if issubclass(endpoint.schema, StreamableRequest):
        answer["text/event-stream"] = {}  # events, whose data the 200 schema does not describe
    responses = {"200": {"description": "the engine's answer", "content": answer}}
    add_errors(responses, endpoint.shape, ERROR_CASES)
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": json_schema(endpoint.schema)}},
        },
        "responses": responses,
    }


def middleware_answers(path: str) -> list[dict[int, str]]:
    """What the network guard and the key check may answer on ``path``, in that order."""
    return [network.ANSWERS, auth.answers(path)]


class PipelineRoute(APIRoute):
    """Documented like any FastAPI route, but its endpoint is called as Starlette calls
    one, without FastAPI's request handler (dependency solving, body handling): the
    pipeline reads and checks the body itself, and that handler cost ~50 µs a request."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return endpoint


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
            route_class_override=PipelineRoute,
        )


def media_types(operation: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from operation.get("requestBody", {}).get("content", {}).values()
    for answer in operation.get("responses", {}).values():
        yield from answer.get("content", {}).values()


class DocumentedApp(FastAPI):
    """FastAPI with the middlewares' answers on every operation, and nested models moved
    where their references point. ``shapes``: as for ``errors.shape_for_path``."""

    def __init__(self, *, shapes: Sequence[tuple[str, ErrorShape]], **options: Any) -> None:
        super().__init__(**options)
        self.shapes = shapes

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            document = copy.deepcopy(super().openapi())  # shares dicts with the routes
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for path, item in document.get("paths", {}).items():
                shape = shape_for_path(path, self.shapes)
                for operation in item.values():
                    responses = operation.setdefault("responses", {})
                    for cases in middleware_answers(path):
                        add_errors(responses, shape, cases)
                    for media in media_types(operation):
                        schemas.update(media.get("schema", {}).pop("$defs", {}))
            self.openapi_schema = document
        return self.openapi_schema
