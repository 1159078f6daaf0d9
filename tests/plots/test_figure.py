"""polynet.plots.figure: the suffix picks the format; anything else is refused before drawing."""

import pytest

from polynet import plots
from polynet.plots.figure import _figure, _save


@pytest.mark.parametrize(
    "suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")]
)
def test_save_writes_the_format_the_suffix_names(tmp_path, suffix, magic):
    fig = _figure(2.0, 1.5)
    fig.subplots().plot([0, 1], [1, 0])
    path = tmp_path / "deep" / f"f{suffix.upper()}"  # folders made, suffix case ignored
    _save(fig, path)
    assert path.read_bytes().startswith(magic)
    assert suffix in plots.FORMATS


def test_save_refuses_other_suffixes_and_skips_without_a_path(tmp_path):
    fig = _figure(2.0, 1.5)
    with pytest.raises(ValueError, match=r"path must end in .png, .svg or .pdf.*/f\.jpg'"):
        _save(fig, tmp_path / "f.jpg")
    _save(fig, None)
    assert list(tmp_path.iterdir()) == []
