"""hftaccel.feeds."""
