#!/usr/bin/env python3
"""Prepare the data files of pyg_docre: copy them from a local folder or download them, verified.

    python datasets/prepare.py NAME [--from DIR] [--out DIR]

NAME is one of ``re-docred``, ``docred``, ``revisit-docred``, ``docred-meta`` (see ``REGISTRY``),
or ``dwie`` (see ``CONVERTED``). The files are written to ``OUT/NAME/`` (``OUT`` defaults to the
folder of this script), each one checked against its sha256 before it is placed, then the stamp
``OUT/NAME/.prepared`` is written.

* ``dwie`` is not downloaded but converted: ``--from DIR`` names the folder of DWIE's
  ``annos_with_content`` JSON files (or ``DIR/dwie/``, or a DWIE checkout), which
  ``datasets/dwie.py`` turns into DocRED-format ``train.json``, ``dev.json``, ``test.json`` and
  ``rel2id.json``; ``--dev-size N`` sets how many training documents ``dev.json`` holds.

* ``--from DIR`` copies the files from ``DIR/NAME/`` (no network). A required file missing there
  is an error; a missing optional file is skipped with a note on how to get it.
* Without ``--from`` the files are downloaded from the public sources listed in ``REGISTRY``
  (mirrors are tried in order).
* A file whose sha256 is pinned in ``REGISTRY`` must match it. A file whose sha256 is not pinned is
  accepted if it is well-formed (JSON files must parse), and its hash is recorded in
  ``OUT/NAME/SHA256SUMS`` (``sha256sum -c`` format) with a note saying so; later runs verify the file
  against that record.
* Every file is written to a temporary file in the target folder and moved into place with
  ``os.replace`` only once verified; the stamp is removed when work starts and written last, so an
  interrupted or failed run leaves neither a half-written file nor a stale stamp. A re-run with
  everything in place and verified does nothing (it only refreshes the stamp).
* Errors are one line on stderr and a non-zero exit status (1; 2 for usage errors; 130 when
  interrupted).

Standard library only: this script runs before the package and its dependencies are installed.
"""
from __future__ import annotations

import argparse
import hashlib
import html.parser
import http.client
import http.cookiejar
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from typing import Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
STAMP = ".prepared"
SUMS = "SHA256SUMS"
CHUNK = 1 << 20
TIMEOUT = 60  # seconds per network operation (connect, each read)
USER_AGENT = "pyg_docre-datasets-prepare/1.0 (Python urllib)"
MAX_HTML = 2 << 20  # read at most this much of an HTML interstitial page

# Where DocRED is officially distributed (Google Drive folder linked from the DocRED repository).
_DOCRED_DRIVE_FOLDER = "https://drive.google.com/drive/folders/1c5-0YwnoJx8NS6CV2f-NoTHR__BdkNqw"
_DOCRED_DATA_PAGE = "https://github.com/thunlp/DocRED/tree/master/data"
# The DocRED files as hosted in the Hugging Face dataset thunlp/docred ("Host data files", PR #6),
# gzip-compressed, pinned to that commit so that the content cannot change under us.
_DOCRED_HF = ("https://huggingface.co/datasets/thunlp/docred/resolve/"
              "7985b4e0371e6c61a756feb41b7b27becf71c666/data/")


def _gdrive(file_id: str) -> str:
    """Direct-download address of a public Google Drive file (the script handles the confirm page)."""
    return f"https://drive.google.com/uc?export=download&id={file_id}"


# ---------------------------------------------------------------------------------------------
# The registry. Per dataset: what it is, and its files. Per file:
#   name      file name inside OUT/NAME/ (and inside DIR/NAME/ for --from)
#   sha256    hex digest of the file as placed, or None when not known (then it is recorded in
#             SHA256SUMS at download time and a note says that it was not pinned)
#   required  True when a local copy (--from) must hold it; optional files are skipped if absent
#   urls      download sources, tried in order. A URL ending in ".gz" (for a file whose name does
#             not) is gunzipped while it is streamed. An HTML page where a data file is expected
#             (Google Drive's download-confirmation page) is followed once through its
#             confirmation form or link.
#   normalize optional: name of a canonical re-serialisation (see NORMALIZERS) applied when the
#             bytes do not match the pinned hash as they are; the hash is of the canonical form.
# ---------------------------------------------------------------------------------------------
REGISTRY: dict[str, dict] = {
    "re-docred": {
        "title": "Re-DocRED (Tan et al., EMNLP 2022): DocRED with its false negatives revised",
        "homepage": "https://github.com/tonytan48/Re-DocRED",
        "license": "MIT (LICENSE of github.com/tonytan48/Re-DocRED)",
        "files": [
            {"name": "dev_revised.json", "required": True,
             "sha256": "051ee1d057204a5d08ef5502beacdadf191245b5eaf0e29ec2c607cf002c016f",
             "urls": ["https://raw.githubusercontent.com/tonytan48/Re-DocRED/main/data/dev_revised.json",
                      "https://huggingface.co/datasets/tonytan48/Re-DocRED/resolve/main/dev_revised.json"]},
            {"name": "test_revised.json", "required": True,
             "sha256": "ea673b7ef91e16510d7eb88863d3903e47318dc5653ef361266f27ae3b84723c",
             "urls": ["https://raw.githubusercontent.com/tonytan48/Re-DocRED/main/data/test_revised.json",
                      "https://huggingface.co/datasets/tonytan48/Re-DocRED/resolve/main/test_revised.json"]},
            {"name": "train_revised.json", "required": False, "sha256": None,
             "urls": ["https://raw.githubusercontent.com/tonytan48/Re-DocRED/main/data/train_revised.json",
                      "https://huggingface.co/datasets/tonytan48/Re-DocRED/resolve/main/train_revised.json"]},
            {"name": "LICENSE", "required": False,
             "sha256": "0a06d894a38e1948af6fb9e76e0415ecc7ec36dfe6c9fd5f21d470b1bb5714a5",
             "urls": ["https://raw.githubusercontent.com/tonytan48/Re-DocRED/main/LICENSE"]},
        ],
    },
    "docred": {
        "title": "DocRED (Yao et al., ACL 2019): the original human-annotated splits",
        "homepage": "https://github.com/thunlp/DocRED",
        "license": "MIT (dataset card of thunlp/docred on the Hugging Face Hub)",
        "files": [
            {"name": "train_annotated.json", "required": True, "sha256": None,
             "urls": [_DOCRED_HF + "train_annotated.json.gz", _gdrive("1NN33RzyETbanw4Dg2sRrhckhWpzuBQS9")]},
            {"name": "dev.json", "required": True, "sha256": None,
             "urls": [_DOCRED_HF + "dev.json.gz", _gdrive("1AHUm1-_V9GCtGuDcc8XrMUCJE8B-HHoL")]},
            {"name": "test.json", "required": True, "sha256": None,
             "urls": [_DOCRED_HF + "test.json.gz", _gdrive("1lAVDcD94Sigx7gR3jTfStI66o86cflum")]},
            {"name": "rel_info.json", "required": True, "sha256": None,
             "urls": [_DOCRED_HF + "rel_info.json.gz", _gdrive("1y9A0zKrvETc1ddUFuFhBg3Xfr7FEL4dW")]},
        ],
        "manual": [
            f"DocRED is officially distributed through Google Drive. To get it by hand: open "
            f"{_DOCRED_DRIVE_FOLDER} (linked from {_DOCRED_DATA_PAGE}),",
            "download train_annotated.json, dev.json, test.json and rel_info.json into a folder "
            "SOMEDIR/docred/, then run:",
            "    python datasets/prepare.py docred --from SOMEDIR",
        ],
    },
    "revisit-docred": {
        "title": "Revisit-DocRED (Huang et al., ACL 2022): 96 DocRED dev documents relabelled from scratch",
        "homepage": "https://github.com/AndrewZhe/Revisit-DocRED",
        "license": "MIT (LICENSE of github.com/AndrewZhe/Revisit-DocRED)",
        "files": [
            {"name": "valid_scratch.json", "required": True, "sha256": None,
             "urls": ["https://raw.githubusercontent.com/AndrewZhe/Revisit-DocRED/"
                      "94e986b552394da08d17acbabc76213f75fb1926/data/docred/valid_scratch.json"]},
            {"name": "valid_revise.json", "required": False, "sha256": None,
             "urls": ["https://raw.githubusercontent.com/AndrewZhe/Revisit-DocRED/"
                      "94e986b552394da08d17acbabc76213f75fb1926/data/docred/valid_revise.json"]},
            {"name": "LICENSE", "required": False, "sha256": None,
             "urls": ["https://raw.githubusercontent.com/AndrewZhe/Revisit-DocRED/"
                      "0f5e657481a3163e469b6b7b36b07189488893cc/LICENSE"]},
        ],
        "note": "its training set is DocRED's train_annotated.json: also run `prepare.py docred`",
    },
    "docred-meta": {
        "title": "DocRED relation inventory: rel2id.json (ATLOP's class ids, 0 = Na) and rel_info.json",
        "homepage": "https://github.com/wzhouad/ATLOP",
        "license": "facts (relation ids and Wikidata property names)",
        "files": [
            {"name": "rel2id.json", "required": True, "normalize": "json-by-value",
             "sha256": "8b4daa905942e3c1a4b6944aac389664f936fb54aaef86b031dadd14c994c6b3",
             "urls": ["https://raw.githubusercontent.com/wzhouad/ATLOP/main/meta/rel2id.json"]},
            {"name": "rel_info.json", "required": True, "normalize": "json-by-pid",
             "sha256": "2a335535f33afd5b478544fadf97f7b6fdd0c486ee9e160cc6cacdf508f38509",
             "urls": [_DOCRED_HF + "rel_info.json.gz", _gdrive("1y9A0zKrvETc1ddUFuFhBg3Xfr7FEL4dW")]},
        ],
    },
}


def _pid_key(item):
    key = item[0]
    digits = key[1:] if key[:1] in "PQ" else ""
    return (0, int(digits), key) if digits.isdigit() else (1, 0, key)


def _canonical_json(data: bytes, sort_key) -> bytes:
    obj = json.loads(data.decode("utf-8"))
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    return json.dumps(dict(sorted(obj.items(), key=sort_key)), indent=1, ensure_ascii=False).encode("utf-8")


# Canonical forms of the small meta files: a JSON object with one-space indentation and no trailing
# newline, keys ordered by class id (rel2id) or by Wikidata property number (rel_info). Upstream
# copies are one-line JSON in another key order; the pinned hashes are those of the canonical form.
NORMALIZERS: dict[str, Callable[[bytes], bytes]] = {
    "json-by-value": lambda data: _canonical_json(data, lambda kv: (kv[1], kv[0])),
    "json-by-pid": lambda data: _canonical_json(data, _pid_key),
}


# Datasets that are converted from a local copy instead of downloaded: NAME -> its module in this
# folder, which has ``convert(source, dev_size=...)`` (returning ``splits``, ``rel2id`` and
# ``summary()``) and ``ConversionError``, raised for bad input with the file, document and field.
CONVERTED: dict[str, dict] = {
    "dwie": {
        "title": "DWIE (Zaporojets et al., IPM 2021): converted to the DocRED format (--from DIR)",
        "homepage": "https://github.com/klimzaporojets/DWIE",
        "module": "dwie.py",
        "manual": "clone https://github.com/klimzaporojets/DWIE, run its src/dwie_download.py "
                  "(it adds the article texts), then: python datasets/prepare.py dwie --from "
                  "DWIE/data/annos_with_content",
    },
}


class PrepareError(Exception):
    """A failure reported as one line on stderr; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class _SourceFailed(Exception):
    """One source (a URL or a local file) did not give a verified file."""


# ------------------------------------------------------------------------------------ hashing
def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_sums(folder: str) -> dict[str, str]:
    """The ``SHA256SUMS`` records of a dataset folder (empty when there is none)."""
    sums: dict[str, str] = {}
    try:
        with open(os.path.join(folder, SUMS), encoding="utf-8") as fh:
            for line in fh:
                parts = line.strip().split(None, 1)
                if len(parts) == 2 and len(parts[0]) == 64 and not line.startswith("#"):
                    sums[parts[1].lstrip("*")] = parts[0].lower()
    except FileNotFoundError:
        pass
    return sums


def _atomic_write_text(path: str, text: str) -> None:
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _write_sums(folder: str, sums: dict[str, str]) -> None:
    lines = "".join(f"{sums[name]}  {name}\n" for name in sorted(sums))
    _atomic_write_text(os.path.join(folder, SUMS), lines)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------------------------- downloads
# Not torch_geometric.data.download_google_url: it opens the address with TLS certificate checks
# turned off (ssl._create_unverified_context), keeps any file already at the target path without
# looking at it, writes in place (an interrupted download leaves a partial file), keeps no
# cookies and follows no confirmation page. The few lines below keep verified TLS, write through
# a temporary file, and are followed by the sha256 check of every file.
class _ConfirmPageParser(html.parser.HTMLParser):
    """Finds the download-confirmation form or link of a Google Drive interstitial page."""

    def __init__(self):
        super().__init__()
        self.form_action: Optional[str] = None
        self.inputs: list[tuple[str, str]] = []
        self.confirm_href: Optional[str] = None
        self._in_form = False

    def handle_starttag(self, tag, attrs):
        attrs = {k: (v or "") for k, v in attrs}
        if tag == "form" and self.form_action is None and (
                attrs.get("id") == "download-form" or "download" in attrs.get("action", "")):
            self.form_action = attrs.get("action", "")
            self._in_form = True
        elif tag == "input" and self._in_form and attrs.get("name"):
            self.inputs.append((attrs["name"], attrs.get("value", "")))
        elif tag == "a" and self.confirm_href is None and "confirm=" in attrs.get("href", ""):
            self.confirm_href = attrs["href"]

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False


def _confirm_url(page: str, base_url: str) -> Optional[str]:
    parser = _ConfirmPageParser()
    parser.feed(page)
    if parser.form_action is not None:
        action = urllib.parse.urljoin(base_url, parser.form_action or base_url)
        query = urllib.parse.urlencode(parser.inputs)
        return action + ("&" if "?" in action else "?") + query if query else action
    if parser.confirm_href:
        return urllib.parse.urljoin(base_url, parser.confirm_href)
    return None


def _urlopen(url: str, opener=None):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        return (opener or urllib.request.build_opener()).open(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        raise _SourceFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _SourceFailed(f"{exc.reason}") from None
    except (OSError, ValueError) as exc:  # timeouts, TLS, malformed URL
        raise _SourceFailed(f"{exc.__class__.__name__}: {exc}") from None


def _is_html(response) -> bool:
    return response.headers.get_content_type() in ("text/html", "application/xhtml+xml")


def _stream(response, out, gunzip: bool) -> None:
    """Copy a response body into ``out``, gunzipping on the fly; check the announced length."""
    expected = response.headers.get("Content-Length")
    received = 0
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gunzip else None
    while True:
        try:
            chunk = response.read(CHUNK)
        except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
            raise _SourceFailed(f"connection failed after {received} bytes "
                                f"({exc.__class__.__name__}: {exc})") from None
        if not chunk:
            break
        received += len(chunk)
        if inflater is None:
            out.write(chunk)
            continue
        try:
            while chunk:
                out.write(inflater.decompress(chunk))
                chunk = inflater.unused_data  # the next gzip member, if any
                if chunk:
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        except zlib.error as exc:
            raise _SourceFailed(f"not a valid gzip stream ({exc})") from None
    if expected is not None and expected.isdigit() and int(expected) != received:
        raise _SourceFailed(f"connection closed after {received} of {expected} bytes")
    if inflater is not None:
        if not inflater.eof:
            raise _SourceFailed("truncated gzip stream")
        out.write(inflater.flush())


def download(url: str, out, gunzip: bool = False) -> str:
    """Stream ``url`` into the open binary file ``out``; return the URL finally served.

    An HTML page where a data file is expected is taken for a download-confirmation page (Google
    Drive shows one for files it cannot virus-scan): its confirmation form or link is followed once.
    """
    # Cookies are kept between the page and the confirmed request (Drive ties its token to them).
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    response = _urlopen(url, opener)
    with response:
        final_url = response.geturl() or url
        if _is_html(response):
            page = response.read(MAX_HTML).decode("utf-8", "replace")
            next_url = _confirm_url(page, final_url)
            if next_url is None:
                raise _SourceFailed("the server sent a web page instead of the file (moved, quota "
                                    "exceeded or sign-in required)")
        else:
            _stream(response, out, gunzip)
            return final_url
    response = _urlopen(next_url, opener)
    with response:
        if _is_html(response):
            raise _SourceFailed("the server sent a web page instead of the file, also after the "
                                "download confirmation")
        _stream(response, out, gunzip)
        return response.geturl() or next_url


def _gunzip_url(url: str, name: str) -> bool:
    path = urllib.parse.urlsplit(url).path
    return path.endswith(".gz") and not name.endswith(".gz")


# ------------------------------------------------------------------------------------ placing
def _place(folder: str, entry: dict, fill: Callable, origin: str) -> str:
    """Write a file through ``fill(binary_file)`` to a temp file in ``folder``, verify, move it in.

    Returns the sha256 of the placed file. Raises ``_SourceFailed`` (temp file removed) when the
    content is not the expected one.
    """
    name = entry["name"]
    pinned = entry.get("sha256")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        actual = sha256_file(tmp)
        how = ""
        if pinned and actual != pinned and entry.get("normalize"):
            with open(tmp, "rb") as fh:
                raw = fh.read()
            try:
                canonical = NORMALIZERS[entry["normalize"]](raw)
            except (ValueError, TypeError, UnicodeDecodeError) as exc:
                raise _SourceFailed(f"sha256 mismatch for {name} from {origin}: expected {pinned}, "
                                    f"got {actual} (and it cannot be normalised: {exc})") from None
            with open(tmp, "wb") as fh:
                fh.write(canonical)
                fh.flush()
                os.fsync(fh.fileno())
            actual, how = hashlib.sha256(canonical).hexdigest(), " after normalisation"
        if pinned and actual != pinned:
            raise _SourceFailed(f"sha256 mismatch for {name} from {origin}: "
                                f"expected {pinned}, got {actual}{how}")
        if not pinned and name.endswith(".json"):
            try:
                with open(tmp, "rb") as fh:
                    json.loads(fh.read().decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise _SourceFailed(f"{name} from {origin} is not valid JSON ({exc})") from None
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(folder, name))
        return actual
    except BaseException:
        _remove(tmp)
        raise


def _copy_from(path: str):
    def fill(out):
        with open(path, "rb") as src:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                out.write(chunk)
    return fill


def _download_into(url: str, gunzip: bool):
    def fill(out):
        download(url, out, gunzip=gunzip)
    return fill


def _in_place(folder: str, entry: dict, sums: dict[str, str]) -> Optional[bool]:
    """True if the file is present and verified, False if present but wrong, None if absent."""
    path = os.path.join(folder, entry["name"])
    if not os.path.isfile(path):
        return None
    expected = entry.get("sha256") or sums.get(entry["name"])
    return expected is not None and sha256_file(path) == expected


def _fmt_size(path: str) -> str:
    size = os.path.getsize(path)
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size} bytes"


def _load_converter(name: str, spec: dict):
    """The converter module of a ``CONVERTED`` dataset, loaded from this folder by path."""
    import importlib.util
    path = os.path.join(HERE, spec["module"])
    key = f"_prepare_{name.replace('-', '_')}"
    if key in sys.modules:
        return sys.modules[key]
    module_spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[key] = module   # registered before it runs, as importlib does (dataclasses need it)
    try:
        module_spec.loader.exec_module(module)
    except (OSError, ImportError) as exc:
        del sys.modules[key]
        raise PrepareError(f"{name}: cannot load its converter {path} ({exc})") from None
    except BaseException:
        del sys.modules[key]
        raise
    return module


def prepare_converted(name: str, source: Optional[str], out: Optional[str] = None,
                      log: Callable[[str], None] = print, dev_size: Optional[int] = None) -> dict:
    """Convert the local copy ``source`` of a ``CONVERTED`` dataset into ``out/name``.

    Everything is read and checked before anything is written; then each file goes through a
    temporary file and ``os.replace``, ``SHA256SUMS`` lists the written files, and the stamp is
    written last. Returns ``prepare``'s dict plus ``"summary"``.
    """
    spec = CONVERTED[name]
    if source is None:
        raise PrepareError(f"{name} cannot be downloaded by this script: {spec['manual']}", code=2)
    if not os.path.isdir(source):
        raise PrepareError(f"--from directory {source} does not exist")
    module = _load_converter(name, spec)
    kwargs = {} if dev_size is None else {"dev_size": dev_size}
    try:
        result = module.convert(source, **kwargs)
    except module.ConversionError as exc:
        raise PrepareError(f"{name}: {exc}") from None
    texts = {f"{split}.json": json.dumps(docs, ensure_ascii=False)
             for split, docs in result.splits.items()}
    texts["rel2id.json"] = json.dumps(result.rel2id, indent=1, ensure_ascii=False)
    folder = os.path.join(os.path.abspath(out or HERE), name)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise PrepareError(f"cannot create {folder}: {exc.strerror or exc}") from None
    stamp = os.path.join(folder, STAMP)
    _remove(stamp)
    done: dict[str, list] = {"placed": [], "kept": [], "skipped": [], "unpinned": []}
    sums = {}
    for fname, text in texts.items():
        path = os.path.join(folder, fname)
        sums[fname] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if os.path.isfile(path) and sha256_file(path) == sums[fname]:
            done["kept"].append(fname)
            continue
        _atomic_write_text(path, text)
        done["placed"].append(fname)
        log(f"  wrote {fname} ({_fmt_size(path)}, sha256 {sums[fname]})")
    _write_sums(folder, sums)
    _atomic_write_text(stamp, f"# {name}: converted by datasets/prepare.py from {source}\n"
                       + "".join(f"{sums[f]}  {f}\n" for f in sorted(sums)))
    done["summary"] = result.summary()
    log(f"{name}: {done['summary']}")
    log(f"{name}: ready in {folder} ({len(done['placed'])} files written, "
        f"{len(done['kept'])} unchanged)")
    return done


def prepare(name: str, source: Optional[str] = None, out: Optional[str] = None,
            log: Callable[[str], None] = print, dev_size: Optional[int] = None) -> dict:
    """Prepare dataset ``name`` into ``out/name``; copy from ``source/name`` when ``source`` is given.

    Returns ``{"placed": [...], "kept": [...], "skipped": [...], "unpinned": [...]}``.
    Raises ``PrepareError`` on any failure. A ``CONVERTED`` dataset goes to ``prepare_converted``.
    """
    if name in CONVERTED:
        return prepare_converted(name, source, out, log, dev_size)
    if name not in REGISTRY:
        raise PrepareError(f"unknown dataset {name!r}; valid names: "
                           f"{', '.join([*REGISTRY, *CONVERTED])}", code=2)
    if dev_size is not None:
        raise PrepareError(f"--dev-size applies to {', '.join(CONVERTED)} only, not {name}", code=2)
    spec = REGISTRY[name]
    folder = os.path.join(os.path.abspath(out or HERE), name)
    src_folder = None
    if source is not None:
        if not os.path.isdir(source):
            raise PrepareError(f"--from directory {source} does not exist")
        src_folder = os.path.join(os.path.abspath(source), name)

    sums = read_sums(folder)
    stamp = os.path.join(folder, STAMP)
    result: dict[str, list] = {"placed": [], "kept": [], "skipped": [], "unpinned": []}

    # Which files are already in place and verified, which must be fetched, which are skipped.
    todo = []
    for entry in spec["files"]:
        state = _in_place(folder, entry, sums)
        if state:
            result["kept"].append(entry["name"])
            continue
        if entry["required"]:
            _remove(stamp)  # a required file is missing or wrong: the folder is not 'prepared'
        if src_folder is not None and not os.path.isfile(os.path.join(src_folder, entry["name"])):
            result["skipped"].append(entry["name"])
            continue
        if state is False and entry.get("sha256"):
            log(f"{name}: {entry['name']} in {folder} does not match its pinned sha256; replacing it")
        todo.append(entry)

    if src_folder is not None:  # before writing anything: every required file must be in DIR/NAME
        missing = [e["name"] for e in spec["files"]
                   if e["required"] and not os.path.isfile(os.path.join(src_folder, e["name"]))]
        if missing:
            for line in spec.get("manual", []):
                log(line)
            hint = "" if os.path.isdir(src_folder) else (
                f" (that folder does not exist: --from expects the folder that contains {name}/)")
            raise PrepareError(f"{name}: required file{'s' if len(missing) > 1 else ''} "
                               f"{', '.join(missing)} missing from {src_folder}{hint}")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise PrepareError(f"cannot create {folder}: {exc.strerror or exc}") from None

    if todo:
        _remove(stamp)  # from here on the folder is not 'prepared' until the end of this run
        how = f"copying from {src_folder}" if src_folder else "downloading"
        log(f"{name}: {how} into {folder}")
    for entry in todo:
        fname = entry["name"]
        if src_folder is not None:
            src = os.path.join(src_folder, fname)
            try:
                digest = _place(folder, entry, _copy_from(src), src)
            except _SourceFailed as exc:
                raise PrepareError(str(exc)) from None
            except OSError as exc:
                raise PrepareError(f"cannot copy {src} to {folder}: {exc.strerror or exc}") from None
            origin = src
        else:
            failures = []
            digest = origin = None
            for url in entry["urls"]:
                log(f"  {fname} <- {url}")
                try:
                    digest = _place(folder, entry, _download_into(url, _gunzip_url(url, fname)), url)
                    origin = url
                    break
                except _SourceFailed as exc:
                    failures.append((url, str(exc)))
                    log(f"    failed: {exc}")
                except OSError as exc:  # local disk trouble, not the source's fault
                    raise PrepareError(f"cannot write {fname} in {folder}: {exc.strerror or exc}") from None
            if digest is None:
                for line in spec.get("manual", []):
                    log(line)
                if all("sha256 mismatch" in reason for _, reason in failures):
                    raise PrepareError("; ".join(reason for _, reason in failures))
                tried = "; ".join(f"{url} ({reason})" for url, reason in failures)
                raise PrepareError(
                    f"could not download {name}/{fname}: {tried}. Without network, put the files in "
                    f"DIR/{name}/ and run: python datasets/prepare.py {name} --from DIR")
        path = os.path.join(folder, fname)
        log(f"  placed {fname} ({_fmt_size(path)}, sha256 {digest})")
        result["placed"].append(fname)
        if not entry.get("sha256"):
            result["unpinned"].append(fname)
            log(f"  note: the sha256 of {fname} is not pinned in datasets/prepare.py; recorded "
                f"{digest} in {os.path.join(folder, SUMS)} (from {origin}). Compare it with a "
                f"trusted copy, then pin it in REGISTRY.")
        sums[fname] = digest
        _write_sums(folder, sums)  # after each file: an interrupted run keeps what it verified

    for fname in result["skipped"]:
        entry = next(e for e in spec["files"] if e["name"] == fname)
        log(f"{name}: skipped optional {fname} (not in {src_folder}); get it with "
            f"`python datasets/prepare.py {name}` (downloads from {entry['urls'][0]}), "
            f"or put it in {src_folder} and re-run with --from")

    # Stamp: every required file in place and verified (re-checked from disk).
    present = {}
    for entry in spec["files"]:
        state = _in_place(folder, entry, sums)
        if state:
            present[entry["name"]] = entry.get("sha256") or sums[entry["name"]]
        elif entry["required"]:
            raise PrepareError(f"{name}: {entry['name']} is not in place in {folder} after preparing")
    for fname, digest in present.items():  # keep SHA256SUMS complete for `sha256sum -c`
        if sums.get(fname) != digest:
            sums[fname] = digest
            _write_sums(folder, sums)
    text = (f"# {name}: prepared by datasets/prepare.py; every file below is in place and verified\n"
            + "".join(f"{present[f]}  {f}\n" for f in sorted(present)))
    try:
        with open(stamp, encoding="utf-8") as fh:
            current = fh.read()
    except OSError:
        current = None
    if current == text:
        os.utime(stamp)  # keeps make's target newer than prepare.py
    else:
        _atomic_write_text(stamp, text)
    if todo:
        log(f"{name}: ready in {folder} ({len(present)} files verified)")
    else:
        log(f"{name}: already prepared in {folder}: {len(present)} files in place and verified, "
            "nothing to do")
    if spec.get("note"):
        log(f"{name}: note: {spec['note']}")
    return result


# --------------------------------------------------------------------------------------- CLI
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        raise PrepareError(f"{message} (see --help)", code=2)


def _build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {key:15s} {spec['title']}"
                        for key, spec in [*REGISTRY.items(), *CONVERTED.items()])
    parser = _Parser(
        prog="prepare.py",
        description="Copy (--from) or download the data files of a dataset, verify their sha256 and "
                    "write them to OUT/NAME/, then the stamp OUT/NAME/.prepared.",
        epilog=f"datasets:\n{listing}\n\nexample: python datasets/prepare.py re-docred --from ../shared/datasets\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", metavar="NAME", help="one of: " + ", ".join([*REGISTRY, *CONVERTED]))
    parser.add_argument("--from", dest="source", metavar="DIR",
                        help="copy from DIR/NAME/ instead of downloading (dwie: convert the DWIE "
                             "JSON files in DIR, DIR/dwie/ or DIR/data/annos_with_content/)")
    parser.add_argument("--dev-size", type=int, metavar="N",
                        help="dwie only: training documents held out as dev.json (default 98)")
    parser.add_argument("--out", metavar="DIR", default=HERE,
                        help="write to DIR/NAME/ (default: the folder of this script)")
    return parser


def main(argv: Optional[list] = None) -> int:
    try:
        args = _build_parser().parse_args(argv)
        prepare(args.name, source=args.source, out=args.out, dev_size=args.dev_size)
        return 0
    except PrepareError as exc:
        print(f"prepare.py: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("prepare.py: error: interrupted; no partial file or stamp was left behind", file=sys.stderr)
        return 130
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"prepare.py: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
