"""What feeds a dashboard: a source observes a lab (live, or a finished run) and writes into a LabView."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from ..view import LabView


class LabSource(ABC):
    """One lab's observations for one :class:`~edge_mcepl.dashboard.view.LabView`.

    :meth:`start` fills the view (a finished run: all of it, at once; a live lab: the retained
    messages, then every change until :meth:`stop`). Bad input — an unreadable run directory, a
    refused broker login, a config not signed by the lab — is one :class:`~edge_mcepl.errors.UserError`
    line from :meth:`start`, before the page is served.
    """

    mode: ClassVar[str]  # the view's: "live" or "run"

    def __init__(self) -> None:
        """Subclasses set what :attr:`where` reads first."""
        self.view = LabView(self.mode, self.where)

    @property
    @abstractmethod
    def where(self) -> str:
        """The broker's URL or the run directory, as the page header says."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None:
        """Let go of what :meth:`start` took (a broker connection)."""
