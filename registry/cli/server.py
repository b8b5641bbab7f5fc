"""``assay serve``: run the registry (web app and, unless ``--workers 0``, its workers).

Every option can also be set with its ``ASSAY_*`` environment variable; a flag given on
the command line wins.
"""

from __future__ import annotations

from pathlib import Path

import click
import uvicorn

from registry.api.headerlimit import HttpToolsProtocol
from registry.api.requestid import configure_logging
from registry.app import create_app
from registry.cli.config import settings as load_settings


@click.command()
@click.option("--host", help="Interface to bind [ASSAY_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [ASSAY_PORT, default 5000].")
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="Where SQLite and the filesystem blob store live [ASSAY_DATA_DIR, ./data].")
@click.option("--log-level", help="uvicorn log level [ASSAY_LOG_LEVEL, info].")
@click.option("--workers", type=click.IntRange(0, 64),
              help="Verification worker processes to run alongside [ASSAY_WORKERS, 1]; "
                   "0 leaves verification to `assay worker` processes.")
@click.option("--auth/--no-auth", default=None,
              help="Require credentials (users, tokens, roles) [ASSAY_AUTH, off].")
def serve(host, port, data_dir, log_level, workers, auth) -> None:
    """Serve the registry (OCI Distribution API under /v2/, REST under /api/v1/) and,
    unless --workers 0, verify pushed models in background worker processes."""
    settings = load_settings(host=host, port=port, data_dir=data_dir, log_level=log_level,
                             workers=workers, auth=auth)
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings, workers=settings.workers)
    json_logs = settings.log_format == "json"
    # JSON: uvicorn's loggers go through our root handler (log_config=None) and the access
    # lines come from RequestIdMiddleware, which knows the request id and the user.
    extra = {"log_config": None} if json_logs else {}
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                access_log=settings.log_level == "debug" and not json_logs, loop="uvloop",
                http=HttpToolsProtocol, h11_max_incomplete_event_size=settings.max_header_bytes,
                server_header=False, date_header=False,
                # Only a configured proxy's X-Forwarded-* are believed (rightmost untrusted
                # address wins); without one they are ignored.
                proxy_headers=settings.forwarded_allow_ips is not None,
                forwarded_allow_ips=settings.forwarded_allow_ips, **extra)

