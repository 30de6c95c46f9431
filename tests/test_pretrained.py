"""Locating the encoders: the embedded MiniLM-L6 and Hugging Face names."""
import pytest

from pyg_docre.pretrained import EMBEDDED_ENCODER, EMBEDDED_ENCODER_ENV, resolve_pretrained


def test_embedded_encoder_copy_from_the_environment(tmp_path, monkeypatch):
    """PYG_DOCRE_EMBEDDED_ENCODER names a copy of the embedded model folder (a machine without
    pip, tools/gpu_checks.sh); a folder without config.json is a clear error."""
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv(EMBEDDED_ENCODER_ENV, str(tmp_path))
    assert resolve_pretrained(EMBEDDED_ENCODER) == str(tmp_path)
    assert resolve_pretrained("bert-base-cased") == "bert-base-cased"
    monkeypatch.setenv(EMBEDDED_ENCODER_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="PYG_DOCRE_EMBEDDED_ENCODER"):
        resolve_pretrained(EMBEDDED_ENCODER)
