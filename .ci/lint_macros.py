"""Lint the SQL the project's macros write, with the project's sqlfluff rules: `python .ci/lint_macros.py`.

sqlfluff's dbt templater lints models and tests but skips macro files, and reports nothing in the
parts of a model a macro rendered. So this compiles the project (`dbt compile` against an empty
throwaway DuckDB file: no data, no credentials; dbt's is_incremental() finds no table, so the
incremental models compile as their first build), lints the compiled SQL of every model and of
every test of the project's generic tests with the raw templater and the rules of `.sqlfluff`, and
keeps the findings on lines a macro file wrote (each macro line is matched with its `{{ ... }}`
parts as wildcards). The `is_incremental()` branches compile where a model's table exists (dbt's own
is_incremental()), so the incremental models are compiled a second time after an empty table with
their documented columns is created for each: their incremental runs' SQL is linted too.
Findings on a model's own lines are `sqlfluff lint models`'s; lines dbt's own macros wrote are not ours.

Left out, because compiling changes them and the source does not have them: layout (the indentation
and line breaks of rendered Jinja), dbt's quoted relation names (references.quoting), the type
names dbt's cross-database macros write (`TEXT`: capitalisation.types) and `select *` from a
relation (a `ref()` in the source: ambiguous.column_count).

Findings listed in .ci/macro_lint_known.txt (`<macro file> <rule> <the macro's line>`) are printed
as known and do not fail; any other finding fails (exit 1). Exit 2: dbt could not compile.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROJECT = "ml_features"
KNOWN_FILE = Path(__file__).resolve().parent / "macro_lint_known.txt"
# rules whose findings in compiled SQL come from compiling, not from the macros' SQL (see above)
COMPILE_ARTIFACT_RULES = ["layout", "references.quoting", "capitalisation.types", "ambiguous.column_count"]
JINJA_EXPRESSION = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}")
# a macro line that is only Jinja, a comment or too short to tell apart is not matched
MIN_LITERAL_CHARACTERS = 8
# the incremental models and the tests on them, compiled again once their tables exist
INCREMENTAL = ["config.materialized:incremental"]


@dataclass(frozen=True)
class MacroLine:
    path: str
    line_number: int
    text: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class Finding:
    macro: MacroLine
    rule: str
    description: str
    compiled: str

    def key(self) -> tuple[str, str, str]:
        return (self.macro.path, self.rule, self.macro.text)

    def __str__(self) -> str:
        return (
            f"{self.macro.path}:{self.macro.line_number}: {self.rule} {self.description}\n"
            f"    {self.macro.text}\n    (compiled in {self.compiled})"
        )


def macro_lines(macro_dir: Path, root: Path = PROJECT_DIR) -> list[MacroLine]:
    """Every macro line with enough literal SQL to recognise it in compiled SQL, as a pattern."""
    lines = []
    for path in sorted(macro_dir.rglob("*.sql")):
        in_comment = False
        for number, raw in enumerate(path.read_text().splitlines(), start=1):
            text = raw.strip()
            if "{#" in text and "#}" not in text:
                in_comment = True
            if in_comment:
                in_comment = "#}" not in text
                continue
            literal = JINJA_EXPRESSION.sub("", text)
            if text.startswith("--") or len(re.sub(r"\W", "", literal)) < MIN_LITERAL_CHARACTERS:
                continue
            parts = [r"\s+".join(map(re.escape, part.split())) for part in JINJA_EXPRESSION.split(text)]
            pattern = re.compile(r"\s*" + ".*?".join(parts) + r"\s*")
            lines.append(MacroLine(str(path.relative_to(root)), number, text, pattern))
    return lines


def compile_project(target_path: Path, warehouse: Path, select: list[str] | None = None) -> dict:
    """`dbt compile` (every model and test, or `select`) against the throwaway warehouse; the manifest
    it writes."""
    environment = dict(os.environ)
    environment["DBT_TARGET_PATH"] = str(target_path)
    environment["ML_FEATURES_DUCKDB_PATH"] = str(warehouse)
    target_path.mkdir(parents=True, exist_ok=True)
    command = [str(Path(sys.executable).parent / "dbt"), "compile", "--no-populate-cache"]
    command += ["--exclude", "test_type:unit", "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    command += ["--select", *select] if select else []
    completed = subprocess.run(command, cwd=PROJECT_DIR, env=environment, capture_output=True, text=True)
    if completed.returncode != 0:
        print((completed.stdout + completed.stderr)[-3000:], file=sys.stderr)
        print("lint_macros: dbt compile failed", file=sys.stderr)
        sys.exit(2)
    return json.loads((target_path / "manifest.json").read_text())


def create_incremental_tables(manifest: dict, warehouse: Path) -> None:
    """An empty table for each incremental model, with its documented columns (as text: compiling
    reads at most a maximum of them), so dbt's is_incremental() is true when it compiles again."""
    with duckdb.connect(str(warehouse)) as connection:
        for node in manifest["nodes"].values():
            if node["resource_type"] != "model" or node["config"].get("materialized") != "incremental":
                continue
            columns = ", ".join(f'"{name}" varchar' for name in node["columns"]) or "placeholder varchar"
            connection.execute(f'create schema if not exists "{node["schema"]}"')
            connection.execute(f'create table "{node["schema"]}"."{node["alias"]}" ({columns})')


def both_builds(first: dict, incremental: dict) -> list[tuple[str, str, set[str]]]:
    """The compiled nodes of a first build, and those of an incremental run whose SQL differs
    (named `<unique_id> (incremental)`)."""
    nodes = sorted(compiled_sql(first))
    seen = {(unique_id, sql) for unique_id, sql, _ in nodes}
    for unique_id, sql, used in sorted(compiled_sql(incremental)):
        if (unique_id, sql) not in seen:
            nodes.append((f"{unique_id} (incremental)", sql, used))
    return nodes


def compiled_sql(manifest: dict) -> Iterator[tuple[str, str, set[str]]]:
    """(name, compiled SQL, the project's macro files it used) of every model and every test of one
    of the project's generic tests."""
    macros = manifest["macros"]
    generic_tests = {
        macro["name"].removeprefix("test_")
        for macro in macros.values()
        if macro["package_name"] == PROJECT and macro["name"].startswith("test_")
    }
    for node in manifest["nodes"].values():
        if node["package_name"] != PROJECT or not node.get("compiled_code"):
            continue
        test_name = (node.get("test_metadata") or {}).get("name")
        if node["resource_type"] == "model" or (node["resource_type"] == "test" and test_name in generic_tests):
            yield node["unique_id"], node["compiled_code"], macro_files(macros, node["depends_on"]["macros"])


def macro_files(macros: dict, called: list[str]) -> set[str]:
    """The project's macro files behind `called` and every macro they call in turn."""
    seen, queue = set(), list(called)
    while queue:
        unique_id = queue.pop()
        if unique_id in seen or unique_id not in macros:
            continue
        seen.add(unique_id)
        queue.extend(macros[unique_id]["depends_on"]["macros"])
    return {
        macros[unique_id]["original_file_path"] for unique_id in seen if macros[unique_id]["package_name"] == PROJECT
    }


def lint(folder: Path) -> list[dict]:
    """sqlfluff's JSON report for the .sql files in `folder`, with the project's rules."""
    excluded = ",".join(COMPILE_ARTIFACT_RULES + project_excluded_rules())
    command = [
        str(Path(sys.executable).parent / "sqlfluff"),
        "lint",
        str(folder),
        "--config",
        str(PROJECT_DIR / ".sqlfluff"),
    ]
    command += ["--templater", "raw", "--exclude-rules", excluded, "--format", "json", "--disable-progress-bar"]
    command += ["--processes", "2"]
    completed = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if completed.returncode not in (0, 1):
        print(completed.stderr[-3000:], file=sys.stderr)
        sys.exit(2)
    return json.loads(completed.stdout)


def project_excluded_rules() -> list[str]:
    """The `exclude_rules` of .sqlfluff (the command line's --exclude-rules replaces them)."""
    for line in (PROJECT_DIR / ".sqlfluff").read_text().splitlines():
        if line.replace(" ", "").startswith("exclude_rules="):
            return [rule.strip() for rule in line.split("=", 1)[1].split(",") if rule.strip()]
    return []


def macro_findings(
    report: list[dict], sources: dict[str, tuple[str, set[str]]], lines: list[MacroLine]
) -> list[Finding]:
    """The findings on compiled lines a macro the node used wrote, once per macro line and rule."""
    findings: dict[tuple[str, str, str], Finding] = {}
    for file in report:
        compiled_lines = Path(file["filepath"]).read_text().splitlines()
        unique_id, used = sources[Path(file["filepath"]).name]
        for violation in file["violations"]:
            text = compiled_lines[violation["start_line_no"] - 1]
            for line in lines:
                if line.path in used and line.pattern.fullmatch(text):
                    finding = Finding(line, violation["code"], violation["description"], unique_id)
                    findings.setdefault(finding.key(), finding)
    return sorted(findings.values(), key=lambda finding: (finding.macro.path, finding.macro.line_number))


def known_findings() -> set[tuple[str, str, str]]:
    known = set()
    for line in KNOWN_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            path, rule, text = line.split(" ", 2)
            known.add((path, rule, text.strip()))
    return known


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lint-macros-") as scratch:
        warehouse = Path(scratch) / "lint.duckdb"
        first = compile_project(Path(scratch) / "target", warehouse)
        create_incremental_tables(first, warehouse)
        incremental = compile_project(Path(scratch) / "target-incremental", warehouse, INCREMENTAL)
        folder = Path(scratch) / "compiled"
        folder.mkdir()
        sources = {}
        for number, (unique_id, sql, used) in enumerate(both_builds(first, incremental)):
            file_name = f"{number:03d}.sql"
            (folder / file_name).write_text(sql)
            sources[file_name] = (unique_id, used)
        findings = macro_findings(lint(folder), sources, macro_lines(PROJECT_DIR / "macros"))
    known = known_findings()
    new = [finding for finding in findings if finding.key() not in known]
    for finding in findings:
        print(("KNOWN " if finding.key() in known else "") + str(finding))
    print(
        f"lint_macros: {len(sources)} compiled models and tests, {len(findings)} findings in macros "
        f"({len(findings) - len(new)} known: {KNOWN_FILE.name}), {len(new)} new"
    )
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
