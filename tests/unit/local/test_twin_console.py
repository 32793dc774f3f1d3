"""The twin's console shows keys (user input) so that a terminal never obeys what is in them."""

from __future__ import annotations

from local.twin import _printable


def test_control_and_direction_characters_in_a_key_are_shown_as_escapes():
    assert _printable("drivers/\u202egnp.exe") == "drivers/\\u202egnp.exe"  # not shown as "drivers/exe.png"
    assert _printable("a\x1b[2Jb\x07") == "a\\x1b[2Jb\\x07"  # no screen clearing, no bell
    assert _printable("vélo 🚲/ok.png") == "vélo 🚲/ok.png"  # printable text stays as it is
