"""`make html` (notebooks/_export.py): the notebooks executed and written as HTML pages with
an index, the machine's paths scrubbed. Checked on a fresh clone-like tree (the repository's
committed files copied to a temporary directory), exporting one small notebook."""
from __future__ import annotations

import getpass
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import pytest

pytest.importorskip("nbconvert")
pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "notebooks"))
import _export  # noqa: E402
sys.path.remove(str(ROOT / "notebooks"))


def test_scrub_replaces_the_machine_paths():
    repo = pathlib.Path("/srv/someone/vsnap")
    home = str(pathlib.Path.home())
    text = (f"repository: {repo}\nsandbox: /tmp/vsnap-notebook-ab12cd/list/list core\n"
            f"gdb {repo}/notebooks/x {home}/.cache/vsnap/build/rewrite-0df1 /tmp/tmpq9z/x.img")
    out = _export.scrub(text, repo)
    assert out == ("repository: <repo>\nsandbox: <tmp>/.../list/list core\n"
                   "gdb <repo>/notebooks/x ~/.cache/vsnap/build/rewrite-0df1 <tmp>/.../x.img")
    assert _export.scrub("/tmpfile and /repository", repo) == "/tmpfile and /repository"


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """The committed tree (git archive of HEAD), without .venv, build/ or caches: what a
    fresh clone has."""
    d = tmp_path_factory.mktemp("clone")
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True,
                         check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(d)], input=tar, check=True)
    assert not (d / "build").exists() and not (d / ".venv").exists()
    return d


def test_export_one_notebook_from_a_fresh_tree(clone, tmp_path):
    """The export of a small notebook (one that runs a guest, so that its outputs name the
    repository, a sandbox under /tmp and the build cache in the home directory) writes its page
    and the index, and no host path is left in either."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A small notebook"),
        nbformat.v4.new_code_cell(
            "import os, pathlib, tempfile\n"
            "from vsnap.build import build\n"
            "d = tempfile.mkdtemp(prefix='vsnap-notebook-')\n"
            "print('repository:', pathlib.Path.cwd().parent)\n"
            "print('sandbox:', d, 'home:', pathlib.Path.home())\n"
            "print('built:', build(str(pathlib.Path.cwd().parent / 'programs' / 'hello.c')))")])
    path = clone / "notebooks" / "00-small.ipynb"
    nbformat.write(nb, path)
    out = clone / "build" / "html"
    # vsnap from the clone first (the kernel nbclient starts inherits it)
    env_path = os.pathsep.join([str(clone), *filter(None, [os.environ.get("PYTHONPATH")])])
    p = subprocess.run([sys.executable, "notebooks/_export.py", "--out", "build/html",
                        str(path)], cwd=clone, capture_output=True, text=True, timeout=300,
                       env={**_env(), "PYTHONPATH": env_path})
    assert p.returncode == 0, p.stderr
    page = (out / "00-small.html").read_text()
    index = (out / "index.html").read_text()
    assert "repository: &lt;repo&gt;" in page    # escaped: a browser shows the placeholder
    assert "<repo>" not in page and "<tmp>" not in page
    assert 'href="00-small.html"' in index and "A small notebook" in index
    home, user = str(pathlib.Path.home()), getpass.getuser()
    for text in (page, index):
        assert str(clone) not in text and str(ROOT) not in text
        assert not re.search(re.escape(tempfile.gettempdir()) + r"/|/tmp/", text)
        assert home + "/" not in text and f"/home/{user}" not in text


def _env():
    return {k: v for k, v in os.environ.items() if k not in ("VSNAP_REVEAL",)}


def test_make_html_target():
    """The Makefile's html target runs the export into build/html (checked without running
    it: `make -n` prints the commands; the export itself is tested above)."""
    p = subprocess.run(["make", "-n", "html"], cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0 and "No rule" in p.stderr:
        pytest.fail(p.stderr)
    assert "notebooks/_export.py --out build/html" in p.stdout
