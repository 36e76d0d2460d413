"""The Teams side of Copilot Setup Bot: HTTP front door, adapter, activity handler, notifier."""

from . import lazy_imports

lazy_imports.install()
