"""hftaccel.golden."""
