"""The README's sysred example runs as written (and its assertion holds)."""

import re
from pathlib import Path


def test_readme_python_examples_run():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
