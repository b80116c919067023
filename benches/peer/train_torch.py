"""The PyTorch side of compare.py's training comparison: the 5.3 M-parameter Llama of
../shared/bench/torch_llama.py (the same model, optimizer and step), driven in bursts on request
so that compare.py can alternate it with medrun's `train serve` a few seconds at a time.

usage: python train_torch.py [threads]
  Prints `ready`, then for each stdin line N runs one warm-up step and N timed steps and prints
  `burst N MEDIAN_MS`. Ends at end of input.
"""
import os
import statistics
import sys
import time

# torch_llama.py reads its shape from the environment when imported: 8 heads, sequences of 128
# (the reference configuration; vocabulary 4096, hidden 256, 4 layers, intermediate 688,
# batch 8 are its constants).
os.environ.setdefault("PROBE_H", "8")
os.environ.setdefault("PROBE_T", "128")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "shared", "bench"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch_llama as tl  # noqa: E402


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = tl.Llama()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    x = torch.randint(0, tl.V, (tl.B, tl.T + 1))
    inp, tgt = x[:, :-1], x[:, 1:]

    def step():
        logits = model(inp)
        loss = F.cross_entropy(logits.reshape(-1, tl.V), tgt.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        step()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        print(f"burst {n} {statistics.median(times) * 1e3:.3f}", flush=True)


if __name__ == "__main__":
    main()
