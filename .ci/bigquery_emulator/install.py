"""Build the BigQuery emulator's own venv: `PYTHONPATH=.ci python -m bigquery_emulator.install [--venv DIR]`.

bqemulator pins a duckdb and a sqlglot that conflict with the project's (duckdb 1.4.4 for the
warehouse file), so it lives in a venv of its own, by default `.venv-bqemulator` at the repository
root (`ML_FEATURES_BQEMULATOR_VENV`). At start it runs `INSTALL spatial`, which downloads DuckDB's
spatial extension and aborts offline: the extension comes from PyPI instead (the wheel
duckdb-extension-spatial, built for the same duckdb) and is placed where DuckDB looks for it,
`$HOME/.duckdb/extensions/v<version>/<platform>/`, under a HOME of the venv's own (`<venv>/home`),
so nothing is written to the user's ~/.duckdb. bqemulator imports numpy without declaring it.

Installing again is a no-op while `<venv>/installed.txt` lists the same pins. Any failure is an
InstallError with one line saying what failed (the pip output is kept in `<venv>/pip.log`).
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DUCKDB_VERSION = "1.5.5"
PINS = (
    "bqemulator==1.4.0",
    f"duckdb=={DUCKDB_VERSION}",
    f"duckdb-extension-spatial=={DUCKDB_VERSION}",
    "numpy>=1.26,<3",
)
INSTALLED_MARKER = "installed.txt"


class InstallError(RuntimeError):
    """The emulator's venv could not be built."""


def venv_dir() -> Path:
    """`ML_FEATURES_BQEMULATOR_VENV`, default `<repository>/.venv-bqemulator`."""
    return Path(os.environ.get("ML_FEATURES_BQEMULATOR_VENV", REPO_ROOT / ".venv-bqemulator")).resolve()


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def emulator_home(venv: Path) -> Path:
    """The HOME the emulator runs with: its ~/.duckdb holds the spatial extension."""
    return venv / "home"


def run(command: list[str], log: Path, what: str) -> str:
    """Run `command`, appending its output to `log`; InstallError naming `what` when it fails."""
    result = subprocess.run(command, capture_output=True, text=True)
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise InstallError(f"{what} failed (exit {result.returncode}): {last[0]} (full output: {log})")
    return result.stdout


def place_spatial_extension(venv: Path, log: Path) -> Path:
    """Copy the wheel's spatial extension to where the venv's duckdb looks under the emulator's HOME."""
    script = (
        "import duckdb, duckdb_extension_spatial, pathlib\n"
        "platform = duckdb.sql('pragma platform').fetchone()[0]\n"
        "package = pathlib.Path(duckdb_extension_spatial.__file__).parent\n"
        f"print(platform, next(package.glob('extensions/v{DUCKDB_VERSION}/spatial.duckdb_extension')))\n"
    )
    platform, source = run([str(venv_python(venv)), "-c", script], log, "locating the spatial extension").split()
    target = emulator_home(venv) / ".duckdb" / "extensions" / f"v{DUCKDB_VERSION}" / platform
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target / "spatial.duckdb_extension")
    check = "import duckdb; duckdb.sql('load spatial'); print('spatial loads')"
    environment = {**os.environ, "HOME": str(emulator_home(venv))}
    result = subprocess.run([str(venv_python(venv)), "-c", check], capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise InstallError(f"the spatial extension does not load from {target}: {result.stderr.strip()[-300:]}")
    return target


def install(venv: Path | None = None) -> Path:
    """The emulator's venv, built when missing or built with other pins; returns its folder."""
    venv = venv or venv_dir()
    marker = venv / INSTALLED_MARKER
    if marker.exists() and marker.read_text().split() == list(PINS) and venv_python(venv).exists():
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    venv.mkdir(parents=True)
    # keep it out of git without touching the repository's .gitignore
    (venv / ".gitignore").write_text("*\n")
    log = venv / "pip.log"
    run([sys.executable, "-m", "venv", str(venv)], log, "creating the venv")
    pip = [str(venv_python(venv)), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    run([*pip, "install", "--quiet", *PINS], log, f"pip install {' '.join(PINS)}")
    place_spatial_extension(venv, log)
    marker.write_text("\n".join(PINS) + "\n")
    return venv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=None, help="where to build it (default: .venv-bqemulator)")
    arguments = parser.parse_args()
    try:
        venv = install(arguments.venv)
    except InstallError as error:
        sys.exit(f"bigquery emulator: {error}")
    print(f"bigquery emulator: ready in {venv} (start it with PYTHONPATH=.ci python -m bigquery_emulator.server)")


if __name__ == "__main__":
    main()
