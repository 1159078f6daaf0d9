"""polynet.plots.history: training curves from a fit history."""

from polynet import plots

from .conftest import read_png


def test_history_figure(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": None, "test_loss": 2 / e,
         "test_accuracy": 1 - 1 / (e + 1), "val_accuracy": None, "lr": {"weights": 0.1}}
        for e in range(1, 8)
    ]  # fmt: skip
    fig = plots.plot_history(history, tmp_path / "h.png")
    read_png(tmp_path / "h.png", fig)
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]
    assert [line.get_label() for line in fig.axes[0].lines] == ["train", "test"]
