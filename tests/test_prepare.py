"""Tests of datasets/prepare.py: local copies, verification, atomicity, and the download path.

No network: downloads are exercised against ``file://`` URLs and a local HTTP server, with the
script's REGISTRY replaced for the test.
"""
import gzip
import hashlib
import http.server
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "datasets" / "prepare.py"
SHARED = ROOT.parent / "shared" / "datasets"

DEV_SHA = "051ee1d057204a5d08ef5502beacdadf191245b5eaf0e29ec2c607cf002c016f"
TEST_SHA = "ea673b7ef91e16510d7eb88863d3903e47318dc5653ef361266f27ae3b84723c"
REL2ID_SHA = "8b4daa905942e3c1a4b6944aac389664f936fb54aaef86b031dadd14c994c6b3"
RELINFO_SHA = "2a335535f33afd5b478544fadf97f7b6fdd0c486ee9e160cc6cacdf508f38509"

needs_shared = pytest.mark.skipif(not (SHARED / "re-docred" / "dev_revised.json").exists(),
                                  reason="../shared/datasets is not available")


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run(*args):
    proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    return proc


def assert_one_line_error(proc, code=None):
    assert proc.returncode != 0
    if code is not None:
        assert proc.returncode == code
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("prepare.py: error: ")
    return lines[0]


def leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part")) if folder.exists() else []


@pytest.fixture
def prep():
    """A fresh import of datasets/prepare.py (so that REGISTRY can be monkeypatched)."""
    spec = importlib.util.spec_from_file_location("prepare_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------ the registry itself
def test_registry_is_complete(prep):
    assert set(prep.REGISTRY) == {"re-docred", "docred", "revisit-docred", "docred-meta"}
    for name, spec in prep.REGISTRY.items():
        assert spec["files"], name
        assert any(e["required"] for e in spec["files"]), name
        for entry in spec["files"]:
            assert set(entry) >= {"name", "sha256", "required", "urls"}, entry
            assert entry["urls"] and all(u.startswith("https://") for u in entry["urls"]), entry
            assert entry["sha256"] is None or len(entry["sha256"]) == 64
            assert entry.get("normalize") in (None, *prep.NORMALIZERS)
    pinned = {e["name"]: e["sha256"] for s in prep.REGISTRY.values() for e in s["files"] if e["sha256"]}
    assert pinned["dev_revised.json"] == DEV_SHA and pinned["test_revised.json"] == TEST_SHA
    assert pinned["rel2id.json"] == REL2ID_SHA and pinned["rel_info.json"] == RELINFO_SHA


def test_script_uses_only_the_standard_library():
    code = ("import sys, runpy; sys.argv = ['prepare.py', '--help']; "
            "before = set(sys.modules)\n"
            "try:\n    runpy.run_path(%r, run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "extra = {m.split('.')[0] for m in set(sys.modules) - before}\n"
            "std = set(sys.stdlib_module_names) | {'_distutils_hack'}\n"
            "print(sorted(m for m in extra if m not in std and not m.startswith('_')))" % str(SCRIPT))
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------------------- --from copies
@needs_shared
def test_copy_redocred_and_meta_then_noop(tmp_path):
    out = tmp_path / "out"
    for name in ("re-docred", "docred-meta"):
        proc = run(name, "--from", SHARED, "--out", out)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
    red, meta = out / "re-docred", out / "docred-meta"
    assert sha256(red / "dev_revised.json") == DEV_SHA
    assert sha256(red / "test_revised.json") == TEST_SHA
    assert (red / "LICENSE").read_bytes() == (SHARED / "re-docred" / "LICENSE").read_bytes()
    assert sha256(meta / "rel2id.json") == REL2ID_SHA
    assert sha256(meta / "rel_info.json") == RELINFO_SHA
    for folder in (red, meta):
        assert (folder / ".prepared").is_file()
        assert leftovers(folder) == []
        sums = (folder / "SHA256SUMS").read_text().split("\n")
        for line in filter(None, sums):  # `sha256sum -c` format, every record true
            digest, fname = line.split("  ")
            assert sha256(folder / fname) == digest
    # train_revised.json is optional and not in ../shared: reported as skipped, with a way to get it.
    assert not (red / "train_revised.json").exists()

    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in red.iterdir() if p.name != ".prepared"}
    proc = run("re-docred", "--from", SHARED, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do" in proc.stdout
    assert "skipped optional train_revised.json" in proc.stdout
    assert "placed" not in proc.stdout
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in red.iterdir() if p.name != ".prepared"}
    assert after == before
    assert (red / ".prepared").is_file()


@needs_shared
def test_corrupted_source_fails_and_leaves_nothing(tmp_path):
    src = tmp_path / "src" / "re-docred"
    src.mkdir(parents=True)
    for fname in ("dev_revised.json", "test_revised.json", "LICENSE"):
        shutil.copyfile(SHARED / "re-docred" / fname, src / fname)
    data = bytearray((src / "dev_revised.json").read_bytes())
    data[1000] = ord("X") if data[1000] != ord("X") else ord("Y")
    (src / "dev_revised.json").write_bytes(bytes(data))
    bad = hashlib.sha256(bytes(data)).hexdigest()

    out = tmp_path / "out"
    proc = run("re-docred", "--from", tmp_path / "src", "--out", out)
    line = assert_one_line_error(proc, code=1)
    assert "sha256 mismatch" in line and "dev_revised.json" in line
    assert DEV_SHA in line and bad in line
    folder = out / "re-docred"
    assert not (folder / "dev_revised.json").exists()
    assert not (folder / ".prepared").exists()
    assert leftovers(folder) == []


@needs_shared
def test_failed_rerun_removes_a_stale_stamp(tmp_path):
    out = tmp_path / "out"
    assert run("re-docred", "--from", SHARED, "--out", out).returncode == 0
    folder = out / "re-docred"
    (folder / "dev_revised.json").write_bytes(b"[]")  # the prepared copy gets damaged
    src = tmp_path / "src" / "re-docred"
    src.mkdir(parents=True)
    for fname in ("dev_revised.json", "test_revised.json"):
        shutil.copyfile(SHARED / "re-docred" / fname, src / fname)
    (src / "dev_revised.json").write_bytes(b"[]")  # and so is the source
    proc = run("re-docred", "--from", tmp_path / "src", "--out", out)
    assert "sha256 mismatch" in assert_one_line_error(proc)
    assert not (folder / ".prepared").exists()
    assert leftovers(folder) == []
    # A good source repairs it.
    proc = run("re-docred", "--from", SHARED, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert sha256(folder / "dev_revised.json") == DEV_SHA and (folder / ".prepared").exists()


@needs_shared
def test_missing_required_file_is_an_error(tmp_path):
    src = tmp_path / "src" / "re-docred"
    src.mkdir(parents=True)
    shutil.copyfile(SHARED / "re-docred" / "test_revised.json", src / "test_revised.json")
    out = tmp_path / "out"
    proc = run("re-docred", "--from", tmp_path / "src", "--out", out)
    line = assert_one_line_error(proc, code=1)
    assert "dev_revised.json" in line and str(src) in line
    assert "test_revised.json" not in line and "LICENSE" not in line  # present / optional
    assert not (out / "re-docred" / "test_revised.json").exists()  # nothing half done
    assert not (out / "re-docred" / ".prepared").exists()


@needs_shared
def test_missing_required_file_also_invalidates_the_stamp(tmp_path):
    out = tmp_path / "out"
    assert run("re-docred", "--from", SHARED, "--out", out).returncode == 0
    folder = out / "re-docred"
    (folder / "dev_revised.json").unlink()
    (tmp_path / "empty" / "re-docred").mkdir(parents=True)
    assert_one_line_error(run("re-docred", "--from", tmp_path / "empty", "--out", out))
    assert not (folder / ".prepared").exists()


@needs_shared
def test_optional_file_present_in_from_is_copied_and_recorded(tmp_path):
    src = tmp_path / "src" / "re-docred"
    src.mkdir(parents=True)
    for fname in ("dev_revised.json", "test_revised.json"):
        os.symlink(SHARED / "re-docred" / fname, src / fname)
    (src / "train_revised.json").write_text('[{"title": "t"}]')
    out = tmp_path / "out"
    proc = run("re-docred", "--from", tmp_path / "src", "--out", out)
    assert proc.returncode == 0, proc.stderr
    digest = sha256(src / "train_revised.json")
    assert "train_revised.json is not pinned" in proc.stdout and digest in proc.stdout
    assert "skipped optional LICENSE" in proc.stdout
    folder = out / "re-docred"
    assert f"{digest}  train_revised.json" in (folder / "SHA256SUMS").read_text()
    assert f"{digest}  train_revised.json" in (folder / ".prepared").read_text()
    assert not (folder / "dev_revised.json").is_symlink()  # a copy, not a link


def test_missing_dataset_folder_in_from(tmp_path):
    proc = run("docred", "--from", tmp_path, "--out", tmp_path / "out")
    line = assert_one_line_error(proc, code=1)
    assert "train_annotated.json" in line and str(tmp_path / "docred") in line
    assert "drive.google.com" in proc.stdout  # the manual way to get DocRED


def test_from_directory_that_does_not_exist(tmp_path):
    line = assert_one_line_error(run("re-docred", "--from", tmp_path / "nope", "--out", tmp_path))
    assert str(tmp_path / "nope") in line


def test_unknown_name_lists_valid_names(tmp_path):
    proc = run("re-docredd", "--out", tmp_path)
    line = assert_one_line_error(proc, code=2)
    assert "re-docredd" in line
    for name in ("re-docred", "docred", "revisit-docred", "docred-meta"):
        assert name in line
    assert not any(tmp_path.iterdir())


def test_usage_error_is_one_line(tmp_path):
    assert_one_line_error(run(), code=2)
    assert_one_line_error(run("re-docred", "--bogus"), code=2)
    proc = run("--help")
    assert proc.returncode == 0 and "revisit-docred" in proc.stdout


# ------------------------------------------------------------------------------ download path
def make_sources(tmp_path):
    """Files to serve: a pinned JSON, an unpinned JSON, and a gzip copy of the latter."""
    src = tmp_path / "remote"
    src.mkdir()
    pinned = json.dumps([{"title": "a", "sents": [["x"]], "vertexSet": []}]).encode()
    unpinned = json.dumps([{"title": "b", "sents": [["y"]], "vertexSet": []}]).encode()
    (src / "pinned.json").write_bytes(pinned)
    (src / "unpinned.json").write_bytes(unpinned)
    (src / "packed.json.gz").write_bytes(gzip.compress(unpinned))
    return src, hashlib.sha256(pinned).hexdigest(), hashlib.sha256(unpinned).hexdigest()


def registry(files, **extra):
    return {"toy": {"title": "toy dataset", "homepage": "", "license": "", "files": files, **extra}}


def test_download_file_urls_pinned_unpinned_gzip_and_noop(prep, tmp_path, monkeypatch, capsys):
    src, pinned_sha, unpinned_sha = make_sources(tmp_path)
    monkeypatch.setattr(prep, "REGISTRY", registry([
        {"name": "a.json", "required": True, "sha256": pinned_sha,
         "urls": [(src / "missing.json").as_uri(), (src / "pinned.json").as_uri()]},  # mirror fallback
        {"name": "b.json", "required": True, "sha256": None, "urls": [(src / "unpinned.json").as_uri()]},
        {"name": "c.json", "required": False, "sha256": None, "urls": [(src / "packed.json.gz").as_uri()]},
    ]))
    out = tmp_path / "out"
    assert prep.main(["toy", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    folder = out / "toy"
    assert sha256(folder / "a.json") == pinned_sha
    assert sha256(folder / "b.json") == unpinned_sha
    assert sha256(folder / "c.json") == unpinned_sha  # gunzipped on the fly
    assert "failed" in captured.out and "missing.json" in captured.out
    # The unpinned hashes are recorded and announced.
    sums = prep.read_sums(str(folder))
    assert sums == {"a.json": pinned_sha, "b.json": unpinned_sha, "c.json": unpinned_sha}
    assert "b.json is not pinned" in captured.out and unpinned_sha in captured.out
    assert "c.json is not pinned" in captured.out
    assert "a.json is not pinned" not in captured.out
    assert (folder / ".prepared").is_file() and leftovers(folder) == []

    # Second run: nothing is fetched (the sources are gone), the recorded hashes verify the files.
    shutil.rmtree(src)
    assert prep.main(["toy", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "nothing to do" in captured.out and "<-" not in captured.out

    # A damaged unpinned file no longer matches its record: it is fetched again.
    (folder / "b.json").write_text("[]")
    assert prep.main(["toy", "--out", str(out)]) == 1  # and the source is gone: a clear error
    captured = capsys.readouterr()
    assert "could not download toy/b.json" in captured.err and "--from" in captured.err
    assert not (folder / ".prepared").exists()


def test_download_network_failure_names_url_and_suggests_from(prep, tmp_path, monkeypatch, capsys):
    url = "http://127.0.0.1:9/dev_revised.json"  # discard port: connection refused, no network used
    monkeypatch.setattr(prep, "REGISTRY", registry(
        [{"name": "dev_revised.json", "required": True, "sha256": DEV_SHA, "urls": [url]}]))
    assert prep.main(["toy", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert url in err and "--from DIR" in err
    assert not (tmp_path / "toy" / "dev_revised.json").exists()
    assert not (tmp_path / "toy" / ".prepared").exists()


def test_download_hash_mismatch(prep, tmp_path, monkeypatch, capsys):
    src, pinned_sha, unpinned_sha = make_sources(tmp_path)
    url = (src / "unpinned.json").as_uri()
    monkeypatch.setattr(prep, "REGISTRY", registry(
        [{"name": "a.json", "required": True, "sha256": pinned_sha, "urls": [url]}]))
    assert prep.main(["toy", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "sha256 mismatch for a.json" in err and pinned_sha in err and unpinned_sha in err
    assert url in err
    folder = tmp_path / "out" / "toy"
    assert not (folder / "a.json").exists() and not (folder / ".prepared").exists()
    assert leftovers(folder) == []


def test_unpinned_download_must_be_json(prep, tmp_path, monkeypatch, capsys):
    page = tmp_path / "page.txt"
    page.write_text("<p>Too many users have viewed or downloaded this file recently</p>")
    monkeypatch.setattr(prep, "REGISTRY", registry(
        [{"name": "a.json", "required": True, "sha256": None, "urls": [page.as_uri()]}]))
    assert prep.main(["toy", "--out", str(tmp_path / "out")]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "out" / "toy" / "a.json").exists()


@needs_shared
def test_meta_download_is_normalized_to_the_pinned_form(prep, tmp_path, monkeypatch, capsys):
    """Upstream rel2id/rel_info are one-line JSON in another key order; the pinned hash is canonical."""
    remote = tmp_path / "remote"
    remote.mkdir()
    rel2id = json.loads((SHARED / "docred-meta" / "rel2id.json").read_text())
    rel_info = json.loads((SHARED / "docred-meta" / "rel_info.json").read_text())
    (remote / "rel2id.json").write_text(json.dumps(dict(sorted(rel2id.items()))))
    (remote / "rel_info.json.gz").write_bytes(gzip.compress(json.dumps(dict(reversed(rel_info.items()))).encode()))
    assert sha256(remote / "rel2id.json") != REL2ID_SHA
    meta = prep.REGISTRY["docred-meta"]
    files = [dict(meta["files"][0], urls=[(remote / "rel2id.json").as_uri()]),
             dict(meta["files"][1], urls=[(remote / "rel_info.json.gz").as_uri()])]
    monkeypatch.setitem(prep.REGISTRY, "docred-meta", dict(meta, files=files))
    assert prep.main(["docred-meta", "--out", str(tmp_path / "out")]) == 0
    folder = tmp_path / "out" / "docred-meta"
    assert sha256(folder / "rel2id.json") == REL2ID_SHA
    assert sha256(folder / "rel_info.json") == RELINFO_SHA
    assert "not pinned" not in capsys.readouterr().out


@needs_shared
def test_corrupted_meta_file_is_a_mismatch_even_after_normalisation(tmp_path):
    src = tmp_path / "src" / "docred-meta"
    src.mkdir(parents=True)
    shutil.copyfile(SHARED / "docred-meta" / "rel_info.json", src / "rel_info.json")
    text = (SHARED / "docred-meta" / "rel2id.json").read_text()
    (src / "rel2id.json").write_text(text.replace('"P17": 1', '"P17": 7', 1))
    proc = run("docred-meta", "--from", tmp_path / "src", "--out", tmp_path / "out")
    line = assert_one_line_error(proc, code=1)
    assert "sha256 mismatch for rel2id.json" in line and REL2ID_SHA in line
    assert not (tmp_path / "out" / "docred-meta" / "rel2id.json").exists()
    assert not (tmp_path / "out" / "docred-meta" / ".prepared").exists()


class _FakeDrive(http.server.BaseHTTPRequestHandler):
    """/uc answers with a Drive-like confirmation page; /download serves the file with the token."""
    payload = b""
    truncate = False

    def do_GET(self):
        if self.path.startswith("/uc"):
            body = (b'<html><body><form id="download-form" action="/download" method="get">'
                    b'<input type="hidden" name="id" value="ABC"><input type="hidden" name="confirm" value="t">'
                    b'<input type="hidden" name="uuid" value="u-1"><input type="submit" value="Download anyway">'
                    b'</form></body></html>')
            self._send(body, "text/html; charset=utf-8")
        elif self.path == "/download?id=ABC&confirm=t&uuid=u-1":
            self._send(self.payload, "application/octet-stream")
        elif self.path.startswith("/quota"):
            self._send(b"<html><body>Quota exceeded</body></html>", "text/html")
        else:
            self.send_error(404)

    def _send(self, body, ctype):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) + (100 if self.truncate else 0)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_drive():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeDrive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    _FakeDrive.truncate = False


def test_download_follows_a_drive_confirmation_page(prep, tmp_path, monkeypatch, capsys, fake_drive):
    _FakeDrive.payload = json.dumps([{"title": "drive"}]).encode()
    monkeypatch.setattr(prep, "REGISTRY", registry(
        [{"name": "dev.json", "required": True, "sha256": None,
          "urls": [f"{fake_drive}/quota?id=ABC", f"{fake_drive}/uc?export=download&id=ABC"]}],
        manual=["get it by hand from https://example.org/folder"]))
    assert prep.main(["toy", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "web page instead of the file" in out  # the quota page, then the next source
    assert (tmp_path / "toy" / "dev.json").read_bytes() == _FakeDrive.payload
    assert "dev.json is not pinned" in out


def test_truncated_download_and_manual_instructions(prep, tmp_path, monkeypatch, capsys, fake_drive):
    _FakeDrive.payload = json.dumps([{"title": "drive"}]).encode()
    _FakeDrive.truncate = True
    monkeypatch.setattr(prep, "REGISTRY", registry(
        [{"name": "dev.json", "required": True, "sha256": None,
          "urls": [f"{fake_drive}/uc?export=download&id=ABC"]}],
        manual=["get it by hand from https://example.org/folder"]))
    assert prep.main(["toy", "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "https://example.org/folder" in captured.out
    assert "could not download toy/dev.json" in captured.err and "bytes" in captured.err
    assert not (tmp_path / "toy" / "dev.json").exists() and leftovers(tmp_path / "toy") == []


def test_interrupted_download_leaves_no_partial_file(prep, tmp_path, monkeypatch, capsys):
    src, pinned_sha, _ = make_sources(tmp_path)
    monkeypatch.setattr(prep, "REGISTRY", registry(
        [{"name": "a.json", "required": True, "sha256": pinned_sha, "urls": [(src / "pinned.json").as_uri()]}]))
    out = tmp_path / "out"
    assert prep.main(["toy", "--out", str(out)]) == 0
    (out / "toy" / "a.json").unlink()  # force a new download, with a stamp from the last run

    def interrupted(url, fh, gunzip=False):
        fh.write(b"[{\"title\": ")
        raise KeyboardInterrupt

    monkeypatch.setattr(prep, "download", interrupted)
    assert prep.main(["toy", "--out", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    folder = out / "toy"
    assert not (folder / "a.json").exists() and not (folder / ".prepared").exists()
    assert leftovers(folder) == []


def test_cli_download_failure_has_no_traceback(tmp_path):
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(SCRIPT)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "m.REGISTRY = {'toy': {'title': 't', 'files': [{'name': 'a.json', 'required': True,"
        " 'sha256': None, 'urls': ['http://127.0.0.1:9/a.json']}]}}\n"
        f"sys.exit(m.main(['toy', '--out', {str(tmp_path)!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = assert_one_line_error(proc, code=1)
    assert "http://127.0.0.1:9/a.json" in line and "--from" in line
