"""Atomic writes: the file gets the usual umask permissions without the process umask being touched."""

import os
import threading

from spacelm.io import atomic_write_bytes, atomic_write_text


def test_mode_follows_the_umask_and_no_temporary_file_is_left(tmp_path):
    old = os.umask(0o027)  # this test sets the umask; the writer only lets the kernel apply it
    try:
        atomic_write_text(tmp_path / "a" / "x.txt", "héllo")
        assert os.umask(0o027) == 0o027  # unchanged by the write
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "x.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "a" / "x.txt").stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path / "a") == ["x.txt"]


def test_concurrent_writers_each_leave_a_whole_file(tmp_path):
    def write(i):
        atomic_write_bytes(tmp_path / f"{i % 4}.bin", bytes([i]) * 10000)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(os.listdir(tmp_path)) == ["0.bin", "1.bin", "2.bin", "3.bin"]
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        assert len(data) == 10000 and len(set(data)) == 1 and data[0] % 4 == int(path.stem)
