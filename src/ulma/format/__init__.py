"""The record format: ulma's event and symbol layouts, in Python."""
