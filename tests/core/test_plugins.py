"""The plug-in registry: names only, built-ins + entry points + settings, nothing unregistered ever imported."""

from __future__ import annotations

import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from core import plugins
from core.apps import _register_plugins


@pytest.fixture
def fresh_entry_points():
    plugins.refresh_entry_points()
    yield
    plugins.refresh_entry_points()


def test_the_sandbox_registration_provides_the_builtins():
    assert {"area", "colour", "shape"} <= set(plugins.names("oracle"))
    assert {"larger", "colour", "shape"} <= set(plugins.names("pair_oracle"))
    assert "sandbox" in plugins.names("reward_backbone")
    from generators.sandbox.oracles import area_reward

    assert plugins.resolve("oracle", "area") is area_reward


def test_an_unregistered_name_or_dotted_path_is_refused_without_importing_it():
    target = "tests.core.plugin_tripwire"
    for name in ("shutil.rmtree", "shutil:rmtree", f"{target}:touch", "gold_oracle"):
        with pytest.raises(plugins.PluginError, match=r"Unknown oracle .*Registered: .*area, .*colour.*shape"):
            plugins.resolve("oracle", name)
    assert target not in sys.modules


def test_settings_add_plugins_read_at_each_lookup(settings):
    settings.PLUGINS = {"oracle": {"canary": "tests.core.plugin_canary:score"}}
    assert "canary" in plugins.names("oracle")
    assert plugins.get("oracle", "canary").origin == "settings"
    assert plugins.resolve("oracle", "canary")("p", None) == 0.25
    settings.PLUGINS = {}
    assert "canary" not in plugins.names("oracle")


@pytest.mark.parametrize(
    ("configured", "message"),
    [
        ({"oracle": {"x": "shutil.rmtree"}}, "package.module:attribute"),
        ({"oracle": {"a.b": "pkg.mod:fn"}}, "letters, digits"),
        ({"oracles": {"x": "pkg.mod:fn"}}, "Unknown plug-in kind"),
        ({"oracle": ["pkg.mod:fn"]}, "must map names"),
    ],
)
def test_bad_plugin_settings_stop_the_start(settings, configured, message):
    settings.PLUGINS = configured
    with pytest.raises(ImproperlyConfigured, match=message):
        _register_plugins()
    settings.PLUGINS = {}
    _register_plugins()


def test_a_registered_target_that_is_missing_or_not_callable_is_a_plugin_error(settings):
    settings.PLUGINS = {"oracle": {"gone": "tests.core.no_such_module:fn", "value": "tests.core.plugin_canary:VALUE"}}
    with pytest.raises(plugins.PluginError, match="cannot be loaded"):
        plugins.resolve("oracle", "gone")
    with pytest.raises(plugins.PluginError, match="not callable"):
        plugins.resolve("oracle", "value")


def test_installed_entry_points_register_plugins(tmp_path, monkeypatch, fresh_entry_points):
    assert "canary-ep" not in plugins.names("oracle")  # entry points are read once, then cached
    dist = tmp_path / "imagerlhf_canary-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: imagerlhf-canary\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[imagerlhf.oracles]\ncanary-ep = tests.core.plugin_canary:score\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "canary-ep" not in plugins.names("oracle")

    plugins.refresh_entry_points()

    assert plugins.get("oracle", "canary-ep").origin.startswith("entry point")
    assert plugins.resolve("oracle", "canary-ep")("p", None) == 0.25


def test_a_malformed_entry_point_is_skipped_and_the_others_stay(tmp_path, monkeypatch, fresh_entry_points, caplog):
    dist = tmp_path / "imagerlhf_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: imagerlhf-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[imagerlhf.oracles]\nbad.name = tests.core.plugin_canary:score\ngood-ep = tests.core.plugin_canary:score\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.refresh_entry_points()

    registered = plugins.names("oracle")
    assert "good-ep" in registered and "area" in registered and "bad.name" not in registered
    assert "Skipping the oracle entry point 'bad.name'" in caplog.text
