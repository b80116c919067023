#!/usr/bin/env python3
"""medrun against the Python stack on this machine: training tokens/s (the 5.3 M-parameter
Llama of benches/train.rs vs ../shared/bench/torch_llama.py, through benches/peer/train_torch.py),
scoring and greedy-generation tokens/s on SmolLM2-135M-Instruct (benches/score.rs vs
benches/peer/score_transformers.py), and the peak RSS of each process.

In each round both sides start once and stay up, and the work alternates between them in short
requests (a burst of training steps, a chunk of 10 questions, one generation prompt), so that
the machine's drift, slow next to a request of a few seconds, hits both alike. Prints each
request pair's ratio, one table per round (totals over the round), the spread of the round
ratios and the spread over every request pair.

usage: python3 benches/compare.py [--setup] [--rounds N] [--venv DIR] [--only train|score]
                                  [--pairs P] [--burst S]

  --setup    install the peer (../shared/bench/torch-peer-setup.sh, about 4 GB, once) and fetch
             SmolLM2 (scripts/fetch-smollm2.sh) first
  --rounds   rounds per benchmark (default 3); each restarts both processes
  --venv     the peer's virtual environment (default /tmp/torch-peer)
  --pairs    training: burst pairs per round (default 6); both training processes stay up for
             the round and alternate bursts of S steps (--burst, default 10), so the machine's
             drift hits both alike; the summary gives the spread over every pair

Both sides use 2 threads and f32. Each run waits for a quiet machine first
(../shared/bench/quiet.sh) when that script is there. Run by hand, never in CI.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench")
THREADS = "2"


def quiet():
    q = os.path.join(SHARED, "quiet.sh")
    if os.access(q, os.X_OK):
        subprocess.run([q, "120"], capture_output=True)


def bench_binaries():
    """Builds the benchmarks and returns {name: executable}."""
    p = subprocess.run(
        ["cargo", "bench", "--locked", "--bench", "train", "--bench", "score", "--no-run",
         "--message-format=json"],
        cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"error: building the benchmarks failed:\n{p.stderr}")
    out = {}
    for line in p.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        exe = msg.get("executable")
        if exe and msg.get("target", {}).get("kind") == ["bench"]:
            out[msg["target"]["name"]] = exe
    return out


TRAIN_TOKENS = 8 * 128  # batch 8 x sequences of 128, both sides
PAIR_RATIOS = []  # medrun ÷ PyTorch training speed of every burst pair, over all rounds


class Bursts:
    """A training process that runs bursts of steps on request (`burst N MEDIAN_MS` replies)."""

    def __init__(self, cmd, env):
        e = dict(os.environ)
        e.update(env)
        for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
            e.pop(k, None)
        self.p = subprocess.Popen(["/usr/bin/time", "-f", "PEAK_RSS_KB %M"] + cmd, cwd=ROOT, env=e,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.cmd = cmd
        self.expect("ready")

    def expect(self, word):
        while True:
            line = self.p.stdout.readline()
            if not line:
                sys.exit(f"error: {' '.join(self.cmd)} ended early:\n{self.p.stderr.read()}")
            if line.startswith(word):
                return line.split()

    def request(self, line):
        """Sends one request line; returns the fields of the `burst ...` reply."""
        self.p.stdin.write(f"{line}\n")
        self.p.stdin.flush()
        return self.expect("burst")

    def burst(self, n):
        return float(self.request(n)[2])

    def close(self):
        """Ends the process; returns its peak RSS in MB."""
        self.p.stdin.close()
        self.p.stdout.read()
        err = self.p.stderr.read()
        self.p.wait()
        m = re.search(r"PEAK_RSS_KB (\d+)", err)
        return int(m.group(1)) / 1024 if m else float("nan")


def train_round(exe, py, pairs=6, steps=10):
    """Both sides start once and stay up; then `pairs` pairs of bursts of `steps` steps
    alternate between them (medrun first in even pairs, PyTorch first in odd ones), so the
    machine's drift, which is slow next to a burst of a few seconds, hits both sides alike."""
    quiet()
    med = Bursts([exe, "serve"], {"RAYON_NUM_THREADS": THREADS})
    peer = Bursts([py, os.path.join(ROOT, "benches", "peer", "train_torch.py"), THREADS], {})
    m_ms, p_ms = [], []
    for i in range(pairs):
        order = [(med, m_ms), (peer, p_ms)]
        if i % 2:
            order.reverse()
        for side, out in order:
            out.append(side.burst(steps))
        ratio = p_ms[-1] / m_ms[-1]
        PAIR_RATIOS.append(ratio)
        print(f"  pair {i + 1}: medrun {m_ms[-1]:.1f} ms/step, PyTorch {p_ms[-1]:.1f} ms/step, "
              f"medrun ÷ PyTorch {ratio:.2f}", flush=True)
    rss, prss = med.close(), peer.close()
    m_tps = TRAIN_TOKENS / (statistics.median(m_ms) / 1e3)
    p_tps = TRAIN_TOKENS / (statistics.median(p_ms) / 1e3)
    return [("training tokens/s (5.3 M Llama, full fine-tuning, median over the pairs)", m_tps, p_tps),
            ("training peak RSS MB (lower is better)", rss, prss)]


SCORE_PAIRS = {}  # metric -> medrun ÷ transformers of every request pair, over all rounds
QUESTIONS, CHUNK, PROMPTS = 50, 10, 3


def score_round(exe, py):
    """Both sides load the model once and stay up; then each chunk of CHUNK questions is
    scored by both, section by section (medrun first for even chunks, transformers first for
    odd ones), and one generation prompt per chunk, so the machine's drift hits both alike.
    transformers' time per chunk is the better of its two ways (batch 1, a question's four
    choices batched), and medrun's the better of two runs of the same mode, so each side's
    figure is the minimum of two timings."""
    quiet()
    med = Bursts([exe, "serve"], {"RAYON_NUM_THREADS": THREADS})
    peer = Bursts([py, os.path.join(ROOT, "benches", "peer", "score_transformers.py"), THREADS,
                   "serve"], {"HF_HUB_OFFLINE": "1"})
    totals = {}  # metric -> [medrun tokens, medrun s, peer tokens, peer s]

    def add(metric, m, p):
        t = totals.setdefault(metric, [0, 0.0, 0, 0.0])
        for i, v in enumerate([int(m[2]), float(m[3]), int(p[2]), float(p[3])]):
            t[i] += v
        ratio = (int(m[2]) / float(m[3])) / (int(p[2]) / float(p[3]))
        SCORE_PAIRS.setdefault(metric, []).append(ratio)
        return ratio

    for c, a in enumerate(range(0, QUESTIONS, CHUNK)):
        z = min(a + CHUNK, QUESTIONS)
        g = c % PROMPTS
        line = []
        for key, label in [("letters", "MMLU-style letters"), ("text", "answer text"), (None, None)]:
            if key is None:
                m_req, p_req = [f"generate {g} {g + 1}"], f"generate {g} {g + 1}"
            else:
                m_req, p_req = [f"{key}-whole {a} {z}", f"{key}-shared {a} {z}"], f"{key} {a} {z}"
            if c % 2 == 0:
                ms = [med.request(r) for r in m_req]
                p = peer.request(p_req)
            else:
                p = peer.request(p_req)
                ms = [med.request(r) for r in m_req]
            if key is None:
                line.append(f"generation {add('greedy generation tokens/s, batch 1', ms[0], p):.2f}")
            else:
                w = add(f"scoring tokens/s, {label}, whole sequences", ms[0], p)
                sh = add(f"scoring tokens/s, {label}, prompt shared", ms[1], p)
                line.append(f"{key} whole {w:.2f} shared {sh:.2f}")
        print(f"  questions {a}..{z}: medrun ÷ transformers: " + ", ".join(line), flush=True)
    rss, prss = med.close(), peer.close()
    rows = [(k, t[0] / t[1], t[2] / t[3]) for k, t in totals.items()]
    rows.append(("scoring + generation peak RSS MB (lower is better)", rss, prss))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setup", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--venv", default="/tmp/torch-peer")
    ap.add_argument("--only", choices=["train", "score"])
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--burst", type=int, default=10)
    a = ap.parse_args()
    py = os.path.join(a.venv, "bin", "python")
    if a.setup:
        subprocess.run([os.path.join(SHARED, "torch-peer-setup.sh"), a.venv], check=True)
        subprocess.run(["bash", "scripts/fetch-smollm2.sh"], cwd=ROOT, check=True)
    if not os.access(py, os.X_OK):
        sys.exit(f"error: no peer venv at {a.venv}; run with --setup (or ../shared/bench/torch-peer-setup.sh {a.venv})")
    exes = bench_binaries()
    ratios = {}
    for r in range(1, a.rounds + 1):
        rows = []
        if a.only in (None, "train"):
            print(f"\n## round {r}: training bursts", flush=True)
            rows += train_round(exes["train"], py, a.pairs, a.burst)
        if a.only in (None, "score"):
            print(f"\n## round {r}: scoring and generation requests", flush=True)
            rows += score_round(exes["score"], py)
        print(f"\n## round {r} (2 threads, f32, back to back)\n")
        print("| | medrun | peer | medrun ÷ peer |")
        print("|---|---|---|---|")
        for name, m, p in rows:
            ratio = m / p
            ratios.setdefault(name, []).append(ratio)
            print(f"| {name} | {m:,.1f} | {p:,.1f} | {ratio:.2f} |")
        sys.stdout.flush()
    print(f"\n## over {a.rounds} rounds\n")
    print("| | min | median | max |")
    print("|---|---|---|---|")
    for name, v in ratios.items():
        print(f"| {name} | {min(v):.2f} | {statistics.median(v):.2f} | {max(v):.2f} |")
    pairs = dict(SCORE_PAIRS)
    if PAIR_RATIOS:
        pairs["training speed"] = PAIR_RATIOS
    if pairs:
        print("\n## every request pair\n")
        print("| | pairs | min | median | max |")
        print("|---|---|---|---|---|")
        for name, v in pairs.items():
            print(f"| {name} | {len(v)} | {min(v):.2f} | {statistics.median(v):.2f} | {max(v):.2f} |")


if __name__ == "__main__":
    main()
