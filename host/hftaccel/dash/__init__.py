"""hftaccel.dash: a browser dashboard of a trading day (Dash + Plotly), served from a run folder.

:mod:`.data` reads a run folder columnar and windowed (pyarrow), :mod:`.downsample` reduces a
window to what a panel of a few hundred pixels shows, :mod:`.figures` draws the panels,
:mod:`.app` serves them, :mod:`.live` writes the part files of ``hftaccel run --live`` that
``hftaccel dash --follow`` tails. Only :mod:`.figures` and :mod:`.app` need the ``[dash]``
extra (dash, plotly).
"""

__all__ = ["app", "data", "downsample", "figures", "live"]
