#!/usr/bin/env python3
"""Hashing benchmarks for issue #2, run by hand (not in CI):

1. `medrun lock --verify` (no state cache) on a 1 GiB page-cached text file vs `b3sum` on the
   same file, back to back, best of N each. Target: medrun >= 90% of b3sum's throughput.
2. A no-op `medrun plan` on a locked spec over that 1 GiB of unchanged data (state cache warm).
   Target: < 100 ms.

Usage: python3 benches/lock.py [--size-mib 1024] [--repeat 5] [--bin target/release/medrun]
Build first: cargo build --release. Needs b3sum (cargo install b3sum) on PATH.
Run on a quiet machine (../shared/bench/quiet.sh).
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time

def timed(cmd, cwd, env=None):
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"{cmd} failed: {r.stderr.decode()}")
    return dt

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--bin", default=os.path.abspath("target/release/medrun"))
    a = ap.parse_args()
    b3 = shutil.which("b3sum") or os.path.expanduser("~/.cargo/bin/b3sum")
    if not os.path.exists(b3):
        sys.exit("b3sum not found: cargo install b3sum")
    d = tempfile.mkdtemp(prefix="medrun-bench-")
    os.makedirs(f"{d}/runs"); os.makedirs(f"{d}/data")
    line = b"Community-acquired pneumonia presents with fever, productive cough and pleuritic chest pain; amoxicillin is a first-line choice.\n"
    size = a.size_mib << 20
    with open(f"{d}/data/big.txt", "wb") as f:
        block = line * (8 << 20 // len(line))
        written = 0
        while written < size:
            chunk = block[: size - written]
            f.write(chunk); written += len(chunk)
    with open(f"{d}/runs/bench.yaml", "w") as f:
        f.write("""version: 1
name: bench
seed: 1
model:
  family: llama
  init: {hidden_size: 64, layers: 1, heads: 4, intermediate_size: 128}
tokenizer:
  train: {dataset: corpus, vocab_size: 512}
datasets:
  corpus: {path: data/big.txt, format: text}
stages:
  - {name: pt, kind: pt, datasets: [corpus], max_steps: 1, batch_size: 1, max_len: 16, optimizer: {lr: 1e-3}}
""")
    # Age the file so the state cache may keep it (racy-clean rule), and warm the page cache.
    old = time.time() - 60
    os.utime(f"{d}/data/big.txt", (old, old))
    with open(f"{d}/data/big.txt", "rb") as f:
        while f.read(16 << 20):
            pass
    env = dict(os.environ, MEDRUN_STORE=f"{d}/store")
    b3_times, lock_times = [], []
    for _ in range(a.repeat):
        b3_times.append(timed([b3, "--num-threads", "2", "data/big.txt"], d))
        lock_times.append(timed([a.bin, "lock", "--verify"], d, env))
    gib = size / (1 << 30)
    b3_best, lock_best = min(b3_times), min(lock_times)
    print(f"file: {a.size_mib} MiB, page-cached; best of {a.repeat}, back to back")
    print(f"b3sum (2 threads):    best {b3_best*1000:7.1f} ms  median {statistics.median(b3_times)*1000:7.1f} ms  {gib/b3_best:5.2f} GiB/s")
    print(f"medrun lock --verify: best {lock_best*1000:7.1f} ms  median {statistics.median(lock_times)*1000:7.1f} ms  {gib/lock_best:5.2f} GiB/s")
    print(f"medrun / b3sum throughput: {b3_best/lock_best*100:.1f}% (target >= 90%)")
    # No-op plan with a warm state cache.
    timed([a.bin, "lock"], d, env)  # populates the state cache
    plan_times = [timed([a.bin, "plan", "runs/bench.yaml"], d, env) for _ in range(10)]
    print(f"no-op plan (1 GiB locked, cache warm): best {min(plan_times)*1000:.1f} ms  median {statistics.median(plan_times)*1000:.1f} ms (target < 100 ms)")
    shutil.rmtree(d)

if __name__ == "__main__":
    main()
