"""The BigQuery check (.ci/check_bigquery_sql.py): the project compiles for BigQuery without
credentials and BigQuery can run every compiled file; DuckDB-only SQL fails the check, by name."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKER = REPO_ROOT / ".ci" / "check_bigquery_sql.py"
# what dbt reads: the project without its Python, data and artifacts
DBT_PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml")
DBT_PROJECT_FOLDERS = ("models", "macros", "seeds", "snapshots", "tests", "analyses")

DUCKDB_ONLY_MODEL = """
-- SQL that runs on DuckDB and not on BigQuery: the check must name this model
with

numbers as (
    select 1 as kept, 2 as dropped
)

select
    * exclude (dropped),
    epoch_us(now()) as loaded_us,
    date_diff('day', date '2024-01-01', current_date) as days_since,
    '2' :: integer as two,
    'it''s' as quoted
from numbers
"""


def copy_dbt_project(destination: Path) -> Path:
    """The dbt files of this repository, copied to `destination`."""
    destination.mkdir(parents=True)
    for name in DBT_PROJECT_FILES:
        if (REPO_ROOT / name).exists():
            shutil.copy2(REPO_ROOT / name, destination / name)
    for name in DBT_PROJECT_FOLDERS:
        if (REPO_ROOT / name).exists():
            ignored = shutil.ignore_patterns("python", "__pycache__")
            shutil.copytree(REPO_ROOT / name, destination / name, ignore=ignored)
    return destination


def start_checker(project_dir: Path, target_path: Path) -> subprocess.Popen[str]:
    command = [sys.executable, str(CHECKER), "--project-dir", str(project_dir), "--target-path", str(target_path)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bigquery_check")


@pytest.fixture(scope="module")
def checker_runs(work_dir: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """The checker on the real project and on a copy with a DuckDB-only model, run side by side."""
    work = work_dir
    broken = copy_dbt_project(work / "broken_project")
    (broken / "models" / "duckdb_only").mkdir()
    (broken / "models" / "duckdb_only" / "duckdb_only_model.sql").write_text(DUCKDB_ONLY_MODEL)
    running = {
        "real": start_checker(REPO_ROOT, work / "real_target"),
        "broken": start_checker(broken, work / "broken_target"),
    }
    results = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=600)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


def test_the_project_compiles_for_bigquery_and_passes_the_check(
    checker_runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    run = checker_runs["real"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no problems" in run.stdout
    checked = int(run.stdout.split("checked ")[1].split()[0])
    assert checked >= 20, run.stdout


def test_percentiles_are_exact_on_bigquery(
    checker_runs: dict[str, subprocess.CompletedProcess[str]], work_dir: Path
) -> None:
    """Bug 1 (issue 25), at compile level: approx_quantiles(x, 1000)[offset(500)] returns one of the
    values (the median of [20, 40] is 20 or 40, not 30); the fitted parameters interpolate between the
    two sorted values around the percentile, as DuckDB's quantile_cont does (the emulator test runs it)."""
    assert checker_runs["real"].returncode == 0
    compiled = next((work_dir / "real_target").rglob("preprocessing_parameters.sql")).read_text().lower()
    assert "approx_quantiles" not in compiled
    assert compiled.count("array_agg(cast(age as float64) ignore nulls order by cast(age as float64))") == 3
    assert "(0.5 * (count(cast(age as float64)) - 1))" in compiled


def test_duckdb_only_sql_fails_the_check_naming_the_model(
    checker_runs: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    run = checker_runs["broken"]
    assert run.returncode == 1, run.stdout + run.stderr
    problems = [line for line in run.stdout.splitlines() if "duckdb_only_model.sql:" in line]
    assert problems, run.stdout
    # the doubled quote ('it''s') is reported first: BigQuery could not read the rest
    assert any("quote doubled inside a string" in line for line in problems), problems


def test_each_duckdb_construct_is_named() -> None:
    """Without the doubled quote, every other DuckDB construct gets its own line."""
    sys.path.insert(0, str(CHECKER.parent))
    try:
        import check_bigquery_sql as checker
    finally:
        sys.path.remove(str(CHECKER.parent))
    functions = checker.read_allowlist(checker.DEFAULT_ALLOWLIST)
    sql = DUCKDB_ONLY_MODEL.replace("'it''s'", "'its'")
    messages = "\n".join(f"{line}: {message}" for line, message in checker.sql_problems(sql, functions))
    assert "`* exclude (...)` is DuckDB" in messages
    assert "epoch_us() is not a BigQuery function" in messages
    assert "now() is not a BigQuery function" in messages
    assert "date_diff('day', ...) is DuckDB's argument order" in messages
    assert "`::` cast is DuckDB syntax" in messages
    assert "10: `* exclude" in messages  # lines point into the SQL
    assert checker.sql_problems("select safe_cast(x as int64), * except (y) from t", functions) == []
