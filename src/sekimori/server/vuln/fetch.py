"""Downloading configured feeds (``sekimori vuln fetch``) where the network allows.

The network sits behind ``Downloader`` (one method) so the import logic does not
care where bytes come from; ``UrlDownloader`` is the real one (stdlib urllib, HTTPS
or loopback HTTP only, a size cap enforced while reading). Nothing in the server
fetches on its own: closed networks import files.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Protocol
from urllib.parse import urlsplit

from sekimori.server.vuln.feeds import FeedError

__all__ = ["Downloader", "UrlDownloader", "check_url"]

_CHUNK = 1024 * 1024


class Downloader(Protocol):
    def fetch(self, url: str, *, max_bytes: int, timeout: float) -> bytes:
        """The body at ``url``; raises FeedError (permanent=False when a retry may
        help: the network, a 5xx)."""
        ...


def check_url(url: str) -> None:
    """Feeds come over HTTPS (HTTP only from this machine, for a local mirror)."""
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise FeedError(f"feed URL must be https:// (or http:// on loopback): {url}")


class UrlDownloader:
    def fetch(self, url: str, *, max_bytes: int, timeout: float) -> bytes:
        check_url(url)
        request = urllib.request.Request(url, headers={"User-Agent": "sekimori-vuln-fetch"})  # noqa: S310 - scheme checked above
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                chunks: list[bytes] = []
                size = 0
                while chunk := response.read(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FeedError(f"{url}: larger than {max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except urllib.error.HTTPError as exc:
            raise FeedError(f"{url}: HTTP {exc.code}", permanent=exc.code < 500) from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise FeedError(f"{url}: {exc}", permanent=False) from exc
