"""Why the course chooses its CPU threads as it does: training steps on an idle and a busy machine.

Four training steps that stand for the course's models (softmax regression and a 256-unit MLP on
Fashion-MNIST-sized batches, a small batch-norm CNN in ``channels_last``, a GRU language model) are
timed with

* one torch thread,
* two threads (OpenMP's default: threads spin for a while at every barrier before they sleep),
* two threads with ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once),

each in a fresh process (OpenMP reads its wait policy when torch is imported), once on an idle
machine and once while another process keeps one core busy (a spinning Python loop, like
``yes > /dev/null``). Rounds alternate the configurations; the report gives medians.

    .venv/bin/python benchmarks/threads.py [--rounds 3]     # prints JSON; bench.py stores it

The numbers behind ``helpers.config.choose_threads`` (see its module docstring).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "1 thread": (1, {}),
    "2 threads": (2, {}),
    "2 threads, passive wait": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
}

WORKER = r'''
import json, sys, time
import torch
from torch import nn

torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
loss_fn = nn.CrossEntropyLoss()


def per_step_ms(model, X, y, repeats):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        out = model(X)
        loss = loss_fn(out.reshape(-1, out.shape[-1]), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()

    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return 1000 * (time.perf_counter() - start) / repeats


class GRULM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.out = nn.GRU(28, 256, batch_first=True), nn.Linear(256, 28)

    def forward(self, X):
        return self.out(self.rnn(X)[0])


cnn = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Flatten(), nn.Linear(64 * 49, 10)).to(memory_format=torch.channels_last)
results = {
    "softmax regression, batch 256": per_step_ms(nn.Linear(784, 10), torch.randn(256, 784),
                                                 torch.randint(0, 10, (256,)), 300),
    "MLP 784-256-10, batch 256": per_step_ms(
        nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)), torch.randn(256, 784),
        torch.randint(0, 10, (256,)), 100),
    "BN CNN, batch 128": per_step_ms(cnn, torch.randn(128, 1, 28, 28).to(memory_format=torch.channels_last),
                                     torch.randint(0, 10, (128,)), 15),
    "GRU LM, 32 x 35 steps": per_step_ms(GRULM(), torch.randn(32, 35, 28),
                                         torch.randint(0, 28, (32 * 35,)), 30),
}
print(json.dumps(results))
'''

SPIN = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def one_run(threads: int, env: dict[str, str]) -> dict[str, float]:
    """Step times (ms) of the four models in a fresh process with ``threads`` and ``env``."""
    out = subprocess.run([sys.executable, "-c", WORKER, str(threads)], env={**os.environ, **env},
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(rounds: int, busy: bool) -> dict[str, dict[str, float]]:
    """Median step times per configuration and model, optionally with one core kept busy."""
    spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if busy else None
    try:
        if spinner is not None:
            time.sleep(0.5)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
        for _ in range(rounds):
            for name, (threads, env) in CONFIGS.items():
                runs[name].append(one_run(threads, env))
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return {name: {model: statistics.median(r[model] for r in results) for model in results[0]}
            for name, results in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = {"idle": measure(args.rounds, busy=False), "one core busy": measure(args.rounds, busy=True),
               "rounds": args.rounds, "cores": os.cpu_count()}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
