"""``backproplab plugins``: installed plugin distributions, their components by kind, and the
plugins that failed to load, in text and JSON, in-process and through the real CLI.

Third-party plugins here are real distributions: a ``*.dist-info`` folder with an
``entry_points.txt`` next to an importable module on sys.path, which is exactly what pip leaves
behind, so discovery goes through ``importlib.metadata`` as it does for an installed package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import backproplab
from backproplab.components import report as plugin_report
from backproplab.components.registry import Source

GOOD_SOURCE = """
import numpy as np
import backproplab


class Cube:
    def forward(self, z):
        return z ** 3

    def backward(self, z, a, grad_a):
        return grad_a * 3 * z * z


@backproplab.hookimpl
def register_activations(register):
    register("cube", Cube)
"""

BROKEN_SOURCE = 'raise ImportError("boom: this plugin needs the frobnicate package")\n'


def install_distribution(site: Path, dist: str, version: str, entry_point: str, module: str, source: str) -> None:
    """Lay out what ``pip install`` leaves in site-packages: the module and its dist-info."""
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[backproplab]\n{entry_point} = {module}\n")


@pytest.fixture
def site(tmp_path):
    site = tmp_path / "site"
    install_distribution(site, "backproplab-goodplug", "1.2.0", "goodplug", "bpl_goodplug", GOOD_SOURCE)
    install_distribution(site, "backproplab-broken", "0.3", "broken", "bpl_brokenplug", BROKEN_SOURCE)
    return site


@pytest.fixture
def on_path(site, monkeypatch):
    """The two distributions installed for this process, with a clean plugin environment."""
    monkeypatch.delenv("BACKPROPLAB_PLUGINS", raising=False)
    monkeypatch.delenv("BACKPROPLAB_STRICT_PLUGINS", raising=False)
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("bpl_goodplug", None)


def run_report(capsys, *argv, extra=()):
    code = plugin_report.main(list(argv), extra=extra)
    out, err = capsys.readouterr()
    return code, out, err


def by_distribution(report):
    return {d["distribution"]: d for d in report["plugins"]}


# --- in-process --------------------------------------------------------------------------


def _module(name, **hooks):
    mod = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(mod, hook, backproplab.hookimpl(fn))
    return mod


def test_json_lists_builtins_and_in_process_plugins_grouped_by_kind(capsys, monkeypatch):
    monkeypatch.delenv("BACKPROPLAB_STRICT_PLUGINS", raising=False)

    def register_losses(register):
        register("squared_hinge", object)
        register("log_cosh", object)

    def register_optimizers(register):
        register("signsgd", object)

    plug = _module("inproc", register_losses=register_losses, register_optimizers=register_optimizers)
    code, out, err = run_report(capsys, "--json", extra=[(plug, Source("inproc", "backproplab-inproc", "2.0.1"))])
    assert code == 0 and err == ""
    report = json.loads(out)
    dists = by_distribution(report)
    builtin = dists["backproplab"]
    assert builtin["builtin"] is True and builtin["version"] == backproplab.__version__
    assert {ep["name"] for ep in builtin["entry_points"]} == {
        "activations", "losses", "initializers", "optimizers", "schedules", "callbacks", "datasets"}
    assert "softmax" in builtin["components"]["activation"] and "adamw" in builtin["components"]["optimizer"]
    mine = dists["backproplab-inproc"]
    assert mine["version"] == "2.0.1" and mine["builtin"] is False
    assert mine["components"] == {"activation": [], "loss": ["log_cosh", "squared_hinge"],
                                  "initializer": [], "optimizer": ["signsgd"], "schedule": [], "callback": [], "dataset": []}
    assert mine["entry_points"] == [{"name": "inproc", "value": "inproc",
                                     "hooks": ["register_losses", "register_optimizers"]}]


def test_failures_in_process_are_listed_with_their_reason(capsys, monkeypatch):
    monkeypatch.delenv("BACKPROPLAB_STRICT_PLUGINS", raising=False)

    def register_activations(register):
        raise RuntimeError("cannot find my lookup table")

    raising = _module("raising", register_activations=register_activations)
    misspelt = types.ModuleType("misspelt")
    misspelt.register_activation = backproplab.hookimpl(lambda register: None)  # no such hook
    code, out, _ = run_report(capsys, "--json", extra=[
        (raising, Source("raising", "backproplab-raising", "1.0")),
        (misspelt, Source("misspelt", "backproplab-misspelt", "0.1")),
    ])
    assert code == 0
    failed = {f["distribution"]: f for f in json.loads(out)["failed"]}
    assert "register_activations raised RuntimeError: cannot find my lookup table" in failed["backproplab-raising"]["error"]
    assert failed["backproplab-misspelt"]["entry_point"] == "misspelt"
    assert "register_activation" in failed["backproplab-misspelt"]["error"]
    assert "known hooks: register_activations" in failed["backproplab-misspelt"]["error"]
    # The built-ins still load and are listed.
    assert "sigmoid" in by_distribution(json.loads(out))["backproplab"]["components"]["activation"]


def test_a_name_conflict_is_listed_marked_and_exits_1(capsys, monkeypatch):
    """The command that shows conflicts must work when there is one: everything is listed, each
    clashing name is marked, each conflict names its claimants, and the exit code is 1."""
    monkeypatch.setenv("BACKPROPLAB_PLUGINS", "")  # no installed third-party plugins: only these two
    monkeypatch.delenv("BACKPROPLAB_STRICT_PLUGINS", raising=False)

    def register_activations(register):
        register("sigmoid", object)  # clashes with the built-in
        register("cube", object)

    def register_other(register):
        register("cube", object)  # clashes with the first plugin

    first = _module("first", register_activations=register_activations)
    second = _module("second", register_activations=register_other)
    extra = [(first, Source("first", "backproplab-first", "1.0")), (second, Source("second", "backproplab-second", "2.5"))]

    code, out, err = run_report(capsys, extra=extra)
    assert code == 1
    lines = out.splitlines()
    builtin_activations = lines[1].split(None, 1)[1]
    assert "sigmoid [conflict] (logistic)," in builtin_activations and builtin_activations.count("[conflict]") == 1
    assert "  activation   cube [conflict], sigmoid [conflict]" in lines
    assert "  activation   cube [conflict]" in lines
    conflicts = lines.index("conflicts [conflict]: names registered by more than one plugin; "
                            "every other command fails until each is settled:")
    assert lines[conflicts + 1:conflicts + 4] == [
        "  activation 'cube': backproplab-first 1.0 (entry point 'first'), backproplab-second 2.5 (entry point 'second')",
        f"  activation 'sigmoid': backproplab {backproplab.__version__} (entry point 'activations'), "
        "backproplab-first 1.0 (entry point 'first')",
        "  settle them: uninstall one plugin of each, or load only some with BACKPROPLAB_PLUGINS "
        "(built-ins always load), e.g. BACKPROPLAB_PLUGINS=backproplab-second",  # first is in both conflicts
    ]
    assert err == (
        "error: activation 'cube' is registered twice: by backproplab-first 1.0 (entry point 'first') and by "
        "backproplab-second 2.5 (entry point 'second'); uninstall one of them or leave one out with "
        "BACKPROPLAB_PLUGINS (built-ins always load), e.g. BACKPROPLAB_PLUGINS=backproplab-second; "
        "1 more name conflict, all listed by 'backproplab plugins'\n"
    )

    code, out, err = run_report(capsys, "--json", extra=extra)
    assert code == 1 and err.startswith("error: activation 'cube' is registered twice")
    report = json.loads(out)
    assert report["conflicts"] == [
        {"kind": "activation", "name": "cube", "claimants": [
            {"distribution": "backproplab-first", "version": "1.0", "entry_point": "first"},
            {"distribution": "backproplab-second", "version": "2.5", "entry_point": "second"}]},
        {"kind": "activation", "name": "sigmoid", "claimants": [
            {"distribution": "backproplab", "version": backproplab.__version__, "entry_point": "activations"},
            {"distribution": "backproplab-first", "version": "1.0", "entry_point": "first"}]},
    ]
    assert report["settle_with"] == "backproplab-second"
    assert by_distribution(report)["backproplab-second"]["components"]["activation"] == ["cube"]


def test_no_conflict_means_no_conflict_section(capsys, monkeypatch):
    monkeypatch.setenv("BACKPROPLAB_PLUGINS", "")
    code, out, _ = run_report(capsys)
    assert code == 0 and "[conflict]" not in out
    code, out, _ = run_report(capsys, "--json")
    assert json.loads(out)["conflicts"] == [] and json.loads(out)["settle_with"] is None


def test_installed_distributions_text_report(on_path, capsys):
    code, out, err = run_report(capsys)
    assert code == 0
    lines = out.splitlines()
    good = lines.index("backproplab-goodplug 1.2.0  entry points: goodplug")
    assert lines[good + 1].split() == ["activation", "cube"]
    assert lines[0].startswith("backproplab ") and "(built-in)" in lines[0]
    failed = lines.index("failed to load:")
    assert lines[failed + 1] == (
        "  backproplab-broken 0.3 (entry point 'broken' = bpl_brokenplug): "
        "ImportError: boom: this plugin needs the frobnicate package"
    )
    assert err == "", "failures belong in the report, not in warnings"


def test_installed_distributions_json_report(on_path, capsys):
    code, out, _ = run_report(capsys, "--json")
    report = json.loads(out)
    assert code == 0
    assert by_distribution(report)["backproplab-goodplug"]["components"]["activation"] == ["cube"]
    assert report["failed"] == [{
        "distribution": "backproplab-broken",
        "version": "0.3",
        "entry_point": "broken",
        "value": "bpl_brokenplug",
        "error": "ImportError: boom: this plugin needs the frobnicate package",
    }]
    assert report["environment"] == {"BACKPROPLAB_PLUGINS": None, "BACKPROPLAB_STRICT_PLUGINS": None}


def test_strict_makes_a_failing_plugin_an_error(on_path, capsys, monkeypatch):
    monkeypatch.setenv("BACKPROPLAB_STRICT_PLUGINS", "1")
    code, out, err = run_report(capsys, "--json")
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert "plugin 'broken' from distribution backproplab-broken 0.3 failed to load" in err
    assert "frobnicate" in err


@pytest.mark.parametrize("wanted, listed", [
    ("", set()),
    ("backproplab-goodplug", {"backproplab-goodplug"}),  # by distribution name
    ("broken", set()),  # by entry-point name: loaded, and it fails
])
def test_plugins_env_limits_third_party_plugins(on_path, capsys, monkeypatch, wanted, listed):
    monkeypatch.setenv("BACKPROPLAB_PLUGINS", wanted)
    code, out, _ = run_report(capsys, "--json")
    report = json.loads(out)
    assert code == 0
    assert set(by_distribution(report)) - {"backproplab"} == listed
    assert "backproplab" in by_distribution(report), "built-ins always load"
    assert [f["entry_point"] for f in report["failed"]] == (["broken"] if wanted == "broken" else [])
    assert report["environment"]["BACKPROPLAB_PLUGINS"] == wanted


def test_bad_option_and_help(capsys):
    assert plugin_report.main(["--jsn"]) == 2
    assert "unrecognized arguments: --jsn" in capsys.readouterr().err
    assert plugin_report.main(["--help"]) == 0
    assert "BACKPROPLAB_STRICT_PLUGINS=1" in capsys.readouterr().out


# --- the real CLI ------------------------------------------------------------------------


def cli(tmp_path, site, *args, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BACKPROPLAB_")}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), environ.get("PYTHONPATH")]))
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "backproplab", *args], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_cli_plugins_json(tmp_path, site):
    proc = cli(tmp_path, site, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert by_distribution(report)["backproplab-goodplug"]["components"]["activation"] == ["cube"]
    assert [f["distribution"] for f in report["failed"]] == ["backproplab-broken"]


@pytest.mark.slow
def test_cli_strict_plugins_is_a_one_line_error(tmp_path, site):
    proc = cli(tmp_path, site, "plugins", BACKPROPLAB_STRICT_PLUGINS="1")
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("error: plugin 'broken' from distribution backproplab-broken 0.3 failed to load")


@pytest.mark.slow
def test_cli_keeps_working_next_to_a_broken_plugin(tmp_path, site):
    """A training run still works (with a component of the good plugin), and warns by name."""
    proc = cli(tmp_path, site, "model.activation=cube", "trainer.epochs=1", "logger=none")
    assert proc.returncode == 0, proc.stderr
    assert "final loss" in proc.stdout
    assert "plugin 'broken' from distribution backproplab-broken 0.3 failed to load" in proc.stderr
    strict = cli(tmp_path, site, "trainer.epochs=1", "logger=none", BACKPROPLAB_STRICT_PLUGINS="1")
    assert strict.returncode != 0 and "final loss" not in strict.stdout
    assert "backproplab-broken" in strict.stderr.strip().splitlines()[-1]


CLASH_SOURCE = """
import backproplab


class Twice:
    def forward(self, z):
        return 2 * z

    def backward(self, z, a, grad_a):
        return 2 * grad_a


@backproplab.hookimpl
def register_activations(register):
    register("sigmoid", Twice)  # the built-in's name
    register("cube", Twice)     # backproplab-goodplug's name
"""


@pytest.mark.slow
def test_cli_name_conflict_end_to_end(tmp_path, site):
    """A second real distribution claiming two taken names: ``plugins`` still lists everything and
    exits 1; a training run fails with one line naming both providers; its advice works."""
    install_distribution(site, "backproplab-clash", "0.5", "clash", "bpl_clash", CLASH_SOURCE)

    listing = cli(tmp_path, site, "plugins")
    assert listing.returncode == 1
    out = listing.stdout
    assert "backproplab-goodplug 1.2.0  entry points: goodplug" in out and "  activation   cube [conflict]" in out
    assert "backproplab-clash 0.5  entry points: clash" in out
    assert "  activation   cube [conflict], sigmoid [conflict]" in out
    assert "  activation 'cube': backproplab-clash 0.5 (entry point 'clash'), backproplab-goodplug 1.2.0 (entry point 'goodplug')" in out
    assert f"  activation 'sigmoid': backproplab {backproplab.__version__} (entry point 'activations'), backproplab-clash 0.5 (entry point 'clash')" in out
    assert "failed to load:" in out and "backproplab-broken 0.3" in out, "failures are still listed"
    (error,) = listing.stderr.splitlines()
    assert error.startswith("error: activation 'cube' is registered twice: by backproplab-clash 0.5 (entry point 'clash') "
                            "and by backproplab-goodplug 1.2.0 (entry point 'goodplug'); uninstall one of them")

    as_json = cli(tmp_path, site, "plugins", "--json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert [(c["name"], [x["distribution"] for x in c["claimants"]]) for c in report["conflicts"]] == [
        ("cube", ["backproplab-clash", "backproplab-goodplug"]),
        ("sigmoid", ["backproplab", "backproplab-clash"]),
    ]

    run = cli(tmp_path, site, "model.activation=cube", "trainer.epochs=1", "logger=none")
    assert run.returncode == 1 and "final loss" not in run.stdout
    last = run.stderr.strip().splitlines()[-1]
    assert last == error, "a training run fails with the same one line"
    assert "1 more name conflict" in last
    settle = last.split("e.g. BACKPROPLAB_PLUGINS=", 1)[1].split(";", 1)[0]
    # Leaving out the one plugin in both conflicts settles them; the good plugin stays.
    assert "backproplab-goodplug" in settle.split(",") and "backproplab-clash" not in settle

    fixed = cli(tmp_path, site, "model.activation=cube", "trainer.epochs=1", "logger=none", BACKPROPLAB_PLUGINS=settle)
    assert fixed.returncode == 0, fixed.stderr
    assert "final loss" in fixed.stdout
    assert cli(tmp_path, site, "plugins", BACKPROPLAB_PLUGINS=settle).returncode == 0
