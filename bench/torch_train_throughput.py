#!/usr/bin/python3
"""PyTorch twin of bench/train_throughput.c: the default HAPT model, LoRA training steps.

Same work as the C side: d=64, 2 pre-LN blocks, 4 heads, MLP ratio 2 with tanh GELU, patch 16
on two (128, 3) modalities -> 17 tokens with CLS, key-padding mask, final LayerNorm, CLS head,
6 classes; LoRA r=4 alpha=8 on q, k, v, o with the base frozen (requires_grad False), AdamW on
LoRA + head; float32; batch 32 of synthetic data.

Driven over stdin/stdout so the C benchmark can interleave runs in one process tree:
  start-up prints one JSON line {"ready": true, "blas": [...], "parallel_info": "...", ...}
  "run N"  -> runs N training steps, prints the elapsed seconds
  "quit"   -> exits
argv: torch_threads foreach(0|1)
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LoRALinear(nn.Module):
    def __init__(self, n_in, n_out, r, alpha, lora):
        super().__init__()
        self.base = nn.Linear(n_in, n_out)
        self.base.weight.requires_grad_(False)
        self.base.bias.requires_grad_(False)
        self.lora = lora
        if lora:
            self.A = nn.Parameter(torch.empty(r, n_in).uniform_(-1 / math.sqrt(n_in), 1 / math.sqrt(n_in)))
            self.B = nn.Parameter(torch.randn(n_out, r) * 0.01)
            self.scale = alpha / r

    def forward(self, x):
        y = self.base(x)
        if self.lora:
            y = y + self.scale * F.linear(F.linear(x, self.A), self.B)
        return y


class Block(nn.Module):
    def __init__(self, d, heads, mlp_ratio, r, alpha):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (LoRALinear(d, d, r, alpha, True) for _ in range(4))
        self.ln2 = nn.LayerNorm(d)
        self.up = LoRALinear(d, mlp_ratio * d, r, alpha, False)
        self.down = LoRALinear(mlp_ratio * d, d, r, alpha, False)

    def forward(self, x, key_mask):
        B, N, d = x.shape
        hs = d // self.heads
        h = self.ln1(x)
        q, k, v = (f(h).view(B, N, self.heads, hs).transpose(1, 2) for f in (self.q, self.k, self.v))
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hs))
        s = s.masked_fill(key_mask, float("-inf"))
        a = torch.softmax(s, -1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(B, N, d))
        return x + self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh"))


class Model(nn.Module):
    def __init__(self, d=64, layers=2, heads=4, mlp_ratio=2, patch=16, T=128, C=3, mods=2, classes=6, r=4, alpha=8.0):
        super().__init__()
        self.patch, self.T, self.C, self.mods = patch, T, C, mods
        n = T // patch
        self.proj = nn.ModuleList(nn.Linear(patch * C, d) for _ in range(mods))
        self.mod_emb = nn.Parameter(torch.randn(mods, 1, d) * 0.02)
        self.pos_emb = nn.Parameter(torch.randn(mods, n, d) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads, mlp_ratio, r, alpha) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)
        for name, p in self.named_parameters():  # frozen base: only LoRA and head train
            p.requires_grad_(name.endswith(".A") or name.endswith(".B") or name.startswith("head."))

    def forward(self, xs, present):
        B = xs[0].shape[0]
        n = self.T // self.patch
        toks = [self.cls.expand(B, 1, -1)]
        masks = [torch.zeros(B, 1, dtype=torch.bool)]
        for m in range(self.mods):
            x = xs[m].reshape(B, n, self.patch * self.C)
            toks.append(self.proj[m](x) + self.mod_emb[m] + self.pos_emb[m])
            masks.append((~present[:, m])[:, None].expand(B, n))
        x = torch.cat(toks, 1)
        key_mask = torch.cat(masks, 1)[:, None, None, :]
        for blk in self.blocks:
            x = blk(x, key_mask)
        return self.head(self.ln_f(x)[:, 0])


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    foreach = bool(int(sys.argv[2])) if len(sys.argv) > 2 else False
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    B = 32
    model = Model()
    xs = [torch.randn(B, 128, 3) for _ in range(2)]
    present = torch.ones(B, 2, dtype=torch.bool)
    y = torch.randint(0, 6, (B,))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.01, foreach=foreach)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xs, present), y)
        loss.backward()
        opt.step()

    for _ in range(10):
        step()
    blas = sorted({l.split()[-1] for l in open("/proc/self/maps") if "blas" in l or "gomp" in l or "mkl" in l})
    print(json.dumps({"ready": True, "blas": blas, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "parallel_info": torch.__config__.parallel_info().replace("\n", "; "),
                      "trainable": sum(p.numel() for p in params)}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "run":
            n = int(cmd[1])
            t0 = time.perf_counter()
            for _ in range(n):
                step()
            print("%.9f" % (time.perf_counter() - t0), flush=True)


if __name__ == "__main__":
    main()
