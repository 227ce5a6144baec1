"""The deployment commands a person watches, against a real local cluster: `ferry get
--watch` in a terminal and in a pipe, `ferry logs -f`, and Ctrl-C ending them cleanly.

One cluster (control plane, nginx gateway, `ferry serve` replicas) for the module, in a
temporary state directory on free ports. Ctrl-C is a real one where it matters: the
command runs on a pseudo-terminal as its controlling terminal and the test types ^C.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.cluster import LocalCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

PREDICTOR = """
class PythonPredictor:
    def __init__(self, config):
        pass

    def predict(self, payload):
        return {"echo": payload}
"""

SPEC = """
- name: echo
  predictor: {type: python, path: predictor.py}
  autoscaling: {min_replicas: 2, max_replicas: 2}
- name: mirror
  predictor: {type: python, path: predictor.py}
- name: split
  kind: TrafficSplitter
  apis:
    - {name: echo, weight: 100}
    - {name: mirror, weight: 50, shadow: true}
"""


class Cluster(LocalCluster):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.project.mkdir()
        (self.project / "predictor.py").write_text(PREDICTOR)
        (self.project / "ferry.yaml").write_text(SPEC)

    def replicas(self, api: str) -> set[str]:
        return self.replica_ids(api)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    made = Cluster(tmp_path_factory.mktemp("cli-live"))
    try:
        made.ferry("deploy", ".")
        yield made
    finally:
        made.ferry("cluster", "down", check=False)


class Output:
    """Everything a running command wrote, read by a thread as it comes."""

    def __init__(self, read: Callable[[], bytes]) -> None:
        self._read = read
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while True:
            try:
                chunk = self._read()
            except OSError:  # a pseudo-terminal whose other side has closed
                return
            if not chunk:
                return
            with self._lock:
                self._chunks.append(chunk)

    @property
    def text(self) -> str:
        with self._lock:
            return b"".join(self._chunks).decode(errors="replace")

    def wait_for(self, done: Callable[[str], bool], what: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text
            if done(text):
                return text
            assert time.monotonic() < deadline, f"never saw {what}; output so far:\n{text}"
            time.sleep(0.05)

    def join(self) -> None:
        self._thread.join(10)


class Running:
    """A ferry command running in the background, on a pipe or on a pseudo-terminal."""

    def __init__(self, cluster: Cluster, *args: str, terminal: bool = False) -> None:
        self._master: int | None = None
        self._closed = False
        argv = cluster.argv(*args)
        if terminal:
            master, slave = pty.openpty()
            import fcntl
            import termios

            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
            # a session of its own with this terminal as its controlling one, so ^C typed
            # there sends SIGINT to the command, as in a shell
            self.process = subprocess.Popen(
                ["setsid", "--ctty", *argv],
                stdin=slave,
                stdout=slave,
                stderr=subprocess.PIPE,
                cwd=cluster.project,
                env={**cluster.env, "TERM": "xterm-256color", "COLUMNS": "160"},
            )
            os.close(slave)
            self._master = master
            self.out = Output(lambda: os.read(master, 65536))
        else:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cluster.project,
                env=cluster.env,
            )
            stdout = self.process.stdout
            assert stdout is not None
            self.out = Output(lambda: stdout.read1(65536))
        stderr = self.process.stderr
        assert stderr is not None
        self.err = Output(lambda: stderr.read1(65536))

    def ctrl_c(self) -> int:
        """Ctrl-C: typed on the terminal, or SIGINT as a shell sends it to a pipeline."""
        if self._master is not None:
            os.write(self._master, b"\x03")
        else:
            self.process.send_signal(signal.SIGINT)
        return self.wait()

    def wait(self) -> int:
        self._closed = True
        try:
            code = self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self.out.join()
        self.err.join()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        if self._master is not None:
            os.close(self._master)
            self._master = None
        return code

    def stop(self) -> None:
        """Kill it if it still runs; release what it held either way."""
        if self.process.poll() is None:
            self.process.kill()
        if not self._closed:
            self.wait()


@pytest.fixture
def running(cluster: Cluster) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(*args: str, terminal: bool = False) -> Running:
        command = Running(cluster, *args, terminal=terminal)
        started.append(command)
        return command

    yield start
    for command in started:
        command.stop()


def send(cluster: Cluster, path: str, count: int, prefix: str) -> list[str]:
    ids = [f"{prefix}-{index}" for index in range(count)]
    with httpx.Client(base_url=cluster.gateway, timeout=30) as client:
        for request_id in ids:
            answer = client.post(path, json={"n": 1}, headers={"x-request-id": request_id})
            assert answer.status_code == 200, answer.text
    return ids


def requests_2xx(cluster: Cluster, api: str) -> int:
    return int(cluster.json("get", api)["requests"]["2XX"])


def test_get_counts_requests_sent_just_before_it(cluster: Cluster) -> None:
    before = requests_2xx(cluster, "echo")
    send(cluster, "/echo", 5, "counted")
    # `ferry get` has the replicas' counters read first (at most once a second); the
    # reconcile loop alone reads them every 10 s. No polling: one read must see all five.
    time.sleep(1.2)
    assert requests_2xx(cluster, "echo") == before + 5


def test_get_watch_redraws_in_a_terminal_until_ctrl_c(
    cluster: Cluster, running: Callable[..., Running]
) -> None:
    before = requests_2xx(cluster, "echo")
    watch = running("get", "--watch", terminal=True)
    watch.out.wait_for(lambda text: "echo" in text and "2XX" in text, "the first table")
    send(cluster, "/echo", 7, "watched")
    after = before + 7
    deadline = time.monotonic() + 60
    while requests_2xx(cluster, "echo") < after:  # the control plane has counted them
        assert time.monotonic() < deadline
        time.sleep(0.2)
    frames = watch.out.wait_for(
        lambda text: any(_row(line, "echo", after) for line in text.splitlines()),
        f"a redraw with echo's 2XX at {after}",
    )
    assert frames.count("avg request") >= 2  # the header, once per redraw
    assert "\x1b[" in frames  # redrawn in place, with cursor movements
    assert watch.ctrl_c() == 0
    assert watch.err.text == ""
    assert "Traceback" not in watch.out.text
    assert "KeyboardInterrupt" not in watch.out.text


def _row(line: str, api: str, count: int) -> bool:
    """Whether ``line`` is ``api``'s row of ``ferry get`` with ``count`` 2XX answers."""
    cells = line.replace("\x1b[2K", "").split()
    return bool(cells) and cells[0] == api and str(count) in cells[-3:]


def test_get_watch_in_a_pipe_prints_each_refresh_and_stops_on_sigint(
    cluster: Cluster, running: Callable[..., Running]
) -> None:
    watch = running("get", "--watch")
    text = watch.out.wait_for(lambda t: t.count("avg request") >= 2, "two refreshes")
    assert "\x1b" not in text  # plain text for files and pipes
    assert watch.ctrl_c() == 0
    assert watch.err.text == ""


def test_get_watch_with_json_prints_one_document_per_refresh(
    cluster: Cluster, running: Callable[..., Running]
) -> None:
    watch = running("get", "echo", "--watch", "--output", "json")
    text = watch.out.wait_for(lambda t: t.count("\n") >= 2, "two documents")
    documents = [json.loads(line) for line in text.splitlines()[:2]]
    assert [d["name"] for d in documents] == ["echo", "echo"]
    assert watch.ctrl_c() == 0
    assert watch.err.text == ""


def test_logs_follow_streams_every_replica_prefixed_until_ctrl_c(
    cluster: Cluster, running: Callable[..., Running]
) -> None:
    replicas = cluster.replicas("echo")
    assert len(replicas) == 2
    follow = running("logs", "echo", "-f", "--tail", "1")
    follow.out.wait_for(  # each replica's last line: the stream is on
        lambda text: {line.split("]", 1)[0][1:] for line in text.splitlines()} == replicas,
        "a line from each replica",
    )
    seen: set[str] = set()
    batch = 0
    deadline = time.monotonic() + 60
    while seen != replicas:  # nginx spreads requests over both replicas
        assert time.monotonic() < deadline, follow.out.text
        ids = send(cluster, "/echo", 10, f"followed{batch}")
        text = follow.out.wait_for(lambda t, i=ids[-1]: f"rid={i}\n" in t, ids[-1])
        seen = {
            line.split("]", 1)[0].lstrip("[")
            for line in text.splitlines()
            if "rid=followed" in line
        }
        batch += 1
    lines = [line for line in follow.out.text.splitlines() if line]
    assert all(line.startswith(tuple(f"[{r}] " for r in replicas)) for line in lines)
    assert follow.ctrl_c() == 0
    assert follow.err.text == ""


def test_logs_follow_in_a_terminal_ends_on_ctrl_c(
    cluster: Cluster, running: Callable[..., Running]
) -> None:
    follow = running("logs", "echo", "--follow", terminal=True)
    (last,) = send(cluster, "/echo", 1, "typed")
    follow.out.wait_for(lambda text: f"rid={last}" in text, last)
    assert follow.ctrl_c() == 0
    assert follow.err.text == ""
    assert "Traceback" not in follow.out.text


def test_followers_that_leave_free_what_they_held_in_the_control_plane(
    cluster: Cluster,
) -> None:
    """Each followed stream is read in one of the control plane's 40 worker threads. A
    follower that leaves while its API logs nothing must free that thread: otherwise, a
    few dozen Ctrl-C later, no log request could be answered at all."""
    from ferry.control.client import ControlClient

    client = ControlClient.connect(cluster.state)
    try:
        for _ in range(40):  # anyio's default; "mirror" logs nothing new meanwhile
            stream = client.logs("mirror", follow=True, tail=1)
            assert next(stream).startswith("[mirror-")
            stream.close()  # the follower leaves
        lines = list(client.logs("mirror", tail=1))  # fails on a timeout if none is free
        assert lines
        assert lines[0].startswith("[mirror-")
    finally:
        client.close()


def test_a_reader_that_stops_reading_ends_them_quietly(cluster: Cluster) -> None:
    """`| head` closes the pipe: the next write fails, and the command ends with status 0
    and nothing on stderr (bash's pipefail reports the status of ferry, not head's)."""
    ferry = " ".join(cluster.argv())
    pipelines = [
        subprocess.Popen(
            ["bash", "-o", "pipefail", "-c", f"{ferry} {command} | head -n 1 >/dev/null"],
            stderr=subprocess.PIPE,
            cwd=cluster.project,
            env=cluster.env,
        )
        for command in ("logs echo -f --tail 1", "get --watch")
    ]
    deadline = time.monotonic() + 60
    batch = 0
    while any(pipeline.poll() is None for pipeline in pipelines):
        assert time.monotonic() < deadline
        send(cluster, "/echo", 2, f"piped{batch}")  # new lines for the follower to write
        batch += 1
        time.sleep(0.2)
    for pipeline in pipelines:
        _, err = pipeline.communicate()
        assert (pipeline.returncode, err) == (0, b"")


def test_logs_json_lines_name_the_replica(cluster: Cluster) -> None:
    (last,) = send(cluster, "/echo", 1, "as-json")
    deadline = time.monotonic() + 30
    while True:
        result = cluster.ferry("logs", "echo", "--output", "json", "--tail", "50")
        records = [json.loads(line) for line in result.stdout.splitlines()]
        if any(f"rid={last}" in record["line"] for record in records):
            break
        assert time.monotonic() < deadline, result.stdout
        time.sleep(0.2)
    assert {record["replica"] for record in records} <= cluster.replicas("echo")
    assert all(set(record) == {"replica", "line"} for record in records)


def test_the_gateway_copies_the_shadows_weight_percent(cluster: Cluster) -> None:
    routes = (cluster.state / "runtime" / "gateway" / "routes.tsv").read_text()
    (split,) = [line for line in routes.splitlines() if line.startswith("split\tsplit\t")]
    assert split.split("\t")[-2:] == ["mirror", "50"]


def test_get_describe_predict_as_a_cortex_user_reads_them(cluster: Cluster) -> None:
    listed = cluster.ferry("get").stdout
    assert listed.splitlines()[0].split() == [
        "api", "status", "up-to-date", "requested", "last", "update", "avg", "request",
        "2XX", "4XX", "5XX",
    ]  # fmt: skip
    assert "echo:100 mirror:50 (shadow)" in listed
    one = cluster.ferry("get", "echo").stdout
    revision = cluster.json("get", "echo")["revision"]
    assert f"endpoint: {cluster.gateway}/echo" in one
    assert f"revision: {revision}" in one
    assert f"curl {cluster.gateway}/echo -X POST" in one
    described = cluster.ferry("describe", "echo").stdout
    for replica in cluster.replicas("echo"):
        row = next(line.split() for line in described.splitlines() if line.startswith(replica))
        assert row[1:3] == [revision, "ready"]
    assert "starting replica echo-" in described
    answer = cluster.ferry("predict", "split", "--data", '{"x": [1, 2]}').stdout
    assert json.loads(answer) == {"echo": {"x": [1, 2]}}
    (cluster.project / "sample.json").write_text('{"x": 3}')
    answer = cluster.ferry("predict", "echo", "-d", "@sample.json", "-o", "json").stdout
    assert answer == '{"echo": {"x": 3}}\n'


def test_errors_are_one_line_in_every_output(cluster: Cluster) -> None:
    for args in (
        ("get", "nope"),
        ("get", "nope", "-o", "json"),
        ("describe", "nope", "-o", "json"),
        ("logs", "nope"),
        ("logs", "nope", "-f"),
        ("logs", "nope", "-o", "json"),
        ("predict", "nope", "--data", "[1]"),
    ):
        result = cluster.ferry(*args, check=False)
        assert result.returncode == 1, args
        assert result.stdout == ""
        assert result.stderr == "ferry: error: api 'nope' is not deployed (see `ferry get`)\n"


def test_commands_stop_cleanly_when_the_cluster_goes_away(tmp_path: Path) -> None:
    """`logs -f` and `get --watch` outlive nothing: the cluster going down ends them with
    one line, and `cluster down` does not wait on them."""
    made = Cluster(tmp_path)
    try:
        made.ferry("deploy", ".")
        follow = Running(made, "logs", "echo", "-f")
        watch = Running(made, "get", "--watch")
        try:
            follow.out.wait_for(lambda text: "[echo-" in text, "the first lines")
            watch.out.wait_for(lambda text: "avg request" in text, "the first table")
            made.ferry("cluster", "down")
            assert follow.wait() == 1
            assert watch.wait() == 1
        finally:
            follow.stop()
            watch.stop()
        for command in (follow, watch):
            assert command.err.text.startswith("ferry: error: ")
            assert command.err.text.count("\n") == 1
    finally:
        made.ferry("cluster", "down", check=False)
