"""The README's demo section is written from a demo run's results.json."""

import json

import pytest

from keras_tips.cli import demo_table


def _results(**values):
    results = {key: 0.5 for key, *_ in demo_table.DEMO_METRICS}
    results.update({
        "random_init/segmentation_probe/miou": 0.12,
        "trivial/segmentation_probe/miou": 0.11,
        "chance/zero_shot_top1": 1 / 6,
        "time/train_seconds": 300.4,
        "time/evaluation_seconds": 40.0,
    })
    results.update(values)
    return results


def test_each_goal_is_judged_against_the_run():
    markdown = demo_table.demo_markdown(_results(**{
        "zero_shot/cls_1/top1": 0.61, "segmentation_probe/miou": 0.2,
        "depth_probe/rmse": 0.17,
    }))
    lines = markdown.splitlines()
    assert "| zero-shot shape, CLS1 top-1 | 0.610 |  |  | 0.167 | 0.6 | yes |" in lines
    assert ("| shape segmentation, linear probe mIoU | 0.200 | 0.120 | 0.110 |  "
            "| 0.5 | **no** |") in lines
    assert "| depth, linear probe RMSE | 0.170 |  |  |  |  |  |" in lines
    assert "Training took 300 s and the evaluation 40 s." in lines


def test_results_without_a_headline_metric_are_refused():
    results = _results()
    del results["knn/cls_1/top1"]
    with pytest.raises(ValueError, match="knn/cls_1/top1"):
        demo_table.demo_markdown(results)


def test_the_section_is_replaced_between_the_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# Title\n\n{demo_table.README_BEGIN}\nold table\n{demo_table.README_END}\n\nafter\n"
    )
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(_results()))
    demo_table.main([str(results_file), str(readme)])
    text = readme.read_text()
    assert "old table" not in text
    assert text.startswith("# Title\n\n" + demo_table.README_BEGIN + "\n| metric")
    assert text.endswith(demo_table.README_END + "\n\nafter\n")


def test_a_readme_without_markers_is_refused_before_training(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="demo table: begin"):
        demo_table.check_readme(str(readme))
    with pytest.raises(ValueError, match="Cannot read"):
        demo_table.check_readme(str(tmp_path / "missing.md"))
    from keras_tips.cli.main import main

    code = main(["demo", "--output", str(tmp_path / "run"), "--readme", str(readme)])
    assert code == 2
    assert not (tmp_path / "run").exists()


def test_the_readme_has_the_demo_markers():
    import os

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    demo_table.check_readme(os.path.join(root, "README.md"))
