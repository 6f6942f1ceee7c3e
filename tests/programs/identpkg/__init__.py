"""A package whose module `show` is run with `-m identpkg.show`."""
