"""Render the gateway's nginx configuration from a ``RoutingTable`` (pure: text in, text out).

One server block on one port. Each API's endpoint proxies to an upstream of its slots
(the ports its replicas take turns on, see ``slots``; ``least_conn``, ``max_conns`` per
slot, keep-alive): an empty slot refuses and nginx tries the next, so replicas come and go
without a reload. When no slot answers, nginx's 502 becomes a 503 JSON; an API without
any slot answers 503 JSON directly, since nginx rejects an empty upstream. A traffic
splitter picks an API with ``split_clients`` on ``$request_id``; a copy of its shadow's
weight % of the requests goes to the shadow API (see ``_shadow_locations``). Replicas serve
their predict route at ``/predict``; the gateway rewrites ``/<endpoint>`` to it.

Every API and splitter also answers SageMaker Runtime's ``InvokeEndpoint`` under its name,
``POST /endpoints/<name>/invocations``, so boto3's ``invoke_endpoint`` works against the
gateway: an API's goes to the same path on its replicas (they serve their model under the
API's name), over the same slots with the same retries (plus a replica's 429, which it
answers while loading); a splitter's is split like its endpoint, names the API that
answered in ``x-Amzn-Invoked-Production-Variant`` and copies to its shadow's runtime path.
The gateway's own errors there are SageMaker's (``x-amzn-ErrorType`` and a ``message``): an
unknown name is a 400 ``ValidationError``, no replica a 503 ``ServiceUnavailable``, a replica
that does not answer in time a 424 ``ModelError``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ferry.runtime.base import ApiRoute, RoutingTable, SplitRoute

__all__ = ["GatewayLayout", "GatewayOptions", "config_digest", "render", "runtime_path"]

REPLICA_PATH = "/predict"
RUNTIME_PREFIX = "/endpoints/"
RUNTIME_SUFFIX = "/invocations"
VARIANT_HEADER = "x-Amzn-Invoked-Production-Variant"
# a replica answers its runtime path with 429 while loading, before the model runs
_RUNTIME_RETRIES = "proxy_next_upstream error http_503 http_429 non_idempotent;"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_ENDPOINT = re.compile(r"^/[A-Za-z0-9_.~/-]{1,200}$")
_DIGEST = "@CONFIG_DIGEST@"
_BUSY = "no replica could take the request (at capacity or unreachable)"
_ADDRESS = re.compile(r"^[0-9.]+:[0-9]{1,5}$|^\[[0-9a-fA-F:]+\]:[0-9]{1,5}$")


@dataclass(frozen=True, slots=True)
class GatewayLayout:
    """Where ferry's own nginx instance keeps its files (never the system nginx's)."""

    prefix: Path

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def pid(self) -> Path:
        return self.prefix / "nginx.pid"

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    @property
    def temp(self) -> Path:
        return self.prefix / "temp"


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """Knobs of the rendered configuration."""

    port: int = 8888
    host: str = "127.0.0.1"
    worker_processes: int = 1
    upstream_timeout_s: float = 65.0  # above the replicas' default 60 s request timeout
    max_body_bytes: int = 6 * 1024 * 1024
    keepalive: int = 64
    access_log: bool = True
    user: str | None = None  # workers' user when the master runs as root


def _quoted(body: Mapping[str, object]) -> str:
    """``body`` as JSON in an nginx single-quoted string."""
    text = json.dumps(body)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _json_body(error: str, code: str) -> str:
    """ferry's JSON error body as an nginx single-quoted string."""
    return _quoted({"error": error, "code": code})


def runtime_path(name: str) -> str:
    """Where SageMaker Runtime's ``InvokeEndpoint`` for ``name`` is sent."""
    return f"{RUNTIME_PREFIX}{name}{RUNTIME_SUFFIX}"


def _check(table: RoutingTable) -> None:
    """Refuse names that could break out of the config (they come from user files)."""
    names = [a.api for a in table.apis] + [s.name for s in table.splitters]
    names += [api for s in table.splitters for api, _ in s.weights]
    names += [s.shadow for s in table.splitters if s.shadow]
    for name in names:
        if not _NAME.match(name):
            raise ValueError(f"api name {name!r} is not allowed in a gateway route")
    endpoints = [a.endpoint for a in table.apis] + [s.endpoint for s in table.splitters]
    for endpoint in endpoints:
        if not _ENDPOINT.match(endpoint) or "//" in endpoint or endpoint.startswith("/_ferry"):
            raise ValueError(f"endpoint {endpoint!r} is not allowed in a gateway route")
    if len(set(endpoints)) != len(endpoints):
        raise ValueError("two routes share an endpoint")
    routed = [a.api for a in table.apis] + [s.name for s in table.splitters]
    if len(set(routed)) != len(routed):
        raise ValueError("two routes share a name")
    addresses = [address for a in table.apis for address in a.addresses]
    for address in addresses:
        if not _ADDRESS.match(address):
            raise ValueError(f"replica address {address!r} is not HOST:PORT")


def _upstream_name(api: str) -> str:
    return "ferry_api_" + re.sub(r"[^A-Za-z0-9_]", "_", api)


def _servers(addresses: list[str], max_conns: int) -> list[str]:
    """Every slot twice: as a primary that a refusal takes out of rotation for a second,
    and as a backup that is never taken out, for the moment every primary is out (say a
    rolling update stopping the old replicas before nginx has seen the new ones listen)."""
    primary = [
        f"    server {a} max_conns={max_conns} max_fails=1 fail_timeout=1s;" for a in addresses
    ]
    if len(addresses) < 2:
        return [f"    server {a} max_conns={max_conns};" for a in addresses]
    return [
        *primary,
        *(f"    server {a} max_conns={max_conns} max_fails=0 backup;" for a in addresses),
    ]


def _upstream(route: ApiRoute, options: GatewayOptions, addresses: list[str]) -> list[str]:
    name = _upstream_name(route.api)
    lines = [f"upstream {name} {{", f"    zone {name} 64k;", "    least_conn;"]
    lines += _servers(addresses, max(1, route.max_concurrency))
    lines += [
        f"    keepalive {options.keepalive};",
        "    keepalive_requests 100000;",
        "    keepalive_timeout 4s;  # below the replicas' 5 s, so nginx closes idle ones first",
        "}",
    ]
    return lines


def _addresses(route: ApiRoute, slots: Mapping[str, Sequence[int]]) -> list[str]:
    found = set(route.addresses) | {f"127.0.0.1:{port}" for port in slots.get(route.api, ())}
    return sorted(found)


def _unavailable(api: str) -> str:
    return f"return 503 {_json_body(f'api {api} has no ready replica', 'unavailable')};"


def _proxy(api: str, routable: set[str]) -> str:
    if api not in routable:
        return _unavailable(api)
    return f"proxy_pass http://{_upstream_name(api)}{REPLICA_PATH};"


def _split_var(split: SplitRoute) -> str:
    return "$ferry_split_" + re.sub(r"[^A-Za-z0-9_]", "_", split.name)


def _split_clients(split: SplitRoute) -> list[str]:
    lines = [f'split_clients "$request_id" {_split_var(split)} {{']
    weighted = [(api, weight) for api, weight in split.weights if weight > 0]
    for index, (api, weight) in enumerate(weighted):
        key = "*" if index == len(weighted) - 1 else f"{weight}%"
        lines.append(f"    {key} {api};")
    return [*lines, "}"]


def _mirrored(split: SplitRoute, routable: set[str]) -> str | None:
    """The shadow API that gets copies, if any: one with replicas and a weight above 0."""
    if split.shadow is None or split.shadow not in routable or split.shadow_weight <= 0:
        return None
    return split.shadow


def _shadow_var(split: SplitRoute) -> str:
    return "$ferry_shadow_" + re.sub(r"[^A-Za-z0-9_]", "_", split.name)


def _shadow_clients(split: SplitRoute, routable: set[str]) -> list[str]:
    """Which requests the shadow gets a copy of: ``shadow_weight`` % of them, drawn on
    another key than the split's, so the copies come from every API's share alike."""
    if _mirrored(split, routable) is None or split.shadow_weight >= 100:
        return []
    return [
        f'split_clients "${{request_id}}:shadow" {_shadow_var(split)} {{',
        f"    {split.shadow_weight}% 1;",
        '    * "";',
        "}",
    ]


def _relay_host(options: GatewayOptions) -> str:
    """Where the gateway reaches itself: its own address, loopback for a wildcard."""
    host = options.host.strip("[]")
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _relay_url(options: GatewayOptions) -> str:
    host = _relay_host(options)
    return f"http://{f'[{host}]' if ':' in host else host}:{options.port}"


@dataclass(frozen=True, slots=True)
class _Copy:
    """The locations a shadow copy passes through: ``mirror`` (what the splitter's
    locations mirror to), ``relay`` (on the gateway itself) and ``target`` (the path on the
    shadow's replicas). None is under ``/_ferry/split/<splitter>/``, where every API name
    (``shadow`` too) is a location."""

    mirror: str
    relay: str
    target: str
    retries: str = ""  # the send's proxy_next_upstream, when not the http block's


def _endpoint_copy(split: SplitRoute) -> _Copy:
    return _Copy(f"/_ferry/mirror/{split.name}", f"/_ferry/shadow/{split.name}", REPLICA_PATH)


def _runtime_copy(split: SplitRoute, shadow: str) -> _Copy:
    name = split.name
    relay = f"/_ferry/runtime/relay/{name}"
    return _Copy(f"/_ferry/runtime/mirror/{name}", relay, runtime_path(shadow), _RUNTIME_RETRIES)


def _shadow_locations(
    split: SplitRoute, shadow: str, options: GatewayOptions, copy: _Copy
) -> list[str]:
    """A copy is fire-and-forget. nginx does not reuse a client's kept-alive connection
    until every ``mirror`` subrequest of its last request is done, so a slow shadow would
    delay the client's next request. The mirror subrequest therefore goes to a relay on
    the gateway itself, which answers 204 at once and sends the copy on from its own
    ``mirror`` (and keeps sending it after the 204 has closed the relay's connection).
    That connection is not kept alive: nginx would not read a next request on it before
    the copy is answered."""
    sample = []
    if split.shadow_weight < 100:
        sample = [
            f'    if ({_shadow_var(split)} = "") {{  # not among the copied {split.shadow_weight}%',
            "        return 204;",
            "    }",
        ]
    return [
        f"location = {copy.mirror} {{",
        "    internal;",
        *sample,
        "    # a relay's connection is busy until its copy is answered: never kept alive",
        f"    proxy_pass {_relay_url(options)}{copy.relay};",
        "}",
        f"location = {copy.relay} {{",
        *_only_the_gateway(options),
        "    access_log off;",
        f"    mirror {copy.relay}/send;",
        "    mirror_request_body on;",
        "    proxy_pass_request_body off;",
        '    proxy_set_header Content-Length "";',
        '    proxy_set_header Connection "";',
        "    proxy_pass http://ferry_gateway/_ferry/ack;",
        "}",
        f"location = {copy.relay}/send {{",
        "    internal;",
        "    proxy_ignore_client_abort on;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Request-ID $ferry_request_id;",
        "    proxy_set_header X-Forwarded-For $http_x_forwarded_for;",
        *([f"    {copy.retries}"] if copy.retries else []),
        f"    proxy_pass http://{_upstream_name(shadow)}{copy.target};",
        "}",
    ]


def _only_the_gateway(options: GatewayOptions) -> list[str]:
    return [f"    allow {_relay_host(options)};", "    deny all;"]


def _ack_location(options: GatewayOptions) -> list[str]:
    """What a relay answers its caller with: 204, without running anything."""
    return [
        "location = /_ferry/ack {",
        *_only_the_gateway(options),
        "    access_log off;",
        "    return 204;",
        "}",
    ]


def _gateway_upstream(options: GatewayOptions) -> list[str]:
    """The gateway itself, for the relays' answers (kept alive: they end at once)."""
    host = _relay_host(options)
    address = f"[{host}]" if ":" in host else host
    return [
        "upstream ferry_gateway {",
        f"    server {address}:{options.port};",
        "    keepalive 8;",
        "}",
    ]


def _split_apis(split: SplitRoute) -> list[str]:
    return list(dict.fromkeys(api for api, weight in split.weights if weight > 0))


def _split_locations(split: SplitRoute, routable: set[str], options: GatewayOptions) -> list[str]:
    internal = f"/_ferry/split/{split.name}"
    shadow = _mirrored(split, routable)
    copy = _endpoint_copy(split)
    lines = [f"location = {split.endpoint} {{"]
    lines += [f"    rewrite ^ {internal}/{_split_var(split)} last;", "}"]
    if shadow is not None:
        lines += _shadow_locations(split, shadow, options, copy)
    for api in _split_apis(split):
        lines += [f"location = {internal}/{api} {{", "    internal;"]
        if shadow is not None:  # the mirror subrequest is issued here, after the redirect
            lines += [f"    mirror {copy.mirror};", "    mirror_request_body on;"]
        lines += [f"    {_proxy(api, routable)}", "}"]
    return lines


# --- SageMaker Runtime InvokeEndpoint ----------------------------------------------------


def _sagemaker_error(status: int, kind: str, body: Mapping[str, object]) -> list[str]:
    """Answer as SageMaker Runtime does: boto3 raises the exception named by the header."""
    return [
        f'add_header x-amzn-ErrorType "{kind}:" always;',
        f"return {status} {_quoted(body)};",
    ]


# a body over client_max_body_size, refused before the location's handler runs
_RUNTIME_TOO_LARGE = "error_page 413 = @ferry_runtime_too_large;"


def _runtime_unavailable(api: str) -> list[str]:
    message = f"api {api} has no ready replica"
    return [_RUNTIME_TOO_LARGE, *_sagemaker_error(503, "ServiceUnavailable", {"message": message})]


def _runtime_proxy(api: str) -> list[str]:
    """To ``api``'s replicas at their runtime path, over the endpoint's slots and retries.

    A replica still loading answers this path with 429 (``ModelNotReadyException``) where
    ``/predict`` answers 503, before the model runs: that goes on to the next slot too. The
    last attempt's 429 is passed on as is; its 503 (over ``--max-inflight``), a 502 (no slot
    answered) and a 504 become SageMaker's errors."""
    return [
        _RUNTIME_RETRIES,
        "proxy_intercept_errors on;",
        "error_page 502 503 = @ferry_runtime_unavailable;",
        "error_page 504 = @ferry_runtime_timeout;",
        _RUNTIME_TOO_LARGE,
        f"proxy_pass http://{_upstream_name(api)}{runtime_path(api)};",
    ]


def _runtime_to(api: str, routable: set[str]) -> list[str]:
    if api not in routable:
        return _runtime_unavailable(api)
    return _runtime_proxy(api)


def _runtime_errors(names: Sequence[str], options: GatewayOptions) -> list[str]:
    """The gateway's own SageMaker errors: an unknown name (400, naming what is routed; a
    name of other characters than an API's is not repeated, so the JSON stays valid), no
    replica (503), a replica that did not answer in time (424, as SageMaker's timeout) and
    a body over the limit (413 with SageMaker's message and, as there, no error type)."""
    known = ", ".join(names) if names else "none"
    unknown = f"not found; the gateway serves the endpoints: {known}"
    timeout = "the replica did not answer in time"
    timed_out = {
        "Message": f'Received server error (504) from primary with message "{timeout}".',
        "OriginalStatusCode": 504,
        "OriginalMessage": timeout,
    }
    too_large = {"message": f"HTTP content length exceeded {options.max_body_bytes} bytes."}
    pattern = "^" + re.escape(RUNTIME_PREFIX) + "{}" + re.escape(RUNTIME_SUFFIX) + "$"
    named = pattern.format("([A-Za-z0-9_.-]+)")
    other = pattern.format("[^/]+")
    return [
        "location @ferry_runtime_unavailable {",
        *_indent(_sagemaker_error(503, "ServiceUnavailable", {"message": _BUSY}), 1),
        "}",
        "location @ferry_runtime_timeout {",
        *_indent(_sagemaker_error(424, "ModelError", timed_out), 1),
        "}",
        "location @ferry_runtime_too_large {",
        f"    return 413 {_quoted(too_large)};",
        "}",
        f'location ~ "{named}" {{',
        f"    {_RUNTIME_TOO_LARGE}",
        *_indent(
            _sagemaker_error(400, "ValidationError", {"message": f"Endpoint $1 {unknown}"}), 1
        ),
        "}",
        f'location ~ "{other}" {{',
        f"    {_RUNTIME_TOO_LARGE}",
        *_indent(_sagemaker_error(400, "ValidationError", {"message": f"Endpoint {unknown}"}), 1),
        "}",
    ]


def _runtime_locations(
    table: RoutingTable, options: GatewayOptions, routable: set[str]
) -> list[str]:
    """``POST /endpoints/<name>/invocations`` for every API and splitter, unless an
    endpoint already takes that path."""
    taken = {a.endpoint for a in table.apis} | {s.endpoint for s in table.splitters}
    apis = sorted(table.apis, key=lambda r: r.api)
    splitters = sorted(table.splitters, key=lambda s: s.name)
    lines = _runtime_errors(sorted([a.api for a in apis] + [s.name for s in splitters]), options)
    for route in apis:
        if runtime_path(route.api) not in taken:
            lines += [f"location = {runtime_path(route.api)} {{"]
            lines += [*_indent(_runtime_to(route.api, routable), 1), "}"]
    for split in splitters:
        if runtime_path(split.name) not in taken:
            lines += _runtime_split_locations(split, routable, options)
    return lines


def _runtime_split_locations(
    split: SplitRoute, routable: set[str], options: GatewayOptions
) -> list[str]:
    """Split as the splitter's endpoint is (the same draw), each API at its own runtime path;
    the answer names the API, as SageMaker names the production variant."""
    internal = f"/_ferry/runtime/split/{split.name}"
    shadow = _mirrored(split, routable)
    lines = [f"location = {runtime_path(split.name)} {{", f"    {_RUNTIME_TOO_LARGE}"]
    lines += [f"    rewrite ^ {internal}/{_split_var(split)} last;", "}"]
    copy = None
    if shadow is not None:
        copy = _runtime_copy(split, shadow)
        lines += _shadow_locations(split, shadow, options, copy)
    for api in _split_apis(split):
        lines += [f"location = {internal}/{api} {{", "    internal;"]
        if copy is not None:
            lines += [f"    mirror {copy.mirror};", "    mirror_request_body on;"]
        if api in routable:
            lines += [
                f"    proxy_hide_header {VARIANT_HEADER};",
                f"    add_header {VARIANT_HEADER} {api} always;",
            ]
        lines += [*_indent(_runtime_to(api, routable), 1), "}"]
    return lines


def _main_block(layout: GatewayLayout, options: GatewayOptions) -> list[str]:
    return [
        "# Generated by ferry: the local cluster's gateway. Edits are overwritten.",
        "daemon on;",
        *([f"user {options.user};"] if options.user else []),
        f"worker_processes {options.worker_processes};",
        f"pid {layout.pid};",
        f"error_log {layout.error_log} warn;",
        "events {",
        "    worker_connections 8192;",
        "}",
    ]


def _http_settings(layout: GatewayLayout, options: GatewayOptions) -> list[str]:
    timeout = f"{options.upstream_timeout_s:g}s"
    temp = layout.temp
    access = f"access_log {layout.access_log} ferry buffer=64k flush=1s;"
    return [
        "default_type application/json;",
        "server_tokens off;",
        'log_format ferry \'$remote_addr [$time_local] "$request" $status $body_bytes_sent '
        "$request_time $upstream_addr $upstream_response_time $ferry_request_id';",
        access if options.access_log else "access_log off;",
        f"client_body_temp_path {temp}/client_body;",
        f"proxy_temp_path {temp}/proxy;",
        f"fastcgi_temp_path {temp}/fastcgi;",
        f"uwsgi_temp_path {temp}/uwsgi;",
        f"scgi_temp_path {temp}/scgi;",
        f"client_max_body_size {options.max_body_bytes};",
        "client_body_buffer_size 1m;",
        "keepalive_requests 100000;",
        "map $http_x_request_id $ferry_request_id {",
        '    "" $request_id;',
        "    default $http_x_request_id;",
        "}",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $host;",
        "proxy_set_header X-Request-ID $ferry_request_id;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_connect_timeout 5s;",
        f"proxy_send_timeout {timeout};",
        f"proxy_read_timeout {timeout};",
        # refused (an empty slot, a draining replica), reset (a kept-alive connection the
        # replica closed) or 503 (loading, or over its in-flight limit): the model did not
        # run, so even a POST goes on to the next slot. A replica dying mid-request is an
        # error too: that prediction runs again elsewhere (see decision 0007)
        "proxy_next_upstream error http_503 non_idempotent;",
        "proxy_buffering off;",
    ]


def _server_block(table: RoutingTable, options: GatewayOptions, routable: set[str]) -> list[str]:
    lines = [
        f"listen {options.host}:{options.port} backlog=4096;",
        "error_page 502 = @ferry_unavailable;",
        "error_page 504 = @ferry_timeout;",
        "location @ferry_unavailable {",
        f"    return 503 {_json_body(_BUSY, 'unavailable')};",
        "}",
        "location @ferry_timeout {",
        f"    return 504 {_json_body('the replica did not answer in time', 'timeout')};",
        "}",
        "location = /_ferry/healthz {  # the digest tells which config a worker runs",
        f'    return 200 \'{{"status":"live","config":"{_DIGEST}"}}\';',
        "}",
        "location / {",
        f"    return 404 {_json_body('no api is routed at this path', 'not_found')};",
        "}",
    ]
    for route in sorted(table.apis, key=lambda r: r.endpoint):
        lines += [f"location = {route.endpoint} {{", f"    {_proxy(route.api, routable)}", "}"]
    splitters = sorted(table.splitters, key=lambda s: s.endpoint)
    for split in splitters:
        lines += _split_locations(split, routable, options)
    lines += _runtime_locations(table, options, routable)
    if any(_mirrored(split, routable) for split in splitters):
        lines += _ack_location(options)
    return lines


def _indent(lines: list[str], depth: int) -> list[str]:
    return [("    " * depth + line) if line else line for line in lines]


def render(
    table: RoutingTable,
    layout: GatewayLayout,
    options: GatewayOptions,
    slots: Mapping[str, Sequence[int]] | None = None,
) -> str:
    """The whole ``nginx.conf`` for ``table``; deterministic, so unchanged routes re-render
    byte for byte and need no reload.

    An API's upstream lists its ``slots`` (every port a replica of it may listen on) as
    well as the route's addresses, so which replicas are ready changes nothing here."""
    _check(table)
    slots = slots or {}
    upstreams = {route.api: _addresses(route, slots) for route in table.apis}
    routable = {api for api, addresses in upstreams.items() if addresses}
    http: list[str] = _http_settings(layout, options)
    for route in sorted(table.apis, key=lambda r: r.api):
        if upstreams[route.api]:
            http += _upstream(route, options, upstreams[route.api])
    splitters = sorted(table.splitters, key=lambda s: s.name)
    for split in splitters:
        http += _split_clients(split)
        http += _shadow_clients(split, routable)
    if any(_mirrored(split, routable) for split in splitters):
        http += _gateway_upstream(options)
    http += ["server {", *_indent(_server_block(table, options, routable), 1), "}"]
    lines = [*_main_block(layout, options), "http {", *_indent(http, 1), "}"]
    text = "\n".join(lines) + "\n"
    return text.replace(_DIGEST, hashlib.sha256(text.encode()).hexdigest()[:16])


def config_digest(text: str) -> str:
    """The digest a rendered config answers on ``/_ferry/healthz`` (empty if none)."""
    match = re.search(r'"config":"([0-9a-f]{16})"', text)
    return match.group(1) if match else ""
