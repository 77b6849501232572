"""A PyTorch training loop on synthetic data (no download): a small MLP regression.

Uses the GPU when one is available, else the CPU. Cooperates with runctl like
train_numpy.py: resume from `Checkpointer.load()`, periodic atomic saves, save-and-exit on
SIGTERM/SIGINT. Log lines are `step=N loss=X`.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from runctl import Checkpointer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds per step (for demos)")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    true_w = torch.randn(32, 1)
    model = nn.Sequential(nn.Linear(32, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 1)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    ckpt = Checkpointer()
    step = 0
    if (state := ckpt.load()) is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        print(f"resumed from step {step}", flush=True)

    def snapshot() -> dict:
        return {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict()}

    generator = torch.Generator().manual_seed(1234)
    print(f"device={device}", flush=True)
    while step < args.steps:
        x = torch.randn(args.batch, 32, generator=generator)
        y = x @ true_w + 0.01 * torch.randn(args.batch, 1, generator=generator)
        loss = nn.functional.mse_loss(model(x.to(device)), y.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 10 == 0 or step == 1:
            print(f"step={step} loss={loss.item():.4f}", flush=True)
        stop = ckpt.stop_requested  # read once: a signal between two reads would skip the save
        if step % args.save_every == 0 or stop:
            ckpt.save(snapshot(), step)
        if stop:
            print(f"stopped at step {step}", flush=True)
            return
        time.sleep(args.sleep)
    ckpt.save(snapshot(), step)
    print(f"done: step={step} loss={loss.item():.4f}", flush=True)


if __name__ == "__main__":
    main()
