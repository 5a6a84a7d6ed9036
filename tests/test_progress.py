"""Progress for long work: plain periodic lines when not on a terminal."""
from pipelines.progress import ProgressReporter


def test_plain_lines_say_done_total_rate_eta_and_failures():
    lines = []
    reporter = ProgressReporter(4, label="shapes", log=lines.append, every=0.0, tty=False)
    reporter.item_done()
    reporter.item_done(failed=2)
    assert lines[-1].startswith("shapes: 2/4 files (50%)") and "ETA" in lines[-1]
    assert lines[-1].endswith("2 failed")
    reporter.item_done()
    reporter.item_done()
    reporter.close()
    assert lines[-1].startswith("shapes: 4/4 files (100%)")


def test_lines_are_throttled_but_the_last_is_always_written():
    lines = []
    reporter = ProgressReporter(3, log=lines.append, every=3600.0, tty=False, unit="epochs")
    for _ in range(3):
        reporter.item_done()
    assert len(lines) == 1 and ": 3/3 epochs (100%)" in lines[0]
