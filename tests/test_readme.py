"""README.md works as written: the two commands come first, the tour's commands and the Python
snippet run (tiny settings, in an empty folder) and write what they say."""

from __future__ import annotations

from pathlib import Path

from conftest import doc_blocks

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_the_two_commands_come_first() -> None:
    language, code = doc_blocks(README.read_text())[0]
    assert language == "bash"
    assert [line.split()[:2] for line in code.splitlines()] == [["make", "demo"], ["make", "test"]]


def test_the_tour_and_the_python_snippet_run(tmp_path: Path, run_doc_blocks) -> None:
    text = README.read_text()
    first = text.index("```", text.index("make test"))  # the two commands' block ends here
    printed = run_doc_blocks(text[first + 3:], tmp_path)
    tour = tmp_path / "runs" / "tour"
    for path in ("hybrid/pruned.safetensors", "hybrid/record.json", "hybrid.csv",
                 "sweep/results.parquet"):
        assert (tour / path).is_file(), path
    assert list((tour / "sweep" / "figures").glob("*.png"))
    assert "speedup_vs_dense" in printed[-1]
