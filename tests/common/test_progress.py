from nanorepro.common.progress import ProgressBoard


def test_plain_progress_lines_where_stderr_is_not_a_terminal(capsys):
    with ProgressBoard(plain_every=0.0) as board:  # pytest's captured stderr is not a terminal
        task = board.task("run seed 0", total=4)
        task.advance(1)
        task.advance(1)
    err = capsys.readouterr().err
    assert "run seed 0: 1/4 (25%)" in err and "run seed 0: 2/4 (50%)" in err and "eta" in err


def test_disabled_board_prints_nothing(capsys):
    with ProgressBoard(enabled=False, plain_every=0.0) as board:
        board.task("quiet", total=2).advance(1)
    assert "quiet" not in capsys.readouterr().err
