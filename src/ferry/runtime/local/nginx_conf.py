"""The gateway's nginx configuration and its routes file (pure: text in, text out).

The configuration is static: it names no API, so deploying, changing or deleting an API
never reloads nginx, and a reload (which closes every idle kept-alive client connection,
racing the requests clients send on them) happens only when ferry itself or the gateway's
options change. The routes live in ``routes.tsv`` (``render_routes``), which the gateway's
Lua module (``ferry_gateway.lua``, run by nginx's Lua module) reads when nginx starts and
again when ferry posts to ``/_ferry/routes``; see decision 0010.

One server block on one port:

- ``location /`` looks the path up among the APIs' and splitters' endpoints (404 JSON
  when none) and proxies to ``/predict`` on the chosen API's replicas. A traffic splitter
  draws an API by weight, and draws whether its shadow gets a copy of the request.
- Every API and splitter also answers SageMaker Runtime's ``InvokeEndpoint`` under its
  name, ``POST /endpoints/<name>/invocations``, so boto3's ``invoke_endpoint`` works
  against the gateway: an API's goes to the same path on its replicas (they serve their
  model under the API's name), with a replica's 429 (still loading) retried too; a
  splitter's is split like its endpoint and names the API that answered in
  ``x-Amzn-Invoked-Production-Variant``. The gateway's own errors there are SageMaker's
  (``x-amzn-ErrorType`` and a ``message``): an unknown name is a 400 ``ValidationError``,
  no replica a 503 ``ServiceUnavailable``, a replica that does not answer in time a 424
  ``ModelError``, a body over the limit a 413.
- One upstream, ``ferry_replicas``, whose balancer (Lua) picks the slot: least
  connections among the API's slots (every port a replica of it may listen on, see
  ``slots``) under its concurrency limit, kept-alive connections to each. An empty slot
  refuses and the request goes on to the next, as does a 503 (loading, over its limit):
  replicas come and go without the routes changing. No slot with room: 503 JSON.
- A shadow copy is fire-and-forget: the splitter's location mirrors the request to a relay
  on the gateway itself, which answers 204 at once and sends the copy on from its own
  ``mirror`` (nginx does not reuse a client's connection until every mirror subrequest of
  its last request is done, so a slow shadow would otherwise delay the client).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ferry.runtime.base import ApiRoute, RoutingTable

__all__ = [
    "LUA_MODULE",
    "GatewayLayout",
    "GatewayOptions",
    "check",
    "config_digest",
    "render",
    "render_routes",
    "routes_digest",
    "runtime_path",
]

LUA_MODULE = Path(__file__).with_name("ferry_gateway.lua")
"""The Lua side of the gateway, loaded by nginx from where ferry is installed."""

REPLICA_PATH = "/predict"
RUNTIME_PREFIX = "/endpoints/"
RUNTIME_SUFFIX = "/invocations"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_ENDPOINT = re.compile(r"^/[A-Za-z0-9_.~/-]{1,200}$")
_DIGEST = "@CONFIG_DIGEST@"
_BUSY = "no replica could take the request (at capacity or unreachable)"
_ADDRESS = re.compile(r"^[0-9.]+:[0-9]{1,5}$|^\[[0-9a-fA-F:]+\]:[0-9]{1,5}$")
# refused (an empty slot, a draining replica), reset (a kept-alive connection the replica
# closed) or 503 (loading, or over its in-flight limit): the model did not run, so even a
# POST goes on to the next slot. A replica dying mid-request is an error too: that
# prediction runs again elsewhere (see decision 0007)
_RETRIES = "proxy_next_upstream error http_503 non_idempotent;"
# a replica answers its runtime path with 429 while loading, before the model runs
_RUNTIME_RETRIES = "proxy_next_upstream error http_503 http_429 non_idempotent;"
_PROXY = "proxy_pass http://ferry_replicas$ferry_path$is_args$args;"


@dataclass(frozen=True, slots=True)
class GatewayLayout:
    """Where ferry's own nginx instance keeps its files (never the system nginx's)."""

    prefix: Path

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def routes(self) -> Path:
        return self.prefix / "routes.tsv"

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
    modules_dir: Path = field(default=Path("/usr/lib/nginx/modules"))


def _quoted(text: str) -> str:
    """``text`` in an nginx single-quoted string."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _json_body(error: str, code: str) -> str:
    """ferry's JSON error body as an nginx single-quoted string (plain ASCII messages)."""
    return _quoted(f'{{"error":"{error}","code":"{code}"}}')


def runtime_path(name: str) -> str:
    """Where SageMaker Runtime's ``InvokeEndpoint`` for ``name`` is sent."""
    return f"{RUNTIME_PREFIX}{name}{RUNTIME_SUFFIX}"


def check(table: RoutingTable) -> None:
    """Refuse names that could break the routes file or the JSON the gateway writes
    around them (they come from user files)."""
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


# ------------------------------------------------------------------------ routes file


def _addresses(route: ApiRoute, slots: Mapping[str, Sequence[int]]) -> list[str]:
    found = set(route.addresses) | {f"127.0.0.1:{port}" for port in slots.get(route.api, ())}
    return sorted(found)


def render_routes(table: RoutingTable, slots: Mapping[str, Sequence[int]] | None = None) -> str:
    """``routes.tsv`` for ``table``: deterministic, first line its digest.

    An API's line lists its ``slots`` (every port a replica of it may listen on) as well
    as the route's addresses, so which replicas are ready changes nothing here."""
    check(table)
    slots = slots or {}
    lines = []
    for route in sorted(table.apis, key=lambda r: r.api):
        addresses = ",".join(_addresses(route, slots))
        limit = max(1, route.max_concurrency)
        lines.append(f"api\t{route.api}\t{route.endpoint}\t{limit}\t{addresses}")
    for split in sorted(table.splitters, key=lambda s: s.name):
        weights = ",".join(f"{api}:{weight}" for api, weight in split.weights)
        shadow = split.shadow or ""
        lines.append(
            f"split\t{split.name}\t{split.endpoint}\t{weights}\t{shadow}\t{split.shadow_weight}"
        )
    body = "".join(line + "\n" for line in lines)
    return f"digest\t{hashlib.sha256(body.encode()).hexdigest()[:16]}\n{body}"


def routes_digest(text: str) -> str:
    """The digest on a routes file's first line (empty if none)."""
    match = re.match(r"digest\t([0-9a-f]{16})\n", text)
    return match.group(1) if match else ""


# ------------------------------------------------------------------------ nginx.conf


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


def _only_the_gateway(options: GatewayOptions) -> list[str]:
    return [f"    allow {_relay_host(options)};", "    deny all;"]


def _main_block(layout: GatewayLayout, options: GatewayOptions) -> list[str]:
    modules = options.modules_dir
    return [
        "# Generated by ferry: the local cluster's gateway. Edits are overwritten.",
        f"load_module {modules / 'ndk_http_module.so'};",
        f"load_module {modules / 'ngx_http_lua_module.so'};",
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
        _RETRIES,
        "proxy_buffering off;",
        f'lua_package_path "{LUA_MODULE.parent}/?.lua;;";',
        "lua_shared_dict ferry_routes 4m;",
        "lua_shared_dict ferry_peers 1m;",
        "init_by_lua_block {",
        '    ferry = require "ferry_gateway"',
        f"    ferry.init({_lua_string(str(layout.routes))})",
        "}",
        "init_worker_by_lua_block { ferry.init_worker() }",
        "log_by_lua_block { ferry.done() }",
    ]


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _upstreams(options: GatewayOptions) -> list[str]:
    host = _relay_host(options)
    address = f"[{host}]" if ":" in host else host
    return [
        "upstream ferry_replicas {",
        "    server 0.0.0.1;  # a placeholder: the balancer picks every peer",
        "    balancer_by_lua_block { ferry.balance() }",
        f"    keepalive {options.keepalive};",
        "    keepalive_requests 100000;",
        "    keepalive_timeout 4s;  # below the replicas' 5 s, so nginx closes idle ones first",
        "}",
        "upstream ferry_gateway {  # the gateway itself, for the relays' answers",
        f"    server {address}:{options.port};",
        "    keepalive 8;",
        "}",
    ]


def _sagemaker_error(status: int, kind: str | None, message: str) -> list[str]:
    """Answer as SageMaker Runtime does: boto3 raises the exception named by the header."""
    header = [f'add_header x-amzn-ErrorType "{kind}:" always;'] if kind else []
    return [*header, f"return {status} {_quoted(message)};"]


def _runtime_errors(options: GatewayOptions) -> list[str]:
    """The gateway's own SageMaker errors after a proxied attempt: no slot took it (503),
    a replica did not answer in time (424, as SageMaker's timeout) and a body over the
    limit (413 with SageMaker's message and, as there, no error type)."""
    timeout = "the replica did not answer in time"
    timed_out = (
        f'{{"Message":"Received server error (504) from primary with message \\"{timeout}\\".",'
        f'"OriginalStatusCode":504,"OriginalMessage":"{timeout}"}}'
    )
    too_large = f'{{"message":"HTTP content length exceeded {options.max_body_bytes} bytes."}}'
    return [
        "location @ferry_runtime_unavailable {",
        *_indent(_sagemaker_error(503, "ServiceUnavailable", f'{{"message":"{_BUSY}"}}'), 1),
        "}",
        "location @ferry_runtime_timeout {",
        *_indent(_sagemaker_error(424, "ModelError", timed_out), 1),
        "}",
        "location @ferry_runtime_too_large {",
        *_indent(_sagemaker_error(413, None, too_large), 1),
        "}",
    ]


_ENDPOINT_ERRORS = [
    "error_page 413 = @ferry_too_large;",
    "error_page 502 = @ferry_unavailable;",
    "error_page 504 = @ferry_timeout;",
]
_RUNTIME_PROXY = [
    _RUNTIME_RETRIES,
    "proxy_intercept_errors on;",
    "error_page 413 = @ferry_runtime_too_large;",
    "error_page 502 503 = @ferry_runtime_unavailable;",
    "error_page 504 = @ferry_runtime_timeout;",
    "header_filter_by_lua_block { ferry.variant() }  # a splitter names the API it picked",
    _PROXY,
]
# what route() and runtime() set, declared where a request enters (a server-level ``set``
# would run again after their internal redirects and clear them)
_VARIABLES = [
    'set $ferry_api "";',
    'set $ferry_path "";',
    'set $ferry_shadow "";',
    'set $ferry_variant "";',
    'set $ferry_copy_kind "";',
]
_COPY = ["mirror /_ferry/mirror;", "mirror_request_body on;"]


def _targets() -> list[str]:
    """Where route()/runtime() hand a request over: the endpoint with a shadow copy, and a
    runtime call with or without one."""
    return [
        "location = /_ferry/to/endpoint {",
        "    internal;",
        *_indent([*_ENDPOINT_ERRORS, _PROXY], 1),
        "}",
        "location = /_ferry/to/endpoint+copy {",
        "    internal;",
        *_indent([*_ENDPOINT_ERRORS, *_COPY, _PROXY], 1),
        "}",
        "location = /_ferry/to/runtime {",
        "    internal;",
        *_indent(_RUNTIME_PROXY, 1),
        "}",
        "location = /_ferry/to/runtime+copy {",
        "    internal;",
        *_indent([*_COPY, *_RUNTIME_PROXY], 1),
        "}",
    ]


def _copies(options: GatewayOptions) -> list[str]:
    """A copy's way to the shadow: the mirror subrequest goes to a relay on the gateway
    itself (a connection never kept alive: it is busy until its copy is answered), which
    answers 204 at once and sends the copy from its own mirror, even after the 204 closed
    the relay's connection."""
    return [
        "location = /_ferry/mirror {",
        "    internal;",
        f"    proxy_pass {_relay_url(options)}"
        "/_ferry/relay/$ferry_shadow/$ferry_copy_kind$is_args$args;",
        "}",
        "location ^~ /_ferry/relay/ {",
        *_only_the_gateway(options),
        "    access_log off;",
        "    rewrite_by_lua_block { ferry.relay() }",
        "    mirror /_ferry/send;",
        "    mirror_request_body on;",
        "    proxy_pass_request_body off;",
        '    proxy_set_header Content-Length "";',
        '    proxy_set_header Connection "";',
        "    # with a variable, nginx sends this URI as is (not the location's prefix replaced)",
        "    proxy_pass http://ferry_gateway/_ferry/ack$is_args$args;",
        "}",
        "location = /_ferry/send {",
        "    internal;",
        "    proxy_ignore_client_abort on;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Request-ID $ferry_request_id;",
        "    proxy_set_header X-Forwarded-For $http_x_forwarded_for;",
        f"    {_RUNTIME_RETRIES}",
        f"    {_PROXY}",
        "}",
        "location = /_ferry/ack {",
        *_only_the_gateway(options),
        "    access_log off;",
        "    return 204;",
        "}",
    ]


def _server_block(options: GatewayOptions) -> list[str]:
    too_large = f"a request body is limited to {options.max_body_bytes} bytes"
    return [
        f"listen {options.host}:{options.port} backlog=4096;",
        # the slot a request holds (set by the balancer, which runs after route()'s internal
        # redirects; an error_page to a named location does not run this again)
        'set $ferry_slot "";',
        "location @ferry_unavailable {",
        f"    return 503 {_json_body(_BUSY, 'unavailable')};",
        "}",
        "location @ferry_timeout {",
        f"    return 504 {_json_body('the replica did not answer in time', 'timeout')};",
        "}",
        "location @ferry_too_large {",
        f"    return 413 {_json_body(too_large, 'too_large')};",
        "}",
        *_runtime_errors(options),
        "location = /_ferry/healthz {  # the digest tells which config a worker runs",
        "    access_log off;",
        f'    return 200 \'{{"status":"live","config":"{_DIGEST}"}}\';',
        "}",
        "location = /_ferry/routes {  # GET: the routes in force; POST: read routes.tsv again",
        *_only_the_gateway(options),
        "    access_log off;",
        "    content_by_lua_block { ferry.routes_endpoint() }",
        "}",
        "location / {",
        *_indent([*_ENDPOINT_ERRORS, *_VARIABLES], 1),
        "    rewrite_by_lua_block { ferry.route() }",
        f"    {_PROXY}",
        "}",
        f'location ~ "^{re.escape(RUNTIME_PREFIX)}[^/]+{re.escape(RUNTIME_SUFFIX)}$" {{',
        "    error_page 413 = @ferry_runtime_too_large;",
        *_indent(_VARIABLES, 1),
        "    rewrite_by_lua_block { ferry.runtime() }",
        "    content_by_lua_block { ngx.exit(500) }  # not reached: runtime() hands it on",
        "}",
        *_targets(),
        *_copies(options),
    ]


def _indent(lines: list[str], depth: int) -> list[str]:
    return [("    " * depth + line) if line else line for line in lines]


def render(layout: GatewayLayout, options: GatewayOptions) -> str:
    """The whole ``nginx.conf``: deterministic, and the same whatever is routed."""
    http = [*_http_settings(layout, options), *_upstreams(options)]
    http += ["server {", *_indent(_server_block(options), 1), "}"]
    lines = [*_main_block(layout, options), "http {", *_indent(http, 1), "}"]
    text = "\n".join(lines) + "\n"
    return text.replace(_DIGEST, hashlib.sha256(text.encode()).hexdigest()[:16])


def config_digest(text: str) -> str:
    """The digest a rendered config answers on ``/_ferry/healthz`` (empty if none)."""
    match = re.search(r'"config":"([0-9a-f]{16})"', text)
    return match.group(1) if match else ""
