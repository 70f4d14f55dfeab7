"""The docs site: it builds strictly from a copy of the tree, its references follow the code, and a
built page loads nothing from outside (it must work offline, from the file system)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from qjm.ops.cluster import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import gen_docs  # noqa: E402

DOC_SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: What a path named in backticks may start with: the repository's own top-level entries.
TOP_LEVEL = {"qjm", "workers", "tests", "bench", "deploy", "docs", "tools", "Makefile", "pyproject.toml", "mkdocs.yml"}
PUBLIC_CLASSES = ["JobManager", "ManagedJobSet", "ManagedJob", "ManagedResults", "BackendInfo", "QueueInfo",
                  "SetUsage", "InstanceUsage", "JobStatus", "JobSetStatus"]


class _Loader(yaml.SafeLoader):
    """mkdocs.yml names a Python object (``!!python/name:``) for the mermaid fence; read it as text."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda loader, suffix, node: suffix)


def mkdocs_config(root: Path = ROOT) -> dict:
    return yaml.load((root / "mkdocs.yml").read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader


def nav_files(nav: list) -> list[str]:
    out: list[str] = []
    for item in nav:
        for value in (item.values() if isinstance(item, dict) else [item]):
            out += nav_files(value) if isinstance(value, list) else [value]
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A copy of the tree (no .git, .venv or earlier build), references generated there, then
    ``mkdocs build --strict``: what ``make docs`` does on a clean clone."""
    tree = tmp_path_factory.mktemp("docs-tree")
    for name in ("qjm", "workers", "docs", "tools", "tests", "bench", "deploy"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("mkdocs.yml", "README.md", "Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, tree / name)
    for page in gen_docs.PAGES:
        (tree / "docs" / page).unlink(missing_ok=True)
    run = [sys.executable, str(tree / "tools" / "vendor_js.py"), "--dest", str(tree / "docs" / "assets" / "vendor")]
    subprocess.run(run, check=True, capture_output=True, text=True, timeout=900)
    subprocess.run([sys.executable, str(tree / "tools" / "gen_docs.py"), "--out", str(tree / "docs")], check=True,
                   capture_output=True, text=True, timeout=300)
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run([str(mkdocs), "build", "--strict", "-f", str(tree / "mkdocs.yml"), "-d", str(tree / "site")],
                          capture_output=True, text=True, timeout=600, cwd=tree, env={"NO_MKDOCS_2_WARNING": "1",
                                                                                     "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return tree


def test_every_nav_page_exists_and_is_built(built):
    pages = nav_files(mkdocs_config(built)["nav"])
    assert len(pages) >= 19
    for page in pages:
        assert (built / "docs" / page).is_file(), f"nav names {page}, which is not in docs/"
        assert (built / "site" / page.replace(".md", ".html")).is_file(), f"{page} was not built"
    listed = {str(p.relative_to(built / "docs")) for p in (built / "docs").rglob("*.md")}
    assert listed == set(pages), f"pages outside the nav: {listed - set(pages)}"


def test_api_page_documents_the_public_classes_and_errors(built):
    import qjm
    from qjm import errors

    html = (built / "site" / "reference" / "api.html").read_text()
    ids = set(re.findall(r'id="([^"]+)"', html))
    for name in PUBLIC_CLASSES:
        assert f"qjm.{name}" in ids, f"the API page does not document qjm.{name}"
    for method in ("JobManager.run", "JobManager.retrieve_job_set", "ManagedJobSet.results", "ManagedResults.get_counts"):
        assert f"qjm.{method}" in ids, f"the API page does not document {method}"
    hierarchy = {c.__name__: c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.QJMError)}
    for name in hierarchy:
        assert f"qjm.errors.{name}" in ids, f"the API page does not document the error {name}"
    # The tree drawn on the page is the code's: each error under its parent in the hierarchy.
    source = (built / "docs" / "reference" / "api.md").read_text()
    tree = source.split("## Errors", 1)[1].split("```")[1]
    drawn: dict[str, str | None] = {}
    parents: list[str] = []
    for line in tree.strip().splitlines():
        name = re.search(r"(\w+Error|\w+Later|QJMError)", line).group(1)
        depth = (len(line) - len(line.lstrip("│ ├└─"))) // 4
        parents[depth:] = [name]
        drawn[name] = parents[depth - 1] if depth else None
    assert set(drawn) == set(hierarchy), f"errors in the code, not drawn: {set(hierarchy) - set(drawn)}"
    for name, cls in hierarchy.items():
        actual = next((b.__name__ for b in cls.__bases__ if issubclass(b, errors.QJMError)), None)
        assert drawn[name] == actual, f"{name} is drawn under {drawn[name]}, but derives from {actual}"
    assert set(qjm.__all__) <= {*PUBLIC_CLASSES, *hierarchy}, "a public name of qjm is missing from the API page"


def test_generated_references_list_every_setting_command_and_status(built):
    import typer
    import typer.main

    from qjm.config import Settings
    from qjm.lifecycle import JobSetStatus, JobStatus, Step
    from qjm.ops.cli import app

    settings = (built / "docs" / "reference" / "settings.md").read_text()
    for f in dataclasses.fields(Settings):
        row = next((line for line in settings.splitlines() if f"| `{f.name}` |" in line), None)
        assert row is not None, f"Settings.{f.name} is missing from the settings reference"
        assert re.search(r"`(QJM|QISKIT)_\w+`", row), f"Settings.{f.name} has no variable in the reference"
    cli = (built / "docs" / "reference" / "cli.md").read_text()
    group = typer.main.get_command(app)
    ctx = typer.Context(group, info_name="qjm")
    for name in group.list_commands(ctx):
        assert f"## qjm {name}\n" in cli, f"`qjm {name}` is missing from the command reference"
        for param in group.get_command(ctx, name).params:
            for opt in param.opts:
                if opt.startswith("--"):
                    assert opt in cli, f"`qjm {name} {opt}` is missing from the command reference"
    lifecycle = (built / "docs" / "reference" / "lifecycle.md").read_text()
    diagram = lifecycle.split("```mermaid", 1)[1].split("```", 1)[0]
    for status in JobStatus:
        assert f"| `{status.value}` |" in lifecycle and status.value in diagram, f"{status} is missing from the lifecycle"
    for status in JobSetStatus:
        assert f"| `{status.value}` |" in lifecycle
    for step in Step:
        assert f"| `{step.value}` |" in lifecycle
    assert (built / "site" / "reference" / "lifecycle.html").read_text().count('class="mermaid"') == 1


def test_generation_refuses_an_undescribed_setting_and_check_finds_a_stale_page(tmp_path):
    source = '''
from dataclasses import dataclass, field
import os
WORKER_CLIENT_ENV = {}
@dataclass(frozen=True)
class Settings:
    #: Described.
    described: int = field(default_factory=lambda: int(os.environ.get("QJM_DESCRIBED", "1")))
    undescribed: int = field(default_factory=lambda: int(os.environ.get("QJM_UNDESCRIBED", "2")))
'''
    path = tmp_path / "fake_config.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("fake_config", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fake_config"] = module  # dataclasses looks the module up while making the class
    try:
        spec.loader.exec_module(module)
        with pytest.raises(gen_docs.GenerationError, match="undescribed"):
            gen_docs.settings_page(module)
    finally:
        del sys.modules["fake_config"]
    out = tmp_path / "docs"
    assert gen_docs.main(["--out", str(out)]) == 0
    assert gen_docs.main(["--out", str(out), "--check"]) == 0
    page = out / "reference" / "settings.md"
    page.write_text(page.read_text().replace("QJM_TTL_SECONDS", "QJM_TTL"))
    assert gen_docs.main(["--out", str(out), "--check"]) == 1


def _prose(text: str) -> str:
    """``text`` without its fenced code blocks (commands there are examples, not claims)."""
    return re.sub(r"^(\s*)```.*?^\1```", "", text, flags=re.S | re.M)


def test_paths_named_in_the_docs_exist(built):
    missing = []
    for source in DOC_SOURCES + sorted((built / "docs" / "reference").glob("*.md")):
        rel = source.relative_to(built if source.is_relative_to(built) else ROOT)
        for span in re.findall(r"`([^`\n]+)`", _prose(source.read_text())):
            span = span.strip()
            if not re.fullmatch(r"[\w.*-]+(/[\w.*-]+)*/?", span):
                continue
            first = span.split("/")[0]
            if first not in TOP_LEVEL or (first in ("qjm", "workers", "tests", "docs") and "/" not in span):
                continue
            if not list(built.glob(span.rstrip("/"))):
                missing.append(f"{rel}: `{span}`")
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", source.read_text()):
            if not urlsplit(link).scheme and not (source.parent / link).exists() and \
                    not ((built / rel).parent / link).exists():
                missing.append(f"{rel}: link {link}")
    assert not missing, "the docs name paths that do not exist:\n" + "\n".join(missing)


# ----------------------------------------------------------------------------- nothing from outside
#: Attributes through which a browser fetches (tag, attribute); <a href> is navigation, not a fetch.
FETCHING = {("script", "src"), ("img", "src"), ("img", "srcset"), ("iframe", "src"), ("source", "src"),
            ("source", "srcset"), ("video", "src"), ("video", "poster"), ("audio", "src"), ("embed", "src"),
            ("object", "data"), ("track", "src"), ("input", "src")}
NOT_FETCHED_LINKS = {"prev", "next", "canonical", "alternate", "author", "license", "search"}
CDN_HOSTS = {"unpkg.com", "cdn.jsdelivr.net", "cdnjs.cloudflare.com", "fonts.googleapis.com", "fonts.gstatic.com",
             "esm.sh", "cdn.skypack.dev", "ga.jspm.io", "api.github.com"}
RESOURCE = re.compile(r"\.(m?js|css|json|woff2?|ttf|otf|png|jpe?g|gif|svg|webp|ico|wasm)([?#].*)?$", re.I)
LOADER_CALL = re.compile(r"(fetch|import|importScripts|Worker|\.src\s*=|\.href\s*=|\.open)\s*\(?\s*$")
JS_URL = re.compile(r"([\"'`])((?:https?:)?//[^\"'`\s]+)\1")
#: URLs in Material's own bundle that a page never fetches, each with the guard around it (checked in
#: the bundle as it is) and why the guard holds on this site (checked against the built pages).
GUARDED = {
    "https://unpkg.com/mermaid@11/dist/mermaid.min.js":
        (r'typeof mermaid=="undefined"\|\|mermaid instanceof Element\?\w+\("{url}"\)', "mermaid"),
    "https://unpkg.com/resize-observer-polyfill":
        (r'typeof ResizeObserver=="undefined"\?\w+\("{url}"\)', "builtin"),
    "https://api.github.com/repos/${e}/${t}": (r"function \w+\(e,t\)\{if\(typeof t!=\"undefined\"\)\{let r=`{url}`", "repo"),
    "https://api.github.com/users/${e}": (r"`{url}`", "repo"),
}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fetched: list[str] = []
        self.scripts: list[str] = []
        self.inline: list[str] = []
        self.mermaid = False
        self.source_link = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for attr in ("src", "href", "srcset", "data", "poster"):
            if attr in a and ((tag, attr) in FETCHING or (tag == "link" and attr == "href" and
                                                          not set(a.get("rel", "").split()) & NOT_FETCHED_LINKS)):
                self.fetched += [u.split()[0] for u in a[attr].split(",") if u.strip()] if attr == "srcset" else [a[attr]]
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        self._in_script = tag == "script" and not a.get("src")
        if "mermaid" in a.get("class", "").split():
            self.mermaid = True
        if a.get("data-md-component") == "source":
            self.source_link = True
        if "style" in a:
            self.inline.append(a["style"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline.append(data)


def _outside(url: str) -> bool:
    return url.startswith(("http://", "https://", "//"))


def _local(site: Path, page: Path, url: str) -> Path:
    """The file a page's relative URL names (one starting with / from the site's root, as 404.html has)."""
    path = url.split("#")[0].split("?")[0]
    return (site / path.lstrip("/")).resolve() if path.startswith("/") else (page.parent / path).resolve()


def _js_violations(text: str, where: str) -> list[tuple[str, str]]:
    """(url, where) for each URL the script ``text`` would fetch, guarded ones apart."""
    found = []
    for m in JS_URL.finditer(text):
        url = m.group(2)
        host = urlsplit(url if "://" in url else "https:" + url).hostname or ""
        before = text[max(0, m.start() - 40):m.start()]
        if host in CDN_HOSTS or RESOURCE.search(url.split("${")[0]) or LOADER_CALL.search(before):
            found.append((url, where))
    return found


def _css_violations(text: str, where: str) -> list[tuple[str, str]]:
    urls = re.findall(r"url\(\s*['\"]?((?:https?:)?//[^'\")\s]+)", text)
    urls += re.findall(r"@import\s+(?:url\()?\s*['\"]((?:https?:)?//[^'\"]+)", text)
    return [(u, where) for u in urls]


def test_no_built_page_fetches_from_outside(built):
    site = built / "site"
    config = mkdocs_config(built)
    problems: list[str] = []
    scanned: dict[Path, list[tuple[str, str]]] = {}

    def scan(path: Path, kind: str) -> list[tuple[str, str]]:
        if path not in scanned:
            text = path.read_text(errors="replace")
            where = str(path.relative_to(site))
            scanned[path] = _js_violations(text, where) if kind == "js" else _css_violations(text, where)
        return scanned[path]

    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 20
    for page in pages:
        parser = _Page()
        text = page.read_text()
        parser.feed(text)
        rel = page.relative_to(site)
        found: list[tuple[str, str]] = []
        for url in parser.fetched:
            if _outside(url):
                problems.append(f"{rel}: loads {url}")
                continue
            local = _local(site, page, url)
            if not local.is_file():
                problems.append(f"{rel}: loads {url}, which is not in the site")
            elif local.suffix == ".js":
                found += scan(local, "js")
            elif local.suffix == ".css":
                found += scan(local, "css")
        cfg = re.search(r'<script id="__config" type="application/json">(.*?)</script>', text, re.S)
        if cfg and json.loads(cfg.group(1)).get("search"):  # the search worker, started from the bundle
            found += scan(_local(site, page, json.loads(cfg.group(1))["search"]), "js")
        for inline in parser.inline:
            found += _js_violations(inline, f"{rel} (inline)") + _css_violations(inline, f"{rel} (inline)")
        for url, where in found:
            guard = GUARDED.get(url)
            bundle = site / where
            if guard is None or not bundle.is_file() or \
                    not re.search(guard[0].replace("{url}", re.escape(url)), bundle.read_text()):
                problems.append(f"{rel}: {where} fetches {url}")
            elif guard[1] == "mermaid" and parser.mermaid and not any(
                    s.endswith("mermaid.min.js") and not _outside(s) and _local(site, page, s).is_file() for s in parser.scripts):
                problems.append(f"{rel} draws a diagram without a local mermaid, so the bundle would fetch {url}")
            elif guard[1] == "repo" and (parser.source_link or "repo_url" in config):
                problems.append(f"{rel} links a repository, so the bundle would fetch {url}")
    assert not problems, "built pages that fetch from outside:\n" + "\n".join(sorted(set(problems)))
    assert any(p.name.startswith("bundle") for p in scanned), "Material's bundle was not scanned"
    assert config["theme"]["font"] is False and config["extra"]["generator"] is False


def test_the_scan_finds_what_a_page_would_fetch():
    """The checks above can fail: a CDN script, a web font and a fetch() call are each found."""
    page = _Page()
    page.feed('<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">'
              '<script src="https://unpkg.com/iframe-worker/shim"></script><link rel="next" href="https://x.org/a">')
    assert [u for u in page.fetched if _outside(u)] == ["https://fonts.googleapis.com/css?family=Roboto",
                                                         "https://unpkg.com/iframe-worker/shim"]
    assert _js_violations('fetch("https://example.org/data")', "x") == [("https://example.org/data", "x")]
    assert _js_violations('e.src="https://example.org/lib.js"', "x")
    assert not _js_violations('createElementNS("http://www.w3.org/2000/svg","svg")', "x")
    assert _css_violations("@font-face{src:url(https://fonts.gstatic.com/a.woff2)}", "x")
