"""Load and concurrency: forwards from many threads on shared layers equal one thread's; the
first-call kernel compilation raced from several threads (GPU); thousands of forwards with
changing shapes leave host (and GPU) memory flat."""

import gc
import threading

import pytest
import torch
from torch import nn

import llmint8

THREADS = 8


def _model(device):
    torch.manual_seed(11)
    model = nn.Sequential(nn.Linear(96, 160), nn.GELU(), nn.Linear(160, 64))
    return llmint8.replace_linear(model, threshold=6.0).to(device).eval()


def _inputs(device, dtype, count=24):
    generator = torch.Generator().manual_seed(5)
    batches = []
    for i in range(count):
        x = torch.randn(1 + (i * 7) % 33, 96, generator=generator)
        x[:, [3, 50]] *= 25
        batches.append(x.to(device=device, dtype=dtype))
    return batches


def _run_threads(model, batches, rounds=3):
    results = [[None] * len(batches) for _ in range(THREADS)]
    errors = []
    barrier = threading.Barrier(THREADS)

    def work(t):
        try:
            barrier.wait()
            with torch.no_grad():
                for _ in range(rounds):
                    for i in range(len(batches)):
                        j = (i + t) % len(batches)  # threads interleave different shapes
                        results[t][j] = model(batches[j])
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    return results


def test_threads_sharing_layers_get_one_threads_results_cpu():
    model = _model("cpu")
    batches = _inputs("cpu", torch.float32)
    with torch.no_grad():
        expected = [model(x) for x in batches]
    for per_thread in _run_threads(model, batches):
        for got, want in zip(per_thread, expected):
            assert torch.equal(got, want)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_thousands_of_forwards_with_changing_shapes_keep_host_memory_flat():
    model = _model("cpu")
    batches = _inputs("cpu", torch.float32, count=40)
    with torch.no_grad():
        for x in batches * 5:  # warm-up: allocator caches reach their steady state
            model(x)
        gc.collect()
        before = _rss_bytes()
        for x in batches * 75:  # 3000 forwards
            model(x)
        gc.collect()
        growth = _rss_bytes() - before
    print(f"host RSS growth over 3000 forwards: {growth / 2**20:.2f} MiB")
    assert growth < 8 * 2**20


@pytest.mark.gpu
def test_threads_sharing_layers_and_racing_the_first_compile_on_gpu():
    from llmint8.backends import cuda_kernels

    cuda_kernels._kernels.clear()  # the first call of every thread races the compilation
    cuda_kernels._modules.clear()
    model = _model("cuda")
    batches = _inputs("cuda", torch.float16)
    results = _run_threads(model, batches)
    with torch.no_grad():
        expected = [model(x) for x in batches]
    for per_thread in results:
        for got, want in zip(per_thread, expected):
            assert torch.equal(got, want)


@pytest.mark.gpu
def test_thousands_of_forwards_keep_gpu_memory_flat():
    model = _model("cuda")
    batches = _inputs("cuda", torch.float16, count=40)
    with torch.no_grad():
        for x in batches * 5:
            model(x)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        for x in batches * 75:
            model(x)
        torch.cuda.synchronize()
        growth = torch.cuda.memory_allocated() - before
    print(f"GPU memory growth over 3000 forwards: {growth} bytes")
    assert growth <= 2 * 2**20  # at most one cached workspace more
