"""Execute the notebooks and write them as HTML, for reading without installing anything
(`make html`; issue 14): one page per notebook and an index.html, in build/html/ by default.

Outputs show where they ran (the repository's path, temporary sandboxes under /tmp, the
build cache under the home directory). Those are scrubbed: replaced by <repo>, <tmp> and ~,
so that a page says nothing about the machine that made it.

    python notebooks/_export.py [--out DIR] [--reveal] [NOTEBOOK.ipynb ...]
"""
from __future__ import annotations

import argparse
import html
import os
import pathlib
import re
import sys
import tempfile

NOTEBOOKS = pathlib.Path(__file__).resolve().parent
REPO = NOTEBOOKS.parent


def scrub(text: str, repo: pathlib.Path = REPO) -> str:
    """`text` with the machine's paths replaced: the repository by <repo>, temporary
    directories by <tmp>, the home directory by ~ (longest first: the repository may be
    under the home directory or under /tmp)."""
    home = pathlib.Path.home()
    tmp = {tempfile.gettempdir(), "/tmp", "/var/tmp"}
    for path, name in sorted([(str(repo), "<repo>"), (str(repo.resolve()), "<repo>"),
                              *((t, "<tmp>") for t in tmp), (str(home), "~")],
                             key=lambda p: -len(p[0])):
        if path in ("/", ""):
            continue
        # the path itself, with anything after it up to the next separator kept
        text = re.sub(re.escape(path) + r"(?=[/\s\"'<>&:;,)\]}]|$)", name, text)
    # a temporary directory's own name (tempfile.mkdtemp's random part) says nothing either
    return re.sub(r"<tmp>/[A-Za-z0-9_.\-]+", "<tmp>/...", text)


def scrub_notebook(nb) -> None:
    """Scrub every cell's source and every text an output shows (stream text, tracebacks,
    text/plain, text/html, markdown), before the notebook becomes HTML: a placeholder like
    <repo> is then escaped like any other text, so a browser shows it. Images are left as they
    are (base64 may contain "/tmp" by chance)."""
    for cell in nb.cells:
        cell.source = scrub(cell.source)
        for o in cell.get("outputs", []):
            if "text" in o:
                o["text"] = scrub(o["text"])
            if "traceback" in o:
                o["traceback"] = [scrub(line) for line in o["traceback"]]
            for kind in ("text/plain", "text/html", "text/markdown"):
                if kind in o.get("data", {}):
                    o["data"][kind] = scrub(o["data"][kind])


def title(nb) -> str:
    """The notebook's first heading."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return "(untitled)"


def export(paths, out: pathlib.Path, reveal: bool = False, timeout: int = 600) -> list:
    """Execute each notebook (in notebooks/, as a student would) and write OUT/NAME.html
    and OUT/index.html; returns the pages written."""
    import nbclient
    import nbformat
    from nbconvert import HTMLExporter

    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    if reveal:
        os.environ["VSNAP_REVEAL"] = "1"
    else:
        os.environ.pop("VSNAP_REVEAL", None)
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter()
    pages = []
    for path in paths:
        path = pathlib.Path(path).resolve()
        nb = nbformat.read(path, as_version=4)
        try:
            nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        except nbclient.exceptions.CellExecutionError as e:
            raise SystemExit(f"make html: {path.name}: a cell failed: {e.ename}: {e.evalue}")
        scrub_notebook(nb)
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
        page = out / f"{path.stem}.html"
        page.write_text(body)
        pages.append((page, title(nb)))
        print(f"wrote {page.name}", file=sys.stderr)
    items = "\n".join(f'<li><a href="{html.escape(p.name)}">{html.escape(t)}</a></li>'
                      for p, t in pages)
    (out / "index.html").write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>vsnap notebooks</title>"
        "</head>\n<body><h1>vsnap: the notebooks, executed</h1>\n<p>Each page is a notebook "
        "from <code>notebooks/</code>, run from top to bottom by <code>make html</code>. "
        "Paths on the machine that ran them read &lt;repo&gt;, &lt;tmp&gt; and ~.</p>\n"
        f"<ol>\n{items}\n</ol>\n</body></html>\n")
    return pages


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "build" / "html"))
    ap.add_argument("--reveal", action="store_true",
                    help="show the exercises' answers (VSNAP_REVEAL=1)")
    ap.add_argument("notebooks", nargs="*", help="default: every notebooks/*.ipynb")
    a = ap.parse_args(argv)
    paths = a.notebooks or sorted(NOTEBOOKS.glob("*.ipynb"))
    try:
        export(paths, pathlib.Path(a.out), reveal=a.reveal)
    except ImportError as e:
        print(f"make html: {e.name} is missing: pip install -e '.[test]'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
