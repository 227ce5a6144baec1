"""The gateway's nginx config: what it routes where, and that nginx itself accepts it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ferry.runtime.base import ApiRoute, RoutingTable, SplitRoute
from ferry.runtime.local.nginx_conf import GatewayLayout, GatewayOptions, render

IRIS = ApiRoute("iris", "/iris", ("127.0.0.1:9002", "127.0.0.1:9001"), max_concurrency=8)
EMPTY = ApiRoute("empty", "/empty", ())
SPLIT = SplitRoute("split", "/split", (("iris", 80), ("empty", 20)), shadow="iris")
TABLE = RoutingTable(apis=(IRIS, EMPTY), splitters=(SPLIT,))


SLOTS = {"iris": (9003, 9001), "split": (9100,)}  # slots of an api not routed are unused


def conf(
    tmp_path: Path,
    table: RoutingTable = TABLE,
    slots: dict[str, tuple[int, ...]] | None = None,
    **options: object,
) -> str:
    layout = GatewayLayout(tmp_path / "gw")
    return render(table, layout, GatewayOptions(**options), slots)  # type: ignore[arg-type]


def block(text: str, header: str) -> str:
    """The lines of the block opened by ``header`` up to its closing brace."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == header + " {")
    depth, out = 0, []
    for line in lines[start:]:
        depth += line.count("{") - line.count("}")
        out.append(line.strip())
        if depth == 0:
            break
    return "\n".join(out)


def test_an_api_proxies_to_an_upstream_of_its_replicas(tmp_path: Path) -> None:
    text = conf(tmp_path)
    upstream = block(text, "upstream ferry_api_iris")
    assert "least_conn;" in upstream
    for port in (9001, 9002):
        assert f"server 127.0.0.1:{port} max_conns=8 max_fails=1 fail_timeout=1s;" in upstream
        assert f"server 127.0.0.1:{port} max_conns=8 max_fails=0 backup;" in upstream
    assert "keepalive 64;" in upstream
    assert "zone ferry_api_iris 64k;" in upstream  # max_conns is shared by all workers
    assert "proxy_pass http://ferry_api_iris/predict;" in block(text, "location = /iris")


def test_every_slot_is_in_the_upstream_whether_a_replica_listens_there_or_not(
    tmp_path: Path,
) -> None:
    upstream = block(conf(tmp_path, slots=SLOTS), "upstream ferry_api_iris")
    servers = [line for line in upstream.splitlines() if line.startswith("server ")]
    assert [line.split()[1] for line in servers] == [
        f"127.0.0.1:{port}" for port in (9001, 9002, 9003) * 2
    ]  # the route's addresses and the slots, once as primaries and once as backups
    assert conf(tmp_path, slots=SLOTS) == conf(
        tmp_path,
        RoutingTable(apis=(ApiRoute("iris", "/iris", (), 8), EMPTY), splitters=(SPLIT,)),
        {"iris": (9001, 9002, 9003)},
    )  # which replicas are ready does not change the config: no reload
    slotted = conf(tmp_path, RoutingTable(apis=(EMPTY,)), {"empty": (9005,)})
    assert "server 127.0.0.1:9005 max_conns=1024;" in block(slotted, "upstream ferry_api_empty")
    assert "proxy_pass http://ferry_api_empty/predict;" in block(slotted, "location = /empty")


def test_failed_attempts_go_on_to_the_next_slot_and_end_in_503_json(tmp_path: Path) -> None:
    text = conf(tmp_path)
    assert "proxy_next_upstream error http_503 non_idempotent;" in text
    assert "error_page 502 = @ferry_unavailable;" in text
    assert '"code": "unavailable"' in block(text, "location @ferry_unavailable")


def test_an_api_without_replicas_answers_503_json_and_has_no_upstream(tmp_path: Path) -> None:
    text = conf(tmp_path)
    assert "upstream ferry_api_empty" not in text  # nginx rejects an empty upstream
    location = block(text, "location = /empty")
    assert (
        'return 503 \'{"error": "api empty has no ready replica", "code": "unavailable"}\';'
        in location
    )
    assert "default_type application/json;" in text


def test_a_splitter_splits_by_weight_and_mirrors_to_its_shadow(tmp_path: Path) -> None:
    text = conf(tmp_path)
    split = block(text, 'split_clients "$request_id" $ferry_split_split')
    assert "80% iris;" in split
    assert "* empty;" in split
    assert "rewrite ^ /_ferry/split/split/$ferry_split_split last;" in block(
        text, "location = /split"
    )
    to_iris = block(text, "location = /_ferry/split/split/iris")
    assert "internal;" in to_iris
    assert "mirror /_ferry/mirror/split;" in to_iris
    assert "mirror_request_body on;" in to_iris
    assert "$ferry_shadow_split" not in text  # the default weight, 100: every request
    relayed = block(text, "location = /_ferry/mirror/split")
    assert "proxy_pass http://127.0.0.1:8888/_ferry/shadow/split;" in relayed
    send = block(text, "location = /_ferry/shadow/split/send")
    assert "proxy_pass http://ferry_api_iris/predict;" in send


def test_a_shadow_without_replicas_is_not_mirrored(tmp_path: Path) -> None:
    split = SplitRoute("s", "/s", (("iris", 100),), shadow="empty")
    text = conf(tmp_path, RoutingTable(apis=(IRIS, EMPTY), splitters=(split,)))
    assert "mirror" not in text


def shadowed(tmp_path: Path, weight: int, **options: object) -> str:
    split = SplitRoute("split", "/split", (("iris", 100),), "shadow", weight)
    table = RoutingTable(apis=(IRIS, SHADOW), splitters=(split,))
    return conf(tmp_path, table, **options)


SHADOW = ApiRoute("shadow", "/shadow", ("127.0.0.1:9009",))


def test_a_shadow_gets_a_copy_of_weight_percent_of_the_requests(tmp_path: Path) -> None:
    text = shadowed(tmp_path, 25)
    assert block(text, 'split_clients "${request_id}:shadow" $ferry_shadow_split') == (
        'split_clients "${request_id}:shadow" $ferry_shadow_split {\n25% 1;\n* "";\n}'
    )  # drawn on another key than the split, so copies come from every API's share
    assert "mirror /_ferry/mirror/split;" in block(text, "location = /_ferry/split/split/iris")
    sampled = block(text, "location = /_ferry/mirror/split")
    assert 'if ($ferry_shadow_split = "") {' in sampled
    assert "return 204;" in sampled  # the other 75% stop here
    assert "proxy_pass http://127.0.0.1:8888/_ferry/shadow/split;" in sampled


def test_a_copy_goes_through_a_relay_that_answers_at_once(tmp_path: Path) -> None:
    text = shadowed(tmp_path, 25)
    relay = block(text, "location = /_ferry/shadow/split")
    assert "mirror /_ferry/shadow/split/send;" in relay
    assert "mirror_request_body on;" in relay
    assert "proxy_pass http://ferry_gateway/_ferry/ack;" in relay
    assert "proxy_pass_request_body off;" in relay
    assert "allow 127.0.0.1;\ndeny all;" in relay
    send = block(text, "location = /_ferry/shadow/split/send")
    assert "internal;" in send
    assert "proxy_ignore_client_abort on;" in send  # the relay's caller has gone by then
    assert "proxy_set_header X-Request-ID $ferry_request_id;" in send
    assert "proxy_pass http://ferry_api_shadow/predict;" in send
    assert "return 204;" in block(text, "location = /_ferry/ack")
    assert "server 127.0.0.1:8888;" in block(text, "upstream ferry_gateway")


def test_the_relay_is_reached_on_the_gateways_own_address(tmp_path: Path) -> None:
    for host, url, allowed in (
        ("0.0.0.0", "http://127.0.0.1:81", "127.0.0.1"),
        ("10.1.2.3", "http://10.1.2.3:81", "10.1.2.3"),
        ("::", "http://[::1]:81", "::1"),
    ):
        text = shadowed(tmp_path, 100, host=host, port=81)
        assert f"proxy_pass {url}/_ferry/shadow/split;" in text
        assert f"allow {allowed};" in block(text, "location = /_ferry/ack")


def test_a_shadow_weight_of_100_copies_all_and_0_copies_none(tmp_path: Path) -> None:
    every = shadowed(tmp_path, 100)
    assert "$ferry_shadow_split" not in every
    assert "return 204;" not in block(every, "location = /_ferry/mirror/split")
    assert "mirror /_ferry/mirror/split;" in every
    none = shadowed(tmp_path, 0)
    for absent in ("mirror", "/_ferry/shadow", "/_ferry/ack", "ferry_gateway"):
        assert absent not in none


GOLDEN = Path(__file__).parents[2] / "golden" / "gateway" / "splitter-shadow-25.conf"


def test_a_splitter_with_a_shadow_matches_the_golden_file() -> None:
    split = SplitRoute("ab", "/ab", (("iris", 80), ("other", 20)), "shadow", 25)
    other = ApiRoute("other", "/other", ("127.0.0.1:9011",))
    table = RoutingTable(apis=(IRIS, other, SHADOW), splitters=(split,))
    text = render(table, GatewayLayout(Path("/srv/ferry/gateway")), GatewayOptions())
    if os.environ.get("FERRY_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "run with FERRY_UPDATE_GOLDEN=1 to accept the new output"


def test_an_api_answers_sagemaker_runtime_under_its_name_over_its_slots(tmp_path: Path) -> None:
    text = conf(tmp_path, slots=SLOTS)
    runtime = block(text, "location = /endpoints/iris/invocations")
    assert "proxy_pass http://ferry_api_iris/endpoints/iris/invocations;" in runtime
    # a replica loading answers this path 429 before the model runs: the next slot, too
    assert "proxy_next_upstream error http_503 http_429 non_idempotent;" in runtime
    assert "proxy_intercept_errors on;" in runtime  # a last 503 becomes SageMaker's error
    assert "error_page 502 503 = @ferry_runtime_unavailable;" in runtime
    assert "error_page 504 = @ferry_runtime_timeout;" in runtime
    assert "x-Amzn-Invoked-Production-Variant" not in runtime  # the replica's AllTraffic
    # the API's own endpoint is unchanged
    assert "proxy_next_upstream" not in block(text, "location = /iris")


def test_the_gateways_own_runtime_errors_are_sagemakers(tmp_path: Path) -> None:
    text = conf(tmp_path)
    empty = block(text, "location = /endpoints/empty/invocations")
    assert empty == (
        "location = /endpoints/empty/invocations {\n"
        "error_page 413 = @ferry_runtime_too_large;\n"
        'add_header x-amzn-ErrorType "ServiceUnavailable:" always;\n'
        'return 503 \'{"message": "api empty has no ready replica"}\';\n}'
    )
    busy = block(text, "location @ferry_runtime_unavailable")
    assert 'add_header x-amzn-ErrorType "ServiceUnavailable:" always;' in busy
    assert 'return 503 \'{"message": "no replica could take' in busy
    late = block(text, "location @ferry_runtime_timeout")
    assert 'add_header x-amzn-ErrorType "ModelError:" always;' in late
    assert "return 424 " in late
    assert '"OriginalStatusCode": 504' in late
    # SageMaker's own answer to a body over its 6 MB: 413, a message, no error type
    assert block(text, "location @ferry_runtime_too_large") == (
        "location @ferry_runtime_too_large {\n"
        'return 413 \'{"message": "HTTP content length exceeded 6291456 bytes."}\';\n}'
    )
    for header in (
        "location = /endpoints/iris/invocations",
        "location = /endpoints/split/invocations",
        "location = /_ferry/runtime/split/split/iris",
        'location ~ "^/endpoints/[^/]+/invocations$"',
    ):
        assert "error_page 413 = @ferry_runtime_too_large;" in block(text, header)


def test_an_unknown_name_is_a_validation_error_naming_what_is_routed(tmp_path: Path) -> None:
    text = conf(tmp_path)
    named = block(text, 'location ~ "^/endpoints/([A-Za-z0-9_.-]+)/invocations$"')
    assert 'add_header x-amzn-ErrorType "ValidationError:" always;' in named
    message = "Endpoint $1 not found; the gateway serves the endpoints: empty, iris, split"
    assert f'return 400 \'{{"message": "{message}"}}\';' in named
    # any other name is not repeated in the answer, so its JSON stays valid
    other = block(text, 'location ~ "^/endpoints/[^/]+/invocations$"')
    assert "Endpoint not found; the gateway serves" in other
    assert "$1" not in other
    nothing = block(conf(tmp_path, RoutingTable()), 'location ~ "^/endpoints/[^/]+/invocations$"')
    assert "the gateway serves the endpoints: none" in nothing


def test_a_splitter_answers_sagemaker_runtime_split_like_its_endpoint(tmp_path: Path) -> None:
    text = conf(tmp_path)
    assert "rewrite ^ /_ferry/runtime/split/split/$ferry_split_split last;" in block(
        text, "location = /endpoints/split/invocations"
    )  # the same draw as the endpoint's
    assert text.count('split_clients "$request_id" $ferry_split_split') == 1
    to_iris = block(text, "location = /_ferry/runtime/split/split/iris")
    assert "internal;" in to_iris
    assert "proxy_hide_header x-Amzn-Invoked-Production-Variant;" in to_iris
    assert "add_header x-Amzn-Invoked-Production-Variant iris always;" in to_iris
    assert "proxy_next_upstream error http_503 http_429 non_idempotent;" in to_iris
    assert "proxy_pass http://ferry_api_iris/endpoints/iris/invocations;" in to_iris
    assert "mirror /_ferry/runtime/mirror/split;" in to_iris
    to_empty = block(text, "location = /_ferry/runtime/split/split/empty")
    assert 'return 503 \'{"message": "api empty has no ready replica"}\';' in to_empty


def test_a_splitters_runtime_copies_go_to_the_shadows_runtime_path(tmp_path: Path) -> None:
    text = shadowed(tmp_path, 25)
    sampled = block(text, "location = /_ferry/runtime/mirror/split")
    assert 'if ($ferry_shadow_split = "") {' in sampled  # the endpoint's sample, reused
    assert "proxy_pass http://127.0.0.1:8888/_ferry/runtime/relay/split;" in sampled
    relay = block(text, "location = /_ferry/runtime/relay/split")
    assert "mirror /_ferry/runtime/relay/split/send;" in relay
    assert "proxy_pass http://ferry_gateway/_ferry/ack;" in relay
    assert "allow 127.0.0.1;\ndeny all;" in relay
    send = block(text, "location = /_ferry/runtime/relay/split/send")
    assert "proxy_pass http://ferry_api_shadow/endpoints/shadow/invocations;" in send
    assert "proxy_next_upstream error http_503 http_429 non_idempotent;" in send
    assert "proxy_ignore_client_abort on;" in send
    # the endpoint's copies still go to /predict
    endpoint_send = block(text, "location = /_ferry/shadow/split/send")
    assert "proxy_pass http://ferry_api_shadow/predict;" in endpoint_send
    none = shadowed(tmp_path, 0)
    assert "/_ferry/runtime/mirror" not in none
    assert "/_ferry/runtime/relay" not in none


RUNTIME_TAKEN = RoutingTable(
    apis=(
        ApiRoute("iris", "/endpoints/iris/invocations", ("127.0.0.1:9001",)),
        ApiRoute("other", "/other", ("127.0.0.1:9011",)),
    ),
    splitters=(SplitRoute("ab", "/endpoints/ab/invocations", (("iris", 50), ("other", 50))),),
)


NAMED_SHADOW = RoutingTable(
    apis=(SHADOW, ApiRoute("copy", "/copy", ("127.0.0.1:9012",))),
    splitters=(SplitRoute("ab", "/ab", (("shadow", 100),), "copy", 100),),
)


def test_an_api_named_shadow_is_split_to_not_mirrored_to(tmp_path: Path) -> None:
    text = conf(tmp_path, NAMED_SHADOW)
    to_shadow = block(text, "location = /_ferry/split/ab/shadow")
    assert "proxy_pass http://ferry_api_shadow/predict;" in to_shadow
    assert "mirror /_ferry/mirror/ab;" in to_shadow
    assert "proxy_pass http://ferry_api_copy/predict;" in block(
        text, "location = /_ferry/shadow/ab/send"
    )
    runtime = block(text, "location = /_ferry/runtime/split/ab/shadow")
    assert "proxy_pass http://ferry_api_shadow/endpoints/shadow/invocations;" in runtime
    assert "mirror /_ferry/runtime/mirror/ab;" in runtime


def test_an_endpoint_at_a_runtime_path_keeps_it(tmp_path: Path) -> None:
    text = conf(tmp_path, RUNTIME_TAKEN)
    assert text.count("location = /endpoints/iris/invocations {") == 1
    assert "proxy_pass http://ferry_api_iris/predict;" in block(
        text, "location = /endpoints/iris/invocations"
    )
    assert text.count("location = /endpoints/ab/invocations {") == 1
    assert "/_ferry/runtime/split/ab" not in text
    assert "location = /endpoints/other/invocations {" in text


def test_limits_timeouts_unknown_paths_and_request_ids(tmp_path: Path) -> None:
    text = conf(tmp_path, port=18080, upstream_timeout_s=70)
    assert "listen 127.0.0.1:18080" in text
    assert "client_max_body_size 6291456;" in text
    assert "proxy_read_timeout 70s;" in text
    assert "proxy_set_header X-Request-ID $ferry_request_id;" in text
    assert '"" $request_id;' in text
    assert "no api is routed at this path" in block(text, "location /")
    assert "error_page 502 = @ferry_unavailable;" in text


def test_rendering_is_deterministic_and_files_stay_under_the_prefix(tmp_path: Path) -> None:
    shuffled = RoutingTable(apis=(EMPTY, IRIS), splitters=(SPLIT,))
    assert conf(tmp_path) == conf(tmp_path, shuffled)
    text = conf(tmp_path)
    for directive in ("pid", "error_log", "access_log", "client_body_temp_path"):
        line = next(x for x in text.splitlines() if x.strip().startswith(directive + " "))
        assert str(tmp_path / "gw") in line


@pytest.mark.parametrize(
    "table",
    [
        RoutingTable(apis=(ApiRoute("x;y", "/x", ()),)),
        RoutingTable(apis=(ApiRoute("x", "/x y", ()),)),
        RoutingTable(apis=(ApiRoute("x", "/_ferry/healthz", ()),)),
        RoutingTable(apis=(ApiRoute("x", "/x", ("127.0.0.1:1; evil",)),)),
        RoutingTable(apis=(ApiRoute("x", "/x", ()), ApiRoute("y", "/x", ()))),
        RoutingTable(
            apis=(ApiRoute("x", "/x", ()),), splitters=(SplitRoute("x", "/y", (("x", 100),)),)
        ),
    ],
)
def test_names_that_could_break_the_config_are_refused(tmp_path: Path, table: RoutingTable) -> None:
    with pytest.raises(ValueError, match=r"not allowed|not HOST:PORT|share an endpoint|share a"):
        conf(tmp_path, table)


@pytest.mark.parametrize(
    "table",
    [
        RoutingTable(),
        TABLE,
        RoutingTable(apis=(EMPTY,), splitters=(SPLIT,)),
        RoutingTable(
            apis=(IRIS, SHADOW),
            splitters=(SplitRoute("ab", "/ab", (("iris", 100),), "shadow", 25),),
        ),
        RUNTIME_TAKEN,
        NAMED_SHADOW,
    ],
    ids=["empty", "full", "nothing-ready", "shadow-25", "runtime-path-taken", "api-named-shadow"],
)
@pytest.mark.parametrize("slots", [None, SLOTS], ids=["no-slots", "slots"])
def test_nginx_accepts_the_rendered_config(
    tmp_path: Path, table: RoutingTable, slots: dict[str, tuple[int, ...]] | None
) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed (scripts/install-os-packages)")
    layout = GatewayLayout(tmp_path / "gw")
    for path in (layout.prefix, layout.error_log.parent, layout.temp):
        path.mkdir(parents=True)
    layout.conf.write_text(render(table, layout, GatewayOptions(port=1), slots))
    argv = [nginx, "-t", "-p", f"{layout.prefix}/", "-e", str(layout.error_log)]
    result = subprocess.run([*argv, "-c", str(layout.conf)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
