"""The main job: trains both models, attacks them, writes the three files, and reuses its work."""
from dataclasses import replace

from rich.console import Console

from robustbench_ode.cli.rich_reporter import RichReporter
from robustbench_ode.experiments import quickstart


def test_quickstart_trains_attacks_and_writes_csv_markdown_and_plot(tmp_path, monkeypatch):
    small = {name: replace(cfg, epochs=1, model_options=cfg.model_options | {"width" if name == "resnet20" else "channels": 4})
             for name, cfg in quickstart.MODELS.items()}
    monkeypatch.setattr(quickstart, "MODELS", small)
    monkeypatch.setattr(quickstart, "EPS", [0.0, 0.3])
    console = Console(record=True, width=200)
    text = quickstart.run_quickstart(tmp_path, "cpu", RichReporter(console))
    assert "| fgsm | resnet20 (resnet20)" in text and "| pgd | odenet (odenet)" in text
    for name in ("results.csv", "results.md", "accuracy_vs_eps.png"):
        assert (tmp_path / "attack" / name).stat().st_size > 0
    assert "| pgd | odenet" in console.export_text()

    again = Console(record=True, width=200)
    assert quickstart.run_quickstart(tmp_path, "cpu", RichReporter(again)) == text
    assert again.export_text().count("reusing trained") == 2
