"""The MLflow dashboard as a reviewer meets it, in a real browser.

A small sweep and a failing run go through the real CLI into a temporary sqlite store; a real
``mlflow ui`` serves it on 127.0.0.1; Debian's chromium, driven by Playwright (the system
executable, never a downloaded browser), opens the README's direct "Model training" link and
walks to what the README's "Dashboard" section promises. Every test opens a fresh browser
context: MLflow keeps the GenAI / Model training switch and the chart layout in the browser's
local storage, and a reviewer's first visit has none. Screenshots land in each test's tmp_path.

Selectors are the page's text, roles, links by run id, and MLflow's own ``data-testid``s; run
names are read from the store, so renaming runs does not break the test.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from playwright.sync_api import Browser, Page, TimeoutError as PlaywrightTimeout, expect, sync_playwright

from conftest import cli_env
from servers import free_port, stop_group, wait_for_health

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
README_BASE = "http://127.0.0.1:5000"
# Generous: on a loaded 2-core machine one page of the UI can take 20-30 s to settle. A hang
# guard, not a speed test.
PAGE_TIMEOUT_MS = 120_000
SWEEP = ["-m", "data=moons", "trainer.epochs=3", "optimizer.lr=0.1,0.5"]
# Identity activations with lr=10 on xor: the loss overflows to inf within a few iterations
# (README "Progress and errors"), so the run ends FAILED with a reason.
FAILING = [
    "data=xor", "model.activation=identity", "model.output_activation=identity", "loss=mse",
    "optimizer.lr=10", "trainer.epochs=100",
]


def readme_runs_link() -> str:
    """The one direct link of the README's "Dashboard" section, as a user copies it."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "\n### Dashboard\n" in readme, "README has no 'Dashboard' section"
    section = readme.split("\n### Dashboard\n", 1)[1].split("\n### ", 1)[0]
    links = set(re.findall(r"http://127\.0\.0\.1:5000/#/experiments/1/runs\?\S*workflowType=[a-z_]+", section))
    assert len(links) == 1, links
    return links.pop()


@dataclass
class Dashboard:
    base: str
    experiment_id: str
    parent: object
    children: list
    failed: object
    client: MlflowClient
    sweep_link: str  # the address the sweep's last console line tells the user to open

    def runs_link(self) -> str:
        """The README's link, pointed at this server and this store's experiment."""
        link = readme_runs_link().replace(README_BASE, self.base, 1)
        return link.replace("/experiments/1/", f"/experiments/{self.experiment_id}/", 1)

    def run_link(self, run, tab: str = "") -> str:
        """A run's page (``tab``: model-metrics, artifacts) in the README link's mode."""
        path, query = self.runs_link().split("?", 1)
        return f"{path}/{run.info.run_id}{'/' + tab if tab else ''}?{query}"


def start_ui(store: str, root: Path):
    port = free_port()
    log = open(root / "ui.log", "w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", store,
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    return proc, log, f"http://127.0.0.1:{port}"


def wait_for_experiment(db: Path, procs) -> None:
    deadline = time.monotonic() + 240
    while True:
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
                    if con.execute("SELECT 1 FROM experiments WHERE name = 'backproplab'").fetchone():
                        return
            except sqlite3.Error:
                pass  # not an MLflow store yet
        if all(p.poll() is not None for p in procs):
            return  # whatever they left, the assertions on their exit codes say
        if time.monotonic() > deadline:
            pytest.fail("the CLI made no experiment 'backproplab' within 240 s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard")
    store = f"sqlite:///{root}/mlflow.db"
    # Both commands at once: the store is created once under its lock file (README "Several
    # processes, one store"), and the two imports of MLflow overlap.
    env = cli_env()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "backproplab", *args, f"logger.tracking_uri={store}"],
            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for args in (SWEEP, FAILING)
    ]
    # The UI starts while they train, once they have made the store (its experiment exists):
    # it must not race their creation of MLflow's tables.
    wait_for_experiment(root / "mlflow.db", procs)
    proc, log, base = start_ui(store, root)
    try:
        (sweep_out, sweep_err), (_, fail_err) = (p.communicate(timeout=300) for p in procs)
        assert procs[0].returncode == 0, sweep_err
        assert procs[1].returncode == 1, fail_err
        assert fail_err.strip().splitlines()[-1].startswith("error: non-finite loss"), fail_err
        client = MlflowClient(store)
        experiment = client.get_experiment_by_name("backproplab")
        runs = client.search_runs([experiment.experiment_id])
        (parent,) = [r for r in runs if r.data.tags.get("backproplab.sweep") == "true"]
        children = sorted(
            (r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
            key=lambda r: int(r.data.tags["hydra.job.num"]),
        )
        (failed,) = [r for r in runs if r.info.status == "FAILED"]
        assert len(children) == 2 and len(runs) == 4, [r.info.run_name for r in runs]

        last = sweep_out.strip().splitlines()[-1]
        assert last.startswith(f"mlflow: mlflow ui --backend-store-uri {store}   then open {README_BASE}/"), last
        sweep_link = last.rsplit(" ", 1)[-1].replace(README_BASE, base, 1)

        wait_for_health(proc, base, root / "ui.log", "mlflow ui", timeout=240)
        yield Dashboard(base, experiment.experiment_id, parent, children, failed, client, sweep_link)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        stop_group(proc, signal.SIGTERM)
        log.close()


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def click_model_training(page: Page, switch) -> None:
    """One click on the "Model training" switch, as a user makes it. A first visit may open a
    GenAI tip ("Detect Issues in Your Traces") over the page a moment later; while it is open
    the rest of the page is hidden from the accessibility tree, so the switch cannot be found
    by its role. The user closes the tip ("Got it") and clicks again: so does this, a bounded
    number of times."""
    runs_page = re.compile(r"/runs\?.*workflowType=machine_learning")
    for _ in range(6):
        tip = page.get_by_role("button", name="Got it", exact=True)
        if tip.count() and tip.first.is_visible():
            tip.first.click()
        try:
            switch.click(timeout=15_000)
            page.wait_for_url(runs_page, timeout=15_000)
            return
        except PlaywrightTimeout:
            continue  # the tip opened in between: close it and click again
    page.wait_for_url(runs_page)  # the last chance, with the page's full timeout; fails with its URL


def run_anchor(page: Page, run):
    """The link to ``run`` (by id, whatever its name) in the runs table."""
    return page.locator(f'a[href$="/runs/{run.info.run_id}"]')


# -- checks that hold on this branch ----------------------------------------------------------
def test_readme_link_shows_the_runs_in_model_training_mode_with_nested_children(dashboard, page, tmp_path):
    page.goto(dashboard.runs_link())
    parent = run_anchor(page, dashboard.parent)
    expect(parent).to_be_visible()
    page.screenshot(path=tmp_path / "runs_table.png")
    # The runs page of the experiment, in "Model training" mode: its sidebar offers the Model
    # registry and none of the GenAI pages (traces overview, sessions, judges).
    assert f"/experiments/{dashboard.experiment_id}/runs?" in page.url, page.url
    assert "workflowType=machine_learning" in page.url, page.url
    expect(page.get_by_role("link", name="Model registry")).to_be_visible()
    expect(page.get_by_role("link", name="Sessions", exact=True)).to_have_count(0)
    expect(run_anchor(page, dashboard.failed)).to_be_visible()
    expect(parent).to_have_text(dashboard.parent.info.run_name)
    # The children are nested: hidden until their parent's row is expanded.
    for child in dashboard.children:
        expect(run_anchor(page, child)).to_have_count(0)
    page.get_by_role("gridcell").filter(has=parent).get_by_role("button").click()
    for child in dashboard.children:
        expect(run_anchor(page, child)).to_be_visible()
        expect(run_anchor(page, child)).to_have_text(child.info.run_name)
    page.screenshot(path=tmp_path / "runs_table_expanded.png")


def test_a_childs_artifacts_and_the_failed_runs_status(dashboard, page, tmp_path):
    child = dashboard.children[0]
    page.goto(dashboard.run_link(child, "artifacts"))
    expect(page.get_by_role("heading", name=child.info.run_name)).to_be_visible()
    for name in ("config.yaml", "params.npz", "plots"):
        expect(page.get_by_text(name, exact=True)).to_be_visible()
    page.screenshot(path=tmp_path / "child_artifacts.png")

    page.goto(dashboard.run_link(dashboard.failed))
    expect(page.get_by_role("heading", name=dashboard.failed.info.run_name)).to_be_visible()
    expect(page.get_by_text("Failed", exact=True)).to_be_visible()
    page.screenshot(path=tmp_path / "failed_run.png")


def test_one_click_on_model_training_is_remembered_as_the_readme_says(dashboard, page, tmp_path):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Dashboard\n", 1)[1].split("\n### ", 1)[0]
    assert f"`{README_BASE}/#/experiments/1` and click **Model training** once" in section
    page.goto(f"{dashboard.base}/#/experiments/{dashboard.experiment_id}")
    switch = page.get_by_role("button", name="Model training", exact=True)
    expect(switch).to_be_visible()
    page.screenshot(path=tmp_path / "experiment_first_visit.png")
    click_model_training(page, switch)
    # A run's plain link, as the runs table gives it, now opens in "Model training" mode too.
    page.goto(f"{dashboard.base}/#/experiments/{dashboard.experiment_id}/runs/{dashboard.children[0].info.run_id}")
    expect(page.get_by_role("heading", name=dashboard.children[0].info.run_name)).to_be_visible()
    expect(page.get_by_role("link", name="Model registry")).to_be_visible()
    expect(page.get_by_role("link", name="Runs", exact=True).first).to_be_visible()
    page.screenshot(path=tmp_path / "run_page_remembered_mode.png")


# -- the dashboard's other pages -------------------------------------------------------------
# Each opens its page the way the tests above do; rename check_* to test_* to collect it.
def test_the_sweeps_last_line_opens_the_parent_in_model_training_mode(dashboard, page, tmp_path):
    """The address the sweep prints last opens the parent run, with its description, in Model
    training mode even in a browser that has never picked it (a fresh context: GenAI)."""
    assert dashboard.sweep_link.endswith(f"/runs/{dashboard.parent.info.run_id}?workflowType=machine_learning"), dashboard.sweep_link
    page.goto(dashboard.sweep_link)
    expect(page.get_by_role("heading", name=dashboard.parent.info.run_name)).to_be_visible()
    expect(page.get_by_test_id("note-editor-preview-content")).to_contain_text("Best run")
    # Model training mode: its sidebar offers the Model registry and none of the GenAI pages.
    expect(page.get_by_role("link", name="Model registry")).to_be_visible()
    expect(page.get_by_role("link", name="Sessions", exact=True)).to_have_count(0)
    assert "workflowType=machine_learning" in page.url, page.url
    page.screenshot(path=tmp_path / "sweep_link.png")


def test_first_chart_is_the_loss(dashboard, page, tmp_path):
    """The first chart of a child's Model metrics tab is the per-iteration loss."""
    from backproplab.tracking.records.metric_names import LOSS

    child = dashboard.children[0]
    page.goto(dashboard.run_link(child, "model-metrics"))
    first = page.get_by_test_id("experiment-view-compare-runs-card").first
    expect(first).to_be_visible()
    page.screenshot(path=tmp_path / "model_metrics.png")
    # A card's heading carries the full metric key as its title; its text drops the section.
    title = first.get_by_role("heading")
    expect(title).to_have_attribute("title", LOSS)
    expect(title).to_have_text(LOSS.rsplit("/", 1)[-1])


def test_parent_description_names_the_best_child(dashboard, page, tmp_path):
    """The parent's description names and links the best child."""
    tags = dashboard.client.get_run(dashboard.parent.info.run_id).data.tags
    best_id, best_name = tags["backproplab.best_run_id"], tags["backproplab.best_run_name"]
    assert best_id in {c.info.run_id for c in dashboard.children}
    page.goto(dashboard.run_link(dashboard.parent))
    note = page.get_by_test_id("note-editor-preview-content")
    expect(note).to_be_visible()
    note.scroll_into_view_if_needed()
    page.screenshot(path=tmp_path / "parent_description.png")
    link = note.locator(f'a[href*="{best_id}"]').first  # the answer's link; the ranking links it again
    expect(link).to_be_visible()
    expect(note).to_contain_text(best_name)
    # Followed, the link opens the best child in Model training mode (not the GenAI pages).
    assert link.get_attribute("href").endswith("?workflowType=machine_learning")
    # MLflow's description preview opens links in a new tab.
    assert link.get_attribute("target") == "_blank"
    with page.expect_popup() as opened:
        link.click()
    expect(opened.value).to_have_url(re.compile(rf"/runs/{best_id}\?workflowType=machine_learning"))
    expect(opened.value.get_by_role("heading", name=best_name)).to_be_visible()


def test_parent_description_ranks_its_children(dashboard, page, tmp_path):
    """The parent's description holds the ranked table of its children, rendered as a table:
    best first, one row per child with its swept value, final loss, epochs and a link to it."""
    parent = dashboard.client.get_run(dashboard.parent.info.run_id)
    page.goto(dashboard.run_link(dashboard.parent))
    table = page.get_by_test_id("note-editor-preview-content").locator("table")
    expect(table).to_be_visible()
    table.scroll_into_view_if_needed()
    page.screenshot(path=tmp_path / "parent_ranking.png")
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(len(dashboard.children))
    expect(table.locator("thead")).to_contain_text("epochs")
    best = dashboard.client.get_run(parent.data.tags["backproplab.best_run_id"])
    expect(rows.first.locator("td").first).to_have_text("1")
    expect(rows.first).to_contain_text(best.info.run_name)
    for child in dashboard.children:
        expect(table.locator(f'a[href*="/runs/{child.info.run_id}?workflowType=machine_learning"]')).to_have_count(1)
    # The parent carries its best child's final numbers, so parents sort with runs.
    assert parent.data.metrics["final/train_loss"] == best.data.metrics["final/train_loss"]


def test_model_is_logged(dashboard, page, tmp_path):
    """A child's Overview lists its logged model ``model`` (MLflow 3 keeps a logged model
    beside the run's artifacts, under the experiment's Models)."""
    child = dashboard.children[0]
    page.goto(dashboard.run_link(child))
    heading = page.get_by_role("heading", name=re.compile(r"^Logged models \(1\)$"))
    expect(heading).to_be_visible()
    # The list under that heading (the model's link also repeats in the metrics table, where
    # each metric names its model): the nearest enclosing block that holds a model link.
    listing = heading.locator("xpath=ancestor::div[.//a[contains(@href, '/models/')]][1]")
    name = logged_model(dashboard, child).name  # what the model is (data, widths, activation, swept value)
    model = listing.get_by_role("link", name=name, exact=True)
    model.scroll_into_view_if_needed()
    expect(model).to_be_visible()
    expect(model).to_have_attribute("href", re.compile(r"/models/m-"))
    page.screenshot(path=tmp_path / "logged_model.png")


def logged_model(dashboard: Dashboard, run):
    """The model ``run`` logged as its output (MLflow 3's logged model)."""
    (output,) = dashboard.client.get_run(run.info.run_id).outputs.model_outputs
    return dashboard.client.get_logged_model(output.model_id)


def test_the_logged_models_page_shows_its_metrics_params_and_datasets(dashboard, page, tmp_path):
    """A child's logged model, opened on its own page (the experiment's Models tab links it),
    lists the run's final metrics, its parameters and the datasets it was trained and validated
    on, under a name that says what it is."""
    child = dashboard.children[0]
    model = logged_model(dashboard, child)
    assert model.name.startswith("moons-mlp-2-4-1-sigmoid lr="), model.name
    path, query = dashboard.runs_link().split("?", 1)
    page.goto(f"{path.rsplit('/runs', 1)[0]}/models/{model.model_id}?{query}")
    expect(page.get_by_role("heading", name=model.name)).to_be_visible()
    metrics = page.get_by_role("heading", name=f"Metrics ({len(model.metrics)})")
    expect(metrics).to_be_visible()
    metrics.scroll_into_view_if_needed()
    assert {m.key for m in model.metrics} >= {"final/train_loss", "final/val_loss", "final/train_accuracy", "final/val_accuracy"}
    for key in ("final/train_loss", "final/val_loss", "final/train_accuracy", "final/val_accuracy"):
        expect(page.get_by_text(key, exact=True).first).to_be_visible()
    expect(page.get_by_role("heading", name=f"Parameters ({len(model.params)})")).to_be_visible()
    expect(page.get_by_text("optimizer.lr", exact=True).first).to_be_visible()
    # "Datasets used" names the training and the validation split (both "moons", by digest).
    expect(page.get_by_text("Datasets used", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name=re.compile(r"^moons")).first).to_be_visible()
    page.screenshot(path=tmp_path / "logged_model_page.png", full_page=True)


def test_decision_boundary_images(dashboard, page, tmp_path):
    """A moons child's decision-boundary pictures, one per chosen epoch, open in the
    browser from the run's Artifacts tab (``images/``, where ``log_image`` puts them)."""
    child = dashboard.children[0]
    page.goto(dashboard.run_link(child, "artifacts"))
    expect(page.get_by_role("heading", name=child.info.run_name)).to_be_visible()
    page.get_by_text("images", exact=True).click()
    pictures = page.get_by_text(re.compile(r"^decision_boundary\+step\+\d+\+timestamp\+\d+\+[0-9a-f-]+\.png$"))
    expect(pictures.first).to_be_visible()
    assert pictures.count() >= 2  # several epochs, for the step-by-step replay
    pictures.last.click()
    # The preview's alt text is the file's path (a regex with "/" would not survive Playwright's
    # selector syntax, so an attribute prefix instead).
    image = page.locator('img[alt^="images/decision_boundary+step+"]')
    expect(image).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    page.screenshot(path=tmp_path / "decision_boundary.png")


def logged_steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    """The steps of ``key``'s pictures, from the run's artifact listing (MLflow's file names)."""
    pattern = re.compile(rf"^images/{re.escape(key.replace('/', '~'))}\+step\+(\d+)\+timestamp\+.*(?<!compressed)\.png$")
    return sorted(int(m[1]) for a in client.list_artifacts(run_id, "images") if (m := pattern.match(a.path)))


def card_picture_step(page: Page, card) -> int:
    """The step of the picture the card draws, once it has loaded and a reviewer sees it as the
    card opens: the whole picture lies inside the card (whose body scrolls: a picture below the
    card's fold would need scrolling inside it), and the browser's topmost element at its centre
    is the picture. The card's <img> is MLflow's compressed copy, fetched from get-artifact; its
    file name carries the step."""
    image = card.locator('img[src*="get-artifact"]')
    expect(image).to_have_count(1)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    card.scroll_into_view_if_needed()
    box, frame = image.bounding_box(), card.bounding_box()
    assert box["height"] > 100 and frame["y"] <= box["y"] and box["y"] + box["height"] <= frame["y"] + frame["height"], (box, frame)
    on_top = image.evaluate(
        "img => { const r = img.getBoundingClientRect(); return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === img; }"
    )
    assert on_top, box
    src = image.get_attribute("src")
    match = re.search(r"decision_boundary(?:\+|%2B)step(?:\+|%2B)(\d+)(?:\+|%2B)", src)
    assert match, src
    return int(match[1])


def test_the_image_card_draws_the_boundary_and_its_slider_replays_it(dashboard, page, tmp_path):
    """The pictures on the Model metrics tab, as README "Dashboard" walks it: MLflow 3.17's image card
    opens at step 0 and draws only a picture logged at that exact step, so the untrained
    network's boundary (step 0) is the first picture; with the run's parameters hidden (the
    card's Configure, "Show run parameters"), it fits in the card; the card's slider (keyboard,
    as a user can) then steps through the epochs."""
    child = dashboard.children[0]
    steps = logged_steps(dashboard.client, child.info.run_id, "decision_boundary")
    assert steps[0] == 0 and len(steps) >= 3, steps
    page.goto(dashboard.run_link(child, "model-metrics"))
    expect(page.get_by_test_id("experiment-view-compare-runs-card").first).to_be_visible()
    page.get_by_placeholder(re.compile("Search metric charts")).fill("decision_boundary")
    card = page.get_by_test_id("experiment-view-compare-runs-card").filter(
        has=page.locator('h4[title="decision_boundary"]')
    )
    expect(card).to_have_count(1)
    card.scroll_into_view_if_needed()
    expect(card.get_by_text("No image logged at this step")).to_have_count(0)
    expect(card.locator('img[src*="get-artifact"][src*="step%2B0%2B"]')).to_have_count(1)
    page.screenshot(path=tmp_path / "image_card_with_params.png")
    card.get_by_test_id("experiment-view-compare-runs-card-menu").click()
    page.get_by_role("menuitem", name="Configure").click()
    dialog = page.get_by_role("dialog")
    show_params = dialog.get_by_role("switch")
    expect(dialog.get_by_text("Show run parameters")).to_be_visible()
    expect(show_params).to_have_count(1)
    expect(show_params).to_be_checked()
    show_params.click()
    expect(show_params).not_to_be_checked()
    dialog.get_by_role("button", name=re.compile("^Save")).click()
    expect(dialog).to_have_count(0)
    assert card_picture_step(page, card) == 0
    slider = card.get_by_role("slider")
    expect(slider).to_have_attribute("aria-valuemax", str(steps[-1]))
    page.screenshot(path=tmp_path / "image_card_step0.png")
    # The slider moves from logged step to logged step, each drawn in the card.
    slider.focus()
    for expected in steps[1:]:
        slider.press("ArrowRight")
        expect(slider).to_have_attribute("aria-valuenow", str(expected))
        expect(card.locator(f'img[src*="step%2B{expected}%2B"]')).to_have_count(1)
        assert card_picture_step(page, card) == expected
    page.screenshot(path=tmp_path / "image_card_last_step.png")
