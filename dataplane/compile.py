"""``python -m dataplane.compile``: builds the compiled group of ``dataplane.compiled`` (mypyc, then the C compiler);
``--check`` says whether the build in ``dataplane/_compiled/`` is usable by this interpreter and these sources."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from dataplane.compiled import BUILD, GROUP, MANIFEST, MODULES, ROOT, abi, source, sources, usable


def build(jobs: int = 2) -> None:
    """Compile ``MODULES`` into ``BUILD`` (a minute of mypy and C compiler) and write the manifest last: a build
    cut short leaves no manifest, and no manifest means the sources are used. The C sources and objects are
    made in a temporary directory; only the libraries stay."""
    from mypyc.build import mypycify  # the build's own dependencies (mypy, setuptools): not needed at run time
    from setuptools import setup  # type: ignore[import-untyped]

    digests = sources()
    MANIFEST.unlink(missing_ok=True)
    shutil.rmtree(BUILD / "lib", ignore_errors=True)
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory(prefix="tollway-mypyc-") as work:
        # A cache of its own: the test command runs this build while mypy checks the tree, and two mypy processes
        # writing one cache directory crash each other now and then ("INTERNAL ERROR").
        extensions = mypycify([f"--cache-dir={ROOT / '.mypyc_cache'}",
                               *(str(source(m).relative_to(ROOT)) for m in MODULES)], opt_level="3",
                              multi_file=True, group_name=GROUP, target_dir=str(Path(work, "c")))
        with warnings.catch_warnings():  # setuptools' opinions of pyproject.toml, which it reads for nothing here
            warnings.simplefilter("ignore")
            setup(name="tollway-compiled", ext_modules=extensions, script_args=[
                "-q", "build_ext", "--build-lib", str(BUILD / "lib"), "--build-temp", str(Path(work, "o")),
                "-j", str(jobs)])
    suffix = abi()
    files = {m: str(Path("lib", source(m).relative_to(ROOT)).with_suffix(suffix)) for m in MODULES}
    files[f"{GROUP}__mypyc"] = str(Path("lib", f"{GROUP}__mypyc{suffix}"))
    for rel in files.values():
        if not (BUILD / rel).is_file():
            raise SystemExit(f"mypyc build: {rel} was not built")
    MANIFEST.write_text(json.dumps({"abi": suffix, "modules": list(MODULES), "files": files, "sources": digests},
                                   indent=1))


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--check"]:
        state = usable()
        print("compiled group: " + ("usable" if not isinstance(state, str) else f"not usable ({state})"))
        raise SystemExit(0 if not isinstance(state, str) else 1)
    if args:
        raise SystemExit("usage: python -m dataplane.compile [--check]")
    if not isinstance(usable(), str):
        print("compiled group: up to date")
        return
    build()
    print(f"compiled group: {len(MODULES)} modules built in {BUILD.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
