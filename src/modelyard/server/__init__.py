"""The HTTP layer: SageMaker runtime API, MME container contract, metrics."""

from modelyard.server.app import create_app

__all__ = ["create_app"]
