"""Fixtures shared by the whole suite."""
import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: on a small shared machine torch's thread pool spins waiting for busy
    cores and makes tiny training steps many times slower; results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
