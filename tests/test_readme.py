"""README.md as a newcomer reads it: short, current, and every command in it runs as written.

The fast tests read the README and the Makefile and exercise scripts/readme_check.py on tiny
READMEs written here; the `slow` one runs the real README's commands (what `make readme-check` runs).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MOVED_DOCS = ("docs/models.md", "docs/benchmarks.md", "docs/usage.md")


def _load_check():
    spec = importlib.util.spec_from_file_location("readme_check", ROOT / "scripts" / "readme_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_check"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


check = _load_check()


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def blocks_of(language: str) -> list:
    return [b for b in check.extract_blocks(readme_text()) if b.language == language]


# ------------------------------------------------------------------ the README itself


def test_readme_is_short_and_speaks_to_users_not_to_the_tracker():
    text = readme_text()
    assert len(text.splitlines()) < 250
    for phrase in (r"\bgoals?\b", r"\bissues?\b", r"\bseed's\b", r"\bround start\b", r"\btodo\b"):
        assert not re.search(phrase, text.lower()), phrase


def test_install_block_is_exactly_what_the_makefile_installs():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    torch = re.search(r"^TORCH \?= (\S+)$", makefile, re.M).group(1)
    assert "$(BIN)/pip install $(TORCH)" in makefile and '$(BIN)/pip install -e ".[test]"' in makefile
    install = next(b for b in blocks_of("bash") if "pip install" in b.code)
    assert install.code.splitlines() == [f"pip install {torch}", 'pip install -e ".[test]"']
    assert install.skip  # the check never installs packages


def test_the_test_command_is_the_one_make_test_runs():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert 'test: $(BIN)/segtool\n\t. $(BIN)/activate && pytest -q -m "not slow" $(PYTEST_ARGS)' in makefile
    assert "test-all: $(BIN)/segtool\n\t. $(BIN)/activate && pytest -q $(PYTEST_ARGS)" in makefile
    section = readme_text().split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    commands = [line.split("#")[0].strip() for b in check.extract_blocks(section) if b.language == "bash"
                for line in b.code.splitlines()]
    assert commands == ['pytest -q -m "not slow"', "pytest -q"]
    assert "make test-all" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^readme-check: demo\n\t\$\(BIN\)/python scripts/readme_check.py$", makefile, re.M)


def test_every_block_runs_or_says_why_not_and_every_task_has_a_run_example():
    from segtool.plugins import make_plugin_manager
    from segtool.registry import collect_tasks

    blocks = [b for b in check.extract_blocks(readme_text()) if b.language in check.RUN_LANGUAGES]
    assert all(b.runs or b.skip for b in blocks)
    runnable = "".join(b.code for b in blocks if b.runs)
    tasks = [spec.name for spec in collect_tasks(make_plugin_manager(), warn=lambda m: None)]
    assert len(tasks) >= 7
    for task in tasks:
        assert re.search(rf"^segtool run {re.escape(task)} ", runnable, re.M), task
    assert len(blocks_of("python")) == 1 and blocks_of("python")[0].runs


def test_the_slurm_example_shards_by_the_array_index_over_the_whole_array():
    slurm = next(b for b in blocks_of("bash") if "#SBATCH" in b.code)
    first, last = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", slurm.code).groups())
    shards = int(re.search(r'--shard "\$SLURM_ARRAY_TASK_ID/(\d+)"', slurm.code).group(1))
    assert (first, last + 1) == (0, shards)  # --shard is 0-based I/N: indices 0..N-1 cover every case
    assert slurm.runs and slurm.env == {"SLURM_ARRAY_TASK_ID": "0"}


def test_links_of_the_readme_and_the_moved_docs_point_at_files_that_exist():
    for name in ("README.md", *MOVED_DOCS):
        path = ROOT / name
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
            if not target.startswith("http"):
                assert (path.parent / target).exists(), f"{name}: {target}"


def test_figures_moved_out_of_the_readme_are_kept():
    models = (ROOT / "docs/models.md").read_text(encoding="utf-8")
    benchmarks = (ROOT / "docs/benchmarks.md").read_text(encoding="utf-8")
    for figure in ("| 9604 (scored on labelled slices 0-13) | no | **0.905**", "| **mean** | **0.760** | **0.545** | **0.672**",
                   "**0.891** (0.880, 0.892, 0.900)", "| **ensemble, flips + offsets**", "**0.785** / 0.820"):
        assert figure in models, figure
    for figure in ("1.14 (84.4 s / 74.3 s)", "| clothing | 3000×4000 photo (137 MiB) |", "**0.247** [0.239–0.259]",
                   "| spinal-gm | dilated_gm | 96x96 x 8 |"):
        assert figure in benchmarks, figure


# ------------------------------------------------------------------ the check's rules


def test_markers_bind_to_the_block_right_below_and_skip_needs_a_reason():
    text = ("<!-- readme-check: skip (installs) -->\n\n```bash\npip install x\n```\n"
            "<!-- readme-check: env A=1 B=x=y -->\n```bash\necho $A\n```\n"
            "<!-- readme-check: skip (lost) -->\nA paragraph.\n\n```python\nprint(1)\n```\n```text\nnot run\n```\n")
    blocks = check.extract_blocks(text)
    assert [(b.language, b.skip, b.env, b.line) for b in blocks] == [
        ("bash", "installs", {}, 3), ("bash", None, {"A": "1", "B": "x=y"}, 7),
        ("python", None, {}, 13), ("text", None, {}, 16),
    ]
    assert [b.runs for b in blocks] == [False, True, True, False]
    with pytest.raises(check.ReadmeError, match="line 1: 'readme-check: skip' needs a reason"):
        check.extract_blocks("<!-- readme-check: skip -->\n```bash\nx\n```\n")
    with pytest.raises(check.ReadmeError, match="unknown readme-check marker 'maybe'"):
        check.extract_blocks("<!-- readme-check: maybe -->\n")
    with pytest.raises(check.ReadmeError, match="line 2: code block never closed"):
        check.extract_blocks("text\n```bash\necho\n")


def test_blocks_run_in_order_in_one_folder_and_stop_at_the_first_failure(tmp_path):
    text = ("```bash\necho one > a.txt\n```\n"
            "<!-- readme-check: env WHO=slurm -->\n```bash\necho \"$WHO\" >> a.txt\n```\n"
            "```python\nprint(open('a.txt').read().split())\nopen('b.txt', 'w').write('py')\n```\n"
            "<!-- readme-check: skip (would fail) -->\n```bash\nexit 7\n```\n"
            "```bash\nfalse | cat\necho never > c.txt\n```\n```bash\necho after > d.txt\n```\n")
    log: list[str] = []
    assert check.run_blocks(check.extract_blocks(text), tmp_path, log.append) == 1
    assert (tmp_path / "a.txt").read_text() == "one\nslurm\n" and (tmp_path / "b.txt").read_text() == "py"
    assert not (tmp_path / "c.txt").exists() and not (tmp_path / "d.txt").exists()  # pipefail, then stop
    assert "README line 13: skipped (would fail)" in log and any("README line 16 failed" in line for line in log)


def test_main_refuses_a_malformed_readme_in_one_line(tmp_path, capsys):
    bad = tmp_path / "README.md"
    bad.write_text("<!-- readme-check: skip -->\n```bash\necho\n```\n")
    assert check.main(["--readme", str(bad)]) == 2
    assert capsys.readouterr().err == "readme-check: error: README line 1: 'readme-check: skip' needs a reason in parentheses\n"


def test_stand_ins_are_written_only_for_names_a_block_uses(tmp_path):
    check.write_stand_ins("segtool run brain-tumour flair.nii.gz t1c.nii.gz\nsegtool run x t2s.nii.gz", tmp_path, print)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flair.nii.gz", "t1c.nii.gz"]
    flair = nib.load(str(tmp_path / "flair.nii.gz"))
    assert flair.shape == (48, 48, 32) and np.asarray(flair.dataobj).std() > 10  # something to segment
    check.write_stand_ins("segtool run spinal-gm data/sub-*/anat/sub-*_T2starw.nii.gz", tmp_path, print)
    example = check._example_t2s().read_bytes()
    assert [p.read_bytes() == example for p in sorted(tmp_path.glob("data/sub-*/anat/sub-*_T2starw.nii.gz"))] == [True, True]


@pytest.mark.slow
def test_every_command_of_the_readme_runs_as_written(tmp_path):
    """What `make readme-check` runs (about a minute on 2 idle cores)."""
    assert check.main(["--keep", str(tmp_path)]) == 0
    assert (tmp_path / "t2s_gmseg.nii.gz").is_file() and (tmp_path / "qc" / "index.html").is_file()
    assert (tmp_path / "t2s_gm_statistics.json").is_file() and (tmp_path / "t2s_gm_statistics.csv").is_file()
    derivatives = tmp_path / "derivatives" / "segtool"
    assert (derivatives / "sub-01" / "anat" / "sub-01_desc-spinalgm_dseg.nii.gz").is_file()
    assert not (derivatives / "sub-02").exists()  # shard 0/10: the first case only
