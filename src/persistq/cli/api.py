"""``persistq api``: the REST API under uvicorn; and the token ``persistq up`` gives it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import typer

from persistq.cli.main import app, fail, open_queue, stdout
from persistq.config import Settings

TOKEN_ENV = "PERSISTQ_API_TOKEN"
TOKEN_FILE = Path("data") / "api-token"
NO_TOKEN = (
    f"no API token: set {TOKEN_ENV} to a secret of 16+ characters (several, comma-separated, "
    f"to rotate), e.g. export {TOKEN_ENV}="
    "$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
)


@app.command()
def api(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    max_waiting_claims: int = typer.Option(
        32,
        "--max-waiting-claims",
        min=1,
        max=1024,
        help="Long-polling claims served at once, each holding a thread (more wait their turn).",
    ),
    limit_concurrency: int = typer.Option(
        1000, "--limit-concurrency", min=1, help="Connections served at once; 503 past it."
    ),
    max_body_bytes: int = typer.Option(
        4 * 1024 * 1024, "--max-body-bytes", min=1024, help="Largest request body (413 past it)."
    ),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log"),
    log_level: str = typer.Option(
        "info", "--log-level", envvar="PERSISTQ_LOG_LEVEL", show_envvar=True
    ),
) -> None:
    """Serve the REST API (docs at /docs). Needs PERSISTQ_API_TOKEN."""
    from persistq.api.auth import MIN_TOKEN_LENGTH, parse_tokens

    tokens = parse_tokens(os.environ.get(TOKEN_ENV))
    if not tokens:
        fail(NO_TOKEN)
    if any(len(t) < MIN_TOKEN_LENGTH for t in tokens):
        fail(f"{TOKEN_ENV}: every token needs at least {MIN_TOKEN_LENGTH} characters")
    import uvicorn

    from persistq.api import create_app

    url = ctx.find_root().obj.url
    settings = Settings.from_env(url=url)
    application = create_app(
        settings,
        # Opened here, so a missing or unusable database is one error line, not a failed
        # server startup; closed when the command ends.
        queue=open_queue(ctx),
        tokens=tokens,
        max_body_bytes=max_body_bytes,
        max_waiting_claims=max_waiting_claims,
    )
    uvicorn.run(
        application,
        host=host,
        port=port,
        limit_concurrency=limit_concurrency,
        access_log=access_log,
        log_level=log_level.lower(),
        server_header=False,
    )


def ensure_api_token(home: Path) -> str:
    """The token ``persistq up`` gives the API: PERSISTQ_API_TOKEN when set, else the one in
    ``data/api-token``, created (owner-only) and printed once at the first start."""
    given = os.environ.get(TOKEN_ENV)
    if given:
        return given
    path = home / TOKEN_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    stdout.print(f"API token (shown once; kept in {path}): {token}", markup=False)
    return token
