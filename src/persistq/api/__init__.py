"""The REST API of SPEC.md (FastAPI): ``create_app``; run it with ``persistq api``."""

from persistq.api.app import create_app

__all__ = ["create_app"]
