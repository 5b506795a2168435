"""Fixtures of the media tests (builders in ``support.media``)."""

from support.media import encrypted_media_archive, link_host, make_fetcher, media_archive

__all__ = ["encrypted_media_archive", "link_host", "make_fetcher", "media_archive"]
