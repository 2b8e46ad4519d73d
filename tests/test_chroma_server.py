"""The knowledge base on a Chroma server: a real `chroma run` on 127.0.0.1 behind a small proxy that
checks a bearer token (the local server checks none), as a deployment would put one in front of it."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from medtrinity_core.config import load_sources
from medtrinity_core.knowledge.corpora import load_corpora
from medtrinity_core.knowledge.embed import Embedder
from medtrinity_core.knowledge.retrieve import retrieve_context
from medtrinity_core.knowledge.store import (
    KnowledgeStoreError,
    build,
    chunker_for,
    open_collection,
)
from medtrinity_core.sources.schema import (
    KnowledgeConfig,
    RetrievalConfig,
)

from .conftest import EXAMPLES, KNOWLEDGE_INCLUDE

TOKEN = "s3cret-test-token"
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization", "proxy-authenticate", "content-length"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token_proxy(upstream: int, token: str) -> ThreadingHTTPServer:
    """Forwards to 127.0.0.1:upstream only requests carrying `Authorization: Bearer <token>`; 401 otherwise."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return None

        def _relay(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Authorization") != f"Bearer {token}":
                payload = b'{"error": "Unauthorized"}'
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "host"}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in HOP:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _relay

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    """A real Chroma server (the `chroma` command of the chromadb package) and the token proxy before it."""
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    chroma = Path(sys.executable).with_name("chroma")
    log = open(data / "server.log", "wb")  # noqa: SIM115 - the server's log, open as long as the server runs
    proc = subprocess.Popen([str(chroma), "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"chroma run did not start: {(data / 'server.log').read_text(errors='replace')[-2000:]}")
            time.sleep(0.3)
    proxy = token_proxy(port, TOKEN)
    yield f"http://127.0.0.1:{proxy.server_address[1]}"
    proxy.shutdown()
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_the_proxy_refuses_a_request_without_the_token(chroma_server):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{chroma_server}/api/v2/heartbeat", timeout=10)
    assert refused.value.code == 401
    request = urllib.request.Request(f"{chroma_server}/api/v2/heartbeat", headers={"Authorization": f"Bearer {TOKEN}"})
    assert "nanosecond heartbeat" in json.loads(urllib.request.urlopen(request, timeout=10).read())


def test_the_knowledge_base_builds_and_answers_on_a_chroma_server(chroma_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTRINITY_TEST_CHROMA_TOKEN", TOKEN)
    cfg = RetrievalConfig(server=chroma_server, token_env="MEDTRINITY_TEST_CHROMA_TOKEN", collection="test-knowledge")
    embedder = Embedder()
    corpus = [KnowledgeConfig("medquad-tiny", "medquad", EXAMPLES / "knowledge" / "medquad", "CC-BY-4.0", include=tuple(KNOWLEDGE_INCLUDE))]
    passages = load_corpora(corpus, chunker_for(cfg, embedder))
    version, rebuilt = build(passages, cfg, tmp_path / "unused", embedder)
    assert rebuilt and not (tmp_path / "unused").exists()  # nothing embedded locally
    assert build(passages, cfg, tmp_path / "unused", embedder) == (version, False)  # the version lives with the server's collection
    collection = open_collection(cfg, tmp_path / "unused")
    assert collection.count() == passages.height and collection.metadata["kb_version"] == version
    src = load_sources(EXAMPLES / "sources.yaml").source("kvasir-seg")
    image = {"image_id": "img-1", "masks": [{"label": "polyp"}], "labels": ["polyp"], "slice_axis": None}
    row = retrieve_context(src, [image], pl.DataFrame(schema={"image_id": pl.String}), collection, embedder).row(0, named=True)
    assert row["kb_version"] == version and row["passages"] and row["passages"][0]["focus"] in {"Colonic Polyps", "Colon Cancer"}

    # the same knowledge base from the command line, configured by a sources file
    sources = tmp_path / "sources.yaml"
    sources.write_text((EXAMPLES / "sources.yaml").read_text().replace("root: ", f"root: {EXAMPLES}/", ) + f"retrieval:\n  server: {chroma_server}\n"
                       "  token_env: MEDTRINITY_TEST_CHROMA_TOKEN\n  collection: test-knowledge\n")
    out = subprocess.run([sys.executable, "-m", "medtrinity_dagster.cli", "knowledge", "query", "--label", "polyp", "--sources", str(sources),
                          "--source", "kvasir-seg", "--k", "1", "--json", "--workdir", str(tmp_path / "wd")], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["passage_id"] == row["passages"][0]["passage_id"]

    # a wrong token is refused by the proxy, a missing one named before anything is sent
    monkeypatch.setenv("MEDTRINITY_TEST_CHROMA_TOKEN", "wrong")
    with pytest.raises(KnowledgeStoreError, match=f"Chroma server {chroma_server} refused or did not answer"):
        open_collection(cfg, tmp_path / "unused")
    monkeypatch.delenv("MEDTRINITY_TEST_CHROMA_TOKEN")
    with pytest.raises(KnowledgeStoreError, match="MEDTRINITY_TEST_CHROMA_TOKEN, which is not set"):
        open_collection(cfg, tmp_path / "unused")
