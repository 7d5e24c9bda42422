"""hftaccel.boards: ECP5 board tops and the build flow.

* :mod:`~hftaccel.boards.mac` — 1000BASE-T MAC (GMII/RGMII, FCS, padding, IFG, async-FIFO CDC,
  UDP framing of the order path);
* :mod:`~hftaccel.boards.uart` — UART register bridge (gateware and host client);
* :mod:`~hftaccel.boards.pll` — ECP5 EHXPLLL divider search and instance;
* :mod:`~hftaccel.boards.board` — what every board top shares; :mod:`~hftaccel.boards.versa`
  (ECP5-5G Versa, LFE5UM5G-45F) and :mod:`~hftaccel.boards.ulx3s` (ULX3S-85F) wire it;
* :mod:`~hftaccel.boards.build` — Amaranth -> Yosys -> nextpnr-ecp5 -> ecppack and the report
  (``hftaccel build``); :mod:`~hftaccel.boards.deploy` — staleness, openFPGALoader, status
  (``hftaccel deploy``, ``hftaccel status``); :mod:`~hftaccel.boards.commands` — the CLI bodies.
"""
