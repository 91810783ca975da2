"""Shared by the bench scripts: print the JSON document and optionally write it to a file
(the implementation lives in the package, fastnplm/_bench.py, which `fastnplm bench` uses)."""
from fastnplm._bench import emit  # noqa: F401
