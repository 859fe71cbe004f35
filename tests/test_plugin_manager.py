"""Plugin discovery through real entry points and in-process plugins: isolation, the error rules
of DESIGN.md, strict mode and BACKPROPLAB_PLUGINS.

Real entry points come from throwaway distributions: a directory on sys.path holding a module
and a ``*.dist-info`` with METADATA and entry_points.txt, which importlib.metadata discovers
exactly as it discovers an installed package.
"""

from __future__ import annotations

import sys
import textwrap
import types
import warnings

import pytest

import backproplab as bp
from backproplab import hookimpl
from backproplab.errors import PluginError
from backproplab.components.loading import PLUGINS_ENV, STRICT_ENV, get_plugins, reset_plugins
from backproplab.components.registry import Source

BUILTIN_ENTRY_POINTS = ["activations", "callbacks", "initializers", "losses", "optimizers", "schedules"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    monkeypatch.delenv(STRICT_ENV, raising=False)


@pytest.fixture
def make_dist(tmp_path, monkeypatch):
    """make_dist(dist, module, source, entry_point=None): install a throwaway distribution."""
    modules: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(dist: str, module: str, source: str, entry_point: str | None = None, version: str = "1.0"):
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[backproplab]\n{entry_point or module} = {module}\n")
        modules.append(module)

    yield make
    for module in modules:
        sys.modules.pop(module, None)


GOOD = """
    from backproplab import hookimpl

    class Cube:
        def forward(self, z):
            return z ** 3

        def backward(self, z, a, grad_a):
            return grad_a * 3 * z ** 2

    @hookimpl
    def register_activations(register):
        register("cube", Cube)
"""

BROKEN_IMPORT = """
    raise ImportError("No module named 'a_dependency_that_is_missing'")
"""


def quiet_load(**kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = bp.load_plugins(**kwargs)
    return result, [str(w.message) for w in caught]


def by_name(plugin_set):
    return {p.name: p for p in plugin_set.plugins}


def test_builtins_load_through_their_entry_points():
    plugin_set, messages = quiet_load()
    plugins = by_name(plugin_set)
    kinds = ["activation", "callback", "initializer", "loss", "optimizer", "schedule"]
    for name, kind in zip(BUILTIN_ENTRY_POINTS, kinds, strict=True):
        hook = f"register_{name}"
        info = plugins[name]
        assert info.distribution == "backproplab" and info.version == bp.__version__
        assert info.value == f"backproplab.plugins.{name}"
        assert info.loaded and info.hooks == [hook]
        assert info.components[kind] and all(plugin_set.registry.source_of(kind, n) == info.source for n in info.components[kind])
    assert not any("backproplab " in m for m in messages)


def test_a_third_party_entry_point_is_discovered(make_dist):
    make_dist("cube-plugin", "bpl_cube", GOOD, entry_point="cube")
    plugin_set, _ = quiet_load()
    info = by_name(plugin_set)["cube"]
    assert (info.distribution, info.version, info.value, info.hooks) == ("cube-plugin", "1.0", "bpl_cube", ["register_activations"])
    assert info.components["activation"] == ["cube"]
    assert plugin_set.registry.source_of("activation", "cube") == Source("cube", "cube-plugin", "1.0")
    net = bp.build_network([2, 1], "cube", registry=plugin_set.registry)
    assert type(net.activations[0]).__name__ == "Cube"


def test_a_plugin_that_fails_to_import_is_reported_and_the_rest_works(make_dist):
    make_dist("broken-plugin", "bpl_broken", BROKEN_IMPORT, entry_point="broken")
    make_dist("cube-plugin", "bpl_cube", GOOD, entry_point="cube")
    plugin_set, messages = quiet_load()
    broken = by_name(plugin_set)["broken"]
    assert not broken.loaded
    assert broken.error == "ImportError: No module named 'a_dependency_that_is_missing'"
    assert plugin_set.failures == [broken]
    (message,) = [m for m in messages if "broken" in m]
    assert message == (
        "plugin 'broken' from distribution broken-plugin 1.0 failed to load: "
        "ImportError: No module named 'a_dependency_that_is_missing'"
    )
    # Everything else still works: the built-ins and the other third-party plugin.
    assert "cube" in plugin_set.registry.names("activation")
    assert "sigmoid" in plugin_set.registry.names("activation")
    assert all(by_name(plugin_set)[n].loaded for n in BUILTIN_ENTRY_POINTS)


def test_strict_mode_turns_a_failure_into_an_error(make_dist, monkeypatch):
    make_dist("broken-plugin", "bpl_broken", BROKEN_IMPORT, entry_point="broken")
    with pytest.raises(PluginError, match=r"^plugin 'broken' from distribution broken-plugin 1\.0 failed to load: ImportError"):
        bp.load_plugins(strict=True)
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(PluginError, match="broken-plugin"):
        bp.load_plugins()
    monkeypatch.setenv(STRICT_ENV, "0")
    plugin_set, _ = quiet_load()
    assert [p.name for p in plugin_set.failures] == ["broken"]


def test_a_duplicate_name_names_both_distributions_and_how_to_settle_it(make_dist, monkeypatch):
    make_dist("sigmoid-plugin", "bpl_dup", GOOD.replace('"cube"', '"sigmoid"'), entry_point="dup")
    make_dist("cube-plugin", "bpl_cube", GOOD, entry_point="cube")
    monkeypatch.setenv(PLUGINS_ENV, "dup,cube-plugin")  # only these two third-party plugins, whatever else is installed
    with pytest.raises(PluginError) as info:
        quiet_load()
    assert str(info.value) == (
        f"activation 'sigmoid' is registered twice: by backproplab {bp.__version__} (entry point 'activations') "
        "and by sigmoid-plugin 1.0 (entry point 'dup'); uninstall one of them or leave one out with "
        "BACKPROPLAB_PLUGINS (built-ins always load), e.g. BACKPROPLAB_PLUGINS=cube-plugin"
    )
    # The advice works: with the suggested value everything loads, and the built-in keeps its name.
    monkeypatch.setenv(PLUGINS_ENV, "cube-plugin")
    plugin_set, _ = quiet_load()
    assert plugin_set.conflicts == []
    assert plugin_set.registry.source_of("activation", "sigmoid").distribution == "backproplab"
    assert "cube" in plugin_set.registry.names("activation")
    # When the clashing plugin is the only third-party one loaded, the advice is to load none.
    monkeypatch.setenv(PLUGINS_ENV, "dup")
    with pytest.raises(PluginError, match=r'e\.g\. BACKPROPLAB_PLUGINS=""$'):
        quiet_load()


def test_every_conflict_is_collected_before_the_error(make_dist, monkeypatch):
    """Three claimants of one name, and a second conflicting name: one error line counts the rest;
    on_conflict="report" lists them all and keeps the first claimant's registration."""
    two = GOOD + '\n    @hookimpl\n    def register_optimizers(register):\n        register("sgd", Cube)\n'
    make_dist("a-plugin", "bpl_a", GOOD, entry_point="a")
    make_dist("b-plugin", "bpl_b", two, entry_point="b")
    make_dist("c-plugin", "bpl_c", GOOD, entry_point="c", version="3.1")
    monkeypatch.setenv(PLUGINS_ENV, "a,b,c")
    with pytest.raises(PluginError) as info:
        quiet_load()
    assert str(info.value) == (
        "activation 'cube' is registered 3 times: by a-plugin 1.0 (entry point 'a'), by b-plugin 1.0 "
        "(entry point 'b') and by c-plugin 3.1 (entry point 'c'); uninstall one of them or leave one out with "
        "BACKPROPLAB_PLUGINS (built-ins always load), e.g. BACKPROPLAB_PLUGINS=a-plugin; "
        "1 more name conflict, all listed by 'backproplab plugins'"
    )
    assert "\n" not in str(info.value)

    plugin_set, _ = quiet_load(on_conflict="report")
    assert [(c.kind, c.name, [s.distribution for s in c.sources]) for c in plugin_set.conflicts] == [
        ("activation", "cube", ["a-plugin", "b-plugin", "c-plugin"]),
        ("optimizer", "sgd", ["backproplab", "b-plugin"]),
    ]
    plugins = by_name(plugin_set)
    assert all(plugins[n].components["activation"] == ["cube"] for n in "abc"), "each claimant lists what it registered"
    assert plugin_set.registry.source_of("activation", "cube").distribution == "a-plugin"
    assert plugin_set.registry.source_of("optimizer", "sgd").distribution == "backproplab"
    assert plugin_set.settle_with() == "a-plugin"
    with pytest.raises(ValueError, match="on_conflict must be 'raise' or 'report', got 'ignore'"):
        bp.load_plugins(on_conflict="ignore")


def test_two_entry_points_of_one_distribution_are_settled_by_entry_point_name(make_dist, tmp_path, monkeypatch):
    make_dist("twin-plugin", "bpl_left", GOOD, entry_point="left")
    make_dist("other-plugin", "bpl_right", GOOD, entry_point="unused")
    # One distribution with two entry points that both register "cube".
    (tmp_path / "twin_plugin-1.0.dist-info" / "entry_points.txt").write_text("[backproplab]\nleft = bpl_left\nright = bpl_right\n")
    monkeypatch.setenv(PLUGINS_ENV, "left,right")
    plugin_set, _ = quiet_load(on_conflict="report")
    assert [c.name for c in plugin_set.conflicts] == ["cube"]
    assert plugin_set.settle_with() == "left"
    monkeypatch.setenv(PLUGINS_ENV, plugin_set.settle_with())
    assert quiet_load()[0].conflicts == []


def test_a_plugin_registering_one_name_twice_fails_alone():
    class Twice:
        @hookimpl
        def register_losses(self, register):
            register("twice", object)
            register("twice", object)

    plugin_set, messages = quiet_load(extra=[(Twice(), Source("twice", "twice-plugin", "0.1"))])
    info = by_name(plugin_set)["twice"]
    assert info.error == "register_losses raised PluginError: loss 'twice' registered twice by this plugin; register each name once"
    assert plugin_set.conflicts == [] and "twice" not in plugin_set.registry.names("loss")
    assert any("twice-plugin 0.1" in m for m in messages)


def test_backproplab_plugins_selects_third_party_plugins(make_dist, monkeypatch):
    make_dist("broken-plugin", "bpl_broken", BROKEN_IMPORT, entry_point="broken")
    make_dist("cube-plugin", "bpl_cube", GOOD, entry_point="cube")
    third_party = {"broken", "cube"}

    def loaded_third_party(value):
        monkeypatch.setenv(PLUGINS_ENV, value)
        plugin_set, _ = quiet_load()
        names = {p.name for p in plugin_set.plugins}
        assert set(BUILTIN_ENTRY_POINTS) <= names  # built-ins always load
        return names & third_party

    assert loaded_third_party("cube") == {"cube"}  # by entry-point name: the broken one is never imported
    assert loaded_third_party("cube-plugin") == {"cube"}  # by distribution name
    assert loaded_third_party(" cube , broken ") == {"cube", "broken"}
    assert loaded_third_party("") == set()
    monkeypatch.delenv(PLUGINS_ENV)
    plugin_set, _ = quiet_load()
    assert third_party <= {p.name for p in plugin_set.plugins}


def test_a_hookimpl_matching_no_hookspec_is_rejected():
    class Misspelt:
        @hookimpl
        def register_activation(self, register):  # missing "s"
            register("never", object)

    plugin_set, messages = quiet_load(extra=[(Misspelt(), Source("misspelt", "typo-plugin", "0.1"))])
    info = by_name(plugin_set)["misspelt"]
    assert not info.loaded
    assert "register_activation" in info.error and "unknown hook" in info.error
    assert "known hooks: register_activations, register_losses, register_initializers, register_optimizers" in info.error
    assert "never" not in plugin_set.registry.names("activation")
    assert any("typo-plugin 0.1" in m for m in messages)
    assert "sigmoid" in plugin_set.registry.names("activation")
    with pytest.raises(PluginError, match="register_activation"):
        bp.load_plugins(extra=[(Misspelt(), Source("misspelt", "typo-plugin", "0.1"))], strict=True)


def test_a_hookimpl_with_a_wrong_argument_is_rejected():
    class WrongArgument:
        @hookimpl
        def register_losses(self, callback):
            pass

    plugin_set, _ = quiet_load(extra=[(WrongArgument(), Source("wrongarg", "wrongarg-plugin", "0.1"))])
    info = by_name(plugin_set)["wrongarg"]
    assert not info.loaded and "callback" in info.error


def test_a_hook_that_raises_leaves_nothing_behind():
    class HalfWay:
        @hookimpl
        def register_activations(self, register):
            register("first_one", object)
            raise RuntimeError("boom")

    plugin_set, messages = quiet_load(extra=[(HalfWay(), Source("halfway", "halfway-plugin", "0.1"))])
    info = by_name(plugin_set)["halfway"]
    assert info.error == "register_activations raised RuntimeError: boom"
    assert "first_one" not in plugin_set.registry.names("activation")
    assert info.components["activation"] == []
    assert any("halfway-plugin 0.1" in m and "boom" in m for m in messages)


def test_a_malformed_registration_fails_only_that_plugin():
    class BadName:
        @hookimpl
        def register_optimizers(self, register):
            register("", object)

    plugin_set, _ = quiet_load(extra=[(BadName(), Source("badname", "badname-plugin", "0.1"))])
    info = by_name(plugin_set)["badname"]
    assert "invalid name ''" in info.error
    assert "sgd" in plugin_set.registry.names("optimizer")


def test_in_process_modules_and_several_hooks():
    module = types.ModuleType("bpl_inline")
    exec(
        textwrap.dedent(
            """
            from backproplab import hookimpl

            class Half:
                def __call__(self, shape, rng, dtype):
                    import numpy as np
                    return np.full(shape, 0.5, dtype)

            @hookimpl
            def register_initializers(register):
                register("half", Half)

            @hookimpl
            def register_losses(register):
                register("half_loss", Half)
            """
        ),
        module.__dict__,
    )
    plugin_set, _ = quiet_load(extra=[(module, Source("inline", "inline-plugin", "0.2"))], entry_points=False)
    assert [p.name for p in plugin_set.plugins] == ["inline"]  # entry_points=False: nothing else
    info = plugin_set.plugins[0]
    assert info.value == "bpl_inline"
    assert info.hooks == ["register_initializers", "register_losses"]
    assert info.components["initializer"] == ["half"] and info.components["loss"] == ["half_loss"]
    assert plugin_set.registry.names("activation") == []


def test_discovery_runs_once_per_process_until_reset():
    first = get_plugins()
    assert get_plugins() is first and bp.get_registry() is first.registry
    reset_plugins()
    try:
        assert get_plugins() is not first
    finally:
        reset_plugins()


class Cube:
    def forward(self, z):
        return z**3

    def backward(self, z, a, grad_a):
        return 3 * z**2 * grad_a


def test_aliases_are_declared_with_the_name():
    class WithAliases:
        @hookimpl
        def register_activations(self, register):
            register("cube", Cube, aliases=("third_power", "x3"))

    plugin_set, _ = quiet_load(extra=[(WithAliases(), Source("aliases", "alias-plugin", "0.1"))], entry_points=False)
    registry = plugin_set.registry
    assert registry.names_of("activation", Cube) == ["cube", "third_power", "x3"]
    assert registry.aliases("activation", "cube") == ["third_power", "x3"]
    assert registry.get("activation", "x3").alias_of == "cube" and registry.get("activation", "cube").alias_of is None
    assert isinstance(registry.create("activation", "third_power"), Cube)


def test_one_alias_as_a_string_is_one_alias():
    class OneAlias:
        @hookimpl
        def register_activations(self, register):
            register("cube", Cube, aliases="x3")

    plugin_set, _ = quiet_load(extra=[(OneAlias(), Source("alias", "alias-plugin", "0.1"))], entry_points=False)
    assert plugin_set.registry.aliases("activation", "cube") == ["x3"]


def test_an_alias_that_repeats_a_name_of_the_same_plugin_fails_that_plugin():
    class Clash:
        @hookimpl
        def register_activations(self, register):
            register("cube", Cube, aliases=("cube",))

    plugin_set, messages = quiet_load(extra=[(Clash(), Source("clash", "clash-plugin", "0.1"))], entry_points=False)
    assert "cube" not in plugin_set.registry.names("activation")
    assert any("registered twice by this plugin" in m for m in messages)


def test_builtin_aliases_are_declared_as_aliases():
    registry = bp.get_registry()
    assert registry.aliases("activation", "sigmoid") == ["logistic"]
    assert registry.aliases("optimizer", "sgd") == ["gd"]
    assert registry.aliases("loss", "bce") == ["binary_cross_entropy"]
    assert registry.aliases("activation", "identity") == ["linear"]
