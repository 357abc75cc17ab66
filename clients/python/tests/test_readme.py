"""The repository README's Python example runs as written against the service."""

import os
import re
from pathlib import Path

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_example_runs_to_a_passing_gate(capsys) -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python client", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "one Python example in the README's client section"
    assert os.environ.get("INFOAUDIT_URL"), "the service's URL comes from the environment"
    scope: dict = {}
    exec(compile(blocks[0], str(README), "exec"), scope)
    batch, decision = scope["batch"], scope["decision"]
    # Logistic regression on this split is about 95 % accurate: its Shannon MI (bits) is far
    # above the rule's 0.5 and below H(Y) ≈ 0.95 bits (212 malignant / 357 benign).
    assert 0.5 < batch.values["shannon_mi"] < 0.96, batch.values
    assert decision.verdict in ("pass", "warn"), decision.raw
    assert "shannon_mi" in capsys.readouterr().out
