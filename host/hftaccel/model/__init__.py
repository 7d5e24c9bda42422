"""hftaccel.model."""
