"""A local BigQuery emulator (the PyPI package bqemulator) for CI: its own venv (install.py), a
started server on 127.0.0.1 (server.py) and the list of what it cannot run (limitations.py)."""
