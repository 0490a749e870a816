"""The browser fixtures of the status page tests (``tests.monitor.browser``)."""

from tests.monitor.browser import browser, page

__all__ = ["browser", "page"]
