"""`make dagster` (python -m orchestration.serve): the Dagster UI serves one asset graph from the app
transactions source to the training step, a real browser draws that path on the lineage page
(screenshot saved as a test artifact), and Ctrl-C stops the webserver, the daemon and their code
servers.

One `python -m orchestration.serve` serves the module's tests, the last of which stops it with
SIGINT. It starts with SIGINT ignored, as a command started with `&` from a non-interactive shell
does (where `dagster dev` then ignores Ctrl-C): serve.py must still stop on it.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ARTIFACTS_DIR, REPO_ROOT, HeadlessChromium, free_port, reachable
from dagster_ui_support import graphql, stop_bucket_sensor, stop_daily_schedule

SOURCE = "app/transactions"
TRAINING_STEP = "fraud_model"
STAGES = ["ingest", "validate", "transform", "features", "store", "train"]  # the lesson's, in order
PATH_SELECTION = f'key:"{SOURCE}"+ and +key:"{TRAINING_STEP}"'  # every asset on a path between the two
ASSET_GRAPH = "{ assetNodes { assetKey { path } dependencyKeys { path } groupName } }"


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def ignore_sigint() -> None:  # in the child, before exec: what `cmd &` in a non-interactive shell does
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`python -m orchestration.serve` on a free port, its data folder (DAGSTER_HOME, dbt's target) in tmp."""
    data_dir = tmp_path_factory.mktemp("dagster-ui")
    environment = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}
    environment |= {"ML_FEATURES_DATA_DIR": str(data_dir), "DBT_TARGET_PATH": str(data_dir / "target")}
    port, log = free_port(), data_dir / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestration.serve", "--port", str(port)],
            cwd=REPO_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=ignore_sigint,
            start_new_session=True,
        )
    served = Served(process, port, log, data_dir)
    try:
        deadline = time.monotonic() + 240
        while "the UI is up on" not in log.read_text(errors="replace"):
            assert process.poll() is None, f"serve ended with {process.returncode}:\n{log_tail(served)}"
            assert time.monotonic() < deadline, f"the UI never came up:\n{log_tail(served)}"
            time.sleep(0.25)
        # the UI's tests read the graph and the daemon's health: no run of the schedule (at 02:00 UTC)
        # or the sensor may start beside them, nor be left running when the last test stops serve
        stop_daily_schedule(port)
        stop_bucket_sensor(port)
        yield served
    finally:
        if process.poll() is None:  # a test failed before the SIGINT test: stop it the same way
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def log_tail(served: Served) -> str:
    return served.log.read_text(errors="replace")[-4000:]


def asset_edges(nodes: list[dict[str, Any]]) -> list[list[str]]:
    """(upstream, downstream) asset key pairs, keys as the UI writes them (`app/transactions`)."""
    return [
        ["/".join(parent["path"]), "/".join(node["assetKey"]["path"])]
        for node in nodes
        for parent in node["dependencyKeys"]
    ]


def running(served: Served) -> Served:
    assert served.process.poll() is None, f"serve is not running (the SIGINT test runs last):\n{log_tail(served)}"
    return served


def test_the_asset_graph_leads_from_the_app_transactions_source_to_the_training_step(served: Served) -> None:
    nodes = graphql(running(served).port, ASSET_GRAPH)["assetNodes"]
    groups = {"/".join(node["assetKey"]["path"]): node["groupName"] for node in nodes}
    edges = [
        ["/".join(parent["path"]), "/".join(node["assetKey"]["path"])]
        for node in nodes
        for parent in node["dependencyKeys"]
    ]
    assert SOURCE in groups and TRAINING_STEP in groups, sorted(groups)

    downstream = reachable(edges, SOURCE)
    upstream = reachable([[child, parent] for parent, child in edges], TRAINING_STEP)
    path = downstream & upstream
    assert TRAINING_STEP in downstream, f"no path from {SOURCE} to {TRAINING_STEP}: it reaches {sorted(downstream)}"
    names = {key.rsplit("/", 1)[-1] for key in path}  # dbt's keys carry the model's folder: marts/training_set
    assert {"stg_app__transactions", "fct_transaction_features", "training_set", "training_set_export"} <= names, path
    # the path crosses the lesson's stages, each an asset group
    assert {groups[key] for key in path} == set(STAGES), {key: groups[key] for key in path}
    assert groups[SOURCE] == "ingest" and groups[TRAINING_STEP] == "train"


DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy lastHeartbeatTime } } } }"


def test_the_ui_sees_the_daemon_running(served: Served) -> None:
    """The UI reads the daemon's heartbeats from the same DAGSTER_HOME (else it warns that no daemon runs)."""
    deadline = time.monotonic() + 120
    while True:
        statuses = graphql(running(served).port, DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
        required = {status["daemonType"]: status["healthy"] for status in statuses if status["required"]}
        if required and all(required.values()):
            break
        assert time.monotonic() < deadline, f"daemons not running: {statuses}\n{log_tail(served)}"
        time.sleep(1)
    assert {"SCHEDULER", "SENSOR", "BACKFILL", "QUEUED_RUN_COORDINATOR"} <= set(required), required


CLICK_SKIP = """(() => {
    const skip = [...document.querySelectorAll('[role=dialog] button')].find(b => b.innerText.trim() === 'Skip');
    if (skip) skip.click();
    return Boolean(skip);
})()"""
# the asset nodes the lineage graph drew: their (possibly shortened) names and where they are
DRAWN_ASSETS = """[...document.querySelectorAll('foreignObject')].flatMap(box => {
    const name = box.querySelector('[class*=assetName]');
    return name ? [{label: name.textContent, x: Number(box.getAttribute('x'))}] : [];
})"""
# the text of the graph's group boxes (the stages)
DRAWN_GROUPS = """[...document.querySelectorAll('foreignObject')]
    .filter(box => !box.querySelector('[class*=assetName]')).map(box => box.textContent)"""


def shows(label: str, name: str) -> bool:
    """Whether a node label is `name`, which the graph shortens to `start…end` when it is long."""
    if "…" not in label:
        return label == name
    start, end = label.split("…", 1)
    return name.startswith(start) and name.endswith(end) and len(start) + len(end) < len(name)


def test_the_lineage_page_draws_the_path_in_a_real_browser(served: Served, chromium: HeadlessChromium) -> None:
    nodes = graphql(running(served).port, ASSET_GRAPH)["assetNodes"]
    edges = asset_edges(nodes)
    on_path = reachable(edges, SOURCE) & reachable([[child, parent] for parent, child in edges], TRAINING_STEP)

    # the global lineage page with the path from the source to the training step selected
    chromium.send("Page.navigate", {"url": f"{served.url}/asset-groups~{urllib.parse.quote(PATH_SELECTION, safe='')}"})
    chromium.wait_for(
        "document.body !== null && document.body.innerText.includes('Global asset lineage')",
        "the global asset lineage page",
        60,
    )
    # a first visit opens a 'Join the Dagster community' modal over the graph: skip it as a user would
    deadline = time.monotonic() + 10
    while not chromium.evaluate(CLICK_SKIP) and time.monotonic() < deadline:
        time.sleep(0.25)
    # groups (the stages) start collapsed: expand them all (⌥E, the graph's own shortcut)
    for kind in ("rawKeyDown", "keyUp"):
        chromium.send("Input.dispatchKeyEvent", {"type": kind, "modifiers": 1, "key": "e", "code": "KeyE"})
    drawn, previous = [], None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # drawn once the layout stops changing
        drawn = chromium.evaluate(DRAWN_ASSETS)
        if drawn and drawn == previous:
            break
        previous = drawn
        time.sleep(0.5)

    screenshot = chromium.screenshot()
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    saved = ARTIFACTS_DIR / "dagster_lineage.png"
    saved.write_bytes(screenshot)
    print(f"Dagster lineage screenshot: {saved}")
    assert screenshot.startswith(b"\x89PNG") and len(screenshot) > 20_000, f"blank screenshot? {saved}"

    page = chromium.evaluate("document.body.innerText")
    assert "Join the Dagster community" not in page, f"the newsletter modal still covers the graph ({saved})"
    assert PATH_SELECTION in page, f"the selection is not applied ({saved})"
    labels = [asset["label"] for asset in drawn]
    names = {key: key.rsplit("/", 1)[-1] for key in on_path}
    missing = [key for key, name in names.items() if not any(shows(label, name) for label in labels)]
    assert not missing, f"assets on the path not drawn: {missing}; drawn: {labels} ({saved})"
    assert len(labels) == len(on_path), f"drawn {labels}, the path has {sorted(on_path)} ({saved})"
    x = {asset["label"]: asset["x"] for asset in drawn}
    assert x["transactions"] < x["fraud_model"], f"the source is not drawn left of the training step ({saved})"
    groups = chromium.evaluate(DRAWN_GROUPS)
    for stage in STAGES:
        assert stage in groups, f"the {stage} group is not drawn: {groups} ({saved})"


def descendants(pid: int) -> dict[int, str]:
    """The live processes below `pid` (children, theirs, ...): pid -> command line."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
            commands[int(stat.parent.name)] = command
    below, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in below:
                below[child] = commands[child]
                frontier.append(child)
    return below


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environment = {**os.environ, "ML_FEATURES_DATA_DIR": str(tmp_path), "DBT_TARGET_PATH": str(tmp_path / "target")}
        serve = subprocess.run(
            [sys.executable, "-m", "orchestration.serve", "--port", str(port)],
            cwd=REPO_ROOT,
            env={key: value for key, value in environment.items() if key != "DAGSTER_HOME"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert serve.returncode == 2, serve.stderr
    assert (
        serve.stderr.strip()
        == f"dagster: 127.0.0.1:{port} is in use: choose another port (make dagster DAGSTER_PORT=...)"
    )


def test_ctrl_c_stops_the_webserver_the_daemon_and_their_code_servers(served: Served) -> None:
    started = descendants(running(served).process.pid)
    commands = " ".join(started.values())
    for part in ("dagster-webserver", "dagster-daemon", "api grpc"):
        assert part in commands, f"serve started no {part}: {started}"
    webserver = next(pid for pid, command in started.items() if "dagster-webserver" in command)
    environment = Path(f"/proc/{webserver}/environ").read_bytes().split(b"\0")
    assert f"DAGSTER_HOME={served.data_dir / 'dagster'}".encode() in environment
    assert b"DAGSTER_DISABLE_TELEMETRY=1" in environment
    assert (served.data_dir / "dagster" / "dagster.yaml").exists()
    assert listening(served.port)

    served.process.send_signal(signal.SIGINT)  # Ctrl-C
    try:
        exit_code = served.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve did not stop on SIGINT:\n{log_tail(served)}")

    assert exit_code == 0, log_tail(served)
    assert "dagster: stopped" in log_tail(served)
    left = {pid: command for pid, command in started.items() if alive(pid)}
    assert not left, f"left running after Ctrl-C: {left}"
    assert not listening(served.port), f"something still listens on {served.port}"
