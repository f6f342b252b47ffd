"""Fork safety (issue 20): droplab's dropout works in fork-started children wherever torch's does.

numba's OpenMP threading layer aborts a forked child ("fork() called from a process already using
GNU OpenMP") once the parent has run a parallel kernel. ``kernels/cpu.py`` notices the fork
(``os.register_at_fork``) and runs the serial kernels in the child: the same bits, since the mask
depends only on the seed and the element's counter. Each case runs in a fresh interpreter, so an
abort cannot take the test process with it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba")

SCRIPT = textwrap.dedent(
    """
    import sys, numba, torch, droplab
    from torch.utils.data import DataLoader, Dataset

    N = 100_000  # above the kernels' serial threshold: the parent runs the parallel kernel

    class Drops(Dataset):
        def __len__(self):
            return 4
        def __getitem__(self, i):
            return droplab.dropout(torch.ones(N), 0.5, seed=i)

    if __name__ == "__main__":
        numba.set_num_threads(2)
        expected = [droplab.dropout(torch.ones(N), 0.5, seed=i) for i in range(4)]
        torch.nn.functional.dropout(torch.ones(N), 0.5)  # torch's own works here too
        loader = DataLoader(Drops(), num_workers=2, multiprocessing_context="fork", timeout=60)
        got = [batch[0] for batch in loader]
        assert all(torch.equal(g, e) for g, e in zip(got, expected)), "different bits in a worker"
        print("identical", len(got))
    """
)


def test_dataloader_fork_workers_get_the_parents_bits(tmp_path):
    path = tmp_path / "fork_case.py"
    path.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "identical 4" in done.stdout
    assert "fork() called" not in done.stderr


def test_a_forked_child_runs_the_serial_kernels(tmp_path):
    path = tmp_path / "flag_case.py"
    path.write_text(
        textwrap.dedent(
            """
            import os
            from droplab.kernels import cpu
            assert not cpu._serial(10**6)
            pid = os.fork()
            if pid == 0:
                os._exit(0 if cpu._serial(10**6) and cpu._parallel(cpu._mask_par) is not cpu._mask_par else 3)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert cpu._parallel(cpu._mask_par) is cpu._mask_par
            print("ok")
            """
        )
    )
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
