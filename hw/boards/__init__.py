"""hftaccel.boards: ECP5 board tops and the build flow."""
