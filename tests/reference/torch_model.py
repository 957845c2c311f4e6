#!/usr/bin/python3
"""PyTorch reference of starling's multimodal model (core/model.h), for tests/model/test_model_torch.

Usage: /usr/bin/python3 torch_model.py CASE_DIR [CASE_DIR...]

Each CASE_DIR is written by the C test and holds (all little-endian, row-major):
  manifest.json   {"config": {...model keys..., "mode", "label_smoothing"},
                   "schema": [{"name", "kind", "dims": [d0, d1, d2]}...], "n_classes", "batch",
                   "params": [{"name", "shape", "offset", "numel", "trainable"}...] (buffer order),
                   "c_loss": float}
  params.bin      float32, the whole parameter buffer (sl_model_param_data)
  x<k>.bin        float32 (B, values of modality k) as in core/batch.h
  present.bin     uint8 (B, n_modalities)
  labels.bin      int32 (B)
  c_logits.bin    float32 (B, n_classes) computed by C
  c_grad.bin      float32 (n_trainable) the gradient of the mean loss computed by C

The reference is written independently of the C code, in float64, from torch building blocks
(F.layer_norm, softmax with a -inf key mask, F.gelu(approximate='tanh'), F.cross_entropy with
label_smoothing) and autograd. For every case it compares logits, loss and every trainable gradient:
relative error ||c - ref|| / ||ref|| <= 1e-4 per tensor (max |c| <= 1e-6 for a gradient that is
mathematically zero, like the key bias's).
Exit 0 when every case agrees, 1 otherwise. """
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

TOL = 1e-4


def load(case):
    with open(os.path.join(case, "manifest.json")) as f:
        man = json.load(f)
    buf = np.fromfile(os.path.join(case, "params.bin"), dtype="<f4")
    params = {}
    for p in man["params"]:
        a = buf[p["offset"]:p["offset"] + p["numel"]].reshape(p["shape"])
        t = torch.tensor(a, dtype=torch.float64)
        t.requires_grad_(bool(p["trainable"]))
        params[p["name"]] = t
    B = man["batch"]
    xs = []
    for k, m in enumerate(man["schema"]):
        nv = int(np.prod([d for d in m["dims"] if d > 0]))
        x = np.fromfile(os.path.join(case, "x%d.bin" % k), dtype="<f4").reshape(B, nv)
        xs.append(torch.tensor(x, dtype=torch.float64))
    present = np.fromfile(os.path.join(case, "present.bin"), dtype=np.uint8).reshape(B, len(man["schema"]))
    labels = np.fromfile(os.path.join(case, "labels.bin"), dtype="<i4")
    return man, params, xs, torch.tensor(present.astype(bool)), torch.tensor(labels.astype(np.int64))


def linear(P, prefix, x, cfg):
    y = x @ P[prefix + ".weight"].T + P[prefix + ".bias"]
    if prefix + ".lora_A" in P:
        scale = cfg["lora_alpha"] / cfg["lora_rank"]
        y = y + scale * (x @ P[prefix + ".lora_A"].T) @ P[prefix + ".lora_B"].T
    return y


def tokens(man, P, xs, present):
    cfg = man["config"]
    B = xs[0].shape[0]
    d = cfg["d_model"]
    toks = [P["cls"].expand(B, 1, d)]
    valid = [torch.ones(B, 1, dtype=torch.bool)]
    for k, m in enumerate(man["schema"]):
        name, kind, dims = m["name"], m["kind"], m["dims"]
        pres = present[:, k]
        x = torch.where(pres[:, None], xs[k], torch.zeros_like(xs[k]))  # absent values never used
        if kind == "text":
            n = min(dims[0], cfg["text_max_len"])
            idx = x[:, :n].long()
            t = P["tok.%s.emb" % name][idx]
            v = idx != 0
        else:
            if kind == "timeseries":
                T, C = dims[0], dims[1]
                Pl = cfg["patch_len"]
                n = -(-T // Pl)
                x = x.reshape(B, T, C)
                x = F.pad(x, (0, 0, 0, n * Pl - T))
                patches = x.reshape(B, n, Pl * C)
            elif kind == "image":
                H, W, ch = dims
                p = cfg["image_patch"]
                nh, nw = -(-H // p), -(-W // p)
                x = x.reshape(B, H, W, ch)
                x = F.pad(x, (0, 0, 0, nw * p - W, 0, nh * p - H))
                x = x.reshape(B, nh, p, nw, p, ch).permute(0, 1, 3, 2, 4, 5)
                patches = x.reshape(B, nh * nw, p * p * ch)
                n = nh * nw
            else:  # vector
                Fd = dims[0]
                g = cfg["vector_group"]
                n = -(-Fd // g)
                patches = F.pad(x, (0, n * g - Fd)).reshape(B, n, g)
            t = linear(P, "tok.%s.proj" % name, patches, cfg)
            v = pres[:, None].expand(B, n)
        t = t + P["tok.%s.mod_emb" % name] + P["tok.%s.pos_emb" % name]
        toks.append(t)
        valid.append(v & pres[:, None])
    return torch.cat(toks, 1), torch.cat(valid, 1)


def forward(man, P, xs, present):
    cfg = man["config"]
    d, NH = cfg["d_model"], cfg["heads"]
    hs = d // NH
    x, valid = tokens(man, P, xs, present)
    B, N, _ = x.shape
    for l in range(cfg["layers"]):
        pre = "blocks.%d." % l
        h = F.layer_norm(x, (d,), P[pre + "ln1.weight"], P[pre + "ln1.bias"], eps=1e-5)
        q, k, v = (linear(P, pre + "attn." + t, h, cfg).reshape(B, N, NH, hs).transpose(1, 2) for t in "qkv")
        s = q @ k.transpose(-1, -2) / math.sqrt(hs)
        s = s.masked_fill(~valid[:, None, None, :], float("-inf"))
        a = torch.softmax(s, -1) @ v
        x = x + linear(P, pre + "attn.o", a.transpose(1, 2).reshape(B, N, d), cfg)
        h = F.layer_norm(x, (d,), P[pre + "ln2.weight"], P[pre + "ln2.bias"], eps=1e-5)
        x = x + linear(P, pre + "mlp.down", F.gelu(linear(P, pre + "mlp.up", h, cfg), approximate="tanh"), cfg)
    x = F.layer_norm(x, (d,), P["ln_f.weight"], P["ln_f.bias"], eps=1e-5)
    if cfg["pooling"] == "cls":
        pooled = x[:, 0]
    else:
        w = valid.to(x.dtype)
        pooled = (x * w[..., None]).sum(1) / w.sum(1, keepdim=True)
    return pooled @ P["head.weight"].T + P["head.bias"]


def rel(c, ref):
    c = np.asarray(c, dtype=np.float64).ravel()
    ref = np.asarray(ref, dtype=np.float64).ravel()
    return float(np.linalg.norm(c - ref) / max(np.linalg.norm(ref), 1e-30))


def check(case):
    torch.set_grad_enabled(True)
    man, P, xs, present, labels = load(case)
    logits = forward(man, P, xs, present)
    loss = F.cross_entropy(logits, labels, label_smoothing=man["config"]["label_smoothing"])
    loss.backward()
    ok = True
    B, K = logits.shape
    c_logits = np.fromfile(os.path.join(case, "c_logits.bin"), dtype="<f4").reshape(B, K)
    c_grad = np.fromfile(os.path.join(case, "c_grad.bin"), dtype="<f4")
    e = rel(c_logits, logits.detach().numpy())
    print("%s: logits rel err %.2e" % (os.path.basename(case), e))
    ok &= e <= TOL
    e = abs(man["c_loss"] - loss.item()) / abs(loss.item())
    print("%s: loss %.8f (C %.8f) rel err %.2e" % (os.path.basename(case), loss.item(), man["c_loss"], e))
    ok &= e <= TOL
    toff = min(p["offset"] for p in man["params"] if p["trainable"])
    worst = 0.0
    for p in man["params"]:
        if not p["trainable"]:
            continue
        g = P[p["name"]].grad
        ref = np.zeros(p["numel"]) if g is None else g.numpy().ravel()
        c = c_grad[p["offset"] - toff:p["offset"] - toff + p["numel"]]
        if np.linalg.norm(ref) < 1e-12:
            # mathematically zero (e.g. the key bias: softmax ignores a per-row constant);
            # float32 rounding leaves noise around 1e-8 in C, so ask for an absolute 1e-6
            e = float(np.abs(c).max()) * TOL / 1e-6
        else:
            e = rel(c, ref)
        worst = max(worst, e)
        if e > TOL:
            print("  MISMATCH %s: rel err %.3e (|ref| %.3e |c| %.3e)" % (p["name"], e, np.linalg.norm(ref),
                                                                         np.linalg.norm(c)))
            ok = False
    ntr = sum(1 for p in man["params"] if p["trainable"])
    print("%s: %d trainable gradients, worst rel err %.2e" % (os.path.basename(case), ntr, worst))
    print("%s: %s" % (os.path.basename(case), "OK" if ok else "FAIL"))
    return ok


def main():
    results = [check(case) for case in sys.argv[1:]]
    return 0 if results and all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
