"""The gateway's nginx config (static) and routes file: what they say, and that nginx
itself accepts the config. How nginx routes by them is tested against a real nginx in
tests/integration/test_gateway_routes.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ferry.runtime.base import ApiRoute, RoutingTable, SplitRoute
from ferry.runtime.local.gateway import GatewayError, NginxGateway, check_lua_module
from ferry.runtime.local.nginx_conf import (
    LUA_MODULE,
    GatewayLayout,
    GatewayOptions,
    config_digest,
    render,
    render_routes,
    routes_digest,
)

IRIS = ApiRoute("iris", "/iris", ("127.0.0.1:9002", "127.0.0.1:9001"), max_concurrency=8)
EMPTY = ApiRoute("empty", "/empty", ())
SPLIT = SplitRoute("split", "/split", (("iris", 80), ("empty", 20)), shadow="iris")
TABLE = RoutingTable(apis=(IRIS, EMPTY), splitters=(SPLIT,))
SLOTS = {"iris": (9003, 9001), "split": (9100,)}  # slots of an api not routed are unused
GOLDEN = Path(__file__).parents[2] / "golden" / "gateway" / "nginx.conf"


def lines(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines()]


def test_the_routes_file_lists_each_api_with_its_slots_and_limit() -> None:
    text = render_routes(TABLE, SLOTS)
    digest, *rows = lines(text)
    assert digest[0] == "digest"
    assert len(digest[1]) == 16
    assert rows[:2] == [
        ["api", "empty", "/empty", "1024", ""],
        ["api", "iris", "/iris", "8", "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003"],
    ]  # sorted by name; the route's addresses and the API's slots, each once
    assert rows[2] == ["split", "split", "/split", "iris:80,empty:20", "iris", "100"]


def test_which_replicas_are_ready_does_not_change_the_routes() -> None:
    ready = render_routes(TABLE, SLOTS)
    none_ready = RoutingTable(apis=(ApiRoute("iris", "/iris", (), 8), EMPTY), splitters=(SPLIT,))
    assert ready == render_routes(none_ready, {"iris": (9001, 9002, 9003)})


def test_the_digest_follows_the_content_and_rendering_is_deterministic() -> None:
    shuffled = RoutingTable(apis=(EMPTY, IRIS), splitters=(SPLIT,))
    assert render_routes(TABLE) == render_routes(shuffled)
    other = RoutingTable(apis=(IRIS,))
    assert routes_digest(render_routes(TABLE)) != routes_digest(render_routes(other))
    assert routes_digest(render_routes(RoutingTable())) != ""
    assert routes_digest("api\tx\n") == ""


def test_a_limit_below_one_is_one() -> None:
    text = render_routes(RoutingTable(apis=(ApiRoute("x", "/x", (), max_concurrency=0),)))
    assert lines(text)[1][3] == "1"


@pytest.mark.parametrize(
    "table",
    [
        RoutingTable(apis=(ApiRoute("x;y", "/x", ()),)),
        RoutingTable(apis=(ApiRoute("x\ty", "/x", ()),)),
        RoutingTable(apis=(ApiRoute('x"', "/x", ()),)),
        RoutingTable(apis=(ApiRoute("x", "/x y", ()),)),
        RoutingTable(apis=(ApiRoute("x", "/_ferry/routes", ()),)),
        RoutingTable(apis=(ApiRoute("x", "/x", ("127.0.0.1:1; evil",)),)),
        RoutingTable(apis=(ApiRoute("x", "/x", ("127.0.0.1:1,127.0.0.1:2",)),)),
        RoutingTable(apis=(ApiRoute("x", "/x", ()), ApiRoute("y", "/x", ()))),
        RoutingTable(
            apis=(ApiRoute("x", "/x", ()),), splitters=(SplitRoute("x", "/y", (("x", 100),)),)
        ),
        RoutingTable(splitters=(SplitRoute("s", "/s", (("a:1", 100),)),)),
    ],
)
def test_names_that_could_break_the_routes_are_refused(table: RoutingTable) -> None:
    with pytest.raises(ValueError, match=r"not allowed|not HOST:PORT|share an endpoint|share a"):
        render_routes(table)


def test_the_config_names_no_api_and_loads_the_routes_module(tmp_path: Path) -> None:
    layout = GatewayLayout(tmp_path / "gw")
    text = render(layout, GatewayOptions(port=18080, upstream_timeout_s=70))
    assert "iris" not in text
    assert "upstream ferry_api" not in text
    assert f'lua_package_path "{LUA_MODULE.parent}/?.lua;;";' in text
    assert LUA_MODULE.is_file()
    assert f'ferry.init("{layout.routes}")' in text
    assert "balancer_by_lua_block { ferry.balance() }" in text
    assert "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;" in text
    assert "listen 127.0.0.1:18080" in text
    assert "proxy_read_timeout 70s;" in text
    assert "client_max_body_size 6291456;" in text
    assert "proxy_set_header X-Request-ID $ferry_request_id;" in text
    assert config_digest(text) != ""


def test_files_stay_under_the_prefix_and_workers_can_run_as_a_user(tmp_path: Path) -> None:
    layout = GatewayLayout(tmp_path / "gw")
    text = render(layout, GatewayOptions(user="nobody", worker_processes=2))
    for directive in ("pid", "error_log", "access_log", "client_body_temp_path"):
        line = next(x for x in text.splitlines() if x.strip().startswith(directive + " "))
        assert str(tmp_path / "gw") in line
    assert "user nobody;" in text
    assert "worker_processes 2;" in text
    assert render(layout, GatewayOptions()) == render(layout, GatewayOptions())


def test_the_config_matches_the_golden_file() -> None:
    text = render(GatewayLayout(Path("/srv/ferry/gateway")), GatewayOptions())
    text = text.replace(str(LUA_MODULE.parent), "@MODULE_DIR@")
    text = text.replace(config_digest(text), "@DIGEST@")
    if os.environ.get("FERRY_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "run with FERRY_UPDATE_GOLDEN=1 to accept the new output"


def test_a_missing_lua_module_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GatewayError, match=r"apt-get install libnginx-mod-http-lua"):
        check_lua_module(tmp_path)
    gateway = NginxGateway(tmp_path / "gw", GatewayOptions(port=1, modules_dir=tmp_path))
    with pytest.raises(GatewayError, match=r"Lua module is not installed"):
        gateway.check()  # what the local backend runs first, so the control plane says it
    with pytest.raises(GatewayError, match=r"Lua module is not installed"):
        gateway.apply(TABLE)


@pytest.mark.parametrize("options", [GatewayOptions(port=1), GatewayOptions(port=1, user="root")])
def test_nginx_accepts_the_rendered_config(tmp_path: Path, options: GatewayOptions) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed (scripts/install-os-packages)")
    layout = GatewayLayout(tmp_path / "gw")
    for path in (layout.prefix, layout.error_log.parent, layout.temp):
        path.mkdir(parents=True)
    layout.conf.write_text(render(layout, options))
    layout.routes.write_text(render_routes(TABLE, SLOTS))
    argv = [nginx, "-t", "-p", f"{layout.prefix}/", "-e", str(layout.error_log)]
    result = subprocess.run([*argv, "-c", str(layout.conf)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
