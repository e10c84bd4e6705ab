"""Train the small Qwen2 model that ships in assets/ (reproducible: fixed seed, fixed data, fixed steps).

Data: the Python standard library's own sources and its pydoc topics, which ship with every CPython.
Files are split into train / held-out by a hash of their path, so the held-out text is never trained on.

    python scripts/train_tiny_qwen.py --out assets/qwen2-tiny-stdlib --steps 1500
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import re
import sys
import sysconfig
import time
from pathlib import Path

import torch

SEED = 0
VOCAB_SIZE = 8192
SEQ_LEN = 256
BATCH = 16
HELDOUT_EVERY = 40  # about 1 file in 40 is held out
HELDOUT_CHARS = 60_000
CALIB_SAMPLES = 48  # GPTQ calibration paragraphs, taken from the training text
CALIB_CHARS = 1200

MODEL_SHAPE = dict(
    hidden_size=384,
    intermediate_size=1024,
    num_hidden_layers=8,
    num_attention_heads=6,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    tie_word_embeddings=True,
)


def corpus_files() -> list[Path]:
    """Stdlib .py files (tests and site-packages left out), in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = ("site-packages", "test", "tests", "idle_test", "__pycache__")
    files = [p for p in root.rglob("*.py") if not any(part in skip for part in p.relative_to(root).parts)]
    return sorted(files, key=lambda p: str(p.relative_to(root)))


def is_heldout(rel_path: str) -> bool:
    return int(hashlib.sha1(rel_path.encode()).hexdigest(), 16) % HELDOUT_EVERY == 0


def split_corpus() -> tuple[list[str], str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    train, heldout = [], []
    for path in corpus_files():
        rel = str(path.relative_to(root))
        text = path.read_text(encoding="utf-8", errors="replace")
        (heldout if is_heldout(rel) else train).append(text)
    return train, "\n".join(heldout)[:HELDOUT_CHARS]


def calibration_text(train: list[str]) -> str:
    """Evenly spaced excerpts of the training text, separated by blank lines (one GPTQ sample each)."""
    step = max(1, len(train) // CALIB_SAMPLES)
    picks = [t for t in train[::step] if len(t) >= CALIB_CHARS][:CALIB_SAMPLES]
    return "\n\n".join(re.sub(r"\n\s*\n", "\n", t[:CALIB_CHARS]) for t in picks)


def write_texts(out: Path, train: list[str], heldout: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "heldout.txt").write_text(heldout, encoding="utf-8")
    (out / "calib.txt").write_text(calibration_text(train), encoding="utf-8")


CARD = """# qwen2-tiny-stdlib

A small **Qwen2ForCausalLM** (`model_type: qwen2`) that ships with qadvisor so every measurement runs on a
real Qwen2-architecture model without a model hub. Trained from scratch by `scripts/train_tiny_qwen.py`
(seed {seed}); rerun it to reproduce this checkpoint.

| | |
|---|---|
| parameters | {parameters:,} (hidden {hidden_size}, {num_hidden_layers} layers, {num_attention_heads} heads / {num_key_value_heads} KV heads, MLP {intermediate_size}, tied embeddings) |
| vocabulary | {vocab} byte-level BPE tokens, trained with `tokenizers` on the training split |
| weights | bf16 safetensors (the dtype Qwen ships in) |
| training data | the Python {python} standard library's own `.py` sources (tests and site-packages left out), {train_tokens:,} tokens |
| held-out data | `heldout.txt`: files whose path hash falls in 1 of {heldout_every} buckets, never trained on ({heldout_tokens:,} tokens) |
| calibration | `calib.txt`: {calib} excerpts of the *training* split, one GPTQ sample per paragraph |
| training | {steps} steps × batch {batch} × {seq_len} tokens, AdamW lr {lr} with warm-up and cosine decay, {threads} CPU threads, torch {torch}, {train_seconds} s |
| held-out perplexity | **{heldout_ppl_fp32:.2f}** (fp32) vs **{unigram_ppl:.2f}** for a unigram baseline (add-one smoothed token frequencies of the training split) |

It is a measuring instrument, not a useful assistant: it continues Python code.
"""


def write_card(out: Path, stats: dict) -> None:
    calib = len((out / "calib.txt").read_text(encoding="utf-8").split("\n\n"))
    text = CARD.format(**stats, **MODEL_SHAPE, vocab=VOCAB_SIZE, heldout_every=HELDOUT_EVERY, calib=calib)
    (out / "README.md").write_text(text, encoding="utf-8")


def train_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def lr_at(step: int, steps: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def eval_ppl(model, ids: torch.Tensor) -> float:
    model.eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, SEQ_LEN):
            chunk = ids[start : start + SEQ_LEN + 1]
            if len(chunk) < 2:
                break
            logits = model(chunk[None, :-1]).logits[0]
            nll += torch.nn.functional.cross_entropy(logits, chunk[1:], reduction="sum").item()
            count += len(chunk) - 1
    model.train()
    return math.exp(nll / count)


def unigram_ppl(train_ids: torch.Tensor, eval_ids: torch.Tensor) -> float:
    counts = torch.bincount(train_ids, minlength=VOCAB_SIZE).double() + 1.0  # add-one smoothing
    logp = torch.log(counts / counts.sum())
    return math.exp(-logp[eval_ids[1:]].mean().item())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("assets/qwen2-tiny-stdlib"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--texts-only", action="store_true", help="write heldout.txt and calib.txt, do not train")
    ap.add_argument("--card-only", action="store_true", help="rewrite README.md from training_stats.json")
    args = ap.parse_args()
    if args.card_only:
        write_card(args.out, json.loads((args.out / "training_stats.json").read_text()))
        return
    if args.texts_only:
        write_texts(args.out, *split_corpus())
        return

    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    train_texts, heldout = split_corpus()
    tok = train_tokenizer(train_texts)
    eos = tok.token_to_id("<|endoftext|>")
    train_ids = []
    for text in train_texts:
        train_ids.extend(tok.encode(text).ids + [eos])
    train_ids = torch.tensor(train_ids, dtype=torch.long)
    eval_ids = torch.tensor(tok.encode(heldout).ids, dtype=torch.long)
    print(f"train tokens {len(train_ids):,}  held-out tokens {len(eval_ids):,}  ({time.time() - t0:.0f}s)", flush=True)

    config = Qwen2Config(vocab_size=VOCAB_SIZE, bos_token_id=eos, eos_token_id=eos, rope_theta=10000.0, **MODEL_SHAPE)
    model = Qwen2ForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    print(f"parameters {params:,}", flush=True)

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr)
        starts = torch.randint(0, len(train_ids) - SEQ_LEN, (BATCH,), generator=gen)
        batch = torch.stack([train_ids[s : s + SEQ_LEN] for s in starts.tolist()])
        loss = model(batch, labels=batch).loss  # HF shifts the labels itself
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:5d}/{args.steps}  loss {loss.item():.3f}  {time.time() - t0:.0f}s", flush=True)

    ppl = eval_ppl(model, eval_ids)
    uni = unigram_ppl(train_ids, eval_ids)
    print(f"held-out perplexity {ppl:.2f} (unigram baseline {uni:.2f})", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(args.out)  # bf16: the dtype Qwen ships its checkpoints in
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(args.out)
    write_texts(args.out, train_texts, heldout)
    stats = {
        "parameters": params,
        "train_tokens": len(train_ids),
        "heldout_tokens": len(eval_ids),
        "steps": args.steps,
        "batch": BATCH,
        "seq_len": SEQ_LEN,
        "lr": args.lr,
        "seed": SEED,
        "heldout_ppl_fp32": round(ppl, 3),
        "unigram_ppl": round(uni, 3),
        "train_seconds": round(time.time() - t0),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": args.threads,
    }
    (args.out / "training_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    write_card(args.out, stats)
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    sys.exit(main())
