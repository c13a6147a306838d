import threading
import time

import pytest
import torch

from code.utils.parallel import ordered_thread_map


def test_results_come_in_input_order():
    def slow_for_small(i: int) -> int:
        time.sleep(0.002 * (10 - i % 10))  # early items finish last
        return i * i

    assert list(ordered_thread_map(slow_for_small, range(30), workers=4)) == [
        i * i for i in range(30)
    ]


def test_items_are_taken_lazily_by_the_calling_thread():
    taken, caller = [], threading.get_ident()

    def items():
        for i in range(100):
            assert threading.get_ident() == caller
            taken.append(i)
            yield i

    results = ordered_thread_map(lambda i: i, items(), workers=2)
    assert next(results) == 0
    assert len(taken) <= 4  # at most 2·workers in flight


def test_an_error_reaches_the_caller_and_torch_threads_are_restored():
    threads = torch.get_num_threads()

    def fail_on_five(i: int) -> int:
        if i == 5:
            raise ValueError("item 5 is bad")
        return i

    with pytest.raises(ValueError, match="item 5"):
        list(ordered_thread_map(fail_on_five, range(20), workers=3))
    assert torch.get_num_threads() == threads


def test_one_worker_runs_on_the_calling_thread():
    caller = threading.get_ident()
    assert list(ordered_thread_map(lambda i: threading.get_ident(), range(3), 1)) == [caller] * 3


def test_evaluation_workers_come_from_the_config_and_are_checked():
    from code.config import ConfigError, load_config
    from code.engine.model_scoring import evaluation_workers
    from code.utils.parallel import available_cpus

    quickstart = "configs/quickstart.yaml"
    assert evaluation_workers(load_config(quickstart, [])) == available_cpus()
    assert evaluation_workers(load_config(quickstart, ["EVAL.WORKERS", "3"])) == 3
    with pytest.raises(ConfigError, match=r"EVAL\.WORKERS: must be at least 1, got 0"):
        load_config(quickstart, ["EVAL.WORKERS", "0"])
