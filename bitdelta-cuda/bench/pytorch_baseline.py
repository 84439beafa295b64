#!/usr/bin/env python3
"""The PyTorch baseline of StepBenchmark: transformers' LlamaForCausalLM at the Llama-2-7B shape (random init, F16, on
the GPU, nothing downloaded) decoding with a context of 256 prompt tokens, at batch 1 and batch 16, eager (dynamic KV
cache) and compiled (static KV cache, which generate() compiles with torch.compile mode "reduce-overhead").

A decode step's time is measured through generate(): the time of generating LONG new tokens minus that of SHORT new
tokens (prompt and prefill identical), over LONG - SHORT, each the median of REPEAT runs after a warm-up run; greedy,
with min_new_tokens so that every sequence runs every step. Prints one line per configuration and a table last.

Usage on the GPU host (bench/step-benchmark-device.sh --pytorch runs it): python3 bitdelta-cuda/bench/pytorch_baseline.py
[--batches 1,16] [--modes eager,compiled] [--layers 32]. Exit status 3 when torch or transformers is missing.
"""
import argparse
import statistics
import sys
import time

try:
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM
except ImportError as error:
    print(f"pytorch_baseline: {error}: this host lacks torch or transformers, so the PyTorch baseline was not measured")
    sys.exit(3)

PROMPT = 256
SHORT, LONG, REPEAT = 8, 40, 3


def build(layers):
    config = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers, num_attention_heads=32,
                         num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-5,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)
    try:
        with torch.device("cuda"):
            model = LlamaForCausalLM(config)  # random init, created in F16 on the GPU
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def timed_generate(model, input_ids, new_tokens, **kwargs):
    torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens, do_sample=False, **kwargs)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    assert output.shape[1] == input_ids.shape[1] + new_tokens, output.shape
    return elapsed


def step_time(model, batch, mode):
    input_ids = torch.randint(3, 32000, (batch, PROMPT), device="cuda")
    kwargs = {}
    if mode == "compiled":
        kwargs["cache_implementation"] = "static"
    # Warm-up (and compilation): both lengths, since a static cache sized for SHORT and one sized for LONG are
    # different shapes, each compiled and captured on its first run.
    timed_generate(model, input_ids, LONG, **kwargs)
    timed_generate(model, input_ids, SHORT, **kwargs)
    if mode == "compiled" and not torch._dynamo.utils.counters["stats"]["unique_graphs"]:
        raise RuntimeError("generate() ran the static cache without compiling the forward pass")
    short = statistics.median(timed_generate(model, input_ids, SHORT, **kwargs) for _ in range(REPEAT))
    long = statistics.median(timed_generate(model, input_ids, LONG, **kwargs) for _ in range(REPEAT))
    return (long - short) / (LONG - SHORT)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--modes", default="eager,compiled")
    parser.add_argument("--layers", type=int, default=32)
    arguments = parser.parse_args()
    name = torch.cuda.get_device_name(0)
    print(f"pytorch_baseline: {name}, torch {torch.__version__}, transformers {transformers.__version__}, {arguments.layers} layers")
    started = time.perf_counter()
    model = build(arguments.layers)
    print(f"model built on the GPU in {time.perf_counter() - started:.1f} s")
    rows = []
    for mode in arguments.modes.split(","):
        # compiled: generate() compiles the forward pass itself when the cache is static (its compile_config:
        # "reduce-overhead", full graph); wrapping model.forward in torch.compile by hand as well makes CUDA graphs
        # read outputs that a later replay overwrote (the static cache's in-place updates).
        for batch in (int(b) for b in arguments.batches.split(",")):
            began = time.perf_counter()
            try:
                seconds = step_time(model, batch, mode)
                line = (f"| {mode} | {batch} | {seconds * 1e3:.2f} ms | {batch / seconds:.0f} tokens/s | "
                        f"{time.perf_counter() - began:.0f} s to measure |")
            except Exception as failure:  # report the configuration that failed and go on with the others
                line = f"| {mode} | {batch} | failed: {type(failure).__name__}: {str(failure).splitlines()[0][:160]} | | |"
            print(line, flush=True)
            rows.append(line)
    print()
    print(f"== pytorch_baseline: {name}, LlamaForCausalLM F16 (Llama-2-7B shape, {arguments.layers} layers), "
          f"context {PROMPT}, step = (generate {LONG} - generate {SHORT} new tokens) / {LONG - SHORT}")
    print("| mode | batch | step | tokens/s | |")
    print("| --- | --- | --- | --- | --- |")
    for line in rows:
        print(line)


if __name__ == "__main__":
    main()
