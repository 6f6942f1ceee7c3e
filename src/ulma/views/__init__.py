"""Views: what people look at (the end-of-run report; the live view later)."""
