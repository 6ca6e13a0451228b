"""lamindb never reaches the network for a local instance: is_on_hub, ln.track(), ln.finish(), saving from outside."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from annshard.lamin._offline import HUB_ENV, answers_locally, hub_mode

from .conftest import run_python


@pytest.mark.parametrize(
    ("env", "want"),
    [
        (None, "auto"),
        ("auto", "auto"),
        ("offline", "offline"),
        ("0", "offline"),
        ("lamindb", "lamindb"),
        ("on", "lamindb"),
    ],
)
def test_hub_mode(monkeypatch, env, want):
    if env is None:
        monkeypatch.delenv(HUB_ENV, raising=False)
    else:
        monkeypatch.setenv(HUB_ENV, env)
    assert hub_mode() == want


def _settings(*, remote: bool, api_url=None, known=None):
    return SimpleNamespace(_is_on_hub=known, api_url=api_url, storage=object(), is_remote=remote)


def test_answers_locally(monkeypatch):
    monkeypatch.delenv(HUB_ENV, raising=False)
    assert answers_locally(_settings(remote=False))
    assert not answers_locally(_settings(remote=True))
    assert not answers_locally(_settings(remote=False, api_url="https://hub"))  # managed by the hub: ask
    assert not answers_locally(_settings(remote=False, known=True))  # already known
    monkeypatch.setenv(HUB_ENV, "offline")
    assert answers_locally(_settings(remote=True))
    monkeypatch.setenv(HUB_ENV, "lamindb")
    assert not answers_locally(_settings(remote=False))


def test_is_on_hub_without_network(lamin_root):
    import lamindb as ln

    isettings = ln.setup.settings.instance
    isettings._is_on_hub = None
    assert isettings.is_on_hub is False  # the autouse guard fails this test on any network attempt


def test_save_from_outside_storage_root(lamin_root, tmp_path):
    """The path on which lamindb asks the hub: an artifact from a file outside the storage root."""
    import lamindb as ln

    ln.setup.settings.instance._is_on_hub = None
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    artifact = ln.Artifact(path, description="outside").save()
    assert artifact.path.is_relative_to(lamin_root)


SCRIPT = """
import lamindb as ln
ln.track()
ln.finish()
print("tracked offline")
"""


def test_track_and_finish_offline(subprocess_env, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    result = run_python(f"exec(compile(open({str(script)!r}).read(), {str(script)!r}, 'exec'))", env=subprocess_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tracked offline" in result.stdout


def test_guard_catches_lamindb_default(subprocess_env, tmp_path):
    """Without annshard's answer lamindb asks the hub in ln.track(): the subprocess guard must see it."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    result = run_python(
        f"exec(compile(open({str(script)!r}).read(), {str(script)!r}, 'exec'))",
        env={**subprocess_env, HUB_ENV: "lamindb"},
    )
    assert result.returncode == 3 and "NETWORK VIOLATION" in result.stderr
