"""`python -m serving`: the model server under uvicorn, configured by environment variables.

Listens on PLATFORM_SERVING_HOST:PLATFORM_SERVING_PORT (default 127.0.0.1:8080); see
`serving.config` for the other settings. Exits with status 2 when a setting is wrong.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from serving.app import create_app
from serving.config import ConfigError, ServingConfig


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = ServingConfig.from_env()
    except ConfigError as exc:
        print(f"serving: error: {exc}", file=sys.stderr)
        return 2
    # No access log: a line per request costs more than scoring a flight, and every answer is
    # already counted in /metrics and recorded in the prediction log.
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
