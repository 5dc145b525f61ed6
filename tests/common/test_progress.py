from nanorepro.common.progress import ProgressBoard, _remaining


def test_plain_progress_lines_where_stderr_is_not_a_terminal(capsys):
    with ProgressBoard(plain_every=0.0) as board:  # pytest's captured stderr is not a terminal
        task = board.task("run seed 0", total=4)
        task.advance(1)
        task.advance(1)
    err = capsys.readouterr().err
    assert "run seed 0: 1/4 (25%)" in err and "run seed 0: 2/4 (50%)" in err and "eta" in err
    assert "eta ?" not in err   # one step done is enough for an estimate, however slow the steps


def test_the_plain_eta_of_slow_steps_is_the_average_rate_since_the_start():
    class Task:
        time_remaining, elapsed, total, completed = None, 120.0, 16, 2   # 2 rounds in 2 minutes, 14 to go

    assert _remaining(Task) == 840.0


def test_disabled_board_prints_nothing(capsys):
    with ProgressBoard(enabled=False, plain_every=0.0) as board:
        board.task("quiet", total=2).advance(1)
    assert "quiet" not in capsys.readouterr().err
