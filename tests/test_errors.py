"""One error base class: every user-facing error is a PygDocreError (and still a ValueError),
importable from its historical module."""
import pytest

from pyg_docre.errors import FormatError, PygDocreError


def _classes():
    from pyg_docre.cli import CLIError
    from pyg_docre.config import ConfigError
    from pyg_docre.data import DocREDFormatError
    from pyg_docre.metrics import DocumentFormatError, PredictionFormatError
    from pyg_docre.models import CheckpointError
    from pyg_docre.text import TextFormatError
    from pyg_docre.training.preflight import PreflightError
    from pyg_docre.training.resume import ResumeError
    from pyg_docre.training.run_folder import RunFolderError
    formats = [DocREDFormatError, DocumentFormatError, PredictionFormatError, TextFormatError]
    return formats, [ConfigError, CheckpointError, RunFolderError, ResumeError, PreflightError,
                     CLIError]


def test_every_error_is_a_pyg_docre_error():
    formats, others = _classes()
    for cls in formats:
        assert issubclass(cls, FormatError), cls
    for cls in formats + others:
        assert issubclass(cls, PygDocreError) and issubclass(cls, ValueError), cls


def test_format_errors_name_where():
    from pyg_docre.data import DocREDFormatError
    from pyg_docre.metrics import DocumentFormatError, PredictionFormatError

    err = DocREDFormatError("bad", path="dev.json", doc_index=3, title="T", field="sents[0]")
    assert str(err) == "dev.json: document 3 ('T'): sents[0]: bad"
    assert (err.path, err.doc_index, err.field, err.reason) == ("dev.json", 3, "sents[0]", "bad")
    assert str(DocumentFormatError("bad", role="gold", doc_index=1, title="T", field="labels")) \
        == "gold document 1 ('T'): labels: bad"
    assert str(PredictionFormatError("bad", path="r.json", index=2, title="T", field="r")) \
        == "r.json: prediction 2 (title 'T'): r: bad"
    with pytest.raises(PygDocreError, match="bad"):
        raise DocREDFormatError("bad")
