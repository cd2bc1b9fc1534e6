"""The supervisor's file handling that needs no process."""

from serving.supervisor import empty_directory


def test_the_metrics_directory_is_emptied_not_replaced(tmp_path):
    """A mount point (an emptyDir in a pod) can be emptied but never removed."""
    metrics = tmp_path / "metrics"
    (metrics / "old-worker").mkdir(parents=True)
    (metrics / "old-worker" / "counter.db").write_text("x")
    (metrics / "gauge_live_123.db").write_text("x")
    inode = metrics.stat().st_ino
    empty_directory(metrics)
    assert metrics.is_dir() and list(metrics.iterdir()) == []
    assert metrics.stat().st_ino == inode, "the directory itself must stay (it may be a mount)"


def test_a_missing_directory_is_created(tmp_path):
    empty_directory(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
