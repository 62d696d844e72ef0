"""Fail when the dbt docs site is incomplete: `python .ci/check_docs_coverage.py [--target-path DIR]`.

Reads the artifacts of `dbt docs generate` run against a built warehouse: `catalog.json` holds the
columns every relation really has, `manifest.json` the documented ones. It reports

- a model, seed or snapshot without a description, or not built (absent from the catalog), and a
  singular data test without a description;
- a model whose description does not state its grain ("One row per ...");
- a column in the warehouse without a description, and a documented model column that no longer
  exists (source columns may be documented ahead of the data: schema evolution);
- a source or source table without a description, or a raw column the warehouse has but the
  source YAML does not describe;
- a macro or generic test of this project without a description, or with an undocumented argument;
- an exposure without a description, an owner or anything it depends on.

Exit 0 when everything is documented, 1 with one line per gap (the YAML file to fix first) when not.
"""

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

PROJECT = "ml_features"
PROJECT_DIR = Path(__file__).resolve().parent.parent
GRAIN = re.compile(r"\bone row\b", re.IGNORECASE)
MACRO_SIGNATURE = re.compile(r"{%-?\s*(?:macro|test)\s+\w+\s*\((?P<arguments>[^)]*)\)", re.DOTALL)
# arguments dbt itself passes to every generic test: documented by dbt, not by the project
GENERIC_TEST_ARGUMENTS = {"model", "column_name"}


def described(text: str | None) -> bool:
    return bool(text and text.strip())


def where(node: dict) -> str:
    """The file a gap is fixed in: the YAML that describes the node, else the file that defines it."""
    patch_path = node.get("patch_path") or ""
    return patch_path.split("://", 1)[-1] or node.get("original_file_path", "?")


def column_gaps(label: str, catalog_columns: dict, documented: dict, stale_is_gap: bool) -> Iterator[str]:
    """Columns the relation has but the YAML does not describe (and, optionally, the other way round)."""
    documented_lower = {name.lower(): column for name, column in documented.items()}
    undocumented = [name for name in catalog_columns if name.lower() not in documented_lower]
    empty = [
        name
        for name in catalog_columns
        if name.lower() in documented_lower and not described(documented_lower[name.lower()].get("description"))
    ]
    if undocumented:
        yield f"{label}: {len(undocumented)} undocumented column(s): {', '.join(undocumented)}"
    if empty:
        yield f"{label}: {len(empty)} column(s) with an empty description: {', '.join(empty)}"
    if stale_is_gap:
        actual = {name.lower() for name in catalog_columns}
        stale = [name for name in documented if name.lower() not in actual]
        if stale:
            yield f"{label}: documents column(s) the relation does not have: {', '.join(stale)}"


def node_gaps(manifest: dict, catalog: dict) -> Iterator[str]:
    """Models, seeds, snapshots and singular data tests."""
    for unique_id, node in sorted(manifest["nodes"].items()):
        if node["package_name"] != PROJECT:
            continue
        if node["resource_type"] == "test" and not node.get("test_metadata"):  # singular: tests/singular/*.sql
            if not described(node.get("description")):
                yield f"{where(node)}: singular test {node['name']}: no description (add it to a `data_tests:` YAML)"
            continue
        if node["resource_type"] not in ("model", "seed", "snapshot"):
            continue
        if not node["config"].get("enabled", True):
            continue
        label = f"{where(node)}: {node['resource_type']} {node['name']}"
        if not described(node.get("description")):
            yield f"{label}: no description"
        elif node["resource_type"] == "model" and not GRAIN.search(node["description"]):
            yield f"{label}: the description does not state the grain ('One row per ...')"
        if node["resource_type"] == "model" and node["config"].get("materialized") == "ephemeral":
            continue
        relation = catalog["nodes"].get(unique_id)
        if relation is None:
            yield f"{label}: not in the warehouse's catalog: build it (`make run`) before `dbt docs generate`"
            continue
        yield from column_gaps(label, relation["columns"], node["columns"], stale_is_gap=True)


def source_gaps(manifest: dict, catalog: dict) -> Iterator[str]:
    """Sources, their tables and the raw columns dlt created."""
    reported_sources: set[str] = set()
    for unique_id, source in sorted(manifest["sources"].items()):
        if source["package_name"] != PROJECT:
            continue
        file = where(source)
        if not described(source.get("source_description")) and source["source_name"] not in reported_sources:
            reported_sources.add(source["source_name"])
            yield f"{file}: source {source['source_name']}: no description"
        label = f"{file}: source table {source['source_name']}.{source['name']}"
        if not described(source.get("description")):
            yield f"{label}: no description"
        relation = catalog["sources"].get(unique_id)
        if relation is None:
            yield f"{label}: not in the warehouse's catalog: load it (`make run`) before `dbt docs generate`"
            continue
        # a source may describe a column before the data has it (it appears part-way): not a gap
        yield from column_gaps(label, relation["columns"], source["columns"], stale_is_gap=False)


def macro_arguments(macro_sql: str) -> list[str]:
    """Argument names from the `{% macro name(...) %}` or `{% test name(...) %}` line."""
    match = MACRO_SIGNATURE.search(macro_sql)
    if not match or not match.group("arguments").strip():
        return []
    return [argument.split("=", 1)[0].strip() for argument in match.group("arguments").split(",")]


def macro_gaps(manifest: dict) -> Iterator[str]:
    """The project's macros and generic tests (dbt's and adapters' own macros are documented upstream)."""
    for macro in sorted(manifest["macros"].values(), key=lambda macro: macro["unique_id"]):
        if macro["package_name"] != PROJECT:
            continue
        kind = "generic test" if macro["name"].startswith("test_") else "macro"
        label = f"{where(macro)}: {kind} {macro['name']}"
        if not described(macro.get("description")):
            yield f"{label}: no description (add it to macros/_macros.yml)"
            continue
        documented = {argument["name"]: argument for argument in macro.get("arguments", [])}
        for name in macro_arguments(macro["macro_sql"]):
            if kind == "generic test" and name in GENERIC_TEST_ARGUMENTS:
                continue
            if not described(documented.get(name, {}).get("description")):
                yield f"{label}: argument {name} is undocumented"


def exposure_gaps(manifest: dict) -> Iterator[str]:
    exposures = [exposure for exposure in manifest["exposures"].values() if exposure["package_name"] == PROJECT]
    if not exposures:
        yield "models/exposures.yml: no exposures: declare the ML consumers of the marts"
    for exposure in exposures:
        label = f"{where(exposure)}: exposure {exposure['name']}"
        if not described(exposure.get("description")):
            yield f"{label}: no description"
        if not (exposure.get("owner") or {}).get("name") and not (exposure.get("owner") or {}).get("email"):
            yield f"{label}: no owner"
        if not exposure["depends_on"]["nodes"]:
            yield f"{label}: depends on nothing"


def find_gaps(manifest: dict, catalog: dict) -> list[str]:
    """Every documentation gap, sorted by the file it is fixed in."""
    gaps = [
        *node_gaps(manifest, catalog),
        *source_gaps(manifest, catalog),
        *macro_gaps(manifest),
        *exposure_gaps(manifest),
    ]
    return sorted(gaps)


def default_target_path() -> Path:
    return Path(os.environ.get("DBT_TARGET_PATH", PROJECT_DIR / "target"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check_docs_coverage", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target-path",
        type=Path,
        default=default_target_path(),
        help="dbt's artifacts folder (default: $DBT_TARGET_PATH or target/)",
    )
    args = parser.parse_args(argv)
    artifacts = {name: args.target_path / f"{name}.json" for name in ("manifest", "catalog")}
    missing = [str(path) for path in artifacts.values() if not path.exists()]
    if missing:
        print(f"docs coverage: {', '.join(missing)} missing: run `make docs` first", file=sys.stderr)
        return 2
    manifest, catalog = (json.loads(path.read_text()) for path in artifacts.values())
    gaps = find_gaps(manifest, catalog)
    for gap in gaps:
        print(gap)
    if gaps:
        print(f"docs coverage: {len(gaps)} gap(s): describe them in the YAML file named first", file=sys.stderr)
        return 1
    relations = [
        node
        for node in manifest["nodes"].values()
        if node["package_name"] == PROJECT and node["resource_type"] in ("model", "seed", "snapshot")
    ]
    print(
        f"docs coverage: complete: {len(relations)} models, seeds and snapshots, {len(manifest['sources'])} "
        f"source tables, {len(manifest['exposures'])} exposures and their columns, macros and generic tests"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
