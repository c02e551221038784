#!/usr/bin/env python3
"""Records reference token ids and chat-template renderings for tests/llm.rs.

Reference tokenizer: llama.cpp through llama-cpp-python
(`Llama.tokenize(text, add_bos=False, special=True)`), on the same GGUF file dialogym
loads. Reference template rendering: jinja2's sandbox configured as Hugging Face
transformers renders chat templates (trim_blocks, lstrip_blocks, loopcontrols,
raise_exception), on the template stored in the GGUF metadata.

Run once (the outputs are committed):

    pip install llama-cpp-python==0.3.36 jinja2
    scripts/install-model.sh
    python3 scripts/make_tokenizer_fixture.py models/SmolLM2-135M-Instruct.Q4_1.gguf

Writes tests/fixtures/tokenizer_ids.json, tests/fixtures/chat_template.json and
tests/fixtures/reference_logits.json (llama.cpp's next-token logits after a few prompts: the
32 highest, for checking dialogym's decoder against llama.cpp on the Q4_1 weights as shipped).
"""

import json
import sys
from pathlib import Path

import numpy as np
import jinja2
import jinja2.sandbox
from llama_cpp import Llama

ROOT = Path(__file__).resolve().parent.parent

TEXTS = [
    # plain English, casing, contractions
    "Hello world",
    "Is it alive?",
    "Is it an animal?",
    "Is it bigger than a breadbox?",
    "I can't answer that.",
    "Yes! You got it.",
    "You're thinking of something I'd never guess, aren't you? We'll see.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "the quick brown fox jumps over the lazy dog",
    " leading space",
    "trailing space ",
    "  two leading spaces",
    "tabs\tand\tmore\ttabs",
    "line one\nline two\n\nline four",
    "windows\r\nline endings\r\n",
    "    indented code",
    "",
    " ",
    "\n",
    # digits: llama.cpp's smollm pre-tokenizer splits every digit
    "0",
    "42",
    "1234567890",
    "3.14159",
    "-273.15",
    "In 2024, 1,000,000 people paid $19.99 each.",
    "Call 555-0123 at 10:30pm.",
    "version 0.11.1 and 1e-5",
    "٣ ٤ ٥ arabic-indic digits",
    "①②③ circled numbers, ½ and ¾",
    # punctuation and symbols
    "!!!???...",
    "\"quoted\" 'single' `back`",
    "(parens) [brackets] {braces} <angles>",
    "a+b=c; x*y/z; 100% & more #tag @user ~tilde ^caret |pipe \\backslash",
    "—em dash– en dash … ellipsis",
    "http://example.com/path?query=1&x=2#frag",
    "snake_case_name camelCaseName kebab-case-name",
    'fn main() { println!("{}", 1 + 2); }',
    "def f(x):\n    return x ** 2  # square",
    '{"name": "dog", "persona": "curt"}',
    # unicode
    "café naïve résumé façade",
    "Größe Straße Übermut",
    "Привет, как дела?",
    "こんにちは世界",
    "你好，世界！我在想一个东西。",
    "안녕하세요",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "emoji 🐶🐱🦊 and 👍🏽 and 👨‍👩‍👧",
    "mixed: dog/犬/собака/🐕",
    "\u00a0non-breaking\u00a0spaces\u2003em space",
    "zero\u200bwidth",
    # chat special tokens (parsed as one id each with special=True)
    "<|im_start|>system\nYou are playing 20 Questions.<|im_end|>\n",
    "<|im_start|>user\nIs it alive?<|im_end|>\n<|im_start|>assistant\nYes.<|im_end|>\n",
    "<|im_start|>assistant\n",
    "<|endoftext|>",
    "text<|im_end|>text",
    "<|im_start|><|im_end|>",
    "<|im_start |> not special",
    "<repo_name>dialogym<file_sep>",
    # the kind of prompts dialogym sends
    "You are playing 20 Questions. You are thinking of this object: Dog (category: Animals). "
    "The other player asks yes/no questions to find it. Answer each question truthfully about "
    "a typical Dog with exactly one of: Yes. No. Sometimes. Never say what the object is.",
    "Invent a player for the game 20 Questions. Reply with only a JSON object like "
    '{"name": "<the object>", "persona": "<one sentence about how the player talks>"}.',
]

LOGIT_PROMPTS = [
    "<|im_start|>user\nIs a penguin a bird?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are playing 20 Questions. You are thinking of this object: Dog (category: Animals).<|im_end|>\n"
    "<|im_start|>user\nIs it alive?<|im_end|>\n<|im_start|>assistant\n",
    "The capital of France is",
]

CHATS = [
    {
        "messages": [
            {"role": "system", "content": "You are playing 20 Questions. You are thinking of this object: Dog (category: Animals)."},
            {"role": "user", "content": "Is it alive?"},
        ],
        "add_generation_prompt": True,
    },
    {
        "messages": [
            {"role": "system", "content": "You are playing 20 Questions. Ask one short yes/no question per turn."},
            {"role": "user", "content": "I am thinking of something. Ask your first yes/no question."},
            {"role": "assistant", "content": "Is it alive?"},
            {"role": "user", "content": "Yes."},
            {"role": "assistant", "content": "Is it an animal?"},
            {"role": "user", "content": "No."},
        ],
        "add_generation_prompt": True,
    },
    {
        # No system message: SmolLM2's template injects its own.
        "messages": [{"role": "user", "content": "Hi there\n  with spaces  "}],
        "add_generation_prompt": False,
    },
    {
        "messages": [
            {"role": "system", "content": "Unicode: café 你好 🐶"},
            {"role": "user", "content": "Digits 12345 and <|im_start|> in text"},
        ],
        "add_generation_prompt": True,
    },
]


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def render(template, chat, bos, eos):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=chat["messages"],
        add_generation_prompt=chat["add_generation_prompt"],
        bos_token=bos,
        eos_token=eos,
    )


def main():
    model_path = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf")
    llm = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    texts = []
    for t in TEXTS:
        ids = llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)
        texts.append({"text": t, "ids": ids})
    meta = llm.metadata
    template = meta["tokenizer.chat_template"]

    def tok(key):
        i = meta.get(key)
        return llm.detokenize([int(i)], special=True).decode("utf-8") if i is not None else ""

    bos, eos = tok("tokenizer.ggml.bos_token_id"), tok("tokenizer.ggml.eos_token_id")
    chats = [dict(chat, rendered=render(template, chat, bos, eos)) for chat in CHATS]
    # The rendered chats are tokenized too: the ids a model actually sees.
    for c in chats:
        texts.append({"text": c["rendered"], "ids": llm.tokenize(c["rendered"].encode("utf-8"), add_bos=False, special=True)})

    out = ROOT / "tests/fixtures"
    out.mkdir(parents=True, exist_ok=True)
    source = {"model": model_path.name, "reference": "llama-cpp-python Llama.tokenize(add_bos=False, special=True)"}
    (out / "tokenizer_ids.json").write_text(json.dumps(dict(source, texts=texts), ensure_ascii=False, indent=1) + "\n")
    source = {"model": model_path.name, "reference": "jinja2 ImmutableSandboxedEnvironment(trim_blocks, lstrip_blocks)"}
    (out / "chat_template.json").write_text(
        json.dumps(dict(source, bos_token=bos, eos_token=eos, chats=chats), ensure_ascii=False, indent=1) + "\n"
    )
    full = Llama(model_path=str(model_path), n_ctx=512, logits_all=True, n_threads=2, verbose=False)
    logits = []
    for p in LOGIT_PROMPTS:
        ids = full.tokenize(p.encode("utf-8"), add_bos=False, special=True)
        full.reset()
        full.eval(ids)
        last = np.array(full.scores[len(ids) - 1], dtype=np.float64)
        top = np.argsort(-last, kind="stable")[:32]
        logits.append({"prompt": p, "ids": ids, "top": [[int(i), float(last[i])] for i in top]})
    source = {"model": model_path.name, "reference": "llama-cpp-python 0.3.36 Llama.eval, weights as shipped (KV cache F16)"}
    (out / "reference_logits.json").write_text(json.dumps(dict(source, prompts=logits), ensure_ascii=False, indent=1) + "\n")
    print(f"{len(texts)} texts, {sum(len(t['ids']) for t in texts)} tokens, {len(chats)} chats")


if __name__ == "__main__":
    main()
