"""The dbt docs site: generated from the built warehouse, fully documented, and its lineage graph
renders in a real browser from the raw sources to the training set and the model that trains on it.

The browser test drives Debian's `chromium` headless (conftest.HeadlessChromium). It is skipped
only when chromium is missing and CI is not set; `.ci/run` installs chromium.
"""

import json
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ARTIFACTS_DIR, REPO_ROOT, RUN_DATE, HeadlessChromium, Warehouse, reachable

from pipeline.warehouse.dbt_runner import run_dbt, target_path

TRAINING_SET = "model.ml_features.training_set"
TRAINING_STEP = "exposure.ml_features.training_step"
# one path through every layer, raw source to the exposure that trains the model
RAW_TO_TRAINING = (
    "source.ml_features.app.transactions",
    "model.ml_features.stg_app__transactions",
    "model.ml_features.int_transactions_validated",
    "model.ml_features.int_transactions_cleaned",
    "model.ml_features.fct_transaction_features",
    TRAINING_SET,
)


@pytest.fixture(scope="module")
def docs_target(built_warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`dbt docs generate --static` against the built warehouse, as `make docs` runs it.

    The docs go to a folder of their own, so the build's artifacts other tests read stay as they are.
    The build's manifest (already compiled) is copied there and `--no-compile` reuses it, which saves
    compiling every node again (~10 s); the catalog is read from the warehouse as always.
    """
    docs_dir = tmp_path_factory.mktemp("docs") / "target"
    docs_dir.mkdir()
    for artifact in ("manifest.json", "partial_parse.msgpack"):
        shutil.copy(target_path() / artifact, docs_dir)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DBT_TARGET_PATH", str(docs_dir))
        generate = run_dbt(
            ["docs", "generate", "--static", "--no-compile"], dbt_vars={"run_date": RUN_DATE}, quiet=True
        )
        assert generate.success, generate.failures
        yield docs_dir


def load_artifact(docs_target: Path, name: str) -> dict[str, Any]:
    return json.loads((docs_target / f"{name}.json").read_text())


def test_docs_generate_writes_a_single_file_site(docs_target: Path) -> None:
    site = docs_target / "static_index.html"
    assert site.exists(), "dbt docs generate --static wrote no static_index.html"
    html = site.read_text()
    # the manifest and catalog are inlined, so the file opens without a server
    assert '"model.ml_features.training_set"' in html
    assert '"exposure.ml_features.training_step"' in html


def check_docs_coverage(target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / ".ci" / "check_docs_coverage.py"), "--target-path", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_every_model_column_source_seed_snapshot_and_macro_is_documented(docs_target: Path) -> None:
    check = check_docs_coverage(docs_target)
    assert check.returncode == 0, f"documentation gaps:\n{check.stdout}{check.stderr}"


def test_coverage_check_fails_on_each_kind_of_gap(docs_target: Path, tmp_path: Path) -> None:
    """The real artifacts with gaps punched in: each one is reported, and the check fails."""
    manifest, catalog = load_artifact(docs_target, "manifest"), load_artifact(docs_target, "catalog")
    del manifest["nodes"][TRAINING_SET]["columns"]["split"]  # a warehouse column nobody describes
    manifest["nodes"]["model.ml_features.stg_fx__rates"]["description"] = "FX rates."  # no grain
    manifest["nodes"]["seed.ml_features.currencies"]["description"] = ""
    manifest["macros"]["macro.ml_features.test_between"]["description"] = ""
    catalog["sources"]["source.ml_features.app.users"]["columns"]["nickname"] = {"name": "nickname", "type": "TEXT"}
    for name, artifact in (("manifest", manifest), ("catalog", catalog)):
        (tmp_path / f"{name}.json").write_text(json.dumps(artifact))

    check = check_docs_coverage(tmp_path)

    assert check.returncode == 1, check.stdout
    for expected in (
        "model training_set: 1 undocumented column(s): split",
        "model stg_fx__rates: the description does not state the grain",
        "seed currencies: no description",
        "generic test test_between: no description",
        "source table app.users: 1 undocumented column(s): nickname",
    ):
        assert expected in check.stdout, f"{expected!r} not reported:\n{check.stdout}"


def test_exposures_make_the_lineage_run_from_raw_sources_to_the_model(docs_target: Path) -> None:
    manifest = load_artifact(docs_target, "manifest")
    training_step = manifest["exposures"][TRAINING_STEP]
    assert training_step["type"] == "ml"
    assert training_step["depends_on"]["nodes"] == [TRAINING_SET]
    serving = manifest["exposures"]["exposure.ml_features.realtime_feature_serving"]
    assert serving["depends_on"]["nodes"], "the realtime consumers depend on no mart"
    # each step of the path is upstream of the next (directly or through models added between)
    for child, parent in zip(RAW_TO_TRAINING[1:] + (TRAINING_STEP,), RAW_TO_TRAINING, strict=True):
        assert parent in upstream(manifest["parent_map"], child), f"{child} does not depend on {parent}"


def upstream(parent_map: dict[str, list[str]], unique_id: str) -> set[str]:
    """Every node `unique_id` reads from, directly or not."""
    seen: set[str] = set()
    queue = deque(parent_map.get(unique_id, []))
    while queue:
        node = queue.popleft()
        if node not in seen:
            seen.add(node)
            queue.extend(parent_map.get(node, []))
    return seen


# what the lineage graph shows: cytoscape draws it on a canvas, so read the nodes and edges it drew
RENDERED_GRAPH = """(() => {
    const graph = angular.element(document.body).injector().get('graph');
    const drawn = graph.graph_element;
    if (!drawn || graph.orientation !== 'fullscreen' || drawn.nodes(':visible').length === 0) return null;
    return {
        nodes: drawn.nodes(':visible').map(node => ({
            id: node.id(), label: node.data('label'), box: node.renderedBoundingBox()
        })),
        edges: drawn.edges(':visible').map(edge => [edge.source().id(), edge.target().id()]),
        select: document.querySelector('input[ng-model="selectorService.selection.dirty.include"]').value,
        launcher: document.querySelector('.launcher').getAttribute('data-launcher'),
        viewport: [window.innerWidth, window.innerHeight]
    };
})()"""


def test_lineage_graph_renders_from_raw_source_to_training(docs_target: Path, chromium: HeadlessChromium) -> None:
    site = (docs_target / "static_index.html").resolve()
    chromium.send("Page.navigate", {"url": f"{site.as_uri()}#!/model/{TRAINING_SET}"})
    chromium.wait_for(
        "document.querySelector('h1') !== null && document.querySelector('h1').innerText.includes('training_set')",
        "the training_set model page",
    )
    # what a user does: the lineage button, then full screen
    chromium.evaluate("document.querySelector('.launcher-btn a').click()")
    chromium.wait_for("document.querySelector('.launcher').getAttribute('data-launcher') === 'sidebar'", "the graph")
    chromium.evaluate("document.querySelector('.launcher-actions a[ng-click=\"showExpanded()\"]').click()")
    graph, previous = None, None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # drawn once the layout stops moving
        graph = chromium.evaluate(RENDERED_GRAPH)
        if graph and graph == previous:
            break
        previous = graph
        time.sleep(0.3)
    assert graph, "the lineage graph was never drawn"

    screenshot = chromium.screenshot()
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    saved = ARTIFACTS_DIR / "docs_lineage.png"
    saved.write_bytes(screenshot)
    print(f"lineage graph screenshot: {saved}")
    assert screenshot.startswith(b"\x89PNG") and len(screenshot) > 20_000, f"blank screenshot? {saved}"

    assert graph["launcher"] == "fullscreen"
    assert graph["select"] == "+training_set+"
    labels = {node["id"]: node["label"] for node in graph["nodes"]}
    for unique_id in (*RAW_TO_TRAINING, TRAINING_STEP):
        assert unique_id in labels, f"{unique_id} is not on the lineage graph of training_set ({saved})"
    assert labels["source.ml_features.app.transactions"] == "app.transactions"
    assert labels[TRAINING_SET] == "training_set"
    downstream = reachable(graph["edges"], "source.ml_features.app.transactions")
    assert {TRAINING_SET, TRAINING_STEP} <= downstream, "the drawn edges do not lead from the raw source to training"
    width, height = graph["viewport"]
    off_screen = [
        node["label"]
        for node in graph["nodes"]
        if node["box"]["x1"] < 0 or node["box"]["y1"] < 0 or node["box"]["x2"] > width or node["box"]["y2"] > height
    ]
    assert not off_screen, f"nodes drawn outside the window: {off_screen}"
