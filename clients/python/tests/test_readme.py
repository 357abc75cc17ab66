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


CLIENT_README = Path(__file__).resolve().parents[1] / "README.md"


def test_client_readme_examples_run(tmp_path: Path, capsys) -> None:
    """clients/python/README.md: the Python example, then the `python -m infoaudit` one (with
    this venv's python first on PATH) on an eval-batch.json written here, which gates the
    version it uploads with the policy the Python example stored."""
    import json
    import subprocess
    import sys

    import numpy as np

    text = CLIENT_README.read_text(encoding="utf-8")
    py_blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    cli_blocks = [b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if b.startswith("python -m infoaudit ")]
    assert len(py_blocks) == 1 and len(cli_blocks) == 1
    scope: dict = {}
    exec(compile(py_blocks[0], str(CLIENT_README), "exec"), scope)
    # argmax is right about 3 times in 4: Shannon MI ≈ 0.54 bits, far from the rule's 0.2 and log2(3)
    assert 0.4 < scope["batch"].values["shannon_mi"] < 0.7, scope["batch"].values
    assert "shannon_mi" in capsys.readouterr().out

    rng = np.random.default_rng(8)
    labels = rng.integers(0, 3, 1000)
    proba = rng.dirichlet(np.ones(3), 1000) + 0.5 * np.eye(3)[labels]
    proba /= proba.sum(axis=1, keepdims=True)
    (tmp_path / "eval-batch.json").write_text(json.dumps({
        "task": "multiclass", "classes": ["legit", "fraud", "chargeback"], "labels": labels.tolist(), "probabilities": proba.tolist()}))
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", cli_blocks[0]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (out.stdout, out.stderr)
    lines = out.stdout.splitlines()
    assert re.fullmatch(r"[0-9a-f-]{36}", lines[0]), out.stdout
    assert any(re.match(r"shannon_mi +\d+\.\d{6} bits \[", line) for line in lines), out.stdout
    assert "gate release for fraud v8: PASS" in lines, out.stdout
