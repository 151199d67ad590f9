import pytest
import torch.distributed as dist

from spacelm.distributed import launched_run


def test_a_launched_run_destroys_its_process_group_even_when_it_fails(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    with pytest.raises(RuntimeError, match="out of data"):
        with launched_run():
            assert dist.get_world_size() == 1
            raise RuntimeError("out of data")
    assert not dist.is_initialized()
    with launched_run():  # a run without a process group (one process, no launcher) passes through
        pass
