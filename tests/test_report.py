"""`hashbench report`: the page's retrieval examples against brute force over the saved codes, its
thumbnails against the dataset's own images, its refusals, and the page rendered in Chromium."""
import base64
import io
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashbench.cli import main
from hashbench.datasets.multidigits import MultiDigits
from hashbench.results import ResultStore, latest, read_records

TINY = ["dataset.n_train=120", "dataset.n_query=30", "dataset.n_database=80", "device=cpu",
        "classic.features=pixels"]
DATA = dict(n_train=120, n_query=30, n_database=80)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, finished_sweep):
    """lsh and random at 8 and 16 bits, seeds 0 and 1 (read only: copy to modify)."""
    return finished_sweep(tmp_path_factory.mktemp("report"), "methods=lsh,random", "bits=8,16", "seeds=0,1",
                          *TINY)[0]


class Items(HTMLParser):
    """Every retrieval-example item of a page: (row label, split, index, caption, image URI)."""

    def __init__(self):
        super().__init__()
        self.items, self.row, self.tables, self.figures = [], None, 0, 0
        self._in_who, self._in_item, self._pending = False, 0, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables += 1
        if tag == "img" and "figure" in (a.get("class") or ""):
            self.figures += 1
        if tag == "div" and a.get("class") == "who":
            self._in_who, self.row = True, ""
        if tag == "div" and (a.get("class") or "").startswith("item"):
            self._in_item, self._pending = 1, [self.row, None, None, "", None, a["class"]]
        elif tag == "div" and self._in_item:
            self._in_item += 1
        if tag == "img" and (a.get("class") or "").split()[:1] == ["thumb"]:
            self._pending[1:3] = [a["data-split"], int(a["data-index"])]
            self._pending[4] = a["src"]

    def handle_endtag(self, tag):
        if tag == "div" and self._in_who:
            self._in_who = False
        elif tag == "div" and self._in_item:
            self._in_item -= 1
            if not self._in_item:
                self.items.append(tuple(self._pending))

    def handle_data(self, data):
        if self._in_who:
            self.row += data
        elif self._in_item:
            self._pending[3] += data


def _parse(path: Path) -> Items:
    p = Items()
    p.feed(path.read_text())
    return p


def _pixels(uri: str) -> np.ndarray:
    head, data = uri.split(",", 1)
    assert head == "data:image/png;base64"  # 32-pixel canvases: lossless
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")).transpose(2, 0, 1)


def test_examples_are_the_brute_force_top_k_of_the_saved_codes_with_the_datasets_images(sweep, tmp_path, capsys):
    to = tmp_path / "r.html"
    assert main(["report", f"out={sweep}", f"to={to}", "queries=3,17,29", "topk=5", "example_bits=16"]) == 0
    assert f"wrote {to}" in capsys.readouterr().out
    page = _parse(to)
    ds = MultiDigits(**DATA)
    query, database = ds.get("query"), ds.get("database")
    store = ResultStore(sweep)
    runs = {r["method"]: r for r in latest(read_records(sweep / "results.jsonl")) if r["bits"] == 16 and r["seed"] == 0}
    queries = [it for it in page.items if it[1] == "query"]
    assert [it[2] for it in queries] == [3, 17, 29]
    for it in queries:
        assert np.array_equal(_pixels(it[4]), query[it[2]][0].numpy())
    for method in ("lsh", "random"):
        codes = store.load_codes(runs[method]["config_hash"], 16, 0)
        shown = [it for it in page.items if it[0] == method]
        assert len(shown) == 3 * 5
        for qi, got in zip((3, 17, 29), (shown[i:i + 5] for i in range(0, 15, 5))):
            dist = [int(np.sum(codes["query"][qi] != codes["database"][j])) for j in range(len(database))]
            want = sorted(range(len(database)), key=lambda j: (dist[j], j))[:5]
            assert [it[2] for it in got] == want
            for it in got:
                j = it[2]
                shared = int(np.sum(np.minimum(query.labels[qi], database.labels[j])))
                assert f"d={dist[j]} · {shared} shared" in it[3]
                assert it[5].endswith(f"rel{min(shared, 3)}")
                assert np.array_equal(_pixels(it[4]), database[j][0].numpy())
    assert page.tables >= 4 and page.figures > 0  # matplotlib is a test extra


def test_default_queries_are_a_seeded_choice_and_intervals_are_shown(sweep, tmp_path):
    pages = []
    for name, extra in (("a", []), ("b", []), ("c", ["query_seed=5"])):
        to = tmp_path / f"{name}.html"
        assert main(["report", f"out={sweep}", f"to={to}", "n_queries=4", *extra]) == 0
        pages.append([it[2] for it in _parse(to).items if it[1] == "query"])
    assert len(pages[0]) == 4 and pages[0] == pages[1] != pages[2]
    text = (tmp_path / "a.html").read_text()
    assert re.search(r"0\.\d{4} \[0\.\d{4}, 0\.\d{4}\]", text)  # mean [lo, hi]
    assert "At 16 bits" in text  # the longest code length by default


def test_without_matplotlib_the_page_says_so_and_keeps_the_rest(sweep, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    to = tmp_path / "r.html"
    assert main(["report", f"out={sweep}", f"to={to}", "topk=3", "n_queries=2"]) == 0
    page = _parse(to)
    assert page.figures == 0 and "pip install" in to.read_text() and page.tables >= 4
    assert len([it for it in page.items if it[4]]) == 2 * (1 + 2 * 3)


def test_changed_data_shows_label_sets_not_other_images(sweep, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(sweep, out)
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    for r in lines:
        r["config"]["dataset"]["seed"] = 7  # the dataset rebuilt from the record is other data now
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    to = tmp_path / "r.html"
    assert main(["report", f"out={out}", f"to={to}", "topk=3", "n_queries=2"]) == 0
    page = _parse(to)
    assert not any(it[4] for it in page.items) and len(page.items) == 2 * (1 + 2 * 3)
    assert "fingerprint differs" in to.read_text()
    assert all(re.search(r"d=\d+ · \d+ shared", it[3]) for it in page.items if not it[0].startswith("query"))


@pytest.mark.parametrize("words, says", [
    (["queries=3,30"], "indices 0..29"),
    (["example_bits=12"], "example_bits=12"),
    (["queries=1", "n_queries=2"], "not both"),
    (["metrics=nope"], "no stored result has metric"),
    (["topk=0"], "topk"),
])
def test_bad_words_are_refused_in_one_line_before_anything_is_written(sweep, tmp_path, capsys, words, says):
    to = tmp_path / "r.html"
    assert main(["report", f"out={sweep}", f"to={to}", *words]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err
    assert not to.exists()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_the_page_renders_in_headless_chromium(sweep, tmp_path):
    to = tmp_path / "r.html"
    assert main(["report", f"out={sweep}", f"to={to}", "topk=4", "n_queries=3"]) == 0
    flags = [*CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", to.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert len(re.findall(r'<img class="thumb[ "]', dom)) == 3 * (1 + 2 * 4)
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1200,3000", f"--screenshot={shot}", to.as_uri()],
                   capture_output=True, timeout=120)
    im = np.asarray(Image.open(shot).convert("RGB"))
    assert im.shape[:2] == (3000, 1200)
    dark = (im.sum(axis=2) < 200).mean()  # text, black canvases of the thumbnails
    assert dark > 0.005 and len(np.unique(im.reshape(-1, 3), axis=0)) > 200
