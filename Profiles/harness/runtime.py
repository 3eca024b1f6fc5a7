"""Describes the Python environment it runs in, as one JSON line, for `airlock probe --python`.

    PYTHON -I -B runtime.py

Run by the supervisor in a sandbox of its own with the environment mounted read-only, before any model is involved:
the interpreter's version, its prefixes, its module search path and the installed distributions, by the top-level
module names they provide. Standard library only.
"""
import json
import sys


def distributions():
    """{top-level module: [distribution, version]} for what is installed on sys.path."""
    out = {}
    try:
        from importlib import metadata
    except ImportError:
        return out
    for dist in metadata.distributions():
        try:
            name, version = dist.metadata["Name"], dist.version
        except Exception:
            continue
        if not name or not version:
            continue
        tops = []
        try:
            text = dist.read_text("top_level.txt")
            if text:
                tops = [t.strip() for t in text.splitlines() if t.strip()]
        except Exception:
            tops = []
        if not tops:
            for f in dist.files or []:
                parts = f.parts
                if len(parts) > 1 and parts[1] == "__init__.py":
                    tops.append(parts[0])
                elif len(parts) == 1 and parts[0].endswith(".py"):
                    tops.append(parts[0][:-3])
        if not tops:
            tops = [name.replace("-", "_").lower()]
        for top in sorted(set(tops)):
            if top.isidentifier() and top not in out:
                out[top] = [name, version]
    return out


def main():
    import site
    try:
        sites = site.getsitepackages()
    except AttributeError:  # old virtualenv's site module
        sites = []
    info = {
        "implementation": sys.implementation.name,
        "version": "%d.%d.%d" % sys.version_info[:3],
        "executable": sys.executable,
        "prefix": sys.prefix,
        "basePrefix": getattr(sys, "base_prefix", sys.prefix),
        "path": [p for p in sys.path if p],
        "sitePackages": sites,
        "distributions": distributions(),
    }
    print("airlock-runtime: " + json.dumps(info, sort_keys=True), flush=True)
    return 0


sys.exit(main())
