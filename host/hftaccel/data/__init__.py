"""Embedded sample data (package data)."""
