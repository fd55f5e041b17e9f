"""A model load people can see: weights loaded of total, in the cache, the page and the CLI.

The tiny model loads from a local folder through a stub that holds the load half-way
through its weights until the test has seen the progress, so nothing depends on speed.
"""

import json
import re
import shutil
import threading
from pathlib import Path

import huggingface_hub
import pytest
import transformers.core_model_loading as core_model_loading
from playwright.sync_api import expect, sync_playwright

from app_helpers import wait_until
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, open_tab, serve, upload
from gemma_demo.cli.main import main
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.progress import DOWNLOADING, LOADING_WEIGHTS
from gemma_demo.tiny.model import ensure_tiny_model
from test_api import INPUT

HOLD_S = 60.0


class HeldLoad:
    """Pauses transformers' weight loading half-way until `resume` is set."""

    def __init__(self):
        self.halfway, self.resume = threading.Event(), threading.Event()

    def wrap(self, original):
        def bar(*args, **kwargs):
            weights = original(*args, **kwargs)
            if kwargs.get("desc") != LOADING_WEIGHTS:
                return weights
            total = len(args[0])

            def held():
                for done, item in enumerate(weights):
                    if done == total // 2:
                        self.halfway.set()
                        self.resume.wait(HOLD_S)
                    yield item
            return held()
        return bar


@pytest.fixture()
def held(monkeypatch):
    hold = HeldLoad()
    monkeypatch.setattr(core_model_loading, "tqdm", hold.wrap(core_model_loading.tqdm))
    yield hold
    hold.resume.set()


@pytest.fixture()
def folder(tmp_path, tiny_options):
    target = tmp_path / "my-gemma"
    shutil.copytree(ensure_tiny_model("e2b", tiny_options.tiny_root), target)
    return str(target)


def test_every_request_waiting_for_a_load_reads_how_far_it_has_got(held, folder, tiny_options):
    cache = ModelCache()
    got = []
    loaders = [threading.Thread(target=lambda: got.append(cache.get(folder, tiny_options))) for _ in range(2)]
    for thread in loaders:
        thread.start()
    assert held.halfway.wait(HOLD_S)
    state = cache.loading
    assert state.stage == LOADING_WEIGHTS and 0.4 < state.fraction < 0.6
    assert re.fullmatch(rf"Loading weights {re.escape(folder)}: \d+ of \d+", state.describe())
    assert wait_until(lambda: cache.waiting == 1)  # the second request waits on the same load
    held.resume.set()
    for thread in loaders:
        thread.join(HOLD_S)
    assert cache.loading is None and cache.loads == 1 and len(got) == 2


def test_the_page_shows_the_load_while_it_runs(held, folder, tiny_options):
    demo = serve(folder, tiny_options, ModelCache())
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(HOLD_S * 1000)
            page.goto(demo.local_url)
            panel = open_tab(page, "Captioning")
            upload(panel, INPUT / "scene.jpg")
            expect(panel.get_by_role("button", name="Remove Image")).to_be_visible()
            panel.get_by_role("button", name="Caption", exact=True).click()
            assert held.halfway.wait(HOLD_S)
            expect(panel.get_by_text(re.compile(r"Loading weights .*my-gemma: \d+ of \d+")).first).to_be_visible()
            held.resume.set()
            caption = panel.get_by_label("Caption", exact=True)
            page.wait_for_function("area => area.value.length > 0", arg=caption.element_handle())
            browser.close()
    finally:
        demo.close()


class HeldDownload:
    """Stands in for `snapshot_download`: "downloads" the tiny model file by file into a
    folder, counting bytes on the bar class the loader passes as huggingface_hub does
    (one bar named after the snapshot, its total grown per file), pausing half-way."""

    def __init__(self, source: Path, target: Path):
        self.source, self.target = source, target
        self.halfway, self.resume = threading.Event(), threading.Event()
        self.sizes = {f.name: f.stat().st_size for f in sorted(source.iterdir())}

    def __call__(self, repo_id, *, tqdm_class, **kwargs):
        bar = tqdm_class(name="huggingface_hub.snapshot_download", desc="Reconstructing", total=0, unit="B")
        bar.total = sum(self.sizes.values())
        self.target.mkdir()
        for done, (name, size) in enumerate(self.sizes.items()):
            if done == len(self.sizes) // 2:
                self.halfway.set()
                self.resume.wait(HOLD_S)
            shutil.copy(self.source / name, self.target / name)
            bar.update(size)
        bar.close()
        return str(self.target)


def test_a_download_reports_its_bytes_before_the_weights_load(monkeypatch, tmp_path, tiny_options):
    download = HeldDownload(ensure_tiny_model("e2b", tiny_options.tiny_root), tmp_path / "snapshot")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    cache, got = ModelCache(), []
    loader = threading.Thread(target=lambda: got.append(cache.get("google/gemma-4-E2B-it", tiny_options)))
    loader.start()
    try:
        assert download.halfway.wait(HOLD_S)
        state = cache.loading
        first_half = sum(list(download.sizes.values())[: len(download.sizes) // 2])
        assert (state.stage, state.done, state.total) == (DOWNLOADING, first_half, sum(download.sizes.values()))
        assert re.fullmatch(r"Downloading google/gemma-4-E2B-it: [\d.]+[kM]?B of [\d.]+[kM]?B", state.describe())
    finally:
        download.resume.set()
        loader.join(HOLD_S)
    assert len(got) == 1 and cache.loaded_name == "google/gemma-4-E2B-it"


def test_the_cli_draws_the_weights_bar_to_the_end_on_stderr_only(capsys, folder):
    """The page's hook wraps transformers' bar; the CLI still gets that bar, counted to the last weight."""
    code = main(["caption", str(INPUT / "scene.jpg"), "--model", folder, "--max-new-tokens", "2"])
    out, err = capsys.readouterr()
    assert code == 0 and [json.loads(line)["file"] for line in out.splitlines()] == [str(INPUT / "scene.jpg")]
    counts = re.findall(r"Loading weights: +\d+%\|[^|]*\| (\d+)/(\d+)", err)
    assert counts and counts[-1][0] == counts[-1][1] != "0"
