"""Every option dsdeploy has, declared once: type, default, bound and help together.

Built once at the edge (the CLI) from flags, ``DSDEPLOY_*`` environment variables and
defaults, then passed down; no other module reads the environment. Options come in groups
(gateway, engine, serving, hub), and a module is handed only the group it needs; the
variable names stay flat (``DSDEPLOY_PORT``, not ``DSDEPLOY_GATEWAY__PORT``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dsdeploy.paths import Dirs, resolve_dirs

DEFAULT_MODEL = "smollm2"


class GatewaySettings(BaseSettings):
    """The API server: where it listens and what it logs."""

    model_config = SettingsConfigDict(env_prefix="DSDEPLOY_", extra="forbid", frozen=True)

    host: str = Field(
        "127.0.0.1",
        description="Address the API listens on; the default keeps it private to this machine.",
    )
    port: int = Field(8000, ge=1, le=65535, description="Port the API listens on.")
    max_body_bytes: int = Field(
        4 * 2**20,
        ge=1024,
        description="Largest request body, in bytes; a larger one is refused with 413 as soon "
        "as the limit is passed (a 128k-token prompt is 0.5-1 MB of JSON).",
    )
    body_timeout_s: float = Field(
        30,
        gt=0,
        description="Seconds a client may take to send its whole request body; a body still "
        "arriving then is answered 408 (a client trickling bytes holds a connection).",
    )
    max_connections: int = Field(
        256,
        ge=1,
        description="Client connections held open at once; one more is answered 503 and "
        "closed (bodies in flight can hold up to this many times max_body_bytes).",
    )
    idle_timeout_s: int = Field(
        5,
        ge=1,
        description="Seconds a client connection may wait without a request under way: idle "
        "keep-alive connections, and clients slow to send their request headers, are closed.",
    )
    max_header_bytes: int = Field(
        16 * 2**10,
        ge=1024,
        description="Largest request line plus headers, in bytes; a larger one is answered "
        "431 and closed.",
    )
    drain_timeout_s: float = Field(
        30,
        gt=0,
        description="Seconds requests in flight may take to finish, streams included, when "
        "the server stops (SIGTERM or Ctrl-C: no new one is taken; then streams still open end "
        "with an error event and the server exits; a second signal ends them at once) or an "
        "engine is replaced (dsdeploy reload, SIGHUP: the old engine is stopped then).",
    )
    access_log: bool = Field(
        False,
        description="Log one line per HTTP request once it is answered: request id, route, "
        "model, status, key id, duration (costs gateway CPU on small machines).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Gateway log level."
    )
    reasoning_field: Literal["both", "reasoning_content", "reasoning"] = Field(
        "both",
        description="Field a reasoning model's thinking is answered in: reasoning_content "
        "(DeepSeek's API, llama-server, SGLang), reasoning (vLLM since 2025-11), or both so "
        "that every client finds its own.",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="How serve logs to stderr: text for people, or json: one object per line "
        "(time, level, logger, message, request fields) for log collectors. Neither holds "
        "keys, prompts or completions.",
    )


class EngineSettings(BaseSettings):
    """How engines are found, built, started and watched."""

    model_config = SettingsConfigDict(env_prefix="DSDEPLOY_", extra="forbid", frozen=True)

    engine_kind: Literal["llama.cpp", "vllm", "transformers"] = Field(
        "llama.cpp",
        description="Engine that serves the models: llama.cpp (GGUF; CPU, Apple, small GPUs), "
        "vllm (safetensors checkpoints on NVIDIA GPUs) or transformers (safetensors "
        "checkpoints of any architecture transformers knows; CPU or one GPU).",
    )
    llama_server: Path | None = Field(
        None, description="Use this llama-server binary instead of one on PATH or a built one."
    )
    vllm: Path | None = Field(
        None, description="Use this vllm program instead of one on PATH (for --engine vllm)."
    )
    engine_backend: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Backend to build llama.cpp with; auto picks CUDA when nvcc and a GPU exist.",
    )
    build_jobs: int | None = Field(
        None, ge=1, description="Parallel compile jobs for engine builds (default: all cores)."
    )
    nodes: int = Field(
        1,
        ge=1,
        le=64,
        description="Machines like this one a vLLM model is spread over: this node's GPUs "
        "split each layer (tensor parallel), the layers are cut into one stage per node "
        "(pipeline parallel) and the other nodes join this one's Ray cluster (RAY_ADDRESS).",
    )
    threads: int | None = Field(
        None, ge=1, le=1024, description="Engine threads for generation (default: from hardware)."
    )
    ctx_size: int | None = Field(
        None, ge=128, description="Context tokens per parallel slot (default: from the model)."
    )
    parallel: int | None = Field(
        None, ge=1, le=256, description="Requests the engine decodes at once (parallel slots)."
    )
    prompt_cache_mib: int = Field(
        256,
        ge=0,
        description="MiB of host memory llama-server may keep finished prompts' state in "
        "(its --cache-ram), so a returning conversation skips re-reading its prompt; counted "
        "in each model's planned memory. 0 keeps none. (llama-server's own default, 8192, "
        "grows the engine by up to 8 GiB that no plan counts.)",
    )
    ready_timeout_s: float = Field(
        300.0, gt=0, description="Seconds to wait for the engine to load the model and answer."
    )
    restart_backoff_max_s: float = Field(
        30.0, gt=0, description="Longest wait between restarts of an engine that keeps dying."
    )
    health_interval_s: float = Field(
        5.0,
        gt=0,
        description="Seconds between health checks of a running engine; a check that takes "
        "longer fails.",
    )
    health_failures: int = Field(
        3,
        ge=1,
        description="Failed health checks in a row after which a running engine is deemed hung, "
        "killed and restarted.",
    )


class ServingSettings(BaseSettings):
    """Which engines run when several models are served."""

    model_config = SettingsConfigDict(env_prefix="DSDEPLOY_", extra="forbid", frozen=True)

    keep_alive_s: float = Field(
        300.0,
        ge=-1,
        description="Seconds an idle engine stays loaded when several models are served "
        "(-1: until evicted for memory).",
    )
    memory_budget: str | None = Field(
        None,
        description="Memory all loaded models may plan to use together, e.g. 16G "
        "(default: RAM available at start, less a reserve).",
    )
    load_wait_s: float = Field(
        120.0, gt=0, description="Longest a request waits for its model to load before a 503."
    )
    engine_rss_limit: str = Field(
        "2x",
        description="An engine whose resident memory stays above this for 3 checks in a row "
        "is replaced (a reload: blue-green when the memory budget holds both): a factor of "
        "its resident memory when first ready (2x), a size (6G), or off.",
    )
    engine_rss_check_s: float = Field(
        10.0, gt=0, description="Seconds between checks of each engine's resident memory."
    )
    preload: list[str] = Field(
        default_factory=list, description="Models to load at start instead of on first use."
    )
    pin: list[str] = Field(
        default_factory=list, description="Models loaded at start and never unloaded."
    )


class HubSettings(BaseSettings):
    """Where pulls come from, and the credentials they send."""

    model_config = SettingsConfigDict(env_prefix="DSDEPLOY_", extra="forbid", frozen=True)

    hf_endpoint: str = Field(
        "https://huggingface.co",
        validation_alias=AliasChoices("DSDEPLOY_HF_ENDPOINT", "HF_ENDPOINT"),
        description="Hugging Face endpoint or mirror for hf: pulls (also read from HF_ENDPOINT).",
    )
    hf_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("DSDEPLOY_HF_TOKEN", "HF_TOKEN"),
        description="Hugging Face token for gated or private repos (also read from HF_TOKEN).",
    )
    ms_endpoint: str = Field(
        "https://www.modelscope.cn",
        validation_alias=AliasChoices("DSDEPLOY_MS_ENDPOINT"),
        description="ModelScope endpoint for ms: pulls.",
    )
    ms_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("DSDEPLOY_MS_TOKEN"),
        description="ModelScope access token for private repos.",
    )


class SecuritySettings(BaseSettings):
    """Who may use the gateway, how much, and what is recorded about it.

    Each security feature adds its options here (keys, network, limits, audit, weights)."""

    model_config = SettingsConfigDict(env_prefix="DSDEPLOY_", extra="forbid", frozen=True)

    db_url: str | None = Field(
        None,
        description="Database for API keys and the audit log: a SQLAlchemy URL such as "
        "postgresql+psycopg://user@host/db, shared by several gateway replicas "
        "(default: SQLite files in the data folder, mode 0600).",
    )
    redis_url: str | None = Field(
        None,
        description="Redis for rate limits shared by several gateway replicas, e.g. "
        "redis://host:6379/0 (default: limits kept in this process's memory).",
    )
    allow_ips: list[str] = Field(
        default_factory=list,
        description="Client addresses or networks (CIDR, IPv4 or IPv6) allowed to use the "
        "gateway, /health included; others get 403 (default: any address).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For "
        "header names the client (default: none; the header is ignored).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names clients may address the gateway by, besides localhost, "
        "127.0.0.1, [::1] and the bind address; others get 421 (DNS rebinding defence). "
        "'*' accepts any.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins (https://app.example.com) allowed to call the API "
        "across origins (default: none).",
    )
    tls_cert: Path | None = Field(
        None, description="PEM certificate (chain) to serve HTTPS with; needs --tls-key."
    )
    tls_key: Path | None = Field(
        None,
        description="PEM private key of --tls-cert; must not be readable by other users.",
    )

    require_keys: bool = Field(
        False,
        description="Refuse every request without a valid API key even while no key exists "
        "(by default keys are required as soon as one is active).",
    )
    insecure_no_auth: bool = Field(
        False,
        description="Serve on a non-loopback address although no API key exists, so anyone "
        "who reaches it may use it (without it, such a start is refused).",
    )
    key_cache_s: float = Field(
        5.0,
        ge=0,
        le=60,
        description="Seconds a verified API key is trusted without asking the key database "
        "again: a revoke on another replica takes effect within this time.",
    )
    auth_failures: int = Field(
        20,
        ge=1,
        description="Wrong API keys (or metrics tokens) one client address may send within "
        "auth_failure_window_s; past them its requests get 429 with Retry-After before any "
        "key is looked up, which cuts off guessing (counted in Redis with redis_url).",
    )
    auth_failure_window_s: int = Field(
        60,
        ge=1,
        le=86400,
        description="Seconds over which an address's failed authentications are counted; a "
        "blocked address may try again once its oldest failure is this old.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token for /metrics alone (API keys do not open it); without it, "
        "/metrics answers only clients on this machine (with an API key once keys exist).",
    )
    weights_key_file: Path | None = Field(
        None,
        description="File holding the key that encrypts model weights at rest: 64 hex "
        "digits, mode 0600 (default: weights.key in the config folder, made by `dsdeploy "
        "keygen-weights`).",
    )
    credentials_directory: Path | None = Field(
        None,
        validation_alias=AliasChoices("CREDENTIALS_DIRECTORY"),
        description="Set by systemd for a unit with LoadCredential=; a credential named "
        "dsdeploy-weights-key there is the weights key (used when no key file exists).",
    )
    weights_key: SecretStr | None = Field(
        None,
        description="The weights key itself, 64 hex digits: a last resort, since a process's "
        "environment is readable by its owner and root; prefer a key file or a credential.",
    )

    @field_validator("allow_ips", "trusted_proxies")
    @classmethod
    def networks(cls, values: list[str]) -> list[str]:
        """An address or network that does not parse is an error now, not a silent miss."""
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or CIDR network") from None
        return values

    @model_validator(mode="after")
    def tls_pair(self) -> SecuritySettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together; give both or neither")
        return self

    audit: bool = Field(
        True,
        description="Keep a hash-chained audit record of every request (who, what route and "
        "model, status, tokens, timings; never prompt text or keys) in audit.db or db_url.",
    )
    audit_content: Literal["off", "redacted"] = Field(
        "off",
        description="Also keep each request's prompt in its audit record: off, or redacted "
        "(ID numbers, phones, emails, cards, IP addresses and names replaced first).",
    )
    max_output_tokens: int = Field(
        4096,
        ge=1,
        description="Most tokens a request may ask to generate (max_tokens, "
        "max_completion_tokens, max_output_tokens); more is refused with 400. Also what a "
        "request that sets none reserves against its key's tokens per minute.",
    )
    max_choices: int = Field(
        8, ge=1, description="Most choices (n) one request may ask for; more is refused with 400."
    )
    max_stop_sequences: int = Field(
        16, ge=0, description="Most stop strings one request may give; more is refused with 400."
    )
    max_stop_chars: int = Field(
        256, ge=1, description="Longest stop string, in characters; longer is refused with 400."
    )
    max_messages: int = Field(
        1024,
        ge=1,
        description="Most messages (or input items) one request may carry; more is refused "
        "with 400.",
    )
    max_queued_requests: int = Field(
        128,
        ge=1,
        description="Requests this gateway holds at once, waiting for an engine or in "
        "flight, whatever their key; one more is answered 503 (529 on Anthropic routes) with "
        "Retry-After.",
    )
    slot_lease_s: float = Field(
        60,
        gt=0,
        description="With redis_url: how long a replica that stopped answering keeps its "
        "keys' concurrent-request slots before they are freed (leases are renewed while "
        "requests run).",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("redis://", "rediss://")):
            raise ValueError("give a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379/0")
        return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DSDEPLOY_", extra="forbid", frozen=True)

    home: Path | None = Field(
        None, description="Keep data, cache and config under this one folder instead of XDG dirs."
    )
    cache_dir: Path | None = Field(
        None, description="Cache folder (engine builds, downloads); overrides the one from home."
    )
    xdg_data_home: Path | None = Field(
        None,
        validation_alias=AliasChoices("XDG_DATA_HOME"),
        description="XDG data base directory (read from XDG_DATA_HOME).",
    )
    xdg_cache_home: Path | None = Field(
        None,
        validation_alias=AliasChoices("XDG_CACHE_HOME"),
        description="XDG cache base directory (read from XDG_CACHE_HOME).",
    )
    xdg_config_home: Path | None = Field(
        None,
        validation_alias=AliasChoices("XDG_CONFIG_HOME"),
        description="XDG config base directory (read from XDG_CONFIG_HOME).",
    )
    # Each group reads its own DSDEPLOY_* variables when it is made.
    gateway: GatewaySettings = Field(
        default_factory=GatewaySettings, description=GatewaySettings.__doc__
    )
    engine: EngineSettings = Field(
        default_factory=EngineSettings, description=EngineSettings.__doc__
    )
    serving: ServingSettings = Field(
        default_factory=ServingSettings, description=ServingSettings.__doc__
    )
    hub: HubSettings = Field(default_factory=HubSettings, description=HubSettings.__doc__)
    security: SecuritySettings = Field(
        default_factory=SecuritySettings, description=SecuritySettings.__doc__
    )

    @property
    def dirs(self) -> Dirs:
        return resolve_dirs(
            home=self.home,
            cache=self.cache_dir,
            xdg_data_home=self.xdg_data_home,
            xdg_cache_home=self.xdg_cache_home,
            xdg_config_home=self.xdg_config_home,
        )


GROUPS: dict[
    str,
    type[GatewaySettings | EngineSettings | ServingSettings | HubSettings | SecuritySettings],
] = {
    "gateway": GatewaySettings,
    "engine": EngineSettings,
    "serving": ServingSettings,
    "hub": HubSettings,
    "security": SecuritySettings,
}


def option_field(name: str) -> Any:
    """The one declaration of an option, wherever its group is (for flag help)."""
    for model in (Settings, *GROUPS.values()):
        if name in model.model_fields and name not in GROUPS:
            return model.model_fields[name]
    raise KeyError(name)


def settings_from(flags: dict[str, Any]) -> Settings:
    """Flags given on the command line win over DSDEPLOY_* variables, which win over
    defaults; each flag goes to the group that declares it."""
    given = {name: value for name, value in flags.items() if value is not None}
    groups = {
        group: model(**{k: v for k, v in given.items() if k in model.model_fields})
        for group, model in GROUPS.items()
    }
    top = {k: v for k, v in given.items() if k in Settings.model_fields and k not in GROUPS}
    unknown = set(given) - set(top) - {k for model in GROUPS.values() for k in model.model_fields}
    if unknown:
        raise TypeError(f"not an option: {', '.join(sorted(unknown))}")
    return Settings.model_validate(top | groups)
