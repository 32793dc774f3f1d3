"""The twin commands' terminal output: tables within 80 columns, progress that suits a terminal or a log."""

import io

from client.console import Progress, elide, format_columns


def test_a_long_key_column_is_elided_in_the_middle_so_the_table_fits():
    rows = [("image", "label"), ("photos/" + "x" * 90 + "_s_000123.png", "bicycle"), ("a.png", "-")]
    table = format_columns(rows, width=40)
    lines = table.splitlines()
    assert max(map(len, lines)) <= 40
    assert lines[1].startswith("photos/") and "…" in lines[1] and lines[1].split()[0].endswith("000123.png")
    assert lines[2].split() == ["a.png", "-"]


def test_a_narrow_table_is_left_as_it_is():
    assert format_columns([("a", "b"), ("1", "22")]) == "a  b\n1  22"
    assert elide("short", 10) == "short"
    assert len(elide("abcdefghijklmnop", 7)) == 7


class _Pipe(io.StringIO):
    def isatty(self):
        return False


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_to_a_pipe_is_a_few_plain_lines_and_always_the_last():
    out = _Pipe()
    progress = Progress("outcomes recorded", 100, stream=out, min_interval_s=0)
    for done in range(101):
        progress.update(done)
    progress.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 2 <= len(lines) <= 11
    assert lines[-1] == "  100/100 outcomes recorded"


def test_progress_on_a_terminal_redraws_one_line():
    out = _Terminal()
    progress = Progress("done", 3, stream=out)
    for done in (0, 1, 1, 2, 3):
        progress.update(done)
    progress.close()
    assert out.getvalue() == "\r  0/3 done\r  1/3 done\r  2/3 done\r  3/3 done\n"
