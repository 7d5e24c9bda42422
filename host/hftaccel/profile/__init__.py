"""hftaccel.profile: latency profiling reports across the cpu, gpu and rtl backends.

:func:`profile` measures each backend on one input and writes ``report.html`` (self-contained),
``report.md``, ``report.json`` and PNG plots; :mod:`.measure` holds the measurements,
:mod:`.timing` the clock and wire arithmetic, :mod:`.references` the published figures.
"""

from .report import BACKENDS, SECTIONS, profile

__all__ = ["BACKENDS", "SECTIONS", "profile"]
