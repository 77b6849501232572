"""A real (small) training loop with numpy only: logistic regression on synthetic data.

Runs under `runctl local examples/train_numpy.py`, or plain `python examples/train_numpy.py`.
It cooperates with runctl through `runctl.Checkpointer`: it resumes from the latest
checkpoint, saves every `--save-every` steps, and on SIGTERM/SIGINT saves and exits with 0
after printing "stopped at step N" (runctl records the job as interrupted).
Each log line is `step=N loss=X`, so tests and people can see the loss go down.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from runctl import Checkpointer


def make_data(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true_w = rng.normal(size=dim)
    x = rng.normal(size=(n, dim))
    y = (x @ true_w + 0.1 * rng.normal(size=n) > 0).astype(np.float64)
    return x, y


def loss_and_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    p = 1.0 / (1.0 + np.exp(-(x @ w)))
    eps = 1e-12
    loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
    return loss, x.T @ (p - y) / len(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds per step (for demos)")
    args = parser.parse_args()

    x, y = make_data(n=2000, dim=20)
    ckpt = Checkpointer()
    state = ckpt.load() or {"step": 0, "w": np.zeros(x.shape[1])}
    if state["step"]:
        print(f"resumed from step {state['step']}", flush=True)
    w, step = state["w"], state["step"]
    while step < args.steps:
        loss, grad = loss_and_grad(w, x, y)
        w = w - args.lr * grad
        step += 1
        if step % 10 == 0 or step == 1:
            print(f"step={step} loss={loss:.4f}", flush=True)
        stop = ckpt.stop_requested  # read once: a signal between two reads would skip the save
        if step % args.save_every == 0 or stop:
            ckpt.save({"step": step, "w": w}, step)
        if stop:
            print(f"stopped at step {step}", flush=True)
            return
        time.sleep(args.sleep)
    ckpt.save({"step": step, "w": w}, step)
    print(f"done: step={step} loss={loss_and_grad(w, x, y)[0]:.4f}", flush=True)


if __name__ == "__main__":
    main()
