"""Output files: written whole or not at all."""
import pytest

from stream_dc.files import replaced_on_success


def test_replaced_on_success_never_leaves_a_half_written_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), replaced_on_success(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    with replaced_on_success(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_integer_stems_clip_at_full_scale_and_count_what_they_clipped(tmp_path):
    import numpy as np
    import soundfile as sf

    from stream_dc.files import StemWriter

    block = np.array([[0.5], [1.25], [-1.5], [1.0], [-0.25]], np.float32)
    for subtype, clipped in (("PCM_16", 2), ("FLOAT", 0)):
        writer = StemWriter(tmp_path / f"{subtype}.wav", 8000, 1, subtype)
        writer.write(block)
        writer.commit()
        assert writer.clipped == clipped
        written = sf.read(tmp_path / f"{subtype}.wav", dtype="float32")[0]
        assert np.max(np.abs(written)) == (1.0 if clipped else 1.5)


def test_separate_says_when_a_stem_was_clipped(tmp_path):
    """A full-scale square wave: its stems peak above full scale, and the 16-bit stems say they clipped."""
    import numpy as np
    import soundfile as sf

    from tests.commands import run

    rate = 8000
    t = np.arange(rate * 2) / rate
    square = np.sign(np.sin(2 * np.pi * 220 * t) + 1e-9) * np.sign(np.sin(2 * np.pi * 3 * t) + 1e-9)
    sf.write(tmp_path / "loud.wav", square.astype(np.float32), rate, subtype="PCM_16")
    result = run(["separate", str(tmp_path / "loud.wav"), "-o", str(tmp_path / "out"), "-q"], text=True)
    vocals = sf.read(tmp_path / "out" / "loud" / "vocals.wav")[0]
    accompaniment = sf.read(tmp_path / "out" / "loud" / "accompaniment.wav")[0]
    peaked = max(np.abs(vocals).max(), np.abs(accompaniment).max()) >= 1 - 2 ** -14
    assert result.returncode == 0 and peaked  # masking a square wave overshoots its edges
    assert "the accompaniment went past full scale at" in result.stderr and "--bits float" in result.stderr
