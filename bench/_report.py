"""Shared by the bench scripts: print the JSON document and optionally write it to a file."""
import json


def emit(out: dict, path=None) -> None:
    text = json.dumps(out, indent=2)
    print(text)
    if path:
        with open(path, "w") as fh:
            fh.write(text + "\n")
