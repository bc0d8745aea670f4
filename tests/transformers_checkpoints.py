"""Tiny checkpoints for the transformers engine: the random-weight ones of
``benchmarks/tiny_checkpoints.py`` in the layout transformers saves, each with DeepSeek's
real tokenizer and the real chat template of its family (from llama.cpp's
``models/templates``), and one whose weights are set by hand to write a fixed answer.

The rigged one is a real Llama checkpoint run by the real engine: its attention and MLP
outputs are zero, so each position's hidden state is its token's embedding; the chain's
tokens have orthogonal embeddings and the output head maps each to the next one with a
margin no sampling overcomes. The engine then writes the chain whatever the temperature.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.tiny_checkpoints import COMMON, V4, build_checkpoint, tokenizer_files

TEMPLATES = {
    "deepseek-v2": "deepseek-ai-DeepSeek-V3.1.jinja",
    "deepseek-v3": "deepseek-ai-DeepSeek-V3.1.jinja",
    "deepseek-v32": "deepseek-ai-DeepSeek-V3.2.jinja",
    "deepseek-v4": "deepseek-ai-DeepSeek-V4.jinja",
    "qwen2": "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
    "llama": "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
}
R1_TEMPLATE = "llama-cpp-deepseek-r1.jinja"
LOGIT_MARGIN = 80.0


def with_template(folder: Path, template: Path) -> Path:
    settings_path = folder / "tokenizer_config.json"
    settings = json.loads(settings_path.read_text())
    settings["chat_template"] = template.read_text()
    settings_path.write_text(json.dumps(settings))
    return folder


def copy_tokenizer(tokenizer: Path, folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((tokenizer / name).read_bytes())


def transformers_checkpoint(architecture: str, work: Path, templates: Path) -> Path:
    """The tiny ``architecture`` as transformers saves it (V4 included: the builder's V4 is
    DeepSeek's released layout, which transformers does not load), with its template."""
    folder = work / f"tiny-{architecture}"
    tokenizer = tokenizer_files(work)
    if architecture == "deepseek-v4":
        import torch
        import transformers

        torch.manual_seed(0)
        config = transformers.DeepseekV4Config(**V4)
        transformers.DeepseekV4ForCausalLM(config).save_pretrained(folder)
        copy_tokenizer(tokenizer, folder)
    else:
        build_checkpoint(architecture, folder, tokenizer)
    return with_template(folder, templates / TEMPLATES[architecture])


def rigged_checkpoint(work: Path, templates: Path, prompt_end: str, answer: str) -> Path:
    """A tiny Llama that answers ``answer`` (then its end-of-sequence token) to any prompt
    ending in ``prompt_end``, under DeepSeek-R1's template. Every token of ``prompt_end``'s
    last one and ``answer`` must differ: each one alone decides the next."""
    import torch
    import transformers

    tokenizer_folder = tokenizer_files(work)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_folder)
    last = tokenizer(prompt_end, add_special_tokens=False)["input_ids"][-1]
    chain = [last, *tokenizer(answer, add_special_tokens=False)["input_ids"]]
    chain.append(tokenizer.eos_token_id)
    hidden = COMMON["hidden_size"]
    if len(set(chain)) != len(chain) or len(chain) > hidden:
        raise ValueError(f"the chain's tokens must be distinct and at most {hidden}: {chain}")
    config = transformers.LlamaConfig(
        **COMMON | {"num_hidden_layers": 1},
        num_key_value_heads=2,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for i, token in enumerate(chain[:-1]):
            model.model.embed_tokens.weight[token] = torch.nn.functional.one_hot(
                torch.tensor(i), hidden
            ).float()
            # The final norm scales the one-hot row to sqrt(hidden): this is the margin.
            model.lm_head.weight[chain[i + 1], i] = LOGIT_MARGIN / hidden**0.5
    folder = work / "rigged-r1"
    model.save_pretrained(folder)
    copy_tokenizer(tokenizer_folder, folder)
    return with_template(folder, templates / R1_TEMPLATE)
