"""hftaccel.backends."""
