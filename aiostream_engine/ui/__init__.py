"""The streaming web UI, Spark's streaming REST API and Prometheus metrics (extra ``ui``).

Nothing here is imported by the engine unless the UI is on or asked for, so the engine
runs without starlette, uvicorn and prometheus_client installed.

When the UI is on (``ui_enabled``, spark.ui.enabled):

* ``None`` (the default): on when the ``ui`` extra is installed, unless the environment
  variable ``AIOSTREAM_UI_ENABLED`` says false. Test suites set it (this project's
  ``tests/conftest.py`` does) so that a context per test opens no web server; a test that
  wants the UI passes ``conf={"ui_enabled": True, "ui_port": 0}``.
  ``aiostream_engine.testing.run_stream`` turns it off unless its ``conf`` says otherwise.
* ``True``: on (the ``ui`` extra must be installed); ``False``: off.
"""

from __future__ import annotations

import os
from importlib.util import find_spec

from ..conf import StreamingConf
from ..errors import ConfigurationError

ENV_VAR = "AIOSTREAM_UI_ENABLED"
_PACKAGES = ("starlette", "uvicorn", "prometheus_client")


def ui_available() -> bool:
    """Whether the ``ui`` extra (starlette, uvicorn, prometheus_client) is installed."""
    return all(find_spec(name) is not None for name in _PACKAGES)


def require_ui() -> None:
    """Raise a ConfigurationError naming what is missing unless the ``ui`` extra is
    installed."""
    if not ui_available():
        missing = ", ".join(name for name in _PACKAGES if find_spec(name) is None)
        raise ConfigurationError(
            f"the web UI and metrics need the ui extra ({missing} missing): "
            "pip install 'aiostream-engine[ui]'"
        )


def ui_enabled(conf: StreamingConf) -> bool:
    """Whether a context with ``conf`` serves its UI (see the module's docstring)."""
    if conf.ui_enabled is not None:
        if conf.ui_enabled:
            require_ui()
        return conf.ui_enabled
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return env.strip().lower() in ("1", "true", "yes", "on") and ui_available()
    return ui_available()
