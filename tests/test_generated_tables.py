"""Result tables in the documentation are generated, not typed: every block between
``<!-- generated-table NAME -->`` markers in README.md and docs/ is checked (its regenerating
command first, a table, every row followed by its run and the command that made it, whose
config exists), and ``--update`` of ``code.report`` / ``code.scanpath_report`` is tested on
run folders of the real layout built here."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import pytest

from code import report, scanpath_report
from code.engine.reproducibility import recorded_command
from code.utils.markdown_tables import read_blocks
from tests.small_run import REPO_ROOT
from tests.test_metrics_report import VERSION_1

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md")),
         REPO_ROOT / "models" / "default" / "MODEL_CARD.md"]  # fmt: skip
ITEM = re.compile(r"- (?P<label>.+?): `(?P<file>[^`]+)`, made by `(?P<command>[^`]+)`")
MIM_METRICS = {  # a mim_pretrain run's metrics.json (output/04_focus_mim/cpu_osie/none_no_crop)
    "metrics": {"masked_mse": 0.01285019873073266, "fill_mse": 0.0,
                "mean_colour_mse": 0.05231248057863248, "unit_sparsity": 0.5730341985566628,
                "population_sparsity": 0.6852420391411946, "decorrelation": 0.14623071396713688},
    "n_images": 212,
    "input_stage": "identity",
    "checkpoint": "output/04_focus_mim/cpu_osie/none_no_crop/best.pt",
}  # fmt: skip


def block_problems(page: Path, name: str, text: str) -> list[str]:
    """What is wrong with one generated block of ``page``: a first line that is no
    ``Regenerate: `...``` command updating this very block; no table; a table row whose label
    has no item ``- LABEL: `metrics file`, made by `command``` below, or whose command is no
    ``uv run`` of a config file that exists (or, for scores of a model's predictions, the
    ``code.predict`` command that made them, naming its checkpoint)."""
    lines = [line for line in text.splitlines() if line.strip()]
    first = re.fullmatch(
        r"Regenerate: `(uv run python -m code\.\w+ .*)`", lines[0] if lines else ""
    )
    if first is None:
        return [f"{name}: the first line is not 'Regenerate: `uv run python -m code...`'"]
    problems = []
    argv = shlex.split(first.group(1))
    target = argv[argv.index("--update") + 1] if "--update" in argv else "#"
    path, _, block = target.rpartition("#")
    if block != name or (REPO_ROOT / path).resolve() != page.resolve():
        problems.append(f"{name}: the regenerating command updates {target}")
    separators = [i for i, line in enumerate(lines) if re.fullmatch(r"(\|---)+\|", line)]
    if not separators:
        problems.append(f"{name}: no table")
    headers = {i - 1 for i in separators}
    labels = [line.split(" | ")[0].removeprefix("| ") for i, line in enumerate(lines)
              if line.startswith("| ") and i not in headers]  # fmt: skip
    items = {m["label"]: m for m in map(ITEM.fullmatch, lines) if m is not None}
    for label in labels:
        if label not in items:
            problems.append(f"{name}: row {label!r} has no run and command below the table")
            continue
        command = shlex.split(items[label]["command"])
        if command[:5] == ["uv", "run", "python", "-m", "code.predict"]:
            # scored from a checkpoint's predictions (code.evaluate reads them)
            if "--checkpoint" not in command:
                problems.append(f"{name}: row {label!r}: its predictions name no checkpoint")
            continue
        config = command[command.index("--cfg") + 1] if "--cfg" in command else None
        if command[:2] != ["uv", "run"] or config is None or not (REPO_ROOT / config).is_file():
            problems.append(f"{name}: row {label!r}: {items[label]['command']!r} runs no config")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_generated_table_of_the_documentation_names_its_runs(page: Path) -> None:
    """Blocks balanced and unique (read_blocks raises otherwise), each well formed."""
    problems = [
        p for name, text in read_blocks(page).items() for p in block_problems(page, name, text)
    ]
    assert not problems, "\n".join(problems)


def fake_run(folder: Path, metrics: dict, command: list[str], world_size: int = 1) -> Path:
    """A finished run's folder as code.main leaves it: ``metrics.json`` and ``run_info.json``
    (``command`` is the argv after the entry point's file)."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    info = {"git_commit": "0" * 40, "git_dirty": False, "python": "3.11.7",
            "command": ["/work/main/code/main.py", *command], "world_size": world_size,
            "cuda": None}  # fmt: skip
    (folder / "run_info.json").write_text(json.dumps(info, indent=2))
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    """Two saliency runs (the second an --eval-only evaluation of a run in ``eval/``, with
    another IG) and a mim_pretrain run."""
    other = copy.deepcopy(VERSION_1)
    other["metrics"]["IG"] = 0.625
    mim_config = "configs/04_focus_mim/cpu_osie/none_no_crop.yaml"
    return {
        "a": fake_run(tmp_path / "runs" / "a", VERSION_1, ["--cfg", "configs/quickstart.yaml"]),
        "b": fake_run(tmp_path / "runs" / "b" / "eval", other,
                      ["--cfg", "configs/quickstart.yaml", "--eval-only", "--checkpoint",
                       "output/b/best.pt"]).parent,
        "mim": fake_run(tmp_path / "runs" / "mim", MIM_METRICS, ["--cfg", mim_config]),
    }  # fmt: skip


PAGE = "# Results\r\n\r\nText before.\r\n<!-- generated-table other -->\r\nkept\r\n" \
       "<!-- end generated-table other -->\r\n<!-- generated-table osie -->\r\nold table\r\n" \
       "<!-- end generated-table osie -->\r\nText after, no newline at the end"  # fmt: skip


def test_update_replaces_the_block_and_nothing_else(runs: dict[str, Path], tmp_path: Path) -> None:
    """Bytes outside the block (CRLF line ends, the last line without one, another block) stay;
    inside: the regenerating command, the table, each row's run and command; the regenerating
    command run again writes the same bytes (fails for a command that drops --names)."""
    page = tmp_path / "page.md"
    page.write_bytes(PAGE.encode())
    argv = [str(runs["a"]), str(runs["b"]), "--names", "run a", "run b",
            "--update", f"{page}#osie"]  # fmt: skip
    text = report.main(argv)
    written = page.read_bytes().decode()
    before, after = PAGE.split("old table\r\n")
    assert written.startswith(before) and written.endswith(after)
    block = read_blocks(page)["osie"]
    assert block.startswith("\r\n") and block.endswith("\r\n\r\n")  # marker lines kept apart
    assert read_blocks(page)["other"] == "kept\r\n"
    assert block_problems(page, "osie", block) == []
    lines = block.replace("\r\n", "\n").strip().split("\n")
    assert lines[0] == f"Regenerate: `uv run python -m code.report {shlex.join(argv)}`"
    assert text in "\n".join(lines)  # the printed tables, unchanged
    assert "| run b | 0.625 |" in block
    items = [line for line in lines if line.startswith("- ")]
    assert items == [
        f"- run a: `{runs['a'] / 'metrics.json'}`, made by "
        "`uv run python -m code.main --cfg configs/quickstart.yaml`",
        f"- run b: `{runs['b'] / 'eval' / 'metrics.json'}`, made by "
        "`uv run python -m code.main --cfg configs/quickstart.yaml --eval-only --checkpoint "
        "output/b/best.pt`",
        *[f"- {baseline}: `{runs['a'] / 'metrics.json'}`, made by "  # the first run's baselines
          "`uv run python -m code.main --cfg configs/quickstart.yaml`"
          for baseline in ("centre bias", "gold standard", "uniform")],
    ]  # fmt: skip
    again = shlex.split(lines[0].removeprefix("Regenerate: `").removesuffix("`"))
    report.main(again[5:])  # after "uv run python -m code.report"
    assert page.read_bytes().decode() == written


def test_the_checker_sees_a_row_without_its_run_or_a_missing_config(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- generated-table t -->\n<!-- end generated-table t -->\n")
    report.main([str(runs["a"]), "--update", f"{page}#t"])
    block = read_blocks(page)["t"]
    assert block_problems(page, "t", block) == []
    no_item = "\n".join(line for line in block.split("\n") if not line.startswith("- uniform"))
    assert block_problems(page, "t", no_item) == ["t: row 'uniform' has no run and command "
                                                  "below the table"]  # fmt: skip
    moved = block.replace("configs/quickstart.yaml`", "configs/gone.yaml`", 1)
    assert block_problems(page, "t", moved) == [
        "t: row 'a': 'uv run python -m code.main --cfg configs/gone.yaml' runs no config"
    ]
    predicted = block.replace(
        "code.main --cfg configs/quickstart.yaml`",
        "code.predict --checkpoint models/default/model.pt --input i --output o`",
        1,
    )
    assert block_problems(page, "t", predicted) == []  # scores of a checkpoint's predictions
    unnamed = predicted.replace("--checkpoint models/default/model.pt ", "")
    assert block_problems(page, "t", unnamed) == ["t: row 'a': its predictions name no checkpoint"]
    assert "updates" in block_problems(page, "other", block)[0]  # another block's command


@pytest.mark.parametrize(
    ("page_text", "error"),
    [
        ("no markers\n", r"page\.md: no block 'osie': add the lines"),
        ("<!-- generated-table osie -->\n<!-- end generated-table osie -->\n" * 2,
         r"page\.md:3: generated-table 'osie': a second block of that name \(the first: line 1\)"),
        ("<!-- generated-table osie -->\ntext\n", r"page\.md:1: .* 'osie': never closed"),
        ("<!-- end generated-table osie -->\n", r"page\.md:1: generated-table 'osie': closed but"),
        ("<!-- generated-table x -->\n<!-- generated-table osie -->\n"
         "<!-- end generated-table osie -->\n<!-- end generated-table x -->\n",
         r"page\.md:2: generated-table 'osie': opened inside block 'x'"),
        ("```\n<!-- generated-table osie -->\n<!-- end generated-table osie -->\n```\n",
         r"no block 'osie'"),  # markers shown in a code block are text
    ],
    ids=["missing", "duplicated", "unclosed", "not opened", "nested", "in a code block"],
)  # fmt: skip
def test_broken_markers_are_refused_naming_the_file_before_any_output(
    runs: dict[str, Path], tmp_path: Path, page_text: str, error: str
) -> None:
    page = tmp_path / "page.md"
    page.write_text(page_text)
    with pytest.raises(ValueError, match=error):
        report.main([str(runs["a"]), "--out", str(tmp_path / "out"), "--update", f"{page}#osie"])
    assert page.read_text() == page_text and not (tmp_path / "out").exists()


def test_a_run_without_run_info_is_refused_and_nothing_written(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    (runs["a"] / "run_info.json").unlink()
    page = tmp_path / "page.md"
    page.write_text("<!-- generated-table t -->\n<!-- end generated-table t -->\n")
    with pytest.raises(ValueError, match=r"a/run_info\.json: no command to read"):
        report.main([str(runs["a"]), "--out", str(tmp_path / "out"), "--update", f"{page}#t"])
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):  # --out, --update or both
        report.main([str(runs["a"])])
    for target in (str(page), f"{page}#two words", "#t"):  # FILE#NAME, NAME without spaces
        with pytest.raises(SystemExit):
            report.main([str(runs["a"]), "--update", target])


def test_a_mim_pretrain_run_gets_the_masked_image_table(runs: dict[str, Path], tmp_path) -> None:
    text = report.main([str(runs["mim"]), "--names", "none (whole image)",
                        "--out", str(tmp_path / "out")])  # fmt: skip
    assert text.split("\n") == [
        "| | masked MSE | fill's MSE | mean colour's MSE | unit sparsity | population sparsity "
        "| decorrelation |",
        "|---|---|---|---|---|---|---|",
        "| none (whole image) | 0.01285 | 0.00000 | 0.05231 | 0.573 | 0.685 | 0.146 |",
        "",
        "212 test images.",
    ]
    assert (tmp_path / "out" / "report.csv").read_text().count("none (whole image)") == 6
    assert not (tmp_path / "out" / "report_ig.png").exists()  # no IG to plot


def test_linear_probe_runs_get_their_table_per_image_count(tmp_path: Path) -> None:
    """Probe runs of two test sets: a table each (fails for runs mixed in one table under the
    first one's image count)."""
    names = []
    for name, images in (("stl10", 8000), ("stl10_seed1", 8000), ("small", 100)):
        probe = {"metrics": {"accuracy": 0.41234, "loss": 1.5}, "per_class_accuracy": [0.4],
                 "n_images": images, "test_dataset": "stl10"}  # fmt: skip
        names.append(str(fake_run(tmp_path / name, probe, ["--cfg", "configs/x.yaml"])))
    text = report.main([*names, "--out", str(tmp_path / "out")])
    assert text.split("\n\n") == [
        "| | accuracy | cross-entropy (nats) |\n|---|---|---|\n"
        "| stl10 | 0.4123 | 1.5000 |\n| stl10_seed1 | 0.4123 | 1.5000 |",
        "8000 test images.",
        "| | accuracy | cross-entropy (nats) |\n|---|---|---|\n| small | 0.4123 | 1.5000 |",
        "100 test images.",
    ]


def test_runs_of_two_kinds_share_no_table(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"different kinds .*a: saliency, mim: masked image"):
        report.main([str(runs["a"]), str(runs["mim"]), "--out", str(tmp_path / "out")])
    scanpaths = {"metrics": {"NeVA": {}}, "versus_random": {}, "n_images": 3, "length": 10}
    fake_run(tmp_path / "neva", scanpaths, ["--cfg", "configs/05_neva/reconstruction.yaml"])
    with pytest.raises(ValueError, match=r"neva/metrics\.json: a scanpath_generation run's: see "
                       r"code\.scanpath_report"):  # fmt: skip
        report.main([str(tmp_path / "neva"), "--out", str(tmp_path / "out")])


def test_the_recorded_command_is_the_one_a_user_types(tmp_path: Path) -> None:
    """Under torchrun the world size is the process count; the entry point's module is read
    from its file's path, absolute or relative; a file of no entry point is refused."""
    run = fake_run(tmp_path / "r", {}, ["--cfg", "configs/x.yaml", "--opts", "A", "two words"], 8)
    assert recorded_command(run / "run_info.json") == (
        "uv run torchrun --nproc_per_node=8 -m code.main --cfg configs/x.yaml --opts A 'two words'"
    )
    info = json.loads((run / "run_info.json").read_text())
    for script, module in (("code/experiment.py", "code.experiment"),
                           ("/a/code/b/code/main.py", "code.main")):  # fmt: skip
        (run / "run_info.json").write_text(json.dumps({**info, "command": [script]}))
        assert (
            recorded_command(run / "run_info.json")
            == f"uv run torchrun --nproc_per_node=8 -m {module}"
        )
    (run / "run_info.json").write_text(json.dumps({**info, "command": ["/usr/bin/pytest"]}))
    with pytest.raises(ValueError, match=r"/usr/bin/pytest is no entry point"):
        recorded_command(run / "run_info.json")


def test_scanpath_report_updates_a_block_naming_each_rows_run(tmp_path: Path) -> None:
    def scores(mean: float) -> dict:
        return {"ScanMatch": {"mean": mean, "se": 0.01, "n": 3}}

    curve = {"mean": [0.02] * 10, "se": [0.001] * 10}
    metrics = {"metrics": {"NeVA": scores(0.5), "random": scores(0.4)},
               "versus_random": {"NeVA": scores(0.1)}, "utility": {"NeVA": curve, "random": curve},
               "n_images": 3, "length": 10}  # fmt: skip
    run = fake_run(tmp_path / "neva", metrics, ["--cfg", "configs/05_neva/reconstruction.yaml"])
    page = tmp_path / "page.md"
    page.write_text("<!-- generated-table neva -->\n<!-- end generated-table neva -->\n")
    argv = ["--row", "NeVA", str(run), "NeVA", "--row", "random", str(run), "random"]
    with pytest.raises(SystemExit):  # --out, --update or both
        scanpath_report.main(argv)
    scanpath_report.main([*argv, "--update", f"{page}#neva"])
    block = read_blocks(page)["neva"]
    assert block_problems(page, "neva", block) == []
    command = shlex.join([*argv, "--update", f"{page}#neva"])
    assert block.startswith(f"\nRegenerate: `uv run python -m code.scanpath_report {command}`\n")
    assert block.count(f"`{run / 'metrics.json'}`, made by `uv run python -m code.main --cfg "
                       "configs/05_neva/reconstruction.yaml`") == 2  # fmt: skip
