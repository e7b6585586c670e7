"""Build the wheel and the sdist from a clean copy of the tree, check that every module and
data file of the tree is in both, install the wheel (not editable) into a fresh virtual
environment and run ``pip check``, ``metabench plugins`` and a tiny ``compare`` from there.

The fresh environment installs the wheel with ``--no-deps``: its dependencies (torch, ...)
are those of the project's ``.venv``, reached through a ``.pth`` file that points at a
folder of links to ``.venv``'s packages with every metabench entry (the editable install)
left out, so nothing is downloaded and only the wheel's own files provide metabench.
``pip check`` then checks the wheel's requirements against those packages.

Usage: python scripts/check_package.py [--keep]   (exit 1 when a check fails)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP_SUFFIXES = {".pyc", ".pyo"}


def tree_files() -> list[str]:
    """The files of the tree that must ship, as paths inside the wheel."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    wanted = []
    for name in listed:
        if not (ROOT / name).is_file() or Path(name).suffix in SKIP_SUFFIXES:
            continue
        if name.startswith("metabench/"):
            wanted.append(name)
        elif name.startswith("plugins/"):
            wanted.append("metabench_plugins/" + name.removeprefix("plugins/"))
    return sorted(wanted)


def copy_tree(target: Path) -> None:
    """The tracked and untracked-but-not-ignored files, as a fresh clone would have them."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    for name in listed:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def build(source: Path, dist: Path) -> tuple[Path, Path]:
    """The wheel and the sdist, each built by setuptools' backend in its own process."""
    for hook in ("build_wheel", "build_sdist"):
        code = f"import sys, setuptools.build_meta as b; b.{hook}(sys.argv[1])"
        subprocess.run([sys.executable, "-c", code, str(dist)], cwd=source, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return next(dist.glob("*.whl")), next(dist.glob("*.tar.gz"))


def missing(wanted: list[str], wheel: Path, sdist: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    problems = [f"wheel lacks {name}" for name in wanted if name not in in_wheel]
    for name in wanted:
        tree_name = name.replace("metabench_plugins/", "plugins/", 1)
        if tree_name not in in_sdist:
            problems.append(f"sdist lacks {tree_name}")
    return problems


def dependency_folder(target: Path) -> Path:
    """Links to the packages of this interpreter's site folders, metabench's own left out."""
    target.mkdir()
    stdlib = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib")}
    for folder in sys.path:
        path = Path(folder)
        if not path.is_dir() or folder in stdlib or "site-packages" not in folder:
            continue
        for entry in path.iterdir():
            name = entry.name
            if (name.startswith(("metabench", "__editable__", "_distutils_hack", "pip"))
                    or name.endswith(".pth") or name == "__pycache__"
                    or (target / name).exists()):
                continue
            (target / name).symlink_to(entry)
    return target


def fresh_venv(path: Path, deps: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "metabench-deps.pth").write_text(f"{deps}\n")
    return python


def run(step: str, command: list[str], cwd: Path) -> bool:
    print(f"[package] {step}: {' '.join(command)}", flush=True)
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": "", "METABENCH_PLUGINS": ""})
    if result.returncode != 0:
        print(f"[package] FAILED ({result.returncode}): {step}\n{result.stdout}{result.stderr}")
        return False
    return True


def checks(python: Path, work: Path) -> list[str]:
    bin_dir = python.parent
    tiny = [str(bin_dir / "metabench"), "compare", "-a", "protonet", "--shots", "1",
            "--episodes", "4", "--budget", "episodes:4", "--val-episodes", "2",
            "--val-points", "1", "--out", str(work / "results"), "--no-progress", "--no-report"]
    where = ("import metabench, metabench.rl, metabench_plugins, sys; "
             f"sys.exit(not metabench.__file__.startswith({str(python.parent.parent)!r}))")
    failed = [] if pip_check(python, work) else ["pip check"]
    steps = {
        "metabench imported from the wheel": [str(python), "-c", where],
        "metabench plugins": [str(bin_dir / "metabench"), "plugins"],
        "tiny compare": tiny,
    }
    return failed + [step for step, command in steps.items() if not run(step, command, work)]


def pip_check(python: Path, work: Path) -> bool:
    """``pip check``: metabench's own requirements must hold. Conflicts among the borrowed
    packages themselves (e.g. learn2learn's unused extras) are the environment's, not the
    wheel's: they are printed, not failed on."""
    print(f"[package] pip check: {python} -m pip check", flush=True)
    result = subprocess.run([str(python), "-m", "pip", "check"], cwd=work, capture_output=True,
                            text=True)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    ours = [line for line in lines if line.lower().startswith("metabench ")]
    for line in lines:
        print(f"[package]   {'error' if line in ours else 'note (not metabench)'}: {line}")
    return not ours


def main() -> int:
    keep = "--keep" in sys.argv
    work = Path(tempfile.mkdtemp(prefix="metabench-package-"))
    try:
        source, dist = work / "src", work / "dist"
        source.mkdir()
        dist.mkdir()
        copy_tree(source)
        wheel, sdist = build(source, dist)
        print(f"[package] built {wheel.name} and {sdist.name}")
        problems = missing(tree_files(), wheel, sdist)
        python = fresh_venv(work / "venv", dependency_folder(work / "deps"))
        install = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                   str(wheel)]
        if not run("install the wheel", install, work):
            problems.append("the wheel does not install")
        else:
            problems += [f"{step} failed" for step in checks(python, work)]
        for problem in problems:
            print(f"[package] error: {problem}")
        if not problems:
            print("[package] ok: wheel and sdist hold every module and data file; the installed "
                  "wheel passes pip check, lists its plugins and runs a compare")
        return 1 if problems else 0
    finally:
        if keep:
            print(f"[package] kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
