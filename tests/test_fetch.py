"""`gan features get inception` and a run's fetch at start, without the internet: a server on 127.0.0.1 serves
good bytes, wrong bytes, a truncated body and a hang; a closed port stands for no network. Every failure is one
line naming the URL and what to do instead, exit 2, and nothing left in the cache."""
from __future__ import annotations

import hashlib
import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from gan.metrics import extractors, fetch, protocol
from tests.test_runs import cli, one_line_error

STANDIN = {"w": torch.arange(6.0).view(2, 3), "n": torch.tensor(3)}  # a small state dict: the test's "weights"


def _bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


GOOD = _bytes(STANDIN)
WRONG = GOOD[:-40] + bytes(40)  # the good file with its tail zeroed: same length, another hash


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        body = {"/good": GOOD, "/wrong": WRONG, "/short": GOOD, "/slow": GOOD}.get(self.path)
        if self.path == "/hang":
            time.sleep(3)  # past every timeout the tests give
            return
        if self.path == "/trickle":  # a byte every 0.1 s: no read ever waits long, the whole transfer never ends
            self.send_response(200)
            self.send_header("Content-Length", str(len(GOOD)))
            self.end_headers()
            try:
                for i in range(len(GOOD)):
                    self.wfile.write(GOOD[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:  # the client gave up: what we want
                pass
            return
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + (1000 if self.path == "/short" else 0)))
        self.end_headers()
        if self.path == "/slow":  # headers and a first part, then silence
            self.wfile.write(body[:100])
            self.wfile.flush()
            time.sleep(3)
        self.wfile.write(body if self.path != "/short" else body[: len(body) // 2])


@pytest.fixture(scope="module")
def server():
    s = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    s.daemon_threads = True
    t = threading.Thread(target=s.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{s.server_address[1]}"
    s.shutdown()
    s.server_close()


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """An empty torch cache, tiny timeouts, and the stand-in's hash as the one a fetch expects."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(fetch, "CLI_TIMEOUT", 0.5)
    monkeypatch.setattr(fetch, "RUN_TIMEOUT", 0.5)
    monkeypatch.setattr(fetch, "CLI_DEADLINE", 2.0)
    monkeypatch.setattr(fetch, "RUN_DEADLINE", 2.0)
    monkeypatch.setattr(fetch, "EXPECTED_SHA256", hashlib.sha256(GOOD).hexdigest())
    monkeypatch.setattr(fetch, "_tried", {})
    assert fetch.target().parent == tmp_path / "torch" / "hub" / "checkpoints"  # where torch-fidelity looks
    return tmp_path / "torch"


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_url_and_file_are_torch_fidelitys_own():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert fetch.URL_INCEPTION_V3 is URL_INCEPTION_V3 and URL_INCEPTION_V3.endswith("/" + fetch.INCEPTION_FILE)
    assert fetch.EXPECTED_SHA256 == protocol.INCEPTION_SHA256 and len(protocol.INCEPTION_SHA256) == 64


def test_get_lands_a_verified_file_that_loads_weights_only(server, cache):
    r = cli("features", "get", "inception", "--url", f"{server}/good")
    assert r.exit_code == 0, r.output
    dest = fetch.target()
    assert _files(cache) == [dest.relative_to(cache)] and dest.read_bytes() == GOOD
    got = torch.load(dest, weights_only=True)
    assert torch.equal(got["w"], STANDIN["w"]) and int(got["n"]) == 3
    assert "sha256" in r.output and "verified" in r.output
    again = cli("features", "get", "inception", "--url", f"{server}/wrong")  # in place already: no download
    assert again.exit_code == 0 and "already in place" in again.output and dest.read_bytes() == GOOD
    where = " ".join(cli("features", "where").output.split())
    assert f"inception: {dest} (torch-fidelity cache" in where and "not the standard file" in where


@pytest.mark.parametrize("path, needle", [("/wrong", "is not the pinned"), ("/short", "truncated: "),
                                          ("/hang", "no answer for 0.5 s (timed out)"), ("/slow", "no answer for 0.5 s"),
                                          ("/trickle", "too slow: "),
                                          ("/missing", "HTTP 404")])
def test_every_failure_is_one_line_and_leaves_nothing(server, cache, path, needle):
    url = f"{server}{path}"
    line = one_line_error(cli("features", "get", "inception", "--url", url), url, needle,
                          "metrics.inception_weights", "GAN_INCEPTION_WEIGHTS")
    assert line.startswith("error: cannot fetch the Inception weights")
    assert _files(cache) == []  # no partial file, no temp file


def test_no_network_and_the_env_mirror(server, cache, monkeypatch):
    url = f"http://127.0.0.1:{_closed_port()}/weights.pth"
    monkeypatch.setenv("GAN_INCEPTION_URL", url)
    one_line_error(cli("features", "get", "inception"), url, "no network or host unreachable", "--url")
    assert _files(cache) == []
    monkeypatch.setenv("GAN_INCEPTION_URL", f"{server}/good")  # a mirror given by the env
    assert cli("features", "get", "inception").exit_code == 0 and fetch.target().read_bytes() == GOOD


def test_a_file_that_is_not_the_pinned_one_is_refused(server, cache, monkeypatch):
    """The real pinned sha256: the stand-in's bytes, however well served, are not the standard Inception."""
    monkeypatch.setattr(fetch, "EXPECTED_SHA256", protocol.INCEPTION_SHA256)
    one_line_error(cli("features", "get", "inception", "--url", f"{server}/good"),
                   f"{server}/good", f"is not the pinned {protocol.INCEPTION_SHA256[:16]}")
    assert _files(cache) == []


def test_a_wrong_file_in_the_cache_is_set_aside_then_replaced(server, cache):
    dest = fetch.target()
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"half a download")
    r = cli("features", "get", "inception", "--url", f"{server}/good")
    assert r.exit_code == 0, r.output
    aside = list(dest.parent.glob(dest.name + ".corrupt-*"))
    assert dest.read_bytes() == GOOD and len(aside) == 1 and aside[0].read_bytes() == b"half a download"


def test_a_run_fetches_once_and_goes_on_without(server, cache, monkeypatch):
    monkeypatch.setenv("GAN_INCEPTION_URL", f"{server}/hang")
    chosen, notes = extractors.choose(["auto"], "", fetch_missing=True)
    assert [n for n, _ in chosen] == ["c10"]
    assert notes[0].startswith("inception: skipped, no Inception weights: cannot fetch") and f"{server}/hang" in notes[0]
    assert "metrics.fetch_inception = false" in notes[0] and _files(cache) == []
    calls = []
    real = fetch.fetch
    monkeypatch.setattr(fetch, "fetch", lambda *a, **k: calls.append(a) or real(*a, **k))
    again, notes2 = extractors.choose(["auto"], "", fetch_missing=True)  # the same process: not tried again
    assert notes2 == notes and calls == []
    off, notes3 = extractors.choose(["auto"], "", fetch_missing=False)  # metrics.fetch_inception = false
    assert "cannot fetch" not in notes3[0]
    monkeypatch.setenv("GAN_INCEPTION_URL", f"{server}/good")
    chosen, notes = extractors.choose(["auto"], "", fetch_missing=True)
    assert chosen[0] == ("inception", str(fetch.target())) and "sha256 verified" in notes[0] and len(calls) == 1


def test_a_weights_file_with_code_in_it_is_not_loaded(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran code",))

    p = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, p)
    from gan.errors import GanError

    with pytest.raises(GanError, match="do not load as plain tensors"):
        extractors.load("inception", str(p), torch.device("cpu"))


def test_a_trickling_server_meets_one_deadline_and_leaves_no_thread(server, cache):
    """Every read answers within its timeout, yet the whole transfer has one deadline: the fetch gives up at it, in
    one line, leaving no file and no thread of its own behind."""
    import threading

    before = {t for t in threading.enumerate()}
    t0 = time.monotonic()
    with pytest.raises(fetch.FetchError, match="too slow: .* bytes in 2 s"):
        fetch.fetch(f"{server}/trickle", 0.5, None, 2.0)
    assert time.monotonic() - t0 < 2.0 + 0.5 + 1.0  # the deadline, at most one read's timeout, and slack
    assert _files(cache) == []
    left = [t.name for t in threading.enumerate() if t not in before and t.name.startswith("gan-fetch")]
    assert left == []
    # a run's start: the same deadline, then c10
    chosen, notes = extractors.choose(["auto"], "", fetch_missing=False)
    assert [n for n, _ in chosen] == ["c10"]


DAMAGED = {"empty": b"", "1 byte": GOOD[:1], "half": GOOD[: len(GOOD) // 2], "all but the last byte": GOOD[:-1],
           "a wrong file at the right name": _bytes({"w": torch.zeros(2)})}


@pytest.mark.parametrize("what", list(DAMAGED))
def test_a_damaged_cached_inception_file_never_stops_a_run(server, cache, monkeypatch, what):
    """Truncated at every size, or another file under torch-fidelity's name: set aside (its bytes kept), fetched
    again once where fetching is on, else the run goes on with c10, said once in the notes."""
    dest = fetch.target()
    dest.parent.mkdir(parents=True)
    dest.write_bytes(DAMAGED[what])
    monkeypatch.setenv("GAN_INCEPTION_URL", f"{server}/good")
    chosen, notes = extractors.choose(["auto"], "", fetch_missing=True)
    aside = list(dest.parent.glob(dest.name + ".corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == DAMAGED[what]
    assert chosen[0] == ("inception", str(dest)) and dest.read_bytes() == GOOD  # fetched again, verified
    assert "was not the standard file (moved aside to" in notes[0] and "sha256 verified" in notes[0]
    # fetching off: the damaged file goes aside all the same, and c10 carries the run
    dest.write_bytes(DAMAGED[what])
    chosen, notes = extractors.choose(["auto"], "", fetch_missing=False)
    assert [n for n, _ in chosen] == ["c10"] and notes[0].startswith("inception: skipped, the cached")
    assert len(list(dest.parent.glob(dest.name + ".corrupt-*"))) == 2 and not dest.exists()


def test_a_damaged_file_the_user_named_is_skipped_not_moved(tmp_path):
    p = tmp_path / "mine.pth"
    p.write_bytes(GOOD[: len(GOOD) // 3])
    chosen, notes = extractors.choose(["auto"], str(p))
    assert [n for n, _ in chosen] == ["c10"] and p.read_bytes() == GOOD[: len(GOOD) // 3]
    assert notes[0].startswith(f"inception: skipped, metrics.inception_weights={p}: the file does not load")


def test_a_run_with_half_a_download_in_the_cache_completes_with_c10(cache, tmp_path, tiny_npz):
    """The user's case: half a download at torch-fidelity's name, then `gan train` with the default metrics."""
    from gan import config
    from gan.engine import Trainer
    from tests.conftest import tiny_toml

    dest = fetch.target()
    dest.parent.mkdir(parents=True)
    dest.write_bytes(GOOD[: len(GOOD) // 2])
    exp = tiny_toml(tmp_path / "t.toml", tiny_npz, metrics={"enabled": True, "every": 3, "num_samples": 8,
                                                            "ref_samples": 16, "is": False, "kid": False})
    r = Trainer(config.load(str(exp)), device="cpu", logs=tmp_path / "logs", quiet=True).run()
    assert r.status == "completed" and [s for s, _ in r.metrics] == [3, 6]
    assert all(set(m) >= {"metrics/fid_c10"} and "metrics/fid" not in m for _, m in r.metrics)
    import json

    notes = json.loads((r.run_dir / "run.json").read_text())["metrics_notes"]
    assert any("was not the standard file (moved aside to" in n for n in notes), notes
