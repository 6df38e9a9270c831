"""The README's example test for vsnap.testing runs, as written."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_example(monkeypatch):
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- readme-example -->\s*```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(REPO)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    tests = [v for k, v in namespace.items() if k.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        test()
