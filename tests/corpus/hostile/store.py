"""BLAKE3 (the hash of medrun's store) in plain Python, for hostile cases that rewrite the store
consistently, as someone who can write it could: `python3 store.py put STORE FILE` stores FILE
as an object and prints its id; `python3 store.py reseal STORE RECORD` seals a run record again.
Checked against medrun's own object ids by the cases that use it."""

import os
import sys

M = 0xFFFFFFFF
IV = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19]
PERM = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]
START, END, PARENT, ROOT = 1, 2, 4, 8

def rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & M

def g(s, a, b, c, d, x, y):
    s[a] = (s[a] + s[b] + x) & M; s[d] = rotr(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & M; s[b] = rotr(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b] + y) & M; s[d] = rotr(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & M; s[b] = rotr(s[b] ^ s[c], 7)

def compress(cv, block, counter, blen, flags):
    m = [int.from_bytes(block[4 * i:4 * i + 4], "little") for i in range(16)]
    s = cv[:] + IV[:4] + [counter & M, counter >> 32, blen, flags]
    for r in range(7):
        g(s, 0, 4, 8, 12, m[0], m[1]); g(s, 1, 5, 9, 13, m[2], m[3])
        g(s, 2, 6, 10, 14, m[4], m[5]); g(s, 3, 7, 11, 15, m[6], m[7])
        g(s, 0, 5, 10, 15, m[8], m[9]); g(s, 1, 6, 11, 12, m[10], m[11])
        g(s, 2, 7, 8, 13, m[12], m[13]); g(s, 3, 4, 9, 14, m[14], m[15])
        m = [m[p] for p in PERM]
    return [s[i] ^ s[i + 8] for i in range(8)]

def chunk_output(data, index):
    """(cv, block, counter, len, flags) of a chunk's last block, before the root flag."""
    blocks = [data[i:i + 64] for i in range(0, len(data), 64)] or [b""]
    cv = IV[:]
    for k, b in enumerate(blocks):
        flags = (START if k == 0 else 0) | (END if k == len(blocks) - 1 else 0)
        if k == len(blocks) - 1:
            return (cv, b.ljust(64, b"\0"), index, len(b), flags)
        cv = compress(cv, b, index, 64, flags)

def blake3(data):
    chunks = [data[i:i + 1024] for i in range(0, len(data), 1024)] or [b""]
    stack = []
    for i, c in enumerate(chunks[:-1]):
        cv, b, ctr, n, f = chunk_output(c, i)
        cv = compress(cv, b, ctr, n, f)
        total = i + 1
        while total & 1 == 0:
            right = cv
            left = stack.pop()
            cv = compress(IV, b"".join(w.to_bytes(4, "little") for w in left + right), 0, 64, PARENT)
            total >>= 1
        stack.append(cv)
    out = chunk_output(chunks[-1], len(chunks) - 1)
    while stack:
        cv, b, ctr, n, f = out
        right = compress(cv, b, ctr, n, f)
        out = (IV, b"".join(w.to_bytes(4, "little") for w in stack.pop() + right), 0, 64, PARENT)
    cv, b, ctr, n, f = out
    return b"".join(w.to_bytes(4, "little") for w in compress(cv, b, ctr, n, f | ROOT)).hex()


def object_path(store, oid):
    return os.path.join(store, "objects-v1", oid[:2], oid[2:])


def put(store, data):
    oid = blake3(data)
    path = object_path(store, oid)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(data)
    return oid


def reseal(store, record):
    data = open(record, "rb").read()
    oid = put(store, data)
    seal = record[: -len(".jsonl")] + ".seal"
    if os.path.exists(seal):
        os.chmod(seal, 0o644)
        os.remove(seal)
    with open(seal, "w", encoding="utf-8") as f:
        f.write(oid + "\n")
    return oid


if __name__ == "__main__":
    cmd, store, path = sys.argv[1:4]
    if cmd == "put":
        print(put(store, open(path, "rb").read()))
    elif cmd == "reseal":
        print(reseal(store, path))
    else:
        sys.exit(f"unknown command {cmd}")
