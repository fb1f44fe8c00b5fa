"""Every read of a user's file is bounded: a device, a FIFO or a symlink to one is refused before
it is read, a file over the upload cap is refused by its size, a CSV of sequences stops being
parsed past the step cap, and no message quotes what is in the file. The CLI runs as a
subprocess under RLIMIT_AS, so a read that is not bounded fails the test instead of the machine."""
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from bad_files import real_model_bytes, real_npy_bytes
from explorer.data import DataError, load_csv

ROOT = Path(__file__).resolve().parent.parent
ADDRESS_SPACE = 3 * 2**30      # the CLI needs about 1 GiB to trace a small model; /dev/zero would fill any cap
SECRET = "root:$6$Xq9SECRETsaltAbc$SECRETHASHvalue0123456789:19000:0:99999:7:::"


def cli(*args: str, env: dict | None = None, timeout: float = 240) -> tuple[int, str, int]:
    """`python -m explorer ARGS` under a capped address space: (exit status, stdout and stderr,
    its peak resident memory in KiB). wait4 gives the child's own peak; it is polled so a
    child that hangs (a FIFO with no writer) fails the test after `timeout` seconds."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen([sys.executable, "-m", "explorer", *args], cwd=ROOT, preexec_fn=cap,
                                   env={**os.environ, **(env or {})}, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                os.wait4(process.pid, 0)
                raise AssertionError(f"`explorer {' '.join(args)}` was still running after {timeout} s")
            time.sleep(0.1)
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        return process.returncode, output.read().decode(errors="replace"), usage.ru_maxrss


@pytest.fixture
def files(tmp_path):
    (tmp_path / "good.pt").write_bytes(real_model_bytes(".pt"))
    (tmp_path / "good.npy").write_bytes(real_npy_bytes())
    return tmp_path


def one_error_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert "Traceback" not in output
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("role, name, words", [
    ("input", None, "without a suffix"),           # /dev/zero itself: no suffix a sequence file has
    ("input", "zero.npy", "not a regular file (a device"), ("input", "zero.csv", "not a regular file (a device"),
    ("model", "zero.pt", "not a regular file (a device")])
def test_trace_refuses_dev_zero_and_symlinks_to_it_before_reading(files, role, name, words):
    path = "/dev/zero"
    if name:
        path = str(files / name)
        os.symlink("/dev/zero", path)
    model, sequences = (path, str(files / "good.npy")) if role == "model" else (str(files / "good.pt"), path)
    rc, output, _ = cli("trace", model, sequences, "--out", str(files / "out.parquet"))
    line = one_error_line(output)
    assert rc == 2
    assert Path(path).name in line and words in line, line
    assert "MemoryError" not in line


@pytest.mark.slow
def test_trace_refuses_a_fifo_without_waiting_for_a_writer(files):
    fifo = files / "pipe.npy"
    os.mkfifo(fifo)
    rc, output, _ = cli("trace", str(files / "good.pt"), str(fifo), "--out", str(files / "out.parquet"), timeout=60)
    assert rc == 2 and "pipe.npy" in one_error_line(output) and "not a regular file" in output


@pytest.mark.slow
def test_trace_refuses_a_file_over_the_upload_cap_by_its_size(files):
    big = files / "big.npy"
    big.write_bytes(real_npy_bytes(shape=(4, 1000, 2)))              # 32 KB
    rc, output, _ = cli("trace", str(files / "good.pt"), str(big), "--out", str(files / "out.parquet"),
                        env={"GATE_EXPLORER_MAX_UPLOAD_MB": "0.01"})   # 10 KiB
    line = one_error_line(output)
    assert rc == 2 and "big.npy" in line and "0.01 MB" in line and "GATE_EXPLORER_MAX_UPLOAD_MB" in line, line
    assert not (files / "out.parquet").exists()


@pytest.mark.slow
def test_trace_on_a_csv_symlink_to_a_secret_names_the_file_and_quotes_none_of_it(files):
    secret = files / "shadow"
    secret.write_text(f"{SECRET}\ndaemon:*:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n")
    link = files / "data.csv"
    os.symlink(secret, link)
    rc, output, _ = cli("trace", str(files / "good.pt"), str(link), "--out", str(files / "out.parquet"))
    line = one_error_line(output)
    assert rc == 2 and "data.csv" in line
    for piece in ("SECRET", "root", "daemon", "19000", "99999"):
        assert piece not in output, (piece, output)


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"epoch,loss\n1,0.5\n2,0.25\n", b"hello\n"])
def test_trace_on_a_pt_that_is_text_is_one_error_line(files, content):
    (files / "notes.pt").write_bytes(content)
    rc, output, _ = cli("trace", str(files / "notes.pt"), str(files / "good.npy"), "--out", str(files / "out.parquet"))
    line = one_error_line(output)
    assert rc == 2 and "notes.pt" in line and "text file" in line and "epoch" not in line


@pytest.mark.slow
def test_trace_refuses_a_csv_past_the_step_cap_saying_the_cap(files):
    rows = "".join(f"{np.sin(i / 7):.4f},{np.cos(i / 5):.4f}\n" for i in range(1500))
    (files / "long.csv").write_text("a,b\n" + rows)
    rc, output, _ = cli("trace", str(files / "good.pt"), str(files / "long.csv"), "--out", str(files / "out.parquet"))
    line = one_error_line(output)
    assert rc == 2 and "long.csv" in line and "1000" in line, line


@pytest.mark.slow
def test_a_large_csv_of_sequences_stops_being_parsed_past_the_step_cap(files):
    """A 50 MB CSV (within the 64 MB cap) costs its bytes and text, not a parsed table of 2.6
    million rows: the child's peak memory stays within 200 MB of the same command on a tiny file
    (115 MB more, measured; parsed in full it was 1.1 GB more, and then the trace ran out of
    memory under this cap)."""
    row = "0.1234567,0.7654321\n"
    with open(files / "huge.csv", "w") as out:
        out.write("a,b\n")
        for _ in range(50):
            out.write(row * (2**20 // len(row)))
    (files / "small.csv").write_text("a,b\n" + row * 20)
    out = str(files / "out.parquet")
    _, _, small = cli("trace", str(files / "good.pt"), str(files / "small.csv"), "--out", out)
    rc, _, huge = cli("trace", str(files / "good.pt"), str(files / "huge.csv"), "--out", out)
    assert rc == 2
    assert huge - small < 200 * 1024, (small, huge)


def _in_a_child(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Python code run in a child with a capped address space (a read that blocks or grows
    fails this test, not pytest)."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, preexec_fn=cap, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_the_csv_task_refuses_a_fifo_and_a_device_as_its_file(tmp_path):
    """The csv task's file (--csv-path, or the sidebar's upload saved on the server): building the
    task, its memory estimate included, neither waits on a FIFO nor reads /dev/zero."""
    os.mkfifo(tmp_path / "pipe.csv")
    os.symlink("/dev/zero", tmp_path / "zero.csv")
    code = ("from explorer import Config\n"
            "from explorer.tasks import task_for\n"
            "for name in ('pipe.csv', 'zero.csv'):\n"
            "    try:\n"
            f"        task_for(Config(task='csv', csv_path={str(tmp_path)!r} + '/' + name, seq_len=10))\n"
            "    except ValueError as error:\n"
            "        print(error)\n")
    done = _in_a_child(code)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and len(lines) == 2, done
    assert "pipe.csv" in lines[0] and "zero.csv" in lines[1]
    assert all("not a regular file" in line for line in lines)


def test_read_user_file_checks_suffix_then_size_and_names_the_file(tmp_path, monkeypatch):
    from explorer.data import read_user_file
    path = tmp_path / "notes.md"
    path.write_text("# hello")
    with pytest.raises(DataError, match=r"^notes\.md: .*\.csv") as raised:
        read_user_file(path, (".csv",))
    assert str(tmp_path) not in str(raised.value) and "hello" not in str(raised.value)
    big = tmp_path / "big.csv"
    big.write_bytes(b"a\n" + b"1\n" * 10_000)
    monkeypatch.setenv("GATE_EXPLORER_MAX_UPLOAD_MB", "0.01")
    with pytest.raises(DataError, match=r"^big\.csv: .*0\.01 MB"):
        read_user_file(big, (".csv",))
    assert read_user_file(tmp_path / "notes.md", (".md",)) == b"# hello"


def test_a_symlink_to_a_regular_file_is_read(tmp_path):
    (tmp_path / "real.csv").write_text("a,b\n1,2\n3,4\n")
    os.symlink(tmp_path / "real.csv", tmp_path / "link.csv")
    assert load_csv(tmp_path / "link.csv").frame.shape == (2, 2)


def test_a_missing_file_is_named_without_its_folder(tmp_path):
    from explorer.data import read_user_file
    with pytest.raises(DataError, match="not found") as raised:
        read_user_file(tmp_path / "gone.npy", (".npy",))
    assert "gone.npy" in str(raised.value) and str(tmp_path) not in str(raised.value)


@pytest.mark.parametrize("content", [
    f"{SECRET},b\nx,2\n".encode(),                          # the header of a column that is not numeric
    f"a,b\n1,{SECRET}\n2,3\n".encode(),                     # a value that is not a number
    f"{SECRET}\n".encode(),                                 # a header and no rows
    f"a,b\n1,2\n3,4,{SECRET}\n".encode(),                   # a row longer than the header
])
def test_sequences_from_a_csv_are_refused_without_quoting_it(tmp_path, content):
    from explorer.loading import ModelFileError, read_sequences
    path = tmp_path / "seq.csv"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as raised:
        read_sequences(path, max_steps=1000)
    assert "seq.csv" in str(raised.value) and "SECRET" not in str(raised.value), str(raised.value)


def test_an_upload_over_the_cap_is_refused_by_its_size_on_the_app_path(monkeypatch):
    """The upload form hands read_state_dict and read_sequences file objects: the same cap holds."""
    import io

    from explorer.loading import ModelFileError, read_sequences, read_state_dict
    monkeypatch.setenv("GATE_EXPLORER_MAX_UPLOAD_MB", "0.01")          # 10 KiB
    for reader, name, raw in ((read_state_dict, "big.pt", real_model_bytes(".pt") + b"\0" * 20_000),
                              (read_sequences, "big.npy", real_npy_bytes(shape=(4, 1000, 2)))):
        with pytest.raises(ModelFileError, match=rf"^{name.replace('.', '[.]')}: .*capped at 0\.01 MB"):
            reader(io.BytesIO(raw), name=name)


def test_a_csv_at_the_step_cap_is_read_and_one_row_past_it_is_not(tmp_path):
    from explorer.loading import ModelFileError, read_sequences
    rows = "".join(f"{i},{-i}\n" for i in range(1001))
    (tmp_path / "fits.csv").write_text("a,b\n" + rows[:rows.index("1000,")] + "\n\n")     # 1000 rows, blank lines after
    (tmp_path / "over.csv").write_text("a,b\n" + rows)                                     # 1001 rows
    x, names = read_sequences(tmp_path / "fits.csv", max_steps=1000)
    assert x.shape == (1, 1000, 2) and names == ["a", "b"]
    with pytest.raises(ModelFileError, match="over.csv has more than 1000 data rows"):
        read_sequences(tmp_path / "over.csv", max_steps=1000)
