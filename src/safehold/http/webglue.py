"""Wiring the web pages (safehold.web) to the rest of the server: the web layer gets
the store, the backup state and a few callables, and never imports http or cli."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from safehold.cli.exporter import Exporter
from safehold.cli.progress import Progress
from safehold.web.site import Deps, Web

if TYPE_CHECKING:
    from safehold.http.app import App


class _JobProgress(Progress):
    """The exporter's progress, reported to a web job instead of a terminal."""

    def __init__(self, report: Callable[[int, int], None]) -> None:
        super().__init__("export")
        self.report = report

    def start(self, total: int) -> None:
        super().start(total)
        self.report(0, total)

    def step(self, n: int = 1) -> None:
        self.done += n
        self.report(self.done, self.total)

    def finish(self) -> None:
        self.report(self.done, self.total)


def build(app: App) -> Web:
    def export(user: str, out: Path, report: Callable[[int, int], None]) -> None:
        Exporter(app.store, user, app.settings.tmp_dir, _JobProgress(report)).write(out)

    return Web(Deps(store=app.store, settings=app.settings, backup=app.backup,
                    shipper=lambda: app.shipper, status=app.status, login=app.auth.login,
                    forget=app.auth.forget, export=export))
