"""A headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``),
with the standard library only: open a page, collect its console errors and uncaught
exceptions, evaluate JavaScript, take a screenshot.

The browser is Debian's ``chromium`` (installed by .ci/run). Messages are JSON, NUL-separated;
Chromium reads commands on its fd 3 and writes on its fd 4.
"""
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time


def find_chromium():
    """The Chromium executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless browser with one page; use as a context manager."""

    def __init__(self, executable=None, width=1280, height=900):
        exe = executable or find_chromium()
        if exe is None:
            raise FileNotFoundError("no chromium executable")
        self.profile = tempfile.mkdtemp(prefix="fastnplm-chromium-")
        to_chrome, self._w = os.pipe()
        self._r, from_chrome = os.pipe()
        # Chromium's ends at fds >= 10, so that putting them on 3 and 4 cannot overwrite one another
        to_chrome, from_chrome = (self._high(fd) for fd in (to_chrome, from_chrome))
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-dev-shm-usage", "--remote-debugging-pipe",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"]
        # bash (dash allows only fds 0-9) puts our pipe ends on the fds Chromium expects (3: commands in, 4: messages out)
        self.proc = subprocess.Popen(["bash", "-c", f'exec "$@" 3<&{to_chrome} 4>&{from_chrome}', "bash", *args],
                                     pass_fds=(to_chrome, from_chrome), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buf = b""
        self._id = 0
        self.events = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    @staticmethod
    def _high(fd):
        high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
        os.close(fd)
        return high

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.proc.kill()
            self.proc.wait(10)
        finally:
            os.close(self._w)
            os.close(self._r)
            shutil.rmtree(self.profile, ignore_errors=True)

    def _read(self, timeout):
        end = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method, params=None, session=False, timeout=30.0):
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            got = self._read(timeout)
            if got.get("id") == self._id:
                if "error" in got:
                    raise RuntimeError(f"{method}: {got['error']}")
                return got["result"]
            self.events.append(got)

    def wait_event(self, method, timeout=30.0):
        """Wait for an event of this method (already received or to come)."""
        for e in self.events:
            if e.get("method") == method:
                self.events.remove(e)
                return e
        end = time.monotonic() + timeout
        while True:
            got = self._read(max(0.01, end - time.monotonic()))
            if got.get("method") == method:
                return got
            self.events.append(got)

    def open(self, url, timeout=30.0):
        """Navigate and wait for the load event."""
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_event("Page.loadEventFired", timeout)

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (JSON-serialisable values)."""
        out = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                        session=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def pump(self, seconds):
        """Collect events for a while (e.g. errors of the page's timers)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                self.events.append(self._read(end - time.monotonic()))
            except TimeoutError:
                break

    def problems(self):
        """Console errors, uncaught exceptions and error log entries received so far."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('text')} "
                           f"{p['exceptionDetails'].get('exception', {}).get('description', '')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def screenshot(self, path, full_page=True):
        """A PNG of the page (the whole page by default)."""
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000), "scale": 1}
        data = self.call("Page.captureScreenshot", params, session=True)["data"]
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(data))
        return path
