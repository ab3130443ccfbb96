"""The serving tests' trained champion and published snapshot, reused here rather than trained again."""

from tests.serving.conftest import served

__all__ = ["served"]
