# The seeded random weights of the test fixtures, shared by make_fixtures.py and make_mistral_tiny.py.
import torch


def randomize(model):
    """Draws every parameter from torch's global generator, in name order (the caller seeds it): norms near 1,
    embeddings N(0, 1), and the [out, in] projections and lm_head scaled for unit-variance outputs, attention
    sharp enough to matter."""
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                parameter.copy_(1.0 + 0.25 * torch.randn_like(parameter))
            elif name.endswith("embed_tokens.weight"):
                parameter.copy_(torch.randn_like(parameter))
            else:
                parameter.copy_(torch.randn_like(parameter) * 1.5 / parameter.shape[-1] ** 0.5)
