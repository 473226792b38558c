"""A timeline file in a real browser (headless Chromium, when installed): JSON.parse accepts it, a small viewer
page walks the trace events (tracks, nesting, names, µs times) and draws them; the page's verdict is read back."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from rawtrace.perfetto import Timeline

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

VIEWER = """<!doctype html><html><body><pre id="out">running</pre><svg id="svg" width="800" height="200"></svg>
<script id="data" type="application/json">@DATA@</script>
<script>
const out = document.getElementById("out");
try {
  const doc = JSON.parse(document.getElementById("data").textContent);
  const ev = doc.traceEvents;
  if (!Array.isArray(ev)) throw "traceEvents is not an array";
  const names = new Map(), tracks = new Map();
  let t0 = Infinity, t1 = -Infinity, instants = 0;
  for (const e of ev) {
    if (e.ph === "M") { if (e.name === "thread_name") names.set(e.pid + "/" + e.tid, e.args.name); continue; }
    if (typeof e.ts !== "number" || !e.name) throw "bad event " + JSON.stringify(e);
    if (e.ph === "i") { instants++; continue; }
    if (e.ph !== "X" || typeof e.dur !== "number" || e.dur < 0) throw "bad slice " + JSON.stringify(e);
    const k = e.pid + "/" + e.tid;
    if (!tracks.has(k)) tracks.set(k, []);
    tracks.get(k).push(e);
    t0 = Math.min(t0, e.ts); t1 = Math.max(t1, e.ts + e.dur);
  }
  const svg = document.getElementById("svg");
  let row = 0, slices = 0;
  for (const [k, list] of tracks) {
    if (!names.has(k)) throw "track without a name " + k;
    list.sort((a, b) => a.ts - b.ts || b.dur - a.dur);
    const ends = [];
    for (const e of list) {
      while (ends.length && ends[ends.length - 1] <= e.ts + 5e-4) ends.pop();
      if (ends.length && e.ts + e.dur > ends[ends.length - 1] + 5e-4) throw "overlap on " + k;
      ends.push(e.ts + e.dur);
      const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      r.setAttribute("x", 800 * (e.ts - t0) / (t1 - t0 || 1)); r.setAttribute("y", 20 * row + 20 * ends.length);
      r.setAttribute("width", Math.max(1, 800 * e.dur / (t1 - t0 || 1))); r.setAttribute("height", 15);
      svg.appendChild(r); slices++;
    }
    row++;
  }
  out.textContent = "RESULT ok tracks=" + tracks.size + " slices=" + slices + " instants=" + instants +
                    " span_us=" + (t1 - t0).toFixed(3) + " drawn=" + svg.childNodes.length;
} catch (err) { out.textContent = "RESULT fail " + err; }
</script></body></html>"""


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium installed")
def test_headless_chromium_reads_and_draws_the_timeline(tmp_path):
    t = Timeline()
    t.thread(10, 10, "app")
    for i in range(50):
        t.switch(1_000_000 + 2000 * i, i % 2, 10 if i % 3 else 0, "app", 10)
        t.syscall(1_000_100 + 2000 * i, 1_000_900 + 2000 * i, 10, 10, "write", {"fd": "1"}, 4)
    t.lost(1_050_000, 1, 5)
    path = tmp_path / "t.json"
    t.write(path)
    text = path.read_text()
    json.loads(text)
    page = tmp_path / "viewer.html"
    page.write_text(VIEWER.replace("@DATA@", text.replace("</", "<\\/")))
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                           f"file://{page}"], capture_output=True, text=True, timeout=120, check=False)
    result = [line for line in proc.stdout.splitlines() if "RESULT" in line]
    assert result, proc.stderr[-2000:]
    assert "RESULT ok" in result[0], result[0]
    assert "tracks=3" in result[0] and "instants=1" in result[0]
    assert f"slices={t.slices}" in result[0] and f"drawn={t.slices}" in result[0]
