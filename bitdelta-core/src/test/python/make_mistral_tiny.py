# Builds the mistral-tiny test fixture (seeded random weights, stored as F16) and its golden logits from
# transformers' MistralForCausalLM in float32 with eager attention. Sequence 48 > sliding_window 16, GQA 4/2.
import json, os, shutil, sys
import torch
import transformers
from safetensors.torch import save_file
from transformers import MistralConfig, MistralForCausalLM
from fixture_weights import randomize

SEED = 20261122
# Run on the GPU host as: OUT=DIR python3 make_mistral_tiny.py; expects mistral-tiny/config.json beside it.
here = os.path.dirname(os.path.abspath(__file__))
out = os.environ["OUT"]
folder = os.path.join(out, "mistral-tiny")
os.makedirs(folder, exist_ok=True)
print("torch", torch.__version__, "transformers", transformers.__version__)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

torch.manual_seed(SEED)
config = MistralConfig.from_pretrained(os.path.join(here, "mistral-tiny"))
model = MistralForCausalLM(config)
randomize(model)  # after the constructor's own draws, as the bundled fixture was made
state = {name: tensor.detach().to(torch.float16).contiguous() for name, tensor in model.state_dict().items()}
print("tensors", {name: tuple(t.shape) for name, t in state.items()})
save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
shutil.copy(os.path.join(here, "mistral-tiny", "config.json"), os.path.join(folder, "config.json"))

generator = torch.Generator().manual_seed(SEED + 1)
ids = torch.cat([torch.tensor([1]), torch.randint(3, 256, (47,), generator=generator)])
results = {}
for device in ["cpu", "cuda"]:
    reloaded = MistralForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").to(device).eval()
    print("loaded config sliding_window", reloaded.config.sliding_window, "rope", getattr(reloaded.config, "rope_parameters", None))
    with torch.no_grad():
        results[device] = reloaded(ids[None].to(device)).logits[0].float().cpu()
        reloaded.config.sliding_window = None
        no_window = reloaded(ids[None].to(device)).logits[0].float().cpu()
    print(device, "rel diff without window", ((no_window - results[device]).norm() / results[device].norm()).item())
print("cpu vs cuda rel diff", ((results["cpu"] - results["cuda"]).norm() / results["cpu"].norm()).item())
save_file({"input_ids": ids.to(torch.int32).contiguous(), "logits": results["cpu"].contiguous()},
          os.path.join(out, "mistral-tiny-golden.safetensors"),
          metadata={"seed": str(SEED), "torch": torch.__version__, "transformers": transformers.__version__,
                    "what": "MistralForCausalLM float32 eager, cpu"})
print("logits shape", tuple(results["cpu"].shape), "first", results["cpu"][0, :4].tolist())
