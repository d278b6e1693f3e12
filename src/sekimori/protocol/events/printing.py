"""Events of the printing collector, from CUPS's page_log.

CUPS logs either one line per printed page, or one "total" line per job once its
count is known (which one depends on the CUPS version and the printer's driver):
the first become ``printing.page``, the second ``printing.job``. ``user`` is the
user CUPS printed for (the requesting user name), ``document`` the job name (the
file or window title the application sent), ``host`` the client the job came from.
Fields the log format does not carry are empty.
"""

from __future__ import annotations

from typing import Final

from sekimori.protocol.events._base import Payload

__all__ = ["KINDS", "PrintJob", "PrintPage"]


class PrintJob(Payload):
    """A job's total: ``pages`` is the number of impressions CUPS counted."""

    printer: str
    user: str
    job_id: int
    pages: int
    document: str = ""
    host: str = ""
    billing: str = ""
    media: str = ""
    sides: str = ""


class PrintPage(Payload):
    """One page of a job, printed ``copies`` times."""

    printer: str
    user: str
    job_id: int
    page: int
    copies: int = 1
    document: str = ""
    host: str = ""
    billing: str = ""
    media: str = ""
    sides: str = ""


KINDS: Final[dict[str, type[Payload]]] = {
    "printing.job": PrintJob,
    "printing.page": PrintPage,
}
