"""Put the browser scripts the docs site needs into docs/assets/vendor/, so a built page loads
nothing from outside: mermaid (diagrams) and iframe-worker's shim (search on a page opened from
the file system, which Material's offline plugin would otherwise load from a CDN).

    python tools/vendor_js.py [--dest DIR]

Each package comes from the npm registry with ``npm pack`` at a pinned version (npm checks the
tarball's integrity); only the listed files are kept. A file already there at the pinned version
is not fetched again. The files are build products, not sources: .gitignore keeps them out of git.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "docs" / "assets" / "vendor"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    #: File in the package tarball -> file under the destination.
    files: dict[str, str]


PACKAGES = (
    # Material for MkDocs 9.x draws diagrams with mermaid 11 (it would fetch mermaid@11 from a CDN).
    Package("mermaid", "11.12.0", {"package/dist/mermaid.min.js": "mermaid/mermaid.min.js"}),
    Package("iframe-worker", "1.0.4", {"package/shim/index.js": "iframe-worker/shim.js"}),
)


def _stamp(dest: Path, package: Package) -> Path:
    return dest / package.name / ".version"


def fetch(package: Package, dest: Path) -> bool:
    """Unpack ``package``'s files under ``dest``; False if they were there already at this version."""
    stamp = _stamp(dest, package)
    if stamp.exists() and stamp.read_text().strip() == package.version and \
            all((dest / out).exists() for out in package.files.values()):
        return False
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("vendor_js: npm is missing (Debian: apt-get install -y npm); `make docs` installs it")
    with tempfile.TemporaryDirectory(prefix="qjm-vendor-") as tmp:
        done = subprocess.run([npm, "pack", f"{package.name}@{package.version}", "--pack-destination", tmp,
                               "--silent"], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"vendor_js: npm pack {package.name}@{package.version} failed:\n{done.stderr}")
        tarball = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tarball) as tar:
            for member, out in package.files.items():
                extracted = tar.extractfile(member)
                if extracted is None:
                    raise SystemExit(f"vendor_js: {member} is not in {tarball.name}")
                target = dest / out
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(extracted.read())
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(package.version + "\n")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch the docs site's browser scripts from the npm registry.")
    parser.add_argument("--dest", type=Path, default=DEST)
    args = parser.parse_args(argv)
    for package in PACKAGES:
        fetched = fetch(package, args.dest)
        print(f"{package.name}@{package.version}: {'fetched' if fetched else 'already there'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
