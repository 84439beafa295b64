# Builds the small test fixtures of bitdelta-core (seeded random weights) and their golden outputs from
# PyTorch + transformers in float32 with eager attention, on the CPU:
#
#   llama-bf16      Llama, BF16 weights, untied lm_head, GQA 8/2, a byte-level BPE tokenizer trained here with
#                   ChatML special tokens, a chat template in tokenizer_config.json, generation_config.json
#   llama-f16-tied  Llama, F16 weights, tied embeddings, multi-head attention (GQA ratio 1), explicit head_dim
#   llama-rope3     Llama, F32 weights, GQA 4/1 (ratio 4... 8 heads / 1 kv head: ratio 8), llama3 rope scaling
#   mistral-tiny    Mistral, F16 weights, sliding window 16 < sequence 48, GQA 4/2
#
# Each base has a fine-tune (suffix -ft: every tensor perturbed, so the fine-tune also replaces embeddings,
# norms and lm_head). Golden file per pair (golden/NAME.safetensors): input_ids (I32 [48]) and F32 logits
# [48, vocab] of the base, the fine-tune, and BitDelta with initial scales, per matrix and per row (W_base +
# a * sign(W_ft - W_base) in float32), greedy continuations (transformers generate, do_sample=False), and for the
# BPE tokenizer the ids of sample texts and the rendered chat template (golden/tokenizer-llama-bf16.json).
#
# Run on a host with PyTorch and transformers: OUT=DIR python3 make_fixtures.py  (writes DIR/fixtures.tar.gz)
import json, os, shutil, sys, tarfile, traceback
import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM
from fixture_weights import randomize
try:
    from transformers import PreTrainedTokenizerFast
except ImportError:  # transformers 5 renamed it
    from transformers import TokenizersBackend as PreTrainedTokenizerFast
TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])

SEED = 20261207
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
here = os.path.dirname(os.path.abspath(__file__))
repository = os.path.abspath(os.path.join(here, "..", "..", "..", ".."))
out = os.environ["OUT"]
work = os.path.join("/tmp", "bitdelta-fixtures")
shutil.rmtree(work, ignore_errors=True)
models_dir = os.path.join(work, "models")
golden_dir = os.path.join(work, "golden")
os.makedirs(models_dir)
os.makedirs(golden_dir)
print("torch", torch.__version__, "transformers", transformers.__version__, flush=True)
torch.backends.cuda.matmul.allow_tf32 = False
torch.set_num_threads(8)

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('Unknown role: ' + message['role']) }}{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] | trim }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def train_tokenizer(folder):
    from tokenizers import Tokenizer, models, trainers, pre_tokenizers, decoders, processors
    text = open(os.path.join(repository, "bitdelta-core/src/test/resources/text/shakespeare.heldout.txt"), encoding="utf-8").read()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|bos|>", "<|eos|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator([text], trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[("<|bos|>", tokenizer.token_to_id("<|bos|>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|bos|>", eos_token="<|im_end|>",
                                   pad_token="<|pad|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    # The chat template goes into tokenizer_config.json, where most published models keep it.
    config_path = os.path.join(folder, "tokenizer_config.json")
    config = json.load(open(config_path))
    config["chat_template"] = CHAT_TEMPLATE
    json.dump(config, open(config_path, "w"), indent=2)
    jinja = os.path.join(folder, "chat_template.jinja")
    if os.path.exists(jinja):
        os.remove(jinja)
    return AutoTokenizer.from_pretrained(folder)


def initialize(model, seed):
    torch.manual_seed(seed)
    randomize(model)


def stored(model, dtype):
    return {name: tensor.detach().to(dtype).contiguous() for name, tensor in model.state_dict().items()
            if not (model.config.tie_word_embeddings and name == "lm_head.weight")}


def fine_tune(state, seed):
    generator = torch.Generator().manual_seed(seed)
    tuned = {}
    for name, tensor in state.items():
        noise = torch.randn(tensor.shape, generator=generator) * (0.08 * tensor.float().abs().mean())
        tuned[name] = (tensor.float() + noise).to(tensor.dtype).contiguous()
    return tuned


def bitdelta(base, tuned, per_row):
    merged = {}
    for name, tensor in tuned.items():
        if any(name.endswith(p + ".weight") for p in PROJECTIONS):
            delta = tensor.float() - base[name].float()
            sign = torch.where(delta >= 0, 1.0, -1.0)
            magnitude = delta.abs().double()
            scale = (magnitude.mean(dim=1, keepdim=True) if per_row else magnitude.mean()).float()
            merged[name] = base[name].float() + scale * sign
        else:
            merged[name] = tensor.float()
    return merged


def write_model(folder, config, state, dtype_name, tokenizer_folder):
    os.makedirs(folder, exist_ok=True)
    config.torch_dtype = dtype_name
    config.save_pretrained(folder)
    save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    if tokenizer_folder:
        for file in os.listdir(tokenizer_folder):
            shutil.copy(os.path.join(tokenizer_folder, file), folder)


def make_model(model_class, config):
    try:
        return model_class._from_config(config, attn_implementation="eager")
    except Exception:
        traceback.print_exc()
        config._attn_implementation = "eager"
        return model_class(config)


def logits_of(model_class, config, state, ids):
    # float32 parameters before loading: transformers builds the model in config.dtype (the stored 16-bit dtype once
    # the folder is written), which would round BitDelta's merged weights and compute every activation in 16 bits.
    model = make_model(model_class, config).to(torch.float32).eval()
    full = {name: tensor.float() for name, tensor in state.items()}
    if config.tie_word_embeddings:
        full["lm_head.weight"] = full["model.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(full, strict=False)
    assert not unexpected and all(name == "lm_head.weight" for name in missing), (missing, unexpected)
    print("attention:", model.config._attn_implementation, flush=True)
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    with torch.no_grad():
        logits = model(ids[None]).logits[0].float().contiguous()
        # Greedy by hand (no cache, no stopping, argmax = first maximum): what the Java generator does.
        sequence = ids[:8].tolist()
        for _ in range(24):
            step = model(torch.tensor([sequence])).logits[0, -1]
            sequence.append(int(torch.argmax(step)))
    return logits, torch.tensor(sequence[8:], dtype=torch.int32)


def build(name, model_class, config, dtype, dtype_name, tokenizer=None, tokenizer_folder=None, seed=SEED):
    model = make_model(model_class, config)
    initialize(model, seed)
    base = stored(model, dtype)
    tuned = fine_tune(base, seed + 1)
    write_model(os.path.join(models_dir, name), config, base, dtype_name, tokenizer_folder)
    write_model(os.path.join(models_dir, name + "-ft"), config, tuned, dtype_name, tokenizer_folder)
    generator = torch.Generator().manual_seed(seed + 2)
    first = tokenizer.bos_token_id if tokenizer is not None else 1
    ids = torch.cat([torch.tensor([first]), torch.randint(5, config.vocab_size, (47,), generator=generator)])
    golden = {"input_ids": ids.to(torch.int32).contiguous()}
    for label, state in [("base", base), ("finetuned", tuned), ("bitdelta_initial", bitdelta(base, tuned, False)),
                         ("bitdelta_per_row", bitdelta(base, tuned, True))]:
        logits, greedy = logits_of(model_class, config, state, ids)
        golden["logits_" + label] = logits
        golden["greedy_" + label] = greedy
        print(f"{name} {label}: logits {tuple(logits.shape)} first {logits[0, :3].tolist()} greedy {greedy[:8].tolist()}", flush=True)
    save_file(golden, os.path.join(golden_dir, name + ".safetensors"),
              metadata={"seed": str(SEED), "torch": torch.__version__, "transformers": transformers.__version__,
                        "what": "float32 eager on the CPU; greedy: 24 tokens after input_ids[:8]"})


def fixture_0():
    """llama-bf16: BF16, untied, GQA 8/2, byte-level BPE, chat template"""
    tokenizer_folder = os.path.join(work, "tokenizer")
    tokenizer = train_tokenizer(tokenizer_folder)
    vocabulary = len(tokenizer)
    print("tokenizer vocab", vocabulary, flush=True)
    llama_bf16 = LlamaConfig(vocab_size=vocabulary, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                             num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
                             rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    build("llama-bf16", LlamaForCausalLM, llama_bf16, torch.bfloat16, "bfloat16", tokenizer, tokenizer_folder)
    for folder in ("llama-bf16", "llama-bf16-ft"):
        json.dump({"bos_token_id": tokenizer.bos_token_id, "eos_token_id": [tokenizer.convert_tokens_to_ids("<|im_end|>"),
                   tokenizer.convert_tokens_to_ids("<|eos|>")], "do_sample": False},
                  open(os.path.join(models_dir, folder, "generation_config.json"), "w"), indent=2)

    samples = ["To be, or not to be: that is the question.", "  leading spaces and\ttabs\nand new lines  ",
               "Ünïcödé: café, naïve, 日本語, emoji 🎭🙂, ½ ∑", "", "KING RICHARD III:\nNow is the winter of our discontent"]
    messages = [{"role": "system", "content": "You are a helpful bard. "},
                {"role": "user", "content": "Speak of the sea."}]
    tokenizer_golden = {
        "samples": [{"text": text, "ids": tokenizer(text)["input_ids"],
                     "decoded": tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True)} for text in samples],
        "chat": {"messages": messages,
                 "rendered": tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                 "rendered_without_generation_prompt": tokenizer.apply_chat_template(messages, tokenize=False,
                                                                                     add_generation_prompt=False),
                 "ids": tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)},
        "transformers": transformers.__version__}
    print("chat rendered:", repr(tokenizer_golden["chat"]["rendered"]), flush=True)
    json.dump(tokenizer_golden, open(os.path.join(golden_dir, "tokenizer-llama-bf16.json"), "w"), ensure_ascii=False, indent=1)

def fixture_1():
    """llama-f16-tied: F16, tied, MHA, explicit head_dim != hidden / heads"""
    llama_tied = LlamaConfig(vocab_size=256, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=4, head_dim=16, max_position_embeddings=96,
                             rms_norm_eps=1e-6, rope_theta=500000.0, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    build("llama-f16-tied", LlamaForCausalLM, llama_tied, torch.float16, "float16", seed=SEED + 10)

def fixture_2():
    """llama-rope3: F32, GQA 8/1 (ratio 8), llama3 rope scaling"""
    rope3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
             "original_max_position_embeddings": 32}
    rope3_arguments = ({"rope_parameters": dict(rope3, rope_theta=500000.0)} if TRANSFORMERS_MAJOR >= 5
                       else {"rope_scaling": rope3, "rope_theta": 500000.0})
    llama_rope3 = LlamaConfig(vocab_size=192, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                              num_attention_heads=8, num_key_value_heads=1, max_position_embeddings=256, rms_norm_eps=1e-5,
                              tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, **rope3_arguments)
    print("rope3 config:", llama_rope3.to_json_string(), flush=True)
    build("llama-rope3", LlamaForCausalLM, llama_rope3, torch.float32, "float32", seed=SEED + 20)

def fixture_3():
    """mistral-tiny: F16, sliding window 16 < 48 tokens, GQA 4/2"""
    mistral = MistralConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=24, max_position_embeddings=128,
                            rms_norm_eps=1e-6, rope_theta=1000000.0, sliding_window=16, tie_word_embeddings=False,
                            bos_token_id=1, eos_token_id=2)
    build("mistral-tiny", MistralForCausalLM, mistral, torch.float16, "float16", seed=SEED + 30)

failures = []
for section in (fixture_0, fixture_1, fixture_2, fixture_3):
    try:
        section()
    except Exception:  # one broken fixture must not lose the others
        traceback.print_exc()
        failures.append(section.__doc__)

for name in sorted(os.listdir(models_dir)):
    print(name, sorted(os.listdir(os.path.join(models_dir, name))))
    print(open(os.path.join(models_dir, name, "config.json")).read())
with tarfile.open(os.path.join(out, "fixtures.tar.gz"), "w:gz") as archive:
    archive.add(work, arcname="fixtures")
print("wrote", os.path.join(out, "fixtures.tar.gz"), os.path.getsize(os.path.join(out, "fixtures.tar.gz")), "bytes")
print("FAILED:", failures if failures else "none")
sys.exit(1 if failures else 0)
