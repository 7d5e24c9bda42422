"""Training data sets built from the golden pipeline (LOBSTER -> ITCH -> book -> features).

:func:`amzn_day` is the data of the default model (``models/default.*``): the vendored LOBSTER
sample AMZN 2012-06-21 (level 1), converted to ITCH 5.0 (:func:`hftaccel.feeds.lobster.to_itch`),
replayed through the golden book and the golden features.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

__all__ = ["AMZN_STEM", "amzn_day"]

#: File stem of the vendored LOBSTER sample in :mod:`hftaccel.data`.
AMZN_STEM = "AMZN_2012-06-21_34200000_57600000"


def amzn_day():
    """Features and mids of the AMZN day, one row per LOBSTER event.

    The synthesized filler messages of the conversion are replayed (they shape the book) but
    are not samples: the rows are the book records of the LOBSTER rows' own messages, in time
    order (halt-indicator rows, which change no book, have none).

    Returns
    -------
    features : np.ndarray, int32, shape (n, N_FEATURES)
        ``hftaccel.golden.features.compute_features`` on the full record stream, selected rows.
    mids : np.ndarray, float64, shape (n,)
        ``(best_bid + best_ask) / 2`` after each row, 1/10,000 USD (NaN when a side is empty).
    info : dict
        Data description for the model card.
    """
    from hftaccel.feeds import itch, lobster
    from hftaccel.golden import book, features
    from hftaccel.model import labels

    data = resources.files("hftaccel.data")
    msgs = lobster.load_messages(data / f"{AMZN_STEM}_message_1.csv.gz")
    ob = lobster.load_orderbook(data / f"{AMZN_STEM}_orderbook_1.csv.gz")
    conv = lobster.to_itch(msgs, ob, stock="AMZN")
    records, bad = book.replay(itch.order_events(conv.messages))
    feats = features.compute_features(records)
    keep = np.isin(records["seq"], conv.main_seq)
    mids, _ = labels.mid_prices(records[keep])
    info = {"source": f"LOBSTER sample {AMZN_STEM} (message + orderbook, level 1)",
            "symbol": "AMZN", "date": "2012-06-21",
            "lobster_rows": int(len(msgs)), "book_records": int(len(records)),
            "sample_rows": "book records of the LOBSTER rows' messages (synthesized filler "
                           "messages replayed but not sampled)",
            "synthesized_messages": {k: int(v) for k, v in conv.synthesized.items()},
            "bad_references": {k: int(v) for k, v in bad.items()},
            "mid": "(best_bid + best_ask) / 2 from the golden book, 1/10,000 USD"}
    return feats[keep], mids, info
