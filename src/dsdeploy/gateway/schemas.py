"""The OpenAI request bodies the gateway checks before the engine sees them (and llama.cpp's
tokenize/detokenize, which answer errors the OpenAI way).

Strict types (a string is not a number) and extra fields allowed: engines take extensions
such as ``ignore_eos`` or ``top_k``, and the gateway forwards the original bytes unchanged.
The same models describe the request bodies in ``/openapi.json``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.config import JsonDict

from dsdeploy.gateway.errors import MAX_ECHO, ApiError, clip


def whole_number(value: Any) -> Any:
    """JSON Schema's ``integer`` includes ``49.0`` (and so do JavaScript clients, which
    have no other number), while strict pydantic refuses it; strings stay refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Whole = Annotated[int, BeforeValidator(whole_number)]
"""An integer field: a number with no fraction."""
TokenIds = list[Whole]
PromptInput = str | list[str] | TokenIds | list[TokenIds]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ModelRequest(WireModel):
    """Every routed request names the model it is for."""

    model: str = Field(min_length=1, max_length=256)

    @property
    def choices(self) -> int:
        """Answers asked for in one request; checked against the engine's ``max_choices``."""
        return 1


T = TypeVar("T", bound=ModelRequest)


class StreamableRequest(ModelRequest):
    """A request whose answer may come as server-sent events."""

    stream: bool = False


class StreamOptions(WireModel):
    include_usage: bool = False


STREAM_OPTIONS_NEED_STREAM: JsonDict = {
    "if": {"required": ["stream_options"], "properties": {"stream_options": {"type": "object"}}},
    "then": {"required": ["stream"], "properties": {"stream": {"const": True}}},
}
"""The rule below, stated in ``/openapi.json`` too, so clients and fuzzers generated from
it know it (schemathesis sent such bodies as valid and got a 400)."""


class SamplingRequest(StreamableRequest):
    """Fields shared by chat and text completions."""

    model_config = ConfigDict(json_schema_extra=STREAM_OPTIONS_NEED_STREAM)

    stream_options: StreamOptions | None = None
    max_tokens: Whole | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: Whole = Field(
        1, ge=1, le=128, description="Choices to generate; at most the model's parallel slots."
    )
    stop: str | list[str] | None = Field(None, max_length=16)
    seed: Whole | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> SamplingRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    @property
    def choices(self) -> int:
        return self.n


class ChatMessage(WireModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    reasoning_content: str | None = Field(
        None, description="An earlier answer's reasoning (DeepSeek's name for it)."
    )
    reasoning: str | None = Field(None, description="The same, under vLLM's name.")


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Whole | None = Field(None, ge=1)
    include_reasoning: bool = Field(
        True, description="False leaves a reasoning model's thinking out of the answer."
    )
    chat_template_kwargs: dict[str, Any] | None = Field(
        None, description="Passed to the chat template (DeepSeek V3.1+: thinking)."
    )


class CompletionRequest(SamplingRequest):
    prompt: PromptInput


class EmbeddingRequest(ModelRequest):
    input: PromptInput
    encoding_format: Literal["float", "base64"] = "float"
    stream: Literal[False] = False


class ResponsesRequest(StreamableRequest):
    """OpenAI's Responses API (``/v1/responses``)."""

    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: Whole | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)


class TokenizeRequest(ModelRequest):
    """llama.cpp's ``/tokenize``; ``model`` is dsdeploy's addition, to route it."""

    content: str | list[Whole | str]
    add_special: bool = False
    parse_special: bool = True
    with_pieces: bool = False


class DetokenizeRequest(ModelRequest):
    """llama.cpp's ``/detokenize``; ``model`` is dsdeploy's addition, to route it."""

    tokens: list[Whole]


def parse_request(schema: type[T], body: bytes) -> T:
    """Validate a body, or raise the 400 that names the first field at fault."""
    try:
        return schema.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            raise ApiError(400, "the request body is not valid JSON", code="invalid_json") from None
        if first["type"] == "model_type" and not first["loc"]:
            raise ApiError(400, "the request body must be a JSON object") from None
        field = clip(".".join(str(part) for part in first["loc"])) or None
        message = clip(first["msg"].removeprefix("Value error, "), 2 * MAX_ECHO)
        raise ApiError(400, f"{field}: {message}" if field else message, param=field) from None
