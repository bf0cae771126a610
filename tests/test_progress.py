"""Progress: quiet when stderr is not a terminal or CI is set; track yields every item."""

from __future__ import annotations

import pytest

from pipeline import progress


def test_track_yields_every_item_in_order_and_prints_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert list(progress.track(["a", "b", "c"], "scenes")) == ["a", "b", "c"]
    assert list(progress.track(iter(range(3)), "gen", total=3)) == [0, 1, 2]
    out, err = capsys.readouterr()
    assert (out, err) == ("", "")


def test_ci_silences_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert not progress.interactive()
    with progress.progress("x", 5) as advance:
        advance(1)  # a no-op, not an error
