"""aiostream-engine benchmarks: ``python -m bench all`` (see bench/__main__.py)."""
