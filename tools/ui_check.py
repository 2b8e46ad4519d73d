"""The Dagster UI as a user meets it: the webserver and daemon as real processes, its GraphQL API, and
headless Chromium rendering its pages. `make ui-check` and the daemon-and-webserver test use it; it is a
check of the UI, not runtime code, so it lives in tools/ (not installed with medtrinity_dagster).

`python tools/ui_check.py --workdir DIR --sources FILE --source NAME --out DIR` materializes
the source's shards if the work folder has none (`medtrinity run`), starts `dagster-webserver` on a free
port of 127.0.0.1, fails on a code-location load error, opens the asset graph, the source's partition
view and a ROI preview in Chromium, waits until each page's DOM shows what it should (asset names, shard
keys, the preview image), saves a screenshot of each, and exits 1 naming what it did not find.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def service(args: list[str], env: dict, log: Path):
    """A process in its own process group (its children too), stopped with the group at the end."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue


def webserver(port: int, env: dict, log: Path):
    return service([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(REPO / "workspace.yaml")], env, log)


def daemon(env: dict, log: Path):
    return service([str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")], env, log)


def graphql(port: int, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise RuntimeError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


LOCATIONS = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def wait_for_locations(port: int, proc: subprocess.Popen, timeout: float = 180) -> list[str]:
    """Wait until the webserver answers and its code locations have loaded; their load errors ([] if none)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the webserver exited with {proc.returncode}")
        try:
            entries = graphql(port, LOCATIONS, timeout=10)["workspaceOrError"]["locationEntries"]
        except (urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError):
            entries = []
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            return [f"{e['name']}: {e['locationOrLoadError']['message']}" for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
        time.sleep(1)
    raise TimeoutError(f"the webserver on port {port} did not load its code location in {timeout:.0f} s")


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    raise FileNotFoundError("Chromium is not installed (`apt-get install chromium`; `make test` and `make ui-check` install it)")


class Browser:
    """Headless Chromium driven over its DevTools protocol: open a page, wait until its DOM shows given
    text (a screenshot of a loading spinner is not a pass), click, screenshot."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 1000):
        profile.mkdir(parents=True, exist_ok=True)
        args = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline, line = time.monotonic() + 60, ""
        while "DevTools listening on" not in line:
            line = self.proc.stderr.readline()
            if (not line and self.proc.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not start its DevTools endpoint: {line.strip()}")
        port = line.strip().rsplit(":", 1)[1].split("/", 1)[0]
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep draining: a full pipe would stall Chromium
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT"), timeout=30) as r:
            target = json.loads(r.read())
        from websockets.sync.client import connect

        self.ws = connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=30).__enter__()
        self.next_id = 0
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def js(self, expression: str):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True).get("result", {}).get("value")

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def wait_for(self, wanted: list[str], timeout: float = 90, expression: str = "document.body ? document.body.innerText : ''") -> list[str]:
        """Poll until the page's text holds every wanted string; those still missing at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.js(expression) or ""
            missing = [w for w in wanted if w not in text]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.5)

    def click(self, x: float, y: float) -> None:
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path) -> None:
        import base64

        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def html(self) -> str:
        return self.js("document.documentElement.outerHTML") or ""

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)


# The preview is markdown metadata: the events page shows it behind a "[Show Markdown]" link (the
# innermost element with that text), clicked as a person would, by the mouse at its centre.
SHOW_PREVIEW = """(() => { const link = [...document.querySelectorAll('a, button')].find(e => e.children.length === 0
  && e.innerText && e.innerText.trim() === '[Show Markdown]');
  if (!link) return null; link.scrollIntoView(); const r = link.getBoundingClientRect();
  return [r.left + r.width / 2, r.top + r.height / 2]; })()"""
PREVIEW_SHOWN = """(() => { const img = [...document.querySelectorAll('img')].find(i => i.src.startsWith('data:image/png') && i.naturalWidth > 0);
  return img ? 'preview image ' + img.naturalWidth : ''; })()"""


def check_pages(port: int, source: str, shard: str, out: Path, location: str = "medtrinity_dagster.definitions", stages=None) -> list[str]:
    """Render the source's asset graph (`stages`: its chain's names, default every registered stage), its
    partition view and a ROI preview; what each lacked ([] if all shown)."""
    from medtrinity_core.pipeline import KNOWLEDGE_BASE, REGISTRY

    out.mkdir(parents=True, exist_ok=True)
    graphql(port, "mutation { setNuxSeen }")  # the community sign-up dialog a fresh instance shows once
    base = f"http://127.0.0.1:{port}"
    group = source.replace("-", "_")
    problems = []
    browser = Browser(out / ".chromium")
    try:
        pages = [
            ("asset-graph", f"/locations/__repository__@{location}/asset-groups/{group}", [*(stages or REGISTRY.names()), KNOWLEDGE_BASE]),
            ("partitions", f"/assets/{source}/raw?view=partitions", [shard, "Materialized"]),
            ("roi-preview", f"/assets/{source}/rois?view=events&partition={shard}", ["preview_0", shard]),
        ]
        for name, path, wanted in pages:
            browser.open(base + path)
            missing = browser.wait_for(wanted)
            if name == "roi-preview" and not missing:
                if at := browser.js(SHOW_PREVIEW):
                    browser.click(*at)
                    missing = browser.wait_for(["preview image"], expression=PREVIEW_SHOWN, timeout=30)
                else:
                    missing = ["[Show Markdown] link of preview_0"]
            time.sleep(1)  # let the last layout settle before the picture
            browser.screenshot(out / f"{name}.png")
            (out / f"{name}.html").write_text(browser.html())
            if missing:
                problems.append(f"{name} ({path}): the page does not show {', '.join(missing)}")
    finally:
        browser.close()
    return problems


def ui_check(workdir: Path, sources: Path, source: str, out: Path) -> list[str]:
    from medtrinity_core.sources.shards import read_plan
    from medtrinity_core.storage import Workdir

    env = {**os.environ, "DAGSTER_HOME": str(workdir / "dagster"), "MEDTRINITY_WORKDIR": str(workdir), "MEDTRINITY_SOURCES": str(sources),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    wd = Workdir.at(workdir)
    if not any(wd.manifest_path(source, "rois", k).exists() for k in read_plan(wd, source)):
        run = subprocess.run([str(BIN / "medtrinity"), "run", "--workdir", str(workdir), "--sources", str(sources), "--source", source, "--no-progress"],
                             env=env, cwd=REPO, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            return [f"medtrinity run --source {source} failed: {(run.stderr.strip().splitlines() or ['no message'])[-1]}"]
    shards = sorted(read_plan(wd, source))
    if not shards:
        return [f"source {source} has no shard in {workdir}"]
    shard = shards[0]
    port = free_port()
    out.mkdir(parents=True, exist_ok=True)
    with webserver(port, env, out / "webserver.log") as proc:
        errors = wait_for_locations(port, proc)
        if errors:
            return [f"code location failed to load: {e}" for e in errors]
        return check_pages(port, source, shard, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/ui_check.py", description="Open the Dagster UI in headless Chromium and check what it shows.")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--sources", type=Path, required=True)
    p.add_argument("--source", required=True, help="the source whose partitions and preview are opened")
    p.add_argument("--out", type=Path, required=True, help="folder for the screenshots and page DOMs")
    args = p.parse_args(argv)
    problems = ui_check(args.workdir.resolve(), args.sources.resolve(), args.source, args.out.resolve())
    for problem in problems:
        print(f"ui-check: {problem}", file=sys.stderr)
    if not problems:
        print(f"ui-check: the asset graph, the partitions of {args.source} and a ROI preview render; screenshots in {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
