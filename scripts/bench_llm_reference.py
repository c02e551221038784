#!/usr/bin/env python3
"""Reference speeds for docs/benchmarks-llm.md: llama.cpp and PyTorch transformers on the
same GGUF, the same prompt and the same token counts as `examples/bench_lm.rs`.

    pip install llama-cpp-python==0.3.36             # builds llama.cpp from source (~10 min on 2 cores)
    pip install torch transformers gguf accelerate    # optional: the PyTorch reference
    python3 scripts/bench_llm_reference.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]
        [--threads 1,2] [--gen 128] [--repeats 3]

Prompt: tests/fixtures/bench_prompt.txt, tokenized with special tokens (116 tokens for
SmolLM2; dialogym's tokenizer gives the same ids, tests/llm.rs checks it). Prefill: one
eval of the whole prompt. Generation: `--gen` greedy tokens, one eval each, end tokens
ignored. Medians of `--repeats` runs, tokens/s.
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def bench_llama_cpp(model, prompt, threads, gen, repeats):
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(model), n_ctx=1024, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    runs = []
    for _ in range(repeats + 1):  # the first run warms up
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids)
        prefill = len(ids) / (time.perf_counter() - t)
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        t = time.perf_counter()
        for _ in range(gen):
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        runs.append((prefill, gen / (time.perf_counter() - t)))
    runs = runs[1:]
    return len(ids), statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), runs


def bench_transformers(model, prompt, threads, gen, repeats):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(str(model.parent), gguf_file=model.name)
    lm = AutoModelForCausalLM.from_pretrained(str(model.parent), gguf_file=model.name, torch_dtype=torch.float32)
    lm.eval()
    from llama_cpp import Llama

    ids = Llama(model_path=str(model), vocab_only=True, verbose=False).tokenize(
        prompt.encode("utf-8"), add_bos=False, special=True
    )
    x = torch.tensor([ids])
    runs = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            t = time.perf_counter()
            out = lm(x, use_cache=True)
            prefill = len(ids) / (time.perf_counter() - t)
            past = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            t = time.perf_counter()
            for _ in range(gen):
                out = lm(nxt, past_key_values=past, use_cache=True)
                past = out.past_key_values
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            runs.append((prefill, gen / (time.perf_counter() - t)))
    del tok
    runs = runs[1:]
    return len(ids), statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-transformers", action="store_true")
    a = ap.parse_args()
    model = Path(a.model)
    prompt = (ROOT / "tests/fixtures/bench_prompt.txt").read_text()
    for threads in [int(t) for t in a.threads.split(",")]:
        n, pre, gen, runs = bench_llama_cpp(model, prompt, threads, a.gen, a.repeats)
        print(
            f"llama.cpp {threads} thr: prompt {n} tokens: {pre:.1f} tok/s | generation {a.gen} tokens: {gen:.1f} tok/s"
            f" (medians of {a.repeats}; runs {[f'{p:.1f}/{g:.1f}' for p, g in runs]})"
        )
        if a.skip_transformers:
            continue
        try:
            n, pre, gen, runs = bench_transformers(model, prompt, threads, a.gen, a.repeats)
            print(
                f"transformers F32 {threads} thr: prompt {n} tokens: {pre:.1f} tok/s | generation {a.gen} tokens: {gen:.1f} tok/s"
                f" (medians of {a.repeats}; runs {[f'{p:.1f}/{g:.1f}' for p, g in runs]})"
            )
        except ImportError as e:
            print(f"transformers {threads} thr: not measured ({e}); pip install torch transformers gguf accelerate")


if __name__ == "__main__":
    main()
