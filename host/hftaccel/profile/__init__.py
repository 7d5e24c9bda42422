"""hftaccel.profile."""
