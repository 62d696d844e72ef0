"""Fail when the dbt project's SQL would not run on BigQuery: `python .ci/check_bigquery_sql.py`.

Compiles the project with `dbt compile --target bigquery` without credentials or a network
(a throwaway service-account key generated here, `--no-populate-cache --no-introspect`), into its
own target path (default target/bigquery/) so the DuckDB artifacts in `target/` are left alone.
The incremental models are left out: dbt's is_incremental() asks the warehouse whether the model's
table exists, so they compile only with a warehouse. tests/python/test_bigquery_emulator.py checks
them with `check_manifest` on what dbt compiles against the BigQuery emulator, in the first build
and after the incremental run (the tables exist: dbt's own is_incremental() is true); `--skip-compile
--target-path <a dbt target folder>` checks what any dbt command left there, e.g. a `dbt run
--target bigquery`. Every compiled model, test, snapshot and analysis is read with sqlglot's BigQuery
dialect, which on its own would quietly translate DuckDB syntax, so the checker also looks at the
tokens and the tree for:

- SQL that BigQuery cannot parse, and quotes doubled inside a string (`'it''s'`: DuckDB's escape,
  two adjacent literals to BigQuery);
- calls to functions BigQuery does not have: every called name must be in .ci/bigquery_functions.txt
  (the allowlist: add a name there when the check is wrong);
- DuckDB-only syntax: `::` casts, `* exclude (...)`, `try_cast`, a quoted date part first
  (`date_diff('day', a, b)`), extract parts BigQuery lacks (`isodow`, `epoch`), DuckDB type names
  (`double`, `varchar`, `timestamptz`), double-quoted identifiers (strings in BigQuery), `ilike`,
  `distinct on`, `filter (where ...)`, `->>`, `interval '1 day'`;
- a DATETIME compared with a TIMESTAMP, which BigQuery rejects: `dbt.dateadd` renders a DATETIME
  there (use the `timestamp_add` macro for timestamps);
- model configs dbt-bigquery rejects: an incremental strategy it lacks, an invalid `partition_by`.

Prints one line per problem, `path:line: problem` (the compiled file and its line), then how many
files were checked. Exit status: 0 clean, 1 problems found, 2 dbt could not compile the project.
"""

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_ALLOWLIST = Path(__file__).resolve().parent / "bigquery_functions.txt"
DEFAULT_TARGET_PATH = Path("target") / "bigquery"
PLACEHOLDER_PROJECT = "ml-features-placeholder"
CHECKED_RESOURCE_TYPES = frozenset({"model", "test", "snapshot", "analysis"})

# every type name BigQuery accepts, aliases included
BIGQUERY_TYPES = frozenset(
    {
        "int64", "int", "smallint", "integer", "bigint", "tinyint", "byteint",
        "numeric", "decimal", "bignumeric", "bigdecimal", "float64", "bool", "boolean",
        "string", "bytes", "date", "datetime", "time", "timestamp", "interval",
        "json", "geography", "array", "struct", "range",
    }
)  # fmt: skip
# the parts BigQuery's extract() knows (week may be followed by a weekday: week(monday))
EXTRACT_PARTS = frozenset(
    {
        "microsecond", "millisecond", "second", "minute", "hour", "dayofweek", "day", "dayofyear",
        "week", "isoweek", "month", "quarter", "year", "isoyear", "date", "datetime", "time",
    }
)  # fmt: skip
WEEKDAYS = frozenset({"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"})
# functions whose date part BigQuery takes unquoted and last, DuckDB quoted and first
DATE_PART_FUNCTIONS = frozenset(
    {
        "date_diff", "datetime_diff", "timestamp_diff", "time_diff", "date_trunc", "datetime_trunc",
        "timestamp_trunc", "time_trunc", "date_add", "date_sub", "datediff", "date_part", "datepart",
    }
)  # fmt: skip
# words followed by "(" that are syntax, not a function call
SYNTAX_WORDS = frozenset(
    {
        "all", "and", "any", "as", "between", "by", "case", "cross", "distinct", "else", "end",
        "except", "exists", "from", "full", "group", "having", "in", "inner", "intersect", "interval",
        "is", "join", "lateral", "left", "like", "limit", "not", "of", "on", "or", "order", "outer",
        "over", "partition", "pivot", "qualify", "recursive", "right", "rollup", "cube", "sets",
        "select", "some", "struct", "tablesample", "then", "union", "unpivot", "using", "values",
        "when", "where", "window", "with",
    }
)  # fmt: skip
# what to write instead of common DuckDB functions
DUCKDB_HINTS = {
    "epoch_us": "unix_micros() (macro epoch_microseconds())",
    "epoch_ms": "unix_millis()",
    "epoch": "unix_seconds()",
    "quantile_cont": "approx_quantiles() or percentile_cont() over () (macro percentile())",
    "quantile_disc": "approx_quantiles() or percentile_disc() over () (macro percentile())",
    "quantile": "approx_quantiles() (macro percentile())",
    "median": "macro percentile(column, 0.5)",
    "isodow": "macro iso_day_of_week()",
    "dayofweek": "extract(dayofweek from x) or macro iso_day_of_week()",
    "try_cast": "safe_cast() (macro try_cast_as())",
    "now": "current_timestamp()",
    "today": "current_date()",
    "strftime": "format_timestamp()",
    "strptime": "parse_timestamp()",
    "date_part": "extract(part from x)",
    "datepart": "extract(part from x)",
    "datediff": "date_diff(end, start, part) or dbt.datediff()",
    "to_timestamp": "timestamp_seconds()",
    "timezone": "datetime(ts, zone) or timestamp(datetime, zone)",
    "list": "array_agg()",
    "string_split": "split()",
    "len": "length()",
    "regexp_matches": "regexp_contains()",
    "arg_max": "max_by()",
    "arg_min": "min_by()",
    "bool_and": "logical_and()",
    "bool_or": "logical_or()",
    "count_if": "countif()",
    "struct_pack": "struct()",
    "list_value": "an array literal [...]",
    "make_date": "date(year, month, day)",
    "gen_random_uuid": "generate_uuid()",
    "uuid": "generate_uuid()",
    "random": "rand()",
    "hash": "farm_fingerprint()",
    "group_concat": "string_agg()",
    "nvl": "ifnull()",
}
BIGQUERY_INCREMENTAL_STRATEGIES = frozenset({"merge", "insert_overwrite", "microbatch"})
# timestamp columns by name: STYLE makes `_at` columns UTC timestamps, and dbt's snapshot columns
SNAPSHOT_TIMESTAMP_COLUMNS = frozenset({"dbt_valid_from", "dbt_valid_to", "dbt_updated_at"})


@dataclass(frozen=True)
class Problem:
    """One thing BigQuery would reject, where it is in the compiled SQL."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class CompiledNode:
    """A compiled model, test, snapshot or analysis."""

    unique_id: str
    source_path: str
    display_path: str
    sql: str
    config: dict = field(default_factory=dict)


class CompileError(RuntimeError):
    """dbt could not compile the project for BigQuery; the message holds the end of its output."""


# ---------------------------------------------------------------- compiling without credentials


def write_placeholder_keyfile(path: Path) -> None:
    """A syntactically valid service-account key with a fresh throwaway RSA key: dbt-bigquery
    loads it, and nothing ever uses it, since the compile never connects."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    keyfile = {
        "type": "service_account",
        "project_id": PLACEHOLDER_PROJECT,
        "private_key_id": "0" * 40,
        "private_key": pem,
        "client_email": f"compile-check@{PLACEHOLDER_PROJECT}.iam.gserviceaccount.com",
        "client_id": "0",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path.write_text(json.dumps(keyfile))
    path.chmod(0o600)


@contextmanager
def environment_set(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the length of the block."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        os.environ.update(values)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def dbt_failure(result: object) -> str:
    """What went wrong in a dbtRunner invocation, in a few lines."""
    exception = getattr(result, "exception", None)
    if exception is not None:
        return str(exception)
    node_results = getattr(getattr(result, "result", None), "results", None) or []
    messages = [f"{item.node.unique_id}: {item.message}" for item in node_results if str(item.status) == "error"]
    return "\n".join(messages) or "see the dbt log"


def compile_for_bigquery(project_dir: Path, target_path: Path) -> None:
    """`dbt compile` the project for BigQuery, but its incremental models, into `target_path`; raise
    CompileError on failure. dbt runs in this process (dbtRunner)."""
    from dbt.cli.main import dbtRunner

    arguments = ["compile", "--project-dir", str(project_dir), "--profiles-dir", str(project_dir)]
    arguments += ["--target", "bigquery", "--target-path", str(target_path), "--log-path", str(target_path / "logs")]
    arguments += ["--quiet", "--no-populate-cache", "--no-introspect"]
    # dbt's is_incremental() needs a warehouse (see above); the tests of those models do not: kept
    arguments += ["--exclude", "config.materialized:incremental", "--indirect-selection", "empty"]
    with tempfile.TemporaryDirectory(prefix="bigquery-keyfile-") as key_dir:
        keyfile = Path(key_dir) / "placeholder-service-account.json"
        write_placeholder_keyfile(keyfile)
        environment = {"BIGQUERY_KEYFILE": str(keyfile), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        with environment_set(environment):
            (target_path / "manifest.json").unlink(missing_ok=True)
            compiled = dbtRunner().invoke(arguments)
    if not compiled.success:
        raise CompileError(f"dbt compile --target bigquery failed: {dbt_failure(compiled)}")


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def read_manifest(target_path: Path) -> dict:
    manifest_file = target_path / "manifest.json"
    if not manifest_file.exists():
        raise CompileError(f"{manifest_file} is missing: run the check without --skip-compile")
    return json.loads(manifest_file.read_text())


def compiled_nodes(manifest: dict, sql_folder: Path, only_incremental: bool = False) -> Iterator[CompiledNode]:
    """The models, tests, snapshots and analyses a dbt command compiled, from its manifest.

    A node without its compiled file (YAML-defined snapshots have none), or whose file a later dbt
    command rewrote, gets one under `sql_folder`, so the line numbers point at this SQL.
    """
    for unique_id, node in sorted(manifest["nodes"].items()):
        if node["resource_type"] not in CHECKED_RESOURCE_TYPES or not node.get("compiled_code"):
            continue
        if only_incremental and node["config"].get("materialized") != "incremental":
            continue
        compiled_path = Path(node.get("compiled_path") or "")
        if (
            not compiled_path.is_absolute()
            or not compiled_path.is_file()
            or compiled_path.read_text() != node["compiled_code"]
        ):
            compiled_path = sql_folder / node["package_name"] / node["original_file_path"]
            compiled_path = compiled_path / f"{node['name']}.sql"
            compiled_path.parent.mkdir(parents=True, exist_ok=True)
            compiled_path.write_text(node["compiled_code"])
        yield CompiledNode(
            unique_id=unique_id,
            source_path=node["original_file_path"],
            display_path=display_path(compiled_path),
            sql=node["compiled_code"],
            config=node.get("config") or {},
        )


# ---------------------------------------------------------------- reading the SQL


def read_allowlist(path: Path) -> frozenset[str]:
    """Function names from the allowlist file: one a line, `#` comments, case-insensitive."""
    names = set()
    for line in path.read_text().splitlines():
        name = line.split("#", 1)[0].strip().lower()
        if name:
            names.add(name)
    return frozenset(names)


def quote_problems(sql: str) -> list[tuple[int, str]]:
    """Strings BigQuery reads differently from DuckDB: doubled quotes and unterminated literals.

    Walks the SQL with BigQuery's lexical rules (backslash escapes, triple-quoted strings,
    `--`, `#` and `/* */` comments, backtick identifiers).
    """
    problems = []
    position, line, length = 0, 1, len(sql)
    while position < length:
        char = sql[position]
        if char == "\n":
            line += 1
            position += 1
        elif sql.startswith("--", position) or char == "#":
            end = sql.find("\n", position)
            position = length if end == -1 else end
        elif sql.startswith("/*", position):
            end = sql.find("*/", position + 2)
            end = length if end == -1 else end + 2
            line += sql.count("\n", position, end)
            position = end
        elif char in "'\"`":
            quote = sql[position : position + 3] if char != "`" and sql.startswith(char * 3, position) else char
            start_line = line
            cursor = position + len(quote)
            while cursor < length and not sql.startswith(quote, cursor):
                if sql[cursor] == "\\":
                    cursor += 1
                elif sql[cursor] == "\n":
                    if len(quote) == 1:
                        break
                    line += 1
                cursor += 1
            if cursor >= length or not sql.startswith(quote, cursor):
                problems.append((start_line, f"unterminated {quote} literal (BigQuery escapes a quote as \\')"))
                return problems
            position = cursor + len(quote)
            if char != "`" and position < length and sql[position] in "'\"":
                problems.append(
                    (
                        line,
                        "a quote doubled inside a string ('') is DuckDB's escape; BigQuery reads two adjacent "
                        "literals and fails: use chr(39), or dbt.escape_single_quotes()",
                    )
                )
        else:
            position += 1
    return problems


def is_name(token: Token) -> bool:
    """A token that can name a function: a word or a backtick identifier, not punctuation."""
    if token.token_type == TokenType.IDENTIFIER:
        return True
    return bool(token.text) and (token.text[0].isalpha() or token.text[0] == "_")


def dotted_name(tokens: Sequence[Token], index: int) -> str:
    """The full name ending at tokens[index], with its `a.b.` prefix (net.host, safe.divide, UDFs)."""
    parts = [tokens[index].text]
    cursor = index
    while cursor >= 2 and tokens[cursor - 1].token_type == TokenType.DOT and is_name(tokens[cursor - 2]):
        parts.insert(0, tokens[cursor - 2].text)
        cursor -= 2
    return ".".join(parts).lower()


def token_problems(
    sql: str, tokens: Sequence[Token], functions: frozenset[str], calls: set[int]
) -> Iterator[tuple[int, str]]:
    """DuckDB-only syntax, type names and function calls, found in the token stream of `sql`.

    Adds the offset of every function name it checks to `calls`.
    """
    not_calls: set[int] = set()  # indexes of names followed by "(" that are types or date parts

    def following(index: int, offset: int = 1) -> Token | None:
        return tokens[index + offset] if index + offset < len(tokens) else None

    for index, token in enumerate(tokens):
        kind, text = token.token_type, token.text.lower()
        after = following(index)
        if kind == TokenType.DCOLON:
            yield token.line, "`::` cast is DuckDB syntax: write cast(x as type)"
        elif kind in (TokenType.ARROW, TokenType.DARROW):
            yield token.line, f"`{token.text}` JSON operator is DuckDB syntax: use json_value() or json_query()"
        elif kind == TokenType.ILIKE:
            yield token.line, "ilike is not BigQuery: write lower(x) like lower(pattern)"
        elif kind == TokenType.STAR and after is not None and after.text.lower() == "exclude":
            not_calls.add(index + 1)
            yield after.line, "`* exclude (...)` is DuckDB: BigQuery writes `* except (...)`: name the columns"
        elif kind == TokenType.DISTINCT and after is not None and after.token_type == TokenType.ON:
            yield token.line, "`distinct on` is DuckDB: use qualify row_number() over (...) = 1"
        elif kind == TokenType.FILTER and after is not None and after.token_type == TokenType.L_PAREN:
            not_calls.add(index)
            yield token.line, "aggregate `filter (where ...)` is not BigQuery: use countif() or if() inside it"
        elif kind == TokenType.INTERVAL and after is not None and after.token_type == TokenType.STRING:
            unit = following(index, 2)
            if unit is None or unit.text.lower() not in EXTRACT_PARTS:
                yield token.line, f"interval '{after.text}' is DuckDB: write interval <number> <part> (interval 1 day)"
        elif kind == TokenType.STRING and sql[token.start] == '"':  # sqlglot keeps the text, not the quote
            yield (
                token.line,
                (
                    f'"{token.text}" is a string in BigQuery but an identifier in DuckDB: quote identifiers '
                    "with adapter.quote() and text with single quotes"
                ),
            )
        if after is None or after.token_type != TokenType.L_PAREN or not is_name(token):
            continue
        # ---------- name( ... : casts, extract, date parts, then function calls
        if text in ("cast", "safe_cast", "try_cast"):
            type_index = _cast_type_index(tokens, index + 1)
            if type_index is not None:
                not_calls.add(type_index)
                type_name = tokens[type_index].text.lower()
                if type_name not in BIGQUERY_TYPES:
                    yield tokens[type_index].line, f"type {type_name} is not a BigQuery type (use dbt.type_*() macros)"
        elif text == "extract":
            part = following(index, 2)
            if part is not None and is_name(part):
                not_calls.add(index + 2)
                if part.text.lower() not in EXTRACT_PARTS:
                    yield part.line, f"extract({part.text} from ...) is not a BigQuery date part"
        elif text in DATE_PART_FUNCTIONS:
            first_argument = following(index, 2)
            if first_argument is not None and first_argument.token_type == TokenType.STRING:
                yield (
                    token.line,
                    (
                        f"{text}('{first_argument.text}', ...) is DuckDB's argument order: BigQuery takes the part "
                        f"unquoted and last, e.g. date_diff(end, start, day) (or dbt.datediff())"
                    ),
                )
        elif text == "week":
            weekday = following(index, 2)
            if weekday is not None and weekday.text.lower() in WEEKDAYS:
                not_calls.add(index)
        if index in not_calls or text in SYNTAX_WORDS:
            continue
        calls.add(token.start)
        message = function_problem(dotted_name(tokens, index), functions)
        if message:
            yield token.line, message


def function_problem(name: str, functions: frozenset[str]) -> str | None:
    """Why a call to `name` fails on BigQuery, or None when BigQuery has the function."""
    name = name.lower()
    unprefixed = name.removeprefix("safe.")
    if unprefixed in functions or name in functions:
        return None
    hint = DUCKDB_HINTS.get(unprefixed)
    message = f"{name}() is not a BigQuery function"
    return f"{message}: use {hint}" if hint else f"{message} (allowlist: .ci/bigquery_functions.txt)"


def _cast_type_index(tokens: Sequence[Token], open_paren: int) -> int | None:
    """The index of the type name in cast( ... as <type> ), or None."""
    depth = 0
    for index in range(open_paren, len(tokens)):
        kind = tokens[index].token_type
        if kind == TokenType.L_PAREN:
            depth += 1
        elif kind == TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                return None
        elif kind == TokenType.ALIAS and depth == 1 and index + 1 < len(tokens):
            return index + 1
    return None


def temporal_kind(node: exp.Expression) -> str | None:
    """'datetime', 'timestamp' or 'date' when the expression's type is plain from its form, else None."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.DatetimeAdd | exp.DatetimeSub | exp.CurrentDatetime):
        return "datetime"
    if isinstance(node, exp.TimestampAdd | exp.TimestampSub | exp.CurrentTimestamp | exp.UnixToTime):
        return "timestamp"
    if isinstance(node, exp.Cast):  # sqlglot reads BigQuery's DATETIME as TIMESTAMP, TIMESTAMP as TIMESTAMPTZ
        kinds = {
            exp.DataType.Type.TIMESTAMP: "datetime",
            exp.DataType.Type.TIMESTAMPTZ: "timestamp",
            exp.DataType.Type.DATE: "date",
        }
        return kinds.get(node.to.this)
    if isinstance(node, exp.Max | exp.Min | exp.AnyValue | exp.Coalesce):
        return temporal_kind(node.this)
    if isinstance(node, exp.Column):
        name = node.name.lower()
        if name.endswith("_at") or name in SNAPSHOT_TIMESTAMP_COLUMNS:
            return "timestamp"
        if name.endswith("_date"):
            return "date"
    return None


def node_line(node: exp.Expression) -> int:
    """The line of the first token under `node` that sqlglot recorded a position for."""
    for child in node.walk():
        line = child.meta.get("line") if child.meta else None
        if line:
            return int(line)
    return 1


def tree_problems(tree: exp.Expression, functions: frozenset[str], calls: set[int]) -> Iterator[tuple[int, str]]:
    """Problems in the parsed tree: functions sqlglot does not know (exp.Anonymous) and BigQuery
    does not have, unless the token pass checked that call already (offsets in `calls`), and
    DATETIME compared with TIMESTAMP."""
    for function in tree.find_all(exp.Anonymous):
        if function.meta.get("start") in calls:
            continue
        message = function_problem(function.name, functions)
        if message:
            yield int(function.meta.get("line") or node_line(function)), message
    comparisons = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
    for node in tree.find_all(*comparisons, exp.Between):
        if isinstance(node, exp.Between):
            sides = [node.this, node.args.get("low"), node.args.get("high")]
        else:
            sides = [node.this, node.expression]
        kinds = {temporal_kind(side) for side in sides if side is not None}
        if {"datetime", "timestamp"} <= kinds:
            yield (
                node_line(node),
                (
                    "compares a DATETIME with a TIMESTAMP, which BigQuery rejects: dbt.dateadd() renders "
                    "datetime_add() there; add to timestamps with the timestamp_add() macro"
                ),
            )


def sql_problems(sql: str, functions: frozenset[str]) -> list[tuple[int, str]]:
    """Every problem in one compiled SQL text, as (line, message)."""
    problems = quote_problems(sql)
    if problems:  # the tokenizer would misread everything after a doubled quote
        return problems
    try:
        tokens = sqlglot.tokenize(sql, read="bigquery")
    except TokenError as error:
        return [(1, f"BigQuery cannot tokenize this SQL: {str(error).splitlines()[0]}")]
    calls: set[int] = set()
    problems.extend(token_problems(sql, tokens, functions, calls))
    try:
        trees = sqlglot.parse(sql, read="bigquery")
    except ParseError as error:
        for detail in error.errors or [{"line": 1, "description": str(error)}]:
            problems.append((int(detail.get("line") or 1), f"BigQuery cannot parse this: {detail.get('description')}"))
        return sorted(set(problems))
    for tree in trees:
        if tree is not None:
            problems.extend(tree_problems(tree, functions, calls))
    return sorted(set(problems))


def config_problems(node: CompiledNode) -> Iterator[str]:
    """Model configs dbt-bigquery rejects when it builds the model."""
    strategy = node.config.get("incremental_strategy")
    incremental = node.config.get("materialized") == "incremental"
    if incremental and strategy and strategy not in BIGQUERY_INCREMENTAL_STRATEGIES:
        yield (
            f"incremental_strategy {strategy!r} does not exist in dbt-bigquery "
            f"({', '.join(sorted(BIGQUERY_INCREMENTAL_STRATEGIES))}): make it depend on target.type"
        )
    partition_by = node.config.get("partition_by")
    if partition_by:
        from dbt.adapters.bigquery.relation_configs import PartitionConfig

        try:
            PartitionConfig.parse(partition_by)
        except Exception as error:  # dbt raises its own validation errors
            yield f"partition_by {partition_by!r} is invalid for BigQuery: {str(error).splitlines()[0]}"


# ---------------------------------------------------------------- the command


def check_manifest(
    manifest: dict, sql_folder: Path, functions: frozenset[str], only_incremental: bool = False
) -> tuple[list[Problem], list[str]]:
    """The problems in what one dbt command compiled (its manifest), and the unique_ids read."""
    problems: list[Problem] = []
    checked = []
    for node in compiled_nodes(manifest, sql_folder, only_incremental):
        checked.append(node.unique_id)
        for line, message in sql_problems(node.sql, functions):
            problems.append(Problem(node.display_path, line, message))
        for message in config_problems(node):
            problems.append(Problem(node.source_path, 1, message))
    return sorted(set(problems), key=lambda problem: (problem.path, problem.line, problem.message)), checked


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="check_bigquery_sql.py", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR, help="the dbt project (default: this repo)")
    parser.add_argument(
        "--target-path",
        type=Path,
        default=None,
        help=f"where the BigQuery compile goes, relative to the project (default: {DEFAULT_TARGET_PATH})",
    )
    parser.add_argument("--allowlist", type=Path, default=DEFAULT_ALLOWLIST, help="BigQuery function names")
    parser.add_argument(
        "--skip-compile",
        action="store_true",
        help="check what the last dbt command left in the target path (any dbt target folder)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    project_dir = arguments.project_dir.resolve()
    target_path = project_dir / (arguments.target_path or DEFAULT_TARGET_PATH)
    functions = read_allowlist(arguments.allowlist)
    try:
        if not arguments.skip_compile:
            compile_for_bigquery(project_dir, target_path)
        problems, checked = check_manifest(read_manifest(target_path), target_path / "checked", functions)
    except CompileError as error:
        print(error, file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    verdict = f"{len(problems)} problem(s)" if problems else "no problems"
    print(f"checked {len(checked)} compiled file(s) for BigQuery: {verdict}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
