# Loads the folder written by `bitdelta merge` with transformers and compares its logits on the golden input ids
# with the golden BitDelta-initial logits (PyTorch's own W_base + a*S in fp32), and the original fine-tune's
# logits with the golden fine-tune logits as a control.
import sys, torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
root = sys.argv[1]
golden = load_file(f"{root}/tinyllama-shakespeare.safetensors")
ids = golden["input_ids"].long().unsqueeze(0)
def rel(a, b):
    return ((a - b).norm() / b.norm()).item()
model = AutoModelForCausalLM.from_pretrained(f"{root}/merged", torch_dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained(f"{root}/merged")
with torch.no_grad():
    out = model(ids).logits[0]
print("merged folder loads with", type(model).__name__, "and tokenizer", type(tok).__name__, "vocab", tok.vocab_size)
print("relative error of merged-model logits vs golden logits_bitdelta_initial:", rel(out, golden["logits_bitdelta_initial"]))
print("relative error of merged-model logits vs golden logits_finetuned (expected ~BitDelta's gap):", rel(out, golden["logits_finetuned"]))
print("merged-model argmax agreement with bitdelta_initial:", (out.argmax(-1) == golden["logits_bitdelta_initial"].argmax(-1)).float().mean().item())
