"""hftaccel.router."""
