"""A plain PyTorch ViT/14 with two CLS tokens: the hand-written peer of the
image-encoder benchmark.

The network is the TIPS image tower written directly with `torch.nn`, as
one would without Keras: a strided-conv patch embedding, `[CLS1, CLS2,
patches]` tokens with learned positions (CLS2 has none), pre-norm blocks with
a fused `(D, 3D)` qkv projection and `F.scaled_dot_product_attention`, exact
GELU, LayerScale on both residual branches, and a final LayerNorm. Weights
are random: only the speed is measured. Images are NHWC in [0, 1], as for
`keras_tips`, and are permuted to NCHW inside the forward pass.

Example:
```python
model = PlainTorchViT(hidden_dim=384, num_layers=12, num_heads=6,
                      intermediate_dim=1536).eval()
with torch.inference_mode():
    tokens = model(torch.rand(8, 224, 224, 3))  # (8, 2 + 256, 384)
```
"""

import torch
import torch.nn.functional as F
from torch import nn


class _Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, length, dim = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(query, key, value)
        return self.proj(x.transpose(1, 2).reshape(batch, length, dim))


class _Block(nn.Module):
    def __init__(self, dim, num_heads, intermediate_dim, init_value=1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, num_heads)
        self.ls1 = nn.Parameter(torch.full((dim,), init_value))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, intermediate_dim)
        self.fc2 = nn.Linear(intermediate_dim, dim)
        self.ls2 = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x):
        x = x + self.ls1 * self.attn(self.norm1(x))
        hidden = F.gelu(self.fc1(self.norm2(x)))  # exact (erf) GELU
        return x + self.ls2 * self.fc2(hidden)


class PlainTorchViT(nn.Module):
    """ViT/14 with two CLS tokens in plain `torch.nn` (see the module doc).

    Args:
        hidden_dim, num_layers, num_heads, intermediate_dim: tower size.
        patch_size: int. Patch side (14).
        image_size: int. Side of the (square) images it is run on; the
            position table is made for that grid, so no resize is needed.
    """

    def __init__(
        self,
        hidden_dim,
        num_layers,
        num_heads,
        intermediate_dim,
        patch_size=14,
        image_size=224,
    ):
        super().__init__()
        grid = image_size // patch_size
        self.patch_embed = nn.Conv2d(
            3, hidden_dim, kernel_size=patch_size, stride=patch_size
        )
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, hidden_dim))
        self.register_token = nn.Parameter(
            0.02 * torch.randn(1, 1, hidden_dim)
        )
        self.pos_embed = nn.Parameter(
            0.02 * torch.randn(1, 1 + grid * grid, hidden_dim)
        )
        self.blocks = nn.ModuleList(
            _Block(hidden_dim, num_heads, intermediate_dim)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_dim, eps=1e-6)

    def load_official_state(self, state):
        """Copies an official TIPS vision state (numpy arrays keyed as in the
        released `.npz` files) into this model, so tests can check that it
        computes the same function as `keras_tips`."""
        renames = {
            "patch_embed.proj.": "patch_embed.",
            "register_tokens": "register_token",
            ".ls1.gamma": ".ls1",
            ".ls2.gamma": ".ls2",
            ".mlp.fc": ".fc",
        }
        own = self.state_dict()
        loaded = {}
        for key, value in state.items():
            if key == "mask_token":  # inference never masks
                continue
            name = key
            for old, new in renames.items():
                name = name.replace(old, new)
            if name not in own:
                raise KeyError(f"{key!r} has no counterpart ({name!r}) here.")
            loaded[name] = torch.as_tensor(value).reshape(own[name].shape)
        missing = sorted(set(own) - set(loaded))
        if missing:
            raise KeyError(f"The state lacks {missing}.")
        self.load_state_dict(loaded)

    def forward(self, images):
        x = self.patch_embed(images.permute(0, 3, 1, 2))
        x = x.flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]
        batch = x.shape[0]
        cls_1 = (self.cls_token + self.pos_embed[:, :1]).expand(batch, -1, -1)
        cls_2 = self.register_token.expand(batch, -1, -1)
        x = torch.cat([cls_1, cls_2, x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
