"""Fixtures of the media tests (builders in ``support.media``)."""

from support.media import make_fetcher, media_archive

__all__ = ["make_fetcher", "media_archive"]
