"""The lint of the SQL macros write (.ci/lint_macros.py): a finding sqlfluff makes in compiled SQL is
traced to the macro line that wrote it, only in the macros the node used; a model's own lines are not."""

from pathlib import Path

from lint_macros import (
    INCREMENTAL,
    both_builds,
    compile_project,
    create_incremental_tables,
    lint,
    macro_findings,
    macro_lines,
)

MACRO = """{% macro counted(relation) %}
    select
        user_id,
        row_number() over (partition by user_id order by created_at) as position
    from {{ relation }}
{% endmacro %}
"""
# what a model calling it compiles to: its own line breaks a rule too (a keyword alias)
COMPILED = """with

counted as (
    select
        user_id,
        row_number() over (partition by user_id order by created_at) as position
    from "staging"."stg_app__transactions"
)

select user_id as rank from counted
"""


def test_a_finding_in_compiled_sql_names_the_macro_line(tmp_path: Path) -> None:
    (tmp_path / "macros").mkdir()
    (tmp_path / "macros" / "counted.sql").write_text(MACRO)
    compiled = tmp_path / "compiled"
    compiled.mkdir()
    (compiled / "000.sql").write_text(COMPILED)
    lines = macro_lines(tmp_path / "macros", root=tmp_path)
    report = lint(compiled)
    assert {violation["code"] for file in report for violation in file["violations"]} >= {"RF04"}

    findings = macro_findings(report, {"000.sql": ("model.counting", {"macros/counted.sql"})}, lines)
    assert [(finding.macro.path, finding.macro.line_number, finding.rule) for finding in findings] == [
        ("macros/counted.sql", 4, "RF04")
    ]
    # a node that did not call the macro: the same line is not the macro's
    assert macro_findings(report, {"000.sql": ("model.other", set())}, lines) == []


def test_the_incremental_models_are_linted_as_their_incremental_runs_compile_too(tmp_path: Path) -> None:
    """dbt's is_incremental() is true once a model's table exists: after the empty tables are created,
    every incremental model compiles to its incremental run's SQL, which is linted besides its first build."""
    warehouse = tmp_path / "lint.duckdb"
    first = compile_project(tmp_path / "target", warehouse)
    incremental_models = {
        unique_id
        for unique_id, node in first["nodes"].items()
        if node["resource_type"] == "model" and node["config"].get("materialized") == "incremental"
    }
    assert len(incremental_models) >= 5, incremental_models
    create_incremental_tables(first, warehouse)
    incremental = compile_project(tmp_path / "target-incremental", warehouse, INCREMENTAL)
    linted = [unique_id for unique_id, _, _ in both_builds(first, incremental)]
    assert {f"{unique_id} (incremental)" for unique_id in incremental_models} <= set(linted)
    assert incremental_models <= set(linted)
